// The gateway side of the worker protocol (gateway/worker/protocol.h) against records a
// hostile worker can send: regressions found by tests/fuzz/worker_message_fuzzer.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "gateway/worker/protocol.h"

namespace kchain::worker {
namespace {

// The lowest free descriptor: it moves up when one leaks.
int LowestFreeFd() {
  const int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  ::close(fd);
  return fd;
}

class WorkerProtocol : public ::testing::Test {
 protected:
  void SetUp() override {
    int fds[2];
    ASSERT_TRUE(MakeSocketPair(fds).ok());
    worker_ = fds[0];
    channel_ = std::make_unique<Channel>(fds[1], /*never_block_on_send=*/true);
    ASSERT_EQ(::pipe2(pipe_, O_CLOEXEC), 0);
  }
  void TearDown() override {
    channel_.reset();
    for (int fd : {worker_, pipe_[0], pipe_[1]}) ::close(fd);
  }

  // Sends `record` as the worker would, with `count` copies of a pipe's end attached.
  void SendRecord(const std::string& record, int count) {
    iovec iov{const_cast<char*>(record.data()), record.size()};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 4)];
    const std::vector<int> fds(static_cast<size_t>(count), pipe_[0]);
    if (count > 0) {
      msg.msg_control = control;
      msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
      cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
      cmsg->cmsg_level = SOL_SOCKET;
      cmsg->cmsg_type = SCM_RIGHTS;
      cmsg->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
      std::memcpy(CMSG_DATA(cmsg), fds.data(), sizeof(int) * fds.size());
    }
    ASSERT_GE(::sendmsg(worker_, &msg, MSG_NOSIGNAL), 0) << std::strerror(errno);
  }

  static std::string Record(MessageType type, std::string body, uint32_t declared) {
    Header header{};
    header.type = static_cast<uint32_t>(type);
    header.body_bytes = declared;
    return std::string(reinterpret_cast<const char*>(&header), sizeof header) + body;
  }

  int worker_ = -1;
  int pipe_[2] = {-1, -1};
  std::unique_ptr<Channel> channel_;
};

TEST_F(WorkerProtocol, DescriptorsOfAnEmptyRecordAreClosed) {
  // An empty SOCK_SEQPACKET record reads like end-of-file; its descriptors used to stay open.
  const int before = LowestFreeFd();
  SendRecord("", 4);
  std::vector<int> fds;
  EXPECT_EQ(channel_->Receive(0, &fds).code(), StatusCode::kUnavailable);
  EXPECT_TRUE(fds.empty());
  SendRecord("", 3);
  EXPECT_EQ(channel_->Receive(0).code(), StatusCode::kUnavailable);
  EXPECT_EQ(LowestFreeFd(), before);
}

TEST_F(WorkerProtocol, DescriptorsOfAMalformedRecordAreClosed) {
  const int before = LowestFreeFd();
  SendRecord(Record(MessageType::kReady, "abc", 99), 2);  // body_bytes lies
  std::vector<int> fds;
  EXPECT_EQ(channel_->Receive(0, &fds).code(), StatusCode::kInternal);
  EXPECT_TRUE(fds.empty());
  EXPECT_EQ(LowestFreeFd(), before);
}

TEST_F(WorkerProtocol, DescriptorsOfAGoodMessageGoToTheCaller) {
  SendRecord(Record(MessageType::kExit, "", 0), 2);
  std::vector<int> fds;
  ASSERT_TRUE(channel_->Receive(0, &fds).ok());
  EXPECT_EQ(channel_->type(), MessageType::kExit);
  ASSERT_EQ(fds.size(), 2u);
  for (int fd : fds) {
    EXPECT_GE(::fcntl(fd, F_GETFD), 0);
    ::close(fd);
  }
}

TEST_F(WorkerProtocol, TryReceiveRefusesARecordLongerThanAMessage) {
  // The first kMaxMessageBytes of a longer record, whose header declares just those, used to
  // pass as a whole message (Receive refused it).
  const std::string record =
      Record(MessageType::kError, std::string(kMaxMessageBytes - sizeof(Header) + 1, 'x'),
             kMaxMessageBytes - sizeof(Header));
  SendRecord(record, 0);
  EXPECT_EQ(channel_->TryReceive().code(), StatusCode::kInternal);
  SendRecord(record, 0);
  EXPECT_EQ(channel_->Receive(0).code(), StatusCode::kInternal);
  // A message of exactly the largest size still passes both ways.
  const std::string largest =
      Record(MessageType::kError, std::string(kMaxMessageBytes - sizeof(Header), 'y'),
             kMaxMessageBytes - sizeof(Header));
  SendRecord(largest, 0);
  EXPECT_TRUE(channel_->TryReceive().ok());
  EXPECT_EQ(channel_->body_bytes(), kMaxMessageBytes - sizeof(Header));
  SendRecord(largest, 0);
  EXPECT_TRUE(channel_->Receive(0).ok());
  EXPECT_EQ(channel_->TryReceive().code(), StatusCode::kDeadlineExceeded);
}

// A worker's status code is a claim: a forged reply on a scribbled control page once passed
// "internal" through as a 500 (CI, 2026-12-03). Codes that blame the client or the gateway
// become the function's failure; the worker's own failures pass as they are.
TEST(WorkerFailure, OnlyCodesAWorkerCanOwnPassThrough) {
  const auto raw = [](StatusCode code) { return static_cast<uint32_t>(code); };
  for (const StatusCode code : {StatusCode::kInternal, StatusCode::kUnauthenticated,
                                StatusCode::kAlreadyExists, StatusCode::kInsufficientStorage}) {
    const Status run = WorkerFailure(raw(code), "text", WorkerStep::kRun);
    EXPECT_EQ(run.code(), StatusCode::kKernelError) << StatusCodeName(code);
    EXPECT_NE(run.message().find(std::string(StatusCodeName(code))), std::string::npos)
        << run.message();
    EXPECT_EQ(WorkerFailure(raw(code), "text", WorkerStep::kSetUp).code(),
              StatusCode::kKernelError);
  }
  // A run's input was checked before the worker saw it: a 4xx from a run is not believed.
  EXPECT_EQ(WorkerFailure(raw(StatusCode::kInvalidArgument), "x", WorkerStep::kRun).code(),
            StatusCode::kKernelError);
  EXPECT_EQ(WorkerFailure(raw(StatusCode::kInvalidArgument), "x", WorkerStep::kSetUp).code(),
            StatusCode::kInvalidArgument);
  for (const StatusCode code : {StatusCode::kKernelError, StatusCode::kUnavailable,
                                StatusCode::kDeadlineExceeded, StatusCode::kResourceExhausted}) {
    const Status run = WorkerFailure(raw(code), "text", WorkerStep::kRun);
    EXPECT_EQ(run.code(), code);
    EXPECT_EQ(run.message(), "text");
  }
  for (const uint32_t bad : {0u, raw(StatusCode::kInternal) + 1, 0xffffffffu}) {
    const Status failure = WorkerFailure(bad, "text", WorkerStep::kRun);
    EXPECT_EQ(failure.code(), StatusCode::kKernelError);
    EXPECT_NE(failure.message().find("unknown status code " + std::to_string(bad)),
              std::string::npos)
        << failure.message();
  }
}

}  // namespace
}  // namespace kchain::worker
