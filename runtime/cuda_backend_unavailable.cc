// Stands in for the CUDA backend in builds without the CUDA toolkit.
#include "runtime/backend.h"

namespace kchain::internal {

bool CudaCompiledIn() { return false; }
int CudaDeviceCount() { return 0; }

StatusOr<std::unique_ptr<Backend>> MakeCudaBackend(int, GpuWait) {
  return UnavailableError(
      "this build of kchain has no CUDA backend (configured without the CUDA toolkit)");
}

}  // namespace kchain::internal
