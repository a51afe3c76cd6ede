// The Elasticsearch (and OpenSearch) output: sends stored events with the
// _bulk API, one `create` action per event with the event id as `_id`, so a
// resent batch cannot index a document twice.
//
// Per-item results map to deliveries: 2xx and 409 (the document already
// exists) are delivered, 429, 5xx, 401, 403 and 404 are retried, other 4xx
// are rejected with "STATUS TYPE: REASON". A whole request that fails (connection error,
// timeout, HTTP 429 or 5xx, 401/403) throws TransientError, so nothing is
// dropped because the cluster is down or a password is wrong.
//
// Metrics, each with the label output="elasticsearch":
//   webtrap_collector_es_requests_total, webtrap_collector_es_request_errors_total,
//   webtrap_collector_es_bytes_sent_total (request bodies as sent, after gzip),
//   webtrap_collector_es_items_total{status="..."} with status 2xx, 409, 429,
//   4xx (other client errors) and 5xx,
//   webtrap_collector_es_request_milliseconds_total (time in _bulk requests)
//   and webtrap_collector_es_last_request_milliseconds (gauge).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "collector/kibana_import.h"
#include "collector/stored_event.h"
#include "common/metrics.h"

namespace webtrap::collector {

struct ElasticsearchOptions {
  // Base URLs such as https://es1:9200. Requests go round robin, and a URL
  // that fails to connect is skipped for that request (failover).
  std::vector<std::string> urls{"http://127.0.0.1:9200"};
  // Exactly one of data_stream and index is used: index, when set, is a
  // strftime pattern (UTC, from the event time) such as "webtrap-%Y.%m.%d".
  std::string data_stream = "logs-webtrap-default";
  std::string index;
  std::string username;
  std::string password;
  // The "encoded" API key (base64 of id:key) as Kibana shows it, or "id:key".
  std::string api_key;
  std::string ca_file;
  bool tls_verify = true;
  std::string client_certificate;
  std::string client_key;
  // Such as http://proxy:3128. When empty, libcurl reads the http_proxy,
  // https_proxy and no_proxy environment variables.
  std::string proxy;
  std::chrono::milliseconds timeout{30000};
  std::chrono::milliseconds connect_timeout{10000};
  bool compression = false;  // gzip request bodies
  // Upper bound of one _bulk body before gzip; a larger batch is split into
  // several requests.
  std::uint64_t request_max_bytes = 5ULL << 20;
  // How many _bulk requests of one batch may be in flight at once, each on
  // its own connection. A batch is cut into this many requests when each
  // would still be large, so the cluster indexes several at once.
  std::uint32_t parallel_requests = 1;
  // Set by the kibana subsection: setup-elasticsearch then imports the
  // dashboard into that Kibana.
  std::optional<KibanaOptions> kibana;
};

// Parses `outputs.elasticsearch`: url (a string or a list), data_stream,
// index, username, password, api_key, ca_file, tls_verify,
// client_certificate, client_key, proxy, timeout, connect_timeout,
// compression, request_max_bytes, parallel_requests, and the kibana
// subsection (see parseKibanaOptions). The runner keys (batch_max_events,
// batch_max_bytes, flush_interval, retry_initial, retry_max) are skipped for
// parseRunnerOptions(). Throws ConfigError naming the key and the fix.
ElasticsearchOptions parseElasticsearchOptions(const YAML::Node& node);

// One HTTP exchange with the cluster.
struct ElasticsearchResponse {
  long status = 0;
  std::string body;
  std::int64_t retry_after_ms = 0;  // from Retry-After, 0 when absent
  std::string url;                  // the base URL that sent this response
  std::size_t bytes_sent = 0;       // request body size on the wire (after gzip)
};

// A libcurl client for one cluster: authentication, TLS, proxy, timeouts and
// URL failover. Keeps one easy handle so connections are reused. Not thread
// safe: each output or command owns its own client.
class ElasticsearchClient {
 public:
  explicit ElasticsearchClient(ElasticsearchOptions options);
  ~ElasticsearchClient();
  ElasticsearchClient(const ElasticsearchClient&) = delete;
  ElasticsearchClient& operator=(const ElasticsearchClient&) = delete;

  // Sends `method` `path` (starting with '/') to the next URL in turn and
  // tries the others on connection failure. `gzip` compresses `body` and
  // sets Content-Encoding. Throws TransientError when no URL could be
  // reached or the request timed out; any HTTP status is returned.
  ElasticsearchResponse request(std::string_view method, std::string_view path,
                                std::string_view body = {},
                                std::string_view content_type = "application/json",
                                bool gzip = false);

  const ElasticsearchOptions& options() const { return options_; }

 private:
  struct Impl;
  ElasticsearchOptions options_;
  std::unique_ptr<Impl> impl_;
};

class ElasticsearchOutput : public Output {
 public:
  ElasticsearchOutput(ElasticsearchOptions options, MetricsRegistry& metrics);
  ~ElasticsearchOutput() override;

  std::string_view name() const override { return "elasticsearch"; }

  std::vector<ItemResult> send(std::span<const StoredEvent> batch) override;
  // Each original goes from its batch straight into the _bulk body.
  OriginalForm originalForm() const override { return OriginalForm::kApart; }

  // The index or data stream an event goes to.
  std::string targetFor(const StoredEvent& event) const;

  // Appends the two NDJSON lines of `event` (action and document, each
  // ending with '\n') to `body`.
  void appendBulkItem(std::string& body, const StoredEvent& event) const;

 private:
  struct Metrics;
  // A connection of its own and the body buffer of one request in flight.
  struct Lane;

  // Sends one _bulk request on `lane`. Splits it on a whole-request 400 or
  // 413.
  std::vector<ItemResult> sendRequest(Lane& lane, std::span<const StoredEvent* const> events);

  ElasticsearchOptions options_;
  std::unique_ptr<Metrics> metrics_;
  // With a data stream every action line starts the same way: the text up
  // to the _id's opening quote, escaped once. Empty with dated indices.
  std::string data_stream_action_;
  // parallel_requests lanes. Lane 0 runs on the caller's thread, the others
  // on threads started for each batch. A lane's body keeps its capacity (up
  // to request_max_bytes) between requests.
  std::vector<std::unique_ptr<Lane>> lanes_;
};

struct BulkResponseItems {
  std::vector<ItemResult> results;  // one per item, in request order
  std::vector<int> statuses;        // each item's HTTP status
};

// Maps the body of a _bulk response to one result per item. Throws
// TransientError when the body is not a bulk response or holds a different
// number of items than `expected_items`.
BulkResponseItems parseBulkResponse(std::string_view body, std::size_t expected_items);

}  // namespace webtrap::collector
