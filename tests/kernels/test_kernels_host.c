/* Test-only kernel library, host target. Buffers are treated as float32 arrays unless a
 * kernel says otherwise. */
#include <kchain/kernel.h>
#include <string.h>
#include <time.h>

KCHAIN_MODULE_HOST();

static size_t min_size(size_t a, size_t b) { return a < b ? a : b; }

/* tmp[i] = input[i] + constant[i % nconst] (nconst = 0 means + 0). */
KCHAIN_KERNEL(add_constant)(kchain_state_t* s, int grid, int block) {
  const float* in = (const float*)s->input.dat;
  const float* c = (const float*)s->constant.dat;
  float* tmp = (float*)s->tmp.dat;
  const size_t n = min_size(s->input.len, s->tmp.len) / sizeof(float);
  const size_t nc = s->constant.len / sizeof(float);
  for (size_t i = 0; i < n; ++i) tmp[i] = in[i] + (nc ? c[i % nc] : 0.0f);
}

/* out[i] = 2 * tmp[i]: reads what an earlier stage left in tmp. */
KCHAIN_KERNEL(double_tmp_to_out)(kchain_state_t* s, int grid, int block) {
  const float* tmp = (const float*)s->tmp.dat;
  float* out = (float*)s->out.dat;
  const size_t n = min_size(s->tmp.len, s->out.len) / sizeof(float);
  for (size_t i = 0; i < n; ++i) out[i] = 2.0f * tmp[i];
}

/* out = the constant bytes (as many as fit). */
KCHAIN_KERNEL(constant_to_out)(kchain_state_t* s, int grid, int block) {
  memcpy(s->out.dat, s->constant.dat, min_size(s->out.len, s->constant.len));
}

/* out = the input bytes (as many as fit), the rest zero. */
KCHAIN_KERNEL(copy_input_to_out)(kchain_state_t* s, int grid, int block) {
  const size_t n = min_size(s->out.len, s->input.len);
  memcpy(s->out.dat, s->input.dat, n);
  memset(s->out.dat + n, 0, s->out.len - n);
}

/* out = what the runtime passed, as uint64: struct_size, abi_version, input.len,
 * constant.len, tmp.len, out.len, grid, block, stream-is-null. Needs out.len >= 72. */
KCHAIN_KERNEL(describe_state)(kchain_state_t* s, int grid, int block) {
  uint64_t v[9];
  v[0] = s->struct_size;
  v[1] = s->abi_version;
  v[2] = s->input.len;
  v[3] = s->constant.len;
  v[4] = s->tmp.len;
  v[5] = s->out.len;
  v[6] = (uint64_t)grid;
  v[7] = (uint64_t)block;
  v[8] = s->stream == NULL;
  if (s->out.len < sizeof v) {
    kchain_report_error(s, 7, "describe_state needs out_bytes >= 72");
    return;
  }
  memcpy(s->out.dat, v, sizeof v);
}

/* Counts its own calls; out[0..8) = the count as uint64. */
static uint64_t g_calls;
KCHAIN_KERNEL(count_calls)(kchain_state_t* s, int grid, int block) {
  ++g_calls;
  memcpy(s->out.dat, &g_calls, min_size(sizeof g_calls, s->out.len));
}

KCHAIN_KERNEL(report_error)(kchain_state_t* s, int grid, int block) {
  kchain_report_error(s, 42, "test: the input was not what this kernel expects");
}

KCHAIN_KERNEL(report_long_error)(kchain_state_t* s, int grid, int block) {
  char message[1000];
  memset(message, 'x', sizeof message - 1);
  message[sizeof message - 1] = '\0';
  kchain_report_error(s, 3, message);
}

KCHAIN_KERNEL(report_zero_code)(kchain_state_t* s, int grid, int block) {
  kchain_report_error(s, 0, NULL);
}

/* Fails only when the input is shorter than 8 bytes; otherwise copies input to out. */
KCHAIN_KERNEL(fail_on_short_input)(kchain_state_t* s, int grid, int block) {
  if (s->input.len < 8) {
    kchain_report_error(s, 5, "input shorter than 8 bytes");
    return;
  }
  memcpy(s->out.dat, s->input.dat, min_size(s->out.len, s->input.len));
}

KCHAIN_KERNEL(noop)(kchain_state_t* s, int grid, int block) {}

/* Sleeps for the number of milliseconds in the first 4 bytes of the input (a uint32), then
 * copies the input to out: a slow function, for queueing and timeout tests. */
KCHAIN_KERNEL(sleep_then_copy)(kchain_state_t* s, int grid, int block) {
  uint32_t ms = 0;
  if (s->input.len >= sizeof ms) memcpy(&ms, s->input.dat, sizeof ms);
  struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0) {
  }
  const size_t n = min_size(s->out.len, s->input.len);
  memcpy(s->out.dat, s->input.dat, n);
  memset(s->out.dat + n, 0, s->out.len - n);
}

/* Misbehaves as the first uint32 of the input says, then (mode 0) copies input to out:
 *   0 behave   1 segfault   2 abort   3 spin forever   4 eat host memory until stopped. */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <unistd.h>

enum { MODE_BEHAVE, MODE_SEGFAULT, MODE_ABORT, MODE_SPIN, MODE_EAT_MEMORY };

