// The gateway <-> kchain-worker protocol (version 3).
//
// A worker hosts the instances of one scope (a tenant, by default) on one device: many
// functions loaded, many instances, each with its own stream, buffers and CUDA graph, and a
// thread of its own in the worker, so that instances run at the same time.
//
// Two channels:
//  - Control messages (load or unload a function, create an instance, exit) travel over a
//    SOCK_SEQPACKET Unix socket pair (message boundaries kept; the worker's end is its fd 3),
//    one request and its reply at a time; the reply echoes the request's id. File
//    descriptors (the library opened read-only, the manifest and constants in sealed memory
//    files, an instance's shared memory) ride along as SCM_RIGHTS.
//  - Each instance's requests (run, park, wake, destroy) and replies travel on the first
//    page of its shared memory (memfd), the control page below, with futexes to wake the side
//    that sleeps. Input and output live in the same shared memory, which the worker registers
//    as page-locked, so input and output bytes cross the process boundary exactly once.
//
// No JSON, no allocation on the run path. Thread-safety: a Channel is used by one thread at a
// time; a control page has one gateway thread and one worker thread.
#ifndef KCHAIN_GATEWAY_WORKER_PROTOCOL_H_
#define KCHAIN_GATEWAY_WORKER_PROTOCOL_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kchain/status.h"

namespace kchain::worker {

inline constexpr uint32_t kProtocolVersion = 3;
// The worker's end of the socket pair.
inline constexpr int kWorkerSocketFd = 3;
// Largest message: header, body and trailing text (error messages are cut to fit).
inline constexpr size_t kMaxMessageBytes = 64 * 1024;

enum class MessageType : uint32_t {
  kReady = 1,  // worker -> gateway, once, after start-up: ReadyBody
  kLoad,       // gateway -> worker: LoadBody; fds: library, manifest[, constants]
  kLoaded,     // worker -> gateway: LoadedBody
  kUnload,     // gateway -> worker: UnloadBody
  kUnloaded,   // worker -> gateway: no body
  kCreate,     // gateway -> worker: CreateBody; fds: the instance's shared memory
  kCreated,    // worker -> gateway: CreatedBody
  kError,      // worker -> gateway, in reply to anything: ErrorBody + message
  kExit,       // gateway -> worker: no body; the worker exits 0
};

struct Header {
  uint32_t type;
  uint32_t body_bytes;  // everything after the header
  uint64_t request_id;  // set by the gateway; a reply carries its request's
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
  uint64_t free_memory_bytes;   // device memory free once this worker's context exists
  uint64_t baseline_rss_bytes;  // resident memory once ready (CUDA context and runtime)
  double init_us;               // start-up, device context creation included
  char device_name[256];
  char sandbox_notes[512];  // why a measure is missing, where one is
};

// LOAD: loads (and validates) a function version under the gateway's id for it.
struct LoadBody {
  uint64_t function_id;
  uint32_t has_constants;   // a constants fd follows the manifest fd
  uint32_t manifest_bytes;  // length of the manifest in its memory file
};

struct LoadedBody {
  uint64_t function_id;
  double library_us;    // reading, checking, copying and dlopen
  double constants_us;  // reading the constants into pinned memory
};

struct UnloadBody {
  uint64_t function_id;
};

// CREATE: a new instance of a loaded function, in the shared memory passed along.
struct CreateBody {
  uint64_t function_id;
  uint64_t instance_id;
  uint32_t stage_timing_period;
  uint32_t graph_disabled;
  uint32_t request_spin_us;  // how long the instance's thread spins for its next request
  uint32_t spin_yield;       // 1: that spin calls sched_yield(), 0: it uses CpuRelax()
  uint64_t shm_bytes;        // size of the shared memory
  uint64_t input_offset;     // where the input staging starts in it
  uint64_t output_offset;    // where the output staging starts in it
};

struct CreatedBody {
  uint64_t instance_id;
  double create_us;  // stream, buffers (constants upload excluded)
  double upload_us;  // constants upload
};

struct ErrorBody {
  uint32_t status_code;
  uint32_t broken;  // the worker's device context is gone; it exits
  // Followed by the message.
};

// --- An instance's control page: the first page of its shared memory ---
//
//   [0, 4)        the running stage + 1 (the runtime stores it before each launcher)
//   [64, 68)      request sequence number (the gateway stores it after the fields below; a
//                 futex the instance's thread sleeps on)
//   [68, 72)      request operation (Op)
//   [72, 80)      request input length (runs)
//   [80, 84)      1 while the instance's thread sleeps on the request futex
//   [128, 132)    reply sequence number (the worker stores it after the reply; a futex the
//                 gateway's waiting thread sleeps on)
//   [132, 136)    1 while a gateway thread sleeps on the reply futex
//   [192, ...)    the RanBody of the latest reply
//   [512, 4096)   its error message, NUL-terminated
// Requests and replies sit on different cache lines. Each side stores its flag before it
// looks at the other's sequence, and the other stores its sequence before it looks at the
// flag, so a wake-up is never lost: a side that finds the flag down knows the sleeper will
// see the new sequence before it sleeps (FUTEX_WAIT checks the value atomically).
enum class Op : uint32_t { kRun = 1, kPark = 2, kWake = 3, kDestroy = 4 };

inline constexpr size_t kControlProgressOffset = 0;
inline constexpr size_t kControlRequestSequenceOffset = 64;
inline constexpr size_t kControlRequestOpOffset = 68;
inline constexpr size_t kControlRequestBytesOffset = 72;
inline constexpr size_t kControlWorkerSleepingOffset = 80;
inline constexpr size_t kControlReplySequenceOffset = 128;
inline constexpr size_t kControlGatewayWaitingOffset = 132;
inline constexpr size_t kControlReplyOffset = 192;
inline constexpr size_t kControlMessageOffset = 512;
inline constexpr size_t kControlPageBytes = 4096;

// The reply to any instance request.
struct RanBody {
  uint32_t sequence;     // the request's
  uint32_t op;           // the request's
  uint32_t status_code;  // kchain::StatusCode
  uint32_t mode;         // kchain::ExecMode (runs)
  uint32_t stages_timed;
  uint32_t broken;  // the worker's device context is gone; it exits after replying
  double input_copy_us;
  double chain_us;
  double output_copy_us;
  double total_us;
  double create_us;  // wake: buffers re-allocated
  double upload_us;  // wake: constants re-uploaded
};

static_assert(sizeof(RanBody) <= kControlMessageOffset - kControlReplyOffset);

// A 32-bit word of a control page, as an atomic.
inline std::atomic<uint32_t>& PageWord(std::byte* page, size_t offset) {
  return *reinterpret_cast<std::atomic<uint32_t>*>(page + offset);
}
inline std::atomic<uint64_t>& PageWord64(std::byte* page, size_t offset) {
  return *reinterpret_cast<std::atomic<uint64_t>*>(page + offset);
}

// Sleeps while `*word == expected`, up to `timeout_ms` (-1: no limit). Shared futexes: the
// word lives in memory two processes map. Returns when woken, on timeout, or at once when
// the value differs; callers look at the word again.
void FutexWait(std::atomic<uint32_t>* word, uint32_t expected, int timeout_ms);
// Wakes every thread sleeping on `word`.
void FutexWake(std::atomic<uint32_t>* word);

// A hint to the processor inside a spin loop (x86 PAUSE, Arm YIELD), so that a spinning
// thread yields its core's resources to its sibling.
inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__) || defined(__arm__)
  asm volatile("yield");
