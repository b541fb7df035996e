/* Declares an ABI major version the runtime does not speak. */
#include <kchain/kernel.h>

KCHAIN_EXPORT const uint32_t kchain_module_abi_version =
    ((uint32_t)(KCHAIN_ABI_VERSION_MAJOR + 1) << 16);
KCHAIN_EXPORT const char kchain_module_target[] = "host";
KCHAIN_KERNEL(noop)(kchain_state_t* s, int grid, int block) {}
