// The mnist_cnn CUDA kernels, one per layer. Shared by the kchain launchers (cnn.cu) and by
// the plain-CUDA baseline in bench/, so that both launch exactly the same device code.
// Grid-stride loops: any grid/block computes the right thing.
#ifndef KCHAIN_SAMPLES_CNN_KERNELS_CUH_
#define KCHAIN_SAMPLES_CNN_KERNELS_CUH_

#include "cnn_layers.h"

static __global__ void cnn_conv1_kernel(const float* __restrict__ d_in,
                                        const float* __restrict__ d_w, float* __restrict__ d_a1) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < CNN_A1_SIZE; i += gridDim.x * blockDim.x)
    d_a1[i] = cnn_conv1_at(d_in, d_w, i);
}

static __global__ void cnn_pool_kernel(const float* __restrict__ d_a1,
                                       const float* __restrict__ d_w, float* __restrict__ d_a2) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < CNN_A2_SIZE; i += gridDim.x * blockDim.x)
    d_a2[i] = cnn_pool_at(d_a1, d_w, i);
}

static __global__ void cnn_fc_kernel(const float* __restrict__ d_a2, const float* __restrict__ d_w,
                                     float* __restrict__ d_out) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < CNN_CLASSES; i += gridDim.x * blockDim.x)
    d_out[i] = cnn_fc_at(d_a2, d_w, i);
}

#endif  // KCHAIN_SAMPLES_CNN_KERNELS_CUH_
