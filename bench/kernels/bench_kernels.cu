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

// Faults on request (bench_kernels_common.h). A launcher may not read the input's bytes, which
// are on the device: the mode arrives as the input's length instead (1 'a', 2 't', 3 's').
KCHAIN_KERNEL(bench_fault)(kchain_state_t* s, int grid, int block) {
  switch (s->input.len) {
    case 1:
      bench_bad_address_kernel<<<1, 32, 0, s->stream>>>(reinterpret_cast<float*>(0x100));
      return;
    case 2:
      bench_trap_kernel<<<1, 1, 0, s->stream>>>();
      return;
    case 3:
      cudaMemsetAsync(s->tmp.dat, 0, sizeof(int), s->stream);
      bench_spin_kernel<<<1, 1, 0, s->stream>>>(reinterpret_cast<volatile int*>(s->tmp.dat));
      return;
    default: {
      const size_t n = bench_copy_bytes(s, grid, block);
      if (n != 0) bench_copy_kernel<<<grid, block, 0, s->stream>>>(s->input.dat, s->out.dat, n);
    }
  }
}
