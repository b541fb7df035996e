// The KServe v2 / Open Inference Protocol surface (/v2) against a real gateway on a loopback
// port (host backend): health, server and model metadata, model configuration, readiness,
// statistics, inference over JSON and binary tensor data (and mixed), every error case with
// its status and {"error": "..."} body, the model repository (index, load, unload), tenants
// and API keys; plus the protocol functions on their own.
#include "gateway/http/v2_protocol.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cmath>
#include <fstream>
#include <random>

#include "gateway/http/auth.h"
#include "gateway_test_util.h"

namespace kchain::gateway::testing {
namespace {

using kchain::testing::SampleFile;

constexpr const char* kHeaderLength = "Inference-Header-Content-Length";

std::vector<float> Images() {
  return VectorOf<float>(ReadFile(SampleFile("mnist_cnn", "heldout_images.bin")));
}
std::vector<float> FirstImage() {
  const auto all = Images();
  return std::vector<float>(all.begin(), all.begin() + 784);
}

// A v2 inference request: the JSON header, then `binary` (binary tensor data), with
// Inference-Header-Content-Length when `length` says so (by default: when there is binary).
httplib::Result Infer(httplib::Client& c, const std::string& model, const json& header,
                      const std::string& binary = "", std::optional<std::string> length = {}) {
  const std::string text = header.dump();
  httplib::Headers headers;
  if (length) {
    headers.emplace(kHeaderLength, *length);
  } else if (!binary.empty()) {
    headers.emplace(kHeaderLength, std::to_string(text.size()));
  }
  return c.Post(("/v2/models/" + model + "/infer").c_str(), headers, text + binary,
                "application/octet-stream");
}

json FloatInput(const std::vector<float>& data, std::vector<int64_t> shape,
                const std::string& name = "input") {
  return {{"name", name}, {"datatype", "FP32"}, {"shape", shape}, {"data", data}};
}
json BinaryInput(size_t bytes, std::vector<int64_t> shape, const std::string& datatype = "FP32") {
  return {{"name", "input"},
          {"datatype", datatype},
          {"shape", shape},
          {"parameters", {{"binary_data_size", bytes}}}};
}

// A response split into its JSON header and its binary part.
struct Parsed {
  json header;
  std::string binary;
};
Parsed Split(const httplib::Result& res) {
  Parsed p;
  if (!res) return p;
  size_t n = res->body.size();
  if (res->has_header(kHeaderLength)) n = std::stoul(res->get_header_value(kHeaderLength));
  p.header = json::parse(res->body.substr(0, n), nullptr, false);
  p.binary = res->body.substr(n);
  return p;
}

// The v2 error body is {"error": "<message>"}: a string, not v1's object.
std::string V2Error(const httplib::Result& res) {
  if (!res) return "<no response>";
  auto body = json::parse(res->body, nullptr, false);
  if (body.is_discarded() || !body.contains("error") || !body["error"].is_string()) {
    return "<not a v2 error body: " + res->body.substr(0, 200) + ">";
  }
  return body["error"];
}

std::vector<float> Logits(const Parsed& p) {
  if (!p.binary.empty()) return VectorOf<float>(p.binary);
  return p.header["outputs"][0]["data"].get<std::vector<float>>();
}

// A request as tritonclient sends an empty POST: no Content-Length, no body. The reply's
// status line, or "" when none came within 5 s.
std::string BodylessPost(int port, const std::string& path) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval timeout{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  const std::string request = "POST " + path + " HTTP/1.1\r\nHost: x\r\n\r\n";
  std::string reply;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
      ::send(fd, request.data(), request.size(), 0) == static_cast<ssize_t>(request.size())) {
    char buf[4096];
    ssize_t n;
    while (reply.find("\r\n") == std::string::npos && (n = ::recv(fd, buf, sizeof buf, 0)) > 0) {
      reply.append(buf, static_cast<size_t>(n));
    }
  }
  ::close(fd);
  return reply.substr(0, reply.find("\r\n"));
}

TEST(V2Protocol, DataTypesMapFromEveryElementType) {
  const std::pair<ElementType, const char*> expected[] = {
      {ElementType::kFloat32, "FP32"},  {ElementType::kFloat64, "FP64"},
      {ElementType::kInt8, "INT8"},     {ElementType::kInt16, "INT16"},
      {ElementType::kInt32, "INT32"},   {ElementType::kInt64, "INT64"},
      {ElementType::kUint8, "UINT8"},   {ElementType::kUint16, "UINT16"},
      {ElementType::kUint32, "UINT32"}, {ElementType::kUint64, "UINT64"},
      {ElementType::kBool, "BOOL"}};
  for (const auto& [type, name] : expected) {
    EXPECT_EQ(v2::DataTypeName(type), name);
    EXPECT_EQ(v2::ConfigDataTypeName(type), std::string("TYPE_") + name);
  }
}

TEST(V2Protocol, ParseAndBuildWithoutHttp) {
  auto manifest = kchain::ParseManifest(TestManifest({"copy_input_to_out"}, 4));
  ASSERT_TRUE(manifest.ok()) << manifest.status();
  const v2::Model model{"m", 3, &*manifest};
  const std::vector<float> values = {1, 2, 3, 4};
  // Binary input: the request points into the body, no copy.
  const std::string header =
      json{{"id", "r1"}, {"inputs", {BinaryInput(16, {1, 4})}}, {"outputs", {{{"name", "output"}}}}}
          .dump();
  const std::string body = header + BytesOf(values);
  auto request = v2::ParseInferRequest(body, header.size(), model);
  ASSERT_TRUE(request.ok()) << request.status();
  EXPECT_TRUE(request->binary_input);
  EXPECT_TRUE(request->batched);
  EXPECT_EQ(request->input(body).data(),
            reinterpret_cast<const std::byte*>(body.data()) + header.size());
  EXPECT_FALSE(request->binary_output);
  auto response = v2::BuildInferResponse(*request, model, request->input(body));
  EXPECT_FALSE(response.binary);
  const json out = json::parse(response.body);
  EXPECT_EQ(out["id"], "r1");
  EXPECT_EQ(out["model_version"], "3");
  EXPECT_EQ(out["outputs"][0]["shape"], json::array({1, 4}));  // the batch dim comes back
  EXPECT_EQ(out["outputs"][0]["data"].get<std::vector<float>>(), values);

  auto bad_length = v2::ParseHeaderLength("12x");
  EXPECT_EQ(bad_length.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(*v2::ParseHeaderLength("120"), 120u);
}

TEST(V2Api, HealthAndServerMetadata) {
  TestGateway gw;
  auto client = gw.Client();
  auto live = client->Get("/v2/health/live");
  ASSERT_TRUE(live);
  EXPECT_EQ(live->status, 200);
  EXPECT_EQ(live->body, "");
  auto ready = client->Get("/v2/health/ready");
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->status, 200);
  auto server = client->Get("/v2");
  ASSERT_TRUE(server);
  ASSERT_EQ(server->status, 200);
  const json meta = json::parse(server->body);
  EXPECT_EQ(meta["name"], "kchain");
  EXPECT_EQ(meta["version"], KCHAIN_VERSION);
  for (const char* extension : {"binary_tensor_data", "model_repository"}) {
    EXPECT_NE(std::find(meta["extensions"].begin(), meta["extensions"].end(), extension),
              meta["extensions"].end())
        << extension;
  }
  // Not ready once shutting down: 400 with the reason, as Triton answers.
  gw.service().BeginShutdown();
  auto closing = client->Get("/v2/health/ready");
  ASSERT_TRUE(closing);
  EXPECT_EQ(closing->status, 400);
  EXPECT_NE(V2Error(closing).find("shutting down"), std::string::npos) << closing->body;
  EXPECT_EQ(client->Get("/v2/health/live")->status, 200);
}

TEST(V2Api, ModelMetadataConfigAndVersions) {
  TestGateway gw;
  auto client = gw.Client();
  ASSERT_EQ(DeploySample(*client, "mnist_cnn", "mnist_cnn")->status, 201);
  const json expected = {
      {"name", "mnist_cnn"},
      {"versions", {"1"}},
      {"platform", "kchain"},
      {"inputs", {{{"name", "input"}, {"datatype", "FP32"}, {"shape", {28, 28}}}}},
      {"outputs", {{{"name", "output"}, {"datatype", "FP32"}, {"shape", {10}}}}}};
  for (const char* path : {"/v2/models/mnist_cnn", "/v2/models/mnist_cnn/versions/1"}) {
    auto res = client->Get(path);
    ASSERT_TRUE(res);
    ASSERT_EQ(res->status, 200) << path << res->body;
    EXPECT_EQ(json::parse(res->body), expected) << path;
  }
  auto config = client->Get("/v2/models/mnist_cnn/config");
  ASSERT_EQ(config->status, 200);
  const json c = json::parse(config->body);
  EXPECT_EQ(c["max_batch_size"], 0);
  EXPECT_EQ(c["input"][0]["name"], "input");
  EXPECT_EQ(c["input"][0]["data_type"], "TYPE_FP32");
  EXPECT_EQ(c["input"][0]["dims"], json::array({28, 28}));
  EXPECT_EQ(c["output"][0]["dims"], json::array({10}));
  EXPECT_EQ(c["instance_group"][0]["kind"], "KIND_CPU");

  // A replace makes version 2 the only one.
  ASSERT_EQ(DeploySample(*client, "mnist_cnn", "mnist_cnn")->status, 200);
  EXPECT_EQ(json::parse(client->Get("/v2/models/mnist_cnn")->body)["versions"], json::array({"2"}));
  for (const char* path : {"/v2/models/mnist_cnn/versions/1", "/v2/models/mnist_cnn/versions/x",
                           "/v2/models/mnist_cnn/versions/1/config"}) {
    auto res = client->Get(path);
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 404) << path;
    EXPECT_NE(V2Error(res).find("its version is 2"), std::string::npos) << V2Error(res);
  }
  auto unknown = client->Get("/v2/models/nope");
  EXPECT_EQ(unknown->status, 404);
  EXPECT_EQ(V2Error(unknown), "unknown model 'nope'");
  EXPECT_EQ(client->Get("/v2/models/bad!name")->status, 400);
}

