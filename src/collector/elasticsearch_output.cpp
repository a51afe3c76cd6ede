#include "collector/elasticsearch_output.h"

#include <algorithm>
#include <chrono>
#include <ctime>
#include <exception>
#include <thread>

#include <fmt/format.h>
#include <simdjson.h>
#include <spdlog/spdlog.h>

#include "common/json_writer.h"

namespace webtrap::collector {
namespace {

constexpr std::string_view kLabels = R"(output="elasticsearch")";

// Bytes of an action line besides the index name and id.
constexpr std::size_t kActionOverhead = 40;

// A batch is cut into parallel requests only when each carries at least
// this many bytes.
constexpr std::size_t kMinParallelBytes = 512 * 1024;

std::string itemReason(long status, std::string_view type, std::string_view reason,
                       std::string_view cause_type, std::string_view cause_reason) {
  std::string text = fmt::format("{} {}: {}", status, type.empty() ? "unknown_error" : type,
                                 reason.empty() ? "(no reason given)" : reason);
  if (!cause_type.empty() || !cause_reason.empty()) {
    text += fmt::format(" (caused by {}: {})", cause_type, cause_reason);
  }
  return text;
}

ItemResult mapItem(long status, std::string reason) {
  if ((status >= 200 && status < 300) || status == 409) {
    return {Delivery::kDelivered, {}};
  }
  // 401 and 403 (missing privileges on the index) and 404 (index not found
  // while auto-create is off) point at the cluster's configuration, not the
  // document, so the event waits for that to be fixed.
  if (status == 429 || status >= 500 || status == 401 || status == 403 || status == 404) {
    return {Delivery::kRetry, std::move(reason)};
  }
  return {Delivery::kRejected, std::move(reason)};
}

// The type and reason of a whole-request error body, for log lines.
std::string requestErrorText(const ElasticsearchResponse& response) {
  simdjson::ondemand::parser parser;
  simdjson::padded_string padded(response.body);
  std::string_view type;
  std::string_view reason;
  auto document = parser.iterate(padded);
  simdjson::ondemand::object error;
  if (!document.error() && !document["error"].get_object().get(error)) {
    for (auto field : error) {
      std::string_view key;
      if (field.unescaped_key().get(key)) {
        break;
      }
      if (key == "type") {
        if (field.value().get_string().get(type)) {
          break;
        }
      } else if (key == "reason") {
        if (field.value().get_string().get(reason)) {
          break;
        }
      }
    }
  }
  if (type.empty() && reason.empty()) {
    std::string_view body(response.body);
    return std::string(body.substr(0, 200));
  }
  return fmt::format("{}: {}", type, reason);
}

}  // namespace

BulkResponseItems parseBulkResponse(std::string_view body, std::size_t expected_items) {
  using namespace simdjson;
  BulkResponseItems items;
  items.results.reserve(expected_items);
  items.statuses.reserve(expected_items);
  ondemand::parser parser;
  padded_string padded(body);
  bool found_items = false;
  try {
    ondemand::document document = parser.iterate(padded);
    for (auto field : document.get_object()) {
      std::string_view key = field.unescaped_key();
      if (key != "items") {
        continue;
      }
      found_items = true;
      for (auto item : field.value().get_array()) {
        // Each item is {"<op>": {...}} with a single key.
        for (auto op_field : item.get_object()) {
          long status = 0;
          std::string_view type;
          std::string reason;
          std::string_view cause_type;
          std::string cause_reason;
          for (auto member : op_field.value().get_object()) {
            std::string_view name = member.unescaped_key();
            if (name == "status") {
              status = static_cast<long>(member.value().get_int64());
            } else if (name == "error") {
              ondemand::value error = member.value();
              ondemand::json_type error_type = error.type();
              if (error_type == ondemand::json_type::string) {
                reason = std::string(std::string_view(error.get_string()));
                continue;
              }
              for (auto part : error.get_object()) {
                std::string_view part_name = part.unescaped_key();
                if (part_name == "type") {
                  type = part.value().get_string();
                } else if (part_name == "reason") {
                  ondemand::value value = part.value();
                  ondemand::json_type value_type = value.type();
                  if (value_type == ondemand::json_type::string) {
                    reason = std::string(std::string_view(value.get_string()));
                  }
                } else if (part_name == "caused_by") {
                  for (auto cause : part.value().get_object()) {
                    std::string_view cause_name = cause.unescaped_key();
                    if (cause_name == "type") {
                      cause_type = cause.value().get_string();
                    } else if (cause_name == "reason") {
                      ondemand::value value = cause.value();
                      ondemand::json_type value_type = value.type();
                      if (value_type == ondemand::json_type::string) {
                        cause_reason = std::string(std::string_view(value.get_string()));
                      }
                    }
                  }
                }
              }
            }
          }
          // `type` points into the parser's string buffer, which stays valid
          // until the next document, so the reason is built here.
          std::string text = status >= 200 && status < 300
                                 ? std::string()
                                 : itemReason(status, type, reason, cause_type, cause_reason);
          items.results.push_back(mapItem(status, std::move(text)));
          items.statuses.push_back(static_cast<int>(status));
          break;
        }
      }
    }
  } catch (const simdjson_error& error) {
    throw TransientError(fmt::format("elasticsearch: the _bulk response is not valid JSON ({}): {}",
                                     error.what(), body.substr(0, 200)));
  }
  if (!found_items) {
    throw TransientError(fmt::format("elasticsearch: the _bulk response has no \"items\": {}",
                                     body.substr(0, 200)));
  }
  if (items.results.size() != expected_items) {
    throw TransientError(fmt::format("elasticsearch: the _bulk response has {} items for {} "
                                     "actions; resending the batch",
                                     items.results.size(), expected_items));
  }
  return items;
}

struct ElasticsearchOutput::Metrics {
  explicit Metrics(MetricsRegistry& registry)
      : requests(registry.counter("webtrap_collector_es_requests_total",
                                  "_bulk requests sent to Elasticsearch", kLabels)),
        request_errors(registry.counter(
            "webtrap_collector_es_request_errors_total",
            "_bulk requests that failed as a whole (connection, timeout, 401/403, 413, 429, 5xx)",
            kLabels)),
        bytes_sent(registry.counter("webtrap_collector_es_bytes_sent_total",
                                    "_bulk request body bytes as sent (after gzip)", kLabels)),
        items_2xx(itemCounter(registry, "2xx")),
        items_409(itemCounter(registry, "409")),
        items_429(itemCounter(registry, "429")),
        items_4xx(itemCounter(registry, "4xx")),
        items_5xx(itemCounter(registry, "5xx")),
        latency_ms(registry.counter("webtrap_collector_es_request_milliseconds_total",
                                    "Time spent in _bulk requests, in milliseconds; divide by "
                                    "webtrap_collector_es_requests_total for the mean",
                                    kLabels)),
        last_latency_ms(registry.gauge("webtrap_collector_es_last_request_milliseconds",
                                       "Duration of the last _bulk request, in milliseconds",
                                       kLabels)) {}

