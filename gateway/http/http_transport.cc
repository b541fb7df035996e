#include "gateway/http/http_transport.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <vector>

namespace kchain::gateway {
namespace {

using Clock = std::chrono::steady_clock;

thread_local bool t_close_after_response = false;

int MillisUntil(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return static_cast<int>(std::max<int64_t>(0, left.count()));
}

// Waits up to `timeout_ms` for `events` on `sock`: 1 ready, 0 timed out, -1 error.
int PollOne(int sock, short events, int timeout_ms) {
  pollfd p{sock, events, 0};
  int r;
  do {
    r = ::poll(&p, 1, timeout_ms);
  } while (r < 0 && errno == EINTR);
  if (r > 0 && (p.revents & (POLLERR | POLLNVAL)) != 0 && (p.revents & events) == 0) return -1;
  return r;
}

void AddressOf(const sockaddr_storage& addr, std::string& ip, int& port) {
  char text[INET6_ADDRSTRLEN] = "";
  if (addr.ss_family == AF_INET) {
    const auto& a = reinterpret_cast<const sockaddr_in&>(addr);
    ::inet_ntop(AF_INET, &a.sin_addr, text, sizeof text);
    port = ntohs(a.sin_port);
  } else if (addr.ss_family == AF_INET6) {
    const auto& a = reinterpret_cast<const sockaddr_in6&>(addr);
    ::inet_ntop(AF_INET6, &a.sin6_addr, text, sizeof text);
    port = ntohs(a.sin6_port);
  }
  ip = text;
}

// One connection's socket with a read buffer that lives as long as the connection: bytes
// read ahead (the next pipelined request, say) stay for the next request.
class ConnectionStream final : public httplib::Stream {
 public:
  ConnectionStream(int sock, size_t buffer_bytes, int read_timeout_ms, int write_timeout_ms)
      : sock_(sock),
        buffer_(buffer_bytes),
        read_timeout_ms_(read_timeout_ms),
        write_timeout_ms_(write_timeout_ms) {}

  bool is_readable() const override {
    return begin_ < end_ || PollOne(sock_, POLLIN, read_timeout_ms_) > 0;
  }
  bool is_writable() const override { return PollOne(sock_, POLLOUT, write_timeout_ms_) > 0; }

  ssize_t read(char* ptr, size_t size) override {
    if (begin_ == end_) {
      if (PollOne(sock_, POLLIN, read_timeout_ms_) <= 0) return -1;
      // Large reads (request bodies) go straight to the caller; small ones through the buffer.
      if (size >= buffer_.size() / 4) {
        const ssize_t n = Recv(ptr, size);
        if (n > 0) consumed_ += static_cast<uint64_t>(n);
        return n;
      }
      begin_ = end_ = 0;
      const ssize_t n = Recv(buffer_.data(), buffer_.size());
      if (n <= 0) return n;
      end_ = static_cast<size_t>(n);
    }
    const size_t n = std::min(size, end_ - begin_);
    std::memcpy(ptr, buffer_.data() + begin_, n);
    begin_ += n;
    consumed_ += n;
    return static_cast<ssize_t>(n);
  }

