#include "gateway/http/v2_protocol.h"

#include <algorithm>
#include <charconv>
#include <limits>

#include "gateway/http/tensor_codec.h"
#include "runtime/json_input.h"

namespace kchain::gateway::v2 {
namespace {

// The request id is echoed in the response: bounded.
constexpr size_t kMaxRequestIdBytes = 256;

using nlohmann::json;

std::string ShapeString(const std::vector<int64_t>& shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) out += (i ? ", " : "") + std::to_string(shape[i]);
  return out + "]";
}

// The shape metadata reports for a tensor: its manifest shape, or [-1] (any length).
std::vector<int64_t> MetadataShape(const TensorSpec& tensor) {
  return tensor.shape.empty() ? std::vector<int64_t>{-1} : tensor.shape;
}

json TensorMetadata(std::string_view name, const TensorSpec& tensor) {
  return {
      {"name", name}, {"datatype", DataTypeName(tensor.dtype)}, {"shape", MetadataShape(tensor)}};
}

json Duration(uint64_t count, uint64_t ns) { return {{"count", count}, {"ns", ns}}; }

// The element count of `shape`, or nullopt on a negative dim or an overflow.
std::optional<uint64_t> ElementCount(const std::vector<int64_t>& shape) {
  uint64_t count = 1;
  for (int64_t d : shape) {
    if (d < 0) return std::nullopt;
    if (__builtin_mul_overflow(count, static_cast<uint64_t>(d), &count)) return std::nullopt;
  }
  return count;
}

Status CheckKeys(const json& object, std::string_view where,
                 std::initializer_list<std::string_view> allowed) {
  for (const auto& item : object.items()) {
    bool known = false;
    for (auto key : allowed) known = known || item.key() == key;
    if (!known) {
      std::string list;
      for (auto key : allowed) list += (list.empty() ? "" : ", ") + std::string(key);
      return InvalidArgumentError(std::string(where) + ": unknown key '" + item.key() +
                                  "' (expected " + list + ")");
    }
  }
  return Status();
}

// Checks the input's shape against the model and says whether it carries the batch dim.
Status CheckShape(const std::vector<int64_t>& shape, const kchain::Manifest& manifest,
                  std::string_view model, bool* batched) {
  const TensorSpec& spec = manifest.spec.input;
  const std::string name(InputName(manifest));
  auto fail = [&] {
    const std::string want =
        spec.shape.empty()
            ? "[n] or [1, n] with at most " +
                  std::to_string(manifest.spec.max_input_bytes / ElementSize(spec.dtype)) +
                  " elements"
            : ShapeString(spec.shape) + " (or " + ShapeString([&] {
                std::vector<int64_t> b{1};
                b.insert(b.end(), spec.shape.begin(), spec.shape.end());
                return b;
              }()) +
                  ")";
    return InvalidArgumentError("input '" + name + "' has shape " + ShapeString(shape) +
                                "; model '" + std::string(model) + "' takes " + want);
  };
  for (int64_t d : shape) {
    if (d < 0) return fail();
  }
  const size_t rank = spec.shape.empty() ? 1 : spec.shape.size();
  *batched = shape.size() == rank + 1 && shape[0] == 1;
  if (shape.size() != rank && !*batched) return fail();
  if (spec.shape.empty()) return Status();  // the size is checked against the capacity
  if (!std::equal(spec.shape.begin(), spec.shape.end(), shape.begin() + (*batched ? 1 : 0))) {
    return fail();
  }
  return Status();
}

Status ParseInput(const json& input, std::string_view body, std::optional<size_t> header_length,
                  const Model& model, InferRequest* request) {
  const kchain::Manifest& manifest = *model.manifest;
  const TensorSpec& spec = manifest.spec.input;
  const std::string model_name(model.name);
  if (!input.is_object()) return InvalidArgumentError("inputs[0] must be an object");
  KCHAIN_RETURN_IF_ERROR(
      CheckKeys(input, "inputs[0]", {"name", "shape", "datatype", "parameters", "data"}));
  for (const char* key : {"name", "shape", "datatype"}) {
    if (!input.contains(key)) {
      return InvalidArgumentError(std::string("inputs[0].") + key + " is required");
    }
  }
  if (!input["name"].is_string()) return InvalidArgumentError("inputs[0].name must be a string");
  const std::string name = input["name"].get<std::string>();
  if (name != InputName(manifest)) {
    return InvalidArgumentError("unknown input '" + name + "' for model '" + model_name +
                                "' (its input is '" + std::string(InputName(manifest)) + "')");
  }
  if (!input["datatype"].is_string()) {
    return InvalidArgumentError("inputs[0].datatype must be a string");
  }
  const std::string datatype = input["datatype"].get<std::string>();
  if (datatype != DataTypeName(spec.dtype)) {
    return InvalidArgumentError("input '" + name + "' has datatype " + datatype + "; model '" +
                                model_name + "' takes " + std::string(DataTypeName(spec.dtype)));
  }
  const json& shape = input["shape"];
  if (!shape.is_array()) return InvalidArgumentError("inputs[0].shape must be an array");
  if (shape.size() > 32) {
    return InvalidArgumentError("inputs[0].shape has " + std::to_string(shape.size()) +
                                " dimensions; at most 32 are allowed");
  }
  for (size_t i = 0; i < shape.size(); ++i) {
    const json& d = shape[i];
    if (!d.is_number_integer()) {
      return InvalidArgumentError("inputs[0].shape[" + std::to_string(i) +
                                  "] must be an integer, got " + kchain::DescribeJsonValue(d));
    }
    request->shape.push_back(d.is_number_unsigned()
                                 ? static_cast<int64_t>(std::min<uint64_t>(
                                       d.get<uint64_t>(), std::numeric_limits<int64_t>::max()))
                                 : d.get<int64_t>());
  }
  KCHAIN_RETURN_IF_ERROR(CheckShape(request->shape, manifest, model.name, &request->batched));
  const size_t elem = ElementSize(spec.dtype);
  const auto count = ElementCount(request->shape);
  if (!count || *count > manifest.spec.max_input_bytes / elem) {
    return PayloadTooLargeError("input '" + name + "' of shape " + ShapeString(request->shape) +
                                " is larger than model '" + model_name + "' accepts (" +
                                std::to_string(manifest.spec.max_input_bytes) + " bytes)");
  }
  const size_t bytes = static_cast<size_t>(*count) * elem;

  std::optional<uint64_t> binary_size;
  if (input.contains("parameters")) {
    const json& parameters = input["parameters"];
    if (!parameters.is_object()) {
      return InvalidArgumentError("inputs[0].parameters must be an object");
    }
    for (const auto& item : parameters.items()) {
      if (item.key() == "binary_data_size") {
        const json& v = item.value();
        if (!v.is_number_unsigned() && !(v.is_number_integer() && v.get<int64_t>() >= 0)) {
          return InvalidArgumentError(
              "inputs[0].parameters.binary_data_size must be a non-negative integer");
        }
        binary_size = v.get<uint64_t>();
      } else if (item.key().rfind("shared_memory_", 0) == 0) {
        return InvalidArgumentError(
            "kchain does not support the shared memory extensions: send the input's data in "
            "the request (\"data\", or binary_data_size with the binary tensor data extension)");
      }
      // Other parameters are for other servers' extensions; kchain has no use for them.
    }
  }
  const size_t after_header = header_length ? body.size() - *header_length : 0;
  if (binary_size) {
    if (input.contains("data")) {
      return InvalidArgumentError(
          "inputs[0] has both data and parameters.binary_data_size: give one");
    }
    if (!header_length) {
      return InvalidArgumentError(
          "inputs[0].parameters.binary_data_size needs the Inference-Header-Content-Length "
          "header (the size of the JSON part of the body)");
    }
    if (*binary_size != bytes) {
      return InvalidArgumentError("inputs[0].parameters.binary_data_size is " +
                                  std::to_string(*binary_size) + " bytes, but shape " +
                                  ShapeString(request->shape) + " of " + datatype + " is " +
                                  std::to_string(bytes) + " bytes");
    }
    if (after_header != bytes) {
      return InvalidArgumentError(
          "the body holds " + std::to_string(after_header) +
          " bytes after its JSON header (Inference-Header-Content-Length: " +
          std::to_string(*header_length) + "), but the inputs declare " + std::to_string(bytes) +
          " (binary_data_size)");
    }
    request->binary_input = true;
    request->binary_offset = *header_length;
    request->input_bytes = bytes;
    return Status();
  }
  if (!input.contains("data")) {
    return InvalidArgumentError(
        "inputs[0] has no data: give \"data\" (an array), or parameters.binary_data_size with "
        "the bytes after the JSON header");
  }
  if (after_header != 0) {
    return InvalidArgumentError("the body holds " + std::to_string(after_header) +
                                " bytes after its JSON header, but no input declares "
                                "parameters.binary_data_size");
  }
  const TensorSpec as_sent{spec.dtype, request->shape};  // nested data must have this shape
  KCHAIN_RETURN_IF_ERROR(DecodeJsonTensor(input["data"], as_sent, manifest.spec.max_input_bytes,
                                          "inputs[0].data", &request->decoded));
  request->input_bytes = request->decoded.size();
  return Status();
}

Status ParseOutputs(const json& outputs, const kchain::Manifest& manifest, std::string_view model,
                    bool* binary) {
  if (!outputs.is_array()) return InvalidArgumentError("outputs must be an array");
  if (outputs.size() > 1) {
    return InvalidArgumentError("outputs names " + std::to_string(outputs.size()) +
                                " outputs; model '" + std::string(model) + "' has one, '" +
                                std::string(OutputName(manifest)) + "'");
  }
  for (const json& output : outputs) {
    if (!output.is_object()) return InvalidArgumentError("outputs[0] must be an object");
    KCHAIN_RETURN_IF_ERROR(CheckKeys(output, "outputs[0]", {"name", "parameters"}));
    if (!output.contains("name") || !output["name"].is_string()) {
      return InvalidArgumentError("outputs[0].name is required (a string)");
    }
    const std::string name = output["name"].get<std::string>();
    if (name != OutputName(manifest)) {
      return InvalidArgumentError("unknown output '" + name + "' for model '" + std::string(model) +
                                  "' (its output is '" + std::string(OutputName(manifest)) + "')");
    }
    if (!output.contains("parameters")) continue;
    const json& parameters = output["parameters"];
    if (!parameters.is_object()) {
      return InvalidArgumentError("outputs[0].parameters must be an object");
    }
    for (const auto& item : parameters.items()) {
      if (item.key() == "binary_data") {
        if (!item.value().is_boolean()) {
          return InvalidArgumentError("outputs[0].parameters.binary_data must be a boolean");
        }
        *binary = item.value().get<bool>();
      } else if (item.key() == "classification") {
        return InvalidArgumentError("kchain does not support the classification extension");
      } else if (item.key().rfind("shared_memory_", 0) == 0) {
        return InvalidArgumentError("kchain does not support the shared memory extensions");
      }
    }
  }
  return Status();
}

}  // namespace

