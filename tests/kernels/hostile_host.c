/* Test-only hostile kernel library, host target: it attacks the gateway through the worker it
 * runs in. A worker runs tenant code, so everything the worker writes (its socket, its control
 * page) is under the library's control; the gateway must treat all of it as hostile input.
 *
 * Each kernel's first uint32 of input picks nothing: the kernel's name says what it does. The
 * worker's socket to the gateway is fd 3 (gateway/worker/protocol.h); messages are
 * {uint32 type, uint32 body_bytes} followed by the body. */
#define _GNU_SOURCE
#include <kchain/kernel.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

KCHAIN_MODULE_HOST();

enum { kReady = 1, kLoaded = 3, kRan = 5, kError = 10 };

static void send_header_only(uint32_t type, uint32_t body_bytes) {
  uint32_t header[2] = {type, body_bytes};
  (void)send(3, header, sizeof header, MSG_DONTWAIT | MSG_NOSIGNAL);
}

/* An error message with no ErrorBody: the gateway used to dereference the missing body. */
KCHAIN_KERNEL(forge_empty_error)(kchain_state_t* s, int grid, int block) {
  send_header_only(kError, 0);
  memset(s->out.dat, 0, s->out.len);
}

/* A RAN message too short for a RanBody, then one with a status code far out of range. */
KCHAIN_KERNEL(forge_bad_ran)(kchain_state_t* s, int grid, int block) {
  send_header_only(kRan, 0);
  struct {
    uint32_t type, body_bytes;
    uint64_t sequence;
    uint32_t status_code, mode, stages_timed, broken;
    double timings[4];
  } ran = {kRan, 8 + 16 + 32, 1, 0xfffffff0u, 77, 9, 5, {-1.0, 1e300, 0, 0}};
  (void)send(3, &ran, sizeof ran, MSG_DONTWAIT | MSG_NOSIGNAL);
  memset(s->out.dat, 0, s->out.len);
}

/* Floods the socket with messages the gateway never asked for. */
KCHAIN_KERNEL(flood_socket)(kchain_state_t* s, int grid, int block) {
  for (int i = 0; i < 5000; ++i) send_header_only((uint32_t)(i % 12), (uint32_t)i);
  memset(s->out.dat, 0, s->out.len);
}

/* Finds this process's shared instance memory (the gateway maps the same file) and keeps
 * scribbling over its control page from a thread of its own: reply codes out of range, a
 * message with no terminating NUL, reply sequence numbers that jump around. */
static uint8_t* control_page(void) {
  FILE* maps = fopen("/proc/self/maps", "r");
  if (maps == NULL) return NULL;
  char line[512];
  uint8_t* found = NULL;
  while (fgets(line, sizeof line, maps) != NULL) {
    if (strstr(line, "memfd:kchain-instance") != NULL) {
      unsigned long start = 0;
      if (sscanf(line, "%lx-", &start) == 1) found = (uint8_t*)start;
      break;
    }
  }
  fclose(maps);
  return found;
}

static void* scribble(void* page_arg) {
  uint8_t* page = (uint8_t*)page_arg;
  for (uint64_t round = 0;; ++round) {
    memset(page + 128, 0xff, 4096 - 128); /* RanBody and message, no NUL anywhere */
    uint32_t code = 0x7fffffffu;
    memcpy(page + 128 + 8, &code, sizeof code);
    uint64_t sequence = round % 3 == 0 ? ~(uint64_t)0 : round;
    memcpy(page + 64, &sequence, sizeof sequence);
  }
  return NULL;
}

KCHAIN_KERNEL(scribble_control_page)(kchain_state_t* s, int grid, int block) {
  static int started;
  if (!started) {
    uint8_t* page = control_page();
    if (page == NULL) {
      kchain_report_error(s, 5, "hostile: no control page found");
      return;
    }
    pthread_t thread;
    if (pthread_create(&thread, NULL, scribble, page) == 0) pthread_detach(thread);
    started = 1;
  }
  memset(s->out.dat, 0, s->out.len);
}

/* Reports an error whose text is long, has no NUL within the buffer's reach and is full of
 * control characters. */
KCHAIN_KERNEL(report_garbage_error)(kchain_state_t* s, int grid, int block) {
  for (int i = 0; i < KCHAIN_ERROR_MESSAGE_SIZE; ++i) s->error_message[i] = (char)(i % 32);
  s->error_code = -5;
}