  static Counter& itemCounter(MetricsRegistry& registry, std::string_view status) {
    return registry.counter("webtrap_collector_es_items_total",
                            "_bulk items by the HTTP status class Elasticsearch returned",
                            fmt::format("{},status=\"{}\"", kLabels, status));
  }

  void countItem(int status) {
    if (status >= 200 && status < 300) {
      items_2xx.inc();
    } else if (status == 409) {
      items_409.inc();
    } else if (status == 429) {
      items_429.inc();
    } else if (status >= 500) {
      items_5xx.inc();
    } else {
      items_4xx.inc();
    }
  }

  Counter& requests;
  Counter& request_errors;
  Counter& bytes_sent;
  Counter& items_2xx;
  Counter& items_409;
  Counter& items_429;
  Counter& items_4xx;
  Counter& items_5xx;
  Counter& latency_ms;
  Gauge& last_latency_ms;
};

struct ElasticsearchOutput::Lane {
  explicit Lane(const ElasticsearchOptions& options) : client(options) {}
  ElasticsearchClient client;
  std::string body;
};

ElasticsearchOutput::ElasticsearchOutput(ElasticsearchOptions options, MetricsRegistry& metrics)
    : options_(std::move(options)), metrics_(std::make_unique<Metrics>(metrics)) {
  if (options_.index.empty()) {
    data_stream_action_ = R"({"create":{"_index":")";
    appendJsonEscaped(data_stream_action_, options_.data_stream);
    data_stream_action_ += R"(","_id":")";
  }
  const std::uint32_t lanes = std::max<std::uint32_t>(options_.parallel_requests, 1);
  for (std::uint32_t i = 0; i < lanes; ++i) {
    lanes_.push_back(std::make_unique<Lane>(options_));
  }
  spdlog::info("elasticsearch output: {} URL(s) starting with {}, target {}{}, {} request(s) in "
               "flight",
               options_.urls.size(), options_.urls.front(),
               options_.index.empty() ? "data stream " + options_.data_stream
                                      : "indices " + options_.index,
               options_.compression ? ", gzip" : "", lanes);
}

