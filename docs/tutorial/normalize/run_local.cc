// Runs the normalize chain in this process with the kchain runtime (no gateway): loads the
// manifest, opens the device (CUDA when there is one, else the host backend), runs once and
// prints the first outputs and the timings.
#include <kchain/function.h>
#include <kchain/manifest.h>

#include <cstdio>
#include <span>
#include <string>
#include <vector>

namespace {

kchain::Status Run(const std::string& manifest_path) {
  KCHAIN_ASSIGN_OR_RETURN(kchain::Manifest manifest, kchain::LoadManifestFile(manifest_path));
  KCHAIN_ASSIGN_OR_RETURN(auto device, kchain::Device::OpenAuto());
  KCHAIN_ASSIGN_OR_RETURN(std::string library_path,
                          kchain::ManifestLibraryFor(manifest, device->kind()));
  KCHAIN_ASSIGN_OR_RETURN(auto library, kchain::Library::Open(library_path, device->kind()));
  KCHAIN_ASSIGN_OR_RETURN(std::string constants, kchain::ReadFileToString(manifest.constants));
  KCHAIN_ASSIGN_OR_RETURN(auto function,
                          kchain::Function::Create(device, library, manifest.spec,
                                                   std::as_bytes(std::span(constants))));
  KCHAIN_ASSIGN_OR_RETURN(auto instance, kchain::Instance::Create(function));

  std::vector<float> input(1024), output(1024);
  for (size_t i = 0; i < input.size(); ++i) input[i] = static_cast<float>(i % 8);
  kchain::RunTimings timings;
  KCHAIN_RETURN_IF_ERROR(instance->Run(std::as_bytes(std::span(input)),
                                       std::as_writable_bytes(std::span(output)), &timings));
  std::printf("device %s: out[0..3] = %.4f %.4f %.4f %.4f (%.1f us)\n",
              std::string(kchain::DeviceKindName(device->kind())).c_str(), output[0], output[1],
              output[2], output[3], timings.total_us);
  return kchain::Status::Ok();
}

}  // namespace

int main(int argc, char** argv) {
  const kchain::Status status = Run(argc > 1 ? argv[1] : "manifest.json");
  if (!status.ok()) {
    std::fprintf(stderr, "run_local: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}
