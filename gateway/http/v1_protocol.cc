#include "gateway/http/v1_protocol.h"

#include "kchain/manifest.h"

namespace kchain::gateway::v1 {
namespace {

using nlohmann::json;

std::string ShapeText(const TensorSpec& t) {
  std::string out = std::string(ElementTypeName(t.dtype)) + " [";
  for (size_t i = 0; i < t.shape.size(); ++i) out += (i ? ", " : "") + std::to_string(t.shape[i]);
  return out + "]";
}

}  // namespace

json InfoJson(const FunctionInfo& info, const SchedulerOptions& limits,
              const std::function<std::string(std::string)>& scrub) {
  json versions = json::array();
  for (const auto& r : info.history) versions.push_back(VersionRecordToJson(r));
  json out = {{"tenant", info.key.tenant},
              {"name", info.key.name},
              {"version", info.version},
              {"state", !info.load_error.empty() ? "load_failed"
                        : info.pool.unloaded     ? "unloaded"
                                                 : "ready"},
              {"versions", versions}};
  if (!info.load_error.empty()) {
    out["load_error"] = scrub(info.load_error);
    return out;
  }
  out["manifest"] = json::parse(kchain::ManifestToJson(info.manifest));
  out["instance_device_bytes"] = info.instance_device_bytes;
  out["instances"] = {{"idle", info.pool.resident_idle},
                      {"busy", info.pool.busy},
                      {"parked", info.pool.parked},
                      {"total", info.pool.total},
                      {"max", limits.max_instances_per_function}};
  out["queue"] = {{"waiting", info.pool.queued}, {"max", limits.max_queue_per_function}};
  out["starts"] = {
      {"cold", info.pool.starts[0]}, {"warm", info.pool.starts[1]}, {"hot", info.pool.starts[2]}};
  out["parks"] = info.pool.parks;
  out["expirations"] = info.pool.expired;
  out["retired_with_worker"] = info.pool.retired;
  out["load_us"] = {{"library", info.library_load_us}, {"constants", info.constants_load_us}};
  return out;
}

Status CheckInputSize(size_t bytes, const FunctionSpec& spec, const std::string& name) {
  if (bytes > spec.max_input_bytes) {
    return PayloadTooLargeError("input is " + std::to_string(bytes) + " bytes; '" + name +
                                "' accepts at most " + std::to_string(spec.max_input_bytes));
  }
  if (!spec.input.shape.empty() && bytes != spec.max_input_bytes) {
    return InvalidArgumentError("input is " + std::to_string(bytes) + " bytes; '" + name +
                                "' takes exactly " + std::to_string(spec.max_input_bytes) + " (" +
                                ShapeText(spec.input) + ")");
  }
  if (bytes % ElementSize(spec.input.dtype) != 0) {
    return InvalidArgumentError("input is " + std::to_string(bytes) +
                                " bytes, not a whole number of " +
                                std::string(ElementTypeName(spec.input.dtype)) + " elements");
  }
  return Status();
}

json TimingsJson(const InvokeTimings& t, StartType start) {
  json out = {{"queue", t.queue}, {"run", t.run.total_us}, {"total", t.total}};
  if (start != StartType::kHot) {
    out["start"] = {{"acquire", t.start.acquire_us},
                    {"library", t.start.library_us},
                    {"create", t.start.create_us},
                    {"constants", t.start.constants_us}};
  }
  if (t.run.stages_timed) {
    out["input_copy"] = t.run.input_copy_us;
    out["chain"] = t.run.chain_us;
    out["output_copy"] = t.run.output_copy_us;
  }
  return out;
}

// Counts only: /readyz is unauthenticated, and tenants' names are not for everyone.
json WorkersJson(const ExecutorStats& stats) {
  json restarts = json::object();
  for (const auto& [reason, n] : stats.restarts) restarts[reason] = n;
  json evictions = json::object();
  for (const auto& [reason, n] : stats.evictions) evictions[reason] = n;
  return {{"scope", stats.worker_scope},
          {"live", stats.workers_live},
          {"idle", stats.workers_idle},
          {"bound", stats.workers_bound},
          {"limit", stats.workers_limit},
          {"context_bytes", stats.context_bytes},
          {"restarts", restarts},
          {"evictions", evictions},
          {"spawning", stats.workers_spawning},
          {"ending", stats.workers_ending},
          {"spawn_failures", stats.spawn_failures},
          {"starts", {{"count", stats.worker_starts}, {"seconds", stats.worker_start_seconds}}},
          {"ends", {{"count", stats.worker_ends}, {"seconds", stats.worker_end_seconds}}}};
}

// Checks the shape of a JSON invoke body: exactly one of input / input_base64, and an
// optional output_format.
Status CheckInvokeBody(const json& body, bool* base64_output) {
  if (!body.is_object()) {
    return InvalidArgumentError(
        "a JSON invoke body is an object: {\"input\": [...]} or "
        "{\"input_base64\": \"...\"}");
  }
  for (const auto& item : body.items()) {
    if (item.key() != "input" && item.key() != "input_base64" && item.key() != "output_format") {
      return InvalidArgumentError("unknown key '" + item.key() +
                                  "' (expected input, input_base64, output_format)");
    }
  }
  const bool has_input = body.contains("input"), has_b64 = body.contains("input_base64");
  if (has_input == has_b64) {
    return InvalidArgumentError("give exactly one of 'input' (an array) and 'input_base64'");
  }
  if (has_b64 && !body["input_base64"].is_string()) {
    return InvalidArgumentError("input_base64 must be a string");
  }
  if (body.contains("output_format")) {
    const json& f = body["output_format"];
    if (!f.is_string() || (f != "json" && f != "base64")) {
      return InvalidArgumentError("output_format must be \"json\" or \"base64\"");
    }
    *base64_output = f == "base64";
  }
  return Status();
}

}  // namespace kchain::gateway::v1
