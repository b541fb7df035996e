#include "gateway/core/files.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <random>

namespace kchain::gateway {
namespace {

Status Errno(const std::string& what, const std::string& path) {
  const int err = errno;
  if (err == ENOSPC || err == EDQUOT) {
    return InsufficientStorageError("no space left on the server's disk (" + what + " '" + path +
                                    "': " + std::strerror(err) + ")");
  }
  return InternalError(what + " '" + path + "': " + std::strerror(err));
}

Status WriteAll(int fd, std::span<const std::byte> bytes, const std::string& path) {
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Errno("write", path);
    }
    done += static_cast<size_t>(n);
  }
  return Status();
}

}  // namespace

Status WriteNewFile(const std::string& path, std::span<const std::byte> bytes) {
  // Private to the gateway's user: workers run as another user and must not read tenants'
  // libraries and constants.
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return Errno("create", path);
  Status status = WriteAll(fd, bytes, path);
  if (status.ok() && ::fsync(fd) != 0) status = Errno("fsync", path);
  if (::close(fd) != 0 && status.ok()) status = Errno("close", path);
  if (!status.ok()) ::unlink(path.c_str());
  return status;
}

Status SyncDirectory(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Errno("open folder", path);
  const int rc = ::fsync(fd);
  ::close(fd);
  return rc == 0 ? Status() : Errno("fsync folder", path);
}

Status WriteFileAtomic(const std::string& path, std::span<const std::byte> bytes) {
  thread_local std::mt19937_64 rng(std::random_device{}());
  const std::string tmp = path + ".tmp." + std::to_string(rng());
  KCHAIN_RETURN_IF_ERROR(WriteNewFile(tmp, bytes));
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    Status s = Errno("rename", tmp);
    ::unlink(tmp.c_str());
    return s;
  }
  // A bare file name lives in the current folder (parent_path() is then empty).
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  return SyncDirectory(parent.empty() ? "." : parent.string());
}

Status StorageError(const std::string& what, const std::error_code& ec) {
  if (ec == std::errc::no_space_on_device || ec.value() == EDQUOT) {
    return InsufficientStorageError("no space left on the server's disk (" + what + ": " +
                                    ec.message() + ")");
  }
  return InternalError(what + ": " + ec.message());
}

bool IsAtomicWriteLeftover(std::string_view name) {
  return name.find(".tmp.") != std::string_view::npos;
}

std::string Sha256Hex(std::span<const std::byte> bytes) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(bytes.data(), bytes.size(), digest, &len, EVP_sha256(), nullptr);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(len * 2);
  for (unsigned int i = 0; i < len; ++i) {
    out += kHex[digest[i] >> 4];
    out += kHex[digest[i] & 15];
  }
  return out;
}

std::string NowRfc3339() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace kchain::gateway
