#include "kchain/library.h"

#include <dlfcn.h>
#include <elf.h>
#include <fcntl.h>
#include <link.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "runtime/unique_fd.h"

namespace kchain {
namespace {

using Clock = std::chrono::steady_clock;

std::string Quoted(const std::string& path) { return "kernel library '" + path + "'"; }

#if defined(__x86_64__)
constexpr uint16_t kHostMachine = EM_X86_64;
constexpr const char* kHostMachineName = "x86-64";
#elif defined(__aarch64__)
constexpr uint16_t kHostMachine = EM_AARCH64;
constexpr const char* kHostMachineName = "aarch64";
#else
#error "kchain's loader knows x86-64 and aarch64"
#endif

// [offset, offset + size) lies within a file of `file_size` bytes (without overflow).
bool Within(uint64_t offset, uint64_t size, uint64_t file_size) {
  return offset <= file_size && size <= file_size - offset;
}

// Checks the whole file before the dynamic loader maps it: the ELF header, every program
// header and every section lies inside the file. dlopen trusts these offsets, and a library
// cut short (a truncated upload) would otherwise be mapped past its end, and the first touch
// of the missing pages kills the process with SIGBUS.
Status CheckElf(std::string_view bytes, const std::string& name) {
  auto bad = [&](const std::string& why) {
    return InvalidArgumentError(Quoted(name) + ": " + why);
  };
  const auto* u = reinterpret_cast<const unsigned char*>(bytes.data());
  if (bytes.size() < 4 || u[0] != 0x7f || u[1] != 'E' || u[2] != 'L' || u[3] != 'F') {
    char hex[32];
    std::snprintf(hex, sizeof hex, "%02x %02x %02x %02x", bytes.size() > 0 ? u[0] : 0,
                  bytes.size() > 1 ? u[1] : 0, bytes.size() > 2 ? u[2] : 0,
                  bytes.size() > 3 ? u[3] : 0);
    return bad("not an ELF shared object (" + std::to_string(bytes.size()) +
               " bytes, starts with " + hex + ")");
  }
  Elf64_Ehdr eh;
  if (bytes.size() < sizeof eh) return bad("truncated: the ELF header is cut short");
  std::memcpy(&eh, bytes.data(), sizeof eh);
  if (eh.e_ident[EI_CLASS] != ELFCLASS64) return bad("not a 64-bit ELF object");
  if (eh.e_ident[EI_DATA] != ELFDATA2LSB) return bad("not a little-endian ELF object");
  if (eh.e_ident[EI_VERSION] != EV_CURRENT) return bad("unknown ELF version");
  if (eh.e_type != ET_DYN) return bad("an ELF file but not a shared object (ET_DYN)");
  if (eh.e_machine != kHostMachine) {
    return bad("built for ELF machine " + std::to_string(eh.e_machine) + ", not " +
               kHostMachineName);
  }
  const uint64_t size = bytes.size();
  if (eh.e_phnum == 0 || eh.e_phentsize != sizeof(Elf64_Phdr) ||
      !Within(eh.e_phoff, uint64_t{eh.e_phnum} * sizeof(Elf64_Phdr), size)) {
    return bad("truncated or malformed: its program headers lie outside the file (" +
               std::to_string(size) + " bytes)");
  }
  bool has_load = false, has_dynamic = false;
  for (uint16_t i = 0; i < eh.e_phnum; ++i) {
    Elf64_Phdr ph;
    std::memcpy(&ph, bytes.data() + eh.e_phoff + i * sizeof ph, sizeof ph);
    if (ph.p_type != PT_LOAD && ph.p_type != PT_DYNAMIC) continue;
    if (!Within(ph.p_offset, ph.p_filesz, size)) {
      return bad("truncated: segment " + std::to_string(i) + " ends at byte " +
                 std::to_string(ph.p_offset + ph.p_filesz) + " of a " + std::to_string(size) +
                 "-byte file");
    }
    if (ph.p_type == PT_LOAD) {
      if (ph.p_filesz > ph.p_memsz)
        return bad("malformed: a segment is larger on file than in memory");
      has_load = true;
    } else {
      has_dynamic = true;
    }
  }
  if (!has_load || !has_dynamic) return bad("not a shared object: no loadable dynamic segment");
  if (eh.e_shnum != 0) {
    if (eh.e_shentsize != sizeof(Elf64_Shdr) ||
        !Within(eh.e_shoff, uint64_t{eh.e_shnum} * sizeof(Elf64_Shdr), size)) {
      return bad("truncated: its section headers lie outside the file (" + std::to_string(size) +
                 " bytes)");
    }
    for (uint16_t i = 0; i < eh.e_shnum; ++i) {
      Elf64_Shdr sh;
      std::memcpy(&sh, bytes.data() + eh.e_shoff + i * sizeof sh, sizeof sh);
      if (sh.sh_type != SHT_NOBITS && sh.sh_type != SHT_NULL &&
          !Within(sh.sh_offset, sh.sh_size, size)) {
        return bad("truncated: section " + std::to_string(i) + " lies outside the file");
      }
    }
  }
  return Status();
}

// The dynamic symbol table of a checked ELF image, for reading it without loading it.
struct DynamicSymbols {
  std::string_view bytes;
  Elf64_Ehdr eh{};
  std::string_view symbols;  // .dynsym
  std::string_view names;    // its string table
};

StatusOr<DynamicSymbols> FindDynamicSymbols(std::string_view bytes, const std::string& name) {
  DynamicSymbols d;
  d.bytes = bytes;
  std::memcpy(&d.eh, bytes.data(), sizeof d.eh);  // CheckElf() passed: the header is whole
  for (uint16_t i = 0; i < d.eh.e_shnum; ++i) {
    Elf64_Shdr sh;
    std::memcpy(&sh, bytes.data() + d.eh.e_shoff + i * sizeof sh, sizeof sh);
    if (sh.sh_type != SHT_DYNSYM) continue;
    if (sh.sh_link >= d.eh.e_shnum) break;
    Elf64_Shdr strtab;
    std::memcpy(&strtab, bytes.data() + d.eh.e_shoff + sh.sh_link * sizeof strtab, sizeof strtab);
    if (strtab.sh_type != SHT_STRTAB || sh.sh_entsize != sizeof(Elf64_Sym)) break;
    d.symbols = bytes.substr(sh.sh_offset, sh.sh_size - sh.sh_size % sizeof(Elf64_Sym));
    d.names = bytes.substr(strtab.sh_offset, strtab.sh_size);
    return d;
  }
  return InvalidArgumentError(Quoted(name) + ": no dynamic symbol table (.dynsym)");
}

// The defined, exported symbol `wanted`, if the table has it.
std::optional<Elf64_Sym> FindSymbol(const DynamicSymbols& d, std::string_view wanted) {
  for (size_t at = 0; at + sizeof(Elf64_Sym) <= d.symbols.size(); at += sizeof(Elf64_Sym)) {
    Elf64_Sym sym;
    std::memcpy(&sym, d.symbols.data() + at, sizeof sym);
    if (sym.st_name >= d.names.size() || sym.st_shndx == SHN_UNDEF) continue;
    const std::string_view rest = d.names.substr(sym.st_name);
    const std::string_view symbol_name = rest.substr(0, rest.find('\0'));
    const unsigned char bind = ELF64_ST_BIND(sym.st_info);
    if (symbol_name == wanted && (bind == STB_GLOBAL || bind == STB_WEAK) &&
        ELF64_ST_VISIBILITY(sym.st_other) == STV_DEFAULT) {
      return sym;
    }
  }
  return std::nullopt;
}

// The `size` bytes at virtual address `address` as the file holds them (initialized data).
std::optional<std::string_view> BytesAt(const DynamicSymbols& d, uint64_t address, uint64_t size) {
  for (uint16_t i = 0; i < d.eh.e_phnum; ++i) {
    Elf64_Phdr ph;
    std::memcpy(&ph, d.bytes.data() + d.eh.e_phoff + i * sizeof ph, sizeof ph);
    if (ph.p_type != PT_LOAD || address < ph.p_vaddr || address - ph.p_vaddr > ph.p_filesz ||
        size > ph.p_filesz - (address - ph.p_vaddr)) {
      continue;
    }
    return d.bytes.substr(ph.p_offset + (address - ph.p_vaddr), size);
  }
  return std::nullopt;
}

StatusOr<std::string> ReadWhole(int fd, const std::string& name) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    return InvalidArgumentError(Quoted(name) + ": cannot stat: " + std::strerror(errno));
  }
  if (!S_ISREG(st.st_mode)) return InvalidArgumentError(Quoted(name) + ": not a regular file");
  if (static_cast<uint64_t>(st.st_size) > kMaxLibraryBytes) {
    return InvalidArgumentError(Quoted(name) + ": " + std::to_string(st.st_size) +
                                " bytes, more than the limit of " +
                                std::to_string(kMaxLibraryBytes));
  }
  std::string bytes(static_cast<size_t>(st.st_size), '\0');
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n =
        ::pread(fd, bytes.data() + done, bytes.size() - done, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return InvalidArgumentError(Quoted(name) + ": cannot read: " + std::strerror(errno));
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  bytes.resize(done);
  return bytes;
}

std::string FdPath(int fd) { return "/proc/self/fd/" + std::to_string(fd); }

// A sealed memory file holding `bytes`.
StatusOr<int> PrivateCopy(std::string_view bytes, const std::string& name) {
  UniqueFd fd(::memfd_create("kchain-kernel-library", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!fd.valid()) {
    return ResourceExhaustedError(Quoted(name) + ": memfd_create: " + std::strerror(errno));
  }
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd.get(), bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = errno;
      return ResourceExhaustedError(Quoted(name) + ": copying it: " + std::strerror(err));
    }
    done += static_cast<size_t>(n);
  }
  // Sealed: nothing can change or shrink the bytes that were checked and are now mapped.
  if (::fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) !=
      0) {
    return InternalError(Quoted(name) + ": sealing its copy: " + std::strerror(errno));
  }
  return fd.release();
}

