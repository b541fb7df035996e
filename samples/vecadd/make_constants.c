/* Writes vecadd's constant vector: constant[i] = (i % 4096) * 0.25, 1,000,000 float32,
 * little-endian. Exactly representable values, so every backend must agree bit for bit. */
#include <stdio.h>

#include "vecadd_common.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s OUTPUT\n", argv[0]);
    return 2;
  }
  FILE* f = fopen(argv[1], "wb");
  if (f == NULL) {
    perror(argv[1]);
    return 1;
  }
  for (unsigned i = 0; i < VECADD_N; ++i) {
    const float v = (float)(i % 4096u) * 0.25f;
    if (fwrite(&v, sizeof v, 1, f) != 1) {
      perror(argv[1]);
      fclose(f);
      return 1;
    }
  }
  if (fclose(f) != 0) {
    perror(argv[1]);
    return 1;
  }
  return 0;
}
