#include "gateway/http/tensor_codec.h"

#include <cmath>
#include <cstring>
#include <limits>

#include "runtime/json_input.h"

namespace kchain::gateway {
namespace {

using nlohmann::json;

constexpr size_t kMaxDepth = 32;

std::string Index(std::string_view base, const std::vector<size_t>& path) {
  std::string out(base);
  for (size_t i : path) out += "[" + std::to_string(i) + "]";
  return out;
}

const char* TypeOf(const json& v) {
  switch (v.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::boolean:
      return "a boolean";
    case json::value_t::string:
      return "a string";
    case json::value_t::object:
      return "an object";
    case json::value_t::array:
      return "an array";
    default:
      return "a number";
  }
}

template <typename T>
void Append(std::vector<std::byte>* out, T value) {
  const size_t at = out->size();
  out->resize(at + sizeof(T));
  std::memcpy(out->data() + at, &value, sizeof(T));
}

// Integral value of a JSON number, when it has one that fits [lo, hi].
template <typename T>
bool IntegerValue(const json& v, T* result) {
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<T>::max())) return false;
    *result = static_cast<T>(u);
    return true;
  }
  if (v.is_number_integer()) {
    const int64_t i = v.get<int64_t>();
    if constexpr (std::is_unsigned_v<T>) {
      if (i < 0 || static_cast<uint64_t>(i) > static_cast<uint64_t>(std::numeric_limits<T>::max()))
        return false;
    } else {
      if (i < static_cast<int64_t>(std::numeric_limits<T>::min()) ||
          i > static_cast<int64_t>(std::numeric_limits<T>::max()))
        return false;
    }
    *result = static_cast<T>(i);
    return true;
  }
  // An integral float such as 3.0, as some JSON producers write integers (and what the parser
  // makes of an integer too large for 64 bits). T's range is [-2^digits, 2^digits) for signed
  // and [0, 2^digits) for unsigned types: compare against those powers of two, which doubles
  // hold exactly. (T's max itself rounds up to 2^digits as a double, so "d > max" would let
  // 2^64 through, and converting it is undefined.)
  const double d = v.get<double>();
  if (!std::isfinite(d) || std::trunc(d) != d) return false;
  const double limit = std::ldexp(1.0, std::numeric_limits<T>::digits);
  const double lowest = std::is_signed_v<T> ? -limit : 0.0;
  if (d < lowest || d >= limit) return false;
  *result = static_cast<T>(d);
  return true;
}

Status AppendElement(const json& v, ElementType dtype, const std::string& where,
                     std::vector<std::byte>* out) {
  if (dtype == ElementType::kBool) {
    if (v.is_boolean()) {
      Append<uint8_t>(out, v.get<bool>() ? 1 : 0);
      return Status();
    }
    if (v.is_number_integer() && (v.get<int64_t>() == 0 || v.get<int64_t>() == 1)) {
      Append<uint8_t>(out, static_cast<uint8_t>(v.get<int64_t>()));
      return Status();
    }
    return InvalidArgumentError(where + ": expected true, false, 0 or 1, got " +
                                DescribeJsonValue(v));
  }
  if (!v.is_number()) {
    return InvalidArgumentError(where + ": expected a number, got " + TypeOf(v));
  }
  const std::string type_name(ElementTypeName(dtype));
  auto out_of_range = [&] {
    return InvalidArgumentError(where + ": " + DescribeJsonValue(v) + " is out of range for " +
                                type_name + (v.is_number_float() ? " (or not an integer)" : ""));
  };
  switch (dtype) {
    case ElementType::kFloat32: {
      const double d = v.get<double>();
      if (!std::isfinite(d) || std::fabs(d) > std::numeric_limits<float>::max()) {
        return out_of_range();
      }
      Append(out, static_cast<float>(d));
      return Status();
    }
    case ElementType::kFloat64: {
      const double d = v.get<double>();
      if (!std::isfinite(d)) return out_of_range();
      Append(out, d);
      return Status();
    }
#define KCHAIN_INT_CASE(enum_value, type)                  \
  case ElementType::enum_value: {                          \
    type x;                                                \
    if (!IntegerValue<type>(v, &x)) return out_of_range(); \
    Append(out, x);                                        \
    return Status();                                       \
  }
      KCHAIN_INT_CASE(kInt8, int8_t)
      KCHAIN_INT_CASE(kInt16, int16_t)
      KCHAIN_INT_CASE(kInt32, int32_t)
      KCHAIN_INT_CASE(kInt64, int64_t)
      KCHAIN_INT_CASE(kUint8, uint8_t)
      KCHAIN_INT_CASE(kUint16, uint16_t)
      KCHAIN_INT_CASE(kUint32, uint32_t)
      KCHAIN_INT_CASE(kUint64, uint64_t)
#undef KCHAIN_INT_CASE
    case ElementType::kBool:
      break;
  }
  return InternalError("unhandled element type");
}

