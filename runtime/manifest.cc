#include "kchain/manifest.h"

#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "runtime/json_input.h"

namespace kchain {
namespace {

using nlohmann::json;

Status Bad(const std::string& where, const std::string& what) {
  return InvalidArgumentError("manifest: " + where + " " + what);
}

Status CheckKeys(const json& object, const std::string& where,
                 const std::set<std::string>& allowed) {
  for (const auto& item : object.items()) {
    if (allowed.count(item.key()) == 0) {
      std::string known;
      for (const auto& key : allowed) known += (known.empty() ? "" : ", ") + key;
      return Bad(where.empty() ? "'" + item.key() + "'" : where + "." + item.key(),
                 "is not a known key (known: " + known + ")");
    }
  }
  return Status();
}

StatusOr<uint64_t> GetUnsigned(const json& value, const std::string& where) {
  if (!value.is_number_integer() ||
      (value.is_number_integer() && !value.is_number_unsigned() && value.get<int64_t>() < 0)) {
    return Bad(where, "must be a non-negative integer");
  }
  return value.get<uint64_t>();
}

StatusOr<int> GetPositiveInt(const json& value, const std::string& where) {
  if (!value.is_number_integer()) return Bad(where, "must be a positive integer");
  const int64_t v =
      value.is_number_unsigned()
          ? static_cast<int64_t>(std::min<uint64_t>(value.get<uint64_t>(), uint64_t{1} << 62))
          : value.get<int64_t>();
  if (v < 1 || v > std::numeric_limits<int>::max()) {
    return Bad(where, "must be a positive integer (at most " +
                          std::to_string(std::numeric_limits<int>::max()) + "), got " +
                          DescribeJsonValue(value));
  }
  return static_cast<int>(v);
}

StatusOr<std::string> GetString(const json& value, const std::string& where) {
  if (!value.is_string()) return Bad(where, "must be a string");
  return value.get<std::string>();
}

// A tensor's optional name: 1 to 64 characters from A-Z a-z 0-9 _ . : -
StatusOr<std::string> GetTensorName(const json& value, const std::string& where) {
  KCHAIN_ASSIGN_OR_RETURN(std::string name, GetString(value, where));
  if (name.empty() || name.size() > 64) return Bad(where, "must be 1 to 64 characters long");
  for (char c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '.' && c != ':' &&
        c != '-') {
      return Bad(where, "'" + name + "' may hold only letters, digits, '_', '.', ':' and '-'");
    }
  }
  return name;
}

StatusOr<TensorSpec> GetTensor(const json& value, const std::string& where, std::string* name) {
  if (!value.is_object()) return Bad(where, "must be an object like {\"dtype\": \"float32\"}");
  KCHAIN_RETURN_IF_ERROR(CheckKeys(value, where, {"dtype", "shape", "name"}));
  if (value.contains("name")) {
    KCHAIN_ASSIGN_OR_RETURN(*name, GetTensorName(value["name"], where + ".name"));
  }
  TensorSpec tensor;
  if (!value.contains("dtype")) return Bad(where + ".dtype", "is required");
  KCHAIN_ASSIGN_OR_RETURN(std::string dtype, GetString(value["dtype"], where + ".dtype"));
  const auto parsed = ParseElementType(dtype);
  if (!parsed) {
    return Bad(where + ".dtype",
               "'" + dtype +
                   "' is not a known element type (float32, float64, int8, int16, int32, int64, "
                   "uint8, uint16, uint32, uint64, bool)");
  }
  tensor.dtype = *parsed;
  if (value.contains("shape")) {
    const json& shape = value["shape"];
    if (!shape.is_array()) return Bad(where + ".shape", "must be an array of positive integers");
    if (shape.size() > 16) return Bad(where + ".shape", "has more than 16 dimensions");
    for (size_t i = 0; i < shape.size(); ++i) {
      const std::string at = where + ".shape[" + std::to_string(i) + "]";
      KCHAIN_ASSIGN_OR_RETURN(int dim, GetPositiveInt(shape[i], at));
      tensor.shape.push_back(dim);
    }
  }
  return tensor;
}

// The byte size a shape implies, or nullopt for an empty shape.
std::optional<uint64_t> ShapeBytes(const TensorSpec& tensor) {
  const auto count = tensor.ElementCount();
  if (!count) return std::nullopt;
  const uint64_t elem = ElementSize(tensor.dtype);
  if (*count > std::numeric_limits<uint64_t>::max() / elem) return std::nullopt;
  return *count * elem;
}

StatusOr<Manifest> FromJson(const json& doc) {
  if (!doc.is_object()) return InvalidArgumentError("manifest: the document must be an object");
  KCHAIN_RETURN_IF_ERROR(
      CheckKeys(doc, "",
                {"name", "description", "chain", "input", "output", "max_input_bytes", "out_bytes",
                 "tmp_bytes", "constant_bytes", "library", "constants"}));
  Manifest m;
  if (doc.contains("name")) {
    KCHAIN_ASSIGN_OR_RETURN(m.name, GetString(doc["name"], "name"));
    if (m.name.size() > kMaxManifestNameBytes) {
      return Bad("name", "is longer than " + std::to_string(kMaxManifestNameBytes) + " bytes");
    }
  }
  if (doc.contains("description")) {
    KCHAIN_ASSIGN_OR_RETURN(m.description, GetString(doc["description"], "description"));
    if (m.description.size() > kMaxDescriptionBytes) {
      return Bad("description",
                 "is longer than " + std::to_string(kMaxDescriptionBytes) + " bytes");
    }
  }

  if (!doc.contains("chain")) return Bad("chain", "is required");
  const json& chain = doc["chain"];
  if (!chain.is_array()) return Bad("chain", "must be an array of stages");
  if (chain.empty()) return Bad("chain", "is empty: a function needs at least one stage");
  if (chain.size() > kMaxChainLength) {
    return Bad("chain", "has more than " + std::to_string(kMaxChainLength) + " stages");
  }
  for (size_t i = 0; i < chain.size(); ++i) {
    const std::string at = "chain[" + std::to_string(i) + "]";
    const json& stage = chain[i];
    if (!stage.is_object()) {
      return Bad(at, "must be an object like {\"kernel\": \"k\", \"grid\": 1, \"block\": 256}");
    }
    KCHAIN_RETURN_IF_ERROR(CheckKeys(stage, at, {"kernel", "grid", "block"}));
    for (const char* key : {"kernel", "grid", "block"}) {
      if (!stage.contains(key)) return Bad(at + "." + key, "is required");
    }
    Stage s;
    KCHAIN_ASSIGN_OR_RETURN(s.kernel, GetString(stage["kernel"], at + ".kernel"));
    KCHAIN_ASSIGN_OR_RETURN(s.grid, GetPositiveInt(stage["grid"], at + ".grid"));
    KCHAIN_ASSIGN_OR_RETURN(s.block, GetPositiveInt(stage["block"], at + ".block"));
    m.spec.chain.push_back(std::move(s));
  }

  for (const char* key : {"input", "output"}) {
    if (!doc.contains(key)) return Bad(key, "is required");
  }
  KCHAIN_ASSIGN_OR_RETURN(m.spec.input, GetTensor(doc["input"], "input", &m.input_name));
  KCHAIN_ASSIGN_OR_RETURN(m.spec.output, GetTensor(doc["output"], "output", &m.output_name));

  struct Size {
    const char* key;
    size_t* field;
    std::optional<uint64_t> implied;  // from a shape
  };
  const Size sizes[] = {{"max_input_bytes", &m.spec.max_input_bytes, ShapeBytes(m.spec.input)},
                        {"out_bytes", &m.spec.out_bytes, ShapeBytes(m.spec.output)},
                        {"tmp_bytes", &m.spec.tmp_bytes, uint64_t{0}},
                        {"constant_bytes", &m.spec.constant_bytes, uint64_t{0}}};
  for (const Size& size : sizes) {
    if (doc.contains(size.key)) {
      KCHAIN_ASSIGN_OR_RETURN(uint64_t v, GetUnsigned(doc[size.key], size.key));
      *size.field = v;
    } else if (size.implied) {
      *size.field = *size.implied;
    } else {
      return Bad(size.key, std::string("is required when ") +
                               (size.field == &m.spec.out_bytes ? "output" : "input") +
                               ".shape is not given");
    }
  }

  if (doc.contains("library")) {
    const json& lib = doc["library"];
    if (lib.is_string()) {
      return Bad("library", "must be an object keyed by target, e.g. {\"cuda\": \"libk.so\"}");
    }
    if (!lib.is_object()) return Bad("library", "must be an object keyed by target");
    for (const auto& item : lib.items()) {
      if (!ParseDeviceKind(item.key()).ok()) {
        return Bad("library." + item.key(), "is not a target (expected 'cuda' or 'host')");
      }
      KCHAIN_ASSIGN_OR_RETURN(m.libraries[item.key()],
                              GetString(item.value(), "library." + item.key()));
      if (m.libraries[item.key()].size() > kMaxPathBytes) {
        return Bad("library." + item.key(), "is too long");
      }
    }
  }
  if (doc.contains("constants")) {
    KCHAIN_ASSIGN_OR_RETURN(m.constants, GetString(doc["constants"], "constants"));
    if (m.constants.size() > kMaxPathBytes) return Bad("constants", "is too long");
  }
  return m;
}

}  // namespace

