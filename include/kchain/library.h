// Library: a loaded kernel library (.so) and the launchers it exports.
//
// Thread-safety: a Library is immutable once opened; every method is safe to call from any
// thread. One Library serves any number of functions and instances; it is unloaded when the
// last shared_ptr to it goes.
#ifndef KCHAIN_LIBRARY_H_
#define KCHAIN_LIBRARY_H_

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "kchain/device.h"
#include "kchain/kernel.h"
#include "kchain/status.h"

namespace kchain {

class Library {
 public:
  // Loads the kernel library at `path` with dlopen(RTLD_NOW | RTLD_LOCAL) and checks its
  // module symbols: the ABI version (major equal to this runtime's, minor at most this
  // runtime's) and the target (equal to `expected_target`). Every failure names the file and,
  // where there is one, the symbol:
  //  - kNotFound: the file does not exist;
  //  - kInvalidArgument: not a regular readable file, not an ELF shared object, dlopen
  //    failed, a module symbol is missing, the ABI version or target does not match.
  // Note that dlopen runs the library's static constructors: only open libraries you would
  // run anyway. dlopen returns the already-loaded copy when the same path is opened twice, so
  // a new version of a library must be written to a new path, never over a loaded one.
  static StatusOr<std::shared_ptr<const Library>> Open(const std::string& path,
                                                       DeviceKind expected_target);

  ~Library();
  Library(const Library&) = delete;
  Library& operator=(const Library&) = delete;

  // Looks up the launcher `kernel`. kNotFound naming the symbol and the file when it is not
  // exported; kInvalidArgument when `kernel` is not a valid C identifier.
  StatusOr<kchain_kernel_fn> Resolve(std::string_view kernel) const;

  const std::string& path() const { return path_; }
  DeviceKind target() const { return target_; }
  uint32_t abi_version() const { return abi_version_; }
  // Wall time of the dlopen and the module checks: PyPlover's "load kernel".
  std::chrono::nanoseconds load_duration() const { return load_duration_; }

 private:
  Library(std::string path, void* handle, DeviceKind target, uint32_t abi_version,
          std::chrono::nanoseconds load_duration);

  std::string path_;
  void* handle_;
  DeviceKind target_;
  uint32_t abi_version_;
  std::chrono::nanoseconds load_duration_;
};

// True when `name` is a C identifier of at most 128 characters: what a kernel name must be.
bool IsValidKernelName(std::string_view name);

}  // namespace kchain

#endif  // KCHAIN_LIBRARY_H_