TEST(V2Api, TensorNamesAndDatatypesComeFromTheManifest) {
  TestGateway gw;
  auto client = gw.Client();
  const std::string manifest =
      R"({"chain": [{"kernel": "copy_input_to_out", "grid": 1, "block": 1}],
      "input": {"dtype": "int32", "name": "INPUT0"}, "max_input_bytes": 32,
      "output": {"dtype": "uint8", "shape": [2, 4], "name": "OUTPUT0"}})";
  ASSERT_EQ(DeployMultipart(*client, "named", manifest, TestLibraryBytes(), "")->status, 201);
  const json meta = json::parse(client->Get("/v2/models/named")->body);
  EXPECT_EQ(meta["inputs"][0], json({{"name", "INPUT0"}, {"datatype", "INT32"}, {"shape", {-1}}}));
  EXPECT_EQ(meta["outputs"][0],
            json({{"name", "OUTPUT0"}, {"datatype", "UINT8"}, {"shape", {2, 4}}}));
  // A shapeless input takes any length up to its capacity (8 int32 here).
  const json request = {{"inputs",
                         {{{"name", "INPUT0"},
                           {"datatype", "INT32"},
                           {"shape", {1, 2}},
                           {"data", {0x04030201, 0x08070605}}}}}};
  auto res = Infer(*client, "named", request);
  ASSERT_EQ(res->status, 200) << res->body;
  const Parsed p = Split(res);
  EXPECT_EQ(p.header["outputs"][0]["name"], "OUTPUT0");
  EXPECT_EQ(p.header["outputs"][0]["shape"], json::array({1, 2, 4}));
  EXPECT_EQ(p.header["outputs"][0]["data"], json::array({1, 2, 3, 4, 5, 6, 7, 8}));
  json too_long = request;
  too_long["inputs"][0]["shape"] = {9};
  too_long["inputs"][0]["data"] = std::vector<int>(9, 0);
  auto big = Infer(*client, "named", too_long);
  EXPECT_EQ(big->status, 413);
  EXPECT_NE(V2Error(big).find("larger than model 'named' accepts (32 bytes)"), std::string::npos)
      << V2Error(big);
  json wrong_name = request;
  wrong_name["inputs"][0]["name"] = "input";
  EXPECT_NE(V2Error(Infer(*client, "named", wrong_name)).find("its input is 'INPUT0'"),
            std::string::npos);
}

