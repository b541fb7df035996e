#include "runtime/json_input.h"

#include <string>
#include <unordered_set>
#include <vector>

namespace kchain {
namespace {

using nlohmann::json;

// Thrown from the parser callback to stop the parse; never escapes ParseJsonInput.
struct Refused {
  std::string why;
};

std::string Clip(std::string_view s, size_t n) {
  std::string out(s.substr(0, n));
  if (s.size() > n) out += "...";
  return out;
}

}  // namespace

StatusOr<json> ParseJsonInput(std::string_view text, std::string_view what, JsonLimits limits) {
  // One key set per object being parsed, innermost last: a key always belongs to the
  // innermost open container, which is then an object.
  std::vector<std::unordered_set<std::string>> keys;
  const int max_depth = limits.max_depth < 1 ? 1 : limits.max_depth;
  json::parser_callback_t check = [&](int depth, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
      case json::parse_event_t::array_start:
        // `depth` counts the containers already open around this one.
        if (depth + 1 > max_depth) {
          throw Refused{"nested deeper than " + std::to_string(max_depth) + " levels"};
        }
        if (event == json::parse_event_t::object_start) keys.emplace_back();
        break;
      case json::parse_event_t::object_end:
        if (!keys.empty()) keys.pop_back();
        break;
      case json::parse_event_t::key:
        if (!keys.empty() && parsed.is_string() &&
            !keys.back().insert(parsed.get_ref<const std::string&>()).second) {
          throw Refused{"duplicate key '" + Clip(parsed.get_ref<const std::string&>(), 64) +
                        "' (each key may appear once in an object)"};
        }
        break;
      default:
        break;
    }
    return true;
  };
  const std::string prefix = std::string(what) + ": ";
  try {
    return json::parse(text.begin(), text.end(), check, /*allow_exceptions=*/true);
  } catch (const Refused& refused) {
    return InvalidArgumentError(prefix + refused.why);
  } catch (const json::out_of_range& e) {
    // 1e999 and the like: the parser reports them as out of range.
    return InvalidArgumentError(prefix + "number out of range (" + e.what() + ")");
  } catch (const json::exception& e) {
    return InvalidArgumentError(prefix + "not valid JSON: " + e.what());
  } catch (const std::exception& e) {  // std::bad_alloc and the like
    return InvalidArgumentError(prefix + "cannot be parsed: " + e.what());
  }
}

std::string DescribeJsonValue(const json& value) {
  switch (value.type()) {
    case json::value_t::array:
      return "an array of " + std::to_string(value.size()) + " elements";
    case json::value_t::object:
      return "an object";
    case json::value_t::string:
      return "the string \"" + Clip(value.get_ref<const std::string&>(), 40) + "\"";
    default:
      // Scalars print without recursion.
      return Clip(value.dump(-1, ' ', false, json::error_handler_t::replace), 40);
  }
}

}  // namespace kchain
