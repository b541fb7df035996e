/* Proves that <kchain/kernel.h> compiles as strict C99 (-std=c99 -Wpedantic -Werror) and that
 * a kernel library written in C works: module symbols, a launcher, kchain_report_error. */
#include <kchain/kernel.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

KCHAIN_MODULE_HOST();

KCHAIN_KERNEL(c_scale)(kchain_state_t* s, int grid, int block) {
  float* out = (float*)s->out.dat;
  const float* in = (const float*)s->input.dat;
  size_t i;
  (void)block;
  if (s->input.len != s->out.len) {
    kchain_report_error(s, 9, "c_scale: input and out must have the same length");
    return;
  }
  for (i = 0; i < s->out.len / sizeof(float); ++i) out[i] = in[i] * (float)grid;
}

static int failures = 0;
#define EXPECT(cond)                                             \
  do {                                                           \
    if (!(cond)) {                                               \
      fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, #cond); \
      ++failures;                                                \
    }                                                            \
  } while (0)

int main(void) {
  float in[4] = {1, 2, 3, 4}, out[4] = {0};
  state_t s; /* the PyPlover alias */
  buf_t* first = &s.input;
  kchain_kernel_fn fn = c_scale;
  char long_message[600];

  memset(&s, 0, sizeof s);
  s.struct_size = (uint32_t)sizeof s;
  s.abi_version = KCHAIN_ABI_VERSION;
  s.input.dat = (uint8_t*)in;
  s.input.len = sizeof in;
  s.out.dat = (uint8_t*)out;
  s.out.len = sizeof out;
  fn(&s, 3, 1);
  EXPECT(s.error_code == 0);
  EXPECT(out[0] == 3.0f && out[3] == 12.0f);

  s.out.len = 8;
  fn(&s, 3, 1);
  EXPECT(s.error_code == 9);
  EXPECT(strcmp(s.error_message, "c_scale: input and out must have the same length") == 0);

  /* Truncation keeps the terminating NUL inside the buffer. */
  memset(long_message, 'y', sizeof long_message - 1);
  long_message[sizeof long_message - 1] = '\0';
  kchain_report_error(&s, 0, long_message);
  EXPECT(s.error_code == 1);
  EXPECT(strlen(s.error_message) == KCHAIN_ERROR_MESSAGE_SIZE - 1);
  kchain_report_error(&s, 4, NULL);
  EXPECT(s.error_code == 4 && s.error_message[0] == '\0');

  EXPECT(kchain_module_abi_version == KCHAIN_ABI_VERSION);
  EXPECT((kchain_module_abi_version >> 16) == KCHAIN_ABI_VERSION_MAJOR);
  EXPECT(strcmp(kchain_module_target, KCHAIN_TARGET_HOST) == 0);
  EXPECT(first == &s.input);
  /* The buffers keep PyPlover's order. */
  EXPECT(offsetof(kchain_state_t, input) < offsetof(kchain_state_t, constant));
  EXPECT(offsetof(kchain_state_t, constant) < offsetof(kchain_state_t, tmp));
  EXPECT(offsetof(kchain_state_t, tmp) < offsetof(kchain_state_t, out));
  EXPECT(offsetof(kchain_state_t, struct_size) == 0);

  if (failures == 0) printf("kernel.h works from C99\n");
  return failures == 0 ? 0 : 1;
}
