// Parsers for the scalar values of YAML configuration files, shared by the
// probe and the collector. Each throws ConfigError naming the key, the value
// and the fix.
#pragma once

#include <cstdint>
#include <limits>
#include <string>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include "common/error.h"

namespace webtrap::config_values {

// The text of a scalar node; a list or map is an error.
std::string scalarText(const YAML::Node& node, const std::string& key);

// A whole number.
std::uint64_t parseUnsigned(const std::string& text, const std::string& key);

// A byte count with an optional unit: 512, 64KiB, 16MiB, 1GiB (also K, M, G).
std::uint64_t parseBytes(const std::string& text, const std::string& key);

// A duration with its unit: 250ms, 20s, 5m, 12h, 30d. A bare number is
// rejected, because "timeout: 20" could mean seconds or milliseconds.
std::uint64_t parseMilliseconds(const std::string& text, const std::string& key);

// true/yes/on or false/no/off.
bool parseBool(const std::string& text, const std::string& key);

struct HostPort {
  std::string host;  // numeric IPv4 or IPv6 address, without brackets
  std::uint16_t port = 0;
};

// "ADDR:PORT" or "[V6]:PORT" with a numeric address. When `default_host` is
// set, a bare "PORT" means that host. `example_port` appears in the error
// messages, such as 8080 for the probe and 7380 for the collector.
HostPort parseHostPort(const std::string& text, const std::string& key,
                       std::uint16_t example_port, const std::string& default_host = {});

// An http:// or https:// base URL, returned without trailing slashes. A
// query or fragment is rejected. `example` appears in the error messages.
std::string parseHttpUrl(const std::string& text, const std::string& key,
                         const std::string& example);

// The path of an existing regular file, such as a PEM CA bundle.
std::string parsePemFilePath(const std::string& path, const std::string& key);

// The largest file readSecretFile() reads: a token or an API key is far
// smaller.
inline constexpr std::size_t kMaxSecretFileBytes = 64 * 1024;

// Reads the whole file that contains the secret of setting `key`, such as
// shipper.token_file. A FIFO, a device such as /dev/zero, a folder or a
// file over kMaxSecretFileBytes is rejected at once, because reading it
// could block or fill memory. Throws ConfigError naming the key and path.
std::string readSecretFile(const std::string& path, const std::string& key);

template <typename T>
T narrow(std::uint64_t value, const std::string& key) {
  if (value > std::numeric_limits<T>::max()) {
    throw ConfigError(fmt::format("{}: value {} is too large; the maximum is {}", key, value,
                                  std::numeric_limits<T>::max()));
  }
  return static_cast<T>(value);
}


}  // namespace webtrap::config_values
