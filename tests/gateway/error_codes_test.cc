// One table of error codes: the C++ one (kchain::StatusCode, its wire names, and
// HttpStatusFor in gateway/http/http_errors.cc). The Python SDK's exception classes
// (sdk-python/src/kchain/errors.py) and the OpenAPI file's Error.code enum
// (docs/openapi.yaml) are copies for their readers; this test keeps them equal to it.
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>

#include "gateway/http/http_errors.h"
#include "kchain/status.h"

namespace kchain::gateway {
namespace {

std::string ReadSource(const std::string& relative) {
  std::ifstream in(std::string(KCHAIN_SOURCE_DIR) + "/" + relative);
  EXPECT_TRUE(in.good()) << "cannot read " << relative;
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// Every error code's wire name and HTTP status.
std::map<std::string, int> CppTable() {
  std::map<std::string, int> table;
  for (int raw = 1; raw <= static_cast<int>(StatusCode::kInternal); ++raw) {
    const auto code = static_cast<StatusCode>(raw);
    table[std::string(StatusCodeName(code))] = HttpStatusFor(code);
  }
  return table;
}

TEST(ErrorCodes, ThePythonExceptionClassesMatchTheCppTable) {
  const std::string errors = ReadSource("sdk-python/src/kchain/errors.py");
  // class NotFoundError(ApiError): ... code, http_status = "not_found", 404
  const std::regex entry(R"re(class (\w+)\(ApiError\):[^]*?code, http_status = "(\w+)", (\d+))re");
  std::map<std::string, int> python;
  std::set<std::string> classes;
  for (auto it = std::sregex_iterator(errors.begin(), errors.end(), entry);
       it != std::sregex_iterator(); ++it) {
    python[(*it)[2]] = std::stoi((*it)[3]);
    classes.insert((*it)[1]);
  }
  EXPECT_EQ(python, CppTable());
  // Each class is in the table error_from_code() looks codes up in.
  const size_t table_at = errors.find("_BY_CODE");
  ASSERT_NE(table_at, std::string::npos);
  const std::string by_code = errors.substr(table_at, errors.find('}', table_at) - table_at);
  for (const std::string& name : classes) {
    EXPECT_NE(by_code.find(name), std::string::npos) << name << " is not in _BY_CODE";
  }
}

TEST(ErrorCodes, TheOpenApiErrorSchemaListsEveryCode) {
  const std::string yaml = ReadSource("docs/openapi.yaml");
  const size_t schema = yaml.find("\n    Error:\n");
  ASSERT_NE(schema, std::string::npos) << "no Error schema";
  const size_t list = yaml.find("enum:\n", schema);
  ASSERT_NE(list, std::string::npos) << "no enum in the Error schema";
  std::set<std::string> listed;
  std::istringstream lines(yaml.substr(list + 6));
  const std::regex item(R"(^\s+- (\w+)\s*$)");
  for (std::string line; std::getline(lines, line);) {
    std::smatch m;
    if (!std::regex_match(line, m, item)) break;
    listed.insert(m[1]);
  }
  std::set<std::string> cpp;
  for (const auto& [name, status] : CppTable()) cpp.insert(name);
  EXPECT_EQ(listed, cpp);
  // The prose above the paths names each code beside its HTTP status.
  for (const auto& [name, status] : CppTable()) {
    EXPECT_NE(yaml.find(name), std::string::npos) << name;
  }
}

}  // namespace
}  // namespace kchain::gateway