#endif
}

// One step of a spin loop: the processor hint, or with `yield` a sched_yield(), which hands
// the core to any other runnable thread (on an oversubscribed host, the thread that will
// post what the spinner waits for) and returns at once when there is none.
void SpinPause(bool yield);

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

// What a worker was doing when it reported a failure.
enum class WorkerStep {
  kSetUp,  // loading a library or starting an instance: the library or manifest may be at fault
  kRun,    // a run, park or wake of an instance, whose input the gateway has already checked
};

// The failure a worker reported, as the gateway passes it on. A worker runs tenant code, so its
// code is a claim, not a fact: one that could describe the worker's own failure at `step`
// passes; any other (one that would blame the client's input or credentials, kInternal that
// would blame the gateway, a number that is no code) becomes kKernelError, the function's
// failure (502), and the text says what the worker claimed. Never kOk.
Status WorkerFailure(uint32_t raw_code, std::string text, WorkerStep step);

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

// Means "any request id" to DecodeReply (the READY message answers no request).
inline constexpr uint64_t kAnyRequest = ~uint64_t{0};

// Decodes the last message received on `channel` as the reply to request `request_id`,
// expecting `expected` with a body of at least `body_bytes` bytes (optionally followed by
// text), copied into `body`. A reply to another request is malformed.
Reply DecodeReply(const Channel& channel, MessageType expected, void* body, size_t body_bytes,
                  uint64_t request_id = kAnyRequest);

// Checks a RanBody copied out of the control page: its codes and flags are in range and its
// timings finite and non-negative. kInternal naming the bad field.
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
              std::span<const int> fds = {}, uint64_t request_id = 0);

  // Takes one message if one is waiting; kDeadlineExceeded if none is (one syscall).
  Status TryReceive();

  // Waits up to `timeout_ms` (-1: forever) for one message. kDeadlineExceeded on timeout,
  // kUnavailable when the peer has closed or died. On success the message stays valid until
  // the next Receive. Received fds are appended to `fds` (the caller owns them).
  Status Receive(int timeout_ms, std::vector<int>* fds = nullptr);

  MessageType type() const { return static_cast<MessageType>(header().type); }
  uint64_t request_id() const { return header().request_id; }
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
