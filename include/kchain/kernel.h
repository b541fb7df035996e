/*
 * kchain kernel ABI: the contract between a kernel library and the kchain runtime.
 *
 * This header is pure C. It compiles as C99, C++ and CUDA (tests/abi/kernel_abi_c_test.c
 * proves the C part). Kernel authors include it and nothing else from kchain.
 *
 * Conventions, stated once:
 *  - Every public name carries the prefix `kchain_` / `KCHAIN_`. The PyPlover names `buf_t`
 *    and `state_t` are provided as aliases; define KCHAIN_NO_PYPLOVER_NAMES before including
 *    this header to leave them out.
 *  - Integers have fixed widths; sizes are size_t bytes.
 *  - Nothing here allocates. Nothing crosses the boundary as a C++ exception: a launcher
 *    reports failure through kchain_report_error() and returns.
 *
 * The kernel contract
 * -------------------
 * A kernel library is a shared object with:
 *  - one module declaration, KCHAIN_MODULE_CUDA() or KCHAIN_MODULE_HOST(), which exports
 *    the ABI version it was built against and its target;
 *  - one or more launchers, declared with KCHAIN_KERNEL(name):
 *        KCHAIN_KERNEL(scale)(kchain_state_t* s, int grid, int block) { ... }
 *    `grid` and `block` come from the function's manifest, stage by stage. A manifest can
 *    name only functions the library itself defines and exports: not a function of a library
 *    it links (abort, say), not data, and no name starting with `kchain_` (reserved).
 *
 * A launcher (cuda target):
 *  - enqueues its GPU work on `s->stream` and returns. It may enqueue several kernels (they
 *    run in order), cudaMemsetAsync() or device-to-device cudaMemcpyAsync() between the
 *    state's buffers on `s->stream` (to zero `tmp`, say), and check its launches with
 *    cudaGetLastError() / cudaPeekAtLastError(). All of these work in direct mode and under
 *    graph capture (tests/gpu/cuda_runtime_test.cc runs one that does all of them);
 *  - never synchronizes (no cudaDeviceSynchronize / cudaStreamSynchronize / cudaEvent waits /
 *    blocking copies), never copies to or from host memory, never uses the legacy default
 *    stream (`<<<grid, block>>>` without `s->stream`) or another stream, never allocates or
 *    frees device memory (cudaMalloc, cudaMallocAsync, cudaFree), never changes the device
 *    or its settings (cudaSetDevice, cudaDeviceReset, cudaDeviceSetLimit). A launch that
 *    breaks the stream rules makes graph capture fail: the instance then falls back to
 *    direct launches and stays correct, only slower;
 *  - keeps no state of its own between calls: the runtime may record the launcher's work
 *    into a CUDA graph after the first good run and replay it later, and whatever the
 *    launcher reads from `s` (pointers, lengths, grid, block) is baked into that graph, so a
 *    launcher must be a pure function of `s`, `grid` and `block`. Instances of one function
 *    (and other functions of the same tenant) may run at the same time in one process, so
 *    no mutable global or `__device__` variables either;
 *  - may call kchain_report_error() to fail the invocation with a message (for example when
 *    `s->input.len` is not what it expects, or a cudaGetLastError() is not cudaSuccess). A
 *    launch error it does not check still fails the invocation, naming the kernel; one it
 *    takes with cudaGetLastError() (which clears it) it must report itself.
 * A launcher (host target) does the work itself, synchronously, on the calling thread, with
 *  the same buffers in host memory. `s->stream` is NULL there.
 *
 * The buffers (all owned by the runtime; a launcher never frees or reallocates them):
 *  - input:    this invocation's input bytes. `len` is the length of this invocation's input
 *              (at most the function's declared maximum). Read-only for launchers.
 *  - constant: the function's constant blob (weights...), uploaded once per instance and
 *              kept across invocations. Read-only for launchers. `len` 0 and `dat` NULL when
 *              the function has no constants.
 *  - tmp:      scratch space of the declared size, shared by the stages of one chain to pass
 *              data from one kernel to the next. Its contents are undefined at the start of
 *              an invocation.
 *  - out:      the function's output, of the declared size; returned to the caller after the
 *              last stage. Its contents are undefined at the start of an invocation, so the
 *              chain must write every byte it means to return.
 * On the cuda target the `dat` pointers are device pointers; on the host target they are
 * host pointers. All are aligned to at least 256 bytes.
 *
 * Versioning
 * ----------
 * KCHAIN_ABI_VERSION_MAJOR changes when the layout or meaning of an existing field changes.
 * KCHAIN_ABI_VERSION_MINOR changes when fields are appended to kchain_state_t (the struct
 * only ever grows at its end) or new optional symbols appear. A library loads when its major
 * equals the runtime's major and its minor is at most the runtime's minor. `struct_size`
 * tells a launcher how much of the struct the runtime filled in.
 */
