// Manifest parsing: good manifests round-trip; every malformed one gets a message with the
// JSON path of the offending value.
#include "kchain/manifest.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

namespace kchain {
namespace {

constexpr const char* kGood = R"({
  "name": "mnist_cnn",
  "chain": [{"kernel": "conv1", "grid": 14, "block": 256},
            {"kernel": "pool", "grid": 1, "block": 256}],
  "input": {"dtype": "float32", "shape": [28, 28]},
  "output": {"dtype": "float32", "shape": [10]},
  "tmp_bytes": 14688,
  "constant_bytes": 9372,
  "library": {"cuda": "libcnn_cuda.so", "host": "libcnn_host.so"},
  "constants": "weights.bin"
})";

TEST(Manifest, ParsesAndDerivesSizesFromShapes) {
  auto m = ParseManifest(kGood);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->name, "mnist_cnn");
  ASSERT_EQ(m->spec.chain.size(), 2u);
  EXPECT_EQ(m->spec.chain[1].kernel, "pool");
  EXPECT_EQ(m->spec.chain[0].grid, 14);
  EXPECT_EQ(m->spec.max_input_bytes, 3136u);  // from input.shape
  EXPECT_EQ(m->spec.out_bytes, 40u);          // from output.shape
  EXPECT_EQ(m->spec.tmp_bytes, 14688u);
  EXPECT_EQ(m->spec.constant_bytes, 9372u);
  EXPECT_EQ(m->spec.input.shape, (std::vector<int64_t>{28, 28}));
  EXPECT_EQ(m->libraries.at("host"), "libcnn_host.so");
  EXPECT_EQ(m->constants, "weights.bin");
}

TEST(Manifest, RoundTripsThroughCanonicalJson) {
  auto m = ParseManifest(kGood);
  ASSERT_TRUE(m.ok());
  auto again = ParseManifest(ManifestToJson(*m));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(ManifestToJson(*again), ManifestToJson(*m));
  EXPECT_EQ(again->spec.out_bytes, 40u);
}

TEST(Manifest, TensorNamesAreOptionalAndRoundTrip) {
  auto unnamed = ParseManifest(kGood);
  ASSERT_TRUE(unnamed.ok());
  EXPECT_EQ(unnamed->input_name, "");
  EXPECT_EQ(ManifestToJson(*unnamed).find("\"name\": \"INPUT"), std::string::npos);
  auto m = ParseManifest(R"({"chain": [{"kernel": "k", "grid": 1, "block": 1}],
    "input": {"dtype": "float32", "shape": [4], "name": "INPUT__0"},
    "output": {"dtype": "float32", "shape": [4], "name": "logits:0"}})");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->input_name, "INPUT__0");
  EXPECT_EQ(m->output_name, "logits:0");
  auto again = ParseManifest(ManifestToJson(*m));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->input_name, "INPUT__0");
  EXPECT_EQ(again->output_name, "logits:0");
}

TEST(Manifest, ExplicitSizesWithoutShapes) {
  auto m = ParseManifest(R"({"chain": [{"kernel": "k", "grid": 1, "block": 1}],
    "input": {"dtype": "uint8"}, "output": {"dtype": "int32"},
    "max_input_bytes": 100, "out_bytes": 8})");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->spec.max_input_bytes, 100u);
  EXPECT_EQ(m->spec.tmp_bytes, 0u);
  EXPECT_EQ(m->spec.output.dtype, ElementType::kInt32);
}

struct BadManifest {
  const char* name;
  const char* json;
  const char* fragment;
};

class BadManifests : public ::testing::TestWithParam<BadManifest> {};

TEST_P(BadManifests, AreRejectedWithThePath) {
  auto m = ParseManifest(GetParam().json);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(m.status().message().find(GetParam().fragment), std::string::npos) << m.status();
}

#define STAGE R"("chain": [{"kernel": "k", "grid": 1, "block": 1}])"
#define TYPES \
  R"("input": {"dtype": "float32", "shape": [4]}, "output": {"dtype": "float32", "shape": [4]})"