static void eat_memory(void) {
  /* 64 MiB a step, every page touched, a little pause so a watchdog can see it grow. */
  for (int i = 0; i < 1024; ++i) {
    char* block = (char*)malloc((size_t)64 << 20);
    if (block == NULL) abort();
    for (size_t at = 0; at < ((size_t)64 << 20); at += 4096) block[at] = (char)at;
    struct timespec ts = {0, 2000000};
    nanosleep(&ts, NULL);
  }
  abort();
}

KCHAIN_KERNEL(misbehave)(kchain_state_t* s, int grid, int block) {
  uint32_t mode = 0;
  if (s->input.len >= sizeof mode) memcpy(&mode, s->input.dat, sizeof mode);
  switch (mode) {
    case MODE_SEGFAULT:
      *(volatile int*)(uintptr_t)8 = 1;
      break;
    case MODE_ABORT:
      abort();
    case MODE_SPIN:
      for (volatile unsigned long n = 0;; ++n) {
      }
    case MODE_EAT_MEMORY:
      eat_memory();
      break;
    default:
      break;
  }
  const size_t n = min_size(s->out.len, s->input.len);
  memcpy(s->out.dat, s->input.dat, n);
}

/* out = int32 results of things a sandboxed launcher must not be able to do: each is 0 when
 * it succeeded, else the errno. [0] fork, [1] socket, [2] ptrace attach to the parent,
 * [3] kill(parent, 0), [4] execve, then [5] the process id, [6] the user id, [7] opening
 * /etc/shadow (root's). */
#include <fcntl.h>
KCHAIN_KERNEL(try_forbidden)(kchain_state_t* s, int grid, int block) {
  int32_t r[8] = {0};
  errno = 0;
  const pid_t child = fork();
  if (child == 0) _exit(0); /* should never happen */
  r[0] = child < 0 ? errno : 0;
  errno = 0;
  const int sock = socket(AF_INET, SOCK_STREAM, 0);
  r[1] = sock < 0 ? errno : 0;
  if (sock >= 0) close(sock);
  errno = 0;
  r[2] = ptrace(PTRACE_ATTACH, getppid(), NULL, NULL) < 0 ? errno : 0;
  errno = 0;
  r[3] = kill(getppid(), 0) < 0 ? errno : 0;
  char* const argv[] = {(char*)"/bin/true", NULL};
  char* const envp[] = {NULL};
  errno = 0;
  execve("/bin/true", argv, envp);
  r[4] = errno;
  r[5] = (int32_t)getpid();
  r[6] = (int32_t)getuid();
  errno = 0;
  const int fd = open("/etc/shadow", O_RDONLY);
  r[7] = fd < 0 ? errno : 0;
  if (fd >= 0) close(fd);
  memcpy(s->out.dat, r, min_size(sizeof r, s->out.len));
}

/* out[0..4) = the process id running the kernel. */
KCHAIN_KERNEL(report_pid)(kchain_state_t* s, int grid, int block) {
  const int32_t pid = (int32_t)getpid();
  memcpy(s->out.dat, &pid, min_size(sizeof pid, s->out.len));
}

/* out = int32 errno of system calls that are on no allow-list (0 when one succeeded), then
 * whether ordinary work still runs: [0] io_uring_setup, [1] personality (query),
 * [2] userfaultfd, [3] add_key, [4] unshare(CLONE_NEWUSER), [5] a thread ran (1), [6] an
 * anonymous mapping worked (1), [7] the process id. */
#include <pthread.h>
#include <sys/mman.h>
#include <sys/syscall.h>
static void* set_flag(void* flag) {
  *(volatile int*)flag = 1;
  return NULL;
}
static int32_t errno_of(long result) { return result < 0 ? (int32_t)errno : 0; }
KCHAIN_KERNEL(try_unlisted)(kchain_state_t* s, int grid, int block) {
  int32_t r[8] = {0};
  char params[120] = {0};
  errno = 0;
  r[0] = errno_of(syscall(SYS_io_uring_setup, 1, params));
  errno = 0;
  r[1] = errno_of(syscall(SYS_personality, 0xffffffffUL));
  errno = 0;
  r[2] = errno_of(syscall(SYS_userfaultfd, 0));
  errno = 0;
  r[3] = errno_of(syscall(SYS_add_key, "user", "kchain", "x", 1, -2 /* session */));
  errno = 0;
  r[4] = errno_of(syscall(SYS_unshare, 0x10000000 /* CLONE_NEWUSER */));
  volatile int flag = 0;
  pthread_t thread;
  if (pthread_create(&thread, NULL, set_flag, (void*)&flag) == 0) pthread_join(thread, NULL);
  r[5] = flag;
  void* page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  r[6] = page != MAP_FAILED;
  if (page != MAP_FAILED) munmap(page, 4096);
  r[7] = (int32_t)getpid();
  memcpy(s->out.dat, r, min_size(sizeof r, s->out.len));
}

/* Burns the first uint32 of the input, in milliseconds, of this thread's CPU time (not wall
 * time: on a busy machine the wall time is longer), then copies the input to out (as many
 * bytes as fit). */
KCHAIN_KERNEL(burn_then_copy)(kchain_state_t* s, int grid, int block) {
  uint32_t ms = 0;
  if (s->input.len >= sizeof ms) memcpy(&ms, s->input.dat, sizeof ms);
  struct timespec start, now;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &start);
  volatile unsigned long spins = 0;
  do {
    for (int i = 0; i < 10000; ++i) ++spins;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
  } while ((now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000 < ms);
  const size_t n = min_size(s->out.len, s->input.len);
  memcpy(s->out.dat, s->input.dat, n);
}
