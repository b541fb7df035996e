/* vecadd: out[i] = input[i] + constant[i], n = 1,000,000 float32. Shared by both targets. */
#ifndef KCHAIN_SAMPLES_VECADD_COMMON_H_
#define KCHAIN_SAMPLES_VECADD_COMMON_H_

#include <kchain/kernel.h>

#define VECADD_N 1000000u

/* Checks the buffers the launcher was given; returns the element count, or 0 after
 * reporting an error through the state. */
static inline size_t vecadd_check(kchain_state_t* s) {
  const size_t bytes = (size_t)VECADD_N * sizeof(float);
  if (s->input.len != bytes) {
    kchain_report_error(s, 1, "vecadd: input must be exactly 1000000 float32 (4000000 bytes)");
    return 0;
  }
  if (s->constant.len != bytes || s->out.len != bytes) {
    kchain_report_error(s, 2, "vecadd: constant and out must be 4000000 bytes each");
    return 0;
  }
  return VECADD_N;
}

#endif /* KCHAIN_SAMPLES_VECADD_COMMON_H_ */
