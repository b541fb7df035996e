/* Bench kernels: the argument checks shared by the host and the CUDA target (plain C).
 *
 *  - bench_noop: out[0] += 1.0f (float32). A trivial stage: real but negligible work, and,
 *    because every stage of a chain touches the same float, the stages are ordered. A chain
 *    of N bench_noop stages leaves out[0] exactly N larger (while it stays below 2^24).
 *    Needs `out` to hold at least 4 bytes; reads nothing else.
 *  - bench_copy: copies min(input.len, out.len) bytes from input to out. Grid and block come
 *    from the chain's stage; any grid and block copy every byte.
 *  - bench_fault: faults as its input's length says (a launcher never reads the input's
 *    bytes, which are on the device), for the containment benchmark: 1 byte an illegal
 *    address on the device (host target: a segfault), 2 __trap() (host: abort), 3 a kernel
 *    that never ends (host: a loop); any other length copies like bench_copy. */
#ifndef KCHAIN_BENCH_KERNELS_COMMON_H_
#define KCHAIN_BENCH_KERNELS_COMMON_H_

#include <kchain/kernel.h>

/* Returns 1 when bench_noop can run on `s`, 0 after reporting an error through the state. */
static inline int bench_noop_check(kchain_state_t* s, int grid, int block) {
  if (grid < 1 || block < 1) {
    kchain_report_error(s, 1, "bench_noop: grid and block must be at least 1");
    return 0;
  }
  if (s->out.dat == NULL || s->out.len < sizeof(float)) {
    kchain_report_error(s, 2, "bench_noop: out must hold at least one float32 (4 bytes)");
    return 0;
  }
  return 1;
}

/* The number of bytes bench_copy copies, or 0 after reporting an error through the state
 * (0 is also returned, with no error, when there is nothing to copy). */
static inline size_t bench_copy_bytes(kchain_state_t* s, int grid, int block) {
  const size_t n = s->input.len < s->out.len ? s->input.len : s->out.len;
  if (grid < 1 || block < 1) {
    kchain_report_error(s, 1, "bench_copy: grid and block must be at least 1");
    return 0;
  }
  if (n != 0 && (s->input.dat == NULL || s->out.dat == NULL)) {
    kchain_report_error(s, 2, "bench_copy: input or out is missing");
    return 0;
  }
  return n;
}

#endif /* KCHAIN_BENCH_KERNELS_COMMON_H_ */