TEST(V2Api, ModelReadyFollowsLoadUnloadAndVersions) {
  TestGateway gw;
  auto client = gw.Client();
  ASSERT_EQ(DeploySample(*client, "mnist_cnn", "cnn")->status, 201);
  EXPECT_EQ(client->Get("/v2/models/cnn/ready")->status, 200);
  EXPECT_EQ(client->Get("/v2/models/cnn/versions/1/ready")->status, 200);
  EXPECT_EQ(client->Get("/v2/models/cnn/versions/7/ready")->status, 404);
  auto unknown = client->Get("/v2/models/ghost/ready");
  EXPECT_EQ(unknown->status, 404);
  EXPECT_EQ(V2Error(unknown), "unknown model 'ghost'");
  ASSERT_EQ(client->Post("/v2/repository/models/cnn/unload", "", "application/json")->status, 200);
  auto unloaded = client->Get("/v2/models/cnn/ready");
  EXPECT_EQ(unloaded->status, 400);
  EXPECT_EQ(V2Error(unloaded), "model 'cnn' is unloaded");
  ASSERT_EQ(client->Post("/v2/repository/models/cnn/load", "{}", "application/json")->status, 200);
  EXPECT_EQ(client->Get("/v2/models/cnn/ready")->status, 200);
}

TEST(V2Api, InferTheCnnOverJsonMatchesV1) {
  TestGateway gw;
  auto client = gw.Client();
  ASSERT_EQ(DeploySample(*client, "mnist_cnn", "mnist_cnn")->status, 201);
  const auto image = FirstImage();
  const auto v1 = VectorOf<float>(InvokeBinary(*client, "mnist_cnn", BytesOf(image))->body);
  ASSERT_EQ(v1.size(), 10u);
  EXPECT_NEAR(v1[0], 10.573035f, 1e-4);

  auto res =
      Infer(*client, "mnist_cnn", {{"id", "q-17"}, {"inputs", {FloatInput(image, {28, 28})}}});
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  EXPECT_EQ(res->get_header_value("Content-Type"), "application/json");
  EXPECT_FALSE(res->has_header(kHeaderLength));
  EXPECT_EQ(res->get_header_value("X-Kchain-Start"), "hot");
  EXPECT_NE(res->get_header_value("Server-Timing").find("run;dur="), std::string::npos);
  const json out = json::parse(res->body);
  EXPECT_EQ(out["id"], "q-17");
  EXPECT_EQ(out["model_name"], "mnist_cnn");
  EXPECT_EQ(out["model_version"], "1");
  ASSERT_EQ(out["outputs"].size(), 1u);
  EXPECT_EQ(out["outputs"][0]["name"], "output");
  EXPECT_EQ(out["outputs"][0]["datatype"], "FP32");
  EXPECT_EQ(out["outputs"][0]["shape"], json::array({10}));
  EXPECT_EQ(out["outputs"][0]["data"].get<std::vector<float>>(), v1);

  // Nested data, a leading batch dimension of 1, and an explicit version: the same logits.
  json nested = json::array();
  for (int y = 0; y < 28; ++y) {
    nested.push_back(std::vector<float>(image.begin() + y * 28, image.begin() + (y + 1) * 28));
  }
  json nested_input = FloatInput({}, {28, 28});
  nested_input["data"] = nested;
  auto n = Infer(*client, "mnist_cnn/versions/1", {{"inputs", {nested_input}}});
  ASSERT_EQ(n->status, 200) << n->body;
  EXPECT_EQ(Logits(Split(n)), v1);
  EXPECT_FALSE(json::parse(n->body).contains("id"));
  auto batched = Infer(*client, "mnist_cnn", {{"inputs", {FloatInput(image, {1, 28, 28})}}});
  ASSERT_EQ(batched->status, 200) << batched->body;
  EXPECT_EQ(Split(batched).header["outputs"][0]["shape"], json::array({1, 10}));
  EXPECT_EQ(Logits(Split(batched)), v1);
}

