/* Declares a newer ABI minor version than the runtime's: built against a newer kchain. */
#include <kchain/kernel.h>

KCHAIN_EXPORT const uint32_t kchain_module_abi_version =
    ((uint32_t)KCHAIN_ABI_VERSION_MAJOR << 16) | (uint32_t)(KCHAIN_ABI_VERSION_MINOR + 1);
KCHAIN_EXPORT const char kchain_module_target[] = "host";
KCHAIN_KERNEL(noop)(kchain_state_t* s, int grid, int block) {}
