// Owners for the POSIX resources kchain opens: a file descriptor and a memory mapping. Each
// closes (unmaps) what it holds when it goes, so that no error path can leak one.
#ifndef KCHAIN_RUNTIME_UNIQUE_FD_H_
#define KCHAIN_RUNTIME_UNIQUE_FD_H_

#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <utility>

namespace kchain {

// One file descriptor, closed on destruction. -1: none.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    reset(other.release());
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  // Gives the descriptor up without closing it.
  int release() { return std::exchange(fd_, -1); }
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

// One mapping from mmap(), unmapped on destruction.
class MappedRegion {
 public:
  MappedRegion() = default;
  // Takes `addr` (a result of mmap other than MAP_FAILED) and its length.
  MappedRegion(void* addr, size_t bytes) : addr_(addr), bytes_(bytes) {}
  MappedRegion(MappedRegion&& other) noexcept
      : addr_(std::exchange(other.addr_, nullptr)), bytes_(std::exchange(other.bytes_, 0)) {}
  MappedRegion& operator=(MappedRegion&& other) noexcept {
    reset();
    addr_ = std::exchange(other.addr_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
    return *this;
  }
  MappedRegion(const MappedRegion&) = delete;
  MappedRegion& operator=(const MappedRegion&) = delete;
  ~MappedRegion() { reset(); }

  // MAP_SHARED, read and write, of the first `bytes` of `fd`; an empty region (errno set) on
  // failure.
  static MappedRegion MapShared(int fd, size_t bytes) {
    void* addr = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    return addr == MAP_FAILED ? MappedRegion() : MappedRegion(addr, bytes);
  }

  bool valid() const { return addr_ != nullptr; }
  std::byte* data() const { return static_cast<std::byte*>(addr_); }
  size_t size() const { return bytes_; }
  // Gives the mapping up without unmapping it.
  std::byte* release() {
    bytes_ = 0;
    return static_cast<std::byte*>(std::exchange(addr_, nullptr));
  }
  void reset() {
    if (addr_ != nullptr) ::munmap(addr_, bytes_);
    addr_ = nullptr;
    bytes_ = 0;
  }

 private:
  void* addr_ = nullptr;
  size_t bytes_ = 0;
};

}  // namespace kchain

#endif  // KCHAIN_RUNTIME_UNIQUE_FD_H_