TEST(V2Api, CnnClassifiesTheHeldOutDigitsOverBinaryTensorData) {
  TestGateway gw;
  auto client = gw.Client();
  ASSERT_EQ(DeploySample(*client, "mnist_cnn", "cnn")->status, 201);
  const auto images = Images();
  const std::string labels = ReadFile(SampleFile("mnist_cnn", "heldout_labels.bin"));
  const auto report = json::parse(ReadFile(SampleFile("mnist_cnn", "report.json")));
  const json header = {
      {"inputs", {BinaryInput(3136, {28, 28})}},
      {"outputs", {{{"name", "output"}, {"parameters", {{"binary_data", true}}}}}}};
  size_t correct = 0;
  for (size_t i = 0; i < labels.size(); ++i) {
    auto res = Infer(*client, "cnn", header,
                     std::string(reinterpret_cast<const char*>(images.data() + i * 784), 3136));
    ASSERT_TRUE(res);
    ASSERT_EQ(res->status, 200) << res->body;
    ASSERT_EQ(res->get_header_value("Content-Type"), "application/octet-stream");
    const Parsed p = Split(res);
    ASSERT_EQ(p.header["outputs"][0]["parameters"]["binary_data_size"], 40);
    ASSERT_FALSE(p.header["outputs"][0].contains("data"));
    const auto logits = VectorOf<float>(p.binary);
    ASSERT_EQ(logits.size(), 10u);
    if (std::max_element(logits.begin(), logits.end()) - logits.begin() ==
        static_cast<uint8_t>(labels[i])) {
      ++correct;
    }
  }
  EXPECT_EQ(correct, report["heldout_correct"].get<size_t>());
}

TEST(V2Api, VecaddBinaryJsonAndMixed) {
  TestGateway gw;
  auto client = gw.Client();
  ASSERT_EQ(DeploySample(*client, "vecadd", "vecadd")->status, 201);
  const auto constants = VectorOf<float>(ReadFile(SampleFile("vecadd", "constants.bin")));
  std::vector<float> input(1000000);
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> dist(-100, 100);
  for (auto& v : input) v = dist(rng);
  auto check = [&](const std::vector<float>& out) {
    ASSERT_EQ(out.size(), input.size());
    for (size_t i = 0; i < input.size(); ++i) ASSERT_EQ(out[i], input[i] + constants[i]) << i;
  };

  // Binary in, binary out (request-level binary_data_output, as tritonclient sends it).
  auto binary = Infer(*client, "vecadd",
                      {{"inputs", {BinaryInput(4000000, {1000000})}},
                       {"parameters", {{"binary_data_output", true}}}},
                      BytesOf(input));
  ASSERT_TRUE(binary) << httplib::to_string(binary.error());
  ASSERT_EQ(binary->status, 200) << binary->body.substr(0, 300);
  EXPECT_EQ(binary->get_header_value("X-Kchain-Start"), "cold");
  const Parsed b = Split(binary);
  EXPECT_EQ(b.header["outputs"][0]["parameters"]["binary_data_size"], 4000000);
  check(VectorOf<float>(b.binary));

  // Binary in, JSON out: the output asks for binary_data false, which wins over the request.
  auto mixed1 =
      Infer(*client, "vecadd",
            {{"inputs", {BinaryInput(4000000, {1, 1000000})}},
             {"parameters", {{"binary_data_output", true}}},
             {"outputs", {{{"name", "output"}, {"parameters", {{"binary_data", false}}}}}}},
            BytesOf(input));
  ASSERT_TRUE(mixed1) << httplib::to_string(mixed1.error());
  ASSERT_EQ(mixed1->status, 200) << mixed1->body.substr(0, 300);
  EXPECT_EQ(mixed1->get_header_value("Content-Type"), "application/json");
  const Parsed m1 = Split(mixed1);
  EXPECT_EQ(m1.header["outputs"][0]["shape"], json::array({1, 1000000}));
  check(m1.header["outputs"][0]["data"].get<std::vector<float>>());

  // JSON in, binary out.
  auto mixed2 =
      Infer(*client, "vecadd",
            {{"inputs", {FloatInput(input, {1000000})}},
             {"outputs", {{{"name", "output"}, {"parameters", {{"binary_data", true}}}}}}});
  ASSERT_TRUE(mixed2) << httplib::to_string(mixed2.error());
  ASSERT_EQ(mixed2->status, 200) << mixed2->body.substr(0, 300);
  EXPECT_EQ(mixed2->get_header_value("Content-Type"), "application/octet-stream");
  check(VectorOf<float>(Split(mixed2).binary));
}

