// File-system helpers for the function store: atomic writes, hashing, timestamps.
// Thread-safety: pure functions over distinct paths.
#ifndef KCHAIN_GATEWAY_CORE_FILES_H_
#define KCHAIN_GATEWAY_CORE_FILES_H_

#include <span>
#include <string>
#include <string_view>
#include <system_error>

#include "kchain/status.h"

namespace kchain::gateway {

// Writes `bytes` to `path` so that a reader sees either the old file or the whole new one:
// a temporary file in the same folder, fsync, rename over `path`, fsync of the folder.
Status WriteFileAtomic(const std::string& path, std::span<const std::byte> bytes);

// Writes `bytes` to a new file `path` (which must not exist) and fsyncs it.
Status WriteNewFile(const std::string& path, std::span<const std::byte> bytes);

// fsync of a folder, so that a rename or a new entry in it is durable.
Status SyncDirectory(const std::string& path);

// A failed file-system call as a status: kInsufficientStorage when the disk (or the quota) is
// full, kInternal otherwise; the message says `what` failed and why.
Status StorageError(const std::string& what, const std::error_code& ec);

// Whether `name` is a leftover of WriteFileAtomic (its temporary "<file>.tmp.<n>").
bool IsAtomicWriteLeftover(std::string_view name);

// Lowercase hex SHA-256 of `bytes` (OpenSSL).
std::string Sha256Hex(std::span<const std::byte> bytes);

// The current UTC time as RFC 3339, e.g. "2026-11-22T10:04:05Z".
std::string NowRfc3339();

inline std::span<const std::byte> AsBytes(std::string_view s) {
  return std::as_bytes(std::span(s.data(), s.size()));
}

}  // namespace kchain::gateway

#endif  // KCHAIN_GATEWAY_CORE_FILES_H_
