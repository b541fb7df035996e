#include "gateway/exec/worker_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <thread>
#include <vector>

#include "runtime/unique_fd.h"

extern char** environ;

namespace kchain::gateway {
namespace {

using Clock = std::chrono::steady_clock;

WorkerDeath DescribeStatus(int status) {
  if (WIFEXITED(status)) {
    return {"exited", "exited with status " + std::to_string(WEXITSTATUS(status))};
  }
  if (!WIFSIGNALED(status)) return {"exited", "ended"};
  const int sig = WTERMSIG(status);
  switch (sig) {
    case SIGSEGV:
      return {"segfault", "crashed with SIGSEGV (segmentation fault)"};
    case SIGABRT:
      return {"abort", "aborted (SIGABRT)"};
    case SIGBUS:
      return {"bus_error", "crashed with SIGBUS (bus error)"};
    case SIGFPE:
      return {"fpe", "crashed with SIGFPE (arithmetic exception)"};
    case SIGILL:
      return {"illegal_instruction", "crashed with SIGILL (illegal instruction)"};
    case SIGXCPU:
      return {"cpu_limit", "exceeded its CPU time limit (SIGXCPU)"};
    case SIGKILL:
      return {"killed", "was killed (SIGKILL)"};
    default:
      return {"signal",
              std::string("died of signal ") + std::to_string(sig) + " (" + strsignal(sig) + ")"};
  }
}

}  // namespace

StatusOr<std::unique_ptr<WorkerProcess>> WorkerProcess::Spawn(const WorkerLaunch& launch) {
  const auto start = Clock::now();
  std::unique_ptr<WorkerProcess> worker(new WorkerProcess());
  static std::atomic<uint64_t> counter{0};
  worker->workdir_ = (std::filesystem::path(launch.workdir_root) /
                      ("w" + std::to_string(::getpid()) + "-" + std::to_string(counter++)))
                         .string();
  std::error_code ec;
  std::filesystem::create_directories(worker->workdir_, ec);
  if (ec) {
    return UnavailableError("cannot create the worker folder '" + worker->workdir_ +
                            "': " + ec.message());
  }

  int fds[2];
  KCHAIN_RETURN_IF_ERROR(worker::MakeSocketPair(fds));
  worker->channel_ = std::make_unique<worker::Channel>(fds[0], /*never_block_on_send=*/true);
  // The child's end must not already be fd 3, or dup2 would keep its close-on-exec flag.
  int child_end = fds[1];
  if (child_end == worker::kWorkerSocketFd) {
    child_end = ::fcntl(fds[1], F_DUPFD_CLOEXEC, 10);
    ::close(fds[1]);
  }

  std::vector<std::string> args = {launch.binary,
                                   "--device",
                                   launch.device,
                                   "--ordinal",
                                   std::to_string(launch.ordinal),
                                   "--gpu-wait",
                                   launch.gpu_wait,
                                   "--workdir",
                                   worker->workdir_,
                                   "--max-open-files",
                                   std::to_string(launch.max_open_files),
                                   "--cpu-seconds",
                                   std::to_string(launch.cpu_seconds),
                                   "--address-space-headroom",
                                   std::to_string(launch.address_space_headroom)};
  if (launch.device_connections > 0) {
    args.insert(args.end(), {"--device-connections", std::to_string(launch.device_connections)});
  }
  if (!launch.sandbox) args.push_back("--no-sandbox");
  if (launch.sandbox && launch.uid >= 0) {
    args.insert(args.end(), {"--uid", std::to_string(launch.uid), "--gid",
                             std::to_string(launch.gid >= 0 ? launch.gid : launch.uid)});
    // Its working folder must be its own to write in.
    if (::chown(worker->workdir_.c_str(), static_cast<uid_t>(launch.uid),
                static_cast<gid_t>(launch.gid >= 0 ? launch.gid : launch.uid)) != 0) {
      return UnavailableError("cannot hand the worker folder to uid " + std::to_string(launch.uid) +
                              ": " + std::strerror(errno));
    }
  }
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, child_end, worker::kWorkerSocketFd);
  // Tenant code must not write into the gateway's log: the worker's output goes to a file in
  // its own folder (RLIMIT_FSIZE bounds it; it goes with the folder).
  const std::string log_path = worker->workdir_ + "/output.log";
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND,
                                   0600);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  // Nothing else of the gateway's (listening socket, connections, files) reaches the worker.
  posix_spawn_file_actions_addclosefrom_np(&actions, worker::kWorkerSocketFd + 1);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, defaults;
  sigemptyset(&none);
  sigemptyset(&defaults);
  for (int sig : {SIGPIPE, SIGINT, SIGTERM, SIGCHLD, SIGHUP}) sigaddset(&defaults, sig);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  // Its own process group: a Ctrl-C at the terminal reaches the gateway, which drains first.
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);
  pid_t pid = -1;
  const int rc = ::posix_spawn(&pid, launch.binary.c_str(), &actions, &attr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  ::close(child_end);
  if (rc != 0) {
    return UnavailableError("cannot start the worker '" + launch.binary +
                            "': " + std::strerror(rc));
  }
  worker->pid_ = pid;

  Status received = worker->channel_->Receive(launch.ready_timeout_ms);
  worker::Reply reply;
  if (received.ok()) {
    reply = worker::DecodeReply(*worker->channel_, worker::MessageType::kReady, &worker->ready_,
                                sizeof worker->ready_);
  }
  Status ready = !received.ok() ? received
                 : reply.kind == worker::Reply::Kind::kExpected
                     ? worker::CheckReady(&worker->ready_)
                     : reply.status;
  if (!ready.ok()) {
    worker->Kill();
    const WorkerDeath death = worker->Reap();
    return UnavailableError("the worker did not start: " + ready.message() + " (it " +
                            death.description + ")");
  }
  worker->spawn_us_ = std::chrono::duration<double, std::micro>(Clock::now() - start).count();
  return worker;
}

