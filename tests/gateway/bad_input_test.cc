// A battery of bad requests: each gets the right HTTP status, the right error code and a
// message that says what was wrong; the server stays healthy and keeps serving afterwards.
#include <functional>

#include "gateway_test_util.h"

namespace kchain::gateway::testing {
namespace {

using kchain::testing::SampleFile;

struct BadCase {
  const char* name;
  std::function<httplib::Result(httplib::Client&)> request;
  int status;
  const char* code;
  const char* fragment;  // expected in the error message
};

std::string CnnManifest() { return ReadFile(SampleFile("mnist_cnn", "manifest.json")); }
std::string CnnLibrary() { return ReadFile(SampleFile("mnist_cnn", "libmnist_cnn_host.so")); }
std::string CnnWeights() { return ReadFile(SampleFile("mnist_cnn", "weights.bin")); }
std::string Image() { return std::string(784 * 4, '\0'); }

// uint8 [16] in, uint8 [16] out.
std::string BytesManifest() {
  return R"({"chain": [{"kernel": "copy_input_to_out", "grid": 1, "block": 1}],
             "input": {"dtype": "uint8", "shape": [16]}, "output": {"dtype": "uint8", "shape": [16]}})";
}
// int32, flat, up to 8 elements.
std::string IntManifest() {
  return R"({"chain": [{"kernel": "copy_input_to_out", "grid": 1, "block": 1}],
             "input": {"dtype": "int32"}, "max_input_bytes": 32,
             "output": {"dtype": "int32", "shape": [8]}})";
}

// One stage running `kernel` of the host test library over 4 float32 values.
std::string KernelManifest(const std::string& kernel) {
  return R"({"chain": [{"kernel": ")" + kernel + R"(", "grid": 1, "block": 1}],
             "input": {"dtype": "float32", "shape": [4]}, "output": {"dtype": "float32", "shape": [4]}})";
}
// One element of `dtype` in, copied out.
std::string ScalarManifest(const std::string& dtype) {
  return R"({"chain": [{"kernel": "copy_input_to_out", "grid": 1, "block": 1}],
             "input": {"dtype": ")" +
         dtype + R"(", "shape": [1]}, "output": {"dtype": ")" + dtype + R"(", "shape": [1]}})";
}

httplib::Result Raw(httplib::Client& c, const char* method, const std::string& path,
                    const std::string& body, const std::string& type) {
  httplib::Request req;
  req.method = method;
  req.path = path;
  req.body = body;
  if (!type.empty()) req.set_header("Content-Type", type);
  return c.send(req);
}