// Compressing tensors costs far more than it saves: brotli at the HTTP library's quality takes
// 90 s for vecadd's 9 MB of JSON. Neither protocol's inference responses are compressed,
// whatever the client accepts.
TEST(V2Api, TensorResponsesAreNeverCompressed) {
  TestGateway gw;
  auto client = gw.Client();
  ASSERT_EQ(DeploySample(*client, "mnist_cnn", "cnn")->status, 201);
  const httplib::Headers accept = {{"Accept-Encoding", "br, gzip, deflate"}};
  const json v2_request = {{"inputs", {FloatInput(FirstImage(), {28, 28})}}};
  auto v2 = client->Post("/v2/models/cnn/infer", accept, v2_request.dump(), "application/json");
  ASSERT_EQ(v2->status, 200) << v2->body;
  EXPECT_FALSE(v2->has_header("Content-Encoding")) << v2->get_header_value("Content-Encoding");
  EXPECT_EQ(Logits(Split(v2)).size(), 10u);
  const json v1_request = {{"input", FirstImage()}};
  auto v1 = client->Post("/v1/functions/cnn/invoke", accept, v1_request.dump(), "application/json");
  ASSERT_EQ(v1->status, 200) << v1->body;
  EXPECT_FALSE(v1->has_header("Content-Encoding")) << v1->get_header_value("Content-Encoding");
  EXPECT_EQ(json::parse(v1->body)["output"].size(), 10u);
}

struct BadInfer {
  const char* name;
  json header;
  std::string binary;
  std::optional<std::string> length;
  int status;
  const char* fragment;
};

TEST(V2Api, BadInferenceRequestsGetTheirStatusAndAMessage) {
  TestGateway gw;
  auto client = gw.Client();
  ASSERT_EQ(DeploySample(*client, "mnist_cnn", "cnn")->status, 201);
  const std::string image = BytesOf(FirstImage());
  const json good = FloatInput(FirstImage(), {28, 28});
  auto with = [&](const char* key, json value) {
    json input = good;
    input[key] = std::move(value);
    return json{{"inputs", {input}}};
  };
  const json binary_header = {{"inputs", {BinaryInput(3136, {28, 28})}}};
  const std::vector<BadInfer> cases = {
      {"header_length_not_a_number", binary_header, image, "12abc", 400,
       "Inference-Header-Content-Length must be a byte count"},
      {"header_length_beyond_body", binary_header, image, "999999", 400, "but the body has only"},
      {"header_length_cuts_json", binary_header, image, "10", 400, "JSON is not valid"},
      {"binary_size_disagrees_with_shape",
       {{"inputs", {BinaryInput(3132, {28, 28})}}},
       image.substr(0, 3132),
       std::nullopt,
       400,
       "binary_data_size is 3132 bytes, but shape"},
      {"binary_size_disagrees_with_body", binary_header, image.substr(0, 3000), std::nullopt, 400,
       "holds 3000 bytes after its JSON header"},
      {"binary_size_without_header", binary_header, "", std::nullopt, 400,
       "needs the Inference-Header-Content-Length header"},
      {"bytes_after_json_data",
       {{"inputs", {good}}},
       "xyz",
       std::nullopt,
       400,
       "no input declares parameters.binary_data_size"},
      {"wrong_datatype", with("datatype", "FP64"), "", std::nullopt, 400,
       "has datatype FP64; model 'cnn' takes FP32"},
      {"wrong_shape", with("shape", {784}), "", std::nullopt, 400,
       "has shape [784]; model 'cnn' takes [28, 28] (or [1, 28, 28])"},
      {"batch_dim_not_one", with("shape", {2, 28, 28}), "", std::nullopt, 400, "has shape [2, 28"},
      {"wrong_input_name", with("name", "x"), "", std::nullopt, 400,
       "unknown input 'x' for model 'cnn' (its input is 'input')"},
      {"data_does_not_fit_shape", with("data", std::vector<float>(783, 0.0f)), "", std::nullopt,
       400, "has 783 elements"},
      {"data_not_numbers", with("data", {"a"}), "", std::nullopt, 400, "expected a number"},
      {"two_inputs", {{"inputs", {good, good}}}, "", std::nullopt, 400, "has 2 inputs"},
      {"no_inputs", json::object(), "", std::nullopt, 400, "inputs is required"},
      {"no_data",
       {{"inputs", {{{"name", "input"}, {"datatype", "FP32"}, {"shape", {28, 28}}}}}},
       "",
       std::nullopt,
       400,
       "has no data"},
      {"unknown_output",
       {{"inputs", {good}}, {"outputs", {{{"name", "logits"}}}}},
       "",
       std::nullopt,
       400,
       "unknown output 'logits' for model 'cnn' (its output is 'output')"},
      {"unknown_key",
       {{"inputs", {good}}, {"input", 1}},
       "",
       std::nullopt,
       400,
       "unknown key 'input'"},
      {"shared_memory", with("parameters", {{"shared_memory_region", "r"}}), "", std::nullopt, 400,
       "does not support the shared memory extensions"},
      {"binary_data_output_not_bool",
       {{"inputs", {good}}, {"parameters", {{"binary_data_output", 1}}}},
       "",
       std::nullopt,
       400,
       "binary_data_output must be a boolean"},
  };
  for (const auto& c : cases) {
    auto res = Infer(*client, "cnn", c.header, c.binary, c.length);
    ASSERT_TRUE(res) << c.name;
    EXPECT_EQ(res->status, c.status) << c.name << ": " << res->body;
    EXPECT_NE(V2Error(res).find(c.fragment), std::string::npos) << c.name << ": " << V2Error(res);
  }
  // Not JSON at all.
  auto garbage = client->Post("/v2/models/cnn/infer", "{nope", "application/json");
  EXPECT_EQ(garbage->status, 400);
  EXPECT_NE(V2Error(garbage).find("JSON is not valid"), std::string::npos);
  // Unknown model, wrong version: 404.
  auto unknown = Infer(*client, "ghost", {{"inputs", {good}}});
  EXPECT_EQ(unknown->status, 404);
  EXPECT_EQ(V2Error(unknown), "unknown model 'ghost'");
  auto version = Infer(*client, "cnn/versions/2", {{"inputs", {good}}});
  EXPECT_EQ(version->status, 404);
  EXPECT_EQ(V2Error(version), "model 'cnn' has no version '2' (its version is 1)");

  // Every refusal counted as a failure of the model, none ran; the model still serves.
  const json stats = json::parse(client->Get("/v2/models/cnn/stats")->body)["model_stats"][0];
  EXPECT_EQ(stats["inference_stats"]["fail"]["count"], cases.size() + 2);
  EXPECT_EQ(stats["inference_count"], 0);
  EXPECT_EQ(json::parse(client->Get("/v1/functions/cnn")->body)["instances"]["total"], 0);
  EXPECT_EQ(Infer(*client, "cnn", {{"inputs", {good}}})->status, 200);
}

