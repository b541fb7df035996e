// The plain-CUDA baseline (see native_cuda.h). Every CUDA call is checked.
#include <cuda_runtime.h>

#include <cstring>
#include <functional>

#include "../kernels/bench_kernels.cuh"
#include "mnist_cnn/cnn_kernels.cuh"
#include "native_cuda.h"
#include "vecadd/vecadd_common.h"
#include "vecadd/vecadd_kernels.cuh"

namespace kchain::bench {
namespace {

#define NATIVE_CHECK(call)                                                               \
  do {                                                                                   \
    const cudaError_t err_ = (call);                                                     \
    if (err_ != cudaSuccess) {                                                           \
      *error = std::string(#call) + ": " + cudaGetErrorString(err_) + " [" __FILE__ "]"; \
      return false;                                                                      \
    }                                                                                    \
  } while (0)

// Owns the buffers and the stream; subclasses enqueue their kernels.
class NativeBase : public NativeChain {
 public:
  ~NativeBase() override {
    if (graph_) cudaGraphExecDestroy(graph_);
    for (void* p : {d_in_, d_const_, d_tmp_, d_out_}) cudaFree(p);
    cudaFreeHost(h_in_);
    cudaFreeHost(h_out_);
    if (stream_) cudaStreamDestroy(stream_);
  }

  bool Init(size_t in, size_t constant, size_t tmp, size_t out, const void* constants,
            std::string* error) {
    in_bytes_ = in;
    out_bytes_ = out;
    NATIVE_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    NATIVE_CHECK(cudaMalloc(&d_in_, in));
    if (constant) NATIVE_CHECK(cudaMalloc(&d_const_, constant));
    if (tmp) NATIVE_CHECK(cudaMalloc(&d_tmp_, tmp));
    NATIVE_CHECK(cudaMalloc(&d_out_, out));
    NATIVE_CHECK(cudaMallocHost(&h_in_, in));
    NATIVE_CHECK(cudaMallocHost(&h_out_, out));
    // Known contents to start from (the noop chain counts up from out's first float). On
    // stream_, which does not wait for the legacy default stream, then waited for.
    NATIVE_CHECK(cudaMemsetAsync(d_in_, 0, in, stream_));
    if (tmp) NATIVE_CHECK(cudaMemsetAsync(d_tmp_, 0, tmp, stream_));
    NATIVE_CHECK(cudaMemsetAsync(d_out_, 0, out, stream_));
    NATIVE_CHECK(cudaStreamSynchronize(stream_));
    if (constant) {
      NATIVE_CHECK(cudaMemcpy(d_const_, constants, constant, cudaMemcpyHostToDevice));
    }
    d_result_ = d_out_;
    return true;
  }

  void* input() override { return h_in_; }
  size_t input_bytes() const override { return in_bytes_; }
  const void* output() const override { return h_out_; }
  size_t output_bytes() const override { return out_bytes_; }

  bool Run(std::string* error) override {
    if (!Enqueue(error)) return false;
    NATIVE_CHECK(cudaStreamSynchronize(stream_));
    return true;
  }

  bool RunGraph(std::string* error) override {
    if (graph_ == nullptr) {
      cudaGraph_t graph = nullptr;
      NATIVE_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
      if (!Enqueue(error)) return false;
      NATIVE_CHECK(cudaStreamEndCapture(stream_, &graph));
      NATIVE_CHECK(cudaGraphInstantiate(&graph_, graph, 0));
      NATIVE_CHECK(cudaGraphDestroy(graph));
    }
    NATIVE_CHECK(cudaGraphLaunch(graph_, stream_));
    NATIVE_CHECK(cudaStreamSynchronize(stream_));
    return true;
  }

 protected:
  virtual bool EnqueueKernels(std::string* error) = 0;

  bool Enqueue(std::string* error) {
    NATIVE_CHECK(cudaMemcpyAsync(d_in_, h_in_, in_bytes_, cudaMemcpyHostToDevice, stream_));
    if (!EnqueueKernels(error)) return false;
    NATIVE_CHECK(cudaMemcpyAsync(h_out_, d_result_, out_bytes_, cudaMemcpyDeviceToHost, stream_));
    return true;
  }

  cudaStream_t stream_ = nullptr;
  void *d_in_ = nullptr, *d_const_ = nullptr, *d_tmp_ = nullptr, *d_out_ = nullptr;
  void* d_result_ = nullptr;  // what the output copy reads: d_out_ unless a subclass says so
  void *h_in_ = nullptr, *h_out_ = nullptr;
  size_t in_bytes_ = 0, out_bytes_ = 0;
  cudaGraphExec_t graph_ = nullptr;
};

// Same launch dimensions as samples/mnist_cnn/manifest.json.
class NativeCnn final : public NativeBase {
  bool EnqueueKernels(std::string* error) override {
    const float* w = static_cast<const float*>(d_const_);
    float* tmp = static_cast<float*>(d_tmp_);
    cnn_conv1_kernel<<<14, 256, 0, stream_>>>(static_cast<const float*>(d_in_), w,
                                              tmp + CNN_TMP_A1);
    NATIVE_CHECK(cudaGetLastError());
    cnn_pool_kernel<<<1, 256, 0, stream_>>>(tmp + CNN_TMP_A1, w, tmp + CNN_TMP_A2);
    NATIVE_CHECK(cudaGetLastError());
    cnn_fc_kernel<<<1, 32, 0, stream_>>>(tmp + CNN_TMP_A2, w, static_cast<float*>(d_out_));
    NATIVE_CHECK(cudaGetLastError());
    return true;
  }
};

// Same launch dimensions as samples/vecadd/manifest.json.
class NativeVecadd final : public NativeBase {
  bool EnqueueKernels(std::string* error) override {
    vecadd_kernel<<<3907, 256, 0, stream_>>>(static_cast<const float*>(d_in_),
                                             static_cast<const float*>(d_const_),
                                             static_cast<float*>(d_out_), VECADD_N);
    NATIVE_CHECK(cudaGetLastError());
    return true;
  }
};

// Same launch dimensions as the chain_len specs in chain_bench.cc (grid 1, block 1).
class NativeNoopChain final : public NativeBase {
 public:
  explicit NativeNoopChain(int stages) : stages_(stages) {}

 private:
  bool EnqueueKernels(std::string* error) override {
    for (int i = 0; i < stages_; ++i) {
      bench_noop_kernel<<<1, 1, 0, stream_>>>(static_cast<float*>(d_out_));
      NATIVE_CHECK(cudaGetLastError());
    }
    return true;
  }

  int stages_;
};

class NativeCopy final : public NativeBase {
 public:
  NativeCopy(bool with_kernel, int grid, int block)
      : with_kernel_(with_kernel), grid_(grid), block_(block) {}

  bool InitCopy(size_t bytes, std::string* error) {
    if (!Init(bytes, 0, 0, bytes, nullptr, error)) return false;
    if (!with_kernel_) d_result_ = d_in_;  // H2D then D2H of the same buffer
    return true;
  }

 private:
  bool EnqueueKernels(std::string* error) override {
    if (!with_kernel_) return true;
    bench_copy_kernel<<<grid_, block_, 0, stream_>>>(
        static_cast<const unsigned char*>(d_in_), static_cast<unsigned char*>(d_out_), in_bytes_);
    NATIVE_CHECK(cudaGetLastError());
    return true;
  }

  bool with_kernel_;
  int grid_, block_;
};

}  // namespace

std::unique_ptr<NativeChain> MakeNativeCnn(const std::vector<float>& weights, std::string* error) {
  auto chain = std::make_unique<NativeCnn>();
  if (!chain->Init(CNN_IN * CNN_IN * 4, weights.size() * 4, CNN_TMP_FLOATS * 4, CNN_CLASSES * 4,
                   weights.data(), error)) {
    return nullptr;
  }
  return chain;
}

std::unique_ptr<NativeChain> MakeNativeVecadd(const std::vector<float>& constants,
                                              std::string* error) {
  auto chain = std::make_unique<NativeVecadd>();
  if (!chain->Init(VECADD_N * 4, constants.size() * 4, 0, VECADD_N * 4, constants.data(), error)) {
    return nullptr;
  }
  return chain;
}

std::unique_ptr<NativeChain> MakeNativeNoopChain(int stages, std::string* error) {
  auto chain = std::make_unique<NativeNoopChain>(stages);
  if (!chain->Init(sizeof(float), 0, 0, sizeof(float), nullptr, error)) return nullptr;
  return chain;
}

std::unique_ptr<NativeChain> MakeNativeCopy(size_t bytes, bool with_kernel, int grid, int block,
                                            std::string* error) {
  auto chain = std::make_unique<NativeCopy>(with_kernel, grid, block);
  if (!chain->InitCopy(bytes, error)) return nullptr;
  return chain;
}

}  // namespace kchain::bench
