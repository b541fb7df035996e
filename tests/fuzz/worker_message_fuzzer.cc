// Fuzzes the gateway's decoders for what a worker writes (gateway/worker/protocol.h): a
// worker runs tenant code, so its socket messages and its control page are hostile input.
//
// Input: a flags byte, then the message. The message goes as one SOCK_SEQPACKET record over a
// real socket pair into a Channel, which receives it; then DecodeReply runs for every message
// type with that type's body (as the reply to the request the header names, to any request,
// and to another one), and CheckReady on what it copied. The same bytes also fill a control
// page (ControlPageText), a RanBody (CheckRan) and a ReadyBody (CheckReady) directly. Flags:
//   0x01  set the header's body_bytes to match the message (else it is as the input says)
//   0x02  attach file descriptors (SCM_RIGHTS): 1, 3, 5 or 7 of them by bits 6-7
//   0x04  take received descriptors (else the channel closes them)
//   0x08  TryReceive instead of Receive
//   0x10  pad the message with zeros to kMaxMessageBytes; with 0x20 one byte more
// Beyond not crashing: every decoded text is bounded and clean, errors are never kOk, a
// checked ReadyBody's strings are terminated, and no descriptor leaks.
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "gateway/worker/protocol.h"

namespace {

namespace w = kchain::worker;

[[noreturn]] void Fail(const char* what, const std::string& detail = "") {
  std::fprintf(stderr, "worker_message_fuzzer: %s\n%s\n", what, detail.c_str());
  std::abort();
}

// What CleanWorkerText promises: bounded, no NUL, no control characters but tab and newline.
bool Clean(std::string_view s, size_t limit = w::kMaxWorkerTextBytes) {
  if (s.size() > limit) return false;
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if ((u < 0x20 && c != '\n' && c != '\t') || u == 0x7f) return false;
  }
  return true;
}

void CheckClean(std::string_view s, const char* what, size_t limit = w::kMaxWorkerTextBytes) {
  if (!Clean(s, limit)) Fail(what, std::string(s.substr(0, 200)));
}

struct Sockets {
  int gateway_end = -1;  // owned by the channel
  int worker_end = -1;
  int pipe_fds[2] = {-1, -1};  // something to pass as SCM_RIGHTS
  w::Channel* channel = nullptr;
};

Sockets& Get() {
  static Sockets* s = [] {
    auto* s = new Sockets;  // never destroyed: used until the process exits
    int fds[2];
    if (!w::MakeSocketPair(fds).ok()) Fail("socketpair failed");
    s->worker_end = fds[0];
    s->gateway_end = fds[1];
    if (::pipe2(s->pipe_fds, O_CLOEXEC) != 0) Fail("pipe2 failed");
    s->channel = new w::Channel(s->gateway_end, /*never_block_on_send=*/true);
    return s;
  }();
  return *s;
}

// The lowest free descriptor: it moves up when one leaks.
int LowestFreeFd(int any_open) {
  const int fd = ::fcntl(any_open, F_DUPFD_CLOEXEC, 0);
  ::close(fd);
  return fd;
}

void SendRaw(const Sockets& s, std::string_view message, int fd_count) {
  iovec iov{const_cast<char*>(message.data()), message.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 8)];
  if (fd_count > 0) {
    std::vector<int> fds(static_cast<size_t>(fd_count), s.pipe_fds[0]);
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(cmsg), fds.data(), sizeof(int) * fds.size());
  }
  if (::sendmsg(s.worker_end, &msg, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
    Fail("sendmsg failed", std::strerror(errno));
  }
}

void CheckReadyBody(w::ReadyBody* ready) {
  if (w::CheckReady(ready).ok() &&
      (strnlen(ready->device_name, sizeof ready->device_name) == sizeof ready->device_name ||
       strnlen(ready->sandbox_notes, sizeof ready->sandbox_notes) == sizeof ready->sandbox_notes)) {
    Fail("CheckReady accepted a ReadyBody with an unterminated string");
  }
}

void CheckRanBody(const w::RanBody& ran) {
  if (w::CheckRan(ran).ok()) {
    if (ran.status_code > static_cast<uint32_t>(kchain::StatusCode::kInternal) || ran.mode > 1 ||
        ran.broken > 1 || ran.op < 1 || ran.op > 4 || !(ran.total_us >= 0)) {
      Fail("CheckRan accepted a RanBody out of range");
    }
  }
}

