// normalize, cuda target: three kernels that pass their results through tmp.
#include <kchain/kernel.h>

KCHAIN_MODULE_CUDA();

namespace {

constexpr int kN = 1024;

// tmp holds {mean, variance, inverse standard deviation} between the stages.
struct Moments {
  float mean, variance, inv_stddev;
};

// One block of 256 threads: each sums 4 values, then a shared-memory tree reduction.
__global__ void MomentsKernel(const float* x, Moments* m) {
  __shared__ float sum[256], sum_sq[256];
  float s = 0, s2 = 0;
  for (int i = threadIdx.x; i < kN; i += blockDim.x) {
    s += x[i];
    s2 += x[i] * x[i];
  }
  sum[threadIdx.x] = s;
  sum_sq[threadIdx.x] = s2;
  __syncthreads();
  for (int stride = blockDim.x / 2; stride > 0; stride /= 2) {
    if (threadIdx.x < stride) {
      sum[threadIdx.x] += sum[threadIdx.x + stride];
      sum_sq[threadIdx.x] += sum_sq[threadIdx.x + stride];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    m->mean = sum[0] / kN;
    m->variance = sum_sq[0] / kN - m->mean * m->mean;
  }
}

__global__ void InverseStddevKernel(const float* params, Moments* m) {
  if (threadIdx.x == 0) m->inv_stddev = rsqrtf(m->variance + params[0]);
}

__global__ void ApplyKernel(const float* x, const float* params, const Moments* m, float* out) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < kN) out[i] = params[1] * (x[i] - m->mean) * m->inv_stddev;
}

}  // namespace

KCHAIN_KERNEL(moments)(kchain_state_t* s, int grid, int block) {
  if (s->input.len != kN * sizeof(float) || block != 256) {
    kchain_report_error(s, 1, "normalize: input must be 1024 float32 values, block 256");
    return;
  }
  MomentsKernel<<<grid, block, 0, s->stream>>>(reinterpret_cast<const float*>(s->input.dat),
                                               reinterpret_cast<Moments*>(s->tmp.dat));
}

KCHAIN_KERNEL(inverse_stddev)(kchain_state_t* s, int grid, int block) {
  InverseStddevKernel<<<grid, block, 0, s->stream>>>(
      reinterpret_cast<const float*>(s->constant.dat), reinterpret_cast<Moments*>(s->tmp.dat));
}

KCHAIN_KERNEL(apply)(kchain_state_t* s, int grid, int block) {
  ApplyKernel<<<grid, block, 0, s->stream>>>(
      reinterpret_cast<const float*>(s->input.dat), reinterpret_cast<const float*>(s->constant.dat),
      reinterpret_cast<const Moments*>(s->tmp.dat), reinterpret_cast<float*>(s->out.dat));
}