// A name under which to dlopen the copy at `fd`, never used before in this process: a
// symbolic link to /proc/self/fd/N in the temporary folder. The dynamic loader recognises
// loaded objects by the name they were opened under; were the copy opened as /proc/self/fd/N
// itself, a later library that lands on the same fd number while an earlier one is still
// loaded (one that cannot be unloaded) would get that earlier library back. The link is
// removed as soon as dlopen has the object open.
StatusOr<std::string> UniqueLoadName(int fd, const std::string& name) {
  static std::atomic<uint64_t> counter{0};
  std::error_code ec;
  std::filesystem::path dir = std::filesystem::temp_directory_path(ec);
  if (ec) dir = "/tmp";
  for (int attempt = 0; attempt < 16; ++attempt) {
    uint64_t random = 0;
    if (::getrandom(&random, sizeof random, 0) != sizeof random) random = counter.load() * 7919;
    char file[96];
    std::snprintf(file, sizeof file, "kchain-library-%d-%llu-%016llx.so",
                  static_cast<int>(::getpid()),
                  static_cast<unsigned long long>(counter.fetch_add(1)),
                  static_cast<unsigned long long>(random));
    const std::string path = (dir / file).string();
    if (::symlink(FdPath(fd).c_str(), path.c_str()) == 0) return path;
    if (errno != EEXIST) {
      return InternalError(Quoted(name) + ": cannot name its copy in '" + dir.string() +
                           "': " + std::strerror(errno));
    }
  }
  return InternalError(Quoted(name) + ": cannot find an unused name for its copy");
}

