#include "gateway/core/data_dir.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

namespace kchain::gateway {

namespace fs = std::filesystem;

StatusOr<DataDirLock> DataDirLock::Acquire(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) {
    return InvalidArgumentError("data directory '" + dir + "': cannot create it: " + ec.message());
  }
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    return InvalidArgumentError("data directory '" + dir +
                                "': cannot open it: " + std::strerror(errno));
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    ::close(fd);
    if (err == EWOULDBLOCK) {
      return UnavailableError("data directory '" + dir +
                              "' is in use by another kchain-gateway (one gateway per data "
                              "directory: give this one its own --data-dir)");
    }
    return InvalidArgumentError("data directory '" + dir +
                                "': cannot lock it: " + std::strerror(err));
  }
  DataDirLock lock(fd);
  // Worker folders of gateways that died without cleaning up (kill -9). Nobody else can be
  // using them: this process holds the lock.
  for (const auto& entry : fs::directory_iterator(fs::path(dir) / "workers", ec)) {
    std::error_code remove_ec;
    fs::remove_all(entry.path(), remove_ec);
    if (!remove_ec) ++lock.cleaned_;
  }
  return lock;
}

DataDirLock::~DataDirLock() {
  if (fd_ >= 0) ::close(fd_);  // releases the lock
}

}  // namespace kchain::gateway
