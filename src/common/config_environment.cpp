#include "common/config_environment.h"

#include <unistd.h>

#include <algorithm>

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace webtrap::config_environment {
namespace {

bool isSecretKey(const std::string& key) {
  std::string last = key.substr(key.rfind('.') + 1);
  return last.find("token") != std::string::npos || last.find("password") != std::string::npos ||
         last.find("api_key") != std::string::npos || last.find("secret") != std::string::npos ||
         last == "proxy";
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

YAML::Node parseListValue(const Override& item) {
  std::string problem;
  YAML::Node list;
  try {
    list = YAML::Load(item.value);
  } catch (const YAML::Exception& error) {
    problem = fmt::format(" (invalid YAML: {})", error.msg);
  }
  if (!problem.empty() || !list.IsSequence()) {
    throw ConfigError(fmt::format("{}: {} takes a list{}; write the value as a YAML flow "
                                  "sequence, such as [first, second], or [] for an empty list",
                                  item.variable, item.key, problem));
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
    bool about_key = subject == item.key || subject.starts_with(item.key + ".") ||
                     item.key.starts_with(subject + ".");
    if (about_key) {
      notes.push_back(fmt::format("{} from {}", item.key, item.variable));
    }
  }
  bool hidden = false;
  for (const Override& item : overrides) {
    if (!isSecretKey(item.key) || item.value.empty()) {
      continue;
    }
    for (std::size_t at = message.find(item.value); at != std::string::npos;
         at = message.find(item.value, at)) {
      message.replace(at, item.value.size(), "(hidden)");
      hidden = true;
    }
  }
  if (notes.empty()) {
    return hidden ? ConfigError(message) : error;
  }
  return ConfigError(fmt::format("{} [set in the environment: {}; fix or unset the variable]",
                                 message, fmt::join(notes, ", ")));
}

std::vector<std::string> describeOverrides(const std::vector<Override>& overrides) {
  std::vector<std::string> lines;
  for (const Override& item : overrides) {
    lines.push_back(fmt::format("{} from {}", item.key, item.variable));
  }
  return lines;
}

}  // namespace webtrap::config_environment
