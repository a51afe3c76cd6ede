// libcurl client of the Elasticsearch output and setup command.
#include <curl/curl.h>
#include <zlib.h>

#include <chrono>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "collector/curl_support.h"
#include "collector/elasticsearch_output.h"
#include "common/encoding.h"
#include "common/gzip.h"

namespace webtrap::collector {
namespace {

// How long a URL that refused a connection is tried only after the others.
constexpr std::chrono::seconds kSkipFailedUrl{30};

}  // namespace

struct ElasticsearchClient::Impl {
  CURL* curl = nullptr;
  std::size_t next_url = 0;
  // Per URL: until when it is skipped after a connection failure.
  std::vector<std::chrono::steady_clock::time_point> skip_until;
  std::string authorization;  // "Authorization: ApiKey ..." or empty

  ~Impl() {
    if (curl != nullptr) {
      curl_easy_cleanup(curl);
    }
  }
};

ElasticsearchClient::ElasticsearchClient(ElasticsearchOptions options)
    : options_(std::move(options)), impl_(std::make_unique<Impl>()) {
  initCurlOnce();
  if (options_.urls.empty()) {
    throw std::invalid_argument("elasticsearch client: no URL configured");
  }
  impl_->skip_until.resize(options_.urls.size());
  impl_->curl = curl_easy_init();
  if (impl_->curl == nullptr) {
    throw std::runtime_error("elasticsearch client: curl_easy_init failed");
  }
  CURL* curl = impl_->curl;
  setCommonCurlOptions(curl, {options_.timeout, options_.connect_timeout, options_.tls_verify,
                              options_.ca_file, options_.proxy});
  curl_easy_setopt(curl, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(curl, CURLOPT_TCP_NODELAY, 1L);
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, curlCaptureHeader);
  if (!options_.client_certificate.empty()) {
    curl_easy_setopt(curl, CURLOPT_SSLCERT, options_.client_certificate.c_str());
    curl_easy_setopt(curl, CURLOPT_SSLKEY, options_.client_key.c_str());
  }
  if (!options_.proxy.empty()) {
    curl_easy_setopt(curl, CURLOPT_PROXY, options_.proxy.c_str());
  }
  if (!options_.username.empty()) {
    curl_easy_setopt(curl, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
    curl_easy_setopt(curl, CURLOPT_USERNAME, options_.username.c_str());
    curl_easy_setopt(curl, CURLOPT_PASSWORD, options_.password.c_str());
  }
  if (!options_.api_key.empty()) {
    // Elasticsearch expects base64(id:key); a raw "id:key" is encoded here.
    std::string encoded = options_.api_key.find(':') != std::string::npos
                              ? base64Encode(options_.api_key)
                              : options_.api_key;
    impl_->authorization = "Authorization: ApiKey " + encoded;
  }
  if (!options_.tls_verify) {
    spdlog::warn("elasticsearch: tls_verify is off, so the server certificate is not checked");
  }
}

ElasticsearchClient::~ElasticsearchClient() = default;

ElasticsearchResponse ElasticsearchClient::request(std::string_view method, std::string_view path,
                                                   std::string_view body,
                                                   std::string_view content_type, bool gzip) {
  CURL* curl = impl_->curl;
  std::string compressed;
  if (gzip && !body.empty()) {
    // Level 1 (Z_BEST_SPEED): _bulk bodies are large and sent often.
    compressed = gzipCompress(body, Z_BEST_SPEED);
    body = compressed;
  }

  curl_slist* headers = nullptr;
  headers = curl_slist_append(headers, fmt::format("Content-Type: {}", content_type).c_str());
  headers = curl_slist_append(headers, "Accept: application/json");
  // Without this libcurl waits for "100 Continue" before sending large bodies.
  headers = curl_slist_append(headers, "Expect:");
  if (gzip && !body.empty()) {
    headers = curl_slist_append(headers, "Content-Encoding: gzip");
  }
  if (!impl_->authorization.empty()) {
    headers = curl_slist_append(headers, impl_->authorization.c_str());
  }
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);

  std::string method_text(method);
  if (method == "GET") {
    curl_easy_setopt(curl, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, nullptr);
  } else if (method == "HEAD") {
    curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, nullptr);
  } else {
    curl_easy_setopt(curl, CURLOPT_POST, 1L);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.data());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method == "POST" ? nullptr : method_text.c_str());
  }

  const std::size_t url_count = options_.urls.size();
  std::string last_error;
  ElasticsearchResponse response;
  // Round robin over the URLs that have not failed recently, then, if all
  // of them did, over the others, so a request is never refused outright.
  const auto now = std::chrono::steady_clock::now();
  std::vector<std::size_t> order;
  std::vector<std::size_t> cooling;
  for (std::size_t i = 0; i < url_count; ++i) {
    std::size_t index = (impl_->next_url + i) % url_count;
    (impl_->skip_until[index] > now ? cooling : order).push_back(index);
  }
  order.insert(order.end(), cooling.begin(), cooling.end());
  impl_->next_url = (impl_->next_url + 1) % url_count;

  for (std::size_t index : order) {
    const std::string& base = options_.urls[index];
    std::string url = base + std::string(path);
    char error_buffer[CURL_ERROR_SIZE] = {};
    CurlHeaderCapture capture;
    response = ElasticsearchResponse{};
    CurlBodyCapture body_capture{&response.body};
    curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body_capture);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, &capture);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, error_buffer);
    CURLcode code = curl_easy_perform(curl);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, nullptr);
    std::string detail = error_buffer[0] != '\0' ? error_buffer : curl_easy_strerror(code);
    if (code == CURLE_OK) {
      impl_->skip_until[index] = {};
      curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &response.status);
      response.retry_after_ms = capture.retry_after_ms;
      response.url = base;
      response.bytes_sent = body.size();
      curl_easy_setopt(curl, CURLOPT_NOBODY, 0L);
      curl_slist_free_all(headers);
      return response;
    }
    if (body_capture.too_large) {
      last_error = fmt::format("{} {} returned a response larger than {} MiB after "
                               "decompression; check that the URL points at Elasticsearch or "
                               "OpenSearch",
                               method, url, kMaxResponseBytes >> 20);
      response.body.clear();
      response.body.shrink_to_fit();
      break;
    }
    if (code == CURLE_OPERATION_TIMEDOUT) {
      last_error = fmt::format("{} {} timed out after {} ms ({}); raise outputs.elasticsearch.timeout "
                               "if the cluster is slow",
                               method, url, options_.timeout.count(), detail);
      break;
    }
    if (isCurlTlsError(code)) {
      last_error = fmt::format("{} {} failed the TLS handshake: {}; check "
                               "outputs.elasticsearch.ca_file (the CA bundle that signed the "
                               "server certificate) and the host name in url",
                               method, url, detail);
      continue;
    }
    last_error = fmt::format("{} {} failed: {}", method, url, detail);
    if (!isCurlConnectError(code)) {
      break;
    }
    if (url_count > 1) {
      // Logged once per skip period, not for every request.
      if (impl_->skip_until[index] <= now) {
        spdlog::warn("elasticsearch: {}; skipping this URL for {} s", last_error,
                     kSkipFailedUrl.count());
      }
      impl_->skip_until[index] = now + kSkipFailedUrl;
    }
  }
  curl_easy_setopt(curl, CURLOPT_NOBODY, 0L);
  curl_slist_free_all(headers);
  throw TransientError("elasticsearch: " + last_error);
}

}  // namespace webtrap::collector
