// Fuzzes the KServe v2 inference request parser (gateway/http/v2_protocol.h) the way
// gateway/http/v2_http.cc drives it: a body split into a JSON header and binary tensor data by an
// optional Inference-Header-Content-Length.
//
// Input: a flags byte, then (flag 0x02) the header's value as text up to the first '\n', fed
// to ParseHeaderLength, or (flag 0x04, without 0x02) a little-endian uint16 header length; the
// rest is the body. Flag 0x01 picks the model: the CNN (FP32 [28, 28] in, [10] out) or a
// shapeless UINT8 model with named tensors. Beyond not crashing: ParseHeaderLength accepts
// exactly the decimal numbers that fit, an accepted request's input lies inside the body and
// has the size its shape says, and the response to it is well-formed JSON.
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "gateway/http/v2_protocol.h"
#include "runtime/json_input.h"

namespace {

namespace v2 = kchain::gateway::v2;

[[noreturn]] void Fail(const char* what, const std::string& detail = "") {
  std::fprintf(stderr, "v2_infer_fuzzer: %s\n%s\n", what, detail.c_str());
  std::abort();
}

// KCHAIN_FUZZ_VERBOSE=1: say what became of each input (to check seeds).
bool Verbose() {
  static const bool verbose = std::getenv("KCHAIN_FUZZ_VERBOSE") != nullptr;
  return verbose;
}

kchain::Manifest MustParse(std::string_view json) {
  auto m = kchain::ParseManifest(json);
  if (!m.ok()) Fail("a fixed manifest does not parse", m.status().ToString());
  return std::move(*m);
}

const kchain::Manifest& Cnn() {
  static const kchain::Manifest m = MustParse(R"({
    "chain": [{"kernel": "conv1", "grid": 14, "block": 256}, {"kernel": "fc", "grid": 1,
              "block": 32}],
    "input": {"dtype": "float32", "shape": [28, 28]},
    "output": {"dtype": "float32", "shape": [10]}, "tmp_bytes": 14688})");
  return m;
}

const kchain::Manifest& Bytes() {
  static const kchain::Manifest m = MustParse(R"({
    "chain": [{"kernel": "k", "grid": 1, "block": 1}],
    "input": {"dtype": "uint8", "name": "raw"}, "max_input_bytes": 64,
    "output": {"dtype": "uint8", "name": "digest"}, "out_bytes": 8})");
  return m;
}

// What ParseHeaderLength must do: a non-empty run of digits whose value fits size_t.
std::optional<size_t> ReferenceHeaderLength(std::string_view text) {
  if (text.empty()) return std::nullopt;
  size_t n = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    if (__builtin_mul_overflow(n, size_t{10}, &n) ||
        __builtin_add_overflow(n, static_cast<size_t>(c - '0'), &n)) {
      return std::nullopt;
    }
  }
  return n;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t flags = data[0];
  std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);

  std::optional<size_t> header_length;
  if (flags & 0x02) {
    const size_t nl = rest.find('\n');
    const std::string_view value = rest.substr(0, nl);
    rest.remove_prefix(nl == std::string_view::npos ? rest.size() : nl + 1);
    auto parsed = v2::ParseHeaderLength(value);
    const auto expected = ReferenceHeaderLength(value);
    if (parsed.ok() != expected.has_value() || (parsed.ok() && *parsed != *expected)) {
      Fail("ParseHeaderLength disagrees with the decimal reading of its input",
           std::string(value.substr(0, 64)));
    }
    if (parsed.ok()) header_length = *parsed;
  } else if ((flags & 0x04) && rest.size() >= 2) {
    header_length = static_cast<uint8_t>(rest[0]) | static_cast<uint8_t>(rest[1]) << 8;
    rest.remove_prefix(2);
  }

  const kchain::Manifest& manifest = (flags & 0x01) ? Bytes() : Cnn();
  const v2::Model model{(flags & 0x01) ? "bytes" : "mnist_cnn", 3, &manifest};
  const std::string_view body = rest;
  auto request = v2::ParseInferRequest(body, header_length, model);
  if (Verbose()) std::fprintf(stderr, "-- %s\n", request.status().ToString().c_str());
  if (!request.ok()) {
    const auto code = request.status().code();
    if (code != kchain::StatusCode::kInvalidArgument &&
        code != kchain::StatusCode::kPayloadTooLarge) {
      Fail("ParseInferRequest refused with an undocumented code", request.status().ToString());
    }
    return 0;
  }

  const kchain::FunctionSpec& spec = manifest.spec;
  const size_t elem = kchain::ElementSize(spec.input.dtype);
  if (request->binary_input) {
    if (!header_length || request->binary_offset != *header_length ||
        request->binary_offset + request->input_bytes != body.size()) {
      Fail("binary input does not fill the body after the JSON header");
    }
  } else if (request->decoded.size() != request->input_bytes) {
    Fail("decoded input and input_bytes disagree");
  }
  if (request->input_bytes > spec.max_input_bytes || request->input_bytes % elem != 0 ||
      (!spec.input.shape.empty() && request->input_bytes != spec.max_input_bytes)) {
    Fail("the input's size does not fit the model", std::to_string(request->input_bytes));
  }
  // Reads every input byte: out of bounds is ASan's to catch.
  unsigned sum = 0;
  for (std::byte b : request->input(body)) sum += std::to_integer<unsigned>(b);
  (void)sum;

  // The response the gateway would send for it.
  const std::vector<std::byte> output(spec.out_bytes, std::byte{0x41});
  const v2::InferResponse response = v2::BuildInferResponse(*request, model, output);
  auto header = kchain::ParseJsonInput(
      std::string_view(response.body).substr(0, response.header_length), "response");
  if (!header.ok()) Fail("the response's JSON header does not parse", response.body);
  if (response.binary && response.body.size() != response.header_length + output.size()) {
    Fail("the binary response does not end in the output's bytes");
  }
  if (request->id && (!header->contains("id") || (*header)["id"] != *request->id)) {
    Fail("the response does not echo the request's id");
  }
  return 0;
}
