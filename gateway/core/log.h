// A small thread-safe logger: one line per call on stderr, each written with a single
// write(2) so lines from concurrent threads never interleave.
#ifndef KCHAIN_GATEWAY_CORE_LOG_H_
#define KCHAIN_GATEWAY_CORE_LOG_H_

#include <atomic>
#include <string>
#include <string_view>

#include "kchain/status.h"

namespace kchain::gateway {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };
StatusOr<LogLevel> ParseLogLevel(std::string_view name);  // debug, info, warning, error

class Logger {
 public:
  explicit Logger(LogLevel level = LogLevel::kInfo, int fd = 2) : level_(level), fd_(fd) {}
  bool enabled(LogLevel level) const { return level >= level_.load(std::memory_order_relaxed); }
  void set_level(LogLevel level) { level_.store(level); }
  // "2026-11-22T10:04:05.123Z INFO <message>"
  void Log(LogLevel level, std::string_view message) const;
  void Info(std::string_view message) const { Log(LogLevel::kInfo, message); }
  void Warning(std::string_view message) const { Log(LogLevel::kWarning, message); }
  void Error(std::string_view message) const { Log(LogLevel::kError, message); }

 private:
  std::atomic<LogLevel> level_;
  int fd_;
};

}  // namespace kchain::gateway

#endif  // KCHAIN_GATEWAY_CORE_LOG_H_
