#include "gateway/worker/protocol.h"

#include <fcntl.h>
#include <linux/futex.h>
#include <poll.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <climits>
#include <cstring>
#include <string>

namespace kchain::worker {
namespace {
constexpr size_t kMaxFds = 4;
}

Channel::Channel(int fd, bool never_block_on_send)
    : fd_(fd), never_block_on_send_(never_block_on_send), buffer_(kMaxMessageBytes) {}

Channel::~Channel() {
  if (fd_ >= 0) ::close(fd_);
}

Status Channel::Send(MessageType type, const void* body, size_t body_bytes, std::string_view text,
                     std::span<const int> fds, uint64_t request_id) {
  if (sizeof(Header) + body_bytes > kMaxMessageBytes || fds.size() > kMaxFds) {
    return InternalError("worker message too large");
  }
  text = text.substr(0, kMaxMessageBytes - sizeof(Header) - body_bytes);
  Header header{static_cast<uint32_t>(type), static_cast<uint32_t>(body_bytes + text.size()),
                request_id};
  iovec iov[3] = {{&header, sizeof header},
                  {const_cast<void*>(body), body_bytes},
                  {const_cast<char*>(text.data()), text.size()}};
  msghdr msg{};
  msg.msg_iov = iov;
  msg.msg_iovlen = 3;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFds)];
  if (!fds.empty()) {
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(cmsg), fds.data(), sizeof(int) * fds.size());
  }
  while (true) {
    const ssize_t sent =
        ::sendmsg(fd_, &msg, MSG_NOSIGNAL | (never_block_on_send_ ? MSG_DONTWAIT : 0));
    if (sent >= 0) return Status();
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      return UnavailableError("the worker does not read its socket (its queue is full)");
    }
    if (errno == EPIPE || errno == ECONNRESET || errno == ENOTCONN) {
      return UnavailableError("the worker's socket is closed");
    }
    return InternalError(std::string("sendmsg to worker: ") + std::strerror(errno));
  }
}

Status Channel::TryReceive() {
  received_ = 0;
  ssize_t got;
  do {
    // MSG_TRUNC: the record's real length, so that one longer than the buffer is refused (as
    // Receive does) rather than taken as its first kMaxMessageBytes.
    got = ::recv(fd_, buffer_.data(), buffer_.size(), MSG_DONTWAIT | MSG_TRUNC);
  } while (got < 0 && errno == EINTR);
  if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
    return DeadlineExceededError("no message waiting");
  }
  if (got <= 0) return UnavailableError("the worker closed its socket");
  if (static_cast<size_t>(got) > buffer_.size() || static_cast<size_t>(got) < sizeof(Header) ||
      header().body_bytes != static_cast<size_t>(got) - sizeof(Header)) {
    return InternalError("malformed message from the worker");
  }
  received_ = static_cast<size_t>(got);
  return Status();
}

Status Channel::Receive(int timeout_ms, std::vector<int>* fds) {
  received_ = 0;
  if (timeout_ms >= 0) {
    pollfd p{fd_, POLLIN, 0};
    int ready;
    do {
      ready = ::poll(&p, 1, timeout_ms);
    } while (ready < 0 && errno == EINTR);
    if (ready == 0) return DeadlineExceededError("no reply from the worker in time");
    if (ready < 0) return InternalError(std::string("poll: ") + std::strerror(errno));
  }
  iovec iov{buffer_.data(), buffer_.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFds)];
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t got;
  do {
    got = ::recvmsg(fd_, &msg, MSG_CMSG_CLOEXEC);
  } while (got < 0 && errno == EINTR);
  const int error = got < 0 ? errno : 0;
  const bool good = got > 0 && (msg.msg_flags & MSG_TRUNC) == 0 &&
                    static_cast<size_t>(got) >= sizeof(Header) &&
                    header().body_bytes == static_cast<size_t>(got) - sizeof(Header);
  // Descriptors ride with any record, an empty or malformed one too (a SOCK_SEQPACKET record
  // of 0 bytes reads like end-of-file): only a good message's go to the caller, the rest are
  // closed, or every such record would leak some.
  if (got >= 0) {
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      const size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < n; ++i) {
        int fd;
        std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
        if (good && fds != nullptr) {
          fds->push_back(fd);
        } else {
          ::close(fd);
        }
      }
    }
  }
  if (got == 0 || (got < 0 && (error == ECONNRESET || error == ENOTCONN))) {
    return UnavailableError("the worker closed its socket");
  }
  if (got < 0) return InternalError(std::string("recvmsg from worker: ") + std::strerror(error));
  if (!good) return InternalError("malformed message from the worker");
  received_ = static_cast<size_t>(got);
  return Status();
}

