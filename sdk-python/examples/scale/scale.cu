// scale.cu: out = input * factor, the factor being the function's constant.
#include <kchain/kernel.h>

KCHAIN_MODULE_CUDA();

__global__ void scale_kernel(const float* in, const float* factor, float* out, size_t n) {
  for (size_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
    out[i] = in[i] * factor[0];
}

KCHAIN_KERNEL(scale)(kchain_state_t* s, int grid, int block) {
  scale_kernel<<<grid, block, 0, s->stream>>>((const float*)s->input.dat,
                                              (const float*)s->constant.dat, (float*)s->out.dat,
                                              s->out.len / 4);
}
