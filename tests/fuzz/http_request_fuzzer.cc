// Fuzzes the gateway's HTTP surface with raw request bytes: the framing check
// (gateway/http/http_framing.h) directly, then the real transport, cpp-httplib's request and
// multipart parsing, the routes, and the service behind them.
//
// On the first input a real gateway starts in this process: a Service over the in-process
// executor on the host device, a data directory of its own, and an HttpServer on a loopback
// port serving from a thread. When the CNN sample is built it is deployed as "mnist_cnn", so
// that invocations (v1 binary and JSON, v2 infer) run for real; the harness puts it back when
// an input deletes or unloads it. Each input is one TCP connection: the bytes are sent, the
// write side shut, and the answer read for up to 200 ms.
//
// Beyond not crashing: ParseRequestHead gives the same answer however the bytes are split
// into reads, the server never answers 500 (a handler that threw, or an internal error), and
// no request is still in flight seconds after its client has gone.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <thread>

#include "gateway/core/files.h"
#include "gateway/core/log.h"
#include "gateway/core/service.h"
#include "gateway/exec/executor.h"
#include "gateway/http/http_framing.h"
#include "gateway/http/http_server.h"
#include "kchain/device.h"
#include "kchain/manifest.h"

namespace {

namespace gw = kchain::gateway;
using Clock = std::chrono::steady_clock;

constexpr int kReadTimeoutMs = 200;
constexpr auto kStuckAfter = std::chrono::seconds(3);

[[noreturn]] void Fail(const char* what, const std::string& detail = "") {
  std::fprintf(stderr, "http_request_fuzzer: %s\n%s\n", what, detail.c_str());
  std::abort();
}

// KCHAIN_FUZZ_VERBOSE=1: print each response's status lines (to check seeds).
bool Verbose() {
  static const bool verbose = std::getenv("KCHAIN_FUZZ_VERBOSE") != nullptr;
  return verbose;
}

// --- The framing check on its own ---

bool SameHead(const gw::HeadResult& a, const gw::HeadResult& b) {
  if (a.kind != b.kind || a.http_status != b.http_status) return false;
  if (a.kind != gw::HeadResult::Kind::kComplete) return true;
  const gw::RequestHead &x = a.head, &y = b.head;
  return x.leading_blank_bytes == y.leading_blank_bytes && x.head_bytes == y.head_bytes &&
         x.method == y.method && x.target == y.target && x.http_1_0 == y.http_1_0 &&
         x.content_length == y.content_length && x.chunked == y.chunked &&
         x.keep_alive == y.keep_alive;
}

void CheckFraming(std::string_view bytes, const gw::FramingLimits& limits) {
  const gw::HeadResult whole = gw::ParseRequestHead(bytes, limits);
  if (whole.kind == gw::HeadResult::Kind::kComplete) {
    const gw::RequestHead& h = whole.head;
    if (h.leading_blank_bytes + h.head_bytes > bytes.size() ||
        (h.content_length && *h.content_length > limits.max_body_bytes)) {
      Fail("a complete head that does not fit its buffer or the body limit");
    }
  } else if (whole.kind == gw::HeadResult::Kind::kRejected &&
             (whole.http_status < 400 || whole.http_status > 599 || whole.reason.empty())) {
    Fail("a rejection without a 4xx/5xx status and a reason", whole.reason);
  }
  // The transport reads a head in pieces, rescanning from where the last read ended: the
  // answer must not depend on where the pieces were cut.
  for (size_t cut : {bytes.size() / 3, bytes.size() / 2, bytes.size() - bytes.size() / 8}) {
    const gw::HeadResult first = gw::ParseRequestHead(bytes.substr(0, cut), limits);
    const gw::HeadResult later =
        first.kind == gw::HeadResult::Kind::kIncomplete
            ? gw::ParseRequestHead(bytes, limits, cut)
            : first;  // the transport would act on the first answer; the whole must agree
    if (!SameHead(later, whole)) {
      Fail("ParseRequestHead depends on how the bytes were split",
           "cut at " + std::to_string(cut) + ": " + std::to_string(later.http_status) + " " +
               later.reason + " vs " + std::to_string(whole.http_status) + " " + whole.reason);
    }
  }
}

// --- The gateway ---

struct Gateway {
  gw::Logger logger{gw::LogLevel::kError};
  std::string data_dir;
  std::unique_ptr<gw::Service> service;
  std::unique_ptr<gw::HttpServer> server;
  int port = 0;
  std::string cnn_manifest, cnn_library, cnn_weights;  // empty without the sample
  uint64_t inputs = 0;
  std::atomic<bool> served{false};  // Serve() returned
};

std::string ReadOrDie(const char* path) {
  auto bytes = kchain::ReadFileToString(path);
  if (!bytes.ok()) Fail("cannot read a sample file", bytes.status().ToString());
  return std::move(*bytes);
}

const gw::FunctionKey kCnn{"default", "mnist_cnn"};

// Puts the CNN back in service when an input deleted or unloaded it (or a deploy replaced
// it with something else that failed: then it was never replaced).
void RestoreCnn(Gateway& g) {
  if (g.cnn_library.empty()) return;
  auto info = g.service->Describe(kCnn);
  if (info.ok() && info->load_error.empty() && !info->pool.unloaded) return;
  if (info.ok() && info->pool.unloaded) {
    (void)g.service->Load(kCnn);
    return;
  }
  auto deployed = g.service->Deploy(kCnn, g.cnn_manifest, gw::AsBytes(g.cnn_library),
                                    gw::AsBytes(g.cnn_weights));
  // kAlreadyExists: a deploy or delete from an input is still running; next time.
  if (!deployed.ok() && deployed.status().code() != kchain::StatusCode::kAlreadyExists) {
    Fail("cannot deploy the CNN sample", deployed.status().ToString());
  }
}

Gateway& Get() {
  static Gateway* gateway = [] {
    auto* g = new Gateway;  // never destroyed: server threads outlive any static destructor
    std::error_code ec;
    // In memory where there is /dev/shm: deploys and uploads fsync.
    std::filesystem::path root = std::filesystem::temp_directory_path();
    if (const char* env = std::getenv("KCHAIN_FUZZ_DATA_DIR")) {
      root = env;
    } else if (std::filesystem::is_directory("/dev/shm", ec)) {
      root = "/dev/shm";
    }
    g->data_dir = (root / ("kchain_http_fuzzer_" + std::to_string(::getpid()))).string();
    std::filesystem::remove_all(g->data_dir, ec);
    std::filesystem::create_directories(g->data_dir);
    static const std::string dir = g->data_dir;
    std::atexit([] {
      std::error_code ignored;
      std::filesystem::remove_all(dir, ignored);
    });

    auto device = kchain::Device::Open(kchain::DeviceKind::kHost);
    if (!device.ok()) Fail("cannot open the host device", device.status().ToString());
    gw::ServiceOptions options;
    options.data_dir = g->data_dir;
    // Shorter than libFuzzer's -timeout, so that a wait that never ends shows as a 504.
    options.scheduler.invoke_timeout = std::chrono::milliseconds(2000);
    auto service =
        gw::Service::Create(options, gw::MakeInProcessExecutor(*device, kchain::InstanceOptions{}),
                            [](const std::string&) {});
    if (!service.ok()) Fail("cannot create the service", service.status().ToString());
    g->service = std::move(*service);

    gw::HttpOptions http;
    http.port = 0;
    http.threads = 4;
    http.max_body = uint64_t{1} << 20;
    http.keep_alive_timeout_s = 1;
    http.read_timeout_s = 1;
    g->server = std::make_unique<gw::HttpServer>(g->service.get(), &g->logger, http);
    auto port = g->server->Bind();
    if (!port.ok()) Fail("cannot bind", port.status().ToString());
    g->port = *port;
    std::thread([g] {
      g->server->Serve();
      g->served = true;  // only Stop() should end it, and nothing here calls Stop()
    }).detach();

#ifdef KCHAIN_FUZZ_CNN_LIBRARY
    g->cnn_manifest = ReadOrDie(KCHAIN_FUZZ_CNN_MANIFEST);
    g->cnn_library = ReadOrDie(KCHAIN_FUZZ_CNN_LIBRARY);
    g->cnn_weights = ReadOrDie(KCHAIN_FUZZ_CNN_WEIGHTS);
    RestoreCnn(*g);
#endif
    return g;
  }();
  return *gateway;
}

// Connects to the gateway. libFuzzer's SIGALRM (its -timeout clock) interrupts system calls:
// an interrupted connect() goes on in the background, so wait for it to finish.
int Connect(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) Fail("socket() failed", std::strerror(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int error = 0;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) error = errno;
  if (error == EINTR) {
    pollfd p{fd, POLLOUT, 0};
    while (::poll(&p, 1, 5000) < 0 && errno == EINTR) {
    }
    socklen_t len = sizeof error;
    if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len) != 0) error = errno;
  }
  if (error != 0) {
    ::close(fd);
    Fail("cannot connect to the gateway",
         std::string(std::strerror(error)) + (Get().served ? "; Serve() has returned" : ""));
  }
  return fd;
}