// dlerror() names the copy (/proc/self/fd/N); callers know the library by `name`.
std::string LastDlError(const std::string& load_path, const std::string& name) {
  const char* err = dlerror();
  std::string message = err != nullptr ? err : "unknown dynamic loader error";
  for (size_t at = message.find(load_path); at != std::string::npos;
       at = message.find(load_path, at + name.size())) {
    message.replace(at, load_path.size(), name);
  }
  return message;
}

// Whether `address` lies in the object `map` (not in one of its dependencies), and how the
// symbol there is typed.
struct SymbolOrigin {
  bool in_object = false;
  bool exact = false;      // `address` is where the symbol starts
  unsigned char type = 0;  // STT_FUNC, STT_OBJECT, ...
};
SymbolOrigin OriginOf(const void* address, const link_map* map) {
  SymbolOrigin origin;
  Dl_info info{};
  void* found = nullptr;
  if (dladdr1(address, &info, &found, RTLD_DL_LINKMAP) == 0) return origin;
  origin.in_object = found == map;
  void* entry = nullptr;
  if (dladdr1(address, &info, &entry, RTLD_DL_SYMENT) != 0 && entry != nullptr) {
    const auto* sym = static_cast<const ElfW(Sym)*>(entry);
    origin.exact = info.dli_saddr == address;
    origin.type = ELF64_ST_TYPE(sym->st_info);
  }
  return origin;
}

}  // namespace