ElasticsearchOutput::~ElasticsearchOutput() = default;

std::string ElasticsearchOutput::targetFor(const StoredEvent& event) const {
  if (options_.index.empty()) {
    return options_.data_stream;
  }
  std::time_t seconds = static_cast<std::time_t>(event.timestamp_ms / 1000);
  if (event.timestamp_ms < 0 && event.timestamp_ms % 1000 != 0) {
    --seconds;  // round toward the earlier second
  }
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char buffer[512];
  std::size_t length = std::strftime(buffer, sizeof buffer, options_.index.c_str(), &utc);
  return std::string(buffer, length);
}

void ElasticsearchOutput::appendBulkItem(std::string& body, const StoredEvent& event) const {
  if (!data_stream_action_.empty()) {
    body += data_stream_action_;
  } else {
    body += R"({"create":{"_index":")";
    appendJsonEscaped(body, targetFor(event));
    body += R"(","_id":")";
  }
  appendJsonEscaped(body, event.event_id);
  body += "\"}}\n";
  appendWholeDocument(body, event);
  body += '\n';
}

std::vector<ItemResult> ElasticsearchOutput::send(std::span<const StoredEvent> batch) {
  std::vector<ItemResult> results(batch.size());
  // The events that can be framed, with their size in a _bulk body.
  std::vector<std::size_t> sendable;
  std::vector<std::size_t> item_bytes;
  sendable.reserve(batch.size());
  item_bytes.reserve(batch.size());
  std::size_t total_bytes = 0;
  for (std::size_t i = 0; i < batch.size(); ++i) {
    const StoredEvent& event = batch[i];
    // A raw newline would split the document across NDJSON lines, and an
    // empty document is not JSON: Elasticsearch would reject the whole
    // request, so these are rejected here. An original kept apart is
    // escaped as it goes into the body, so only the stored part is searched.
    if (event.document.empty() || event.document.find('\n') != std::string::npos) {
      results[i] = {Delivery::kRejected,
                    event.document.empty()
                        ? "elasticsearch output: the stored document is empty"
                        : "elasticsearch output: the stored document contains a raw newline, "
                          "which NDJSON cannot carry"};
      continue;
    }
    const std::size_t bytes = wholeDocumentBytes(event) + event.event_id.size() + kActionOverhead + 64;
    sendable.push_back(i);
    item_bytes.push_back(bytes);
    total_bytes += bytes;
  }
  if (sendable.empty()) {
    return results;
  }

  // Cut the batch into requests of at most request_max_bytes (a single
  // larger event goes alone). When every lane's share would still carry
  // kMinParallelBytes, cut it into at least one request per lane, so that
  // every lane has work while a small batch still goes in one request.
  // Events go by their offset in the batch: request r starts at the first
  // event that begins past r / count of the bytes, so the cut yields
  // `count` requests of about equal size.
  const std::size_t lane_count = std::min(lanes_.size(), sendable.size());
  const std::size_t max_bytes = options_.request_max_bytes;
  std::size_t count = (total_bytes + max_bytes - 1) / max_bytes;
  if (total_bytes / lane_count >= kMinParallelBytes) {
    count = std::max(count, lane_count);
  }
  count = std::clamp<std::size_t>(count, 1, sendable.size());
  std::vector<std::vector<const StoredEvent*>> requests;
  std::vector<std::vector<std::size_t>> positions;
  std::size_t offset = 0;         // bytes of the events before event k
  std::size_t current_bytes = 0;  // bytes in the last request so far
  std::size_t next_cut = 0;       // the offset where the next request starts
  for (std::size_t k = 0; k < sendable.size(); ++k) {
    const bool past_share = offset >= next_cut;
    const bool too_large = current_bytes + item_bytes[k] > max_bytes;
    if (requests.empty() || (current_bytes > 0 && (past_share || too_large))) {
      requests.emplace_back();
      positions.emplace_back();
      current_bytes = 0;
      next_cut = total_bytes / count * requests.size() +
                 (total_bytes % count) * requests.size() / count;
    }
    requests.back().push_back(&batch[sendable[k]]);
    positions.back().push_back(sendable[k]);
    current_bytes += item_bytes[k];
    offset += item_bytes[k];
  }

  // Lane n sends requests n, n + lanes, n + 2 * lanes, ... in turn, and
  // stops at its first failure. Once every lane has finished, the first
  // failure in request order is thrown. The runner then sends the whole
  // batch again, and the events already indexed come back as 409s, which
  // count as delivered.
  std::vector<std::exception_ptr> failures(requests.size());
  auto runLane = [&](std::size_t lane) {
    for (std::size_t r = lane; r < requests.size(); r += lane_count) {
      try {
        std::vector<ItemResult> request_results = sendRequest(*lanes_[lane], requests[r]);
        for (std::size_t i = 0; i < positions[r].size(); ++i) {
          results[positions[r][i]] = std::move(request_results[i]);
        }
      } catch (...) {
        failures[r] = std::current_exception();
        return;
      }
    }
  };
  const std::size_t busy_lanes = std::min(lane_count, requests.size());
  std::vector<std::thread> threads;
  threads.reserve(busy_lanes - 1);
  for (std::size_t lane = 1; lane < busy_lanes; ++lane) {
    threads.emplace_back(runLane, lane);
  }
  runLane(0);
  for (std::thread& thread : threads) {
    thread.join();
  }
  for (const std::exception_ptr& failure : failures) {
    if (failure) {
      std::rethrow_exception(failure);
    }
  }
  return results;
}

