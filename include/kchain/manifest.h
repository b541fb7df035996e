// Manifest: the JSON description of a function, turned into a FunctionSpec at the edge.
//
// The runtime core never sees JSON; this is the one place that parses a manifest. It lives in
// its own library target (kchain::manifest) so that the core links no JSON library.
//
// Format (docs/manifest.md has the full reference):
//   {
//     "name": "mnist_cnn",                         optional
//     "description": "...",                        optional
//     "chain": [{"kernel": "conv1", "grid": 14, "block": 256}, ...],
//     "input":  {"dtype": "float32", "shape": [28, 28]},   also "name": "image", optional
//     "output": {"dtype": "float32", "shape": [10]},
//     "max_input_bytes": 3136,                     optional when input.shape is given
//     "out_bytes": 40,                             optional when output.shape is given
//     "tmp_bytes": 14688,                          optional, default 0
//     "constant_bytes": 9372,                      optional, default 0
//     "library": {"cuda": "libcnn_cuda.so", "host": "libcnn_host.so"},   optional, for tools
//     "constants": "weights.bin"                   optional, for tools
//   }
// Unknown keys and duplicate keys are rejected, so that a typo never silently changes a
// function. The text is at most kMaxManifestBytes, nested at most 64 levels deep.
//
// Thread-safety: pure functions of their arguments.
#ifndef KCHAIN_MANIFEST_H_
#define KCHAIN_MANIFEST_H_

#include <map>
#include <string>
#include <string_view>

#include "kchain/device.h"
#include "kchain/function_spec.h"
#include "kchain/status.h"

namespace kchain {

// Bounds on what a manifest may hold (it is untrusted input).
inline constexpr size_t kMaxManifestBytes = size_t{1} << 20;  // the JSON text
inline constexpr size_t kMaxManifestNameBytes = 128;
inline constexpr size_t kMaxDescriptionBytes = 4096;
inline constexpr size_t kMaxPathBytes = 4096;  // library and constants file names

struct Manifest {
  std::string name;
  std::string description;
  FunctionSpec spec;
  // The tensors' names, from input.name and output.name; empty when the manifest gives none.
  // Only the v2 inference protocol uses them (default "input" and "output").
  std::string input_name;
  std::string output_name;
  // Kernel library file per target ("cuda", "host"), as written in the manifest, or resolved
  // against the manifest's folder by LoadManifestFile(). The server ignores these: libraries
  // are uploaded as bytes.
  std::map<std::string, std::string> libraries;
  // Constant blob file, likewise.
  std::string constants;
};

// Parses and checks a manifest's structure (types, required keys, unknown keys, sizes that
// follow from shapes). Does not check against device limits: ValidateFunctionSpec() does.
// kInvalidArgument with the JSON path of the offending value, e.g.
// "manifest: chain[1].grid must be a positive integer".
StatusOr<Manifest> ParseManifest(std::string_view json_text);

// Reads and parses the manifest file at `path`, and resolves relative `library` and
// `constants` paths against the file's folder. kNotFound when the file does not exist.
StatusOr<Manifest> LoadManifestFile(const std::string& path);

// The library path for `kind`, or kNotFound naming the manifest's targets.
StatusOr<std::string> ManifestLibraryFor(const Manifest& manifest, DeviceKind kind);

// Canonical JSON (two-space indented) with every size spelled out. Round-trips through
// ParseManifest().
std::string ManifestToJson(const Manifest& manifest);

// Reads a whole file into a string. kNotFound / kInvalidArgument naming the path.
StatusOr<std::string> ReadFileToString(const std::string& path);

}  // namespace kchain

#endif  // KCHAIN_MANIFEST_H_