INSTANTIATE_TEST_SUITE_P(
    Cases, BadManifests,
    ::testing::Values(
        BadManifest{"not_json", "{chain: ", "not valid JSON"},
        BadManifest{"empty", "", "not valid JSON"},
        BadManifest{"array", "[1, 2]", "must be an object"},
        BadManifest{"no_chain", "{" TYPES "}", "chain is required"},
        BadManifest{"chain_not_array", R"({"chain": {}, )" TYPES "}", "chain must be an array"},
        BadManifest{"empty_chain", R"({"chain": [], )" TYPES "}", "chain is empty"},
        BadManifest{"stage_not_object", R"({"chain": ["k"], )" TYPES "}", "chain[0] must be"},
        BadManifest{"stage_missing_grid", R"({"chain": [{"kernel": "k", "block": 1}], )" TYPES "}",
                    "chain[0].grid is required"},
        BadManifest{"grid_string",
                    R"({"chain": [{"kernel": "k", "grid": "1", "block": 1}], )" TYPES "}",
                    "chain[0].grid must be a positive integer"},
        BadManifest{"grid_zero",
                    R"({"chain": [{"kernel": "k", "grid": 0, "block": 1}], )" TYPES "}",
                    "chain[0].grid must be a positive integer"},
        BadManifest{"grid_float",
                    R"({"chain": [{"kernel": "k", "grid": 1.5, "block": 1}], )" TYPES "}",
                    "chain[0].grid"},
        BadManifest{"block_huge",
                    R"({"chain": [{"kernel": "k", "grid": 1, "block": 99999999999}], )" TYPES "}",
                    "chain[0].block must be a positive integer"},
        BadManifest{"kernel_not_string",
                    R"({"chain": [{"kernel": 5, "grid": 1, "block": 1}], )" TYPES "}",
                    "chain[0].kernel must be a string"},
        BadManifest{"stage_unknown_key",
                    R"({"chain": [{"kernel": "k", "grid": 1, "block": 1, "blocks": 2}], )" TYPES
                    "}",
                    "chain[0].blocks is not a known key"},
        BadManifest{"unknown_top_key", "{" STAGE ", " TYPES R"(, "tmp_byte": 4})",
                    "'tmp_byte' is not a known key"},
        BadManifest{"no_input", "{" STAGE R"(, "output": {"dtype": "float32", "shape": [1]}})",
                    "input is required"},
        BadManifest{"bad_dtype", "{" STAGE R"(, "input": {"dtype": "float16", "shape": [1]},
                                   "output": {"dtype": "float32", "shape": [1]}})",
                    "input.dtype 'float16' is not a known element type"},
        BadManifest{"no_dtype", "{" STAGE R"(, "input": {"shape": [1]},
                                   "output": {"dtype": "float32", "shape": [1]}})",
                    "input.dtype is required"},
        BadManifest{"negative_dim", "{" STAGE R"(, "input": {"dtype": "float32", "shape": [-1]},
                                   "output": {"dtype": "float32", "shape": [1]}})",
                    "input.shape[0] must be a positive integer"},
        BadManifest{"shape_not_array", "{" STAGE R"(, "input": {"dtype": "float32", "shape": 4},
                                   "output": {"dtype": "float32", "shape": [1]}})",
                    "input.shape must be an array"},
        BadManifest{"missing_out_bytes", "{" STAGE R"(, "input": {"dtype": "float32", "shape": [1]},
                                   "output": {"dtype": "float32"}})",
                    "out_bytes is required when output.shape is not given"},
        BadManifest{"negative_size", "{" STAGE ", " TYPES R"(, "tmp_bytes": -5})",
                    "tmp_bytes must be a non-negative integer"},
        BadManifest{"string_size", "{" STAGE ", " TYPES R"(, "constant_bytes": "9"})",
                    "constant_bytes must be a non-negative integer"},
        BadManifest{"library_string", "{" STAGE ", " TYPES R"(, "library": "lib.so"})",
                    "library must be an object keyed by target"},
        BadManifest{"library_bad_target", "{" STAGE ", " TYPES R"(, "library": {"tpu": "x.so"}})",
                    "library.tpu is not a target"},
        BadManifest{"name_not_string", "{" STAGE ", " TYPES R"(, "name": 3})",
                    "name must be a string"},
        BadManifest{"tensor_name_not_string",
                    "{" STAGE R"(, "input": {"dtype": "uint8", "shape": [1], "name": 7},
                                   "output": {"dtype": "uint8", "shape": [1]}})",
                    "input.name must be a string"},
        BadManifest{"tensor_name_bad_character",
                    "{" STAGE R"(, "input": {"dtype": "uint8", "shape": [1]},
                                   "output": {"dtype": "uint8", "shape": [1], "name": "a b"}})",
                    "output.name 'a b' may hold only letters"},
        BadManifest{"tensor_name_empty",
                    "{" STAGE R"(, "input": {"dtype": "uint8", "shape": [1], "name": ""},
                                   "output": {"dtype": "uint8", "shape": [1]}})",
                    "input.name must be 1 to 64 characters long"}),
    [](const ::testing::TestParamInfo<BadManifest>& info) { return info.param.name; });

TEST(Manifest, LoadFileResolvesPathsAgainstItsFolder) {
  const auto dir = std::filesystem::temp_directory_path() / "kchain_manifest_test";
  std::filesystem::create_directories(dir);
  const auto path = dir / "manifest.json";
  std::ofstream(path) << kGood;
  auto m = LoadManifestFile(path);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->libraries.at("cuda"), (dir / "libcnn_cuda.so").string());
  EXPECT_EQ(m->constants, (dir / "weights.bin").string());
  auto lib = ManifestLibraryFor(*m, DeviceKind::kHost);
  ASSERT_TRUE(lib.ok());
  EXPECT_EQ(*lib, (dir / "libcnn_host.so").string());
}

TEST(Manifest, MissingFileAndMissingTarget) {
  EXPECT_EQ(LoadManifestFile("/nonexistent/manifest.json").status().code(), StatusCode::kNotFound);
  Manifest m;
  m.libraries["cuda"] = "x.so";
  auto lib = ManifestLibraryFor(m, DeviceKind::kHost);
  EXPECT_EQ(lib.status().code(), StatusCode::kNotFound);
  EXPECT_NE(lib.status().message().find("it has: cuda"), std::string::npos);
}

}  // namespace
}  // namespace kchain