std::vector<ItemResult> ElasticsearchOutput::sendRequest(
    Lane& lane, std::span<const StoredEvent* const> events) {
  std::string& body = lane.body;
  body.clear();
  std::size_t reserve = 0;
  for (const StoredEvent* event : events) {
    reserve += wholeDocumentBytes(*event) + event->event_id.size() + kActionOverhead + 64;
  }
  body.reserve(reserve);
  for (const StoredEvent* event : events) {
    appendBulkItem(body, *event);
  }

  auto started = std::chrono::steady_clock::now();
  metrics_->requests.inc();
  ElasticsearchResponse response;
  try {
    response = lane.client.request("POST", "/_bulk", body, "application/x-ndjson", options_.compression);
  } catch (const TransientError&) {
    metrics_->request_errors.inc();
    throw;
  }
  auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(
                     std::chrono::steady_clock::now() - started)
                     .count();
  metrics_->latency_ms.inc(static_cast<std::uint64_t>(elapsed));
  metrics_->last_latency_ms.set(elapsed);
  metrics_->bytes_sent.inc(response.bytes_sent);

  const long status = response.status;
  if (status == 200) {
    BulkResponseItems items = parseBulkResponse(response.body, events.size());
    for (int item_status : items.statuses) {
      metrics_->countItem(item_status);
    }
    return std::move(items.results);
  }

  metrics_->request_errors.inc();
  const std::string error_text = requestErrorText(response);
  if (status == 401 || status == 403) {
    std::string setting = !options_.api_key.empty()    ? "outputs.elasticsearch.api_key"
                          : !options_.username.empty() ? "outputs.elasticsearch.username and password"
                                                       : "outputs.elasticsearch.username/password or api_key (none is set)";
    spdlog::error("elasticsearch output: {} {} from {}: {}; check {}. Events stay queued and are "
                  "sent again.",
                  status, status == 401 ? "unauthorized" : "forbidden", response.url, error_text,
                  setting);
    throw TransientError(fmt::format("elasticsearch: HTTP {} ({}); check {}", status, error_text,
                                     setting),
                         response.retry_after_ms);
  }
  if (status == 413 || status == 400) {
    // The request as a whole was not accepted. Splitting it isolates the
    // event that causes it, which is then rejected alone.
    if (events.size() > 1) {
      spdlog::warn("elasticsearch output: HTTP {} for {} events ({}); splitting the request", status,
                   events.size(), error_text);
      std::size_t half = events.size() / 2;
      std::vector<ItemResult> results = sendRequest(lane, events.first(half));
      std::vector<ItemResult> rest = sendRequest(lane, events.subspan(half));
      results.insert(results.end(), std::make_move_iterator(rest.begin()),
                     std::make_move_iterator(rest.end()));
      return results;
    }
    return {ItemResult{Delivery::kRejected,
                       fmt::format("{} {}", status, error_text)}};
  }
  // 429, 5xx, and statuses that point at the configuration (404 for a wrong
  // URL path, 406, ...): keep the events and try again later.
  throw TransientError(fmt::format("elasticsearch: HTTP {} from {}: {}", status, response.url,
                                   error_text),
                       response.retry_after_ms);
}

}  // namespace webtrap::collector
