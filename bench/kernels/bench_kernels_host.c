/* Bench kernels, host target: bench_noop and bench_copy (see bench_kernels_common.h), done
 * on the calling thread over host memory. */
#include <stdlib.h>
#include <string.h>

#include "bench_kernels_common.h"

KCHAIN_MODULE_HOST();

KCHAIN_KERNEL(bench_noop)(kchain_state_t* s, int grid, int block) {
  if (!bench_noop_check(s, grid, block)) return;
  float* out = (float*)s->out.dat; /* 256-byte aligned by the runtime */
  out[0] += 1.0f;
}

KCHAIN_KERNEL(bench_copy)(kchain_state_t* s, int grid, int block) {
  const size_t n = bench_copy_bytes(s, grid, block);
  if (n != 0) memcpy(s->out.dat, s->input.dat, n);
}

/* Faults on request (bench_kernels_common.h): the mode is the input's length, as on CUDA. */
KCHAIN_KERNEL(bench_fault)(kchain_state_t* s, int grid, int block) {
  switch (s->input.len) {
    case 1:
      *(volatile int*)(size_t)8 = 1;
      break;
    case 2:
      abort();
    case 3:
      for (volatile unsigned long n = 0;; ++n) {
      }
    default: {
      const size_t n = bench_copy_bytes(s, grid, block);
      if (n != 0) memcpy(s->out.dat, s->input.dat, n);
    }
  }
}
