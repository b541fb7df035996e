/* Test-only hostile kernel library, host target: its constructor writes an 8-byte error
 * message with no body to the worker's socket (fd 3) while the worker loads it, so that the
 * gateway reads that instead of the worker's reply to LOAD. The gateway must refuse the
 * library, not crash. */
#include <kchain/kernel.h>
#include <stdint.h>
#include <sys/socket.h>

KCHAIN_MODULE_HOST();

__attribute__((constructor)) static void forge_reply_while_loading(void) {
  uint32_t header[2] = {10 /* kError */, 0};
  (void)send(3, header, sizeof header, MSG_DONTWAIT | MSG_NOSIGNAL);
}

KCHAIN_KERNEL(noop)(kchain_state_t* s, int grid, int block) {}