std::string_view DataTypeName(ElementType type) {
  switch (type) {
    case ElementType::kFloat32:
      return "FP32";
    case ElementType::kFloat64:
      return "FP64";
    case ElementType::kInt8:
      return "INT8";
    case ElementType::kInt16:
      return "INT16";
    case ElementType::kInt32:
      return "INT32";
    case ElementType::kInt64:
      return "INT64";
    case ElementType::kUint8:
      return "UINT8";
    case ElementType::kUint16:
      return "UINT16";
    case ElementType::kUint32:
      return "UINT32";
    case ElementType::kUint64:
      return "UINT64";
    case ElementType::kBool:
      return "BOOL";
  }
  return "UINT8";
}

std::string ConfigDataTypeName(ElementType type) {
  return "TYPE_" + std::string(DataTypeName(type));
}

std::string_view InputName(const kchain::Manifest& manifest) {
  return manifest.input_name.empty() ? std::string_view("input") : manifest.input_name;
}

std::string_view OutputName(const kchain::Manifest& manifest) {
  return manifest.output_name.empty() ? std::string_view("output") : manifest.output_name;
}

json ServerMetadata() {
  return {{"name", "kchain"},
          {"version", KCHAIN_VERSION},
          {"extensions",
           {"binary_tensor_data", "model_repository", "model_configuration", "statistics"}}};
}

