// Fuzzes the JSON edge of an invocation: the bounded JSON parser (runtime/json_input.h), the
// typed-array decoder and base64 (gateway/http/tensor_codec.h).
//
// Input: one byte choosing the tensor (dtype: low 4 bits; layout: bits 4-6), then the JSON
// text (also fed to Base64Decode as it is). Beyond not crashing: refusals carry the documented
// codes, what is decoded has the size the tensor implies, and decoded bytes survive
// EncodeJsonTensor, printing, parsing and decoding again unchanged; base64 round-trips.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "gateway/http/tensor_codec.h"
#include "runtime/json_input.h"

namespace {

using kchain::ElementType;
using kchain::StatusCode;
using kchain::TensorSpec;

[[noreturn]] void Fail(const char* what, const std::string& detail = "") {
  std::fprintf(stderr, "json_tensor_fuzzer: %s\n%s\n", what, detail.c_str());
  std::abort();
}

// KCHAIN_FUZZ_VERBOSE=1: say what became of each input (to check seeds).
bool Verbose() {
  static const bool verbose = std::getenv("KCHAIN_FUZZ_VERBOSE") != nullptr;
  return verbose;
}

struct Layout {
  std::vector<int64_t> shape;  // empty: shapeless, bounded by max_bytes
  size_t max_bytes;
};

// A few tensors like the ones manifests declare: shapeless with a small and a large bound,
// the CNN's image, a 3-d tensor, vectors, and unit dims (which a nested array may misstate).
const Layout kLayouts[8] = {
    {{}, 64},  {{}, 4096}, {{28, 28}, 0},  {{2, 3, 4}, 0},
    {{10}, 0}, {{1}, 0},   {{4, 1, 2}, 0}, {{}, 0},
};

void CheckBase64(std::string_view text, std::span<const std::byte> raw) {
  auto decoded = kchain::gateway::Base64Decode(text);
  if (decoded.ok()) {
    size_t len = text.size();
    while (len > 0 && text[len - 1] == '=') --len;
    if (decoded->size() != len * 6 / 8) Fail("Base64Decode gave the wrong number of bytes");
    auto again = kchain::gateway::Base64Decode(kchain::gateway::Base64Encode(*decoded));
    if (!again.ok() || *again != *decoded) Fail("base64 does not round-trip decoded bytes");
  } else if (decoded.status().code() != StatusCode::kInvalidArgument) {
    Fail("Base64Decode refused with a code other than kInvalidArgument",
         decoded.status().ToString());
  }
  const std::string encoded = kchain::gateway::Base64Encode(raw);
  if (encoded.size() != (raw.size() + 2) / 3 * 4) Fail("Base64Encode has the wrong length");
  auto back = kchain::gateway::Base64Decode(encoded);
  if (!back.ok() || back->size() != raw.size() ||
      (!raw.empty() && std::memcmp(back->data(), raw.data(), raw.size()) != 0)) {
    Fail("Base64Encode does not decode back to its input");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t selector = data[0];
  const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  CheckBase64(text, std::as_bytes(std::span(data + 1, size - 1)));

  const Layout& layout = kLayouts[(selector >> 4) & 7];
  TensorSpec tensor;
  tensor.dtype = static_cast<ElementType>((selector & 0x0f) % 11);
  tensor.shape = layout.shape;
  const size_t elem = kchain::ElementSize(tensor.dtype);

  auto value = kchain::ParseJsonInput(text, "body");
  if (Verbose() && !value.ok()) std::fprintf(stderr, "-- %s\n", value.status().ToString().c_str());
  if (!value.ok()) {
    if (value.status().code() != StatusCode::kInvalidArgument) {
      Fail("ParseJsonInput refused with a code other than kInvalidArgument",
           value.status().ToString());
    }
    return 0;
  }
  std::vector<std::byte> out;
  const kchain::Status status =
      kchain::gateway::DecodeJsonTensor(*value, tensor, layout.max_bytes, "input", &out);
  if (Verbose()) std::fprintf(stderr, "-- %zu bytes: %s\n", out.size(), status.ToString().c_str());
  if (!status.ok()) {
    if ((status.code() != StatusCode::kInvalidArgument &&
         status.code() != StatusCode::kPayloadTooLarge) ||
        status.message().empty()) {
      Fail("DecodeJsonTensor refused with an undocumented code", status.ToString());
    }
    return 0;
  }
  if (const auto count = tensor.ElementCount()) {
    if (out.size() != *count * elem) Fail("decoded bytes disagree with the shape");
  } else if (out.size() > layout.max_bytes || out.size() % elem != 0) {
    Fail("decoded bytes exceed max_bytes or are not whole elements");
  }

  // Out and back: the JSON a response would carry decodes to the same bytes.
  const nlohmann::json encoded = kchain::gateway::EncodeJsonTensor(out, tensor.dtype);
  auto reparsed = kchain::ParseJsonInput(encoded.dump(), "encoded");
  if (!reparsed.ok()) Fail("EncodeJsonTensor printed JSON that does not parse");
  std::vector<std::byte> again;
  const kchain::Status redecoded = kchain::gateway::DecodeJsonTensor(
      *reparsed, tensor, tensor.shape.empty() ? out.size() : 0, "encoded", &again);
  if (!redecoded.ok()) Fail("re-decoding an encoded tensor failed", redecoded.ToString());
  if (again != out) Fail("a tensor changed on a round trip through EncodeJsonTensor");
  return 0;
}