// DecodeReply for `type` with its body `T` (NoBody: none), as the reply to `request_id`.
template <typename T>
void Decode(const w::Channel& channel, w::MessageType type, uint64_t request_id) {
  T body{};
  constexpr size_t kBytes = std::is_empty_v<T> ? 0 : sizeof(T);
  const w::Reply reply =
      w::DecodeReply(channel, type, std::is_empty_v<T> ? nullptr : &body, kBytes, request_id);
  if (request_id != w::kAnyRequest && request_id != channel.request_id() &&
      reply.kind != w::Reply::Kind::kMalformed) {
    Fail("DecodeReply took the reply to another request");
  }
  switch (reply.kind) {
    case w::Reply::Kind::kExpected:
      if (channel.type() != type || channel.body_bytes() < kBytes) {
        Fail("DecodeReply accepted a message of the wrong type or size");
      }
      CheckClean(reply.text, "a reply's text is not clean");
      if constexpr (std::is_same_v<T, w::ReadyBody>) CheckReadyBody(&body);
      break;
    case w::Reply::Kind::kError:
      if (channel.type() != w::MessageType::kError || reply.status.ok()) {
        Fail("DecodeReply made an error of something else, or an error of kOk");
      }
      // The text, behind a note on an unknown code at most.
      CheckClean(reply.status.message(), "an error's text is not clean",
                 w::kMaxWorkerTextBytes + 80);
      break;
    case w::Reply::Kind::kMalformed:
      if (reply.status.ok()) Fail("a malformed reply with an ok status");
      break;
  }
}

struct NoBody {};

void DecodeAll(const w::Channel& channel) {
  using T = w::MessageType;
  for (uint64_t id : {channel.request_id(), w::kAnyRequest, channel.request_id() ^ 1}) {
    Decode<w::ReadyBody>(channel, T::kReady, id);
    Decode<w::LoadBody>(channel, T::kLoad, id);
    Decode<w::LoadedBody>(channel, T::kLoaded, id);
    Decode<w::UnloadBody>(channel, T::kUnload, id);
    Decode<NoBody>(channel, T::kUnloaded, id);
    Decode<w::CreateBody>(channel, T::kCreate, id);
    Decode<w::CreatedBody>(channel, T::kCreated, id);
    Decode<w::ErrorBody>(channel, T::kError, id);
    Decode<NoBody>(channel, T::kExit, id);
    Decode<NoBody>(channel, static_cast<T>(0), id);
    Decode<NoBody>(channel, static_cast<T>(static_cast<uint32_t>(T::kExit) + 1), id);
  }
  // The raw accessors the executor uses.
  for (size_t n : {size_t{0}, sizeof(w::RanBody), sizeof(w::ErrorBody), size_t{1} << 20}) {
    const std::string_view text = channel.text(n);
    if (text.size() > w::kMaxMessageBytes) Fail("Channel::text is larger than a message");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  Sockets& s = Get();
  const uint8_t flags = data[0];
  const std::string_view input(reinterpret_cast<const char*>(data + 1), size - 1);

  // Straight decoders, on the bytes as they are.
  CheckClean(w::CleanWorkerText(input), "CleanWorkerText left something unclean");
  for (const auto step : {w::WorkerStep::kSetUp, w::WorkerStep::kRun}) {
    const kchain::Status failure = w::WorkerFailure(
        size >= 5 ? data[1] | data[2] << 8 | data[3] << 16 | static_cast<uint32_t>(data[4]) << 24
                  : flags,
        std::string(input), step);
    if (failure.ok() || failure.code() == kchain::StatusCode::kInternal ||
        failure.code() == kchain::StatusCode::kUnauthenticated) {
      Fail("WorkerFailure passed on a code no worker may claim");
    }
  }
  {
    std::array<std::byte, w::kControlPageBytes> page{};
    std::memcpy(page.data() + w::kControlMessageOffset, input.data(),
                std::min(input.size(), page.size() - w::kControlMessageOffset));
    CheckClean(w::ControlPageText(page.data()), "ControlPageText is not clean");
    w::RanBody ran{};
    std::memcpy(&ran, input.data(), std::min(input.size(), sizeof ran));
    CheckRanBody(ran);
    w::ReadyBody ready{};
    std::memcpy(&ready, input.data(), std::min(input.size(), sizeof ready));
    CheckReadyBody(&ready);
  }

  // Through the socket.
  std::string message(input.substr(0, w::kMaxMessageBytes + 64));
  if (flags & 0x10) {
    message.resize(std::max(message.size(), w::kMaxMessageBytes + ((flags & 0x20) ? 1 : 0)));
  }
  if ((flags & 0x01) && message.size() >= sizeof(w::Header)) {
    const uint32_t body_bytes = static_cast<uint32_t>(message.size() - sizeof(w::Header));
    std::memcpy(message.data() + offsetof(w::Header, body_bytes), &body_bytes, sizeof body_bytes);
  }
  const int fd_count = (flags & 0x02) ? 1 + ((flags >> 6) & 3) * 2 : 0;
  const int lowest_before = LowestFreeFd(s.worker_end);
  SendRaw(s, message, fd_count);

  std::vector<int> received;
  const kchain::Status got = (flags & 0x08)   ? s.channel->TryReceive()
                             : (flags & 0x04) ? s.channel->Receive(0, &received)
                                              : s.channel->Receive(0);
  if (got.ok()) {
    if (s.channel->body_bytes() + sizeof(w::Header) != message.size()) {
      Fail("a received message's size differs from the one sent");
    }
    DecodeAll(*s.channel);
  }
  for (int fd : received) ::close(fd);
  if (LowestFreeFd(s.worker_end) != lowest_before) Fail("a received descriptor leaked");
  // One record was sent; none may be left for the next input.
  if (s.channel->TryReceive().code() != kchain::StatusCode::kDeadlineExceeded) {
    Fail("a message was left on the socket");
  }
  return 0;
}