json ModelMetadata(const Model& model) {
  const kchain::Manifest& m = *model.manifest;
  return {{"name", model.name},
          {"versions", {std::to_string(model.version)}},
          {"platform", kPlatform},
          {"inputs", {TensorMetadata(InputName(m), m.spec.input)}},
          {"outputs", {TensorMetadata(OutputName(m), m.spec.output)}}};
}

json ModelConfig(const Model& model, std::string_view description, int max_instances,
                 kchain::DeviceKind device) {
  const kchain::Manifest& m = *model.manifest;
  json config = {{"name", model.name},
                 {"platform", kPlatform},
                 {"backend", kPlatform},
                 {"version_policy", {{"specific", {{"versions", {model.version}}}}}},
                 {"max_batch_size", 0},
                 {"input",
                  {{{"name", InputName(m)},
                    {"data_type", ConfigDataTypeName(m.spec.input.dtype)},
                    {"dims", MetadataShape(m.spec.input)}}}},
                 {"output",
                  {{{"name", OutputName(m)},
                    {"data_type", ConfigDataTypeName(m.spec.output.dtype)},
                    {"dims", MetadataShape(m.spec.output)}}}},
                 {"instance_group",
                  {{{"name", model.name},
                    {"count", max_instances},
                    {"kind", device == kchain::DeviceKind::kCuda ? "KIND_GPU" : "KIND_CPU"}}}}};
  if (!description.empty()) {
    config["parameters"] = {{"description", {{"string_value", description}}}};
  }
  return config;
}

