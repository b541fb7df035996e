/* normalize, host target: the same three stages as normalize.cu, run on the CPU. */
#include <kchain/kernel.h>
#include <math.h>

KCHAIN_MODULE_HOST();

#define N 1024

/* tmp holds {mean, variance, inverse standard deviation} between the stages. */
typedef struct {
  float mean, variance, inv_stddev;
} moments_t;

KCHAIN_KERNEL(moments)(kchain_state_t* s, int grid, int block) {
  (void)grid;
  (void)block;
  if (s->input.len != N * sizeof(float)) {
    kchain_report_error(s, 1, "normalize: input must be 1024 float32 values");
    return;
  }
  const float* x = (const float*)s->input.dat;
  double sum = 0, sum_sq = 0;
  for (int i = 0; i < N; ++i) {
    sum += x[i];
    sum_sq += (double)x[i] * x[i];
  }
  moments_t* m = (moments_t*)s->tmp.dat;
  m->mean = (float)(sum / N);
  m->variance = (float)(sum_sq / N - (sum / N) * (sum / N));
}

KCHAIN_KERNEL(inverse_stddev)(kchain_state_t* s, int grid, int block) {
  (void)grid;
  (void)block;
  const float epsilon = ((const float*)s->constant.dat)[0];
  moments_t* m = (moments_t*)s->tmp.dat;
  m->inv_stddev = 1.0f / sqrtf(m->variance + epsilon); /* sqrtf: link libm */
}

KCHAIN_KERNEL(apply)(kchain_state_t* s, int grid, int block) {
  (void)grid;
  (void)block;
  const float gain = ((const float*)s->constant.dat)[1];
  const moments_t* m = (const moments_t*)s->tmp.dat;
  const float* x = (const float*)s->input.dat;
  float* out = (float*)s->out.dat;
  for (int i = 0; i < N; ++i) out[i] = gain * (x[i] - m->mean) * m->inv_stddev;
}
