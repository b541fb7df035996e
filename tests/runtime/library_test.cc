// The loader: good libraries load; every broken one fails with a status naming the file and,
// where there is one, the symbol. Nothing aborts.
#include "kchain/library.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "test_util.h"

namespace kchain {
namespace {

using testing::TestLibrary;

std::string TempDir() {
  auto dir = std::filesystem::temp_directory_path() /
             ("kchain_library_test_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  return dir;
}

void ExpectFailure(const std::string& path, DeviceKind target, StatusCode code,
                   std::initializer_list<std::string> fragments) {
  auto lib = Library::Open(path, target);
  ASSERT_FALSE(lib.ok()) << path << " loaded but should not have";
  EXPECT_EQ(lib.status().code(), code) << lib.status();
  EXPECT_NE(lib.status().message().find(path), std::string::npos)
      << "message does not name the file: " << lib.status();
  for (const auto& fragment : fragments) {
    EXPECT_NE(lib.status().message().find(fragment), std::string::npos)
        << "message lacks '" << fragment << "': " << lib.status();
  }
}

TEST(Library, LoadsGoodHostLibrary) {
  auto lib = Library::Open(TestLibrary("test_kernels_host"), DeviceKind::kHost);
  ASSERT_TRUE(lib.ok()) << lib.status();
  EXPECT_EQ((*lib)->target(), DeviceKind::kHost);
  EXPECT_EQ((*lib)->abi_version(), KCHAIN_ABI_VERSION);
  EXPECT_GT((*lib)->load_duration().count(), 0);
  auto fn = (*lib)->Resolve("add_constant");
  ASSERT_TRUE(fn.ok()) << fn.status();
  EXPECT_NE(*fn, nullptr);
}

TEST(Library, MissingKernelNamesSymbolAndFile) {
  auto lib = Library::Open(TestLibrary("test_kernels_host"), DeviceKind::kHost);
  ASSERT_TRUE(lib.ok()) << lib.status();
  auto fn = (*lib)->Resolve("no_such_kernel");
  ASSERT_FALSE(fn.ok());
  EXPECT_EQ(fn.status().code(), StatusCode::kNotFound);
  EXPECT_NE(fn.status().message().find("no_such_kernel"), std::string::npos);
  EXPECT_NE(fn.status().message().find(TestLibrary("test_kernels_host")), std::string::npos);
}

TEST(Library, HiddenSymbolsAreNotKernels) {
  // min_size is a static helper in the library; g_calls is a static variable.
  auto lib = Library::Open(TestLibrary("test_kernels_host"), DeviceKind::kHost);
  ASSERT_TRUE(lib.ok());
  EXPECT_EQ((*lib)->Resolve("min_size").status().code(), StatusCode::kNotFound);
  EXPECT_EQ((*lib)->Resolve("g_calls").status().code(), StatusCode::kNotFound);
}

TEST(Library, InvalidKernelNameIsRejectedBeforeLookup) {
  auto lib = Library::Open(TestLibrary("test_kernels_host"), DeviceKind::kHost);
  ASSERT_TRUE(lib.ok());
  for (const char* bad : {"", "1abc", "a-b", "a b", "../x", "x;y"}) {
    EXPECT_EQ((*lib)->Resolve(bad).status().code(), StatusCode::kInvalidArgument) << bad;
  }
  EXPECT_EQ((*lib)->Resolve(std::string(129, 'a')).status().code(), StatusCode::kInvalidArgument);
}

TEST(Library, MissingFile) {
  ExpectFailure(TempDir() + "/does_not_exist.so", DeviceKind::kHost, StatusCode::kNotFound,
                {"no such file"});
}

TEST(Library, DirectoryIsNotALibrary) {
  ExpectFailure(TempDir(), DeviceKind::kHost, StatusCode::kInvalidArgument, {"not a regular file"});
}

TEST(Library, NotAnElfFile) {
  const std::string path = TempDir() + "/libnot_elf.so";
  std::ofstream(path) << "this is a text file, not a shared object\n";
  ExpectFailure(path, DeviceKind::kHost, StatusCode::kInvalidArgument, {"not an ELF"});
}

TEST(Library, EmptyFile) {
  const std::string path = TempDir() + "/libempty.so";
  std::ofstream(path).flush();
  ExpectFailure(path, DeviceKind::kHost, StatusCode::kInvalidArgument, {"not an ELF"});
}

TEST(Library, TruncatedElfFile) {
  // Starts like an ELF object, ends after 200 bytes.
  std::ifstream in(TestLibrary("test_kernels_host"), std::ios::binary);
  std::vector<char> head(200);
  in.read(head.data(), head.size());
  const std::string path = TempDir() + "/libtruncated.so";
  std::ofstream(path, std::ios::binary).write(head.data(), head.size());
  ExpectFailure(path, DeviceKind::kHost, StatusCode::kInvalidArgument, {"dlopen failed"});
}

TEST(Library, UnresolvedDependencySymbol) {
  ExpectFailure(TestLibrary("test_undefined"), DeviceKind::kHost, StatusCode::kInvalidArgument,
                {"dlopen failed", "kchain_test_function_that_does_not_exist"});
}

TEST(Library, NoModuleSymbol) {
  ExpectFailure(TestLibrary("test_no_module"), DeviceKind::kHost, StatusCode::kInvalidArgument,
                {"kchain_module_abi_version", "not a kchain kernel library"});
}

TEST(Library, WrongAbiMajor) {
  ExpectFailure(TestLibrary("test_abi_major"), DeviceKind::kHost, StatusCode::kInvalidArgument,
                {"kchain_module_abi_version", "ABI 2.0", "major version must match"});
}

TEST(Library, NewerAbiMinor) {
  ExpectFailure(TestLibrary("test_abi_minor"), DeviceKind::kHost, StatusCode::kInvalidArgument,
                {"kchain_module_abi_version", "newer than this runtime"});
}

TEST(Library, NoTargetSymbol) {
  ExpectFailure(TestLibrary("test_no_target"), DeviceKind::kHost, StatusCode::kInvalidArgument,
                {"kchain_module_target"});
}

TEST(Library, UnknownTarget) {
  ExpectFailure(TestLibrary("test_bad_target"), DeviceKind::kHost, StatusCode::kInvalidArgument,
                {"kchain_module_target", "'tpu'"});
}

TEST(Library, WrongTarget) {
  ExpectFailure(TestLibrary("test_claims_cuda"), DeviceKind::kHost, StatusCode::kInvalidArgument,
                {"targets 'cuda'", "'host'"});
  ExpectFailure(TestLibrary("test_kernels_host"), DeviceKind::kCuda, StatusCode::kInvalidArgument,
                {"targets 'host'", "'cuda'"});
}

TEST(Library, SameLibraryServesManyLoads) {
  auto a = Library::Open(TestLibrary("test_kernels_host"), DeviceKind::kHost);
  auto b = Library::Open(TestLibrary("test_kernels_host"), DeviceKind::kHost);
  ASSERT_TRUE(a.ok() && b.ok());
  // dlopen reference-counts: both resolve to the same code.
  EXPECT_EQ(*(*a)->Resolve("noop"), *(*b)->Resolve("noop"));
  a->reset();
  // Still loaded through b.
  EXPECT_TRUE((*b)->Resolve("noop").ok());
}

TEST(Library, KernelNameValidation) {
  EXPECT_TRUE(IsValidKernelName("conv1"));
  EXPECT_TRUE(IsValidKernelName("_x9"));
  EXPECT_FALSE(IsValidKernelName("9x"));
  EXPECT_FALSE(IsValidKernelName(""));
  EXPECT_FALSE(IsValidKernelName("a.b"));
}

}  // namespace
}  // namespace kchain