// One connection: sends `bytes`, shuts the write side, reads the answer (until the server
// closes, or kReadTimeoutMs). Returns what was read; *closed says whether the server closed.
std::string Exchange(int port, std::string_view bytes, bool* closed) {
  *closed = false;
  const int fd = Connect(port);
  // The server may answer and close before reading everything (a refusal): stop sending then.
  while (!bytes.empty()) {
    const ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  ::shutdown(fd, SHUT_WR);
  std::string response;
  const auto deadline = Clock::now() + std::chrono::milliseconds(kReadTimeoutMs);
  char buffer[16384];
  while (true) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) break;
    pollfd p{fd, POLLIN, 0};
    const int ready = ::poll(&p, 1, static_cast<int>(left));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) break;
    const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      *closed = true;
      break;
    }
    if (response.size() < (size_t{1} << 20)) response.append(buffer, static_cast<size_t>(n));
  }
  // Reset rather than close: no TIME_WAIT on either side, however many connections a run makes.
  const linger reset{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
  ::close(fd);
  return response;
}

// A 500 in any of the responses on the connection (each starts after a blank line).
bool Answered500(std::string_view response) {
  constexpr std::string_view kStatus = "HTTP/1.1 500 ";
  if (response.substr(0, kStatus.size()) == kStatus) return true;
  return response.find(std::string("\r\n\r\n").append(kStatus)) != std::string_view::npos;
}

