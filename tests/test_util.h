// Helpers shared by the runtime test suites.
#ifndef KCHAIN_TESTS_TEST_UTIL_H_
#define KCHAIN_TESTS_TEST_UTIL_H_

#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "kchain/function.h"

namespace kchain::testing {

// Path of a test kernel library built by tests/kernels (e.g. "test_kernels_host").
inline std::string TestLibrary(const std::string& name) {
  return std::string(KCHAIN_TEST_KERNELS_DIR) + "/lib" + name + ".so";
}

// The bytes of a file (empty when it cannot be read).
inline std::string ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Path of a file in a built sample's folder (e.g. "vecadd", "manifest.json").
inline std::string SampleFile(const std::string& sample, const std::string& file) {
  return std::string(KCHAIN_SAMPLES_BUILD_DIR) + "/" + sample + "/" + file;
}

inline std::shared_ptr<Device> HostDevice() {
  auto device = Device::Open(DeviceKind::kHost);
  EXPECT_TRUE(device.ok()) << device.status();
  return *device;
}

// A spec over float32 buffers of `floats` elements each (input, tmp, out) and `constants`
// float32 constants, running `kernels` in order with grid 1, block 32.
inline FunctionSpec FloatSpec(const std::vector<std::string>& kernels, size_t floats,
                              size_t constants = 0) {
  FunctionSpec spec;
  for (const auto& k : kernels) spec.chain.push_back({k, 1, 32});
  spec.max_input_bytes = floats * 4;
  spec.tmp_bytes = floats * 4;
  spec.out_bytes = floats * 4;
  spec.constant_bytes = constants * 4;
  spec.input.dtype = ElementType::kFloat32;
  spec.output.dtype = ElementType::kFloat32;
  return spec;
}

template <typename T>
std::span<const std::byte> Bytes(const std::vector<T>& v) {
  return std::as_bytes(std::span(v));
}
template <typename T>
std::span<std::byte> MutableBytes(std::vector<T>& v) {
  return std::as_writable_bytes(std::span(v));
}

// Loads a library, creates a function and an instance, failing the test on any error.
struct Loaded {
  std::shared_ptr<const Library> library;
  std::shared_ptr<const Function> function;
  std::unique_ptr<Instance> instance;
};

inline Loaded Load(const std::shared_ptr<Device>& device, const std::string& library_path,
                   const FunctionSpec& spec, const std::vector<float>& constants = {},
                   InstanceOptions options = {}) {
  Loaded out;
  auto library = Library::Open(library_path, device->kind());
  EXPECT_TRUE(library.ok()) << library.status();
  if (!library.ok()) return out;
  out.library = *library;
  auto function = Function::Create(device, out.library, spec, Bytes(constants));
  EXPECT_TRUE(function.ok()) << function.status();
  if (!function.ok()) return out;
  out.function = *function;
  auto instance = Instance::Create(out.function, options);
  EXPECT_TRUE(instance.ok()) << instance.status();
  if (instance.ok()) out.instance = std::move(*instance);
  return out;
}

inline Status ToStatus(const Status& s) { return s; }
template <typename T>
Status ToStatus(const StatusOr<T>& s) {
  return s.status();
}

}  // namespace kchain::testing

// Asserts that a Status/StatusOr is OK, printing it otherwise.
#define KCHAIN_ASSERT_OK(expr)                                            \
  do {                                                                    \
    const ::kchain::Status kchain_s_ = ::kchain::testing::ToStatus(expr); \
    ASSERT_TRUE(kchain_s_.ok()) << kchain_s_;                             \
  } while (false)
#define KCHAIN_EXPECT_OK(expr)                                            \
  do {                                                                    \
    const ::kchain::Status kchain_s_ = ::kchain::testing::ToStatus(expr); \
    EXPECT_TRUE(kchain_s_.ok()) << kchain_s_;                             \
  } while (false)

#endif  // KCHAIN_TESTS_TEST_UTIL_H_
