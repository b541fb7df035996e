/* Well declared, but needs a symbol nothing provides: dlopen(RTLD_NOW) must refuse it. */
#include <kchain/kernel.h>

KCHAIN_MODULE_HOST();
extern void kchain_test_function_that_does_not_exist(void);
KCHAIN_KERNEL(noop)(kchain_state_t* s, int grid, int block) {
  kchain_test_function_that_does_not_exist();
}
