/* vecadd, host target: the same computation on the CPU, in plain C. */
#include "vecadd_common.h"

KCHAIN_MODULE_HOST();

KCHAIN_KERNEL(vecadd)(kchain_state_t* s, int grid, int block) {
  (void)grid;
  (void)block;
  const size_t n = vecadd_check(s);
  const float* input = (const float*)s->input.dat;
  const float* constant = (const float*)s->constant.dat;
  float* out = (float*)s->out.dat;
  for (size_t i = 0; i < n; ++i) out[i] = input[i] + constant[i];
}
