// FunctionSpec: what a function runs (its chain) and the sizes and types of its buffers.
//
// A spec is plain data. ValidateFunctionSpec() checks it against a device's limits; the
// runtime refuses to instantiate a spec that does not validate. Specs usually come from a
// manifest (kchain/manifest.h).
//
// Thread-safety: plain values; the functions here are pure and thread-safe.
#ifndef KCHAIN_FUNCTION_SPEC_H_
#define KCHAIN_FUNCTION_SPEC_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kchain/device.h"
#include "kchain/status.h"

namespace kchain {

// Element types of the input and output tensors. They matter only at the edges (decoding a
// JSON input, encoding a JSON output); the chain itself sees bytes.
enum class ElementType : uint8_t {
  kFloat32,
  kFloat64,
  kInt8,
  kInt16,
  kInt32,
  kInt64,
  kUint8,
  kUint16,
  kUint32,
  kUint64,
  kBool,  // one byte, 0 or 1
};

// "float32", "int64", "bool", ...
std::string_view ElementTypeName(ElementType type);
// Inverse of ElementTypeName. std::nullopt for an unknown name.
std::optional<ElementType> ParseElementType(std::string_view name);
// Size of one element in bytes.
size_t ElementSize(ElementType type);

// The type and shape of the input or the output. An empty shape means a flat vector whose
// length follows from the byte size.
struct TensorSpec {
  ElementType dtype = ElementType::kUint8;
  std::vector<int64_t> shape;

  // Product of the dims (1 for an empty shape is NOT implied: see the comment above).
  // std::nullopt when the shape is empty or the product overflows.
  std::optional<uint64_t> ElementCount() const;
};

// One stage of a chain: the launcher to call and the launch dimensions it is given.
struct Stage {
  std::string kernel;
  int grid = 1;
  int block = 1;
};

struct FunctionSpec {
  std::vector<Stage> chain;
  size_t max_input_bytes = 0;  // capacity of the input buffer; an invocation's input may be shorter
  size_t tmp_bytes = 0;        // scratch shared by the stages; may be 0
  size_t out_bytes = 0;        // the output returned to the caller
  size_t constant_bytes = 0;   // exact size of the constant blob; 0 when there is none
  TensorSpec input;
  TensorSpec output;
};

// Upper bound on the number of stages in a chain.
inline constexpr size_t kMaxChainLength = 4096;

// Checks `spec` against itself and `limits`. Returns kInvalidArgument with a message that
// names the offending field (e.g. "chain[1] (kernel 'pool'): block 2048 exceeds the device
// limit of 1024 threads per block") for: an empty or overlong chain, an invalid kernel name,
// grid or block outside [1, limit], a zero output or input size, a buffer larger than the
// device allows, buffers that together exceed device memory, a shape with a non-positive
// dim, and a shape whose byte size disagrees with the declared size.
Status ValidateFunctionSpec(const FunctionSpec& spec, const DeviceLimits& limits);

// "vecadd -> scale -> argmax": the chain's kernel names, for messages.
std::string ChainToString(const FunctionSpec& spec);

}  // namespace kchain

#endif  // KCHAIN_FUNCTION_SPEC_H_