WorkerProcess::~WorkerProcess() {
  if (pid_ > 0 && !reaped_) {
    Kill();
    Reap();
  }
  std::error_code ec;
  if (!workdir_.empty()) std::filesystem::remove_all(workdir_, ec);
}

namespace {

// Reads the start of /proc/<pid>/<file> into `buf` as a C string; false when it cannot.
template <size_t N>
bool ReadProcFile(pid_t pid, const char* file, char (&buf)[N]) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/%s", static_cast<int>(pid), file);
  const UniqueFd fd(::open(path, O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return false;
  const ssize_t n = ::read(fd.get(), buf, N - 1);
  if (n <= 0) return false;
  buf[n] = '\0';
  return true;
}

}  // namespace

double WorkerProcess::CpuSeconds() const {
  char buf[1024];
  if (!ReadProcFile(pid_, "stat", buf)) return 0;
  // The command name, field 2, is in parentheses and may hold spaces: count from after it.
  const char* rest = std::strrchr(buf, ')');
  if (rest == nullptr) return 0;
  unsigned long long utime = 0, stime = 0;
  // Fields 3..13 precede utime (14) and stime (15).
  if (std::sscanf(rest + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime,
                  &stime) != 2) {
    return 0;
  }
  return static_cast<double>(utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

uint64_t WorkerProcess::ResidentBytes() const {
  char buf[128];
  if (!ReadProcFile(pid_, "statm", buf)) return 0;
  unsigned long long total = 0, resident = 0;
  if (std::sscanf(buf, "%llu %llu", &total, &resident) != 2) return 0;
  return resident * static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
}

bool WorkerProcess::Alive() const {
  if (reaped_) return false;
  // A hang-up means gone. (Readable alone does not: replies taken from the control page
  // leave their socket copies behind until the next run drains them.)
  pollfd p{channel_->fd(), POLLRDHUP, 0};
  return ::poll(&p, 1, 0) == 0 || (p.revents & (POLLHUP | POLLRDHUP | POLLERR)) == 0;
}

void WorkerProcess::Kill() {
  if (pid_ > 0 && !reaped_) ::kill(pid_, SIGKILL);
}

void WorkerProcess::Stop(int grace_ms) {
  if (reaped_ || pid_ <= 0) return;
  if (channel_->Send(worker::MessageType::kExit, nullptr, 0).ok()) {
    const auto deadline = Clock::now() + std::chrono::milliseconds(grace_ms);
    while (Clock::now() < deadline) {
      int status = 0;
      const pid_t r = ::waitpid(pid_, &status, WNOHANG);
      if (r == pid_) {
        reaped_ = true;
        death_ = DescribeStatus(status);
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  Kill();
  Reap();
}

WorkerDeath WorkerProcess::Reap() {
  if (reaped_ || pid_ <= 0) return death_;
  int status = 0;
  pid_t r;
  do {
    r = ::waitpid(pid_, &status, 0);
  } while (r < 0 && errno == EINTR);
  reaped_ = true;
  death_ = r == pid_ ? DescribeStatus(status) : WorkerDeath{"exited", "ended"};
  return death_;
}

}  // namespace kchain::gateway