TEST(V2Api, DeeplyNestedJsonIsRefusedWithoutRecursion) {
  // 100,000 levels used to overflow the stack when an error message printed the value.
  TestGateway gw;
  auto client = gw.Client();
  const std::string manifest =
      R"({"chain": [{"kernel": "copy_input_to_out", "grid": 1, "block": 1}],
          "input": {"dtype": "bool", "shape": [4]}, "output": {"dtype": "bool", "shape": [4]}})";
  ASSERT_EQ(DeployMultipart(*client, "flags", manifest, TestLibraryBytes(), "")->status, 201);
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  const std::string in_shape = R"({"inputs": [{"name": "input", "datatype": "BOOL", "shape": )" +
                               deep + R"(, "data": [true, false, true, false]}]})";
  const std::string in_data =
      R"({"inputs": [{"name": "input", "datatype": "BOOL", "shape": [4], "data": [)" + deep +
      R"(, true, false, true]}]})";
  const std::string shallow_bad_element =
      R"({"inputs": [{"name": "input", "datatype": "BOOL", "shape": [4], "data": [[[[1]]], true, false, true]}]})";
  for (const std::string& body : {in_shape, in_data}) {
    auto res = client->Post("/v2/models/flags/infer", body, "application/json");
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 400) << res->body.substr(0, 200);
    EXPECT_NE(V2Error(res).find("nested deeper than"), std::string::npos) << V2Error(res);
  }
  auto res = client->Post("/v2/models/flags/infer", shallow_bad_element, "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 400) << res->body;
  // The same request, well formed, runs.
  auto good = client->Post(
      "/v2/models/flags/infer",
      R"({"inputs": [{"name": "input", "datatype": "BOOL", "shape": [4], "data": [true, false, true, false]}]})",
      "application/json");
  ASSERT_TRUE(good);
  EXPECT_EQ(good->status, 200) << good->body;
  EXPECT_EQ(client->Get("/v2/health/live")->status, 200);
}

TEST(V2Api, RoutesErrorsAndMethodsSpeakV2) {
  TestGateway gw;
  auto client = gw.Client();
  auto no_route = client->Get("/v2/nothing/here");
  EXPECT_EQ(no_route->status, 404);
  EXPECT_NE(V2Error(no_route).find("no route"), std::string::npos) << no_route->body;
  auto wrong_method = client->Get("/v2/models/m/infer");
  EXPECT_EQ(wrong_method->status, 405);
  EXPECT_EQ(wrong_method->get_header_value("Allow"), "POST");
  EXPECT_NE(V2Error(wrong_method).find("GET is not allowed"), std::string::npos);
  EXPECT_EQ(client->Delete("/v2/models/m")->status, 405);
  // v1 keeps its own error shape.
  EXPECT_EQ(ErrorCode(client->Get("/v1/functions/nope")), "not_found");
}

TEST(V2Api, StatisticsAndMetricsCountV2LikeV1) {
  TestGateway gw;
  auto client = gw.Client();
  ASSERT_EQ(DeploySample(*client, "mnist_cnn", "cnn")->status, 201);
  const json request = {{"inputs", {FloatInput(FirstImage(), {28, 28})}}};
  auto first = Infer(*client, "cnn", request);
  ASSERT_EQ(first->status, 200);
  EXPECT_EQ(first->get_header_value("X-Kchain-Start"), "cold");
  for (int i = 0; i < 2; ++i) ASSERT_EQ(Infer(*client, "cnn", request)->status, 200);
  ASSERT_EQ(InvokeBinary(*client, "cnn", BytesOf(FirstImage()))->status, 200);

  auto stats = client->Get("/v2/models/cnn/stats");
  ASSERT_EQ(stats->status, 200) << stats->body;
  const json s = json::parse(stats->body)["model_stats"];
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0]["name"], "cnn");
  EXPECT_EQ(s[0]["version"], "1");
  EXPECT_EQ(s[0]["inference_count"], 4);
  EXPECT_EQ(s[0]["inference_stats"]["success"]["count"], 4);
  EXPECT_GT(s[0]["inference_stats"]["success"]["ns"].get<uint64_t>(), 0u);
  EXPECT_GT(s[0]["inference_stats"]["compute_infer"]["ns"].get<uint64_t>(), 0u);
  EXPECT_GT(s[0]["last_inference"].get<uint64_t>(), 1700000000000u);
  EXPECT_EQ(json::parse(client->Get("/v2/models/stats")->body)["model_stats"].size(), 1u);

  const std::string metrics = client->Get("/metrics")->body;
  for (const char* line :
       {"kchain_inference_request_success{tenant=\"default\",function=\"cnn\"} 4",
        "kchain_inference_starts{tenant=\"default\",function=\"cnn\",start=\"cold\"} 1",
        "kchain_inference_starts{tenant=\"default\",function=\"cnn\",start=\"hot\"} 3"}) {
    EXPECT_NE(metrics.find(line), std::string::npos) << "missing: " << line;
  }
  // The access log's in-flight count drains to 0 after v2 requests too.
  for (int i = 0; i < 1000 && gw.server().in_flight() != 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_EQ(gw.server().in_flight(), 0);
}

