#include "kchain/function_spec.h"

#include <array>
#include <limits>
#include <utility>

#include "kchain/library.h"

namespace kchain {
namespace {

struct TypeInfo {
  ElementType type;
  std::string_view name;
  size_t size;
};

constexpr std::array<TypeInfo, 11> kTypes = {{
    {ElementType::kFloat32, "float32", 4},
    {ElementType::kFloat64, "float64", 8},
    {ElementType::kInt8, "int8", 1},
    {ElementType::kInt16, "int16", 2},
    {ElementType::kInt32, "int32", 4},
    {ElementType::kInt64, "int64", 8},
    {ElementType::kUint8, "uint8", 1},
    {ElementType::kUint16, "uint16", 2},
    {ElementType::kUint32, "uint32", 4},
    {ElementType::kUint64, "uint64", 8},
    {ElementType::kBool, "bool", 1},
}};

const TypeInfo& Info(ElementType type) {
  for (const auto& info : kTypes) {
    if (info.type == type) return info;
  }
  return kTypes[0];
}

std::string Bytes(size_t n) { return std::to_string(n) + " bytes"; }

// Checks one tensor against the byte size it must describe. `exact` says whether the shape's
// size must equal `bytes` (output, fixed input) or merely divide into it (flat vectors).
Status CheckTensor(const char* what, const TensorSpec& tensor, size_t bytes) {
  const size_t elem = ElementSize(tensor.dtype);
  if (tensor.shape.empty()) {
    if (bytes % elem != 0) {
      return InvalidArgumentError(std::string(what) + ": " + Bytes(bytes) +
                                  " is not a whole number of " +
                                  std::string(ElementTypeName(tensor.dtype)) + " elements");
    }
    return Status();
  }
  for (size_t i = 0; i < tensor.shape.size(); ++i) {
    if (tensor.shape[i] <= 0) {
      return InvalidArgumentError(std::string(what) + ": shape[" + std::to_string(i) + "] is " +
                                  std::to_string(tensor.shape[i]) + "; dims must be positive");
    }
  }
  const auto count = tensor.ElementCount();
  if (!count || *count > std::numeric_limits<size_t>::max() / elem || *count * elem != bytes) {
    return InvalidArgumentError(std::string(what) + ": shape holds " +
                                (count ? std::to_string(*count) : std::string("too many")) + " " +
                                std::string(ElementTypeName(tensor.dtype)) + " elements" +
                                (count && *count <= std::numeric_limits<size_t>::max() / elem
                                     ? " (" + Bytes(*count * elem) + ")"
                                     : std::string()) +
                                " but the buffer is declared as " + Bytes(bytes));
  }
  return Status();
}

}  // namespace

std::string_view ElementTypeName(ElementType type) { return Info(type).name; }

std::optional<ElementType> ParseElementType(std::string_view name) {
  for (const auto& info : kTypes) {
    if (info.name == name) return info.type;
  }
  return std::nullopt;
}

size_t ElementSize(ElementType type) { return Info(type).size; }

std::optional<uint64_t> TensorSpec::ElementCount() const {
  if (shape.empty()) return std::nullopt;
  uint64_t count = 1;
  for (int64_t dim : shape) {
    if (dim <= 0) return std::nullopt;
    if (count > std::numeric_limits<uint64_t>::max() / static_cast<uint64_t>(dim)) {
      return std::nullopt;
    }
    count *= static_cast<uint64_t>(dim);
  }
  return count;
}

Status ValidateFunctionSpec(const FunctionSpec& spec, const DeviceLimits& limits) {
  if (spec.chain.empty()) {
    return InvalidArgumentError("chain is empty: a function needs at least one stage");
  }
  if (spec.chain.size() > kMaxChainLength) {
    return InvalidArgumentError("chain has " + std::to_string(spec.chain.size()) +
                                " stages; at most " + std::to_string(kMaxChainLength) +
                                " are allowed");
  }
  for (size_t i = 0; i < spec.chain.size(); ++i) {
    const Stage& stage = spec.chain[i];
    const std::string where = "chain[" + std::to_string(i) + "]";
    if (!IsValidKernelName(stage.kernel)) {
      return InvalidArgumentError(where + ": kernel name '" + stage.kernel +
                                  "' is not a C identifier of at most 128 characters");
    }
    const std::string named = where + " (kernel '" + stage.kernel + "')";
    if (stage.grid < 1 || stage.grid > limits.max_grid_size) {
      return InvalidArgumentError(named + ": grid " + std::to_string(stage.grid) +
                                  " is outside [1, " + std::to_string(limits.max_grid_size) +
                                  "], the device's grid limit");
    }
    if (stage.block < 1 || stage.block > limits.max_threads_per_block) {
      return InvalidArgumentError(named + ": block " + std::to_string(stage.block) +
                                  " is outside [1, " +
                                  std::to_string(limits.max_threads_per_block) +
                                  "], the device's limit of threads per block");
    }
  }

  if (spec.max_input_bytes == 0) {
    return InvalidArgumentError("max_input_bytes is 0: a function must accept some input");
  }
  if (spec.out_bytes == 0) {
    return InvalidArgumentError("out_bytes is 0: a function must return some output");
  }
  const std::pair<const char*, size_t> buffers[] = {{"max_input_bytes", spec.max_input_bytes},
                                                    {"tmp_bytes", spec.tmp_bytes},
                                                    {"out_bytes", spec.out_bytes},
                                                    {"constant_bytes", spec.constant_bytes}};
  size_t total = 0;
  for (const auto& [name, bytes] : buffers) {
    if (bytes > limits.max_buffer_bytes) {
      return InvalidArgumentError(std::string(name) + " is " + Bytes(bytes) +
                                  ", more than the device allows for one buffer (" +
                                  Bytes(limits.max_buffer_bytes) + ")");
    }
    total += bytes;  // cannot overflow: each term is bounded by max_buffer_bytes
  }
  if (total > limits.total_memory_bytes) {
    return InvalidArgumentError("the buffers need " + Bytes(total) +
                                " together, more than the device has (" +
                                Bytes(limits.total_memory_bytes) + ")");
  }

  KCHAIN_RETURN_IF_ERROR(CheckTensor("input", spec.input, spec.max_input_bytes));
  KCHAIN_RETURN_IF_ERROR(CheckTensor("output", spec.output, spec.out_bytes));
  return Status();
}

std::string ChainToString(const FunctionSpec& spec) {
  std::string out;
  for (const Stage& stage : spec.chain) {
    if (!out.empty()) out += " -> ";
    out += stage.kernel;
  }
  return out;
}

}  // namespace kchain
