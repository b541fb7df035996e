// Metrics: counters and histograms updated on the request path with atomics only, rendered
// in the Prometheus text format. Names follow Triton's (nv_inference_request_success and so
// on) with the kchain_ prefix, so that existing dashboards translate.
//
// Thread-safety: every method is safe from any thread.
#ifndef KCHAIN_GATEWAY_CORE_METRICS_H_
#define KCHAIN_GATEWAY_CORE_METRICS_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <string>

#include "kchain/status.h"

namespace kchain::gateway {

class Service;

// Latency histogram in microseconds with fixed buckets.
class Histogram {
 public:
  static constexpr std::array<double, 20> kBoundsUs = {
      5,     10,    25,    50,     100,    250,    500,     1000,    2500,    5000,
      10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000};
  void Observe(double us);
  // Appends the _bucket, _sum and _count series of `name` with `labels` (without braces).
  void Render(const std::string& name, const std::string& labels, std::string* out) const;
  uint64_t count() const { return count_.load(std::memory_order_relaxed); }
  uint64_t sum_ns() const { return sum_ns_.load(std::memory_order_relaxed); }

 private:
  std::array<std::atomic<uint64_t>, kBoundsUs.size()> buckets_{};
  std::atomic<uint64_t> count_{0};
  std::atomic<uint64_t> sum_ns_{0};
};

constexpr int kStatusCodeCount = static_cast<int>(StatusCode::kInternal) + 1;

// One function's request metrics.
struct FunctionMetrics {
  std::atomic<uint64_t> success{0};
  std::array<std::atomic<uint64_t>, kStatusCodeCount> failure{};  // by status code
  std::array<Histogram, 3> request_duration;                      // by start type
  std::atomic<uint64_t> queue_duration_us{0};    // cumulative, as Triton's counters
  std::atomic<uint64_t> compute_duration_us{0};  // cumulative run time
  std::atomic<uint64_t> last_success_ms{0};      // Unix time of the latest success, ms

  void RecordFailure(StatusCode code) {
    // Bounded: a code from outside the enum (it never should be) counts as internal.
    const int index = static_cast<int>(code);
    failure[index > 0 && index < kStatusCodeCount ? index : kStatusCodeCount - 1].fetch_add(
        1, std::memory_order_relaxed);
  }
};

// Server-wide metrics.
class Metrics {
 public:
  void RecordHttpStatus(int status);
  // Appends the server-wide series.
  void Render(std::string* out) const;

 private:
  static constexpr std::array<int, 22> kStatuses = {200, 201, 204, 400, 401, 404, 405, 408,
                                                    409, 411, 413, 414, 416, 429, 431, 500,
                                                    501, 502, 503, 504, 505, 507};
  std::array<std::atomic<uint64_t>, kStatuses.size() + 1> http_{};  // last: any other status
};

// The whole /metrics page for `service`.
std::string RenderMetrics(const Service& service);

}  // namespace kchain::gateway

#endif  // KCHAIN_GATEWAY_CORE_METRICS_H_
