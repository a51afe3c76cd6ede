#include "common/config_environment.h"

#include <unistd.h>

#include <algorithm>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "common/config_table.h"

namespace webtrap::config_environment {
namespace {

// A key whose last level has the word token, password, secret or proxy, or
// the words api and key, such as admin.token or outputs.elasticsearch.api_key.
// A last word of file, env or path names where a secret is kept (token_file,
// api_key_env), and a plural such as min_passwords is a count, so neither is
// hidden.
bool isSecretKey(const std::string& key) {
  std::string last = key.substr(key.rfind('.') + 1);
  std::vector<std::string> words;
  for (std::size_t start = 0; start <= last.size();) {
    std::size_t end = last.find('_', start);
    if (end == std::string::npos) {
      end = last.size();
    }
    words.push_back(last.substr(start, end - start));
    start = end + 1;
  }
  const std::string& final_word = words.back();
  if (final_word == "file" || final_word == "env" || final_word == "path") {
    return false;
  }
  for (std::size_t i = 0; i < words.size(); ++i) {
    const std::string& word = words[i];
    if (word == "token" || word == "password" || word == "secret" || word == "proxy") {
      return true;
    }
    if (word == "api" && i + 1 < words.size() && words[i + 1] == "key") {
      return true;
    }
  }
  return false;
}

// Returns the password of a URL value such as https://user:pass@host, or ""
// when the value has none.
std::string urlPassword(const std::string& value) {
  std::size_t scheme_end = value.find("://");
  if (scheme_end == std::string::npos) {
    return "";
  }
  std::size_t authority = scheme_end + 3;
  std::size_t authority_end = value.find_first_of("/?#", authority);
  std::size_t at = value.rfind('@', authority_end == std::string::npos ? std::string::npos
                                                                       : authority_end - 1);
  if (at == std::string::npos || at < authority) {
    return "";
  }
  std::size_t colon = value.find(':', authority);
  if (colon == std::string::npos || colon > at) {
    return "";
  }
  return value.substr(colon + 1, at - colon - 1);
}

bool isKeyCharacter(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
}

// Whether `message` names `key` as a whole key: shipper.token matches in
// "shipper.token and shipper.token_file", but not in "shipper.token_file" or
// "shipper.tokens".
bool mentionsKey(const std::string& message, const std::string& key) {
  for (std::size_t at = message.find(key); at != std::string::npos;
       at = message.find(key, at + 1)) {
    bool starts_word = at == 0 || (!isKeyCharacter(message[at - 1]) && message[at - 1] != '.');
    std::size_t end = at + key.size();
    bool ends_word = end == message.size() || !isKeyCharacter(message[end]);
    if (ends_word && message[end] == '.' && end + 1 < message.size()) {
      ends_word = !isKeyCharacter(message[end + 1]);
    }
    if (starts_word && ends_word) {
      return true;
    }
  }
  return false;
}

// Converts WEBTRAP__SHIPPER__TOKEN_FILE to shipper.token_file.
std::string keyFromVariable(const std::string& variable) {
  std::string_view rest = std::string_view(variable).substr(kPrefix.size());
  const std::string example = "such as WEBTRAP__SHIPPER__TOKEN_FILE for shipper.token_file";
  if (rest.empty()) {
    throw ConfigError(fmt::format("{}: invalid variable name, it names no key; add the key in "
                                  "upper case with `__` between levels, {}",
                                  variable, example));
  }
  for (char c : rest) {
    if (c >= 'a' && c <= 'z') {
      throw ConfigError(fmt::format("{}: invalid variable name; write the key in upper case, {}",
                                    variable, example));
    }
    bool allowed = (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
    if (!allowed) {
      throw ConfigError(fmt::format("{}: invalid character '{}' in the variable name; use only "
                                    "A-Z, 0-9 and _, {}",
                                    variable, c, example));
    }
  }
  std::string key;
  std::size_t start = 0;
  while (true) {
    std::size_t separator = rest.find("__", start);
    std::string_view level = rest.substr(start, separator == std::string_view::npos
                                                    ? std::string_view::npos
                                                    : separator - start);
    if (level.empty() || level.front() == '_' || level.back() == '_') {
      throw ConfigError(fmt::format("{}: invalid variable name, it has an empty level or a `_` "
                                    "at the start or end of a level; put exactly `__` between "
                                    "levels, {}",
                                    variable, example));
    }
    if (!key.empty()) {
      key += '.';
    }
    for (char c : level) {
      key += static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
    }
    if (separator == std::string_view::npos) {
      return key;
    }
    start = separator + 2;
  }
}

std::string mapMessage(const Override& item) {
  return fmt::format("{}: {} is a map of keys and takes no single value; set each of its keys "
                     "with its own variable, such as {}__KEY with KEY in upper case",
                     item.variable, item.key, item.variable);
}

// Returns the value of `item` for an error message: control bytes as \xNN,
// and at most 80 bytes followed by "..." when longer. A value that may hold
// a secret is "(hidden)", because nameVariables() hides only the whole
// value, not an escaped or cut one.
std::string shownValue(const Override& item) {
  if (isSecretKey(item.key) || !urlPassword(item.value).empty()) {
    return "(hidden)";
  }
  constexpr std::size_t kMaxShown = 80;
  const std::string_view value = item.value;
  std::string shown;
  for (char c : value.substr(0, kMaxShown)) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte < 0x20 || byte == 0x7f) {
      shown += fmt::format("\\x{:02x}", byte);
    } else {
      shown += c;
    }
  }
  if (value.size() > kMaxShown) {
    shown += "...";
  }
  return shown;
}

YAML::Node parseListValue(const Override& item) {
  std::string problem;
  YAML::Node list;
  try {
    // YAML::Load() would take the first document and drop the rest of the
    // value, and YAML::LoadAll() never returns for a value such as ", a".
    list = config_table::loadOneDocument(item.value);
  } catch (const YAML::Exception& error) {
    problem = fmt::format(" (invalid YAML: {})", error.msg);
  }
  if (!problem.empty() || !list.IsSequence()) {
    throw ConfigError(fmt::format("{}: {} takes a list{}, found \"{}\"; write the value as a "
                                  "YAML flow sequence, such as [first, second], or [] for an "
                                  "empty list",
                                  item.variable, item.key, problem, shownValue(item)));
  }
  return list;
}

// Writes one override into `root`, making the maps on its way.
// NOTE: a map on the way that is an alias (*anchor) of another map is
// shared with it, so the key is set in both.
void applyOne(YAML::Node& root, const Override& item, KeyKind kind, const std::string& file_name) {
  YAML::Node node;
  node.reset(root);
  std::string walked;
  std::size_t start = 0;
  while (true) {
    std::size_t dot = item.key.find('.', start);
    std::string level = item.key.substr(start, dot == std::string::npos ? std::string::npos
                                                                         : dot - start);
    walked += (walked.empty() ? "" : ".") + level;
    // The const operator[] looks a key up without adding it. A missing key
    // gives an invalid node, on which only IsDefined() may be called.
    const YAML::Node& view = node;
    YAML::Node existing = view[level];
    bool present = existing.IsDefined();
    bool last = dot == std::string::npos;
    if (last) {
      if (present && existing.IsMap()) {
        throw ConfigError(mapMessage(item));
      }
      // The old node is removed rather than assigned to, because an
      // assignment would also change every alias (*anchor) of it.
      node.remove(level);
      node[level] = kind == KeyKind::kList ? parseListValue(item) : YAML::Node(item.value);
      return;
    }
    if (!present || existing.IsNull()) {
      node.remove(level);
      node[level] = YAML::Node(YAML::NodeType::Map);
    } else if (!existing.IsMap()) {
      throw ConfigError(fmt::format("{}: cannot set {}, because {} gives {} {}; remove {} from "
                                    "the file or fix the variable name",
                                    item.variable, item.key, file_name, walked,
                                    existing.IsSequence() ? "a list" : "a single value", walked));
    }
    YAML::Node child = node[level];
    node.reset(child);
    start = dot + 1;
  }
}

}  // namespace

