// The function store: staged versions, atomic commits, and recovery from interrupted work.
#include "gateway/core/function_store.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "gateway/core/files.h"
#include "gateway_test_util.h"

namespace kchain::gateway {
namespace {

namespace fs = std::filesystem;

TEST(FunctionStore, NamesAreValidated) {
  for (const std::string& good :
       std::vector<std::string>{"a", "mnist_cnn", "v1.2-beta", "A9", std::string(64, 'x')}) {
    EXPECT_TRUE(ValidateName(good, "function").ok()) << good;
  }
  for (const char* bad : {"", ".", "..", "-a", "_a", "a/b", "a b", "é", "a\n"}) {
    EXPECT_FALSE(ValidateName(bad, "function").ok()) << bad;
  }
  EXPECT_FALSE(ValidateName(std::string(65, 'x'), "function").ok());
}

TEST(FunctionStore, StageCommitLoadAndRecover) {
  const std::string dir = testing::FreshDir("store");
  auto store = FunctionStore::Open(dir);
  ASSERT_TRUE(store.ok()) << store.status();
  const FunctionKey key{"t1", "f"};
  auto v1 = (*store)->Stage(key, 1, "{}", AsBytes("library-1"), AsBytes("c"));
  ASSERT_TRUE(v1.ok()) << v1.status();
  EXPECT_EQ(v1->record.library_sha256, Sha256Hex(AsBytes("library-1")));
  EXPECT_TRUE(fs::exists(v1->library_path));
  EXPECT_TRUE(fs::exists(v1->constants_path));
  StoredFunction f{key, 1, {v1->record}};
  ASSERT_TRUE((*store)->Commit(f).ok());

  // A second version staged but never committed: a crash mid-deploy.
  auto v2 = (*store)->Stage(key, 2, "{}", AsBytes("library-2"), {});
  ASSERT_TRUE(v2.ok());
  EXPECT_TRUE(v2->constants_path.empty());
  // A function folder with no function.json, and leftovers in tmp/.
  fs::create_directories(dir + "/tenants/t1/functions/orphan/v1");
  std::ofstream(dir + "/tmp/partial") << "x";

  auto reopened = FunctionStore::Open(dir);
  ASSERT_TRUE(reopened.ok());
  std::vector<std::string> problems;
  auto loaded = (*reopened)->Load(&problems);
  EXPECT_TRUE(problems.empty());
  ASSERT_EQ(loaded.size(), 1u);
  EXPECT_EQ(loaded[0].first.key, key);
  EXPECT_EQ(loaded[0].first.current, 1u);
  EXPECT_EQ(testing::ReadFile(loaded[0].second.library_path), "library-1");
  EXPECT_FALSE(fs::exists(v2->dir));  // the uncommitted version is gone
  EXPECT_FALSE(fs::exists(dir + "/tenants/t1/functions/orphan"));
  EXPECT_TRUE(fs::is_empty(dir + "/tmp"));
}

TEST(FunctionStore, CorruptFunctionFileIsReportedAndSkipped) {
  const std::string dir = testing::FreshDir("store_corrupt");
  auto store = FunctionStore::Open(dir);
  ASSERT_TRUE(store.ok());
  const FunctionKey key{"default", "f"};
  auto v1 = (*store)->Stage(key, 1, "{}", AsBytes("lib"), {});
  ASSERT_TRUE((*store)->Commit(StoredFunction{key, 1, {v1->record}}).ok());
  std::ofstream(dir + "/tenants/default/functions/f/function.json", std::ios::trunc) << "{oops";
  std::vector<std::string> problems;
  EXPECT_TRUE((*store)->Load(&problems).empty());
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_NE(problems[0].find("default/f"), std::string::npos);
}

TEST(FunctionStore, DeleteRemovesEverything) {
  const std::string dir = testing::FreshDir("store_delete");
  auto store = FunctionStore::Open(dir);
  const FunctionKey key{"default", "f"};
  auto v1 = (*store)->Stage(key, 1, "{}", AsBytes("lib"), {});
  ASSERT_TRUE((*store)->Commit(StoredFunction{key, 1, {v1->record}}).ok());
  ASSERT_TRUE((*store)->Delete(key).ok());
  EXPECT_FALSE(fs::exists(dir + "/tenants/default/functions/f"));
  std::vector<std::string> problems;
  EXPECT_TRUE((*store)->Load(&problems).empty());
}

TEST(FunctionStore, UploadsAreContentAddressed) {
  const std::string dir = testing::FreshDir("store_uploads");
  auto store = FunctionStore::Open(dir);
  auto id = (*store)->PutUpload("acme", AsBytes("weights"));
  ASSERT_TRUE(id.ok());
  EXPECT_EQ(*id, Sha256Hex(AsBytes("weights")));
  EXPECT_EQ(*(*store)->ReadUpload("acme", *id), "weights");
  // Another tenant cannot use it, even knowing the id.
  EXPECT_EQ((*store)->ReadUpload("other", *id).status().code(), StatusCode::kNotFound);
  EXPECT_EQ((*store)->ReadUpload("acme", std::string(64, '0')).status().code(),
            StatusCode::kNotFound);
  EXPECT_EQ((*store)->ReadUpload("acme", "../secret").status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ((*store)->PutUpload("../x", AsBytes("w")).status().code(),
            StatusCode::kInvalidArgument);
}

TEST(FunctionStore, AnUnwritableDataDirectoryIsAClearError) {
  auto store = FunctionStore::Open("/proc/kchain-cannot-write-here");
  ASSERT_FALSE(store.ok());
  EXPECT_NE(store.status().message().find("/proc/kchain-cannot-write-here"), std::string::npos);
}

}  // namespace
}  // namespace kchain::gateway
