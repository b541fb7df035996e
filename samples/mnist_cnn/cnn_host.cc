// mnist_cnn, host target: the same layers as cnn.cu, looped on the CPU.
#include "cnn_layers.h"

KCHAIN_MODULE_HOST();

namespace {
const float* Weights(const kchain_state_t* s) {
  return reinterpret_cast<const float*>(s->constant.dat);
}
float* Tmp(kchain_state_t* s) { return reinterpret_cast<float*>(s->tmp.dat); }
}  // namespace

KCHAIN_KERNEL(conv1)(kchain_state_t* s, int, int) {
  if (!cnn_check(s)) return;
  const float* in = reinterpret_cast<const float*>(s->input.dat);
  for (int i = 0; i < CNN_A1_SIZE; ++i) Tmp(s)[CNN_TMP_A1 + i] = cnn_conv1_at(in, Weights(s), i);
}

KCHAIN_KERNEL(pool)(kchain_state_t* s, int, int) {
  for (int i = 0; i < CNN_A2_SIZE; ++i) {
    Tmp(s)[CNN_TMP_A2 + i] = cnn_pool_at(Tmp(s) + CNN_TMP_A1, Weights(s), i);
  }
}

KCHAIN_KERNEL(fc)(kchain_state_t* s, int, int) {
  float* out = reinterpret_cast<float*>(s->out.dat);
  for (int k = 0; k < CNN_CLASSES; ++k) out[k] = cnn_fc_at(Tmp(s) + CNN_TMP_A2, Weights(s), k);
}
