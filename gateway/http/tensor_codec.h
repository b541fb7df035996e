// Tensors at the HTTP edge: JSON typed arrays and base64 to bytes, and back.
//
// JSON is the convenience path for small inputs; the binary body is the fast path and never
// comes here. Thread-safety: pure functions.
#ifndef KCHAIN_GATEWAY_HTTP_TENSOR_CODEC_H_
#define KCHAIN_GATEWAY_HTTP_TENSOR_CODEC_H_

#include <cstddef>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kchain/function_spec.h"
#include "kchain/status.h"

namespace kchain::gateway {

// Decodes `value`, a flat array or nested arrays of numbers (booleans for bool), into
// little-endian elements of `tensor.dtype` appended to `out`. When `tensor.shape` is given the
// element count must match it, and nested arrays must have exactly that shape. Without a
// shape, the bytes must fit `max_bytes`. Integers are range-checked; floats must be finite and
// fit float32 when the type is float32; integer types accept integral numbers only.
// kInvalidArgument naming the first offending element (e.g. "input[3][1]: 300 is out of range
// for uint8"); kPayloadTooLarge when a shapeless input exceeds max_bytes.
Status DecodeJsonTensor(const nlohmann::json& value, const TensorSpec& tensor, size_t max_bytes,
                        std::string_view what, std::vector<std::byte>* out);

// The elements of `bytes` as a flat JSON array of `dtype` values. NaN and infinities become
// null (JSON has no spelling for them).
nlohmann::json EncodeJsonTensor(std::span<const std::byte> bytes, ElementType dtype);

// Standard base64 (RFC 4648, with padding).
std::string Base64Encode(std::span<const std::byte> bytes);
// Accepts standard base64 with or without padding; rejects anything else with
// kInvalidArgument naming the offending position.
StatusOr<std::vector<std::byte>> Base64Decode(std::string_view text);

}  // namespace kchain::gateway

#endif  // KCHAIN_GATEWAY_HTTP_TENSOR_CODEC_H_