Status InspectLibrary(const std::string& path, DeviceKind expected_target,
                      const std::vector<std::string>& kernels) {
  const UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    return errno == ENOENT
               ? NotFoundError(Quoted(path) + ": no such file")
               : InvalidArgumentError(Quoted(path) +
                                      ": cannot open for reading: " + std::strerror(errno));
  }
  auto bytes = ReadWhole(fd.get(), path);
  if (!bytes.ok()) return bytes.status();
  KCHAIN_RETURN_IF_ERROR(CheckElf(*bytes, path));
  KCHAIN_ASSIGN_OR_RETURN(DynamicSymbols d, FindDynamicSymbols(*bytes, path));
  const auto version_symbol = FindSymbol(d, KCHAIN_SYMBOL_ABI_VERSION);
  const auto version_bytes = version_symbol && ELF64_ST_TYPE(version_symbol->st_info) == STT_OBJECT
                                 ? BytesAt(d, version_symbol->st_value, sizeof(uint32_t))
                                 : std::nullopt;
  if (!version_bytes) {
    return InvalidArgumentError(Quoted(path) + " is not a kchain kernel library: symbol '" +
                                KCHAIN_SYMBOL_ABI_VERSION + "' is not exported");
  }
  uint32_t version = 0;
  std::memcpy(&version, version_bytes->data(), sizeof version);
  if (version >> 16 != KCHAIN_ABI_VERSION_MAJOR || (version & 0xffffu) > KCHAIN_ABI_VERSION_MINOR) {
    return InvalidArgumentError(Quoted(path) + ": symbol '" + KCHAIN_SYMBOL_ABI_VERSION +
                                "' says ABI " + std::to_string(version >> 16) + "." +
                                std::to_string(version & 0xffffu) + ", which this runtime (ABI " +
                                std::to_string(KCHAIN_ABI_VERSION_MAJOR) + "." +
                                std::to_string(KCHAIN_ABI_VERSION_MINOR) + ") does not load");
  }
  const auto target_symbol = FindSymbol(d, KCHAIN_SYMBOL_TARGET);
  const auto target_bytes =
      target_symbol && ELF64_ST_TYPE(target_symbol->st_info) == STT_OBJECT
          ? BytesAt(d, target_symbol->st_value, std::min<uint64_t>(target_symbol->st_size, 16))
          : std::nullopt;
  if (!target_bytes) {
    return InvalidArgumentError(Quoted(path) + " is not a kchain kernel library: symbol '" +
                                KCHAIN_SYMBOL_TARGET + "' is not exported");
  }
  const std::string target(target_bytes->substr(0, target_bytes->find('\0')));
  auto parsed = ParseDeviceKind(target);
  if (!parsed.ok() || *parsed != expected_target) {
    return InvalidArgumentError(Quoted(path) + " targets '" + target.substr(0, 16) +
                                "' but this device runs '" +
                                std::string(DeviceKindName(expected_target)) + "' kernels");
  }
  for (const std::string& kernel : kernels) {
    const auto sym = FindSymbol(d, kernel);
    if (!IsValidKernelName(kernel) || !sym || ELF64_ST_TYPE(sym->st_info) != STT_FUNC ||
        kernel == "_init" || kernel == "_fini" || kernel.rfind("kchain_", 0) == 0) {
      return NotFoundError("kernel '" + kernel.substr(0, 130) + "' is not exported by " +
                           Quoted(path) + " (declare it with KCHAIN_KERNEL(" +
                           kernel.substr(0, 130) + "))");
    }
  }
  return Status();
}

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
                                                       DeviceKind expected_target,
                                                       LibraryOptions options) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    const int err = errno;
    if (err == ENOENT || err == ENOTDIR) return NotFoundError(Quoted(path) + ": no such file");
    return InvalidArgumentError(Quoted(path) + ": cannot stat: " + std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) return InvalidArgumentError(Quoted(path) + ": not a regular file");
  const UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    return InvalidArgumentError(Quoted(path) +
                                ": cannot open for reading: " + std::strerror(errno));
  }
  return OpenFd(fd.get(), path, expected_target, options);
}

