// mnist_cnn, CUDA target: one kernel per layer, activations in tmp, weights in constant.
#include "cnn_kernels.cuh"

KCHAIN_MODULE_CUDA();

namespace {
const float* Weights(const kchain_state_t* s) {
  return reinterpret_cast<const float*>(s->constant.dat);
}
float* Tmp(kchain_state_t* s) { return reinterpret_cast<float*>(s->tmp.dat); }
}  // namespace

KCHAIN_KERNEL(conv1)(kchain_state_t* s, int grid, int block) {
  if (!cnn_check(s)) return;
  cnn_conv1_kernel<<<grid, block, 0, s->stream>>>(reinterpret_cast<const float*>(s->input.dat),
                                                  Weights(s), Tmp(s) + CNN_TMP_A1);
}

KCHAIN_KERNEL(pool)(kchain_state_t* s, int grid, int block) {
  cnn_pool_kernel<<<grid, block, 0, s->stream>>>(Tmp(s) + CNN_TMP_A1, Weights(s),
                                                 Tmp(s) + CNN_TMP_A2);
}

KCHAIN_KERNEL(fc)(kchain_state_t* s, int grid, int block) {
  cnn_fc_kernel<<<grid, block, 0, s->stream>>>(Tmp(s) + CNN_TMP_A2, Weights(s),
                                               reinterpret_cast<float*>(s->out.dat));
}
