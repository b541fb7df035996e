// The gateway <-> kchain-worker protocol.
//
// Control messages travel over a SOCK_SEQPACKET Unix socket pair (message boundaries are
// kept; the worker's end is its fd 3). Payloads never do: each instance's input and output
// live in a shared-memory file (memfd) that both processes map, and that the worker registers
// as page-locked, so input and output bytes cross the process boundary exactly once.
//
// Every message is a fixed header and a fixed-size body, optionally followed by text (a
// manifest, an error message). File descriptors (the library opened read-only, the constants,
// the shared memory) ride along as SCM_RIGHTS. No JSON, no allocation on the run path.
//
// Thread-safety: a Channel is used by one thread at a time.
#ifndef KCHAIN_GATEWAY_WORKER_PROTOCOL_H_
#define KCHAIN_GATEWAY_WORKER_PROTOCOL_H_

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kchain/status.h"

namespace kchain::worker {

inline constexpr uint32_t kProtocolVersion = 2;
// The worker's end of the socket pair.
inline constexpr int kWorkerSocketFd = 3;
// Largest message: header, body and trailing text (error messages are cut to fit).
inline constexpr size_t kMaxMessageBytes = 64 * 1024;

enum class MessageType : uint32_t {
  kReady = 1,  // worker -> gateway, once, after start-up: ReadyBody
  kLoad,       // gateway -> worker: LoadBody; fds: library, manifest[, constants][, shm]
  kLoaded,     // worker -> gateway: LoadedBody
  kRun,        // gateway -> worker: RunBody
  kRan,        // worker -> gateway: RanBody [+ error message]
  kPark,       // gateway -> worker: no body
  kParked,     // worker -> gateway: no body
  kWake,       // gateway -> worker: no body
  kWoken,      // worker -> gateway: WokenBody
  kError,      // worker -> gateway, in reply to anything: ErrorBody + message
  kExit,       // gateway -> worker: no body; the worker exits 0
};

struct Header {
  uint32_t type;
  uint32_t body_bytes;  // everything after the header
};

// Sandbox measures the worker could apply (bits of ReadyBody::sandbox).
enum SandboxBits : uint32_t {
  kSandboxNetworkNamespace = 1u << 0,
  kSandboxSeccomp = 1u << 1,
  kSandboxRlimits = 1u << 2,
  kSandboxWorkdir = 1u << 3,
  kSandboxUser = 1u << 4,  // runs as an unprivileged user of its own
};

struct ReadyBody {
  uint32_t protocol_version;
  uint32_t pid;
  uint32_t device_kind;  // kchain::DeviceKind
  uint32_t sandbox;      // SandboxBits actually in force
  int32_t max_threads_per_block;
  int32_t max_grid_size;
  uint64_t total_memory_bytes;
  uint64_t max_buffer_bytes;
  uint64_t baseline_rss_bytes;  // resident memory once ready (CUDA context and runtime)
  double init_us;               // start-up, device context creation included
  char device_name[256];
  char sandbox_notes[512];  // why a measure is missing, where one is
};

struct LoadBody {
  uint32_t create_instance;  // 0: only load and validate (a deploy check)
  uint32_t has_constants;    // a constants fd follows the library fd
  uint32_t stage_timing_period;
  uint32_t graph_disabled;
  uint32_t request_spin_us;  // how long to spin on the control page for the next run
  uint32_t manifest_bytes;   // length of the manifest in its memory file
  uint64_t shm_bytes;        // size of the shared memory (create_instance only)
  uint64_t input_offset;     // where the input staging starts in it
  uint64_t output_offset;    // where the output staging starts in it
  uint64_t progress_offset;  // a uint32 the worker sets to the running stage + 1
  // The canonical manifest JSON travels in a sealed memory file (an fd), so that manifests of
  // any valid size reach the worker whole.
};

struct LoadedBody {
  double library_us;    // dlopen and checks
  double constants_us;  // reading the constants into pinned memory
  double create_us;     // instance: stream, buffers (constants upload excluded)
  double upload_us;     // constants upload
};

struct RunBody {
  uint64_t input_bytes;
  uint64_t sequence;
};

struct RanBody {
  uint64_t sequence;
  uint32_t status_code;  // kchain::StatusCode
  uint32_t mode;         // kchain::ExecMode
  uint32_t stages_timed;
  uint32_t broken;  // the worker's device context is gone; it will exit after replying
  double input_copy_us;
  double chain_us;
  double output_copy_us;
  double total_us;
  // Followed by the error message when status_code != 0.
};

// The first page of an instance's shared memory: the control page.
//   [0, 4)        the running stage + 1 (written by the runtime before each launcher)
//   [64, 72)      the sequence number of the last finished run (release-stored by the worker
//                 after the RanBody below), so that the gateway can spin on it instead of
//                 sleeping on the socket for short runs
//   [72, 80)      the sequence number of the latest run requested (stored by the gateway
//                 after the input and [80, 88)), for a worker spinning between runs
//   [80, 88)      that run's input length
//   [88, 92)      1 while the worker spins for requests (then the gateway need not wake it
//                 through the socket), 0 while it sleeps on the socket
//   [128, ...)    the RanBody of the last finished run
//   [512, 4096)   its error message, NUL-terminated
inline constexpr size_t kControlProgressOffset = 0;
inline constexpr size_t kControlReplySequenceOffset = 64;
inline constexpr size_t kControlRequestSequenceOffset = 72;
inline constexpr size_t kControlRequestBytesOffset = 80;
inline constexpr size_t kControlWorkerSpinningOffset = 88;
inline constexpr size_t kControlReplyOffset = 128;
inline constexpr size_t kControlMessageOffset = 512;
inline constexpr size_t kControlPageBytes = 4096;

static_assert(sizeof(RanBody) <= kControlMessageOffset - kControlReplyOffset);

struct WokenBody {
  double create_us;
  double upload_us;
};

struct ErrorBody {
  uint32_t status_code;
  uint32_t broken;
  // Followed by the message.
};

// A hint to the processor inside a spin loop (x86 PAUSE, Arm YIELD), so that a spinning
// thread yields its core's resources to its sibling.
inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__) || defined(__arm__)
  asm volatile("yield");
