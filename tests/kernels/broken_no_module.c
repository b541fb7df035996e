/* A library with a kernel but no module declaration: not a kchain kernel library. */
#include <kchain/kernel.h>

KCHAIN_KERNEL(noop)(kchain_state_t* s, int grid, int block) {}
