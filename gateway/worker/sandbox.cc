#include "gateway/worker/sandbox.h"

#include <errno.h>
#include <grp.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <sys/resource.h>
#include <ucontext.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

#include "gateway/worker/protocol.h"

namespace kchain::worker {
namespace {

bool SetLimit(int resource, uint64_t value, const char* name, std::string* notes) {
  rlimit limit{static_cast<rlim_t>(value), static_cast<rlim_t>(value)};
  if (::setrlimit(resource, &limit) == 0) return true;
  *notes += std::string(name) + ": " + std::strerror(errno) + "; ";
  return false;
}

}  // namespace

uint32_t ApplyEarlySandbox(const SandboxOptions& options, std::string* notes) {
  uint32_t bits = 0;
  if (!options.enabled) {
    *notes += "sandbox disabled by configuration; ";
    return bits;
  }
  // No network: a fresh namespace holds only a loopback interface that is down.
  if (::unshare(CLONE_NEWNET) == 0) {
    bits |= kSandboxNetworkNamespace;
  } else {
    *notes += std::string("no network namespace (unshare: ") + std::strerror(errno) + "); ";
  }
  if (!options.workdir.empty()) {
    if (::chdir(options.workdir.c_str()) == 0) {
      // Temporary files (the loader's names for library copies among them) stay in it too.
      ::setenv("TMPDIR", options.workdir.c_str(), 1);
      bits |= kSandboxWorkdir;
    } else {
      *notes += "chdir " + options.workdir + ": " + std::strerror(errno) + "; ";
    }
  }
  bool limits = SetLimit(RLIMIT_NOFILE, options.max_open_files, "RLIMIT_NOFILE", notes);
  limits &= SetLimit(RLIMIT_FSIZE, options.max_file_bytes, "RLIMIT_FSIZE", notes);
  limits &= SetLimit(RLIMIT_CORE, 0, "RLIMIT_CORE", notes);
  if (options.cpu_seconds != 0) {
    // The soft limit sends SIGXCPU (the worker dies with it); the hard one SIGKILL a second later.
    rlimit cpu{static_cast<rlim_t>(options.cpu_seconds),
               static_cast<rlim_t>(options.cpu_seconds + 1)};
    if (::setrlimit(RLIMIT_CPU, &cpu) != 0) {
      *notes += std::string("RLIMIT_CPU: ") + std::strerror(errno) + "; ";
      limits = false;
    }
  }
  if (limits) bits |= kSandboxRlimits;
  return bits;
}

bool DropPrivileges(const SandboxOptions& options, std::string* notes) {
  if (!options.enabled || options.uid < 0) return false;
  // Pinned staging and constants must stay possible after the switch: lift the locked-memory
  // limit while still allowed to (fully with CAP_SYS_RESOURCE, else up to the hard limit).
  rlimit unlimited{RLIM_INFINITY, RLIM_INFINITY};
  if (::setrlimit(RLIMIT_MEMLOCK, &unlimited) != 0) {
    rlimit current{};
    if (::getrlimit(RLIMIT_MEMLOCK, &current) == 0) {
      current.rlim_cur = current.rlim_max;
      ::setrlimit(RLIMIT_MEMLOCK, &current);
    }
  }
  const gid_t gid = static_cast<gid_t>(options.gid >= 0 ? options.gid : options.uid);
  const uid_t uid = static_cast<uid_t>(options.uid);
  if (::setgroups(0, nullptr) != 0 || ::setresgid(gid, gid, gid) != 0 ||
      ::setresuid(uid, uid, uid) != 0) {
    *notes += std::string("cannot switch to uid ") + std::to_string(uid) + ": " +
              std::strerror(errno) + "; ";
    return false;
  }
  // Never able to switch back.
  if (::setuid(0) == 0) {
    *notes += "switched user but could switch back to root; ";
    return false;
  }
  return true;
}

bool LimitAddressSpace(uint64_t headroom, std::string* notes) {
  // VmSize from /proc/self/status, in kB.
  std::ifstream status("/proc/self/status");
  std::string line;
  uint64_t vm_kb = 0;
  while (std::getline(status, line)) {
    if (line.rfind("VmSize:", 0) == 0) vm_kb = std::strtoull(line.c_str() + 7, nullptr, 10);
  }
  if (vm_kb == 0) {
    *notes += "RLIMIT_AS: cannot read VmSize; ";
    return false;
  }
  return SetLimit(RLIMIT_AS, vm_kb * 1024 + headroom, "RLIMIT_AS", notes);
}

namespace {

// What a launcher, the C and C++ runtimes, the dynamic loader, the CUDA runtime and driver
// (after the device is open) and the sanitizers use. Everything else is refused with EPERM:
// process creation, new sockets and connections, ptrace and process_vm_*, mounts and
// namespaces, kernel modules, bpf, perf_event_open, io_uring, userfaultfd, keyrings, clock
// changes, reboot, and whatever new system call a future kernel adds. File access is left to
// the file system's permissions (the worker runs as an unprivileged user of its own).
constexpr const char* kAllowed[] = {
    // Files and descriptors (the library copy is a memfd; CUDA's JIT cache is files).
    "read",
    "write",
    "readv",
    "writev",
    "pread64",
    "pwrite64",
    "preadv",
    "pwritev",
    "preadv2",
    "pwritev2",
    "lseek",
    "close",
    "close_range",
    "fstat",
    "newfstatat",
    "stat",
    "lstat",
    "statx",
    "fstatfs",
    "statfs",
    "open",
    "openat",
    "openat2",
    "access",
    "faccessat",
    "faccessat2",
    "readlink",
    "readlinkat",
    "getcwd",
    "fcntl",
    "dup",
    "dup2",
    "dup3",
    "pipe",
    "pipe2",
    "ioctl",
    "memfd_create",
    "ftruncate",
    "fallocate",
    "fsync",
    "fdatasync",
    "flock",
    "rename",
    "renameat",
    "renameat2",
    "unlink",
    "symlink",
    "symlinkat",
    "unlinkat",
    "mkdir",
    "mkdirat",
    "rmdir",
    "getdents64",
    "chmod",
    "fchmod",
    "fchmodat",
    "umask",
    "utimensat",
    "copy_file_range",
    "sendfile",
    // Memory.
    "mmap",
    "munmap",
    "mremap",
    "mprotect",
    "madvise",
    "mlock",
    "mlock2",
    "munlock",
    "mlockall",
    "munlockall",
    "msync",
    "mincore",
    "brk",
    "mbind",
    "get_mempolicy",
    "set_mempolicy",
    "membarrier",
    // Threads and time.
    "futex",
    "futex_waitv",
    "set_robust_list",
    "get_robust_list",
    "rseq",
    "set_tid_address",
    "sched_yield",
    "sched_getaffinity",
    "sched_setaffinity",
    "sched_getparam",
    "sched_getscheduler",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getattr",
    "getpriority",
    "setpriority",
    "nanosleep",
    "clock_nanosleep",
    "clock_gettime",
    "clock_getres",
    "gettimeofday",
    "time",
    "getcpu",
    "exit",
    "exit_group",
    // Identity and limits (reading them; setrlimit can only lower a hard limit here).
    "getpid",
    "gettid",
    "getppid",
    "getpgrp",
    "getuid",
    "geteuid",
    "getgid",
    "getegid",
    "getgroups",
    "getresuid",
    "getresgid",
    "getrlimit",
    "setrlimit",
    "prlimit64",
    "getrusage",
    "sysinfo",
    "uname",
    "times",
    "prctl",
    "arch_prctl",
    "getrandom",
    "capget",
    // Signals (kill and tgkill only to this process: rules below).
    "rt_sigaction",
    "rt_sigprocmask",
    "rt_sigreturn",
    "rt_sigtimedwait",
    "rt_sigsuspend",
    "rt_sigpending",
    "sigaltstack",
    "restart_syscall",
    // Waiting on descriptors, and the sockets the worker already has.
    "poll",
    "ppoll",
    "select",
    "pselect6",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_wait",
    "epoll_pwait",
    "epoll_pwait2",
    "eventfd",
    "eventfd2",
    "timerfd_create",
    "timerfd_settime",
    "timerfd_gettime",
    "recvmsg",
    "sendmsg",
    "recvfrom",
    "sendto",
    "recvmmsg",
    "sendmmsg",
    "shutdown",
    "getsockopt",
    "setsockopt",
    "getsockname",
    "getpeername",
};

// The system call a SIGSYS names, and its result when the handler returns: EPERM, as if the
// filter had answered it, after saying which call it was on the worker's output.
void RefuseSyscall(int, siginfo_t* info, void* context) {
  auto* uc = static_cast<ucontext_t*>(context);
#if defined(__x86_64__)
  uc->uc_mcontext.gregs[REG_RAX] = -EPERM;
#elif defined(__aarch64__)
  uc->uc_mcontext.regs[0] = static_cast<uint64_t>(-EPERM);
#endif
  char line[96];
  int n = 0;
  const char prefix[] = "kchain-worker: seccomp refused system call ";
  for (char c : prefix) {
    if (c != '\0') line[n++] = c;
  }
  unsigned number = static_cast<unsigned>(info->si_syscall);
  char digits[12];
  int d = 0;
  do {
    digits[d++] = static_cast<char>('0' + number % 10);
    number /= 10;
  } while (number != 0 && d < 11);
  while (d > 0) line[n++] = digits[--d];
  line[n++] = '\n';
  (void)!::write(2, line, static_cast<size_t>(n));
}

}  // namespace

bool ApplySeccomp(std::string* notes) {
  // Refused calls raise SIGSYS, whose handler answers EPERM and logs the call's number, so
  // that a call a new driver needs shows up in the worker's output rather than as a mystery.
  struct sigaction action {};
  action.sa_sigaction = RefuseSyscall;
  action.sa_flags = SA_SIGINFO;
  sigemptyset(&action.sa_mask);
  if (::sigaction(SIGSYS, &action, nullptr) != 0) {
    *notes += std::string("seccomp: sigaction: ") + std::strerror(errno) + "; ";
    return false;
  }
  scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_TRAP);
  if (ctx == nullptr) {
    *notes += "seccomp_init failed; ";
    return false;
  }
  int rc = 0;
  for (const char* name : kAllowed) {
    const int number = seccomp_syscall_resolve_name(name);
    if (number == __NR_SCMP_ERROR) continue;  // not on this architecture
    rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, number, 0);
    if (rc != 0) break;
  }
  // Threads only: clone with CLONE_THREAD (CUDA and the C library make threads).
  if (rc == 0) {
    rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
                          SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD));
  }
  // clone3 passes its flags in memory, out of a filter's reach: refuse it as absent, so that
  // the C library falls back to clone, which is filtered above.
  if (rc == 0) rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
  // Signals to this process only (CUDA signals its own threads).
  const pid_t self = ::getpid();
  for (int sc : {SCMP_SYS(kill), SCMP_SYS(tgkill)}) {
    if (rc == 0) {
      rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, sc, 1,
                            SCMP_A0(SCMP_CMP_EQ, static_cast<scmp_datum_t>(self)));
    }
  }
  // Calls that are refused routinely and need no log line: EPERM at once.
  for (int sc :
       {SCMP_SYS(fork), SCMP_SYS(vfork), SCMP_SYS(execve), SCMP_SYS(socket), SCMP_SYS(ptrace)}) {
    if (rc == 0 && sc >= 0) rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), sc, 0);
  }
  if (rc == 0) rc = seccomp_load(ctx);  // also sets no_new_privs
  seccomp_release(ctx);
  if (rc != 0) {
    *notes += std::string("seccomp: ") + std::strerror(-rc) + "; ";
    return false;
  }
  return true;
}

}  // namespace kchain::worker
