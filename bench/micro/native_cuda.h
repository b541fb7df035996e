// The native baseline: how a plain CUDA program runs the samples' chains and the bench
// kernels' chains. Device buffers and pinned host buffers made once; per run: async H2D, the
// kernels, async D2H, one stream sync. Either launched directly or replayed from a CUDA graph
// the program captures itself.
#ifndef KCHAIN_BENCH_MICRO_NATIVE_CUDA_H_
#define KCHAIN_BENCH_MICRO_NATIVE_CUDA_H_

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

namespace kchain::bench {

class NativeChain {
 public:
  virtual ~NativeChain() = default;
  // Pinned host buffers the runs read from and write to (C++17: this file is also compiled
  // by nvcc, so no std::span).
  virtual void* input() = 0;
  virtual size_t input_bytes() const = 0;
  virtual const void* output() const = 0;
  virtual size_t output_bytes() const = 0;
  // One run, launched directly. Returns false and sets `error` on any CUDA failure.
  virtual bool Run(std::string* error) = 0;
  // One run replayed from a graph captured on first use.
  virtual bool RunGraph(std::string* error) = 0;
};

// nullptr with `error` set when CUDA fails.
std::unique_ptr<NativeChain> MakeNativeCnn(const std::vector<float>& weights, std::string* error);
std::unique_ptr<NativeChain> MakeNativeVecadd(const std::vector<float>& constants,
                                              std::string* error);

// `stages` launches of bench_noop_kernel (one block of one thread) on a 4-byte output, with
// 4-byte input and output copies: what kchain's chain_len/<stages> chain does.
std::unique_ptr<NativeChain> MakeNativeNoopChain(int stages, std::string* error);

// `bytes` bytes in and out. With `with_kernel`: H2D, bench_copy_kernel<<<grid, block>>> into a
// second device buffer, D2H of that buffer (what kchain's copy_size chain does). Without: H2D
// and D2H of the same device buffer, no kernel (the copies alone).
std::unique_ptr<NativeChain> MakeNativeCopy(size_t bytes, bool with_kernel, int grid, int block,
                                            std::string* error);

}  // namespace kchain::bench

#endif  // KCHAIN_BENCH_MICRO_NATIVE_CUDA_H_