TEST(V2Api, RepositoryIndexLoadAndUnload) {
  TestGateway gw;
  auto client = gw.Client();
  ASSERT_EQ(DeploySample(*client, "mnist_cnn", "cnn")->status, 201);
  ASSERT_EQ(DeploySample(*client, "mnist_cnn", "cnn2")->status, 201);
  const json request = {{"inputs", {FloatInput(FirstImage(), {28, 28})}}};
  ASSERT_EQ(Infer(*client, "cnn", request)->status, 200);
  auto index = [&](const std::string& body = "") {
    auto res = client->Post("/v2/repository/index", body, "application/json");
    EXPECT_EQ(res->status, 200) << res->body;
    return json::parse(res->body);
  };
  EXPECT_EQ(index(), json::parse(R"([
      {"name": "cnn", "version": "1", "state": "READY", "reason": ""},
      {"name": "cnn2", "version": "1", "state": "READY", "reason": ""}])"));

  // Unload: not invocable over either API, instances gone, files kept.
  auto unload = client->Post("/v2/repository/models/cnn/unload",
                             R"({"parameters": {"unload_dependents": false}})", "application/json");
  ASSERT_EQ(unload->status, 200) << unload->body;
  EXPECT_EQ(unload->body, "");
  EXPECT_EQ(index()[0], json::parse(R"({"name": "cnn", "version": "1", "state": "UNAVAILABLE",
                                        "reason": "unloaded"})"));
  EXPECT_EQ(index(R"({"ready": true})").size(), 1u);
  auto refused = Infer(*client, "cnn", request);
  EXPECT_EQ(refused->status, 503);
  EXPECT_NE(V2Error(refused).find("'cnn' is unloaded"), std::string::npos) << refused->body;
  EXPECT_EQ(InvokeBinary(*client, "cnn", BytesOf(FirstImage()))->status, 503);
  const json described = json::parse(client->Get("/v1/functions/cnn")->body);
  EXPECT_EQ(described["state"], "unloaded");
  EXPECT_EQ(described["instances"]["total"], 0);
  EXPECT_EQ(described["starts"]["cold"], 1);  // counters are kept
  EXPECT_TRUE(
      std::filesystem::exists(gw.data_dir() + "/tenants/default/functions/cnn/v1/kernel.so"));
  EXPECT_EQ(client->Get("/v2/models/cnn")->status, 200);  // still deployed: metadata answers

  // Load: back in service with one resident instance, so the next inference is hot.
  ASSERT_EQ(client->Post("/v2/repository/models/cnn/load", "", "application/json")->status, 200);
  const json loaded = json::parse(client->Get("/v1/functions/cnn")->body);
  EXPECT_EQ(loaded["state"], "ready");
  EXPECT_EQ(loaded["instances"]["idle"], 1);
  EXPECT_EQ(loaded["starts"]["cold"], 2);
  auto hot = Infer(*client, "cnn", request);
  ASSERT_EQ(hot->status, 200);
  EXPECT_EQ(hot->get_header_value("X-Kchain-Start"), "hot");
  // Loading a loaded model changes nothing.
  ASSERT_EQ(client->Post("/v2/repository/models/cnn/load", "{}", "application/json")->status, 200);
  EXPECT_EQ(json::parse(client->Get("/v1/functions/cnn")->body)["instances"]["total"], 1);

  // A new deploy loads an unloaded function.
  ASSERT_EQ(client->Post("/v2/repository/models/cnn2/unload", "", "application/json")->status, 200);
  ASSERT_EQ(DeploySample(*client, "mnist_cnn", "cnn2")->status, 200);
  EXPECT_EQ(index()[1]["state"], "READY");
  EXPECT_EQ(index()[1]["version"], "2");

  // Bodyless POSTs (tritonclient's empty ones) are answered at once, not after a read timeout.
  EXPECT_EQ(BodylessPost(gw.port(), "/v2/repository/index"), "HTTP/1.1 200 OK");
  EXPECT_EQ(BodylessPost(gw.port(), "/v2/repository/models/cnn2/unload"), "HTTP/1.1 200 OK");
  EXPECT_EQ(BodylessPost(gw.port(), "/v2/repository/models/cnn2/load"), "HTTP/1.1 200 OK");
  EXPECT_EQ(BodylessPost(gw.port(), "/v2/models/cnn2/infer"), "HTTP/1.1 411 Length Required");

  // Errors.
  auto ghost = client->Post("/v2/repository/models/ghost/load", "", "application/json");
  EXPECT_EQ(ghost->status, 404);
  EXPECT_EQ(V2Error(ghost), "unknown model 'ghost'");
  EXPECT_EQ(client->Post("/v2/repository/models/ghost/unload", "", "application/json")->status,
            404);
  auto config = client->Post("/v2/repository/models/cnn/load",
                             R"({"parameters": {"config": "{}"}})", "application/json");
  EXPECT_EQ(config->status, 400);
  EXPECT_NE(V2Error(config).find("deploy with PUT /v1/functions/cnn"), std::string::npos);
  EXPECT_EQ(client->Post("/v2/repository/index", "[1]", "application/json")->status, 400);
  EXPECT_EQ(client->Post("/v2/repository/index", R"({"ready": 1})", "application/json")->status,
            400);
}