std::vector<std::string> processEnvironment() {
  std::vector<std::string> environment;
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
    environment.emplace_back(*entry);
  }
  return environment;
}

std::vector<Override> readOverrides(const std::vector<std::string>& environment) {
  std::vector<Override> overrides;
  for (const std::string& entry : environment) {
    if (!entry.starts_with(kPrefix)) {
      continue;
    }
    std::size_t equals = entry.find('=');
    Override item;
    item.variable = entry.substr(0, equals);
    item.value = equals == std::string::npos ? std::string() : entry.substr(equals + 1);
    item.key = keyFromVariable(item.variable);
    overrides.push_back(std::move(item));
  }
  std::sort(overrides.begin(), overrides.end(),
            [](const Override& a, const Override& b) { return a.key < b.key; });
  for (const Override& outer : overrides) {
    for (const Override& inner : overrides) {
      if (&outer != &inner && inner.key.starts_with(outer.key + ".")) {
        throw ConfigError(fmt::format("{} and {}: both set, but {} is inside {}; unset one of "
                                      "them",
                                      outer.variable, inner.variable, inner.key, outer.key));
      }
    }
  }
  return overrides;
}

void applyOverrides(YAML::Node& root, const std::vector<Override>& overrides,
                    const Schema& schema, const std::string& file_name) {
  if (overrides.empty()) {
    return;
  }
  if (!root.IsDefined() || root.IsNull()) {
    root = YAML::Node(YAML::NodeType::Map);
  } else if (!root.IsMap()) {
    throw ConfigError(fmt::format("{}: expected a map of keys at the top level", file_name));
  }
  for (const Override& item : overrides) {
    KeyKind kind = schema.kind(item.key);
    if (kind == KeyKind::kUnknown) {
      throw ConfigError(fmt::format("{}: {} is not a {} configuration key; fix the variable name "
                                    "or unset it (`webtrap {} --config-reference` lists the keys)",
                                    item.variable, item.key, schema.program, schema.program));
    }
    if (kind == KeyKind::kMap) {
      throw ConfigError(mapMessage(item));
    }
    applyOne(root, item, kind, file_name);
  }
}

