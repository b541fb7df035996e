#include "gateway/core/invocation.h"

#include <cstdio>

#include "runtime/clock.h"

namespace kchain::gateway {

std::string ServerTimingHeader(const InvokeTimings& t, StartType start) {
  char buf[512];
  int n = std::snprintf(buf, sizeof buf, "queue;dur=%.3f", t.queue / 1000.0);
  if (start != StartType::kHot) {
    const double s =
        t.start.acquire_us + t.start.library_us + t.start.create_us + t.start.constants_us;
    // The parts too, so that the binary path itemises a start as the JSON path does.
    n += std::snprintf(buf + n, sizeof buf - n,
                       ", start;dur=%.3f, acquire;dur=%.3f, library;dur=%.3f, create;dur=%.3f, "
                       "constants;dur=%.3f",
                       s / 1000.0, t.start.acquire_us / 1000.0, t.start.library_us / 1000.0,
                       t.start.create_us / 1000.0, t.start.constants_us / 1000.0);
  }
  if (t.run.stages_timed) {
    n += std::snprintf(
        buf + n, sizeof buf - n, ", input_copy;dur=%.3f, chain;dur=%.3f, output_copy;dur=%.3f",
        t.run.input_copy_us / 1000.0, t.run.chain_us / 1000.0, t.run.output_copy_us / 1000.0);
  }
  std::snprintf(buf + n, sizeof buf - n, ", run;dur=%.3f, total;dur=%.3f", t.run.total_us / 1000.0,
                t.total / 1000.0);
  return buf;
}

void RecordInvokeFailure(const Service& service, const FunctionKey& key, const Status& status) {
  if (auto metrics = service.MetricsFor(key)) metrics->RecordFailure(status.code());
}

StatusOr<Invocation> Invocation::Begin(Service& service, const FunctionKey& key,
                                       Clock::time_point start) {
  auto lease = service.Acquire(key);
  if (!lease.ok()) {
    RecordInvokeFailure(service, key, lease.status());
    return lease.status();
  }
  return Invocation(std::move(*lease), start);
}

Invocation::Invocation(Scheduler::Lease lease, Clock::time_point start)
    : lease_(std::move(lease)), metrics_(lease_.metrics()), start_(start) {
  timings_.queue = lease_.queue_us();
  timings_.start = lease_.start_timings();
}

Status Invocation::Run(size_t input_bytes) {
  Status status = lease_.instance().Run(input_bytes, &timings_.run);
  timings_.total = MicrosSince(start_);
  if (!status.ok()) metrics_->RecordFailure(status.code());
  return status;
}

Status Invocation::Fail(Status status) {
  metrics_->RecordFailure(status.code());
  return status;
}

void Invocation::MarkTotal() { timings_.total = MicrosSince(start_); }

void Invocation::Succeed() {
  metrics_->success.fetch_add(1, std::memory_order_relaxed);
  metrics_->request_duration[static_cast<int>(lease_.start())].Observe(timings_.total);
  metrics_->queue_duration_us.fetch_add(static_cast<uint64_t>(timings_.queue),
                                        std::memory_order_relaxed);
  metrics_->compute_duration_us.fetch_add(static_cast<uint64_t>(timings_.run.total_us),
                                          std::memory_order_relaxed);
  const auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::system_clock::now().time_since_epoch());
  metrics_->last_success_ms.store(static_cast<uint64_t>(now.count()), std::memory_order_relaxed);
}

}  // namespace kchain::gateway