std::vector<BadCase> Cases() {
  const std::string inv = "/v1/functions/cnn/invoke";
  return {
      // Invocation: unknown function and bad names.
      {"unknown_function", [](auto& c) { return InvokeBinary(c, "nope", Image()); }, 404,
       "not_found", "no function 'nope'"},
      {"name_with_bang", [](auto& c) { return InvokeBinary(c, "bad!name", Image()); }, 400,
       "invalid_argument", "only letters, digits"},
      {"name_too_long", [](auto& c) { return InvokeBinary(c, std::string(65, 'a'), Image()); }, 400,
       "invalid_argument", "longer than 64"},
      {"name_dotdot", [](auto& c) { return InvokeBinary(c, "..", Image()); }, 400,
       "invalid_argument", "must start with a letter or a digit"},
      {"name_dot_prefix", [](auto& c) { return InvokeBinary(c, ".hidden", Image()); }, 400,
       "invalid_argument", "must start with a letter or a digit"},
      // Invocation: content types and bodies.
      {"no_content_type", [=](auto& c) { return Raw(c, "POST", inv, Image(), ""); }, 400,
       "invalid_argument", "Content-Type"},
      {"text_content_type", [=](auto& c) { return Raw(c, "POST", inv, "hello", "text/plain"); },
       400, "invalid_argument", "Content-Type"},
      {"malformed_json",
       [=](auto& c) { return Raw(c, "POST", inv, "{\"input\": [1, 2", "application/json"); }, 400,
       "invalid_argument", "not valid JSON"},
      {"json_not_object",
       [](auto& c) {
         return InvokeJson(c, "cnn", json::array({1, 2}));
       },
       400, "invalid_argument", "is an object"},
      {"json_missing_input", [](auto& c) { return InvokeJson(c, "cnn", json::object()); }, 400,
       "invalid_argument", "exactly one of"},
      {"json_both_inputs",
       [](auto& c) {
         return InvokeJson(c, "cnn", {{"input", {1}}, {"input_base64", "AA=="}});
       },
       400, "invalid_argument", "exactly one of"},
      {"json_unknown_key",
       [](auto& c) {
         return InvokeJson(c, "cnn", {{"input", {1}}, {"inputs", {1}}});
       },
       400, "invalid_argument", "unknown key 'inputs'"},
      {"json_input_not_array",
       [](auto& c) {
         return InvokeJson(c, "cnn", {{"input", 5}});
       },
       400, "invalid_argument", "must be an array of float32"},
      {"json_wrong_length",
       [](auto& c) {
         return InvokeJson(c, "cnn", {{"input", std::vector<float>(10, 0.5f)}});
       },
       400, "invalid_argument", "has 10 elements; the function takes 784"},
      {"json_string_element",
       [](auto& c) {
         json in = std::vector<float>(784, 0.0f);
         in[3] = "x";
         return InvokeJson(c, "cnn", {{"input", in}});
       },
       400, "invalid_argument", "input[3]: expected a number, got a string"},
      {"json_null_element",
       [](auto& c) {
         json in = std::vector<float>(784, 0.0f);
         in[5] = nullptr;
         return InvokeJson(c, "cnn", {{"input", in}});
       },
       400, "invalid_argument", "input[5]: expected a number, got null"},
      {"json_ragged_nested",
       [](auto& c) {
         json in = json::array();
         for (int y = 0; y < 28; ++y) in.push_back(std::vector<float>(y == 7 ? 27 : 28, 0.f));
         return InvokeJson(c, "cnn", {{"input", in}});
       },
       400, "invalid_argument", "input[7] has 27 elements"},
      {"json_wrong_nested_shape",
       [](auto& c) {
         json in = json::array();
         for (int y = 0; y < 14; ++y) in.push_back(std::vector<float>(56, 0.f));
         return InvokeJson(c, "cnn", {{"input", in}});
       },
       400, "invalid_argument", "has shape [14, 56]"},
      {"json_float_out_of_range",
       [](auto& c) {
         json in = std::vector<double>(784, 0.0);
         in[0] = 1e300;
         return InvokeJson(c, "cnn", {{"input", in}});
       },
       400, "invalid_argument", "out of range for float32"},
      {"json_uint8_out_of_range",
       [](auto& c) {
         json in = std::vector<int>(16, 1);
         in[2] = 300;
         return InvokeJson(c, "bytes", {{"input", in}});
       },
       400, "invalid_argument", "input[2]: 300 is out of range for uint8"},
      {"json_negative_uint8",
       [](auto& c) {
         json in = std::vector<int>(16, 1);
         in[0] = -1;
         return InvokeJson(c, "bytes", {{"input", in}});
       },
       400, "invalid_argument", "out of range for uint8"},
      {"json_fraction_for_int32",
       [](auto& c) {
         return InvokeJson(c, "ints", {{"input", {1, 2.5, 3}}});
       },
       400, "invalid_argument", "input[1]: 2.5 is out of range for int32 (or not an integer)"},
      {"json_too_many_flat_elements",
       [](auto& c) {
         return InvokeJson(c, "ints", {{"input", std::vector<int>(9, 1)}});
       },
       413, "payload_too_large", "more than 8 elements"},
      {"json_bad_base64",
       [](auto& c) {
         return InvokeJson(c, "cnn", {{"input_base64", "not base64!"}});
       },
       400, "invalid_argument", "base64"},
      {"json_base64_wrong_length",
       [](auto& c) {
         return InvokeJson(c, "cnn", {{"input_base64", "AAAA"}});
       },
       400, "invalid_argument", "takes exactly 3136"},
      {"json_bad_output_format",
       [](auto& c) {
         return InvokeJson(c, "cnn",
                           {{"input", std::vector<float>(784)}, {"output_format", "xml"}});
       },
       400, "invalid_argument", "output_format"},
      // Invocation: binary sizes.
      {"binary_too_short", [](auto& c) { return InvokeBinary(c, "cnn", "short"); }, 400,
       "invalid_argument", "takes exactly 3136"},
      {"binary_empty", [](auto& c) { return InvokeBinary(c, "cnn", ""); }, 400, "invalid_argument",
       "input is 0 bytes"},
      {"binary_too_long", [](auto& c) { return InvokeBinary(c, "cnn", Image() + "x"); }, 413,
       "payload_too_large", "accepts at most 3136"},
      {"binary_not_whole_elements",
       [](auto& c) { return InvokeBinary(c, "ints", std::string(7, '\1')); }, 400,
       "invalid_argument", "not a whole number of int32"},
      {"body_over_server_limit",
       [](auto& c) { return InvokeBinary(c, "cnn", std::string(2 << 20, '\0')); }, 413,
       "payload_too_large", "larger than the server's limit"},
      {"kernel_reports_error",
       [](auto& c) { return InvokeBinary(c, "fails", std::string(4, '\0')); }, 502, "kernel_error",
       "input shorter than 8 bytes"},
      // Deploy.
      {"deploy_no_content_type",
       [](auto& c) { return Raw(c, "PUT", "/v1/functions/x", "abc", ""); }, 400, "invalid_argument",
       "multipart/form-data"},
      {"deploy_missing_manifest",
       [](auto& c) {
         return c.Put("/v1/functions/x",
                      httplib::MultipartFormDataItems{{"library", CnnLibrary(), "k.so", ""}});
       },
       400, "invalid_argument", "'manifest' is missing"},
      {"deploy_missing_library",
       [](auto& c) {
         return c.Put("/v1/functions/x",
                      httplib::MultipartFormDataItems{{"manifest", CnnManifest(), "m.json", ""}});
       },
       400, "invalid_argument", "'library' is missing"},
      {"deploy_unknown_field",
       [](auto& c) {
         return c.Put("/v1/functions/x",
                      httplib::MultipartFormDataItems{{"manifest", CnnManifest(), "m.json", ""},
                                                      {"library", CnnLibrary(), "k.so", ""},
                                                      {"weights", CnnWeights(), "w.bin", ""}});
       },
       400, "invalid_argument", "unknown multipart field 'weights'"},
      {"deploy_manifest_not_json",
       [](auto& c) { return DeployMultipart(c, "x", "{chain:", CnnLibrary(), CnnWeights()); }, 400,
       "invalid_argument", "manifest: not valid JSON"},
      {"deploy_manifest_invalid",
       [](auto& c) {
         json m = json::parse(CnnManifest());
         m["chain"][1]["block"] = 2048;
         return DeployMultipart(c, "cnn2", m.dump(), CnnLibrary(), CnnWeights());
       },
       400, "invalid_argument", "block 2048"},
      {"deploy_manifest_empty_chain",
       [](auto& c) {
         json m = json::parse(CnnManifest());
         m["chain"] = json::array();
         return DeployMultipart(c, "cnn2", m.dump(), CnnLibrary(), CnnWeights());
       },
       400, "invalid_argument", "chain is empty"},
      {"deploy_corrupt_library",
       [](auto& c) {
         return DeployMultipart(c, "mnist_cnn", CnnManifest(), "not a library at all",
                                CnnWeights());
       },
       400, "invalid_argument", "not an ELF"},
      {"deploy_truncated_library",
       [](auto& c) {
         return DeployMultipart(c, "mnist_cnn", CnnManifest(), CnnLibrary().substr(0, 300),
                                CnnWeights());
       },
       400, "invalid_argument", "truncated"},
      {"deploy_missing_kernel",
       [](auto& c) {
         return DeployMultipart(c, "mnist_cnn", CnnManifest(), TestLibraryBytes(), CnnWeights());
       },
       400, "invalid_argument", "kernel 'conv1' is not exported"},
      {"deploy_wrong_target",
       [](auto& c) {
         return DeployMultipart(c, "mnist_cnn", CnnManifest(), TestLibraryBytes("test_claims_cuda"),
                                CnnWeights());
       },
       400, "invalid_argument", "targets 'cuda'"},
      {"deploy_wrong_abi",
       [](auto& c) {
         return DeployMultipart(c, "mnist_cnn", CnnManifest(), TestLibraryBytes("test_abi_major"),
                                CnnWeights());
       },
       400, "invalid_argument", "major version must match"},
      {"deploy_not_a_kchain_library",
       [](auto& c) {
         return DeployMultipart(c, "mnist_cnn", CnnManifest(), TestLibraryBytes("test_no_module"),
                                CnnWeights());
       },
       400, "invalid_argument", "not a kchain kernel library"},
      {"deploy_constants_too_large",
       [](auto& c) {
         return DeployMultipart(c, "mnist_cnn", CnnManifest(), CnnLibrary(), CnnWeights() + "xx");
       },
       400, "invalid_argument", "larger than declared"},
      {"deploy_constants_missing",
       [](auto& c) { return DeployMultipart(c, "mnist_cnn", CnnManifest(), CnnLibrary(), ""); },
       400, "invalid_argument", "none were sent"},
      {"deploy_bad_name",
       [](auto& c) { return DeployMultipart(c, "a b", CnnManifest(), CnnLibrary(), CnnWeights()); },
       400, "invalid_argument", "function name"},
      {"deploy_truncated_multipart",
       [](auto& c) {
         const std::string body =
             "--XYZ\r\nContent-Disposition: form-data; name=\"manifest\"\r\n\r\n{\"chain\":";
         return Raw(c, "PUT", "/v1/functions/x", body, "multipart/form-data; boundary=XYZ");
       },
       400, "invalid_argument", "malformed request"},
      {"deploy_json_unknown_upload",
       [](auto& c) {
         json body = {{"manifest", json::parse(CnnManifest())}, {"library", std::string(64, 'a')}};
         return c.Put("/v1/functions/mnist_cnn", body.dump(), "application/json");
       },
       400, "invalid_argument", "no upload with id"},
      {"deploy_json_malformed_upload_id",
       [](auto& c) {
         json body = {{"manifest", json::parse(CnnManifest())}, {"library", "../../etc/passwd"}};
         return c.Put("/v1/functions/mnist_cnn", body.dump(), "application/json");
       },
       400, "invalid_argument", "is not a SHA-256"},
      // Kernel names must name functions the library itself defines: not the C library's
      // (dlsym searches dependencies too), not data.
      {"deploy_kernel_from_libc_abort",
       [](auto& c) {
         return DeployMultipart(c, "x", KernelManifest("abort"), TestLibraryBytes(), "");
       },
       400, "invalid_argument", "comes from a library it depends on"},
      {"deploy_kernel_from_libc_exit",
       [](auto& c) {
         return DeployMultipart(c, "x", KernelManifest("exit"), TestLibraryBytes(), "");
       },
       400, "invalid_argument", "comes from a library it depends on"},
      {"deploy_kernel_from_libc_system",
       [](auto& c) {
         return DeployMultipart(c, "x", KernelManifest("system"), TestLibraryBytes(), "");
       },
       400, "invalid_argument", "comes from a library it depends on"},
      {"deploy_kernel_is_a_data_symbol",
       [](auto& c) {
         return DeployMultipart(c, "x", KernelManifest("kchain_module_target"), TestLibraryBytes(),
                                "");
       },
       400, "invalid_argument", "reserved"},
      {"deploy_kernel_is_init",
       [](auto& c) {
         return DeployMultipart(c, "x", KernelManifest("_init"), TestLibraryBytes(), "");
       },
       400, "invalid_argument", "reserved"},
      // Manifests: numbers out of range, duplicate keys, depth.
      {"deploy_grid_1e999",
       [](auto& c) {
         std::string m = KernelManifest("noop");
         m.replace(m.find("\"grid\": 1"), 9, "\"grid\": 1e999");
         return DeployMultipart(c, "x", m, TestLibraryBytes(), "");
       },
       400, "invalid_argument", "number out of range"},
      {"deploy_duplicate_manifest_key",
       [](auto& c) {
         std::string m = KernelManifest("noop");
         m.insert(1, "\"tmp_bytes\": 4, \"tmp_bytes\": 8, ");
         return DeployMultipart(c, "x", m, TestLibraryBytes(), "");
       },
       400, "invalid_argument", "duplicate key 'tmp_bytes'"},
      {"deploy_manifest_deeply_nested",
       [](auto& c) {
         std::string m =
             "{\"description\": " + std::string(100000, '[') + std::string(100000, ']') + "}";
         return DeployMultipart(c, "x", m, TestLibraryBytes(), "");
       },
       400, "invalid_argument", "nested deeper than"},
      {"deploy_manifest_description_too_long",
       [](auto& c) {
         json m = json::parse(KernelManifest("noop"));
         m["description"] = std::string(5000, 'd');
         return DeployMultipart(c, "x", m.dump(), TestLibraryBytes(), "");
       },
       400, "invalid_argument", "description is longer than 4096"},
      // JSON invoke bodies: depth, duplicates, integers beyond 64 bits.
      {"json_invoke_deeply_nested",
       [=](auto& c) {
         return Raw(c, "POST", inv,
                    "{\"input\": " + std::string(100000, '[') + std::string(100000, ']') + "}",
                    "application/json");
       },
       400, "invalid_argument", "nested deeper than"},
      {"json_invoke_duplicate_key",
       [=](auto& c) {
         return Raw(c, "POST", inv, "{\"input\": [1], \"input\": [2]}", "application/json");
       },
       400, "invalid_argument", "duplicate key 'input'"},
      {"json_uint64_two_to_the_64",
       [](auto& c) {
         return Raw(c, "POST", "/v1/functions/u64/invoke", "{\"input\": [18446744073709551616]}",
                    "application/json");
       },
       400, "invalid_argument", "out of range for uint64"},
      {"json_int64_two_to_the_63",
       [](auto& c) {
         return Raw(c, "POST", "/v1/functions/i64/invoke", "{\"input\": [9.2233720368547758e18]}",
                    "application/json");
       },
       400, "invalid_argument", "out of range for int64"},
      {"upload_wrong_type", [](auto& c) { return c.Post("/v1/uploads", "abc", "text/plain"); }, 400,
       "invalid_argument", "application/octet-stream"},
      // Other endpoints.
      {"describe_unknown", [](auto& c) { return c.Get("/v1/functions/ghost"); }, 404, "not_found",
       "no function 'ghost'"},
      {"delete_unknown", [](auto& c) { return c.Delete("/v1/functions/ghost"); }, 404, "not_found",
       "no function 'ghost'"},
      {"park_unknown", [](auto& c) { return c.Post("/v1/functions/ghost/park"); }, 404, "not_found",
       "no function 'ghost'"},
      {"unknown_route", [](auto& c) { return c.Get("/v3/nothing"); }, 404, "not_found",
       "no route for GET /v3/nothing"},
      {"wrong_method", [](auto& c) { return c.Get("/v1/functions/cnn/invoke"); }, 405,
       "method_not_allowed", "GET is not allowed"},
      {"delete_collection", [](auto& c) { return c.Delete("/v1/functions"); }, 405,
       "method_not_allowed", "DELETE is not allowed"},
      {"post_without_length",
       [](auto& c) {
         httplib::Request req;
         req.method = "POST";
         req.path = "/v1/functions/cnn/invoke";
         req.set_header("Content-Type", "application/octet-stream");
         // httplib's client adds Content-Length; a raw socket shows what curl -X POST sends.
         return c.send(req);
       },
       400, "invalid_argument", "input is 0 bytes"},
      {"form_encoded_upload",
       [](auto& c) {
         return c.Post("/v1/uploads", std::string(10000, 'a'), "application/x-www-form-urlencoded");
       },
       413, "payload_too_large", "form-encoded bodies are limited to 8 KiB"},
  };
}