ConfigError nameVariables(const ConfigError& error, const std::vector<Override>& overrides) {
  std::string message = error.what();
  std::string subject = message.substr(0, message.find(':'));
  subject = subject.substr(0, subject.find('['));
  std::vector<std::string> notes;
  for (const Override& item : overrides) {
    // A message about two keys, such as "shipper.token and
    // shipper.token_file are both set", names the second one in its text.
    bool about_key = subject == item.key || subject.starts_with(item.key + ".") ||
                     item.key.starts_with(subject + ".") || mentionsKey(message, item.key);
    if (about_key) {
      notes.push_back(fmt::format("{} from {}", item.key, item.variable));
    }
  }
  bool hidden = false;
  for (const Override& item : overrides) {
    // A secret key hides its whole value, and any other key the password
    // of a URL such as http://user:pass@host.
    std::string secret = isSecretKey(item.key) ? item.value : urlPassword(item.value);
    if (secret.empty()) {
      continue;
    }
    // The search goes on after the replacement, which may itself contain
    // a short value such as "d".
    const std::string replacement = "(hidden)";
    for (std::size_t at = message.find(secret); at != std::string::npos;
         at = message.find(secret, at + replacement.size())) {
      message.replace(at, secret.size(), replacement);
      hidden = true;
    }
  }
  if (notes.empty()) {
    return hidden ? ConfigError(message) : error;
  }
  return ConfigError(fmt::format("{} [set in the environment: {}; fix or unset the variable]",
                                 message, fmt::join(notes, ", ")));
}

std::vector<std::string> findMisspelledVariables(const std::vector<std::string>& environment) {
  std::vector<std::string> names;
  for (const std::string& entry : environment) {
    std::string name = entry.substr(0, entry.find('='));
    if (name.starts_with(kPrefix) || name.find("__") == std::string::npos ||
        name.size() < 8) {
      continue;
    }
    std::string start = name.substr(0, 8);
    for (char& c : start) {
      c = static_cast<char>(c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c);
    }
    if (start == "WEBTRAP_") {
      names.push_back(name);
    }
  }
  return names;
}

std::vector<std::string> describeOverrides(const std::vector<Override>& overrides) {
  std::vector<std::string> lines;
  for (const Override& item : overrides) {
    lines.push_back(fmt::format("{} from {}", item.key, item.variable));
  }
  return lines;
}

std::vector<std::string> parseWithOverrides(YAML::Node& root, const std::vector<Override>& overrides,
                                            const Schema& schema, const std::string& file_name,
                                            const std::function<void()>& parse) {
  applyOverrides(root, overrides, schema, file_name);
  std::vector<std::string> described = describeOverrides(overrides);
  try {
    parse();
  } catch (const ConfigError& error) {
    throw nameVariables(error, overrides);
  }
  return described;
}

}  // namespace webtrap::config_environment
