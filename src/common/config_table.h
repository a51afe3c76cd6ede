// Option tables and file loading for YAML configuration files, shared by the
// probe and the collector. Each table declares a key once, and the same entry
// drives parsing, the rejection of unknown keys and the `--config-reference`
// Markdown table.
#pragma once

#include <algorithm>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include <yaml-cpp/yaml.h>

namespace webtrap::config_table {

// One scalar configuration key. `Apply` is the setter that parses the value
// into the options struct of the caller.
template <typename Apply>
struct Option {
  const char* key;  // full dotted key, such as "tls.certificate"
  const char* type;
  const char* default_text;
  const char* description;
  Apply apply;
};

// Returns the entry whose key is `key`, or nullptr.
template <typename Apply>
const Option<Apply>* findOption(const std::vector<Option<Apply>>& options, const std::string& key) {
  auto found = std::find_if(options.begin(), options.end(),
                            [&](const Option<Apply>& option) { return key == option.key; });
  return found == options.end() ? nullptr : &*found;
}

// True when `declared` lies inside the group `key`: "tls" for "tls.certificate".
bool isInGroup(std::string_view declared, const std::string& key);

// True when some entry of `options` lies inside the group `key`.
template <typename Apply>
bool hasGroup(const std::vector<Option<Apply>>& options, const std::string& key) {
  return std::any_of(options.begin(), options.end(),
                     [&](const Option<Apply>& option) { return isInGroup(option.key, key); });
}

// The text of a map key found in the map named `where` (the dotted path of
// its parent, or "" at the top level). YAML allows a list or a map as a
// key, as in `[id]: x`, and an empty key, as in `: x`, but no configuration
// key is either, so both are a ConfigError naming `where` and the line.
std::string keyText(const YAML::Node& key, const std::string& where);

// The text of a scalar value, or "" for a key written with no value.
std::string scalarTextOrEmpty(const YAML::Node& value, const std::string& key);

// Applies the scalar text of `value` (see scalarTextOrEmpty) to `target`
// through the entry of `options` named `key`. Returns false when no entry
// has that key.
template <typename Apply, typename Target>
bool applyScalarOption(const std::vector<Option<Apply>>& options, const std::string& key,
                       const YAML::Node& value, Target& target) {
  const Option<Apply>* option = findOption(options, key);
  if (option == nullptr) {
    return false;
  }
  option->apply(target, scalarTextOrEmpty(value, key));
  return true;
}

// The header of the reference table, with its separator line.
std::string referenceHeader();

// One line of the reference table: "| key | type | default | meaning |\n".
std::string referenceRow(std::string_view key, std::string_view type, std::string_view default_text,
                         std::string_view description);

// The reference lines of every entry of `options`, in table order.
template <typename Apply>
std::string referenceRows(const std::vector<Option<Apply>>& options) {
  std::string out;
  for (const auto& option : options) {
    out += referenceRow(option.key, option.type, option.default_text, option.description);
  }
  return out;
}

// The callbacks and settings that walkKeys() applies to one configuration file.
struct KeyWalk {
  // Parses `value` into the caller's options when `key` is a declared key,
  // and returns false otherwise. Throws ConfigError for an invalid value.
  std::function<bool(const std::string& key, const YAML::Node& value)> apply;
  // True when `key` is a group of known keys, such as "tls" or "behaviour.scraping".
  std::function<bool(const std::string& key)> is_group;
  // The program named in the unknown-key message: "collector" or "probe".
  std::string program;
  // When true, a group written with no value (`outputs:` alone) is skipped.
  // When false, it is an error like any group that is not a map.
  bool allow_empty_group = true;
  // The file named with the line of a repeated key. walkTopLevel sets it.
  std::string source;
};

// Walks the map `node`, whose keys are prefixed with `prefix` ("" at the top
// level, "tls." one level down), and hands each full dotted key to `walk`.
// Throws ConfigError for a repeated key, for a group that is not a map and
// for an unknown key, naming the key and the fix.
void walkKeys(const YAML::Node& node, const std::string& prefix, const KeyWalk& walk);

// Walks the top level of a configuration file named `name` in messages. An
// empty file applies no key, and a top level that is not a map is an error.
void walkTopLevel(const YAML::Node& root, const std::string& name, const KeyWalk& walk);

// Parses `yaml_text` as one YAML document, or a null node when it contains
// none. Throws YAML::Exception for invalid YAML and for a second document,
// which YAML::Load() would drop without a word.
YAML::Node loadOneDocument(const std::string& yaml_text);

// Reads and parses the YAML file at `path` with loadOneDocument(). Throws
// ConfigError when the file cannot be read or is not one valid YAML document.
YAML::Node loadYamlFile(const std::filesystem::path& path);

// Parses `yaml_text`, named `name` in messages, with loadOneDocument().
// Throws ConfigError when it is not one valid YAML document.
YAML::Node parseYamlText(const std::string& yaml_text, const std::string& name);

}  // namespace webtrap::config_table
