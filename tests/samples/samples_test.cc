// The samples, end to end through the runtime on the host backend: vecadd is exact and the
// CNN classifies the shipped held-out digits with the accuracy train.py reported.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "kchain/function.h"
#include "kchain/manifest.h"
#include "test_util.h"

namespace kchain {
namespace {

using testing::Bytes;
using testing::MutableBytes;
using testing::SampleFile;

template <typename T>
std::vector<T> ReadVector(const std::string& path) {
  auto bytes = ReadFileToString(path);
  EXPECT_TRUE(bytes.ok()) << bytes.status();
  std::vector<T> out(bytes.ok() ? bytes->size() / sizeof(T) : 0);
  if (!out.empty()) std::memcpy(out.data(), bytes->data(), out.size() * sizeof(T));
  return out;
}

struct Sample {
  Manifest manifest;
  testing::Loaded loaded;
};

Sample LoadSample(const std::string& name, const std::shared_ptr<Device>& device) {
  Sample s;
  auto manifest = LoadManifestFile(SampleFile(name, "manifest.json"));
  EXPECT_TRUE(manifest.ok()) << manifest.status();
  if (!manifest.ok()) return s;
  s.manifest = *manifest;
  auto lib = ManifestLibraryFor(s.manifest, device->kind());
  EXPECT_TRUE(lib.ok()) << lib.status();
  if (!lib.ok()) return s;
  s.loaded = testing::Load(device, *lib, s.manifest.spec, ReadVector<float>(s.manifest.constants));
  return s;
}

TEST(VecaddSample, HostOutputIsInputPlusConstantExactly) {
  auto device = testing::HostDevice();
  Sample s = LoadSample("vecadd", device);
  ASSERT_TRUE(s.loaded.instance);
  const auto constants = ReadVector<float>(s.manifest.constants);
  ASSERT_EQ(constants.size(), 1000000u);
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> dist(-1e3f, 1e3f);
  std::vector<float> input(1000000), out(1000000, -1);
  for (auto& v : input) v = dist(rng);
  KCHAIN_ASSERT_OK(s.loaded.instance->Run(Bytes(input), MutableBytes(out)));
  for (size_t i = 0; i < input.size(); ++i) ASSERT_EQ(out[i], input[i] + constants[i]) << i;
}

TEST(VecaddSample, WrongInputLengthIsReportedByTheKernel) {
  auto device = testing::HostDevice();
  Sample s = LoadSample("vecadd", device);
  ASSERT_TRUE(s.loaded.instance);
  std::vector<float> input(10), out(1000000);
  Status status = s.loaded.instance->Run(Bytes(input), MutableBytes(out));
  EXPECT_EQ(status.code(), StatusCode::kKernelError);
  EXPECT_NE(status.message().find("vecadd: input must be exactly 1000000 float32"),
            std::string::npos)
      << status;
}

TEST(CnnSample, ClassifiesHeldOutDigitsWithTheReportedAccuracy) {
  auto device = testing::HostDevice();
  Sample s = LoadSample("mnist_cnn", device);
  ASSERT_TRUE(s.loaded.instance);
  const auto images = ReadVector<float>(SampleFile("mnist_cnn", "heldout_images.bin"));
  const auto labels = ReadVector<uint8_t>(SampleFile("mnist_cnn", "heldout_labels.bin"));
  std::ifstream report_file(SampleFile("mnist_cnn", "report.json"));
  const auto report = nlohmann::json::parse(report_file);
  const size_t count = report["heldout_count"].get<size_t>();
  ASSERT_EQ(labels.size(), count);
  ASSERT_EQ(images.size(), count * 28 * 28);

  size_t correct = 0;
  std::vector<float> logits(10);
  for (size_t i = 0; i < count; ++i) {
    KCHAIN_ASSERT_OK(s.loaded.instance->Run(std::as_bytes(std::span(images.data() + i * 784, 784)),
                                            MutableBytes(logits)));
    if (i == 0) {
      // Logits of image 0 as train.py's float32 forward computes them.
      const float expected[5] = {10.573035f, -2.9875889f, -6.3803186f, -6.2242751f, -0.85765558f};
      for (int k = 0; k < 5; ++k) EXPECT_NEAR(logits[k], expected[k], 1e-4) << k;
    }
    const auto predicted = std::max_element(logits.begin(), logits.end()) - logits.begin();
    if (predicted == labels[i]) ++correct;
  }
  EXPECT_EQ(correct, report["heldout_correct"].get<size_t>());
  EXPECT_GE(static_cast<double>(correct) / count, 0.95);
}

TEST(CnnSample, ManifestAgreesWithTheWeightsFile) {
  auto manifest = LoadManifestFile(SampleFile("mnist_cnn", "manifest.json"));
  ASSERT_TRUE(manifest.ok()) << manifest.status();
  EXPECT_EQ(manifest->spec.constant_bytes, ReadVector<float>(manifest->constants).size() * 4);
  EXPECT_EQ(manifest->spec.max_input_bytes, 28u * 28 * 4);
  EXPECT_EQ(manifest->spec.out_bytes, 40u);
  EXPECT_EQ(ChainToString(manifest->spec), "conv1 -> pool -> fc");
}

}  // namespace
}  // namespace kchain
