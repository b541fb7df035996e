/* scale_host.c: the same launcher for the host target (no GPU): a plain loop. */
#include <kchain/kernel.h>

KCHAIN_MODULE_HOST();

KCHAIN_KERNEL(scale)(kchain_state_t* s, int grid, int block) {
  const float* in = (const float*)s->input.dat;
  const float* factor = (const float*)s->constant.dat;
  float* out = (float*)s->out.dat;
  for (size_t i = 0; i < s->out.len / sizeof(float); ++i) out[i] = in[i] * factor[0];
}
