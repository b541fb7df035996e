// The loader: good libraries load; every broken one fails with a status naming the file and,
// where there is one, the symbol. Nothing aborts.
#include "kchain/library.h"

#include <gtest/gtest.h>
#include <sys/resource.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>

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
  // Starts like an ELF object, ends after 200 bytes: refused before dlopen maps it.
  std::ifstream in(TestLibrary("test_kernels_host"), std::ios::binary);
  std::vector<char> head(200);
  in.read(head.data(), head.size());
  const std::string path = TempDir() + "/libtruncated.so";
  std::ofstream(path, std::ios::binary).write(head.data(), head.size());
  ExpectFailure(path, DeviceKind::kHost, StatusCode::kInvalidArgument, {"truncated"});
}

TEST(Library, LibraryCutInHalfIsRefusedBeforeDlopen) {
  // Half a library has all its headers but not the segments they point at: mapping it would
  // end in SIGBUS at the first touch of a missing page.
  const std::string whole = testing::ReadBytes(TestLibrary("test_kernels_host"));
  ASSERT_GT(whole.size(), 1000u);
  for (size_t cut : {whole.size() / 2, whole.size() - 1, size_t{64}, size_t{63}}) {
    const std::string path = TempDir() + "/libcut_" + std::to_string(cut) + ".so";
    std::ofstream(path, std::ios::binary).write(whole.data(), static_cast<std::streamsize>(cut));
    ExpectFailure(path, DeviceKind::kHost, StatusCode::kInvalidArgument, {"truncated"});
  }
}

TEST(Library, ElfForAnotherMachineOrTypeIsRefused) {
  std::string bytes = testing::ReadBytes(TestLibrary("test_kernels_host"));
  std::string other_machine = bytes;
  other_machine[18] = 0x28;  // e_machine = EM_ARM (little-endian low byte)
  other_machine[19] = 0;
  const std::string a = TempDir() + "/libarm.so";
  std::ofstream(a, std::ios::binary).write(other_machine.data(), other_machine.size());
  ExpectFailure(a, DeviceKind::kHost, StatusCode::kInvalidArgument, {"ELF machine"});
  std::string executable = bytes;
  executable[16] = 2;  // e_type = ET_EXEC
  const std::string b = TempDir() + "/libexec.so";
  std::ofstream(b, std::ios::binary).write(executable.data(), executable.size());
  ExpectFailure(b, DeviceKind::kHost, StatusCode::kInvalidArgument, {"not a shared object"});
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

TEST(Library, EachLoadIsAnIndependentCopy) {
  auto a = Library::Open(TestLibrary("test_kernels_host"), DeviceKind::kHost);
  auto b = Library::Open(TestLibrary("test_kernels_host"), DeviceKind::kHost);
  ASSERT_TRUE(a.ok() && b.ok());
  // Each load maps a private, sealed copy: two functions built from one file share no code
  // pages and no globals, and a change to the file cannot reach loaded code.
  EXPECT_NE(*(*a)->Resolve("noop"), *(*b)->Resolve("noop"));
  a->reset();
  EXPECT_TRUE((*b)->Resolve("noop").ok());
  // Loads after an unload get fresh code, never a stale copy under a reused name.
  for (int i = 0; i < 20; ++i) {
    auto c = Library::Open(TestLibrary("test_kernels_host"), DeviceKind::kHost);
    ASSERT_TRUE(c.ok()) << c.status();
    EXPECT_TRUE((*c)->Resolve("noop").ok());
  }
}

TEST(Library, ManyLibrariesStayLoadedAtOnceWhateverTheFileLimit) {
  // A worker holds every function of its tenant: hundreds of libraries loaded at once, with
  // few file descriptors to spare (no fd is held per library).
  rlimit old{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &old), 0);
  rlimit low = old;
  low.rlim_cur = 64;
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &low), 0);
  std::vector<std::shared_ptr<const Library>> loaded;
  std::set<kchain_kernel_fn> distinct;
  for (int i = 0; i < 300; ++i) {
    auto lib = Library::Open(TestLibrary("test_kernels_host"), DeviceKind::kHost);
    ASSERT_TRUE(lib.ok()) << i << ": " << lib.status();
    distinct.insert(*(*lib)->Resolve("noop"));
    loaded.push_back(std::move(*lib));
  }
  ::setrlimit(RLIMIT_NOFILE, &old);
  EXPECT_EQ(distinct.size(), 300u);  // 300 independent copies, none handed back twice
}

TEST(Library, OnlyFunctionsDefinedByTheLibraryAreKernels) {
  auto lib = Library::Open(TestLibrary("test_kernels_host"), DeviceKind::kHost);
  ASSERT_TRUE(lib.ok()) << lib.status();
  // The C library's functions are reachable through dlsym on the handle (the library links
  // it), and so are the module symbols, which are data: none of them is a kernel.
  for (const char* name : {"abort", "exit", "system", "printf", "memcpy", "kchain_module_target",
                           "kchain_module_abi_version", "_init", "_fini", "_end", "__bss_start"}) {
    auto fn = (*lib)->Resolve(name);
    EXPECT_EQ(fn.status().code(), StatusCode::kNotFound) << name;
  }
  EXPECT_TRUE((*lib)->Resolve("noop").ok());
}

TEST(Library, InspectionChecksWithoutLoading) {
  const std::string good = TestLibrary("test_kernels_host");
  EXPECT_TRUE(InspectLibrary(good, DeviceKind::kHost, {"noop", "add_constant"}).ok());
  auto status_of = [](const std::string& path, DeviceKind target,
                      const std::vector<std::string>& kernels) {
    return InspectLibrary(path, target, kernels);
  };
  EXPECT_EQ(status_of(good, DeviceKind::kHost, {"no_such_kernel"}).code(), StatusCode::kNotFound);
  for (const char* foreign : {"abort", "exit", "system", "kchain_module_target", "_init"}) {
    EXPECT_EQ(status_of(good, DeviceKind::kHost, {foreign}).code(), StatusCode::kNotFound)
        << foreign;
  }
  EXPECT_EQ(status_of(good, DeviceKind::kCuda, {"noop"}).code(), StatusCode::kInvalidArgument);
  const Status major = status_of(TestLibrary("test_abi_major"), DeviceKind::kHost, {});
  EXPECT_EQ(major.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(major.message().find("ABI 2.0"), std::string::npos) << major;
  EXPECT_EQ(status_of(TestLibrary("test_no_module"), DeviceKind::kHost, {}).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(status_of(TestLibrary("test_claims_cuda"), DeviceKind::kHost, {}).code(),
            StatusCode::kInvalidArgument);
  const std::string junk = TempDir() + "/libjunk.so";
  std::ofstream(junk) << "junk";
  EXPECT_EQ(status_of(junk, DeviceKind::kHost, {}).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(status_of(TempDir() + "/missing.so", DeviceKind::kHost, {}).code(),
            StatusCode::kNotFound);
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