json ModelStatistics(const Model& model, const FunctionMetrics& metrics) {
  const uint64_t success = metrics.success.load(std::memory_order_relaxed);
  uint64_t failed = 0;
  for (const auto& f : metrics.failure) failed += f.load(std::memory_order_relaxed);
  uint64_t request_ns = 0;
  for (const auto& h : metrics.request_duration) request_ns += h.sum_ns();
  const uint64_t queue_ns = metrics.queue_duration_us.load(std::memory_order_relaxed) * 1000;
  const uint64_t compute_ns = metrics.compute_duration_us.load(std::memory_order_relaxed) * 1000;
  return {{"name", model.name},
          {"version", std::to_string(model.version)},
          {"last_inference", metrics.last_success_ms.load(std::memory_order_relaxed)},
          {"inference_count", success},
          {"execution_count", success},
          {"inference_stats",
           {{"success", Duration(success, request_ns)},
            {"fail", Duration(failed, 0)},
            {"queue", Duration(success, queue_ns)},
            {"compute_input", Duration(success, 0)},
            {"compute_infer", Duration(success, compute_ns)},
            {"compute_output", Duration(success, 0)},
            {"cache_hit", Duration(0, 0)},
            {"cache_miss", Duration(0, 0)}}},
          {"batch_stats", json::array()}};
}

StatusOr<size_t> ParseHeaderLength(std::string_view value) {
  size_t n = 0;
  const auto [end, error] = std::from_chars(value.data(), value.data() + value.size(), n);
  if (value.empty() || error != std::errc() || end != value.data() + value.size()) {
    return InvalidArgumentError("Inference-Header-Content-Length must be a byte count, got '" +
                                std::string(value.substr(0, 40)) + "'");
  }
  return n;
}

