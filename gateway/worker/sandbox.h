// The kchain-worker sandbox: what untrusted kernel-library code may do once it runs.
//
// Applied in two steps. Before the device is opened: a private network namespace (no
// network at all), a private working directory, and resource limits. After the device is
// open (CUDA needs the freedom to initialise) and before any user code is loaded: a seccomp
// filter that refuses, with EPERM, what a kernel launcher has no use for. docs/isolation.md
// says what each measure stops and what it does not.
#ifndef KCHAIN_GATEWAY_WORKER_SANDBOX_H_
#define KCHAIN_GATEWAY_WORKER_SANDBOX_H_

#include <cstdint>
#include <string>

namespace kchain::worker {

struct SandboxOptions {
  bool enabled = true;
  std::string workdir;            // chdir here; empty: stay where started
  uint64_t max_open_files = 256;  // RLIMIT_NOFILE
  uint64_t cpu_seconds = 3600;    // RLIMIT_CPU (total CPU time of the worker); 0: none
  uint64_t max_file_bytes = uint64_t{64} << 20;  // RLIMIT_FSIZE
  // RLIMIT_AS, set once the worker is up (baseline + this). 0: none. CUDA reserves far more
  // virtual address space than it uses, so it is only set for host workers.
  uint64_t address_space_headroom = 0;
  // When >= 0, the user and group to switch to once the device is open (the gateway passes
  // nobody's when it runs as root), so that the worker cannot read the gateway's files.
  int64_t uid = -1;
  int64_t gid = -1;
};

// Step 1. Returns the SandboxBits in force; appends to `notes` why any is missing.
uint32_t ApplyEarlySandbox(const SandboxOptions& options, std::string* notes);

// Limits the address space to what is mapped now plus `headroom` bytes.
bool LimitAddressSpace(uint64_t headroom, std::string* notes);

// Step 1b, after the device is open: switches to options.uid/gid (dropping supplementary
// groups), after lifting RLIMIT_MEMLOCK while still allowed to, for pinned memory. Returns
// whether it switched.
bool DropPrivileges(const SandboxOptions& options, std::string* notes);

// Step 2. Installs the seccomp filter (and no_new_privs): an allow-list of what launchers, the
// C and C++ runtimes and the CUDA driver use; anything else fails with EPERM, and is logged
// (by number) on the worker's output. Returns whether it is in force.
bool ApplySeccomp(std::string* notes);

}  // namespace kchain::worker

#endif  // KCHAIN_GATEWAY_WORKER_SANDBOX_H_
