#include "gateway/worker/protocol.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace kchain::worker {
namespace {
constexpr size_t kMaxFds = 4;
}

Channel::Channel(int fd) : fd_(fd), buffer_(kMaxMessageBytes) {}

Channel::~Channel() {
  if (fd_ >= 0) ::close(fd_);
}

Status Channel::Send(MessageType type, const void* body, size_t body_bytes, std::string_view text,
                     std::span<const int> fds) {
  if (sizeof(Header) + body_bytes > kMaxMessageBytes || fds.size() > kMaxFds) {
    return InternalError("worker message too large");
  }
  text = text.substr(0, kMaxMessageBytes - sizeof(Header) - body_bytes);
  Header header{static_cast<uint32_t>(type), static_cast<uint32_t>(body_bytes + text.size())};
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
    const ssize_t sent = ::sendmsg(fd_, &msg, MSG_NOSIGNAL);
    if (sent >= 0) return Status();
    if (errno == EINTR) continue;
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
    got = ::recv(fd_, buffer_.data(), buffer_.size(), MSG_DONTWAIT);
  } while (got < 0 && errno == EINTR);
  if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
    return DeadlineExceededError("no message waiting");
  }
  if (got <= 0) return UnavailableError("the worker closed its socket");
  if (static_cast<size_t>(got) < sizeof(Header) ||
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
  if (got == 0 || (got < 0 && (errno == ECONNRESET || errno == ENOTCONN))) {
    return UnavailableError("the worker closed its socket");
  }
  if (got < 0) return InternalError(std::string("recvmsg from worker: ") + std::strerror(errno));
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < n; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
      if (fds != nullptr) {
        fds->push_back(fd);
      } else {
        ::close(fd);
      }
    }
  }
  if ((msg.msg_flags & MSG_TRUNC) != 0 || static_cast<size_t>(got) < sizeof(Header) ||
      header().body_bytes != static_cast<size_t>(got) - sizeof(Header)) {
    return InternalError("malformed message from the worker");
  }
  received_ = static_cast<size_t>(got);
  return Status();
}

std::string_view Channel::text(size_t body_bytes) const {
  const size_t start = sizeof(Header) + body_bytes;
  if (received_ <= start) return {};
  return {reinterpret_cast<const char*>(buffer_.data() + start), received_ - start};
}

Status MakeSocketPair(int fds[2]) {
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) != 0) {
    return InternalError(std::string("socketpair: ") + std::strerror(errno));
  }
  return Status();
}

}  // namespace kchain::worker