  ssize_t write(const char* ptr, size_t size) override {
    if (PollOne(sock_, POLLOUT, write_timeout_ms_) <= 0) return -1;
    ssize_t n;
    do {
      n = ::send(sock_, ptr, size, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    return n;
  }

  // cpp-httplib asks for both addresses on every request; a connection's never change, so
  // they are looked up once (two system calls and two inet_ntop a request, otherwise).
  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    if (!remote_.looked_up) remote_ = LookUp(::getpeername);
    ip = remote_.ip;
    port = remote_.port;
  }
  void get_local_ip_and_port(std::string& ip, int& port) const override {
    if (!local_.looked_up) local_ = LookUp(::getsockname);
    ip = local_.ip;
    port = local_.port;
  }
  socket_t socket() const override { return sock_; }

  // Waits until a request's first byte is here (buffered or on the socket): false after
  // `timeout_ms`, when the peer closed, or when `stop()` says the server is stopping.
  template <typename Stop>
  bool WaitForData(int timeout_ms, Stop stop) {
    if (begin_ < end_) return true;
    const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
    while (!stop()) {
      const int r = PollOne(sock_, POLLIN, std::min(50, MillisUntil(deadline)));
      if (r > 0) return true;
      if (r < 0 || Clock::now() >= deadline) return false;
    }
    return false;
  }

  // Reads until the buffered bytes hold a whole request head (or a reason to refuse it).
  // `*timed_out` / `*closed` tell why an incomplete result came back.
  HeadResult ReadHead(const FramingLimits& limits, int timeout_ms, bool* timed_out, bool* closed) {
    *timed_out = *closed = false;
    const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
    size_t scanned = 0;
    while (true) {
      HeadResult head = ParseRequestHead(Buffered(), limits, scanned);
      if (head.kind != HeadResult::Kind::kIncomplete) return head;
      scanned = end_ - begin_;
      if (end_ == buffer_.size()) {  // make room: the head must be contiguous
        std::memmove(buffer_.data(), buffer_.data() + begin_, end_ - begin_);
        end_ -= begin_;
        begin_ = 0;
      }
      const int r = PollOne(sock_, POLLIN, MillisUntil(deadline));
      if (r == 0) {
        *timed_out = true;
        return head;
      }
      const ssize_t n = r < 0 ? -1 : Recv(buffer_.data() + end_, buffer_.size() - end_);
      if (n <= 0) {
        *closed = true;
        return head;
      }
      end_ += static_cast<size_t>(n);
    }
  }

  std::string_view Buffered() const { return {buffer_.data() + begin_, end_ - begin_}; }
  void Skip(size_t n) { begin_ += std::min(n, end_ - begin_); }
  // Bytes handed out by read() since the last ResetConsumed().
  uint64_t consumed() const { return consumed_; }
  void ResetConsumed() { consumed_ = 0; }

  bool WriteAll(std::string_view bytes) {
    while (!bytes.empty()) {
      const ssize_t n = write(bytes.data(), bytes.size());
      if (n <= 0) return false;
      bytes.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }

  // Closing a socket with unread bytes makes the kernel send a reset, which can destroy the
  // response in flight: stop writing, then read and drop what the client still sends, for a
  // short while, so that it reads the answer first.
  void LingeringClose() {
    ::shutdown(sock_, SHUT_WR);
    const auto deadline = Clock::now() + std::chrono::milliseconds(500);
    size_t dropped = 0;
    char sink[16384];
    while (dropped < (size_t{4} << 20) && PollOne(sock_, POLLIN, MillisUntil(deadline)) > 0) {
      const ssize_t n = Recv(sink, sizeof sink);
      if (n <= 0) break;
      dropped += static_cast<size_t>(n);
    }
  }

 private:
  ssize_t Recv(char* into, size_t size) {
    ssize_t n;
    do {
      n = ::recv(sock_, into, size, 0);
    } while (n < 0 && errno == EINTR);
    return n;
  }

  struct Address {
    bool looked_up = false;
    std::string ip;
    int port = 0;
  };
  Address LookUp(int (*name_of)(int, sockaddr*, socklen_t*)) const {
    Address address;
    address.looked_up = true;
    sockaddr_storage addr{};
    socklen_t len = sizeof addr;
    if (name_of(sock_, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
      AddressOf(addr, address.ip, address.port);
    }
    return address;
  }

  int sock_;
  mutable Address remote_, local_;
  std::vector<char> buffer_;
  size_t begin_ = 0, end_ = 0;
  uint64_t consumed_ = 0;
  int read_timeout_ms_;
  int write_timeout_ms_;
};

std::string RejectionResponse(int status, const std::string& body) {
  char head[256];
  std::snprintf(head, sizeof head,
                "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                "Connection: close\r\n\r\n",
                status, HttpReasonPhrase(status), body.size());
  return head + body;
}

int ToMillis(time_t sec, time_t usec) {
  const int64_t ms = static_cast<int64_t>(sec) * 1000 + static_cast<int64_t>(usec) / 1000;
  return static_cast<int>(std::clamp<int64_t>(ms, 1, 24 * 3600 * 1000));
}

}  // namespace

HttpTransport::HttpTransport(FramingLimits limits, RejectionBody body, RejectionObserver observer)
    : limits_(limits), rejection_body_(std::move(body)), observer_(std::move(observer)) {
  set_socket_options([](socket_t sock) { ListenSocketOptions(sock); });
}

void HttpTransport::CloseAfterResponse() { t_close_after_response = true; }

void HttpTransport::ListenSocketOptions(int sock) {
  int yes = 1;
  ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
}

bool HttpTransport::process_and_close_socket(socket_t sock) {
  ConnectionStream stream(sock, limits_.max_head_bytes + 16 * 1024,
                          ToMillis(read_timeout_sec_, read_timeout_usec_),
                          ToMillis(write_timeout_sec_, write_timeout_usec_));
  const auto stopping = [this] { return svr_sock_ == INVALID_SOCKET; };
  const int keep_alive_ms = ToMillis(keep_alive_timeout_sec_, 0);
  const int head_timeout_ms = ToMillis(read_timeout_sec_, read_timeout_usec_);
  bool ok = true;
  bool linger = false;
  for (size_t left = keep_alive_max_count_; left > 0 && !stopping(); --left) {
    if (!stream.WaitForData(keep_alive_ms, stopping)) break;
    bool timed_out = false, closed = false;
    HeadResult head = stream.ReadHead(limits_, head_timeout_ms, &timed_out, &closed);
    if (head.kind == HeadResult::Kind::kIncomplete) {
      if (timed_out && !stream.Buffered().empty()) {
        head.kind = HeadResult::Kind::kRejected;
        head.http_status = 408;
        head.reason = "the request head did not arrive within the read timeout";
      } else {
        break;  // the client went away, or sent nothing more
      }
    }
    if (head.kind == HeadResult::Kind::kRejected) {
      const std::string body = rejection_body_(head.http_status, head.reason, head.head.target);
      if (observer_) observer_(head.http_status, head.head.method, head.head.target);
      stream.WriteAll(RejectionResponse(head.http_status, body));
      linger = true;
      break;
    }
    stream.Skip(head.head.leading_blank_bytes);
    stream.ResetConsumed();
    const uint64_t expected =
        head.head.head_bytes + (head.head.content_length ? *head.head.content_length : 0);
    t_close_after_response = false;
    bool connection_closed = false;
    ok = process_request(stream, /*close_connection=*/left == 1 || !head.head.keep_alive,
                         connection_closed, nullptr);
    if (!ok || connection_closed || !head.head.keep_alive) break;
    // A body not read to its end (refused before reading) would be parsed as the next
    // request: this connection is done.
    if (t_close_after_response || (!head.head.chunked && stream.consumed() < expected)) {
      linger = true;
      break;
    }
  }
  if (linger) stream.LingeringClose();
  ::shutdown(sock, SHUT_RDWR);
  ::close(sock);
  return ok;
}

}  // namespace kchain::gateway