#endif
}

// --- Decoding what a worker sends ---
//
// A worker runs tenant code, so everything it writes (socket messages and the control page
// alike) is hostile input to the gateway. The decoders below are the only way the gateway
// reads it: they check every size, type, code and flag, copy bodies out before checking them
// (a worker may rewrite shared memory at any moment), and bound and clean every string.

// Longest worker-supplied text the gateway keeps (an error message, say).
inline constexpr size_t kMaxWorkerTextBytes = 2048;

// `raw` cut to kMaxWorkerTextBytes (at a NUL, if there is one earlier), with control
// characters other than tab and newline replaced by '?'. Invalid UTF-8 is left for the JSON
// encoder, which replaces it.
std::string CleanWorkerText(std::string_view raw);

// A status code a worker reported: a known error code, else kInternal. Never kOk.
StatusCode WorkerErrorCode(uint32_t raw);

// What a reply was, once checked.
struct Reply {
  enum class Kind {
    kExpected,   // the awaited type with a whole body (copied to the caller's struct)
    kError,      // the worker reported an error: `status`, `broken`
    kMalformed,  // anything else: `status` says what was wrong (a protocol violation)
  };
  Kind kind = Kind::kMalformed;
  Status status;        // kError: the worker's error (code checked, text cleaned)
  bool broken = false;  // kError: the worker's device context is gone; it exits
  std::string text;     // kExpected: the cleaned text after the body, if any
};

class Channel;

// Decodes the last message received on `channel`, expecting `expected` with a body of
// exactly `body_bytes` bytes (optionally followed by text), copied into `body`.
Reply DecodeReply(const Channel& channel, MessageType expected, void* body, size_t body_bytes);

// Checks a RanBody (copied out of the control page or a message): its codes and flags are
// in range and its timings finite and non-negative. kInternal naming the bad field.
Status CheckRan(const RanBody& ran);

// The NUL-terminated message on an instance's control page, read within the page's bounds
// and cleaned. `page` is the start of the shared memory.
std::string ControlPageText(const std::byte* page);

// Checks a ReadyBody: protocol version, device kind, limits, NUL-terminated strings (forced).
Status CheckReady(ReadyBody* ready);

// One end of the socket pair, with a receive buffer allocated once.
class Channel {
 public:
  // `never_block_on_send`: sends fail with kUnavailable instead of waiting when the peer's
  // queue is full (the gateway's side: a worker that stops reading must not stall a thread).
  explicit Channel(int fd, bool never_block_on_send = false);
  ~Channel();
  Channel(const Channel&) = delete;
  Channel& operator=(const Channel&) = delete;

  int fd() const { return fd_; }

  // Sends one message. `text` is appended after the body (cut to fit kMaxMessageBytes).
  // kUnavailable when the peer is gone.
  Status Send(MessageType type, const void* body, size_t body_bytes, std::string_view text = {},
              std::span<const int> fds = {});

  // Takes one message if one is waiting; kDeadlineExceeded if none is (one syscall).
  Status TryReceive();

  // Waits up to `timeout_ms` (-1: forever) for one message. kDeadlineExceeded on timeout,
  // kUnavailable when the peer has closed or died. On success the message stays valid until
  // the next Receive. Received fds are appended to `fds` (the caller owns them).
  Status Receive(int timeout_ms, std::vector<int>* fds = nullptr);

  MessageType type() const { return static_cast<MessageType>(header().type); }
  // Copies the fixed body of the last message into `out` when it has at least sizeof(T)
  // bytes; false otherwise (and `out` is left alone).
  template <typename T>
  bool CopyBody(T* out) const {
    if (received_ < sizeof(Header) + sizeof(T)) return false;
    std::memcpy(out, buffer_.data() + sizeof(Header), sizeof(T));
    return true;
  }
  // Bytes after the header in the last message.
  size_t body_bytes() const { return received_ < sizeof(Header) ? 0 : received_ - sizeof(Header); }
  // The text after a body of `body_bytes` (raw: clean it before use).
  std::string_view text(size_t body_bytes) const;

 private:
  const Header& header() const { return *reinterpret_cast<const Header*>(buffer_.data()); }

  int fd_;
  bool never_block_on_send_;
  std::vector<std::byte> buffer_;  // kMaxMessageBytes, allocated once
  size_t received_ = 0;
};

// A memory file (memfd, close-on-exec) holding `bytes`, sealed against any change, so that
// the process it is passed to can read but never alter it. Returns the fd; the caller owns it.
StatusOr<int> SealedMemoryFile(const char* name, std::string_view bytes);

// Reads at most `limit` bytes of `fd` from offset 0; kInvalidArgument when it holds more,
// naming `what`.
StatusOr<std::string> ReadWholeFd(int fd, size_t limit, std::string_view what);

// A connected SOCK_SEQPACKET pair, both ends close-on-exec.
Status MakeSocketPair(int fds[2]);

}  // namespace kchain::worker

#endif  // KCHAIN_GATEWAY_WORKER_PROTOCOL_H_