class GatewayBadInput : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    gateway_ = new TestGateway({}, "", /*max_body=*/1 << 20);
    auto c = gateway_->Client();
    ASSERT_EQ(DeploySample(*c, "mnist_cnn", "cnn")->status, 201);
    ASSERT_EQ(DeployMultipart(*c, "bytes", BytesManifest(), TestLibraryBytes(), "")->status, 201);
    ASSERT_EQ(DeployMultipart(*c, "ints", IntManifest(), TestLibraryBytes(), "")->status, 201);
    const std::string fails =
        R"({"chain": [{"kernel": "fail_on_short_input", "grid": 1, "block": 1}],
        "input": {"dtype": "uint8"}, "max_input_bytes": 16, "output": {"dtype": "uint8", "shape": [16]}})";
    ASSERT_EQ(DeployMultipart(*c, "fails", fails, TestLibraryBytes(), "")->status, 201);
    ASSERT_EQ(DeployMultipart(*c, "u64", ScalarManifest("uint64"), TestLibraryBytes(), "")->status,
              201);
    ASSERT_EQ(DeployMultipart(*c, "i64", ScalarManifest("int64"), TestLibraryBytes(), "")->status,
              201);
  }
  static void TearDownTestSuite() {
    delete gateway_;
    gateway_ = nullptr;
  }
  static TestGateway* gateway_;
};
TestGateway* GatewayBadInput::gateway_ = nullptr;

