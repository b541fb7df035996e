// Test-only kernel library, CUDA target: the host library's float kernels, plus kernels that
// break the contract or fault, for the gpu tests.
#include <kchain/kernel.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>

static __global__ void trap_kernel() { __trap(); }

KCHAIN_MODULE_CUDA();

namespace {

__global__ void add_constant_kernel(const float* d_in, const float* d_c, float* d_tmp, size_t n,
                                    size_t nc) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
       i += (size_t)gridDim.x * blockDim.x)
    d_tmp[i] = d_in[i] + (nc ? d_c[i % nc] : 0.0f);
}

__global__ void double_kernel(const float* d_tmp, float* d_out, size_t n) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
       i += (size_t)gridDim.x * blockDim.x)
    d_out[i] = 2.0f * d_tmp[i];
}

__global__ void write_to_bad_address_kernel(float* d_bad) { d_bad[threadIdx.x] = 1.0f; }

__global__ void noop_kernel() {}

// Never finishes: the invocation timeout must stop it (by killing its worker).
__global__ void spin_forever_kernel(volatile int* d_flag) {
  while (*d_flag == 0) {
  }
}

size_t MinSize(size_t a, size_t b) { return a < b ? a : b; }

void AddConstant(kchain_state_t* s, int grid, int block, cudaStream_t stream) {
  add_constant_kernel<<<grid, block, 0, stream>>>(
      reinterpret_cast<const float*>(s->input.dat), reinterpret_cast<const float*>(s->constant.dat),
      reinterpret_cast<float*>(s->tmp.dat), MinSize(s->input.len, s->tmp.len) / sizeof(float),
      s->constant.len / sizeof(float));
}

}  // namespace

KCHAIN_KERNEL(add_constant)(kchain_state_t* s, int grid, int block) {
  AddConstant(s, grid, block, s->stream);
}

KCHAIN_KERNEL(double_tmp_to_out)(kchain_state_t* s, int grid, int block) {
  double_kernel<<<grid, block, 0, s->stream>>>(reinterpret_cast<const float*>(s->tmp.dat),
                                               reinterpret_cast<float*>(s->out.dat),
                                               MinSize(s->tmp.len, s->out.len) / sizeof(float));
}

// Everything kernel.h allows a launcher in one: zero tmp with cudaMemsetAsync, several kernels,
// check them with cudaPeekAtLastError and cudaGetLastError. out = 2 * (input + constant), and
// it must be recorded into a graph like any other launcher.
KCHAIN_KERNEL(memset_two_kernels_checked)(kchain_state_t* s, int grid, int block) {
  if (cudaMemsetAsync(s->tmp.dat, 0, s->tmp.len, s->stream) != cudaSuccess) {
    kchain_report_error(s, 1, "cudaMemsetAsync failed");
    return;
  }
  AddConstant(s, grid, block, s->stream);
  if (cudaPeekAtLastError() != cudaSuccess) {
    kchain_report_error(s, 2, cudaGetErrorString(cudaGetLastError()));
    return;
  }
  double_kernel<<<grid, block, 0, s->stream>>>(reinterpret_cast<const float*>(s->tmp.dat),
                                               reinterpret_cast<float*>(s->out.dat),
                                               MinSize(s->tmp.len, s->out.len) / sizeof(float));
  const cudaError_t launched = cudaGetLastError();
  if (launched != cudaSuccess) kchain_report_error(s, 3, cudaGetErrorString(launched));
}

// Breaks the contract: launches on the legacy default stream. Graph capture must fail and the
// instance must fall back to direct launches, still computing the right thing.
KCHAIN_KERNEL(add_constant_on_legacy_stream)(kchain_state_t* s, int grid, int block) {
  AddConstant(s, grid, block, /*stream=*/0);
}

KCHAIN_KERNEL(report_error)(kchain_state_t* s, int grid, int block) {
  kchain_report_error(s, 42, "test: the input was not what this kernel expects");
}

// A launch the device refuses (more threads per block than any GPU allows): a launch error,
// not a sticky fault.
KCHAIN_KERNEL(bad_launch_config)(kchain_state_t* s, int grid, int block) {
  noop_kernel<<<1, 4096, 0, s->stream>>>();
}

// Writes through a pointer no allocation covers: an illegal address, a sticky fault.
KCHAIN_KERNEL(illegal_address)(kchain_state_t* s, int grid, int block) {
  write_to_bad_address_kernel<<<1, 32, 0, s->stream>>>(reinterpret_cast<float*>(0x100));
}

KCHAIN_KERNEL(noop)(kchain_state_t* s, int grid, int block) {
  noop_kernel<<<grid, block, 0, s->stream>>>();
}

// Misbehaves as the input's length says (a launcher may read s->input.len, never the data):
//   4 bytes: behave (copy input to out)   8: segfault   12: abort   16: spin on the device
//   forever   20: illegal address on the device   24: eat host memory until stopped
//   28: __trap() on the device.
KCHAIN_KERNEL(misbehave_by_length)(kchain_state_t* s, int grid, int block) {
  switch (s->input.len) {
    case 24:
      for (int i = 0; i < 1024; ++i) {  // 64 MiB a step, every page touched
        char* chunk = static_cast<char*>(malloc(size_t{64} << 20));
        if (chunk == nullptr) abort();
        for (size_t at = 0; at < (size_t{64} << 20); at += 4096) chunk[at] = 1;
        usleep(2000);
      }
      abort();
    case 8:
      *(volatile int*)(uintptr_t)8 = 1;
      break;
    case 12:
      abort();
    case 16:
      // The flag is cleared first and nothing ever sets it.
      cudaMemsetAsync(s->tmp.dat, 0, sizeof(int), s->stream);
      spin_forever_kernel<<<1, 1, 0, s->stream>>>(reinterpret_cast<volatile int*>(s->tmp.dat));
      return;
    case 20:
      write_to_bad_address_kernel<<<1, 32, 0, s->stream>>>(reinterpret_cast<float*>(0x100));
      return;
    case 28:
      trap_kernel<<<1, 1, 0, s->stream>>>();
      return;
    default:
      cudaMemcpyAsync(s->out.dat, s->input.dat, MinSize(s->out.len, s->input.len),
                      cudaMemcpyDeviceToDevice, s->stream);
  }
}
