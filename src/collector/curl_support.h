// libcurl pieces shared by the HTTP clients of the outputs (Elasticsearch,
// MISP): global initialisation, bounded body capture, response header
// capture and the grouping of libcurl error codes.
#pragma once

#include <curl/curl.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace webtrap::collector {

// Calls curl_global_init once per process, before the first easy handle.
void initCurlOnce();

// Transfer settings that every output's HTTP client takes from its config.
struct CurlTransferOptions {
  std::chrono::milliseconds timeout{0};          // whole request, 0 for no limit
  std::chrono::milliseconds connect_timeout{0};  // connection phase only, 0 for libcurl's default
  bool tls_verify = true;                        // check the server certificate and host name
  std::string ca_file;                           // CA bundle, empty for the system default
  // Proxy URL. When empty, libcurl reads http_proxy, https_proxy and no_proxy.
  std::string proxy;
};

// Sets the options that the Elasticsearch, MISP and Kibana clients share.
// These are no signals, http and https only, the webtrap user agent, the
// timeouts, body capture through curlAppendBody, every Content-Encoding
// libcurl can decode, and the TLS and proxy settings. Callers still set
// CURLOPT_WRITEDATA, the headers, the URL and authentication.
void setCommonCurlOptions(CURL* curl, const CurlTransferOptions& options);

// Largest response body kept, after libcurl decompresses it. By estimate a
// _bulk item takes a few hundred bytes, or a few KiB with an error and its
// causes, so a batch of thousands of events gets back far less. A larger
// body, such as a gzip bomb from a broken or hostile server, is abandoned
// instead of filling memory.
inline constexpr std::size_t kMaxResponseBytes = 128 << 20;

// The CURLOPT_WRITEDATA target of curlAppendBody.
struct CurlBodyCapture {
  std::string* body = nullptr;
  bool too_large = false;  // set when the body passed kMaxResponseBytes
};

// CURLOPT_WRITEFUNCTION that appends to a CurlBodyCapture and stops the
// transfer (CURLE_WRITE_ERROR) past kMaxResponseBytes.
std::size_t curlAppendBody(char* data, std::size_t size, std::size_t count, void* user);

// The CURLOPT_HEADERDATA target of curlCaptureHeader: the response headers a
// client acts on.
struct CurlHeaderCapture {
  std::int64_t retry_after_ms = 0;  // from Retry-After, 0 when absent
  std::string location;             // the Location header, empty when absent
};

// CURLOPT_HEADERFUNCTION that fills a CurlHeaderCapture.
std::size_t curlCaptureHeader(char* data, std::size_t size, std::size_t count, void* user);

// Parses a Retry-After value, as delay-seconds or an HTTP-date (RFC 9110,
// 10.2.3), into milliseconds from now. Returns 0 when it is invalid or past.
std::int64_t parseRetryAfterMs(std::string_view value);

// True for errors where the request did not reach a server, so another URL
// may work.
bool isCurlConnectError(CURLcode code);

// True for TLS handshake and certificate errors.
bool isCurlTlsError(CURLcode code);

}  // namespace webtrap::collector
