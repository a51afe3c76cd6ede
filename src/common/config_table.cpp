#include "common/config_table.h"

#include <fstream>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <yaml-cpp/eventhandler.h>

#include "common/config_values.h"
#include "common/error.h"

namespace webtrap::config_table {

bool isInGroup(std::string_view declared, const std::string& key) {
  return declared.size() > key.size() && declared.starts_with(key) && declared[key.size()] == '.';
}

std::string keyText(const YAML::Node& key, const std::string& where) {
  if (key.IsNull()) {
    throw ConfigError(fmt::format("{}: the key at line {} is empty; write a name before the colon",
                                  where.empty() ? "top level" : where, key.Mark().line + 1));
  }
  if (!key.IsScalar()) {
    YAML::Emitter written;
    written << YAML::Flow << key;
    throw ConfigError(fmt::format("{}{}: the key at line {} is a list or map, not a name; write "
                                  "a plain name such as `id:`",
                                  where.empty() ? "" : where + ".", written.c_str(),
                                  key.Mark().line + 1));
  }
  // Messages start with the key, and what() would end at its NUL byte.
  if (key.Scalar().find('\0') != std::string::npos) {
    throw ConfigError(fmt::format("{}: the key at line {} contains a NUL byte (\\0); write a "
                                  "plain name such as `id:`",
                                  where.empty() ? "top level" : where, key.Mark().line + 1));
  }
  return key.Scalar();
}

std::string scalarTextOrEmpty(const YAML::Node& value, const std::string& key) {
  return value.IsNull() ? std::string() : config_values::scalarText(value, key);
}

std::string referenceHeader() {
  return "| key | type | default | meaning |\n|---|---|---|---|\n";
}

std::string referenceRow(std::string_view key, std::string_view type, std::string_view default_text,
                         std::string_view description) {
  return fmt::format("| {} | {} | {} | {} |\n", key, type, default_text, description);
}

void walkKeys(const YAML::Node& node, const std::string& prefix, const KeyWalk& walk) {
  // yaml-cpp keeps a repeated key and the last one would silently win.
  std::set<std::string> seen;
  for (const auto& entry : node) {
    std::string where = prefix.empty() ? "" : prefix.substr(0, prefix.size() - 1);
    std::string key = prefix + keyText(entry.first, where);
    const YAML::Node& value = entry.second;
    if (!seen.insert(key).second) {
      const std::string where = walk.source.empty() ? "" : " of " + walk.source;
      throw ConfigError(fmt::format("{}: the key appears twice at line {}{}; keep one of them", key,
                                    entry.first.Mark().line + 1, where));
    }
    if (walk.apply(key, value)) {
      continue;
    }
    if (walk.is_group(key)) {
      if (value.IsNull() && walk.allow_empty_group) {
        continue;
      }
      if (!value.IsMap()) {
        throw ConfigError(
            fmt::format("{}: expected a map of keys, such as `{}:` followed by "
                        "indented `key: value` lines",
                        key, key));
      }
      walkKeys(value, key + ".", walk);
      continue;
    }
    throw ConfigError(
        fmt::format("{}: unknown configuration key; run `webtrap {} "
                    "--config-reference` for the list of keys",
                    key, walk.program));
  }
}

void walkTopLevel(const YAML::Node& root, const std::string& name, const KeyWalk& walk) {
  if (root.IsMap()) {
    KeyWalk named = walk;
    named.source = name;
    walkKeys(root, "", named);
  } else if (!root.IsNull()) {
    throw ConfigError(fmt::format("{}: expected a map of keys at the top level", name));
  }
}

namespace {

// Records where the last document of a YAML stream started.
class DocumentStarts : public YAML::EventHandler {
 public:
  YAML::Mark last_start;

  void OnDocumentStart(const YAML::Mark& mark) override { last_start = mark; }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}
};

}  // namespace

YAML::Node loadOneDocument(const std::string& yaml_text) {
  YAML::Node root = YAML::Load(yaml_text);
  // The text is parsed again, one document at a time, to find a second
  // document. yaml-cpp 0.7 reads a stray `,` outside brackets as an empty
  // document that never consumes it, so that YAML::Load() returns a null
  // node for ",\nkey: value" and YAML::LoadAll() loops until memory runs
  // out. Two calls of HandleNextDocument() find such a text too.
  std::istringstream stream(yaml_text);
  YAML::Parser parser(stream);
  DocumentStarts starts;
  if (parser.HandleNextDocument(starts) && parser.HandleNextDocument(starts)) {
    throw YAML::ParserException(starts.last_start,
                                "a second YAML document starts here, after a `---` line or at "
                                "a `,` outside brackets; keep one document");
  }
  return root;
}

YAML::Node loadYamlFile(const std::filesystem::path& path) {
  std::error_code error_code;
  if (std::filesystem::is_directory(path, error_code)) {
    throw ConfigError(fmt::format("{}: is a folder, not a configuration file; give the path of "
                                  "the YAML file",
                                  path.string()));
  }
  std::ifstream file(path, std::ios::binary);
  if (!file) {
    throw ConfigError(
        fmt::format("{}: cannot read the configuration file; check the path", path.string()));
  }
  std::ostringstream text;
  text << file.rdbuf();
  try {
    return loadOneDocument(text.str());
  } catch (const YAML::Exception& error) {
    throw ConfigError(fmt::format("{}: invalid YAML at line {}: {}", path.string(),
                                  error.mark.line + 1, error.msg));
  }
}

YAML::Node parseYamlText(const std::string& yaml_text, const std::string& name) {
  try {
    return loadOneDocument(yaml_text);
  } catch (const YAML::Exception& error) {
    throw ConfigError(
        fmt::format("{}: invalid YAML at line {}: {}", name, error.mark.line + 1, error.msg));
  }
}

}  // namespace webtrap::config_table
