// The native baseline: how a plain CUDA program runs the samples' chains. Device buffers and
// pinned host buffers made once; per run: async H2D, the kernels, async D2H, one stream sync.
// Either launched directly or replayed from a CUDA graph the program captures itself.
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

}  // namespace kchain::bench

#endif  // KCHAIN_BENCH_MICRO_NATIVE_CUDA_H_