std::string_view Channel::text(size_t body_bytes) const {
  const size_t start = sizeof(Header) + body_bytes;
  if (received_ <= start) return {};
  return {reinterpret_cast<const char*>(buffer_.data() + start), received_ - start};
}

std::string CleanWorkerText(std::string_view raw) {
  raw = raw.substr(0, kMaxWorkerTextBytes);
  if (const size_t nul = raw.find('\0'); nul != std::string_view::npos) raw = raw.substr(0, nul);
  std::string out(raw);
  for (char& c : out) {
    const auto u = static_cast<unsigned char>(c);
    if ((u < 0x20 && c != '\n' && c != '\t') || u == 0x7f) c = '?';
  }
  return out;
}

Status WorkerFailure(uint32_t raw_code, std::string text, WorkerStep step) {
  // What a worker's own failure can be. A run's input was checked before the worker saw it, so
  // a run can only fail by its code, its device or its time.
  static constexpr std::array kRunCodes{StatusCode::kKernelError, StatusCode::kUnavailable,
                                        StatusCode::kDeadlineExceeded,
                                        StatusCode::kResourceExhausted};
  static constexpr std::array kSetUpCodes{
      StatusCode::kKernelError,        StatusCode::kUnavailable,     StatusCode::kDeadlineExceeded,
      StatusCode::kResourceExhausted,  StatusCode::kInvalidArgument, StatusCode::kNotFound,
      StatusCode::kFailedPrecondition, StatusCode::kPayloadTooLarge, StatusCode::kUnimplemented};
  const auto code = static_cast<StatusCode>(raw_code);
  const bool allowed = step == WorkerStep::kRun
                           ? std::ranges::find(kRunCodes, code) != kRunCodes.end()
                           : std::ranges::find(kSetUpCodes, code) != kSetUpCodes.end();
  if (allowed) return Status(code, std::move(text));
  const bool known = raw_code != 0 && raw_code <= static_cast<uint32_t>(StatusCode::kInternal);
  const std::string claim =
      known ? "the worker reported " + std::string(StatusCodeName(code))
            : "the worker reported an unknown status code " + std::to_string(raw_code);
  return KernelError("(" + claim + ") " + text);
}

Reply DecodeReply(const Channel& channel, MessageType expected, void* body, size_t body_bytes,
                  uint64_t request_id) {
  Reply reply;
  const size_t got = channel.body_bytes();
  if (request_id != kAnyRequest && channel.request_id() != request_id) {
    reply.status =
        InternalError("the worker answered request " + std::to_string(channel.request_id()) +
                      " where request " + std::to_string(request_id) + " was waiting");
    return reply;
  }
  if (channel.type() == MessageType::kError) {
    ErrorBody error{};
    if (!channel.CopyBody(&error) || error.broken > 1) {
      reply.status = InternalError("malformed error message from the worker");
      return reply;
    }
    reply.kind = Reply::Kind::kError;
    reply.status = WorkerFailure(
        error.status_code, CleanWorkerText(channel.text(sizeof(ErrorBody))), WorkerStep::kSetUp);
    reply.broken = error.broken != 0;
    return reply;
  }
  if (channel.type() != expected) {
    reply.status = InternalError(
        "the worker sent message type " + std::to_string(static_cast<uint32_t>(channel.type())) +
        " where type " + std::to_string(static_cast<uint32_t>(expected)) + " was expected");
    return reply;
  }
  if (got < body_bytes) {
    reply.status = InternalError("the worker sent a message of type " +
                                 std::to_string(static_cast<uint32_t>(expected)) + " with " +
                                 std::to_string(got) + " bytes, fewer than its body's " +
                                 std::to_string(body_bytes));
    return reply;
  }
  if (body_bytes != 0) std::memcpy(body, channel.text(0).data(), body_bytes);
  reply.kind = Reply::Kind::kExpected;
  reply.text = CleanWorkerText(channel.text(body_bytes));
  return reply;
}

