// How many CUDA contexts (one per process, as kchain's workers hold them) fit on a GPU, how
// long each takes to create as the device fills, and how soon a slot comes back after a
// process holding one is killed and reaped. This is what bounds how many tenant workers a
// GPU can host (docs/isolation.md).
//
//   kchain_context_probe [--max N] [--streams S] [--churn R] [--connections C]
//
// Each child process creates its context (cudaFree(0)), then S streams with a 1 MiB memset
// on each (as S instances would), reports the free device memory and waits to be killed.
// --connections sets CUDA_DEVICE_MAX_CONNECTIONS in the children (kchain's
// --worker-device-connections); 0 leaves CUDA's default. Then --churn R times: kill the
// oldest child, reap it, and start another at once, counting failed starts until one works.
#include <cuda_runtime.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <string>

namespace {

using Clock = std::chrono::steady_clock;

double MillisSince(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// In the child: opens the context and the streams; writes "ok FREE_MIB" or the failure.
[[noreturn]] void ChildMain(int out_fd, int streams) {
  cudaError_t err = cudaFree(nullptr);
  std::string what = "cudaFree(0)";
  void* buffer = nullptr;
  if (err == cudaSuccess && streams > 0) {
    what = "cudaMalloc";
    err = cudaMalloc(&buffer, 1 << 20);
  }
  for (int i = 0; i < streams && err == cudaSuccess; ++i) {
    cudaStream_t stream = nullptr;
    what = "cudaStreamCreateWithFlags";
    err = cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);
    if (err == cudaSuccess) {
      what = "cudaMemsetAsync";
      err = cudaMemsetAsync(buffer, i, 1 << 20, stream);
    }
    if (err == cudaSuccess) {
      what = "cudaStreamSynchronize";
      err = cudaStreamSynchronize(stream);
    }
  }
  size_t free_bytes = 0, total_bytes = 0;
  if (err == cudaSuccess) {
    what = "cudaMemGetInfo";
    err = cudaMemGetInfo(&free_bytes, &total_bytes);
  }
  char line[256];
  const int n = err == cudaSuccess ? std::snprintf(line, sizeof line, "ok %zu", free_bytes >> 20)
                                   : std::snprintf(line, sizeof line, "%s: %s", what.c_str(),
                                                   cudaGetErrorString(err));
  if (::write(out_fd, line, static_cast<size_t>(n)) < 0) _exit(3);
  ::close(out_fd);
  if (err != cudaSuccess) _exit(1);
  ::pause();
  _exit(0);
}

struct Start {
  pid_t pid = -1;  // -1: it failed
  double ms = 0;
  std::string message;  // "ok FREE_MIB" or why it failed
};

Start StartOne(int streams) {
  Start start;
  int fds[2];
  if (::pipe(fds) != 0) {
    start.message = std::string("pipe: ") + std::strerror(errno);
    return start;
  }
  const auto t0 = Clock::now();
  const pid_t pid = ::fork();
  if (pid < 0) {
    start.message = std::string("fork: ") + std::strerror(errno);
    ::close(fds[0]);
    ::close(fds[1]);
    return start;
  }
  if (pid == 0) {
    ::close(fds[0]);
    ChildMain(fds[1], streams);
  }
  ::close(fds[1]);
  char buf[256] = {};
  const ssize_t got = ::read(fds[0], buf, sizeof buf - 1);
  ::close(fds[0]);
  start.ms = MillisSince(t0);
  start.message = got > 0 ? std::string(buf, static_cast<size_t>(got)) : "no answer";
  if (start.message.rfind("ok ", 0) == 0) {
    start.pid = pid;
  } else {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
  }
  return start;
}

double KillAndReap(pid_t pid) {
  const auto t0 = Clock::now();
  ::kill(pid, SIGKILL);
  while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
  }
  return MillisSince(t0);
}

bool ParseInt(const char* text, int lo, int hi, int* out) {
  char* end = nullptr;
  const long v = std::strtol(text, &end, 10);
  if (end == text || *end != '\0' || v < lo || v > hi) return false;
  *out = static_cast<int>(v);
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  int max = 400, streams = 0, churn = 5, connections = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const char* value = i + 1 < argc ? argv[++i] : "";
    const bool ok = arg == "--max"           ? ParseInt(value, 1, 4096, &max)
                    : arg == "--streams"     ? ParseInt(value, 0, 64, &streams)
                    : arg == "--churn"       ? ParseInt(value, 0, 1000, &churn)
                    : arg == "--connections" ? ParseInt(value, 0, 32, &connections)
                                             : false;
    if (!ok) {
      std::fprintf(stderr,
                   "usage: kchain_context_probe [--max 1..4096] [--streams 0..64] "
                   "[--churn 0..1000] [--connections 0..32]\n");
      return 2;
    }
  }
  if (connections > 0) {
    ::setenv("CUDA_DEVICE_MAX_CONNECTIONS", std::to_string(connections).c_str(), 1);
  }
  std::printf("contexts of %d streams each, CUDA_DEVICE_MAX_CONNECTIONS=%s\n", streams,
              connections > 0 ? std::to_string(connections).c_str() : "(CUDA's default)");
  std::deque<pid_t> children;
  double total_ms = 0;
  for (int i = 1; i <= max; ++i) {
    const Start s = StartOne(streams);
    if (s.pid < 0) {
      std::printf("context %d failed after %.0f ms: %s\n", i, s.ms, s.message.c_str());
      break;
    }
    children.push_back(s.pid);
    total_ms += s.ms;
    if (i <= 3 || i % 25 == 0) {
      std::printf("context %d: %.0f ms, free device memory %s MiB\n", i, s.ms,
                  s.message.c_str() + 3);
      std::fflush(stdout);
    }
  }
  std::printf("contexts held: %zu, mean start %.0f ms\n", children.size(),
              children.empty() ? 0.0 : total_ms / static_cast<double>(children.size()));
  for (int round = 1; round <= churn && !children.empty(); ++round) {
    const double reap_ms = KillAndReap(children.front());
    children.pop_front();
    const auto t0 = Clock::now();
    int failed = 0;
    Start s;
    while ((s = StartOne(streams)).pid < 0 && failed < 100) {
      ++failed;
      ::usleep(10000);
    }
    if (s.pid > 0) children.push_back(s.pid);
    std::printf(
        "churn %d: kill and reap %.0f ms, then %d failed starts, a new context after %.0f "
        "ms (%s)\n",
        round, reap_ms, failed, MillisSince(t0), s.message.c_str());
    std::fflush(stdout);
  }
  const bool any = !children.empty();
  for (pid_t pid : children) KillAndReap(pid);
  return any ? 0 : 1;  // not one context: no GPU, or none free
}
