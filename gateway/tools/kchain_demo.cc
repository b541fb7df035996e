// kchain-demo: the main job's client. Against a running gateway it deploys the samples,
// invokes them over HTTP (binary and JSON), prints their outputs and their cold, warm and hot
// start timings, checks vecadd's output exactly and classifies the CNN's held-out digits.
//
//   kchain-demo [--url http://127.0.0.1:8080] [--samples build/samples] [--hot-runs N]
//               [--wait-ready SECONDS]
//
// Exit status: 0 when everything worked and checked out, 1 otherwise, 2 on bad usage.
#include <httplib.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "kchain/manifest.h"

namespace {

using nlohmann::json;

struct Options {
  std::string url = "http://127.0.0.1:8080";
  std::string samples = "build/samples";
  int hot_runs = 200;
  int wait_ready_s = 30;
};

bool Fail(const std::string& what) {
  std::fprintf(stderr, "kchain-demo: %s\n", what.c_str());
  return false;
}

std::string Describe(const httplib::Result& res) {
  if (!res) return "no response (" + httplib::to_string(res.error()) + ")";
  return "HTTP " + std::to_string(res->status) + ": " + res->body.substr(0, 400);
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

// "queue;dur=0.002, chain;dur=0.021, ..." -> microseconds of `name`, or -1.
double TimingUs(const std::string& header, const std::string& name) {
  const auto at = header.find(name + ";dur=");
  if (at == std::string::npos) return -1;
  return std::atof(header.c_str() + at + name.size() + 5) * 1000.0;
}

struct Call {
  std::string start;
  double client_us = 0;
  std::string server_timing;
  std::string body;
};

bool Invoke(httplib::Client& client, const std::string& name, const std::string& input,
            Call* call) {
  const auto t0 = std::chrono::steady_clock::now();
  auto res =
      client.Post(("/v1/functions/" + name + "/invoke").c_str(), input, "application/octet-stream");
  call->client_us =
      std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
  if (!res || res->status != 200) return Fail("invoke " + name + ": " + Describe(res));
  call->start = res->get_header_value("X-Kchain-Start");
  call->server_timing = res->get_header_value("Server-Timing");
  call->body = std::move(res->body);
  return true;
}

void PrintCall(const char* label, const Call& call) {
  std::printf(
      "  %-6s start  client %8.1f us | server: total %7.1f us, queue %.1f, start %.1f, "
      "run %.1f",
      label, call.client_us, TimingUs(call.server_timing, "total"),
      TimingUs(call.server_timing, "queue"), std::max(0.0, TimingUs(call.server_timing, "start")),
      TimingUs(call.server_timing, "run"));
  const double chain = TimingUs(call.server_timing, "chain");
  if (chain >= 0) std::printf(" (chain %.1f)", chain);
  std::printf("  [%s]\n", call.start.c_str());
}

std::string Preview(const std::string& bytes) {
  std::string out = "[";
  const size_t n = std::min<size_t>(bytes.size() / 4, 10);
  for (size_t i = 0; i < n; ++i) {
    float f;
    std::memcpy(&f, bytes.data() + 4 * i, 4);
    char buf[32];
    std::snprintf(buf, sizeof buf, "%s%.5g", i ? ", " : "", f);
    out += buf;
  }
  if (bytes.size() / 4 > n) out += ", ... " + std::to_string(bytes.size() / 4) + " values";
  return out + "]";
}

bool RunSample(httplib::Client& client, const Options& opt, const std::string& sample,
               const std::string& target) {
  const std::string dir = opt.samples + "/" + sample;
  auto manifest = kchain::LoadManifestFile(dir + "/manifest.json");
  if (!manifest.ok()) return Fail(manifest.status().ToString());
  auto lib_path = kchain::ManifestLibraryFor(*manifest, *kchain::ParseDeviceKind(target));
  if (!lib_path.ok()) return Fail(lib_path.status().ToString());
  auto library = kchain::ReadFileToString(*lib_path);
  auto constants = kchain::ReadFileToString(manifest->constants);
  auto manifest_text = kchain::ReadFileToString(dir + "/manifest.json");
  if (!library.ok() || !constants.ok() || !manifest_text.ok()) {
    return Fail("cannot read the files of " + sample + " (build it first)");
  }

  std::printf("== %s: %s\n", sample.c_str(), kchain::ChainToString(manifest->spec).c_str());
  httplib::MultipartFormDataItems items = {
      {"manifest", *manifest_text, "manifest.json", "application/json"},
      {"library", *library, "kernel.so", "application/octet-stream"},
      {"constants", *constants, "constants.bin", "application/octet-stream"}};
  auto deployed = client.Put(("/v1/functions/" + sample).c_str(), items);
  if (!deployed || (deployed->status != 200 && deployed->status != 201)) {
    return Fail("deploy " + sample + ": " + Describe(deployed));
  }
  const json info = json::parse(deployed->body);
  std::printf("  deployed version %llu: load kernel %.3f ms, load constants %.3f ms (%zu bytes)\n",
              static_cast<unsigned long long>(info["version"].get<uint64_t>()),
              info["load_us"]["library"].get<double>() / 1000.0,
              info["load_us"]["constants"].get<double>() / 1000.0, constants->size());

  // The input: the first held-out digit for the CNN, a pattern for vecadd.
  std::string input(manifest->spec.max_input_bytes, '\0');
  std::string images, labels;
  if (sample == "mnist_cnn") {
    images = kchain::ReadFileToString(dir + "/heldout_images.bin").value();
    labels = kchain::ReadFileToString(dir + "/heldout_labels.bin").value();
    input = images.substr(0, input.size());
  } else {
    for (size_t i = 0; i < input.size() / 4; ++i) {
      const float v = static_cast<float>(i % 1000) * 0.5f;
      std::memcpy(input.data() + 4 * i, &v, 4);
    }
  }

  Call cold, warm, call;
  if (!Invoke(client, sample, input, &cold)) return false;
  PrintCall("cold", cold);
  std::vector<double> hot_client, hot_server;
  for (int i = 0; i < opt.hot_runs; ++i) {
    if (!Invoke(client, sample, input, &call)) return false;
    hot_client.push_back(call.client_us);
    hot_server.push_back(TimingUs(call.server_timing, "total"));
  }
  PrintCall("hot", call);
  std::printf("  hot    x%d   client median %.1f us, server median %.1f us\n", opt.hot_runs,
              Median(hot_client), Median(hot_server));
  auto parked = client.Post(("/v1/functions/" + sample + "/park").c_str());
  if (!parked || parked->status != 200) return Fail("park: " + Describe(parked));
  if (!Invoke(client, sample, input, &warm)) return false;
  PrintCall("warm", warm);
  if (cold.start != "cold" || warm.start != "warm" || call.start != "hot") {
    return Fail("unexpected start types: " + cold.start + ", " + call.start + ", " + warm.start);
  }
  std::printf("  output %s\n", Preview(call.body).c_str());

  if (sample == "vecadd") {
    // Exact: out = input + constant.
    for (size_t i = 0; i < input.size() / 4; ++i) {
      float a, c, o;
      std::memcpy(&a, input.data() + 4 * i, 4);
      std::memcpy(&c, constants->data() + 4 * i, 4);
      std::memcpy(&o, call.body.data() + 4 * i, 4);
      if (o != a + c) return Fail("vecadd: output[" + std::to_string(i) + "] is wrong");
    }
    std::printf("  checked: all 1000000 outputs equal input + constant\n");
  } else {
    // The JSON path once, then every held-out digit over the binary path.
    std::vector<float> pixels(input.size() / 4);
    std::memcpy(pixels.data(), input.data(), input.size());
    auto js = client.Post(("/v1/functions/" + sample + "/invoke").c_str(),
                          json({{"input", pixels}}).dump(), "application/json");
    if (!js || js->status != 200) return Fail("JSON invoke: " + Describe(js));
    const json out = json::parse(js->body);
    const auto& scores = out["output"];
    const auto best = std::max_element(scores.begin(), scores.end()) - scores.begin();
    std::printf("  JSON invoke: digit 0 is a %lld (label %d), %s start, total %.1f us\n",
                static_cast<long long>(best), labels[0], out["start"].get<std::string>().c_str(),
                out["timings_us"]["total"].get<double>());
    size_t correct = 0;
    const size_t count = labels.size();
    for (size_t i = 0; i < count; ++i) {
      if (!Invoke(client, sample, images.substr(i * input.size(), input.size()), &call))
        return false;
      std::vector<float> logits(10);
      std::memcpy(logits.data(), call.body.data(), 40);
      if (std::max_element(logits.begin(), logits.end()) - logits.begin() ==
          static_cast<uint8_t>(labels[i])) {
        ++correct;
      }
    }
    std::printf("  held-out digits over HTTP: %zu/%zu correct (%.2f%% accuracy)\n", correct, count,
                100.0 * static_cast<double>(correct) / static_cast<double>(count));
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "kchain-demo: %s needs a value\n", arg.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (arg == "--url") {
      opt.url = value();
    } else if (arg == "--samples") {
      opt.samples = value();
    } else if (arg == "--hot-runs") {
      opt.hot_runs = std::max(1, std::atoi(value().c_str()));
    } else if (arg == "--wait-ready") {
      opt.wait_ready_s = std::atoi(value().c_str());
    } else {
      std::fprintf(stderr,
                   "usage: kchain-demo [--url URL] [--samples DIR] [--hot-runs N] "
                   "[--wait-ready SECONDS]\n");
      return 2;
    }
  }
  httplib::Client client(opt.url);
  client.set_keep_alive(true);
  client.set_tcp_nodelay(true);  // else headers and body wait on a delayed ACK (40 ms)
  client.set_read_timeout(120, 0);

  // Wait for the gateway to come up.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(opt.wait_ready_s);
  httplib::Result ready = client.Get("/readyz");
  while ((!ready || ready->status != 200) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    ready = client.Get("/readyz");
  }
  if (!ready || ready->status != 200) {
    Fail("the gateway at " + opt.url + " is not ready: " + Describe(ready));
    return 1;
  }
  auto root = client.Get("/v1");
  if (!root || root->status != 200) {
    Fail("GET /v1: " + Describe(root));
    return 1;
  }
  const json server = json::parse(root->body);
  const std::string target = server["device"]["kind"];
  std::printf("gateway %s at %s, device %s (%s kernels)\n\n",
              server["version"].get<std::string>().c_str(), opt.url.c_str(),
              server["device"]["name"].get<std::string>().c_str(), target.c_str());
  bool ok = true;
  for (const char* sample : {"vecadd", "mnist_cnn"}) {
    ok = RunSample(client, opt, sample, target) && ok;
    std::printf("\n");
  }
  return ok ? 0 : 1;
}