StatusOr<InferRequest> ParseInferRequest(std::string_view body, std::optional<size_t> header_length,
                                         const Model& model) {
  if (header_length && *header_length > body.size()) {
    return InvalidArgumentError("Inference-Header-Content-Length is " +
                                std::to_string(*header_length) + " but the body has only " +
                                std::to_string(body.size()) + " bytes");
  }
  auto parsed = kchain::ParseJsonInput(body.substr(0, header_length.value_or(body.size())), "JSON");
  if (!parsed.ok()) {
    return InvalidArgumentError(std::string("the inference request's JSON is not valid") +
                                (header_length ? " (Inference-Header-Content-Length: " +
                                                     std::to_string(*header_length) + ")"
                                               : "") +
                                ": " + parsed.status().message());
  }
  json header = std::move(*parsed);
  if (!header.is_object()) {
    return InvalidArgumentError("an inference request is a JSON object: {\"inputs\": [...]}");
  }
  KCHAIN_RETURN_IF_ERROR(
      CheckKeys(header, "inference request", {"id", "parameters", "inputs", "outputs"}));
  InferRequest request;
  if (header.contains("id")) {
    if (!header["id"].is_string()) return InvalidArgumentError("id must be a string");
    request.id = header["id"].get<std::string>();
    if (request.id->size() > kMaxRequestIdBytes) {
      return InvalidArgumentError("id is " + std::to_string(request.id->size()) +
                                  " bytes long; at most " + std::to_string(kMaxRequestIdBytes) +
                                  " are allowed");
    }
  }
  bool binary_output = false;
  if (header.contains("parameters")) {
    const json& parameters = header["parameters"];
    if (!parameters.is_object()) return InvalidArgumentError("parameters must be an object");
    if (parameters.contains("binary_data_output")) {
      if (!parameters["binary_data_output"].is_boolean()) {
        return InvalidArgumentError("parameters.binary_data_output must be a boolean");
      }
      binary_output = parameters["binary_data_output"].get<bool>();
    }
  }
  if (!header.contains("inputs") || !header["inputs"].is_array()) {
    return InvalidArgumentError("inputs is required: an array of one input tensor");
  }
  const json& inputs = header["inputs"];
  if (inputs.size() != 1) {
    return InvalidArgumentError("the request has " + std::to_string(inputs.size()) +
                                " inputs; model '" + std::string(model.name) + "' takes one, '" +
                                std::string(InputName(*model.manifest)) + "'");
  }
  KCHAIN_RETURN_IF_ERROR(ParseInput(inputs[0], body, header_length, model, &request));
  if (header.contains("outputs")) {
    KCHAIN_RETURN_IF_ERROR(
        ParseOutputs(header["outputs"], *model.manifest, model.name, &binary_output));
  }
  request.binary_output = binary_output;
  return request;
}

InferResponse BuildInferResponse(const InferRequest& request, const Model& model,
                                 std::span<const std::byte> output) {
  const TensorSpec& spec = model.manifest->spec.output;
  std::vector<int64_t> shape;
  if (request.batched) shape.push_back(1);
  if (spec.shape.empty()) {
    shape.push_back(static_cast<int64_t>(output.size() / ElementSize(spec.dtype)));
  } else {
    shape.insert(shape.end(), spec.shape.begin(), spec.shape.end());
  }
  json tensor = {{"name", OutputName(*model.manifest)},
                 {"datatype", DataTypeName(spec.dtype)},
                 {"shape", shape}};
  if (request.binary_output) {
    tensor["parameters"] = {{"binary_data_size", output.size()}};
  } else {
    tensor["data"] = EncodeJsonTensor(output, spec.dtype);
  }
  json header = json::object();
  if (request.id) header["id"] = *request.id;
  header["model_name"] = model.name;
  header["model_version"] = std::to_string(model.version);
  header["outputs"] = json::array({std::move(tensor)});
  InferResponse response;
  response.body = header.dump(-1, ' ', false, json::error_handler_t::replace);
  response.header_length = response.body.size();
  response.binary = request.binary_output;
  if (response.binary) {
    response.body.reserve(response.header_length + output.size());
    response.body.append(reinterpret_cast<const char*>(output.data()), output.size());
  }
  return response;
}

}  // namespace kchain::gateway::v2
