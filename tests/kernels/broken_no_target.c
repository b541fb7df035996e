/* Declares its ABI version but not its target. */
#include <kchain/kernel.h>

KCHAIN_EXPORT const uint32_t kchain_module_abi_version = KCHAIN_ABI_VERSION;
KCHAIN_KERNEL(noop)(kchain_state_t* s, int grid, int block) {}
