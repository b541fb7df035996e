/* The mnist_cnn network (PyPlover Table 1), one function per output element, shared by the
 * CUDA kernels and the host launchers so that both targets compute the same thing.
 *
 *   input  28x28 float32 image in [0,1]
 *   conv1  6 filters 5x5, stride 1, bias, sigmoid      -> a1[6][24][24]  (in tmp)
 *   pool   one 4x4 stride-4 filter shared by the 6 channels, bias, sigmoid
 *                                                      -> a2[6][6][6]    (in tmp)
 *   fc     216 -> 10, bias, no activation              -> out[10] logits
 *
 * Constant buffer (weights.bin, written by train/train.py), float32 in this order:
 *   conv1_w[6][5][5], conv1_b[6], pool_w[4][4], pool_b[1], fc_w[10][216], fc_b[10]. */
#ifndef KCHAIN_SAMPLES_CNN_LAYERS_H_
#define KCHAIN_SAMPLES_CNN_LAYERS_H_

#include <kchain/kernel.h>
#include <math.h>

#ifdef __CUDACC__
#define CNN_HD __host__ __device__
#else
#define CNN_HD
#endif

enum {
  CNN_IN = 28,
  CNN_K1 = 5,
  CNN_C1 = 6,
  CNN_A1 = 24, /* CNN_IN - CNN_K1 + 1 */
  CNN_P = 4,
  CNN_A2 = 6, /* CNN_A1 / CNN_P */
  CNN_FC_IN = CNN_C1 * CNN_A2 * CNN_A2,
  CNN_CLASSES = 10,

  /* Offsets into the constant buffer, in floats. */
  CNN_CONV1_W = 0,
  CNN_CONV1_B = CNN_CONV1_W + CNN_C1 * CNN_K1 * CNN_K1,
  CNN_POOL_W = CNN_CONV1_B + CNN_C1,
  CNN_POOL_B = CNN_POOL_W + CNN_P * CNN_P,
  CNN_FC_W = CNN_POOL_B + 1,
  CNN_FC_B = CNN_FC_W + CNN_CLASSES * CNN_FC_IN,
  CNN_WEIGHTS = CNN_FC_B + CNN_CLASSES, /* 2343 floats = 9372 bytes */

  /* Element counts of each layer's output, and offsets into tmp, in floats. */
  CNN_A1_SIZE = CNN_C1 * CNN_A1 * CNN_A1, /* 3456 */
  CNN_A2_SIZE = CNN_FC_IN,                /* 216 */
  CNN_TMP_A1 = 0,
  CNN_TMP_A2 = CNN_A1_SIZE,
  CNN_TMP_FLOATS = CNN_A1_SIZE + CNN_A2_SIZE /* 3672 floats = 14688 bytes */
};

CNN_HD static inline float cnn_sigmoid(float v) { return 1.0f / (1.0f + expf(-v)); }

/* a1[c][y][x] for idx = (c*24 + y)*24 + x. */
CNN_HD static inline float cnn_conv1_at(const float* in, const float* w, int idx) {
  const int c = idx / (CNN_A1 * CNN_A1), y = (idx / CNN_A1) % CNN_A1, x = idx % CNN_A1;
  const float* filter = w + CNN_CONV1_W + c * CNN_K1 * CNN_K1;
  float acc = w[CNN_CONV1_B + c];
  for (int i = 0; i < CNN_K1; ++i) {
    for (int j = 0; j < CNN_K1; ++j) acc += filter[i * CNN_K1 + j] * in[(y + i) * CNN_IN + x + j];
  }
  return cnn_sigmoid(acc);
}

/* a2[c][y][x] for idx = (c*6 + y)*6 + x. */
CNN_HD static inline float cnn_pool_at(const float* a1, const float* w, int idx) {
  const int c = idx / (CNN_A2 * CNN_A2), y = (idx / CNN_A2) % CNN_A2, x = idx % CNN_A2;
  const float* plane = a1 + c * CNN_A1 * CNN_A1;
  float acc = w[CNN_POOL_B];
  for (int i = 0; i < CNN_P; ++i) {
    for (int j = 0; j < CNN_P; ++j) {
      acc += w[CNN_POOL_W + i * CNN_P + j] * plane[(CNN_P * y + i) * CNN_A1 + CNN_P * x + j];
    }
  }
  return cnn_sigmoid(acc);
}

/* out[k], the logit of class k. */
CNN_HD static inline float cnn_fc_at(const float* a2, const float* w, int k) {
  const float* row = w + CNN_FC_W + k * CNN_FC_IN;
  float acc = w[CNN_FC_B + k];
  for (int n = 0; n < CNN_FC_IN; ++n) acc += row[n] * a2[n];
  return acc;
}

/* Checks the buffers the first stage is given; returns 0 after reporting an error. */
static inline int cnn_check(kchain_state_t* s) {
  if (s->input.len != CNN_IN * CNN_IN * sizeof(float)) {
    kchain_report_error(s, 1, "mnist_cnn: input must be one 28x28 float32 image (3136 bytes)");
    return 0;
  }
  if (s->constant.len != CNN_WEIGHTS * sizeof(float)) {
    kchain_report_error(s, 2, "mnist_cnn: constant must hold the 2343 float32 weights");
    return 0;
  }
  if (s->tmp.len < CNN_TMP_FLOATS * sizeof(float) || s->out.len < CNN_CLASSES * sizeof(float)) {
    kchain_report_error(s, 3, "mnist_cnn: tmp must be >= 14688 bytes and out >= 40 bytes");
    return 0;
  }
  return 1;
}

#endif /* KCHAIN_SAMPLES_CNN_LAYERS_H_ */
