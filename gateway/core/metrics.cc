#include "gateway/core/metrics.h"

#include <cstdio>
#include <map>

#include "gateway/core/service.h"

namespace kchain::gateway {
namespace {

std::string Escape(const std::string& value) {
  std::string out;
  for (char c : value) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

void Header(const char* name, const char* type, const char* help, std::string* out) {
  *out += "# HELP ";
  *out += name;
  *out += ' ';
  *out += help;
  *out += "\n# TYPE ";
  *out += name;
  *out += ' ';
  *out += type;
  *out += '\n';
}

void Sample(const std::string& name, const std::string& labels, double value, std::string* out) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", value);
  *out += name;
  if (!labels.empty()) *out += "{" + labels + "}";
  *out += ' ';
  *out += buf;
  *out += '\n';
}

std::string FunctionLabels(const FunctionKey& key) {
  return "tenant=\"" + Escape(key.tenant) + "\",function=\"" + Escape(key.name) + "\"";
}

}  // namespace

void Histogram::Observe(double us) {
  size_t i = 0;
  while (i < kBoundsUs.size() && us > kBoundsUs[i]) ++i;
  if (i < kBoundsUs.size()) buckets_[i].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  sum_ns_.fetch_add(static_cast<uint64_t>(us * 1000.0), std::memory_order_relaxed);
}

void Histogram::Render(const std::string& name, const std::string& labels, std::string* out) const {
  uint64_t cumulative = 0;
  char le[32];
  for (size_t i = 0; i < kBoundsUs.size(); ++i) {
    cumulative += buckets_[i].load(std::memory_order_relaxed);
    std::snprintf(le, sizeof le, "%.0f", kBoundsUs[i]);
    Sample(name + "_bucket", labels + ",le=\"" + le + "\"", static_cast<double>(cumulative), out);
  }
  const uint64_t count = count_.load(std::memory_order_relaxed);
  Sample(name + "_bucket", labels + ",le=\"+Inf\"", static_cast<double>(count), out);
  Sample(name + "_sum", labels, sum_ns_.load(std::memory_order_relaxed) / 1000.0, out);
  Sample(name + "_count", labels, static_cast<double>(count), out);
}

void Metrics::RecordHttpStatus(int status) {
  size_t i = 0;
  while (i < kStatuses.size() && kStatuses[i] != status) ++i;
  http_[i].fetch_add(1, std::memory_order_relaxed);
}

void Metrics::Render(std::string* out) const {
  Header("kchain_http_responses", "counter", "HTTP responses sent, by status code", out);
  for (size_t i = 0; i <= kStatuses.size(); ++i) {
    const uint64_t n = http_[i].load(std::memory_order_relaxed);
    if (n == 0) continue;
    const std::string code = i < kStatuses.size() ? std::to_string(kStatuses[i]) : "other";
    Sample("kchain_http_responses", "code=\"" + code + "\"", static_cast<double>(n), out);
  }
}

std::string RenderMetrics(const Service& service) {
  std::string out;
  const auto functions = service.List(std::nullopt);

  Header("kchain_inference_request_success", "counter", "Number of successful inference requests",
         &out);
  for (const auto& f : functions) {
    if (const auto m = service.MetricsFor(f.key)) {
      Sample("kchain_inference_request_success", FunctionLabels(f.key),
             static_cast<double>(m->success.load()), &out);
    }
  }
  Header("kchain_inference_request_failure", "counter",
         "Number of failed inference requests, by reason (the error code)", &out);
  for (const auto& f : functions) {
    if (const auto m = service.MetricsFor(f.key)) {
      for (int c = 1; c < kStatusCodeCount; ++c) {
        const uint64_t n = m->failure[c].load();
        if (n == 0) continue;
        Sample("kchain_inference_request_failure",
               FunctionLabels(f.key) + ",reason=\"" +
                   std::string(StatusCodeName(static_cast<StatusCode>(c))) + "\"",
               static_cast<double>(n), &out);
      }
    }
  }
  Header("kchain_inference_request_duration_us", "histogram",
         "Server-side duration of successful inference requests in microseconds, by start type",
         &out);
  for (const auto& f : functions) {
    if (const auto m = service.MetricsFor(f.key)) {
      for (int s = 0; s < 3; ++s) {
        m->request_duration[s].Render("kchain_inference_request_duration_us",
                                      FunctionLabels(f.key) + ",start=\"" +
                                          std::string(StartTypeName(static_cast<StartType>(s))) +
                                          "\"",
                                      &out);
      }
    }
  }
  Header("kchain_inference_queue_duration_us", "counter",
         "Cumulative time inference requests waited for an instance, in microseconds", &out);
  for (const auto& f : functions) {
    if (const auto m = service.MetricsFor(f.key)) {
      Sample("kchain_inference_queue_duration_us", FunctionLabels(f.key),
             static_cast<double>(m->queue_duration_us.load()), &out);
    }
  }
  Header("kchain_inference_compute_duration_us", "counter",
         "Cumulative time spent running chains (copies included), in microseconds", &out);
  for (const auto& f : functions) {
    if (const auto m = service.MetricsFor(f.key)) {
      Sample("kchain_inference_compute_duration_us", FunctionLabels(f.key),
             static_cast<double>(m->compute_duration_us.load()), &out);
    }
  }
  Header("kchain_inference_starts", "counter", "Instances handed to invocations, by start type",
         &out);
  for (const auto& f : functions) {
    for (int s = 0; s < 3; ++s) {
      Sample("kchain_inference_starts",
             FunctionLabels(f.key) + ",start=\"" +
                 std::string(StartTypeName(static_cast<StartType>(s))) + "\"",
             static_cast<double>(f.pool.starts[s]), &out);
    }
  }
  Header("kchain_queue_depth", "gauge", "Invocations waiting for an instance", &out);
  for (const auto& f : functions) {
    Sample("kchain_queue_depth", FunctionLabels(f.key), f.pool.queued, &out);
  }
  Header("kchain_instances", "gauge", "Instances by state", &out);
  for (const auto& f : functions) {
    const std::pair<const char*, int> states[] = {
        {"idle", f.pool.resident_idle}, {"busy", f.pool.busy}, {"parked", f.pool.parked}};
    for (const auto& [state, n] : states) {
      Sample("kchain_instances", FunctionLabels(f.key) + ",state=\"" + state + "\"", n, &out);
    }
  }
  Header("kchain_instance_parks", "counter", "Instances parked (memory budget or request)", &out);
  for (const auto& f : functions) {
    Sample("kchain_instance_parks", FunctionLabels(f.key), static_cast<double>(f.pool.parks), &out);
  }
  Header("kchain_instance_expirations", "counter",
         "Parked instances destroyed after the parked TTL", &out);
  for (const auto& f : functions) {
    Sample("kchain_instance_expirations", FunctionLabels(f.key),
           static_cast<double>(f.pool.expired), &out);
  }
  Header("kchain_library_load_duration_us", "gauge",
         "Time to load and check the current version's kernel library, in microseconds", &out);
  for (const auto& f : functions) {
    Sample("kchain_library_load_duration_us", FunctionLabels(f.key), f.library_load_us, &out);
  }
  Header("kchain_constants_load_duration_us", "gauge",
         "Time to read and stage the current version's constants, in microseconds", &out);
  for (const auto& f : functions) {
    Sample("kchain_constants_load_duration_us", FunctionLabels(f.key), f.constants_load_us, &out);
  }
  Header("kchain_function_version", "gauge", "Current version of each function", &out);
  for (const auto& f : functions) {
    Sample("kchain_function_version", FunctionLabels(f.key), static_cast<double>(f.version), &out);
  }

  const std::string device = "device=\"" + Escape(service.executor().device_name()) + "\"";
  Header("kchain_device_memory_used_bytes", "gauge", "Device memory held by instances", &out);
  Sample("kchain_device_memory_used_bytes", device,
         static_cast<double>(service.executor().device_memory_in_use()), &out);
  Header("kchain_device_memory_reserved_bytes", "gauge",
         "Device memory the scheduler counts against the budget (resident instances)", &out);
  Sample("kchain_device_memory_reserved_bytes", device,
         static_cast<double>(service.scheduler().resident_bytes()), &out);
  Header("kchain_device_memory_budget_bytes", "gauge", "Device memory budget (0: none)", &out);
  Sample("kchain_device_memory_budget_bytes", device,
         static_cast<double>(service.scheduler().options().memory_budget_bytes), &out);
  const ExecutorStats stats = service.executor().Stats();
  Header("kchain_worker_restarts", "counter",
         "Worker processes that died or were killed, by reason (process isolation)", &out);
  for (const auto& [reason, n] : stats.restarts) {
    Sample("kchain_worker_restarts", "reason=\"" + Escape(reason) + "\"", static_cast<double>(n),
           &out);
  }
  Header("kchain_workers", "gauge",
         "Worker processes: live (idle and bound), idle, bound, spawning, ending (retired)", &out);
  Sample("kchain_workers", "state=\"live\"", stats.workers_live, &out);
  Sample("kchain_workers", "state=\"idle\"", stats.workers_idle, &out);
  Sample("kchain_workers", "state=\"bound\"", stats.workers_bound, &out);
  Sample("kchain_workers", "state=\"spawning\"", stats.workers_spawning, &out);
  Sample("kchain_workers", "state=\"ending\"", stats.workers_ending, &out);
  Header("kchain_worker_evictions", "counter",
         "Bound workers retired to make room or for idleness, by reason", &out);
  for (const auto& [reason, n] : stats.evictions) {
    Sample("kchain_worker_evictions", "reason=\"" + Escape(reason) + "\"", static_cast<double>(n),
           &out);
  }
  Header("kchain_worker_spawn_failures", "counter",
         "Worker starts that failed (the device refused a context, the worker did not start)",
         &out);
  Sample("kchain_worker_spawn_failures", device, static_cast<double>(stats.spawn_failures), &out);
  // Summaries, so that a rate of _sum over _count gives the mean time a start or end takes.
  Header("kchain_worker_start_seconds", "summary",
         "Time to start a worker: process, device context, ready", &out);
  Sample("kchain_worker_start_seconds_sum", device, stats.worker_start_seconds, &out);
  Sample("kchain_worker_start_seconds_count", device, static_cast<double>(stats.worker_starts),
         &out);
  Header("kchain_worker_end_seconds", "summary",
         "Time to end a retired worker: killed until reaped, its context torn down", &out);
  Sample("kchain_worker_end_seconds_sum", device, stats.worker_end_seconds, &out);
  Sample("kchain_worker_end_seconds_count", device, static_cast<double>(stats.worker_ends), &out);
  Header("kchain_worker_context_bytes", "gauge",
         "Device memory one worker's context takes (measured at start)", &out);
  Sample("kchain_worker_context_bytes", device, static_cast<double>(stats.context_bytes), &out);
  // Per tenant and worker: admins only see /metrics, so tenants' names may appear.
  std::map<std::string, int> per_tenant;
  for (const WorkerInfo& w : stats.workers) ++per_tenant[w.tenant];
  Header("kchain_tenant_workers", "gauge", "Bound worker processes per tenant", &out);
  for (const auto& [tenant, n] : per_tenant) {
    Sample("kchain_tenant_workers", "tenant=\"" + Escape(tenant) + "\"," + device, n, &out);
  }
  Header("kchain_worker_instances", "gauge", "Instances each bound worker hosts", &out);
  for (const WorkerInfo& w : stats.workers) {
    Sample("kchain_worker_instances",
           "worker=\"" + std::to_string(w.id) + "\",tenant=\"" + Escape(w.tenant) + "\"",
           w.instances, &out);
  }
  std::string why;
  Header("kchain_ready", "gauge", "1 when the server is ready to serve", &out);
  Sample("kchain_ready", "", service.Ready(&why) ? 1 : 0, &out);
  service.metrics().Render(&out);
  return out;
}

}  // namespace kchain::gateway