// Appends the leaves of `v` depth-first. `dims` (from the first element at each depth) is
// the shape every node must have: an array of dims[d] elements at depth d, a scalar below.
Status Flatten(const json& v, ElementType dtype, std::string_view what, std::vector<size_t>* path,
               const std::vector<size_t>& dims, std::vector<std::byte>* out) {
  const size_t depth = path->size();
  if (depth == dims.size()) {
    if (v.is_array()) {
      return InvalidArgumentError(Index(what, *path) + " is an array where its siblings hold " +
                                  "scalars (ragged array)");
    }
    return AppendElement(v, dtype, Index(what, *path), out);
  }
  if (!v.is_array()) {
    return InvalidArgumentError(Index(what, *path) + " is " + TypeOf(v) +
                                " where its siblings are arrays (ragged array)");
  }
  if (v.size() != dims[depth]) {
    return InvalidArgumentError(Index(what, *path) + " has " + std::to_string(v.size()) +
                                " elements where its siblings have " + std::to_string(dims[depth]) +
                                " (ragged array)");
  }
  for (size_t i = 0; i < v.size(); ++i) {
    path->push_back(i);
    Status s = Flatten(v[i], dtype, what, path, dims, out);
    path->pop_back();
    if (!s.ok()) return s;
  }
  return Status();
}

std::string ShapeString(const std::vector<size_t>& dims) {
  std::string out = "[";
  for (size_t i = 0; i < dims.size(); ++i) out += (i ? ", " : "") + std::to_string(dims[i]);
  return out + "]";
}

}  // namespace

Status DecodeJsonTensor(const json& value, const TensorSpec& tensor, size_t max_bytes,
                        std::string_view what, std::vector<std::byte>* out) {
  if (!value.is_array()) {
    return InvalidArgumentError(std::string(what) + " must be an array of " +
                                std::string(ElementTypeName(tensor.dtype)) + " values, got " +
                                TypeOf(value));
  }
  const size_t elem = ElementSize(tensor.dtype);
  const auto expected = tensor.ElementCount();
  const size_t max_elements = expected ? static_cast<size_t>(*expected) : max_bytes / elem;
  // The shape as the first element at each depth tells it.
  std::vector<size_t> dims;
  size_t count = 1;
  for (const json* node = &value; node->is_array(); node = &(*node)[0]) {
    if (dims.size() == kMaxDepth) {
      return InvalidArgumentError(std::string(what) + " is nested deeper than " +
                                  std::to_string(kMaxDepth) + " levels");
    }
    dims.push_back(node->size());
    size_t product = 0;
    if (__builtin_mul_overflow(count, node->size(), &product)) product = SIZE_MAX;
    count = product;
    if (node->empty()) break;
  }
  if (count > max_elements) {
    return PayloadTooLargeError(std::string(what) + " has more than " +
                                std::to_string(max_elements) + " elements (at most " +
                                std::to_string(max_elements * elem) + " bytes)");
  }
  out->reserve(out->size() + count * elem);
  std::vector<size_t> path;
  KCHAIN_RETURN_IF_ERROR(Flatten(value, tensor.dtype, what, &path, dims, out));
  if (expected) {
    if (count != *expected) {
      return InvalidArgumentError(
          std::string(what) + " has " + std::to_string(count) + " elements; the function takes " +
          std::to_string(*expected) + " (shape " +
          ShapeString(std::vector<size_t>(tensor.shape.begin(), tensor.shape.end())) + ")");
    }
    // Nested input must have the function's shape; a flat list of the right length is fine.
    if (dims.size() > 1) {
      const std::vector<size_t> want(tensor.shape.begin(), tensor.shape.end());
      if (dims != want) {
        return InvalidArgumentError(std::string(what) + " has shape " + ShapeString(dims) +
                                    "; the function takes " + ShapeString(want));
      }
    }
  }
  return Status();
}

