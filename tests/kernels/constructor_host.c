/* Test-only kernel library, host target, whose static constructor misbehaves on request: the
 * file named by $KCHAIN_TEST_CONSTRUCTOR_MARKER, when it exists when the library is loaded,
 * says how:
 *   "kill"    the process SIGKILLs itself (as if killed from outside while loading);
 *   "segv"    the process crashes with SIGSEGV;
 *   "thread"  a thread is started that lives on in the library's code (a sleep loop), so
 *             unloading the library would unmap code under it.
 * Without the file, the library is well behaved. */
#define _POSIX_C_SOURCE 200809L
#include <kchain/kernel.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

KCHAIN_MODULE_HOST();

static volatile unsigned long g_ticks;

static void* live_in_library_code(void* unused) {
  (void)unused;
  for (;;) {
    struct timespec ms = {0, 1000000};
    nanosleep(&ms, NULL);
    ++g_ticks;
  }
  return NULL;
}

__attribute__((constructor)) static void misbehave_on_request(void) {
  const char* marker = getenv("KCHAIN_TEST_CONSTRUCTOR_MARKER");
  if (marker == NULL) return;
  FILE* f = fopen(marker, "r");
  if (f == NULL) return;
  char what[16] = {0};
  if (fgets(what, sizeof what, f) == NULL) what[0] = '\0';
  fclose(f);
  if (strncmp(what, "kill", 4) == 0) kill(getpid(), SIGKILL);
  if (strncmp(what, "segv", 4) == 0) raise(SIGSEGV);
  if (strncmp(what, "thread", 6) == 0) {
    pthread_t thread;
    if (pthread_create(&thread, NULL, live_in_library_code, NULL) == 0) pthread_detach(thread);
  }
}

KCHAIN_KERNEL(copy_ticks)(kchain_state_t* s, int grid, int block) {
  unsigned long ticks = g_ticks;
  memset(s->out.dat, 0, s->out.len);
  memcpy(s->out.dat, &ticks, s->out.len < sizeof ticks ? s->out.len : sizeof ticks);
}