StatusOr<std::shared_ptr<const Library>> Library::OpenFd(int fd, const std::string& name,
                                                         DeviceKind expected_target,
                                                         LibraryOptions options) {
  const auto start = Clock::now();
  KCHAIN_ASSIGN_OR_RETURN(std::string bytes, ReadWhole(fd, name));
  KCHAIN_RETURN_IF_ERROR(CheckElf(bytes, name));
  KCHAIN_ASSIGN_OR_RETURN(int copy_fd, PrivateCopy(bytes, name));
  UniqueFd copy(copy_fd);
  bytes = std::string();  // the copy is all that is needed now
  auto unique_name = UniqueLoadName(copy.get(), name);
  if (!unique_name.ok()) return unique_name.status();
  const std::string load_path = *unique_name;

  dlerror();
  void* handle =
      dlopen(load_path.c_str(), RTLD_NOW | RTLD_LOCAL | (options.never_unload ? RTLD_NODELETE : 0));
  const std::string why = handle == nullptr ? LastDlError(load_path, name) : "";
  // The loader has the object open (or failed): neither the link nor the fd is needed, the
  // mapping keeps the copy alive.
  ::unlink(load_path.c_str());
  copy.reset();
  if (handle == nullptr) return InvalidArgumentError(Quoted(name) + ": dlopen failed: " + why);
  // From here on the Library owns the handle; its destructor closes it.
  std::shared_ptr<Library> library(new Library(name, handle, DeviceKind::kHost, 0, {}));
  link_map* map = nullptr;
  if (dlinfo(handle, RTLD_DI_LINKMAP, &map) != 0 || map == nullptr) {
    return InternalError(Quoted(name) + ": dlinfo failed: " + LastDlError(load_path, name));
  }
  library->map_ = map;

  // Module symbols must be data defined by the library itself, not found in a dependency.
  auto lookup = [&](const char* symbol) -> const void* {
    dlerror();
    const void* address = dlsym(handle, symbol);
    if (address == nullptr) return nullptr;
    const SymbolOrigin origin = OriginOf(address, map);
    return origin.in_object && origin.exact && origin.type == STT_OBJECT ? address : nullptr;
  };
  const auto* version = static_cast<const uint32_t*>(lookup(KCHAIN_SYMBOL_ABI_VERSION));
  if (version == nullptr) {
    return InvalidArgumentError(Quoted(name) + " is not a kchain kernel library: symbol '" +
                                KCHAIN_SYMBOL_ABI_VERSION +
                                "' is not exported (declare KCHAIN_MODULE_CUDA() or "
                                "KCHAIN_MODULE_HOST() in one source file)");
  }
  const uint32_t lib_major = *version >> 16, lib_minor = *version & 0xffffu;
  if (lib_major != KCHAIN_ABI_VERSION_MAJOR) {
    return InvalidArgumentError(
        Quoted(name) + ": symbol '" + KCHAIN_SYMBOL_ABI_VERSION + "' says ABI " +
        std::to_string(lib_major) + "." + std::to_string(lib_minor) +
        ", incompatible with this runtime's ABI " + std::to_string(KCHAIN_ABI_VERSION_MAJOR) + "." +
        std::to_string(KCHAIN_ABI_VERSION_MINOR) + " (the major version must match)");
  }
  if (lib_minor > KCHAIN_ABI_VERSION_MINOR) {
    return InvalidArgumentError(
        Quoted(name) + ": symbol '" + KCHAIN_SYMBOL_ABI_VERSION + "' says ABI " +
        std::to_string(lib_major) + "." + std::to_string(lib_minor) +
        ", newer than this runtime's ABI " + std::to_string(KCHAIN_ABI_VERSION_MAJOR) + "." +
        std::to_string(KCHAIN_ABI_VERSION_MINOR) + " (upgrade kchain or rebuild the library)");
  }

  const auto* target = static_cast<const char*>(lookup(KCHAIN_SYMBOL_TARGET));
  if (target == nullptr) {
    return InvalidArgumentError(Quoted(name) + " is not a kchain kernel library: symbol '" +
                                KCHAIN_SYMBOL_TARGET + "' is not exported");
  }
  // Bounded read: the symbol is untrusted data.
  std::string target_name(target, strnlen(target, 16));
  for (char& c : target_name) {
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) > 0x7e) c = '?';
  }
  auto parsed = ParseDeviceKind(target_name);
  if (!parsed.ok()) {
    return InvalidArgumentError(Quoted(name) + ": symbol '" + KCHAIN_SYMBOL_TARGET + "' is '" +
                                target_name + "', expected 'cuda' or 'host'");
  }
  if (*parsed != expected_target) {
    return InvalidArgumentError(Quoted(name) + " targets '" + target_name +
                                "' but this device runs '" +
                                std::string(DeviceKindName(expected_target)) + "' kernels");
  }
  library->target_ = *parsed;
  library->abi_version_ = *version;
  library->load_duration_ =
      std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - start);
  return std::shared_ptr<const Library>(std::move(library));
}

