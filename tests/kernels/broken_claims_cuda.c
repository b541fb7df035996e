/* Host code that declares the cuda target: the wrong target for a host device. */
#include <kchain/kernel.h>

KCHAIN_MODULE_CUDA();
KCHAIN_KERNEL(noop)(kchain_state_t* s, int grid, int block) {}
