// kchain's own HTTP API, /v1, as pure functions: the JSON documents its routes return and the
// checks on what an invocation sends. No HTTP library here: gateway/http/http_server.cc routes
// requests to these functions (as v2_protocol.h does for /v2). docs/api.md is the reference.
//
// Thread-safety: pure functions.
#ifndef KCHAIN_GATEWAY_HTTP_V1_PROTOCOL_H_
#define KCHAIN_GATEWAY_HTTP_V1_PROTOCOL_H_

#include <cstddef>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "gateway/core/invocation.h"
#include "gateway/core/service.h"
#include "kchain/function_spec.h"
#include "kchain/status.h"

namespace kchain::gateway::v1 {

// GET /v1/functions/{name} (and each entry of GET /v1/functions, and a deploy's answer): the
// function's versions, state, manifest, instances, queue and start counters. `scrub` cleans
// a load error of paths that are not the caller's business.
nlohmann::json InfoJson(const FunctionInfo& info, const SchedulerOptions& limits,
                        const std::function<std::string(std::string)>& scrub);

// The workers' counts for /v1 and /readyz (counts only: /readyz is unauthenticated, and
// tenants' names are not for everyone).
nlohmann::json WorkersJson(const ExecutorStats& stats);

// An input's byte length against the function, before it is run: kPayloadTooLarge beyond
// max_input_bytes; kInvalidArgument when the input has a shape and the length is not exactly
// its size, or when it is not a whole number of elements. `name` is the function's.
Status CheckInputSize(size_t bytes, const FunctionSpec& spec, const std::string& name);

// The shape of a JSON invoke body: an object with exactly one of "input" (an array) and
// "input_base64" (a string), and optionally "output_format" ("json" or "base64", which sets
// `*base64_output`). kInvalidArgument naming what is wrong.
Status CheckInvokeBody(const nlohmann::json& body, bool* base64_output);

// The "timings_us" object of a JSON invoke's answer: queue, run and total, the start's
// breakdown for cold and warm starts, and the stages when they were timed.
nlohmann::json TimingsJson(const InvokeTimings& t, StartType start);

}  // namespace kchain::gateway::v1

#endif  // KCHAIN_GATEWAY_HTTP_V1_PROTOCOL_H_