StatusOr<kchain_kernel_fn> Library::Resolve(std::string_view kernel) const {
  if (!IsValidKernelName(kernel)) {
    return InvalidArgumentError("'" + std::string(kernel.substr(0, 130)) +
                                "' is not a valid kernel name (a C identifier of at most 128 "
                                "characters)");
  }
  const std::string symbol(kernel);
  auto not_a_kernel = [&](const std::string& why) {
    return NotFoundError("kernel '" + symbol + "' is not exported by " + Quoted(path_) + " (" +
                         why + "; declare it with KCHAIN_KERNEL(" + symbol + "))");
  };
  // The loader's own symbols and the ABI's names are never kernels.
  if (symbol == "_init" || symbol == "_fini" || symbol.rfind("kchain_", 0) == 0) {
    return not_a_kernel("the name is reserved");
  }
  dlerror();
  void* fn = dlsym(handle_, symbol.c_str());
  if (fn == nullptr) return not_a_kernel("no such symbol");
  // dlsym also searches the library's dependencies (the C library's abort, exit and system
  // among them), and finds data as well as code: only a function the library itself defines
  // is a kernel.
  const SymbolOrigin origin = OriginOf(fn, static_cast<const link_map*>(map_));
  if (!origin.in_object) return not_a_kernel("the symbol comes from a library it depends on");
  if (!origin.exact || origin.type != STT_FUNC) return not_a_kernel("the symbol is not a function");
  return reinterpret_cast<kchain_kernel_fn>(fn);
}

}  // namespace kchain
