// Invocation: one run of a function on an instance from the scheduler, with its timings and
// metrics. The one invoke path that /v1 invoke and /v2 infer share, so that start types,
// queueing, timeouts, tenancy and metrics work the same whichever protocol carried the
// request; the protocols differ only in how they decode the input and encode the output.
//
//   auto run = Invocation::Begin(service, key, start);     // acquire: hot, warm or cold
//   memcpy(run->input_buffer().data(), bytes, n);         // the one copy of the input
//   Status s = run->Run(n);                               // failures are counted
//   ... encode run->output() ...
//   run->MarkTotal(); run->Succeed();                     // success, durations, last time
//
// The instance goes back to the pool when the Invocation is destroyed.
//
// Thread-safety: one Invocation is used by one thread.
#ifndef KCHAIN_GATEWAY_CORE_INVOCATION_H_
#define KCHAIN_GATEWAY_CORE_INVOCATION_H_

#include <chrono>
#include <span>
#include <string>

#include "gateway/core/metrics.h"
#include "gateway/core/scheduler.h"
#include "gateway/core/service.h"

namespace kchain::gateway {

// Timing figures of one invocation, in microseconds.
struct InvokeTimings {
  double queue = 0;
  StartTimings start;
  kchain::RunTimings run;
  double total = 0;
};

// The Server-Timing header of an invocation (durations in milliseconds, as the header's
// specification wants): queue, start (cold and warm), the stages (timed runs), run, total.
std::string ServerTimingHeader(const InvokeTimings& t, StartType start);

// Counts a failure of `key` in its metrics, when the function is known. For requests that
// fail before an instance is taken (bad input, unknown version).
void RecordInvokeFailure(const Service& service, const FunctionKey& key, const Status& status);

class Invocation {
 public:
  using Clock = std::chrono::steady_clock;

  // Takes an instance of `key` (errors as Service::Acquire, counted in the metrics).
  // `start` is when the request's handling began: the total is measured from it.
  static StatusOr<Invocation> Begin(Service& service, const FunctionKey& key,
                                    Clock::time_point start);

  Invocation(Invocation&&) noexcept = default;
  Invocation& operator=(Invocation&&) = delete;

  // The version the instance runs: an invocation may start just after a new version was
  // deployed, so checks of the input belong against this spec.
  const LoadedVersion& version() const { return lease_.version(); }
  const FunctionSpec& spec() const { return lease_.version().spec(); }
  StartType start_type() const { return lease_.start(); }
  // Where the input goes: at least spec().max_input_bytes.
  std::span<std::byte> input_buffer() { return lease_.instance().input_buffer(); }
  // Runs the chain on the first `input_bytes` of the input buffer. A failure is counted.
  Status Run(size_t input_bytes);
  // The output after a successful Run(): spec().out_bytes.
  std::span<const std::byte> output() { return lease_.instance().output_buffer(); }
  // Counts `status` (an input refused after the instance was taken) and returns it.
  Status Fail(Status status);
  // Timings so far; total is set by Run() and MarkTotal().
  const InvokeTimings& timings() const { return timings_; }
  // Sets timings().total to the time since `start` (after encoding the response, say).
  void MarkTotal();
  // Counts the success: the request duration (timings().total), queue and run time.
  void Succeed();

 private:
  Invocation(Scheduler::Lease lease, Clock::time_point start);
  Scheduler::Lease lease_;
  FunctionMetrics* metrics_;
  Clock::time_point start_;
  InvokeTimings timings_;
};

}  // namespace kchain::gateway

#endif  // KCHAIN_GATEWAY_CORE_INVOCATION_H_
