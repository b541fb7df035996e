// Parsing untrusted JSON: the one parser every JSON input goes through (manifests, request
// bodies, the v2 inference header, API key and config files).
//
// nlohmann::json accepts what RFC 8259 allows, which is more than a server should: objects
// nested without limit (and its dump() recurses, so a deep value overflows the stack as soon
// as an error message prints it), duplicate keys (the last silently wins), and numbers such as
// 1e999 that it reports with an exception type callers rarely expect. ParseJsonInput() bounds
// the depth while the parser runs (nothing deeper is ever built), rejects duplicate keys, and
// turns every failure into a status. It never throws and never recurses over the input.
//
// Internal to the manifest target (the JSON edge); callers link nlohmann_json themselves.
// Thread-safety: a pure function.
#ifndef KCHAIN_RUNTIME_JSON_INPUT_H_
#define KCHAIN_RUNTIME_JSON_INPUT_H_

#include <nlohmann/json.hpp>
#include <string_view>

#include "kchain/status.h"

namespace kchain {

struct JsonLimits {
  // Containers (objects and arrays) nested at most this deep; the top-level value is depth 1.
  int max_depth = 64;
};

// Parses `text`. kInvalidArgument "<what>: not valid JSON: ...", "<what>: nested deeper than N
// levels (at byte B)", "<what>: duplicate key 'k' (at byte B)" or "<what>: number out of
// range ...". The message quotes at most a short prefix of the input.
StatusOr<nlohmann::json> ParseJsonInput(std::string_view text, std::string_view what,
                                        JsonLimits limits = {});

// A short description of a JSON value for error messages, which never prints a container
// (so it never recurses): a scalar's text (cut to 40 characters), else "an array of N
// elements" or "an object".
std::string DescribeJsonValue(const nlohmann::json& value);

}  // namespace kchain

#endif  // KCHAIN_RUNTIME_JSON_INPUT_H_