StatusOr<Manifest> ParseManifest(std::string_view json_text) {
  if (json_text.size() > kMaxManifestBytes) {
    return InvalidArgumentError("manifest: " + std::to_string(json_text.size()) +
                                " bytes, more than the limit of " +
                                std::to_string(kMaxManifestBytes));
  }
  // Bounded depth, no duplicate keys (a repeated key must not silently change a function).
  KCHAIN_ASSIGN_OR_RETURN(json doc, ParseJsonInput(json_text, "manifest"));
  return FromJson(doc);
}

StatusOr<std::string> ReadFileToString(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return NotFoundError("'" + path + "': no such file");
  if (!std::filesystem::is_regular_file(path, ec)) {
    return InvalidArgumentError("'" + path + "' is not a regular file");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return InvalidArgumentError("'" + path + "': cannot open: " + std::strerror(errno));
  std::ostringstream out;
  out << in.rdbuf();
  if (in.bad()) return InvalidArgumentError("'" + path + "': read failed");
  return std::move(out).str();
}

StatusOr<Manifest> LoadManifestFile(const std::string& path) {
  KCHAIN_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  auto manifest = ParseManifest(text);
  if (!manifest.ok()) return manifest.status().WithContext(path);
  const std::filesystem::path dir = std::filesystem::path(path).parent_path();
  auto resolve = [&](std::string& p) {
    if (!p.empty() && std::filesystem::path(p).is_relative()) p = (dir / p).lexically_normal();
  };
  for (auto& [target, lib] : manifest->libraries) resolve(lib);
  resolve(manifest->constants);
  return manifest;
}

StatusOr<std::string> ManifestLibraryFor(const Manifest& manifest, DeviceKind kind) {
  const auto it = manifest.libraries.find(std::string(DeviceKindName(kind)));
  if (it != manifest.libraries.end()) return it->second;
  std::string targets;
  for (const auto& [target, lib] : manifest.libraries) {
    targets += (targets.empty() ? "" : ", ") + target;
  }
  return NotFoundError("the manifest names no '" + std::string(DeviceKindName(kind)) + "' library" +
                       (targets.empty() ? "" : " (it has: " + targets + ")"));
}

std::string ManifestToJson(const Manifest& m) {
  json doc = json::object();
  if (!m.name.empty()) doc["name"] = m.name;
  if (!m.description.empty()) doc["description"] = m.description;
  json chain = json::array();
  for (const Stage& s : m.spec.chain) {
    chain.push_back({{"kernel", s.kernel}, {"grid", s.grid}, {"block", s.block}});
  }
  doc["chain"] = std::move(chain);
  auto tensor = [](const TensorSpec& t, const std::string& name) {
    json j = {{"dtype", std::string(ElementTypeName(t.dtype))}};
    if (!t.shape.empty()) j["shape"] = t.shape;
    if (!name.empty()) j["name"] = name;
    return j;
  };
  doc["input"] = tensor(m.spec.input, m.input_name);
  doc["output"] = tensor(m.spec.output, m.output_name);
  doc["max_input_bytes"] = m.spec.max_input_bytes;
  doc["out_bytes"] = m.spec.out_bytes;
  doc["tmp_bytes"] = m.spec.tmp_bytes;
  doc["constant_bytes"] = m.spec.constant_bytes;
  if (!m.libraries.empty()) doc["library"] = m.libraries;
  if (!m.constants.empty()) doc["constants"] = m.constants;
  return doc.dump(2);
}

}  // namespace kchain