#ifndef KCHAIN_KERNEL_H_
#define KCHAIN_KERNEL_H_

#include <stddef.h>
#include <stdint.h>

#define KCHAIN_ABI_VERSION_MAJOR 1
#define KCHAIN_ABI_VERSION_MINOR 0
/* Major in the high 16 bits, minor in the low 16 bits. */
#define KCHAIN_ABI_VERSION \
  ((uint32_t)(((uint32_t)KCHAIN_ABI_VERSION_MAJOR << 16) | (uint32_t)KCHAIN_ABI_VERSION_MINOR))

#define KCHAIN_TARGET_CUDA "cuda"
#define KCHAIN_TARGET_HOST "host"

/* Size of the error message buffer in kchain_state_t, terminating NUL included. */
#define KCHAIN_ERROR_MESSAGE_SIZE 256

/* Names of the module symbols the loader looks up. */
#define KCHAIN_SYMBOL_ABI_VERSION "kchain_module_abi_version"
#define KCHAIN_SYMBOL_TARGET "kchain_module_target"

#ifdef __cplusplus
#define KCHAIN_EXTERN_C extern "C"
#else
#define KCHAIN_EXTERN_C
#endif

/* Kernel libraries are built with hidden visibility; only what is marked with this is
 * exported. */
#define KCHAIN_EXPORT __attribute__((visibility("default")))

#ifdef __cplusplus
extern "C" {
#endif

/* Same type as cudaStream_t (`struct CUstream_st*`), declared without the CUDA headers so that
 * this header stays plain C. A launcher passes it straight to <<<grid, block, 0, s->stream>>>. */
struct CUstream_st;
typedef struct CUstream_st* kchain_stream_t;

/* A byte buffer owned by the runtime. */
typedef struct kchain_buf {
  uint8_t* dat;
  size_t len;
} kchain_buf_t;

/* Everything a launcher sees. Filled in by the runtime before each launcher call. */
typedef struct kchain_state {
  /* sizeof(kchain_state_t) as the runtime was compiled; the struct grows append-only. */
  uint32_t struct_size;
  /* KCHAIN_ABI_VERSION of the runtime. */
  uint32_t abi_version;

  kchain_buf_t input;
  kchain_buf_t constant;
  kchain_buf_t tmp;
  kchain_buf_t out;

  /* The stream to enqueue on (cuda target). NULL on the host target. */
  kchain_stream_t stream;

  /* A launcher sets error_code to nonzero (through kchain_report_error) to fail the
   * invocation; the runtime clears both fields before each launcher call. */
  int32_t error_code;
  char error_message[KCHAIN_ERROR_MESSAGE_SIZE];
} kchain_state_t;

/* The launcher signature, PyPlover's `void k(state_t* s, int grid, int block)`. */
typedef void (*kchain_kernel_fn)(kchain_state_t* s, int grid, int block);

#ifndef KCHAIN_NO_PYPLOVER_NAMES
typedef kchain_buf_t buf_t;
typedef kchain_state_t state_t;
#endif

/* Fails the current invocation: sets s->error_code to `code` (1 if `code` is 0) and copies
 * `message` (truncated to fit, always NUL-terminated) into s->error_message. Allocates
 * nothing. Safe to call with a NULL message. */
static inline void kchain_report_error(kchain_state_t* s, int32_t code, const char* message) {
  size_t i = 0;
  s->error_code = code != 0 ? code : 1;
  if (message != NULL) {
    for (; i + 1 < KCHAIN_ERROR_MESSAGE_SIZE && message[i] != '\0'; ++i) {
      s->error_message[i] = message[i];
    }
  }
  s->error_message[i] = '\0';
}

#ifdef __cplusplus
} /* extern "C" */
#endif

/* Declares (and, followed by a body, defines) an exported launcher:
 *   KCHAIN_KERNEL(vecadd)(kchain_state_t* s, int grid, int block) { ... } */
#define KCHAIN_KERNEL(name) KCHAIN_EXTERN_C KCHAIN_EXPORT void name

/* Declares the module symbols. Use exactly one of these once per library, at file scope. */
#define KCHAIN_MODULE_WITH_TARGET(target_literal)                                              \
  KCHAIN_EXTERN_C KCHAIN_EXPORT const uint32_t kchain_module_abi_version = KCHAIN_ABI_VERSION; \
  KCHAIN_EXTERN_C KCHAIN_EXPORT const char kchain_module_target[] = target_literal
#define KCHAIN_MODULE_CUDA() KCHAIN_MODULE_WITH_TARGET(KCHAIN_TARGET_CUDA)
#define KCHAIN_MODULE_HOST() KCHAIN_MODULE_WITH_TARGET(KCHAIN_TARGET_HOST)

#endif /* KCHAIN_KERNEL_H_ */
