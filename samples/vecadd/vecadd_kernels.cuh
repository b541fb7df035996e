// The vecadd CUDA kernel. Shared by the kchain launcher (vecadd.cu) and by the plain-CUDA
// baseline in bench/. A grid-stride loop: any grid/block computes the right thing.
#ifndef KCHAIN_SAMPLES_VECADD_KERNELS_CUH_
#define KCHAIN_SAMPLES_VECADD_KERNELS_CUH_

#include <cstddef>

static __global__ void vecadd_kernel(const float* __restrict__ d_input,
                                     const float* __restrict__ d_constant,
                                     float* __restrict__ d_out, size_t n) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
       i += (size_t)gridDim.x * blockDim.x) {
    d_out[i] = d_input[i] + d_constant[i];
  }
}

#endif  // KCHAIN_SAMPLES_VECADD_KERNELS_CUH_