void ForgetUploads(const Gateway& g) {
  std::error_code ec;
  for (const auto& entry :
       std::filesystem::directory_iterator(std::filesystem::path(g.data_dir) / "uploads", ec)) {
    std::filesystem::remove_all(entry.path(), ec);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  CheckFraming(bytes, gw::FramingLimits{});
  CheckFraming(bytes, gw::FramingLimits{256, 96, 8, 4096});  // reaches the limits quickly

  Gateway& g = Get();
  bool closed = false;
  const std::string response = Exchange(g.port, bytes, &closed);
  if (Verbose()) {
    std::fprintf(stderr, "-- %zu bytes in, %zu out%s\n", size, response.size(),
                 closed ? "" : " (no close within the timeout)");
    for (size_t at = response.find("HTTP/1."); at != std::string::npos;
         at = response.find("HTTP/1.", at + 1)) {
      std::fprintf(stderr, "   %s\n", response.substr(at, response.find('\r', at) - at).c_str());
    }
    const size_t body = response.rfind("\r\n\r\n");
    if (body != std::string::npos) {
      std::fprintf(stderr, "   last body: %s\n", response.substr(body + 4, 300).c_str());
    }
  }
  if (Answered500(response) && std::getenv("KCHAIN_FUZZ_ALLOW_500") == nullptr) {
    Fail("the gateway answered 500", response.substr(0, 2000));
  }
  // Whatever the request was, its client has gone: the server must let go of it soon.
  if (!closed) {
    const auto deadline = Clock::now() + kStuckAfter;
    while (g.server->in_flight() > 0 && Clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    if (g.server->in_flight() > 0) {
      Fail("a request is still in flight seconds after its client went away",
           std::to_string(g.server->in_flight()) + " in flight");
    }
  }
  RestoreCnn(g);
  if (++g.inputs % 1024 == 0) ForgetUploads(g);  // uploads accumulate on disk otherwise
  return 0;
}
