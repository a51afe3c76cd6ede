// libcurl pieces shared by the HTTP clients of the outputs.
#include "collector/curl_support.h"

#include <charconv>
#include <ctime>
#include <mutex>

#include "common/encoding.h"

namespace webtrap::collector {

void initCurlOnce() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

void setCommonCurlOptions(CURL* curl, const CurlTransferOptions& options) {
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, static_cast<long>(options.timeout.count()));
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS,
                   static_cast<long>(options.connect_timeout.count()));
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(curl, CURLOPT_USERAGENT, "webtrap-collector/" WEBTRAP_VERSION);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, curlAppendBody);
  // An empty string offers every encoding libcurl was built to decode. That
  // pays off because JSON responses such as Elasticsearch's _bulk repeat keys.
  curl_easy_setopt(curl, CURLOPT_ACCEPT_ENCODING, "");
  curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, options.tls_verify ? 1L : 0L);
  curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, options.tls_verify ? 2L : 0L);
  if (!options.ca_file.empty()) {
    curl_easy_setopt(curl, CURLOPT_CAINFO, options.ca_file.c_str());
  }
  if (!options.proxy.empty()) {
    curl_easy_setopt(curl, CURLOPT_PROXY, options.proxy.c_str());
  }
}

std::size_t curlAppendBody(char* data, std::size_t size, std::size_t count, void* user) {
  auto* capture = static_cast<CurlBodyCapture*>(user);
  std::size_t bytes = size * count;
  if (capture->body->size() + bytes > kMaxResponseBytes) {
    capture->too_large = true;
    return 0;  // fewer bytes than given makes libcurl stop with CURLE_WRITE_ERROR
  }
  capture->body->append(data, bytes);
  return bytes;
}

namespace {

std::string_view trimmed(std::string_view text) {
  auto first = text.find_first_not_of(" \t");
  if (first == std::string_view::npos) {
    return {};
  }
  auto last = text.find_last_not_of(" \t\r\n");
  return text.substr(first, last - first + 1);
}

// Sets `value` and returns true when `line` is the header `name` (lowercase,
// with its colon).
bool headerValue(std::string_view line, std::string_view name, std::string_view& value) {
  if (line.size() > name.size() && equalsIgnoreCase(line.substr(0, name.size()), name)) {
    value = trimmed(line.substr(name.size()));
    return true;
  }
  return false;
}

}  // namespace

std::int64_t parseRetryAfterMs(std::string_view value) {
  std::int64_t seconds = 0;
  auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), seconds);
  if (ec == std::errc() && end == value.data() + value.size() && seconds >= 0) {
    return seconds * 1000;
  }
  std::string text(value);
  std::time_t when = curl_getdate(text.c_str(), nullptr);
  std::time_t now = std::time(nullptr);
  return when > now ? static_cast<std::int64_t>(when - now) * 1000 : 0;
}

std::size_t curlCaptureHeader(char* data, std::size_t size, std::size_t count, void* user) {
  std::string_view line(data, size * count);
  auto* capture = static_cast<CurlHeaderCapture*>(user);
  std::string_view value;
  if (headerValue(line, "retry-after:", value)) {
    capture->retry_after_ms = parseRetryAfterMs(value);
  } else if (headerValue(line, "location:", value)) {
    capture->location = std::string(value);
  }
  return size * count;
}

bool isCurlConnectError(CURLcode code) {
  return code == CURLE_COULDNT_CONNECT || code == CURLE_COULDNT_RESOLVE_HOST ||
         code == CURLE_COULDNT_RESOLVE_PROXY || code == CURLE_GOT_NOTHING ||
         code == CURLE_SEND_ERROR || code == CURLE_RECV_ERROR;
}

bool isCurlTlsError(CURLcode code) {
  return code == CURLE_PEER_FAILED_VERIFICATION || code == CURLE_SSL_CONNECT_ERROR ||
         code == CURLE_SSL_CACERT_BADFILE || code == CURLE_SSL_CERTPROBLEM;
}

}  // namespace webtrap::collector
