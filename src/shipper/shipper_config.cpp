#include "shipper/shipper_config.h"

#include <curl/curl.h>

#include <algorithm>
#include <array>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>

#include <boost/asio/ip/address.hpp>
#include <fmt/format.h>

#include "common/config_values.h"
#include "common/error.h"

namespace webtrap::shipper {
namespace {

constexpr std::string_view kRecordsPath = "/v1/records";

bool isLoopbackHost(std::string host) {
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  if (host == "localhost") {
    return true;
  }
  boost::system::error_code error;
  auto address = boost::asio::ip::make_address(host, error);
  return !error && address.is_loopback();
}

struct UrlParts {
  std::string scheme;
  std::string host;
  std::string port;  // empty when the URL names none
};

// Splits `url` with libcurl's URL parser, so that the shipper checks the
// same host that libcurl later connects to. Returns nullopt when libcurl
// cannot parse it. `flags` are CURLU_* flags for curl_url_set.
std::optional<UrlParts> splitUrl(const std::string& url, unsigned int flags) {
  std::unique_ptr<CURLU, decltype(&curl_url_cleanup)> handle(curl_url(), curl_url_cleanup);
  if (!handle || curl_url_set(handle.get(), CURLUPART_URL, url.c_str(), flags) != CURLUE_OK) {
    return std::nullopt;
  }
  UrlParts parts;
  for (auto [part, target] : {std::pair{CURLUPART_SCHEME, &parts.scheme},
                              std::pair{CURLUPART_HOST, &parts.host},
                              std::pair{CURLUPART_PORT, &parts.port}}) {
    char* text = nullptr;
    if (curl_url_get(handle.get(), part, &text, 0) == CURLUE_OK && text != nullptr) {
      *target = text;
      curl_free(text);
    }
  }
  std::transform(parts.scheme.begin(), parts.scheme.end(), parts.scheme.begin(), ::tolower);
  return parts;
}

UrlParts parseUrl(const std::string& url) {
  std::optional<UrlParts> parts = splitUrl(url, 0);
  if (!parts) {
    throw ConfigError(fmt::format("shipper.url: invalid URL \"{}\"; write it as "
                                  "https://collector.example:7380",
                                  url));
  }
  return *parts;
}

// Proxy schemes that libcurl 7.88 accepts in CURLOPT_PROXY.
constexpr std::array<std::string_view, 6> kProxySchemes = {"http",   "https",   "socks4",
                                                           "socks4a", "socks5", "socks5h"};

// Checks shipper.proxy. The error messages leave out the value, which may
// contain a password.
void checkProxy(const std::string& proxy, const UrlParts& collector) {
  if (proxy.find("://") == std::string::npos) {
    throw ConfigError("shipper.proxy: missing scheme; write the proxy as a URL such as "
                      "http://proxy.example:3128 or socks5h://proxy.example:1080");
  }
  std::optional<UrlParts> parts = splitUrl(proxy, CURLU_NON_SUPPORT_SCHEME);
  if (!parts || parts->host.empty()) {
    throw ConfigError("shipper.proxy: invalid URL; write it as http://proxy.example:3128");
  }
  if (std::find(kProxySchemes.begin(), kProxySchemes.end(), parts->scheme) ==
      kProxySchemes.end()) {
    throw ConfigError(fmt::format("shipper.proxy: unsupported scheme \"{}\"; use http, https, "
                                  "socks4, socks4a, socks5 or socks5h",
                                  parts->scheme));
  }
  if (isLoopbackHost(collector.host)) {
    // The token would reach the proxy, in clear text with http://, and a
    // proxy on another machine cannot reach this machine's loopback address.
    throw ConfigError(fmt::format("shipper.proxy is set, but shipper.url names the loopback host "
                                  "\"{}\", which is reached without a proxy; remove "
                                  "shipper.proxy",
                                  collector.host));
  }
}

void requireReadable(const std::filesystem::path& path, const char* key) {
  if (path.empty()) {
    return;
  }
  std::ifstream file(path);
  if (!file) {
    throw ConfigError(fmt::format("{}: cannot read \"{}\"; check the path and its permissions",
                                  key, path.string()));
  }
}

std::string readToken(const std::filesystem::path& path) {
  std::string token = config_values::readSecretFile(path.string(), "shipper.token_file");
  auto not_space = [](unsigned char c) { return !std::isspace(c); };
  token.erase(token.begin(), std::find_if(token.begin(), token.end(), not_space));
  token.erase(std::find_if(token.rbegin(), token.rend(), not_space).base(), token.end());
  if (token.empty()) {
    throw ConfigError(fmt::format("shipper.token_file: \"{}\" is empty; write the sensor's "
                                  "token into it",
                                  path.string()));
  }
  return token;
}

}  // namespace

std::string proxyForLog(const std::string& proxy) {
  if (proxy.empty()) {
    return "none";
  }
  std::optional<UrlParts> parts = splitUrl(proxy, CURLU_NON_SUPPORT_SCHEME);
  if (!parts) {
    return "(invalid URL)";
  }
  std::string text = parts->scheme + "://" + parts->host;
  if (!parts->port.empty()) {
    text += ":" + parts->port;
  }
  return text;
}

std::string recordsUrl(const std::string& url) {
  std::string base = url;
  if (std::string_view(base).ends_with(kRecordsPath)) {
    return base;
  }
  while (!base.empty() && base.back() == '/') {
    base.pop_back();
  }
  return base + std::string(kRecordsPath);
}

void resolveShipperConfig(ShipperConfig& config) {
  if (config.url.empty()) {
    throw ConfigError("shipper.url: missing; set it to the collector's address, such as "
                      "https://collector.example:7380, or set shipper.enabled: false");
  }
  UrlParts parts = parseUrl(config.url);
  if (parts.scheme == "http") {
    if (!isLoopbackHost(parts.host)) {
      throw ConfigError(fmt::format(
          "shipper.url: \"{}\" uses plain http to the non-loopback host \"{}\", which would send "
          "the token and the records unencrypted; use https:// (with shipper.ca_file for a "
          "private CA), or http:// only to 127.0.0.1, ::1 or localhost",
          config.url, parts.host));
    }
  } else if (parts.scheme != "https") {
    throw ConfigError(fmt::format("shipper.url: unsupported scheme \"{}\" in \"{}\"; use https:// "
                                  "(or http:// to a loopback host)",
                                  parts.scheme, config.url));
  }

  if (!config.proxy.empty()) {
    checkProxy(config.proxy, parts);
  }

  if (!config.token.empty() && !config.token_file.empty()) {
    throw ConfigError("shipper.token and shipper.token_file are both set; keep one of them");
  }
  if (!config.token_file.empty()) {
    config.token = readToken(config.token_file);
  }
  if (config.token.empty() && config.client_certificate.empty()) {
    throw ConfigError("shipper.token: missing; set shipper.token or shipper.token_file to the "
                      "token that the collector's enrollment printed, or authenticate with "
                      "shipper.client_certificate");
  }
  if (config.token.find_first_of("\r\n") != std::string::npos) {
    throw ConfigError("shipper.token: contains a line break; write the token on one line");
  }
  if (!config.client_key.empty() && config.client_certificate.empty()) {
    throw ConfigError("shipper.client_key is set without shipper.client_certificate; set both "
                      "for a client certificate, or neither");
  }
  requireReadable(config.ca_file, "shipper.ca_file");
  requireReadable(config.client_certificate, "shipper.client_certificate");
  requireReadable(config.client_key, "shipper.client_key");

  if (config.batch_max_records == 0 || config.batch_max_bytes == 0) {
    throw ConfigError(fmt::format("shipper.batch_max_records ({}) and shipper.batch_max_bytes "
                                  "({}) must be greater than 0",
                                  config.batch_max_records, config.batch_max_bytes));
  }
  if (config.interval_ms == 0 || config.retry_initial_ms == 0 || config.timeout_ms == 0) {
    throw ConfigError("shipper.interval, shipper.retry_initial and shipper.timeout must be "
                      "greater than 0; use a duration such as 500ms or 1s");
  }
  if (config.retry_initial_ms > config.retry_max_ms) {
    throw ConfigError(fmt::format("shipper.retry_initial ({}ms) is greater than shipper.retry_max "
                                  "({}ms); raise retry_max or lower retry_initial",
                                  config.retry_initial_ms, config.retry_max_ms));
  }
}

}  // namespace webtrap::shipper