json EncodeJsonTensor(std::span<const std::byte> bytes, ElementType dtype) {
  json array = json::array();
  const size_t elem = ElementSize(dtype);
  const size_t n = bytes.size() / elem;
  auto& values = array.get_ref<json::array_t&>();
  values.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    const std::byte* p = bytes.data() + i * elem;
    auto read = [p](auto zero) {
      decltype(zero) v;
      std::memcpy(&v, p, sizeof v);
      return v;
    };
    switch (dtype) {
      case ElementType::kFloat32: {
        const float f = read(0.0f);
        values.emplace_back(std::isfinite(f) ? json(f) : json(nullptr));
        break;
      }
      case ElementType::kFloat64: {
        const double d = read(0.0);
        values.emplace_back(std::isfinite(d) ? json(d) : json(nullptr));
        break;
      }
      case ElementType::kInt8:
        values.emplace_back(read(int8_t{}));
        break;
      case ElementType::kInt16:
        values.emplace_back(read(int16_t{}));
        break;
      case ElementType::kInt32:
        values.emplace_back(read(int32_t{}));
        break;
      case ElementType::kInt64:
        values.emplace_back(read(int64_t{}));
        break;
      case ElementType::kUint8:
        values.emplace_back(read(uint8_t{}));
        break;
      case ElementType::kUint16:
        values.emplace_back(read(uint16_t{}));
        break;
      case ElementType::kUint32:
        values.emplace_back(read(uint32_t{}));
        break;
      case ElementType::kUint64:
        values.emplace_back(read(uint64_t{}));
        break;
      case ElementType::kBool:
        values.emplace_back(read(uint8_t{}) != 0);
        break;
    }
  }
  return array;
}

namespace {
constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int DecodeChar(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}
}  // namespace

std::string Base64Encode(std::span<const std::byte> bytes) {
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    const uint32_t v = (std::to_integer<uint32_t>(bytes[i]) << 16) |
                       (std::to_integer<uint32_t>(bytes[i + 1]) << 8) |
                       std::to_integer<uint32_t>(bytes[i + 2]);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  const size_t rest = bytes.size() - i;
  if (rest > 0) {
    uint32_t v = std::to_integer<uint32_t>(bytes[i]) << 16;
    if (rest == 2) v |= std::to_integer<uint32_t>(bytes[i + 1]) << 8;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += rest == 2 ? kAlphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

StatusOr<std::vector<std::byte>> Base64Decode(std::string_view text) {
  size_t len = text.size();
  while (len > 0 && text[len - 1] == '=') --len;
  if (text.size() - len > 2 || (text.size() % 4 != 0 && text.size() != len)) {
    return InvalidArgumentError("base64: bad padding");
  }
  if (len % 4 == 1) return InvalidArgumentError("base64: truncated input");
  std::vector<std::byte> out;
  out.reserve(len * 3 / 4);
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < len; ++i) {
    const int d = DecodeChar(text[i]);
    if (d < 0) {
      return InvalidArgumentError("base64: invalid character at position " + std::to_string(i));
    }
    acc = (acc << 6) | static_cast<uint32_t>(d);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<std::byte>((acc >> bits) & 0xff));
    }
  }
  return out;
}

}  // namespace kchain::gateway
