/* Declares a target that does not exist. */
#include <kchain/kernel.h>

KCHAIN_MODULE_WITH_TARGET("tpu");
KCHAIN_KERNEL(noop)(kchain_state_t* s, int grid, int block) {}
