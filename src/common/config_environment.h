// Configuration keys set from environment variables, for the probe and the
// collector. WEBTRAP__SHIPPER__URL sets shipper.url: the name is the prefix
// WEBTRAP__ and the key in upper case, with `__` between levels and `_` kept
// inside a key (WEBTRAP__SHIPPER__TOKEN_FILE sets shipper.token_file). The
// overrides are written into the parsed YAML document before it is
// validated, so defaults, checks and messages are those of a value in the
// file.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "common/error.h"

namespace webtrap::config_environment {

inline constexpr std::string_view kPrefix = "WEBTRAP__";

// One configuration key set by an environment variable.
struct Override {
  std::string variable;  // WEBTRAP__SHIPPER__URL
  std::string key;       // shipper.url
  std::string value;     // may be a secret: never log it
};

// The kind of value a configuration key takes, as the probe or the collector
// declares it.
enum class KeyKind {
  kValue,    // a single value, taken as text
  kList,     // a list, written as a YAML flow sequence such as [a, b]
  kMap,      // a map of keys, each set by its own variable
  kChecked,  // a key inside a section whose owner checks its keys and values
  kUnknown,
};

struct Schema {
  std::function<KeyKind(const std::string& key)> kind;
  std::string program;  // "probe" or "collector", for the --config-reference hint
};

// Returns the NAME=VALUE strings of this process's environment.
std::vector<std::string> processEnvironment();

// Parses the WEBTRAP__ variables of `environment` (NAME=VALUE strings),
// sorted by key. Throws ConfigError for an invalid name and for two
// variables of which one sets a key inside the other's.
std::vector<Override> readOverrides(const std::vector<std::string>& environment);

// Writes `overrides` into `root`, the parsed document of `file_name`, and
// turns a null root into a map. Throws ConfigError naming the variable, the
// key and the fix for an unknown key and for a value for a map. It also
// throws for a list value that is not a YAML flow sequence, and for a key
// below one that the file gives a single value or a list.
void applyOverrides(YAML::Node& root, const std::vector<Override>& overrides,
                    const Schema& schema, const std::string& file_name);

// Returns `error` with the variables named when its message is about a key
// that `overrides` set, about a group that contains one, or names such a key
// in its text. The message hides the value of a secret key: one whose last
// level has the word token, password, secret or proxy, or api_key, and does
// not end in _file, _env or _path. It also hides the password of any URL
// value such as http://user:pass@host.
ConfigError nameVariables(const ConfigError& error, const std::vector<Override>& overrides);

// Writes `overrides` into `root` with applyOverrides(), then runs `parse`,
// which reads the configuration out of `root`. A ConfigError that `parse`
// throws is rethrown as nameVariables() returns it, so a message about a key
// that a variable set names that variable. Returns describeOverrides(), for
// the environment_keys of the probe and collector configurations.
std::vector<std::string> parseWithOverrides(YAML::Node& root, const std::vector<Override>& overrides,
                                            const Schema& schema, const std::string& file_name,
                                            const std::function<void()>& parse);

// Returns the names of the variables of `environment` that look like a
// misspelled WEBTRAP__ variable: a name that starts with WEBTRAP_ in any
// case and contains `__`, but does not start with exactly WEBTRAP__. Such
// a variable sets nothing. WEBTRAP_DATA_DIR and the container entrypoint's
// variables have no `__`, so they are not listed.
std::vector<std::string> findMisspelledVariables(const std::vector<std::string>& environment);

// "shipper.url from WEBTRAP__SHIPPER__URL" for each override: names only,
// never values.
std::vector<std::string> describeOverrides(const std::vector<Override>& overrides);

}  // namespace webtrap::config_environment
