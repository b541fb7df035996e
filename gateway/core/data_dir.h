// The data directory's lock: one gateway per data directory, and what a crash left behind
// cleaned before anything else uses it.
//
// The lock is flock(2) on the folder itself (no file is created, so it works on a full disk)
// and goes with the process, kill -9 included. Thread-safety: a value owned by main().
#ifndef KCHAIN_GATEWAY_CORE_DATA_DIR_H_
#define KCHAIN_GATEWAY_CORE_DATA_DIR_H_

#include <string>

#include "kchain/status.h"

namespace kchain::gateway {

class DataDirLock {
 public:
  // Creates `dir` if needed, locks it, and removes what earlier gateways that died left
  // there: the workers/ folders of their worker processes. Errors name the folder:
  // kInvalidArgument when it cannot be created or opened, kUnavailable when another process
  // holds it.
  static StatusOr<DataDirLock> Acquire(const std::string& dir);

  DataDirLock(DataDirLock&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
  DataDirLock& operator=(DataDirLock&&) = delete;
  ~DataDirLock();

  // Folders removed by Acquire() (leftovers of crashed gateways).
  int cleaned() const { return cleaned_; }

 private:
  explicit DataDirLock(int fd) : fd_(fd) {}
  int fd_;
  int cleaned_ = 0;
};

}  // namespace kchain::gateway

#endif  // KCHAIN_GATEWAY_CORE_DATA_DIR_H_