Status CheckRan(const RanBody& ran) {
  if (ran.status_code > static_cast<uint32_t>(StatusCode::kInternal)) {
    return InternalError("the worker reported status code " + std::to_string(ran.status_code));
  }
  if (ran.mode > 1 || ran.stages_timed > 1 || ran.broken > 1 || ran.op < 1 || ran.op > 4) {
    return InternalError("the worker's reply has flags out of range");
  }
  for (double t : {ran.input_copy_us, ran.chain_us, ran.output_copy_us, ran.total_us, ran.create_us,
                   ran.upload_us}) {
    // Within a day in microseconds; NaN fails both comparisons.
    if (!(t >= 0 && t <= 86400e6)) return InternalError("the worker's reply has a bad timing");
  }
  return Status();
}

std::string ControlPageText(const std::byte* page) {
  constexpr size_t kRoom = kControlPageBytes - kControlMessageOffset;
  char copy[kRoom];
  std::memcpy(copy, page + kControlMessageOffset, kRoom);  // once: the worker may rewrite it
  return CleanWorkerText(std::string_view(copy, kRoom));
}

Status CheckReady(ReadyBody* ready) {
  if (ready->protocol_version != kProtocolVersion) {
    return UnavailableError("the worker speaks protocol " +
                            std::to_string(ready->protocol_version) + ", expected " +
                            std::to_string(kProtocolVersion) + " (mismatched binaries)");
  }
  ready->device_name[sizeof ready->device_name - 1] = '\0';
  ready->sandbox_notes[sizeof ready->sandbox_notes - 1] = '\0';
  if (ready->device_kind > 1 || ready->max_threads_per_block < 1 || ready->max_grid_size < 1 ||
      !(ready->init_us >= 0)) {
    return UnavailableError("the worker's READY message is malformed");
  }
  return Status();
}

StatusOr<int> SealedMemoryFile(const char* name, std::string_view bytes) {
  const int fd = ::memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) return InternalError(std::string("memfd_create: ") + std::strerror(errno));
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = errno;
      ::close(fd);
      return err == ENOSPC || err == ENOMEM || err == EFBIG
                 ? ResourceExhaustedError(std::string("writing a memory file: ") +
                                          std::strerror(err))
                 : InternalError(std::string("writing a memory file: ") + std::strerror(err));
    }
    done += static_cast<size_t>(n);
  }
  if (::fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) != 0) {
    const int err = errno;
    ::close(fd);
    return InternalError(std::string("sealing a memory file: ") + std::strerror(err));
  }
  return fd;
}

StatusOr<std::string> ReadWholeFd(int fd, size_t limit, std::string_view what) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    return InternalError("reading " + std::string(what) + ": " + std::strerror(errno));
  }
  if (st.st_size < 0 || static_cast<uint64_t>(st.st_size) > limit) {
    return InvalidArgumentError(std::string(what) + " is " + std::to_string(st.st_size) +
                                " bytes, more than " + std::to_string(limit));
  }
  std::string out(static_cast<size_t>(st.st_size), '\0');
  size_t done = 0;
  while (done < out.size()) {
    const ssize_t n = ::pread(fd, out.data() + done, out.size() - done, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return InternalError("reading " + std::string(what) + ": " + std::strerror(errno));
    if (n == 0) break;  // shorter than it said: take what is there
    done += static_cast<size_t>(n);
  }
  out.resize(done);
  return out;
}

void FutexWait(std::atomic<uint32_t>* word, uint32_t expected, int timeout_ms) {
  timespec timeout{timeout_ms / 1000, static_cast<long>(timeout_ms % 1000) * 1000000L};
  // Shared, not FUTEX_PRIVATE: the word is in memory two processes map. EINTR, EAGAIN (the
  // value changed) and ETIMEDOUT all mean the same to callers: look again.
  ::syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT, expected,
            timeout_ms < 0 ? nullptr : &timeout, nullptr, 0);
}

void FutexWake(std::atomic<uint32_t>* word) {
  ::syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE, INT32_MAX, nullptr, nullptr,
            0);
}

void SpinPause(bool yield) {
  if (yield) {
    ::sched_yield();
  } else {
    CpuRelax();
  }
}

Status MakeSocketPair(int fds[2]) {
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) != 0) {
    return InternalError(std::string("socketpair: ") + std::strerror(errno));
  }
  return Status();
}

}  // namespace kchain::worker
