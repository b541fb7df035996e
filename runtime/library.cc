#include "kchain/library.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace kchain {
namespace {

using Clock = std::chrono::steady_clock;

std::string Quoted(const std::string& path) { return "kernel library '" + path + "'"; }

// Cheap checks before dlopen, so that the common mistakes get a precise message rather than
// whatever the dynamic loader says.
Status CheckFile(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    const int err = errno;
    if (err == ENOENT || err == ENOTDIR) return NotFoundError(Quoted(path) + ": no such file");
    return InvalidArgumentError(Quoted(path) + ": cannot stat: " + std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) return InvalidArgumentError(Quoted(path) + ": not a regular file");
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return InvalidArgumentError(Quoted(path) +
                                ": cannot open for reading: " + std::strerror(errno));
  }
  unsigned char magic[4] = {};
  const ssize_t got = ::read(fd, magic, sizeof magic);
  ::close(fd);
  if (got < 0) {
    return InvalidArgumentError(Quoted(path) + ": cannot read: " + std::strerror(errno));
  }
  if (got < 4 || magic[0] != 0x7f || magic[1] != 'E' || magic[2] != 'L' || magic[3] != 'F') {
    char hex[32];
    std::snprintf(hex, sizeof hex, "%02x %02x %02x %02x", magic[0], magic[1], magic[2], magic[3]);
    return InvalidArgumentError(Quoted(path) + ": not an ELF shared object (" +
                                std::to_string(st.st_size) + " bytes, starts with " + hex + ")");
  }
  return Status();
}

std::string LastDlError() {
  const char* err = dlerror();
  return err != nullptr ? err : "unknown dynamic loader error";
}

}  // namespace

bool IsValidKernelName(std::string_view name) {
  if (name.empty() || name.size() > 128) return false;
  auto alpha = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; };
  if (!alpha(name[0])) return false;
  for (char c : name) {
    if (!alpha(c) && !(c >= '0' && c <= '9')) return false;
  }
  return true;
}

Library::Library(std::string path, void* handle, DeviceKind target, uint32_t abi_version,
                 std::chrono::nanoseconds load_duration)
    : path_(std::move(path)),
      handle_(handle),
      target_(target),
      abi_version_(abi_version),
      load_duration_(load_duration) {}

Library::~Library() {
  if (handle_ != nullptr) dlclose(handle_);
}

StatusOr<std::shared_ptr<const Library>> Library::Open(const std::string& path,
                                                       DeviceKind expected_target) {
  const auto start = Clock::now();
  KCHAIN_RETURN_IF_ERROR(CheckFile(path));

  // A name without a slash would be searched for on the library path; never do that.
  const std::string load_path = path.find('/') == std::string::npos ? "./" + path : path;
  void* handle = dlopen(load_path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    return InvalidArgumentError(Quoted(path) + ": dlopen failed: " + LastDlError());
  }
  // Closes the handle on every early return below.
  std::unique_ptr<void, int (*)(void*)> guard(handle, dlclose);

  auto lookup = [&](const char* symbol) -> void* {
    dlerror();
    return dlsym(handle, symbol);
  };
  const auto* version = static_cast<const uint32_t*>(lookup(KCHAIN_SYMBOL_ABI_VERSION));
  if (version == nullptr) {
    return InvalidArgumentError(Quoted(path) + " is not a kchain kernel library: symbol '" +
                                KCHAIN_SYMBOL_ABI_VERSION +
                                "' is not exported (declare KCHAIN_MODULE_CUDA() or "
                                "KCHAIN_MODULE_HOST() in one source file)");
  }
  const uint32_t lib_major = *version >> 16, lib_minor = *version & 0xffffu;
  if (lib_major != KCHAIN_ABI_VERSION_MAJOR) {
    return InvalidArgumentError(
        Quoted(path) + ": symbol '" + KCHAIN_SYMBOL_ABI_VERSION + "' says ABI " +
        std::to_string(lib_major) + "." + std::to_string(lib_minor) +
        ", incompatible with this runtime's ABI " + std::to_string(KCHAIN_ABI_VERSION_MAJOR) + "." +
        std::to_string(KCHAIN_ABI_VERSION_MINOR) + " (the major version must match)");
  }
  if (lib_minor > KCHAIN_ABI_VERSION_MINOR) {
    return InvalidArgumentError(
        Quoted(path) + ": symbol '" + KCHAIN_SYMBOL_ABI_VERSION + "' says ABI " +
        std::to_string(lib_major) + "." + std::to_string(lib_minor) +
        ", newer than this runtime's ABI " + std::to_string(KCHAIN_ABI_VERSION_MAJOR) + "." +
        std::to_string(KCHAIN_ABI_VERSION_MINOR) + " (upgrade kchain or rebuild the library)");
  }

  const auto* target = static_cast<const char*>(lookup(KCHAIN_SYMBOL_TARGET));
  if (target == nullptr) {
    return InvalidArgumentError(Quoted(path) + " is not a kchain kernel library: symbol '" +
                                KCHAIN_SYMBOL_TARGET + "' is not exported");
  }
  // Bounded read: the symbol is untrusted data.
  const std::string target_name(target, strnlen(target, 16));
  auto parsed = ParseDeviceKind(target_name);
  if (!parsed.ok()) {
    return InvalidArgumentError(Quoted(path) + ": symbol '" + KCHAIN_SYMBOL_TARGET + "' is '" +
                                target_name + "', expected 'cuda' or 'host'");
  }
  if (*parsed != expected_target) {
    return InvalidArgumentError(Quoted(path) + " targets '" + target_name +
                                "' but this device runs '" +
                                std::string(DeviceKindName(expected_target)) + "' kernels");
  }

  guard.release();
  const auto elapsed = std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - start);
  return std::shared_ptr<const Library>(new Library(path, handle, *parsed, *version, elapsed));
}

StatusOr<kchain_kernel_fn> Library::Resolve(std::string_view kernel) const {
  if (!IsValidKernelName(kernel)) {
    return InvalidArgumentError("'" + std::string(kernel) +
                                "' is not a valid kernel name (a C identifier of at most 128 "
                                "characters)");
  }
  const std::string symbol(kernel);
  dlerror();
  void* fn = dlsym(handle_, symbol.c_str());
  if (fn == nullptr) {
    return NotFoundError("kernel '" + symbol + "' is not exported by " + Quoted(path_) +
                         " (declare it with KCHAIN_KERNEL(" + symbol + "))");
  }
  return reinterpret_cast<kchain_kernel_fn>(fn);
}

}  // namespace kchain