TEST(V2Api, AFunctionThatFailedToLoadIsUnavailable) {
  const std::string dir = FreshDir("v2_broken");
  {
    TestGateway gw({}, dir);
    ASSERT_EQ(DeploySample(*gw.Client(), "mnist_cnn", "cnn")->status, 201);
  }
  std::ofstream(dir + "/tenants/default/functions/cnn/v1/kernel.so", std::ios::trunc) << "junk";
  TestGateway again({}, dir);
  auto client = again.Client();
  const json index = json::parse(client->Post("/v2/repository/index", "", "")->body);
  ASSERT_EQ(index.size(), 1u);
  EXPECT_EQ(index[0]["state"], "UNAVAILABLE");
  const std::string reason = index[0]["reason"];
  EXPECT_NE(reason.find("failed to load"), std::string::npos) << reason;
  EXPECT_EQ(reason.find(dir), std::string::npos) << reason;  // no data directory in messages
  EXPECT_EQ(client->Get("/v2/models/cnn/ready")->status, 400);
  EXPECT_EQ(client->Get("/v2/models/cnn")->status, 503);
  EXPECT_EQ(client->Post("/v2/repository/models/cnn/load", "", "")->status, 503);
  auto infer = Infer(*client, "cnn", {{"inputs", {FloatInput(FirstImage(), {28, 28})}}});
  EXPECT_EQ(infer->status, 503);
  EXPECT_NE(V2Error(infer).find("failed to load"), std::string::npos) << infer->body;
}

constexpr const char* kAlpha = "alpha-key-0123456789";
constexpr const char* kBeta = "beta-key-0123456789";

TEST(V2Api, TenantsAndApiKeysApplyAsOnV1) {
  auto keys =
      ApiKeys::Parse(std::string(R"({"keys": [{"key": ")") + kAlpha +
                     R"(", "tenant": "alpha"}, {"key": ")" + kBeta + R"(", "tenant": "beta"}]})");
  ASSERT_TRUE(keys.ok()) << keys.status();
  TestGatewayOptions options;
  options.keys = &*keys;
  TestGateway gw(options);
  auto alpha = gw.Client(kAlpha), beta = gw.Client(kBeta), anonymous = gw.Client();
  ASSERT_EQ(DeploySample(*alpha, "mnist_cnn", "cnn")->status, 201);
  const json request = {{"inputs", {FloatInput(FirstImage(), {28, 28})}}};
  ASSERT_EQ(Infer(*alpha, "cnn", request)->status, 200);

  // Without a key: 401 everywhere but the health probes, in the v2 error shape.
  std::vector<httplib::Result> refused;
  refused.push_back(anonymous->Get("/v2"));
  refused.push_back(anonymous->Get("/v2/models/cnn"));
  refused.push_back(anonymous->Get("/v2/models/cnn/ready"));
  refused.push_back(Infer(*anonymous, "cnn", request));
  refused.push_back(anonymous->Post("/v2/repository/index", "", "application/json"));
  refused.push_back(gw.Client("not-a-valid-key-at-all")->Get("/v2/models/cnn"));
  for (auto& res : refused) {
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 401);
    EXPECT_EQ(res->get_header_value("WWW-Authenticate"), "Bearer realm=\"kchain\"");
    EXPECT_NE(V2Error(res).find("API key"), std::string::npos) << res->body;
  }
  EXPECT_EQ(anonymous->Get("/v2/health/live")->status, 200);
  EXPECT_EQ(anonymous->Get("/v2/health/ready")->status, 200);

  // Another tenant's model answers exactly as a missing one.
  std::vector<httplib::Result> hidden;
  hidden.push_back(beta->Get("/v2/models/cnn"));
  hidden.push_back(beta->Get("/v2/models/cnn/ready"));
  hidden.push_back(beta->Get("/v2/models/cnn/config"));
  hidden.push_back(beta->Get("/v2/models/cnn/stats"));
  hidden.push_back(Infer(*beta, "cnn", request));
  hidden.push_back(beta->Post("/v2/repository/models/cnn/unload", "", "application/json"));
  hidden.push_back(beta->Post("/v2/repository/models/cnn/load", "", "application/json"));
  hidden.push_back(beta->Get("/v2/models/cnn?tenant=alpha"));
  for (auto& res : hidden) {
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 404) << res->body;
  }
  EXPECT_EQ(V2Error(hidden[0]), "unknown model 'cnn'");
  EXPECT_EQ(V2Error(hidden[4]), "unknown model 'cnn'");
  EXPECT_EQ(json::parse(beta->Post("/v2/repository/index", "", "")->body), json::array());
  EXPECT_EQ(json::parse(beta->Get("/v2/models/stats")->body)["model_stats"], json::array());
  EXPECT_EQ(json::parse(alpha->Post("/v2/repository/index", "", "")->body).size(), 1u);
  EXPECT_EQ(Infer(*alpha, "cnn", request)->status, 200);  // beta's unload touched nothing
}

}  // namespace
}  // namespace kchain::gateway::testing
