// vecadd, CUDA target: one kernel.
#include "vecadd_common.h"
#include "vecadd_kernels.cuh"

KCHAIN_MODULE_CUDA();

KCHAIN_KERNEL(vecadd)(kchain_state_t* s, int grid, int block) {
  const size_t n = vecadd_check(s);
  if (n == 0) return;
  vecadd_kernel<<<grid, block, 0, s->stream>>>(reinterpret_cast<const float*>(s->input.dat),
                                               reinterpret_cast<const float*>(s->constant.dat),
                                               reinterpret_cast<float*>(s->out.dat), n);
}
