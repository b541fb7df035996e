// Bench kernels, CUDA target: bench_noop and bench_copy (see bench_kernels_common.h).
#include "bench_kernels.cuh"
#include "bench_kernels_common.h"

KCHAIN_MODULE_CUDA();

KCHAIN_KERNEL(bench_noop)(kchain_state_t* s, int grid, int block) {
  if (!bench_noop_check(s, grid, block)) return;
  bench_noop_kernel<<<grid, block, 0, s->stream>>>(reinterpret_cast<float*>(s->out.dat));
}

KCHAIN_KERNEL(bench_copy)(kchain_state_t* s, int grid, int block) {
  const size_t n = bench_copy_bytes(s, grid, block);
  if (n == 0) return;
  bench_copy_kernel<<<grid, block, 0, s->stream>>>(s->input.dat, s->out.dat, n);
}
