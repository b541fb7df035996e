// HTTP/1.1 framing: the pure head parser (gateway/http/http_framing.h), and the transport around
// cpp-httplib against a real gateway over raw sockets: pipelining, lengths that lie or
// conflict, oversized heads and bodies, a busy port.
#include "gateway/http/http_framing.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>

#include "gateway_test_util.h"

namespace kchain::gateway::testing {
namespace {

using Clock = std::chrono::steady_clock;

HeadResult Parse(std::string_view text, FramingLimits limits = {}) {
  return ParseRequestHead(text, limits);
}

void ExpectRejected(std::string_view text, int status, std::string_view fragment,
                    FramingLimits limits = {}) {
  const HeadResult r = Parse(text, limits);
  ASSERT_EQ(r.kind, HeadResult::Kind::kRejected) << text;
  EXPECT_EQ(r.http_status, status) << text;
  EXPECT_NE(r.reason.find(fragment), std::string::npos) << r.reason;
}

TEST(HttpFraming, AWellFormedHeadIsParsed) {
  const std::string text =
      "POST /v1/functions/f/invoke HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n"
      "Content-Type: application/octet-stream\r\n\r\nbody follows";
  const HeadResult r = Parse(text);
  ASSERT_EQ(r.kind, HeadResult::Kind::kComplete) << r.reason;
  EXPECT_EQ(r.head.method, "POST");
  EXPECT_EQ(r.head.target, "/v1/functions/f/invoke");
  EXPECT_EQ(r.head.content_length, 12u);
  EXPECT_FALSE(r.head.chunked);
  EXPECT_TRUE(r.head.keep_alive);
  EXPECT_EQ(r.head.head_bytes, text.size() - 12);
}

TEST(HttpFraming, IncompleteHeadsAskForMore) {
  EXPECT_EQ(Parse("GET / HTTP/1.1\r\nHost: x\r\n").kind, HeadResult::Kind::kIncomplete);
  EXPECT_EQ(Parse("").kind, HeadResult::Kind::kIncomplete);
  // Scanning from where the last search stopped finds the same end.
  const std::string text = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  for (size_t from = 0; from <= text.size(); ++from) {
    EXPECT_EQ(ParseRequestHead(text, {}, from).kind, HeadResult::Kind::kComplete) << from;
  }
}

TEST(HttpFraming, LeadingEmptyLinesAreSkipped) {
  const HeadResult r = Parse("\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_EQ(r.kind, HeadResult::Kind::kComplete) << r.reason;
  EXPECT_EQ(r.head.leading_blank_bytes, 4u);
  EXPECT_EQ(r.head.target, "/healthz");
}

TEST(HttpFraming, ConnectionAndVersionDecideKeepAlive) {
  EXPECT_FALSE(Parse("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").head.keep_alive);
  EXPECT_FALSE(Parse("GET / HTTP/1.0\r\n\r\n").head.keep_alive);
  EXPECT_TRUE(Parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").head.keep_alive);
  EXPECT_TRUE(Parse("GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade, keep-alive\r\n\r\n")
                  .head.keep_alive);
}

TEST(HttpFraming, LengthsThatLieOrConflictAreRefused) {
  ExpectRejected("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
                 400, "disagree");
  ExpectRejected("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 12abc\r\n\r\n", 400,
                 "not a decimal");
  ExpectRejected("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400, "not a decimal");
  ExpectRejected("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: \r\n\r\n", 400, "not a decimal");
  ExpectRejected("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\n", 400,
                 "not a decimal");
  ExpectRejected("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n", 400,
                 "not a decimal");
  ExpectRejected(
      "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400,
      "both Content-Length and Transfer-Encoding");
  ExpectRejected("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501,
                 "'gzip'");
  ExpectRejected("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 400,
                 "chunked must be the last");
  ExpectRejected("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400, "HTTP/1.0");
  // Identical repeats are one length.
  const HeadResult same =
      Parse("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\n");
  ASSERT_EQ(same.kind, HeadResult::Kind::kComplete) << same.reason;
  EXPECT_EQ(same.head.content_length, 5u);
}

TEST(HttpFraming, BodiesOverTheLimitAreRefusedFromTheHeader) {
  FramingLimits limits;
  limits.max_body_bytes = 1000;
  ExpectRejected("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000000\r\n\r\n", 413,
                 "larger than the server's limit", limits);
  EXPECT_EQ(Parse("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n", limits).kind,
            HeadResult::Kind::kComplete);
}

TEST(HttpFraming, MalformedLinesAreRefused) {
  ExpectRejected("GET / HTTP/1.1\nHost: x\r\n\r\n", 400, "bare LF");
  ExpectRejected("GET / HTTP/1.1\r\nHost: x\n\n", 400, "bare LF");
  ExpectRejected("GET / HTTP/1.1\r\nHost: x\r\nX: a\rb\r\n\r\n", 400, "control character");
  ExpectRejected("GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 400, "whitespace");
  ExpectRejected("GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400, "not a token");
  ExpectRejected("GET / HTTP/1.1\r\nHost\r\n\r\n", 400, "no colon");
  ExpectRejected("GET / HTTP/1.1\r\nHost: x\r\nX: \x01\r\n\r\n", 400, "control character");
  ExpectRejected("GET  / HTTP/1.1\r\nHost: x\r\n\r\n", 400, "request line");
  ExpectRejected("GET /a b HTTP/1.1\r\nHost: x\r\n\r\n", 400, "request line");
  ExpectRejected("GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505, "2.0");
  ExpectRejected("GET / FTP/1.1\r\nHost: x\r\n\r\n", 400, "HTTP version");
  ExpectRejected("G(T / HTTP/1.1\r\nHost: x\r\n\r\n", 400, "method");
  ExpectRejected("GET /\x7f HTTP/1.1\r\nHost: x\r\n\r\n", 400, "percent-encoded");
  ExpectRejected("GET / HTTP/1.1\r\n\r\n", 400, "needs a Host");
  ExpectRejected("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, "more than one Host");
}

TEST(HttpFraming, HeadsBeyondTheLimitsAreRefused) {
  FramingLimits limits;
  std::string many = "GET / HTTP/1.1\r\nHost: x\r\n";
  for (int i = 0; i < 200; ++i) many += "X-" + std::to_string(i) + ": y\r\n";
  ExpectRejected(many + "\r\n", 431, "more than 100 header fields", limits);
  ExpectRejected("GET / HTTP/1.1\r\nHost: x\r\nX: " + std::string(9000, 'a') + "\r\n\r\n", 431,
                 "longer than");
  ExpectRejected("GET /" + std::string(9000, 'a') + " HTTP/1.1\r\nHost: x\r\n\r\n", 414,
                 "request line");
  // No blank line within the head limit: refused without waiting for more.
  ExpectRejected("GET / HTTP/1.1\r\nHost: x\r\n" + std::string(70000, 'a'), 431, "request head");
}

// --- Against a real gateway, over raw sockets ---

int Connect(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  return fd;
}

bool SendAll(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n <= 0) return false;
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

// Reads until the peer closes or `timeout` passes; `closed` says which.
std::string ReadUntilClosed(int fd, std::chrono::milliseconds timeout, bool* closed) {
  std::string out;
  const auto deadline = Clock::now() + timeout;
  *closed = false;
  char buf[65536];
  while (Clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    const int left = static_cast<int>(
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count());
    if (::poll(&p, 1, std::max(left, 1)) <= 0) continue;
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) {
      *closed = true;
      break;
    }
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

// Status lines ("HTTP/1.1 NNN ") in what came back.
size_t CountResponses(const std::string& bytes) {
  size_t n = 0;
  for (size_t at = bytes.find("HTTP/1.1 "); at != std::string::npos;
       at = bytes.find("HTTP/1.1 ", at + 1)) {
    if (at + 12 < bytes.size() && std::isdigit(static_cast<unsigned char>(bytes[at + 9])) &&
        std::isdigit(static_cast<unsigned char>(bytes[at + 10])) &&
        std::isdigit(static_cast<unsigned char>(bytes[at + 11])) && bytes[at + 12] == ' ') {
      ++n;
    }
  }
  return n;
}

class HttpTransportTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { gateway_ = new TestGateway({}, "", /*max_body=*/1 << 20); }
  static void TearDownTestSuite() {
    delete gateway_;
    gateway_ = nullptr;
  }
  // Sends `bytes` on a new connection; returns what came back within `timeout`.
  static std::string Exchange(std::string_view bytes, bool* closed,
                              std::chrono::milliseconds timeout = std::chrono::milliseconds(3000),
                              std::chrono::milliseconds* elapsed = nullptr) {
    const int fd = Connect(gateway_->port());
    const auto start = Clock::now();
    EXPECT_TRUE(SendAll(fd, bytes));
    std::string out = ReadUntilClosed(fd, timeout, closed);
    if (elapsed != nullptr) {
      *elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
    }
    ::close(fd);
    return out;
  }
  static TestGateway* gateway_;
};
TestGateway* HttpTransportTest::gateway_ = nullptr;

TEST_F(HttpTransportTest, PipelinedRequestsAreEachAnswered) {
  const std::string one = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
  const int fd = Connect(gateway_->port());
  ASSERT_TRUE(SendAll(fd, one + one + one));  // one segment
  bool closed = false;
  const std::string out = ReadUntilClosed(fd, std::chrono::milliseconds(1500), &closed);
  ::close(fd);
  EXPECT_EQ(CountResponses(out), 3u) << out;
  EXPECT_FALSE(closed);  // keep-alive: still open afterwards
  // The last of them may ask to close: every response before it, then the close.
  const std::string last = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  const std::string two = Exchange(one + last, &closed);
  EXPECT_EQ(CountResponses(two), 2u) << two;
  EXPECT_TRUE(closed);
}

TEST_F(HttpTransportTest, PipelinedPostsWithBodiesAreEachAnswered) {
  auto client = gateway_->Client();
  ASSERT_EQ(DeployMultipart(*client, "copy", TestManifest({"copy_input_to_out"}, 4),
                            TestLibraryBytes(), "")
                ->status,
            201);
  std::string body(16, '\x01');
  const std::string req =
      "POST /v1/functions/copy/invoke HTTP/1.1\r\nHost: x\r\nContent-Type: "
      "application/octet-stream\r\nContent-Length: 16\r\n\r\n" +
      body;
  const int fd = Connect(gateway_->port());
  ASSERT_TRUE(SendAll(fd, req + req + req + req));
  bool closed = false;
  const std::string out = ReadUntilClosed(fd, std::chrono::milliseconds(1500), &closed);
  ::close(fd);
  EXPECT_EQ(CountResponses(out), 4u) << out.substr(0, 400);
  EXPECT_EQ(out.find("HTTP/1.1 200"), 0u);
}

TEST_F(HttpTransportTest, AnOversizedBodyIsRefusedFromItsHeaderAtOnce) {
  bool closed = false;
  std::chrono::milliseconds elapsed{};
  const std::string out = Exchange(
      "POST /v1/uploads HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
      "Content-Length: 2000000000\r\n\r\n",
      &closed, std::chrono::milliseconds(5000), &elapsed);
  EXPECT_EQ(out.rfind("HTTP/1.1 413", 0), 0u) << out;
  EXPECT_NE(out.find("payload_too_large"), std::string::npos) << out;
  EXPECT_TRUE(closed);
  EXPECT_LT(elapsed.count(), 2000) << "answered only after " << elapsed.count() << " ms";
}

TEST_F(HttpTransportTest, BadLengthsAreRefusedAndTheConnectionClosed) {
  for (const char* head :
       {"POST /v1/uploads HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
        "POST /v1/uploads HTTP/1.1\r\nHost: x\r\nContent-Length: 12abc\r\n\r\nabc",
        "POST /v1/uploads HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: "
        "30\r\n\r\nabc",
        "POST /v1/uploads HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: "
        "chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        "GET /healthz HTTP/1.1\nHost: x\n\n"}) {
    SCOPED_TRACE(head);
    bool closed = false;
    std::chrono::milliseconds elapsed{};
    const std::string out = Exchange(head, &closed, std::chrono::milliseconds(3000), &elapsed);
    EXPECT_EQ(out.rfind("HTTP/1.1 400", 0), 0u) << out;
    EXPECT_NE(out.find("\"invalid_argument\""), std::string::npos) << out;
    EXPECT_EQ(CountResponses(out), 1u);
    EXPECT_TRUE(closed);
    EXPECT_LT(elapsed.count(), 2000);
  }
}

TEST_F(HttpTransportTest, AHugeHeaderBlockIsRefusedWithoutReadingIt) {
  const int fd = Connect(gateway_->port());
  std::string head = "GET /healthz HTTP/1.1\r\nHost: x\r\n";
  const std::string line = "X-Filler: " + std::string(100, 'f') + "\r\n";
  while (head.size() < (1 << 20)) head += line;
  // The server answers and closes after 64 KiB; the rest of what we send may be refused.
  (void)SendAll(fd, head);
  bool closed = false;
  const std::string out = ReadUntilClosed(fd, std::chrono::milliseconds(3000), &closed);
  ::close(fd);
  EXPECT_EQ(out.rfind("HTTP/1.1 431", 0), 0u) << out.substr(0, 300);
  EXPECT_TRUE(closed);
  auto client = gateway_->Client();
  EXPECT_EQ(client->Get("/healthz")->status, 200);
}

TEST_F(HttpTransportTest, V2PathsGetTheV2ErrorShape) {
  bool closed = false;
  const std::string out =
      Exchange("POST /v2/models/x/infer HTTP/1.1\r\nHost: x\r\nContent-Length: x\r\n\r\n", &closed);
  EXPECT_EQ(out.rfind("HTTP/1.1 400", 0), 0u) << out;
  EXPECT_NE(out.find("{\"error\":\"Content-Length"), std::string::npos) << out;
}

TEST_F(HttpTransportTest, ABodyRefusedBeforeItWasReadClosesTheConnection) {
  // No Content-Type on an invoke: refused before the body is read (411 path is similar).
  // Whatever the body holds must never be taken for a second request.
  const std::string smuggled = "GET /v1/functions HTTP/1.1\r\nHost: x\r\n\r\n";
  const std::string req =
      "POST /v1/functions/ghost/park HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer nope\r\n"
      "Content-Length: " +
      std::to_string(smuggled.size()) + "\r\n\r\n" + smuggled;
  bool closed = false;
  const std::string out = Exchange(req, &closed);
  EXPECT_EQ(CountResponses(out), 1u) << out;
}

TEST(HttpTransport, ASecondServerOnABusyPortFailsToStart) {
  TestGateway first;
  const int port = first.port();
  auto second_service_dir = FreshDir("second");
  auto device = Device::Open(DeviceKind::kHost);
  ASSERT_TRUE(device.ok());
  ServiceOptions options;
  options.data_dir = second_service_dir;
  auto service = Service::Create(options, MakeInProcessExecutor(*device, {}), nullptr);
  ASSERT_TRUE(service.ok());
  Logger logger(LogLevel::kError);
  HttpOptions http;
  http.port = port;
  HttpServer second(service->get(), &logger, http);
  auto bound = second.Bind();
  EXPECT_FALSE(bound.ok()) << "bound port " << port << " a second time";
  if (!bound.ok()) {
    EXPECT_EQ(bound.status().code(), StatusCode::kUnavailable);
    EXPECT_NE(bound.status().message().find(std::to_string(port)), std::string::npos);
  }
}

}  // namespace
}  // namespace kchain::gateway::testing
