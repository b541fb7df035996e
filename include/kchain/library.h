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
#include <vector>

#include "kchain/device.h"
#include "kchain/kernel.h"
#include "kchain/status.h"

namespace kchain {

struct LibraryOptions {
  // Load with RTLD_NODELETE: the code stays mapped after the last reference goes. For a
  // process that must survive libraries it unloads (the gateway with --isolation=none): a
  // library may leave a thread running in its code, and unmapping that code would crash the
  // process. Costs the library's memory until the process exits.
  bool never_unload = false;
};

class Library {
 public:
  // Loads the kernel library at `path` and checks its module symbols: the ABI version (major
  // equal to this runtime's, minor at most this runtime's) and the target (equal to
  // `expected_target`). The file is read whole, checked as an ELF shared object for this
  // machine whose every segment and section lies inside the file, copied into a sealed memory
  // file of this process's own, and that copy is loaded (dlopen(RTLD_NOW | RTLD_LOCAL)): later
  // changes to the file cannot reach the loaded code, each load is independent (two loads of
  // one file share no globals), and a file cut short is refused rather than mapped past its end
  // (which would kill the process with SIGBUS). Module symbols count only when the library
  // itself defines them as data. Every failure names the file and, where there is one, the
  // symbol:
  //  - kNotFound: the file does not exist;
  //  - kInvalidArgument: not a regular readable file, larger than kMaxLibraryBytes, not a
  //    well-formed ELF shared object for this machine, dlopen failed, a module symbol is
  //    missing, the ABI version or target does not match;
  //  - kResourceExhausted: no memory for the private copy.
  // Note that dlopen runs the library's static constructors: only open libraries you would
  // run anyway.
  static StatusOr<std::shared_ptr<const Library>> Open(const std::string& path,
                                                       DeviceKind expected_target,
                                                       LibraryOptions options = {});
  // The same for a library given as an open file descriptor (read from offset 0; the caller
  // keeps ownership), named `name` in messages and path().
  static StatusOr<std::shared_ptr<const Library>> OpenFd(int fd, const std::string& name,
                                                         DeviceKind expected_target,
                                                         LibraryOptions options = {});

  ~Library();
  Library(const Library&) = delete;
  Library& operator=(const Library&) = delete;

  // Looks up the launcher `kernel`: a function that the library itself defines and exports
  // (symbols of the libraries it depends on, data symbols, the loader's _init and _fini and
  // names starting with kchain_ are never kernels). kNotFound naming the symbol and the file
  // otherwise; kInvalidArgument when `kernel` is not a valid C identifier.
  StatusOr<kchain_kernel_fn> Resolve(std::string_view kernel) const;

  // The name given at open: the path, or OpenFd's name.
  const std::string& path() const { return path_; }
  DeviceKind target() const { return target_; }
  uint32_t abi_version() const { return abi_version_; }
  // Wall time of reading, checking, copying, dlopen and the module checks: PyPlover's "load
  // kernel".
  std::chrono::nanoseconds load_duration() const { return load_duration_; }

 private:
  Library(std::string path, void* handle, DeviceKind target, uint32_t abi_version,
          std::chrono::nanoseconds load_duration);

  std::string path_;
  void* handle_;
  const void* map_ = nullptr;  // the object's struct link_map, to tell its symbols apart
  DeviceKind target_;
  uint32_t abi_version_;
  std::chrono::nanoseconds load_duration_;
};

// Checks the library at `path` without loading it (no code of it runs): the whole-file ELF
// check of Library::Open, the module symbols' values (ABI version and target, read from the
// file), and that every name in `kernels` is a function the library defines and exports. For
// libraries that were loaded and validated before (a stored function at a restart): what
// Library::Open would refuse for its format, ABI or target, this refuses too, with the same
// codes; what only the dynamic loader can tell (a missing dependency) shows at the first load.
Status InspectLibrary(const std::string& path, DeviceKind expected_target,
                      const std::vector<std::string>& kernels);

// The largest kernel library file the loader reads (it checks the whole file before dlopen).
inline constexpr size_t kMaxLibraryBytes = size_t{1} << 30;

// True when `name` is a C identifier of at most 128 characters: what a kernel name must be.
bool IsValidKernelName(std::string_view name);

}  // namespace kchain

#endif  // KCHAIN_LIBRARY_H_
