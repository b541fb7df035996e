#include "gateway/core/config.h"

#include <algorithm>
#include <cstdio>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "kchain/device.h"
#include "kchain/manifest.h"
#include "runtime/json_input.h"

namespace kchain::gateway {
namespace {

using Setter = std::function<Status(GatewayConfig*, const std::string&)>;

StatusOr<int64_t> ParseInt(const std::string& text, int64_t lo, int64_t hi) {
  if (text.empty() || text.find_first_not_of("-0123456789") != std::string::npos) {
    return InvalidArgumentError("'" + text + "' is not a whole number");
  }
  errno = 0;
  char* end = nullptr;
  const long long v = std::strtoll(text.c_str(), &end, 10);
  if (errno != 0 || *end != '\0' || v < lo || v > hi) {
    return InvalidArgumentError("'" + text + "' is outside [" + std::to_string(lo) + ", " +
                                std::to_string(hi) + "]");
  }
  return static_cast<int64_t>(v);
}

template <typename Field>
Setter IntSetter(Field GatewayConfig::*field, int64_t lo, int64_t hi) {
  return [=](GatewayConfig* c, const std::string& v) -> Status {
    KCHAIN_ASSIGN_OR_RETURN(int64_t n, ParseInt(v, lo, hi));
    c->*field = static_cast<Field>(n);
    return Status();
  };
}

// A setter that takes one of `choices` ("'x' is not a, b or c" for anything else).
Setter ChoiceSetter(std::string GatewayConfig::*field, std::vector<std::string> choices) {
  return [=](GatewayConfig* c, const std::string& v) -> Status {
    if (std::find(choices.begin(), choices.end(), v) == choices.end()) {
      std::string list;
      for (size_t i = 0; i < choices.size(); ++i) {
        list += (i == 0 ? "" : i + 1 == choices.size() ? " or " : ", ") + choices[i];
      }
      return InvalidArgumentError("'" + v + "' is not " + list);
    }
    c->*field = v;
    return Status();
  };
}

const std::map<std::string, std::pair<Setter, const char*>>& Options() {
  static const auto* options = new std::map<std::string, std::pair<Setter, const char*>>{
      {"listen",
       {[](GatewayConfig* c, const std::string& v) -> Status {
          const auto colon = v.rfind(':');
          if (colon == std::string::npos) {
            return InvalidArgumentError("'" + v + "' is not HOST:PORT");
          }
          KCHAIN_ASSIGN_OR_RETURN(int64_t port, ParseInt(v.substr(colon + 1), 0, 65535));
          c->host = v.substr(0, colon);
          c->port = static_cast<int>(port);
          return Status();
        },
        "HOST:PORT to listen on (default 127.0.0.1:8080; port 0 picks a free one)"}},
      {"host",
       {[](GatewayConfig* c, const std::string& v) {
          c->host = v;
          return Status();
        },
        "address to listen on (default 127.0.0.1; 0.0.0.0 for all)"}},
      {"port", {IntSetter(&GatewayConfig::port, 0, 65535), "port to listen on (default 8080)"}},
      {"data-dir",
       {[](GatewayConfig* c, const std::string& v) {
          c->data_dir = v;
          return Status();
        },
        "where deployed functions are stored (default ./kchain-data)"}},
      {"device",
       {ChoiceSetter(&GatewayConfig::device, {"auto", "cuda", "host"}),
        "auto (cuda when a GPU is visible), cuda or host (default auto)"}},
      {"device-ordinal",
       {IntSetter(&GatewayConfig::device_ordinal, 0, 1024), "which GPU (default 0)"}},
      {"threads",
       {IntSetter(&GatewayConfig::threads, 0, 4096),
        "HTTP worker threads, one per open connection (default 0: 4 per core, at least 16)"}},
      {"memory-budget",
       {[](GatewayConfig* c, const std::string& v) -> Status {
          KCHAIN_ASSIGN_OR_RETURN(c->memory_budget, ParseSize(v));
          return Status();
        },
        "device memory for resident instances, e.g. 8GiB (default 0: 90% of the device)"}},
      {"max-instances",
       {IntSetter(&GatewayConfig::max_instances, 1, 1024), "instances per function (default 4)"}},
      {"max-queue",
       {IntSetter(&GatewayConfig::max_queue, 0, 1000000),
        "invocations waiting per function before 429 (default 64)"}},
      {"invoke-timeout-ms",
       {IntSetter(&GatewayConfig::invoke_timeout_ms, 1, 86400000),
        "per-invocation timeout in ms: the wait for an instance and, with process isolation, "
        "the run (default 30000)"}},
      {"parked-ttl-s",
       {IntSetter(&GatewayConfig::parked_ttl_s, 0, 31536000),
        "seconds a parked instance is kept before it is destroyed (default 600)"}},
      {"max-body",
       {[](GatewayConfig* c, const std::string& v) -> Status {
          KCHAIN_ASSIGN_OR_RETURN(c->max_body, ParseSize(v));
          return Status();
        },
        "largest request body, e.g. 256MiB (default 1GiB)"}},
      {"stage-timing-period",
       {IntSetter(&GatewayConfig::stage_timing_period, 0, 1 << 30),
        "time the stages of every Nth hot run (default 64; 1: every run; 0: never)"}},
      {"port-file",
       {[](GatewayConfig* c, const std::string& v) {
          c->port_file = v;
          return Status();
        },
        "write the bound port to this file once listening (handy with --port 0)"}},
      {"isolation",
       {ChoiceSetter(&GatewayConfig::isolation, {"process", "none"}),
        "process (each instance in a sandboxed worker process) or none (default process)"}},
      {"worker-path",
       {[](GatewayConfig* c, const std::string& v) {
          c->worker_path = v;
          return Status();
        },
        "the kchain-worker executable (default: next to kchain-gateway)"}},
      {"worker-scope",
       {ChoiceSetter(&GatewayConfig::worker_scope, {"tenant", "function", "instance"}),
        "what one worker process (one device context) hosts: every function of a tenant, "
        "one function, or one instance (default tenant)"}},
      {"workers-per-tenant",
       {IntSetter(&GatewayConfig::workers_per_tenant, 1, 1024),
        "worker processes one scope (tenant, with the default scope) may spread its instances "
        "over (default 1)"}},
      {"idle-worker-ttl-s",
       {IntSetter(&GatewayConfig::idle_worker_ttl_s, 0, 31536000),
        "seconds a worker bound to a tenant but hosting no instance is kept (default 600)"}},
      {"prestarted-workers",
       {IntSetter(&GatewayConfig::prestarted_workers, 0, 1024),
        "pre-initialized workers kept ready for cold starts (default 2)"}},
      {"max-workers",
       {IntSetter(&GatewayConfig::max_workers, 1, 65536),
        "worker processes at most (default 256)"}},
      {"worker-memory-limit",
       {[](GatewayConfig* c, const std::string& v) -> Status {
          KCHAIN_ASSIGN_OR_RETURN(c->worker_memory_limit, ParseSize(v));
          return Status();
        },
        "host memory a worker may add to its start-up footprint; 0: none (default 2GiB)"}},
      {"worker-cpu-seconds",
       {IntSetter(&GatewayConfig::worker_cpu_seconds, 0, int64_t{1} << 40),
        "CPU seconds a worker may use before it is retired (when all its instances are idle) "
        "and replaced; 0: no limit (default 3600)"}},
      {"worker-reply-spin-us",
       {IntSetter(&GatewayConfig::worker_reply_spin_us, 0, 1000000),
        "us an invocation spins for a worker's reply before sleeping (default 200; 0: never)"}},
      {"worker-reply-spinners",
       {IntSetter(&GatewayConfig::worker_reply_spinners, 0, 4096),
        "invocations that may spin for a reply at once; the others sleep at once "
        "(default 0: no cap)"}},
      {"worker-request-spin-us",
       {IntSetter(&GatewayConfig::worker_request_spin_us, 0, 1000000),
        "us a worker spins for its next run; saves a wake-up per hot call, costs a core "
        "while spinning (default 50; 0: never)"}},
      {"worker-spin",
       {ChoiceSetter(&GatewayConfig::worker_spin, {"pause", "yield"}),
        "how the reply and request spins wait: pause (the processor's hint) or yield "
        "(sched_yield, other runnable threads first) (default yield)"}},
      {"worker-gpu-wait",
       {[](GatewayConfig* c, const std::string& v) -> Status {
          KCHAIN_RETURN_IF_ERROR(ParseGpuWait(v).status());
          c->worker_gpu_wait = v;
          return Status();
        },
        "how a worker's threads wait for the GPU: auto (CUDA's choice: spin), spin, yield "
        "(sched_yield between polls) or block (sleep until an interrupt) (default auto)"}},
      {"worker-device-connections",
       {IntSetter(&GatewayConfig::worker_device_connections, 0, 32),
        "hardware work queues per worker context (CUDA_DEVICE_MAX_CONNECTIONS, 1..32): fewer "
        "let more workers share a GPU; 0: CUDA's own, 8 (default 2)"}},
      {"worker-sandbox",
       {[](GatewayConfig* c, const std::string& v) -> Status {
          if (v != "on" && v != "off") return InvalidArgumentError("'" + v + "' is not on or off");
          c->worker_sandbox = v == "on";
          return Status();
        },
        "network namespace, seccomp, limits for workers: on or off (default on)"}},
      {"api-keys",
       {[](GatewayConfig* c, const std::string& v) {
          c->api_keys = v;
          return Status();
        },
        "JSON file of API keys and their tenants (default: none, development mode)"}},
      {"log-level",
       {[](GatewayConfig* c, const std::string& v) -> Status {
          KCHAIN_ASSIGN_OR_RETURN(c->log_level, ParseLogLevel(v));
          return Status();
        },
        "debug, info (one line per request), warning or error (default info)"}},
  };
  return *options;
}

std::string Normalize(std::string key) {
  for (char& c : key) {
    if (c == '_') c = '-';
  }
  return key;
}

}  // namespace

StatusOr<uint64_t> ParseSize(std::string_view text) {
  size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  if (digits == 0 || digits > 19) {
    return InvalidArgumentError("'" + std::string(text) + "' is not a size (e.g. 512MiB)");
  }
  const uint64_t value = std::stoull(std::string(text.substr(0, digits)));
  std::string unit(text.substr(digits));
  for (char& c : unit) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  static const std::map<std::string, int> kShift = {
      {"", 0},     {"B", 0},  {"K", 10},  {"KB", 10},  {"KIB", 10}, {"M", 20},  {"MB", 20},
      {"MIB", 20}, {"G", 30}, {"GB", 30}, {"GIB", 30}, {"T", 40},   {"TB", 40}, {"TIB", 40}};
  const auto it = kShift.find(unit);
  if (it == kShift.end()) {
    return InvalidArgumentError("'" + std::string(text) +
                                "': unknown unit (use KiB, MiB, GiB or TiB)");
  }
  if (it->second > 0 && value > (~uint64_t{0} >> it->second)) {
    return InvalidArgumentError("'" + std::string(text) + "' is too large");
  }
  return value << it->second;
}

Status LoadConfigFile(const std::string& path, GatewayConfig* config) {
  KCHAIN_ASSIGN_OR_RETURN(std::string text, kchain::ReadFileToString(path));
  KCHAIN_ASSIGN_OR_RETURN(nlohmann::json doc,
                          kchain::ParseJsonInput(text, "config file '" + path + "'"));
  if (!doc.is_object()) {
    return InvalidArgumentError("config file '" + path + "': must be a JSON object");
  }
  for (const auto& item : doc.items()) {
    const std::string key = Normalize(item.key());
    const auto it = Options().find(key);
    if (it == Options().end()) {
      return InvalidArgumentError("config file '" + path + "': unknown key '" + item.key() + "'");
    }
    const auto& value = item.value();
    const std::string text = value.is_string() ? value.get<std::string>() : value.dump();
    if (Status s = it->second.first(config, text); !s.ok()) {
      return s.WithContext("config file '" + path + "': " + item.key());
    }
  }
  return Status();
}

Status ParseFlags(const std::vector<std::string>& args, GatewayConfig* config, bool* exit_now) {
  *exit_now = false;
  // The config file first, so that flags override it.
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--config" && i + 1 < args.size()) {
      KCHAIN_RETURN_IF_ERROR(LoadConfigFile(args[i + 1], config));
    } else if (args[i].rfind("--config=", 0) == 0) {
      KCHAIN_RETURN_IF_ERROR(LoadConfigFile(args[i].substr(9), config));
    }
  }
  for (size_t i = 0; i < args.size(); ++i) {
    std::string arg = args[i];
    if (arg == "-h" || arg == "--help") {
      std::fputs(Usage().c_str(), stdout);
      *exit_now = true;
      return Status();
    }
    if (arg == "--version") {
      std::printf("kchain-gateway %s\n", KCHAIN_VERSION);
      *exit_now = true;
      return Status();
    }
    if (arg.rfind("--", 0) != 0) {
      return InvalidArgumentError("unexpected argument '" + arg + "' (see --help)");
    }
    std::string value;
    const auto eq = arg.find('=');
    if (eq != std::string::npos) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
    } else {
      if (i + 1 >= args.size()) return InvalidArgumentError(arg + " needs a value");
      value = args[++i];
    }
    const std::string key = Normalize(arg.substr(2));
    if (key == "config") continue;
    const auto it = Options().find(key);
    if (it == Options().end()) {
      return InvalidArgumentError("unknown flag '" + arg + "' (see --help)");
    }
    if (Status s = it->second.first(config, value); !s.ok()) return s.WithContext(arg);
  }
  return Status();
}

std::string Usage() {
  std::string out =
      "usage: kchain-gateway [--config FILE] [--flag VALUE]...\n"
      "Serves kchain functions over HTTP (API under /v1, see docs/api.md).\n\n"
      "  --config FILE                  JSON file with any of the settings below\n";
  for (const auto& [name, option] : Options()) {
    char line[256];
    std::snprintf(line, sizeof line, "  --%-28s %s\n", (name + " V").c_str(), option.second);
    out += line;
  }
  out += "  --version                      print the version\n";
  return out;
}

}  // namespace kchain::gateway
