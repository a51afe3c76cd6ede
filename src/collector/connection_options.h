// The connection keys that the HTTP client sections accept, read by one
// function per group of keys so the sections cannot drift apart.
#pragma once

#include <chrono>
#include <string>

#include <yaml-cpp/yaml.h>

#include "common/config_values.h"

namespace webtrap::collector {

// Reads `key` into `options` when it is ca_file, tls_verify or proxy, and
// returns true. Returns false for any other key. Every HTTP client section
// (outputs.elasticsearch, its kibana section, outputs.misp) reads these keys
// here. `Options` needs members of those names. Throws ConfigError for a bad
// value, naming `path`.
template <class Options>
bool parseTlsProxyKey(const std::string& key, const YAML::Node& value, const std::string& path,
                      Options& options) {
  using namespace config_values;
  if (key == "ca_file") {
    options.ca_file = parsePemFilePath(scalarText(value, path), path);
  } else if (key == "tls_verify") {
    options.tls_verify = parseBool(scalarText(value, path), path);
  } else if (key == "proxy") {
    options.proxy = scalarText(value, path);
  } else {
    return false;
  }
  return true;
}

// Reads `key` into `options` when it is one of username, password,
// api_key, ca_file, tls_verify, proxy, timeout or connect_timeout, and
// returns true. Returns false for any other key. `Options` needs members
// of those names (KibanaOptions, ElasticsearchOptions). Throws ConfigError
// for a bad value, naming `path`. outputs.misp reads only the TLS and proxy
// keys this way, because it checks its api_key and timeouts more strictly.
template <class Options>
bool parseConnectionKey(const std::string& key, const YAML::Node& value, const std::string& path,
                        Options& options) {
  using namespace config_values;
  if (parseTlsProxyKey(key, value, path, options)) {
    return true;
  }
  if (key == "username") {
    options.username = scalarText(value, path);
  } else if (key == "password") {
    options.password = scalarText(value, path);
  } else if (key == "api_key") {
    options.api_key = scalarText(value, path);
  } else if (key == "timeout") {
    options.timeout = std::chrono::milliseconds(parseMilliseconds(scalarText(value, path), path));
  } else if (key == "connect_timeout") {
    options.connect_timeout =
        std::chrono::milliseconds(parseMilliseconds(scalarText(value, path), path));
  } else {
    return false;
  }
  return true;
}

}  // namespace webtrap::collector
