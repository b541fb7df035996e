// The KServe v2 / Open Inference Protocol (what Triton, tritonclient and perf_analyzer speak),
// its HTTP/REST binding, as kchain serves it: the JSON documents and the inference request
// and response, with the binary tensor data extension. No HTTP library here:
// gateway/http/v2_http.cc routes requests to these functions. docs/api.md ("The v2 inference
// protocol") is the reference.
//
// A kchain function is a model with one version (its current one), one input tensor and one
// output tensor. Tensor names come from the manifest's input.name and output.name, by default
// "input" and "output"; datatypes from its dtypes (float32 is FP32, uint8 is UINT8, ...);
// shapes from its shapes (a shapeless tensor is [-1]). Models are not batched
// (max_batch_size 0): a request's input has the manifest's shape, or that shape behind one
// leading batch dimension of 1, and the output then gets the same leading 1.
//
// Thread-safety: pure functions.
#ifndef KCHAIN_GATEWAY_HTTP_V2_PROTOCOL_H_
#define KCHAIN_GATEWAY_HTTP_V2_PROTOCOL_H_

#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "gateway/core/metrics.h"
#include "kchain/device.h"
#include "kchain/function_spec.h"
#include "kchain/manifest.h"
#include "kchain/status.h"

namespace kchain::gateway::v2 {

// The platform (and backend) models report.
inline constexpr std::string_view kPlatform = "kchain";
// The header that splits a request or response body into its JSON and its binary tensor data.
inline constexpr std::string_view kHeaderLengthHeader = "Inference-Header-Content-Length";

// "FP32", "INT64", "UINT8", "BOOL", ...: the protocol's datatype of an element type.
std::string_view DataTypeName(ElementType type);
// "TYPE_FP32", ...: the model configuration's spelling.
std::string ConfigDataTypeName(ElementType type);

// The tensors' names: the manifest's, else "input" and "output".
std::string_view InputName(const kchain::Manifest& manifest);
std::string_view OutputName(const kchain::Manifest& manifest);

// One deployed function as a model.
struct Model {
  std::string_view name;
  uint64_t version = 0;
  const kchain::Manifest* manifest = nullptr;
};

// GET /v2: {"name": "kchain", "version": ..., "extensions": [...]}.
nlohmann::json ServerMetadata();
// GET /v2/models/{name}: {"name", "versions": ["<n>"], "platform", "inputs", "outputs"}, each
// tensor {"name", "datatype", "shape"}.
nlohmann::json ModelMetadata(const Model& model);
// GET /v2/models/{name}/config: Triton's model configuration (max_batch_size 0, input,
// output, instance_group of `max_instances` instances on `device`).
nlohmann::json ModelConfig(const Model& model, std::string_view description, int max_instances,
                           kchain::DeviceKind device);
// One entry of GET /v2/models/{name}/stats's "model_stats", from the function's metrics.
nlohmann::json ModelStatistics(const Model& model, const FunctionMetrics& metrics);

// A checked inference request for one model.
struct InferRequest {
  std::optional<std::string> id;  // echoed in the response
  std::vector<int64_t> shape;     // the input's shape as the request gave it
  bool batched = false;           // shape has the leading batch dimension of 1
  // The input's bytes: binary data at [binary_offset, +input_bytes) of the request body, or
  // the decoded JSON data in `decoded`.
  bool binary_input = false;
  size_t binary_offset = 0;
  size_t input_bytes = 0;
  std::vector<std::byte> decoded;
  bool binary_output = false;  // the output goes as binary data after the JSON header

  std::span<const std::byte> input(std::string_view body) const {
    return binary_input ? std::as_bytes(std::span(body.data() + binary_offset, input_bytes))
                        : std::span<const std::byte>(decoded);
  }
};

// Parses and checks an inference request body against `model`. `header_length` is the value
// of the Inference-Header-Content-Length header (nullopt when absent: the whole body is
// JSON). kInvalidArgument for anything the protocol or the model does not allow (malformed
// JSON, a wrong input name, datatype or shape, data that does not match its shape, a
// binary_data_size that disagrees with the shape or with the body, an unknown output),
// kPayloadTooLarge for JSON data beyond the input's capacity.
StatusOr<InferRequest> ParseInferRequest(std::string_view body, std::optional<size_t> header_length,
                                         const Model& model);

// The Inference-Header-Content-Length header's value: a decimal byte count.
StatusOr<size_t> ParseHeaderLength(std::string_view value);

// An inference response body: the JSON header, followed by the output's bytes when
// binary_output (then header_length is the JSON's size, for Inference-Header-Content-Length).
struct InferResponse {
  std::string body;
  size_t header_length = 0;
  bool binary = false;
};
InferResponse BuildInferResponse(const InferRequest& request, const Model& model,
                                 std::span<const std::byte> output);

}  // namespace kchain::gateway::v2

#endif  // KCHAIN_GATEWAY_HTTP_V2_PROTOCOL_H_