TEST_F(GatewayBadInput, EveryCaseGetsTheRightStatusAndAClearMessage) {
  const auto cases = Cases();
  ASSERT_GE(cases.size(), 30u);
  for (const BadCase& c : cases) {
    SCOPED_TRACE(c.name);
    auto client = gateway_->Client();
    auto res = c.request(*client);
    ASSERT_TRUE(res) << c.name << ": no response: " << httplib::to_string(res.error());
    EXPECT_EQ(res->status, c.status) << c.name << ": " << res->body.substr(0, 300);
    EXPECT_EQ(res->get_header_value("Content-Type"), "application/json") << c.name;
    EXPECT_EQ(ErrorCode(res), c.code) << c.name << ": " << res->body.substr(0, 300);
    EXPECT_NE(ErrorMessage(res).find(c.fragment), std::string::npos)
        << c.name << ": message was: " << ErrorMessage(res);
  }
  std::printf("%zu bad requests checked\n", cases.size());
}

TEST_F(GatewayBadInput, TheServerIsHealthyAndServesAfterwards) {
  auto client = gateway_->Client();
  for (const BadCase& c : Cases()) (void)c.request(*client);  // again, all of them
  EXPECT_EQ(client->Get("/healthz")->status, 200);
  EXPECT_EQ(client->Get("/readyz")->status, 200);
  auto res = InvokeBinary(*client, "cnn", Image());
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  // Nothing half-written was left by the failed deploys.
  auto list = json::parse(client->Get("/v1/functions")->body)["functions"];
  EXPECT_EQ(list.size(), 6u);
  for (const auto& f : list) EXPECT_EQ(f["version"], 1) << f["name"];
  EXPECT_TRUE(std::filesystem::is_empty(gateway_->data_dir() + "/tmp"));
  EXPECT_FALSE(std::filesystem::exists(gateway_->data_dir() + "/tenants/default/functions/x"));
  EXPECT_FALSE(
      std::filesystem::exists(gateway_->data_dir() + "/tenants/default/functions/mnist_cnn"));
}

}  // namespace
}  // namespace kchain::gateway::testing
