// Fuzzes the manifest parser (include/kchain/manifest.h), the first thing a deploy runs on a
// tenant's upload. Beyond not crashing: a refusal is always kInvalidArgument with a message,
// and whatever is accepted prints as canonical JSON that parses back to the same manifest and
// prints the same again (a deployed function.json must mean what the upload meant).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "kchain/function_spec.h"
#include "kchain/manifest.h"

namespace {

using kchain::Manifest;

[[noreturn]] void Fail(const char* what, const std::string& detail) {
  std::fprintf(stderr, "manifest_fuzzer: %s\n%s\n", what, detail.c_str());
  std::abort();
}

// KCHAIN_FUZZ_VERBOSE=1: say what became of each input (to check seeds).
bool Verbose() {
  static const bool verbose = std::getenv("KCHAIN_FUZZ_VERBOSE") != nullptr;
  return verbose;
}

bool SameTensor(const kchain::TensorSpec& a, const kchain::TensorSpec& b) {
  return a.dtype == b.dtype && a.shape == b.shape;
}

bool SameManifest(const Manifest& a, const Manifest& b) {
  if (a.spec.chain.size() != b.spec.chain.size()) return false;
  for (size_t i = 0; i < a.spec.chain.size(); ++i) {
    const auto &x = a.spec.chain[i], &y = b.spec.chain[i];
    if (x.kernel != y.kernel || x.grid != y.grid || x.block != y.block) return false;
  }
  return a.name == b.name && a.description == b.description && a.input_name == b.input_name &&
         a.output_name == b.output_name && a.libraries == b.libraries &&
         a.constants == b.constants && a.spec.max_input_bytes == b.spec.max_input_bytes &&
         a.spec.tmp_bytes == b.spec.tmp_bytes && a.spec.out_bytes == b.spec.out_bytes &&
         a.spec.constant_bytes == b.spec.constant_bytes && SameTensor(a.spec.input, b.spec.input) &&
         SameTensor(a.spec.output, b.spec.output);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto manifest = kchain::ParseManifest(text);
  if (Verbose()) std::fprintf(stderr, "-- %s\n", manifest.status().ToString().c_str());
  if (!manifest.ok()) {
    if (manifest.status().code() != kchain::StatusCode::kInvalidArgument ||
        manifest.status().message().empty()) {
      Fail("a refusal that is not kInvalidArgument with a message", manifest.status().ToString());
    }
    return 0;
  }

  const std::string canonical = kchain::ManifestToJson(*manifest);
  auto again = kchain::ParseManifest(canonical);
  if (!again.ok()) {
    Fail("ManifestToJson printed a manifest ParseManifest refuses",
         again.status().ToString() + "\n" + canonical);
  }
  if (!SameManifest(*manifest, *again)) {
    Fail("the manifest changed on a round trip through ManifestToJson", canonical);
  }
  if (kchain::ManifestToJson(*again) != canonical) {
    Fail("ManifestToJson is not canonical (printing twice differs)", canonical);
  }

  // What a deploy does next: the spec against a device's limits, and the library look-up.
  const kchain::DeviceLimits limits{1024, 1 << 20, size_t{16} << 30, size_t{4} << 30};
  (void)kchain::ValidateFunctionSpec(manifest->spec, limits);
  (void)kchain::ChainToString(manifest->spec);
  for (auto kind : {kchain::DeviceKind::kCuda, kchain::DeviceKind::kHost}) {
    (void)kchain::ManifestLibraryFor(*manifest, kind);
  }
  return 0;
}
