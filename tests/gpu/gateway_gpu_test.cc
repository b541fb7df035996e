// The gateway's GPU path: the real server on the CUDA device, the CUDA samples deployed and
// invoked over HTTP, checked against the host backend; and what readiness says after a fault.
// Label `gpu`: every test reports SKIPPED (not run) on a machine without a GPU.
#include <cmath>

#include "gateway/gateway_test_util.h"

namespace kchain::gateway::testing {
namespace {

using kchain::testing::SampleFile;

class GatewayGpu : public ::testing::Test {
 protected:
  void SetUp() override {
    if (Device::CudaDeviceCount() == 0) {
      GTEST_SKIP() << "NOT RUN: no CUDA device visible (run on the GPU machine)";
    }
  }
};

TEST_F(GatewayGpu, CudaSamplesOverHttpMatchTheHostReference) {
  TestGateway gpu({}, "", uint64_t{64} << 20, DeviceKind::kCuda);
  TestGateway host;
  auto g = gpu.Client();
  auto h = host.Client();
  for (const char* sample : {"mnist_cnn", "vecadd"}) {
    auto deployed = DeploySample(*g, sample, sample, "cuda");
    ASSERT_TRUE(deployed);
    ASSERT_EQ(deployed->status, 201) << deployed->body;
    ASSERT_EQ(DeploySample(*h, sample, sample, "host")->status, 201);
  }
  auto root = json::parse(g->Get("/v1")->body);
  EXPECT_EQ(root["device"]["kind"], "cuda");

  // The CNN: every held-out digit, over the binary path; start types and graph mode.
  const std::string images = ReadFile(SampleFile("mnist_cnn", "heldout_images.bin"));
  const std::string labels = ReadFile(SampleFile("mnist_cnn", "heldout_labels.bin"));
  size_t correct = 0;
  double worst = 0;
  for (size_t i = 0; i < labels.size(); ++i) {
    const std::string image = images.substr(i * 3136, 3136);
    auto gr = InvokeBinary(*g, "mnist_cnn", image);
    auto hr = InvokeBinary(*h, "mnist_cnn", image);
    ASSERT_TRUE(gr && hr);
    ASSERT_EQ(gr->status, 200) << gr->body;
    if (i == 0) {
      EXPECT_EQ(gr->get_header_value("X-Kchain-Start"), "cold");
    }
    if (i >= 2) {
      EXPECT_EQ(gr->get_header_value("X-Kchain-Start"), "hot");
      EXPECT_EQ(gr->get_header_value("X-Kchain-Exec-Mode"), "graph");
    }
    const auto got = VectorOf<float>(gr->body), want = VectorOf<float>(hr->body);
    double diff = 0, norm = 0;
    for (int k = 0; k < 10; ++k) {
      diff += (got[k] - want[k]) * double(got[k] - want[k]);
      norm += want[k] * double(want[k]);
    }
    worst = std::max(worst, std::sqrt(diff / norm));
    if (std::max_element(got.begin(), got.end()) - got.begin() == static_cast<uint8_t>(labels[i])) {
      ++correct;
    }
  }
  EXPECT_LE(worst, 1e-5);
  const auto report = json::parse(ReadFile(SampleFile("mnist_cnn", "report.json")));
  EXPECT_EQ(correct, report["heldout_correct"].get<size_t>());

  // JSON path, and a warm start after parking.
  std::vector<float> pixels(784);
  std::memcpy(pixels.data(), images.data(), 3136);
  ASSERT_EQ(g->Post("/v1/functions/mnist_cnn/park")->status, 200);
  auto js = InvokeJson(*g, "mnist_cnn", {{"input", pixels}});
  ASSERT_EQ(js->status, 200) << js->body;
  EXPECT_EQ(json::parse(js->body)["start"], "warm");

  // vecadd: exact.
  std::vector<float> input(1000000);
  for (size_t i = 0; i < input.size(); ++i) input[i] = static_cast<float>(i % 977) * 0.125f;
  auto gv = InvokeBinary(*g, "vecadd", BytesOf(input));
  auto hv = InvokeBinary(*h, "vecadd", BytesOf(input));
  ASSERT_EQ(gv->status, 200);
  EXPECT_EQ(gv->body, hv->body);
  std::printf(
      "gateway gpu: cnn %zu/%zu correct over HTTP, worst relative error %.3g; vecadd exact\n",
      correct, labels.size(), worst);
}

TEST_F(GatewayGpu, ADeviceFaultMakesTheServerNotReadyInsteadOfStayingGreen) {
  TestGateway gpu({}, "", uint64_t{64} << 20, DeviceKind::kCuda);
  auto c = gpu.Client();
  ASSERT_EQ(DeploySample(*c, "mnist_cnn", "cnn", "cuda")->status, 201);
  ASSERT_EQ(InvokeBinary(*c, "cnn", std::string(3136, '\0'))->status, 200);
  ASSERT_EQ(DeployMultipart(*c, "faulty", TestManifest({"noop", "illegal_address"}, 4),
                            TestLibraryBytes("test_kernels_cuda"), "")
                ->status,
            201);
  auto fault = InvokeBinary(*c, "faulty", std::string(16, '\0'));
  ASSERT_TRUE(fault);
  EXPECT_EQ(fault->status, 502);
  EXPECT_EQ(ErrorCode(fault), "kernel_error");
  EXPECT_NE(ErrorMessage(fault).find("illegal memory access"), std::string::npos);
  // In-process, one bad kernel poisons the device for every function: readiness says so, and
  // every function answers 503 rather than hanging or crashing. (Worker isolation fixes this.)
  auto ready = c->Get("/readyz");
  EXPECT_EQ(ready->status, 503);
  EXPECT_NE(ErrorMessage(ready).find("broken"), std::string::npos) << ErrorMessage(ready);
  auto other = InvokeBinary(*c, "cnn", std::string(3136, '\0'));
  EXPECT_EQ(other->status, 503) << other->body;
  EXPECT_EQ(c->Get("/healthz")->status, 200);  // the process itself is alive
  std::printf("fault over HTTP: %s\n", ErrorMessage(fault).c_str());
}

}  // namespace
}  // namespace kchain::gateway::testing
