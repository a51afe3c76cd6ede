// Options of the shipper, the process that sends the probe's spool to a
// collector. They live in the `shipper:` section of the probe's YAML file
// (see probe/config.cpp for the keys and their defaults).
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

namespace webtrap::shipper {

struct ShipperConfig {
  std::optional<bool> enabled;  // unset: enabled when `url` is set
  std::string url;              // collector base URL, such as https://collector:7380
  std::string token;
  std::filesystem::path token_file;
  std::filesystem::path ca_file;  // empty: the system CA bundle
  std::filesystem::path client_certificate;
  std::filesystem::path client_key;
  // Proxy URL such as http://proxy.example:3128. Empty: no proxy, even when
  // http_proxy, https_proxy or all_proxy is set in the environment.
  std::string proxy;
  std::uint32_t batch_max_records = 1000;
  std::uint64_t batch_max_bytes = 4ull << 20;  // before compression
  std::uint32_t interval_ms = 1000;            // spool poll period when nothing is waiting
  std::uint32_t retry_initial_ms = 500;
  std::uint32_t retry_max_ms = 60000;
  std::uint32_t timeout_ms = 60000;  // one whole POST, connection included
  bool gzip = true;

  bool isEnabled() const { return enabled.value_or(!url.empty()); }
};

// Checks a configuration before the shipper starts and reads token_file into
// `token`, so that the file may stay readable by root only. Throws
// ConfigError naming the key, the value and the fix. Plain http:// is
// accepted only for a loopback host (127.0.0.0/8, ::1 or localhost), and
// `proxy` only for a host that is not a loopback host.
void resolveShipperConfig(ShipperConfig& config);

// The proxy for log lines: "none", or its scheme, host and port without
// any user name or password.
std::string proxyForLog(const std::string& proxy);

// The URL that batches are POSTed to: `url` with /v1/records appended,
// unless it already ends with that path.
std::string recordsUrl(const std::string& url);

}  // namespace webtrap::shipper
