#include "gateway/worker/sandbox.h"

#include <errno.h>
#include <grp.h>
#include <sched.h>
#include <seccomp.h>
#include <sys/resource.h>
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

bool ApplySeccomp(std::string* notes) {
  scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
  if (ctx == nullptr) {
    *notes += "seccomp_init failed; ";
    return false;
  }
  const uint32_t eperm = SCMP_ACT_ERRNO(EPERM);
  int rc = 0;
  auto deny = [&](int syscall) {
    if (syscall >= 0 && rc == 0) rc = seccomp_rule_add(ctx, eperm, syscall, 0);
  };
  // Process creation. Threads stay allowed (clone with CLONE_THREAD): CUDA needs them.
  for (int sc : {SCMP_SYS(fork), SCMP_SYS(vfork), SCMP_SYS(execve), SCMP_SYS(execveat)}) deny(sc);
  if (rc == 0) {
    rc = seccomp_rule_add(ctx, eperm, SCMP_SYS(clone), 1,
                          SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, 0));
  }
  // clone3 passes its flags in memory, out of a filter's reach: refuse it as absent, so that
  // the C library falls back to clone, which is filtered above.
  if (rc == 0) rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
  // Network: no new sockets, no connections (the worker's own socket is already open).
  for (int sc : {SCMP_SYS(socket), SCMP_SYS(socketpair), SCMP_SYS(connect), SCMP_SYS(bind),
                 SCMP_SYS(listen), SCMP_SYS(accept), SCMP_SYS(accept4)}) {
    deny(sc);
  }
  // Other processes: no tracing, no reading or writing their memory, and signals only to
  // ourselves (CUDA signals its own threads).
  for (int sc : {SCMP_SYS(ptrace), SCMP_SYS(process_vm_readv), SCMP_SYS(process_vm_writev),
                 SCMP_SYS(pidfd_open), SCMP_SYS(pidfd_getfd), SCMP_SYS(pidfd_send_signal)}) {
    deny(sc);
  }
  const pid_t self = ::getpid();
  if (rc == 0) {
    rc = seccomp_rule_add(ctx, eperm, SCMP_SYS(kill), 1,
                          SCMP_A0(SCMP_CMP_NE, static_cast<scmp_datum_t>(self)));
  }
  if (rc == 0) {
    rc = seccomp_rule_add(ctx, eperm, SCMP_SYS(tgkill), 1,
                          SCMP_A0(SCMP_CMP_NE, static_cast<scmp_datum_t>(self)));
  }
  // Mounts, namespaces, and the kernel itself.
  for (int sc : {SCMP_SYS(mount),
                 SCMP_SYS(umount2),
                 SCMP_SYS(pivot_root),
                 SCMP_SYS(chroot),
                 SCMP_SYS(unshare),
                 SCMP_SYS(setns),
                 SCMP_SYS(move_mount),
                 SCMP_SYS(open_tree),
                 SCMP_SYS(fsopen),
                 SCMP_SYS(fsmount),
                 SCMP_SYS(init_module),
                 SCMP_SYS(finit_module),
                 SCMP_SYS(delete_module),
                 SCMP_SYS(kexec_load),
                 SCMP_SYS(kexec_file_load),
                 SCMP_SYS(reboot),
                 SCMP_SYS(swapon),
                 SCMP_SYS(swapoff),
                 SCMP_SYS(syslog),
                 SCMP_SYS(acct),
                 SCMP_SYS(bpf),
                 SCMP_SYS(perf_event_open),
                 SCMP_SYS(keyctl),
                 SCMP_SYS(add_key),
                 SCMP_SYS(request_key),
                 SCMP_SYS(userfaultfd),
                 SCMP_SYS(quotactl),
                 SCMP_SYS(sethostname),
                 SCMP_SYS(setdomainname),
                 SCMP_SYS(settimeofday),
                 SCMP_SYS(clock_settime),
                 SCMP_SYS(adjtimex),
                 SCMP_SYS(clock_adjtime),
                 SCMP_SYS(iopl),
                 SCMP_SYS(ioperm),
                 SCMP_SYS(name_to_handle_at),
                 SCMP_SYS(open_by_handle_at),
                 SCMP_SYS(vhangup)}) {
    deny(sc);
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
