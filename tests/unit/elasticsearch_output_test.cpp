// Drives the Elasticsearch output against tests/tools/es_double.py, the
// Elasticsearch test double, started on loopback for each test.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <simdjson.h>
#include <yaml-cpp/yaml.h>

#include "collector/elasticsearch_output.h"
#include "collector/elasticsearch_setup.h"
#include "common/error.h"
#include "common/metrics.h"
#include "double_process.h"

namespace webtrap::collector {
namespace {

namespace fs = std::filesystem;

using testing::readText;
using testing::sharedDir;
using testing::sourceDir;

fs::path makeTempDir() { return testing::makeTempDir("es-output-test"); }

// One es_double.py process on 127.0.0.1. It records requests for fixtures
// unless started with --fast, because recording costs time.
class DoubleProcess : public testing::DoubleProcess {
 public:
  explicit DoubleProcess(std::vector<std::string> extra_args = {})
      : testing::DoubleProcess("es_double.py", withRecording(std::move(extra_args))) {}

 private:
  static std::vector<std::string> withRecording(std::vector<std::string> args) {
    if (std::find(args.begin(), args.end(), "--fast") == args.end()) {
      args.insert(args.begin(), {"--record", "200"});
    }
    return args;
  }
};

// Test-side requests to the double (faults, stats), over plain HTTP.
class DoubleControl {
 public:
  explicit DoubleControl(const DoubleProcess& double_process) : client_(optionsFor(double_process)) {}

  void setFaults(std::string_view json) {
    auto response = client_.request("POST", "/_double/faults", json);
    ASSERT_EQ(response.status, 200) << response.body;
  }

  ElasticsearchResponse get(std::string_view path) { return client_.request("GET", path); }

  // A number from GET /_double/stats, by JSON pointer such as "/created".
  std::int64_t stat(std::string_view pointer) {
    auto response = get("/_double/stats");
    simdjson::dom::parser parser;
    std::int64_t value = -1;
    auto error = parser.parse(response.body).at_pointer(pointer).get_int64().get(value);
    return error ? 0 : value;
  }

 private:
  static ElasticsearchOptions optionsFor(const DoubleProcess& double_process) {
    ElasticsearchOptions options;
    options.urls = {double_process.url()};
    options.timeout = std::chrono::milliseconds(10000);
    return options;
  }

  ElasticsearchClient client_;
};

StoredEvent makeEvent(int number, std::int64_t timestamp_ms = 1764842400000) {
  StoredEvent event;
  event.seq = number;
  event.event_id = fmt::format("evt-{:05d}", number);
  event.timestamp_ms = timestamp_ms;
  event.sensor_id = "web1";
  event.document = fmt::format(
      R"({{"@timestamp":"2025-12-04T10:00:00.000Z","event":{{"id":"{}"}},"source":{{"ip":"192.0.2.{}"}},"http":{{"response":{{"status_code":404}}}}}})",
      event.event_id, number % 250);
  return event;
}

std::vector<StoredEvent> makeEvents(int count, int first = 1) {
  std::vector<StoredEvent> events;
  for (int i = 0; i < count; ++i) {
    events.push_back(makeEvent(first + i));
  }
  return events;
}

ElasticsearchOptions optionsFor(const DoubleProcess& double_process) {
  ElasticsearchOptions options;
  options.urls = {double_process.url()};
  options.timeout = std::chrono::milliseconds(10000);
  return options;
}

std::size_t countDelivery(const std::vector<ItemResult>& results, Delivery delivery) {
  std::size_t count = 0;
  for (const auto& result : results) {
    count += result.delivery == delivery ? 1 : 0;
  }
  return count;
}

// Saves the requests the double saw, with its responses, as fixtures when
// WEBTRAP_RECORD_FIXTURES names a folder.
void recordFixture(DoubleControl& control, const std::string& name) {
  const char* folder = std::getenv("WEBTRAP_RECORD_FIXTURES");
  if (folder == nullptr) {
    return;
  }
  auto response = control.get("/_double/requests");
  std::ofstream(fs::path(folder) / (name + ".json"), std::ios::binary) << response.body << "\n";
}

TEST(ElasticsearchOutput, AllCreatedInDataStream) {
  DoubleProcess double_process;
  DoubleControl control(double_process);
  MetricsRegistry metrics;
  ElasticsearchOutput output(optionsFor(double_process), metrics);
  auto events = makeEvents(40);

  auto results = output.send(events);

  ASSERT_EQ(results.size(), events.size());
  EXPECT_EQ(countDelivery(results, Delivery::kDelivered), events.size());
  EXPECT_EQ(control.stat("/created"), 40);
  EXPECT_EQ(control.stat("/distinct_ids"), 40);
  EXPECT_EQ(control.stat("/bulk_requests"), 1);
  auto doc = control.get("/logs-webtrap-default/_doc/evt-00007");
  EXPECT_EQ(doc.status, 200);
  EXPECT_NE(doc.body.find(R"("ip":"192.0.2.7")"), std::string::npos) << doc.body;
  EXPECT_NE(doc.body.find(R"("_index":".ds-logs-webtrap-default-)"), std::string::npos) << doc.body;
  std::string rendered = metrics.render();
  EXPECT_NE(rendered.find(R"(webtrap_collector_es_items_total{output="elasticsearch",status="2xx"} 40)"),
            std::string::npos)
      << rendered;
  EXPECT_NE(rendered.find(R"(webtrap_collector_es_requests_total{output="elasticsearch"} 1)"),
            std::string::npos);
  recordFixture(control, "bulk-create-data-stream");
}

TEST(ElasticsearchOutput, ConflictCountsAsDelivered) {
  DoubleProcess double_process;
  DoubleControl control(double_process);
  MetricsRegistry metrics;
  ElasticsearchOutput output(optionsFor(double_process), metrics);
  auto events = makeEvents(10);
  ASSERT_EQ(countDelivery(output.send(events), Delivery::kDelivered), 10u);

  auto again = output.send(events);

  EXPECT_EQ(countDelivery(again, Delivery::kDelivered), 10u);
  EXPECT_EQ(control.stat("/conflicts"), 10);
  EXPECT_EQ(control.stat("/distinct_ids"), 10);
  EXPECT_NE(metrics.render().find(R"(status="409"} 10)"), std::string::npos);
  recordFixture(control, "bulk-conflict-409");
}

TEST(ElasticsearchOutput, ItemRejectionRetriedThenDelivered) {
  DoubleProcess double_process;
  DoubleControl control(double_process);
  MetricsRegistry metrics;
  ElasticsearchOutput output(optionsFor(double_process), metrics);
  control.setFaults(R"({"item_429_next":3})");
  auto events = makeEvents(8);

  auto results = output.send(events);

  ASSERT_EQ(results.size(), 8u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(results[i].delivery, Delivery::kRetry) << i;
    EXPECT_NE(results[i].reason.find("429 es_rejected_execution_exception"), std::string::npos)
        << results[i].reason;
  }
  for (int i = 3; i < 8; ++i) {
    EXPECT_EQ(results[i].delivery, Delivery::kDelivered) << i;
  }
  recordFixture(control, "bulk-item-429");

  std::vector<StoredEvent> retry(events.begin(), events.begin() + 3);
  auto second = output.send(retry);
  EXPECT_EQ(countDelivery(second, Delivery::kDelivered), 3u);
  EXPECT_EQ(control.stat("/distinct_ids"), 8);
  EXPECT_EQ(control.stat("/conflicts"), 0);
}

TEST(ElasticsearchOutput, ItemUnavailableIsRetried) {
  DoubleProcess double_process;
  DoubleControl control(double_process);
  MetricsRegistry metrics;
  ElasticsearchOutput output(optionsFor(double_process), metrics);
  control.setFaults(R"({"item_5xx_next":1})");

  auto results = output.send(makeEvents(2));

  EXPECT_EQ(results[0].delivery, Delivery::kRetry);
  EXPECT_NE(results[0].reason.find("503 unavailable_shards_exception"), std::string::npos);
  EXPECT_EQ(results[1].delivery, Delivery::kDelivered);
}

TEST(ElasticsearchOutput, RequestRejectionThrowsWithRetryAfter) {
  DoubleProcess double_process;
  DoubleControl control(double_process);
  MetricsRegistry metrics;
  ElasticsearchOutput output(optionsFor(double_process), metrics);
  auto events = makeEvents(5);

  for (int status : {429, 503, 502, 500}) {
    control.setFaults(fmt::format(R"({{"fail_next":1,"fail_status":{},"retry_after":7}})", status));
    try {
      output.send(events);
      ADD_FAILURE() << "no TransientError for HTTP " << status;
    } catch (const TransientError& error) {
      EXPECT_EQ(error.retry_after_ms, 7000) << status;
      EXPECT_NE(std::string(error.what()).find(fmt::format("HTTP {}", status)), std::string::npos)
          << error.what();
    }
  }
  recordFixture(control, "bulk-request-failures");
  EXPECT_EQ(control.stat("/items"), 0);
  EXPECT_EQ(countDelivery(output.send(events), Delivery::kDelivered), 5u);
}

TEST(ElasticsearchOutput, MappingErrorIsRejectedWithReason) {
  DoubleProcess double_process;
  DoubleControl control(double_process);
  MetricsRegistry metrics;
  ElasticsearchOutput output(optionsFor(double_process), metrics);
  control.setFaults(R"({"reject_field":"source.ip","reject_value":"192.0.2.2","reject_type":"mapper_parsing_exception"})");

  auto results = output.send(makeEvents(3));

  EXPECT_EQ(results[0].delivery, Delivery::kDelivered);
  EXPECT_EQ(results[1].delivery, Delivery::kRejected);
  EXPECT_EQ(results[1].reason.rfind("400 mapper_parsing_exception: ", 0), 0u) << results[1].reason;
  EXPECT_NE(results[1].reason.find("failed to parse field [source.ip]"), std::string::npos)
      << results[1].reason;
  EXPECT_EQ(results[2].delivery, Delivery::kDelivered);
  EXPECT_NE(metrics.render().find(R"(status="4xx"} 1)"), std::string::npos);
  recordFixture(control, "bulk-mapping-error");
}

TEST(ElasticsearchOutput, DataStreamNeedsTimestamp) {
  DoubleProcess double_process;
  MetricsRegistry metrics;
  ElasticsearchOutput output(optionsFor(double_process), metrics);
  std::vector<StoredEvent> events = makeEvents(2);
  events[1].document = R"({"event":{"id":"no-time"}})";

  auto results = output.send(events);

  EXPECT_EQ(results[0].delivery, Delivery::kDelivered);
  EXPECT_EQ(results[1].delivery, Delivery::kRejected);
  EXPECT_NE(results[1].reason.find("[@timestamp] is missing"), std::string::npos) << results[1].reason;
}

TEST(ElasticsearchOutput, RawNewlineRejectedLocally) {
  DoubleProcess double_process;
  DoubleControl control(double_process);
  MetricsRegistry metrics;
  ElasticsearchOutput output(optionsFor(double_process), metrics);
  std::vector<StoredEvent> events = makeEvents(3);
  events[1].document = "{\"@timestamp\":\"2025-12-04T10:00:00Z\",\n\"a\":1}";

  auto results = output.send(events);

  EXPECT_EQ(results[0].delivery, Delivery::kDelivered);
  EXPECT_EQ(results[1].delivery, Delivery::kRejected);
  EXPECT_NE(results[1].reason.find("raw newline"), std::string::npos);
  EXPECT_EQ(results[2].delivery, Delivery::kDelivered);
  EXPECT_EQ(control.stat("/items"), 2);
}

TEST(ElasticsearchOutput, OriginalApartIndexedWhole) {
  DoubleProcess double_process;
  DoubleControl control(double_process);
  MetricsRegistry metrics;
  ElasticsearchOutput output(optionsFor(double_process), metrics);
  EXPECT_EQ(output.originalForm(), OriginalForm::kApart);
  auto text = std::make_shared<const std::string>(
      "{\"first\":1}\n{\"q\":\"x\\\"y\",\"n\":1}\n");
  std::vector<StoredEvent> events = makeEvents(3);
  for (int i : {1, 2}) {
    StoredEvent& event = events[i];
    event.original_text = text;
    event.original = std::string_view(*text).substr(12, text->size() - 13);
    event.original_at = event.document.find(R"("},"source")") + 1;
  }
  // Only the stored part is searched for raw newlines.
  events[2].document.insert(events[2].document.size() - 1, ",\n\"a\":1");

  auto results = output.send(events);

  EXPECT_EQ(results[0].delivery, Delivery::kDelivered);
  EXPECT_EQ(results[1].delivery, Delivery::kDelivered);
  EXPECT_EQ(results[2].delivery, Delivery::kRejected);
  EXPECT_NE(results[2].reason.find("raw newline"), std::string::npos) << results[2].reason;
  auto doc = control.get("/logs-webtrap-default/_doc/evt-00002");
  EXPECT_EQ(doc.status, 200);
  EXPECT_NE(doc.body.find(R"("event":{"id":"evt-00002","original":"{\"q\":\"x\\\"y\",\"n\":1}"})"),
            std::string::npos)
      << doc.body;
}

TEST(ElasticsearchOutput, SlowResponseWithinTimeout) {
  DoubleProcess double_process;
  DoubleControl control(double_process);
  MetricsRegistry metrics;
  auto options = optionsFor(double_process);
  options.timeout = std::chrono::milliseconds(3000);
  ElasticsearchOutput output(options, metrics);
  control.setFaults(R"({"delay_ms":300})");

  auto started = std::chrono::steady_clock::now();
  auto results = output.send(makeEvents(4));
  auto elapsed = std::chrono::steady_clock::now() - started;

  EXPECT_EQ(countDelivery(results, Delivery::kDelivered), 4u);
  EXPECT_GE(elapsed, std::chrono::milliseconds(300));
}

TEST(ElasticsearchOutput, TimeoutThrowsTransientError) {
  DoubleProcess double_process;
  DoubleControl control(double_process);
  MetricsRegistry metrics;
  auto options = optionsFor(double_process);
  options.timeout = std::chrono::milliseconds(400);
  ElasticsearchOutput output(options, metrics);
  control.setFaults(R"({"delay_ms":1500})");

  try {
    output.send(makeEvents(2));
    ADD_FAILURE() << "no TransientError after the timeout";
  } catch (const TransientError& error) {
    EXPECT_NE(std::string(error.what()).find("timed out"), std::string::npos) << error.what();
  }
  EXPECT_NE(metrics.render().find(R"(webtrap_collector_es_request_errors_total{output="elasticsearch"} 1)"),
            std::string::npos);
}

TEST(ElasticsearchOutput, BasicAuth) {
  DoubleProcess double_process({"--basic-auth", "webtrap:s3cret"});
  MetricsRegistry metrics;
  auto options = optionsFor(double_process);
  options.username = "webtrap";
  options.password = "s3cret";
  ElasticsearchOutput good(options, metrics);
  EXPECT_EQ(countDelivery(good.send(makeEvents(2)), Delivery::kDelivered), 2u);

  options.password = "wrong";
  ElasticsearchOutput bad(options, metrics);
  try {
    bad.send(makeEvents(2, 10));
    ADD_FAILURE() << "no TransientError for a wrong password";
  } catch (const TransientError& error) {
    std::string text = error.what();
    EXPECT_NE(text.find("HTTP 401"), std::string::npos) << text;
    EXPECT_NE(text.find("outputs.elasticsearch.username and password"), std::string::npos) << text;
    EXPECT_EQ(text.find("wrong"), std::string::npos) << "the password leaked into: " << text;
  }
}

TEST(ElasticsearchOutput, ApiKeyHeader) {
  // base64("key-id:key-secret"), the "encoded" form Elasticsearch returns.
  const std::string encoded = "a2V5LWlkOmtleS1zZWNyZXQ=";
  DoubleProcess double_process({"--api-key", encoded});
  DoubleControl control(double_process);
  MetricsRegistry metrics;
  auto options = optionsFor(double_process);

  options.api_key = "key-id:key-secret";
  ElasticsearchOutput raw_form(options, metrics);
  EXPECT_EQ(countDelivery(raw_form.send(makeEvents(2)), Delivery::kDelivered), 2u);

  options.api_key = encoded;
  ElasticsearchOutput encoded_form(options, metrics);
  EXPECT_EQ(countDelivery(encoded_form.send(makeEvents(2, 10)), Delivery::kDelivered), 2u);

  options.api_key = "key-id:other";
  ElasticsearchOutput wrong(options, metrics);
  EXPECT_THROW(wrong.send(makeEvents(1, 20)), TransientError);
}

TEST(ElasticsearchOutput, GzipRequestBody) {
  DoubleProcess double_process;
  DoubleControl control(double_process);
  MetricsRegistry metrics;
  auto options = optionsFor(double_process);
  options.compression = true;
  ElasticsearchOutput output(options, metrics);

  auto results = output.send(makeEvents(100));

  EXPECT_EQ(countDelivery(results, Delivery::kDelivered), 100u);
  EXPECT_EQ(control.stat("/gzip_requests"), 1);
  std::int64_t received = control.stat("/bytes_received");
  std::string body;
  ElasticsearchOutput plain(optionsFor(double_process), metrics);
  for (const auto& event : makeEvents(100)) {
    plain.appendBulkItem(body, event);
  }
  EXPECT_LT(received, static_cast<std::int64_t>(body.size()) / 3)
      << "the body on the wire is not compressed";
}

TEST(ElasticsearchOutput, DatedIndexNames) {
  DoubleProcess double_process;
  DoubleControl control(double_process);
  MetricsRegistry metrics;
  auto options = optionsFor(double_process);
  options.data_stream.clear();
  options.index = "webtrap-%Y.%m.%d";
  ElasticsearchOutput output(options, metrics);
  // 2025-12-04T23:59:59.999Z and one millisecond later.
  std::vector<StoredEvent> events = {makeEvent(1, 1764892799999), makeEvent(2, 1764892800000),
                                     makeEvent(3, -1)};

  EXPECT_EQ(output.targetFor(events[0]), "webtrap-2025.12.04");
  EXPECT_EQ(output.targetFor(events[1]), "webtrap-2025.12.05");
  EXPECT_EQ(output.targetFor(events[2]), "webtrap-1969.12.31");
  auto results = output.send(events);

  EXPECT_EQ(countDelivery(results, Delivery::kDelivered), 3u);
  EXPECT_EQ(control.stat("/indices/webtrap-2025.12.04"), 1);
  EXPECT_EQ(control.stat("/indices/webtrap-2025.12.05"), 1);
  auto cat = control.get("/_cat/indices?format=json");
  EXPECT_NE(cat.body.find(R"("index":"webtrap-2025.12.05")"), std::string::npos) << cat.body;
  recordFixture(control, "bulk-dated-indices");
}

TEST(ElasticsearchOutput, SplitsLargeBatches) {
  DoubleProcess double_process;
  DoubleControl control(double_process);
  MetricsRegistry metrics;
  auto options = optionsFor(double_process);
  options.request_max_bytes = 4096;
  ElasticsearchOutput output(options, metrics);

  auto results = output.send(makeEvents(100));

  EXPECT_EQ(countDelivery(results, Delivery::kDelivered), 100u);
  EXPECT_GE(control.stat("/bulk_requests"), 6);
  EXPECT_EQ(control.stat("/distinct_ids"), 100);
}

// Events whose documents carry `padding_bytes` more, so that a batch is
// large enough to be cut into parallel requests.
std::vector<StoredEvent> makeLargeEvents(int count, std::size_t padding_bytes, int first = 1) {
  std::vector<StoredEvent> events = makeEvents(count, first);
  const std::string padding(padding_bytes, 'x');
  for (auto& event : events) {
    event.document.pop_back();
    event.document += R"(,"message":")" + padding + "\"}";
  }
  return events;
}

TEST(ElasticsearchOutput, ParallelRequestsOverlap) {
  // Every response waits 1.5 s, so two requests one after the other take at
  // least 3 s, and two in flight together about 1.5 s.
  DoubleProcess double_process({"--delay-ms", "1500"});
  DoubleControl control(double_process);
  MetricsRegistry metrics;
  auto options = optionsFor(double_process);
  options.parallel_requests = 2;
  ElasticsearchOutput output(options, metrics);

  // 200 events of about 6 KB: 1.2 MB, cut into two requests of about 600 KB.
  auto started = std::chrono::steady_clock::now();
  auto results = output.send(makeLargeEvents(200, 6000));
  double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();

  EXPECT_EQ(countDelivery(results, Delivery::kDelivered), 200u);
  EXPECT_EQ(control.stat("/bulk_requests"), 2);
  EXPECT_EQ(control.stat("/distinct_ids"), 200);
  EXPECT_LT(seconds, 2.8) << "the two requests did not overlap";
}

TEST(ElasticsearchOutput, SmallBatchStaysOneRequest) {
  DoubleProcess double_process;
  DoubleControl control(double_process);
  MetricsRegistry metrics;
  auto options = optionsFor(double_process);
  options.parallel_requests = 4;
  ElasticsearchOutput output(options, metrics);

  EXPECT_EQ(countDelivery(output.send(makeEvents(50)), Delivery::kDelivered), 50u);
  EXPECT_EQ(control.stat("/bulk_requests"), 1);
}

TEST(ElasticsearchOutput, OneFailedParallelRequestFailsTheBatch) {
  DoubleProcess double_process;
  DoubleControl control(double_process);
  MetricsRegistry metrics;
  auto options = optionsFor(double_process);
  options.parallel_requests = 2;
  ElasticsearchOutput output(options, metrics);
  auto batch = makeLargeEvents(200, 6000);
  control.setFaults(R"({"fail_next":1,"fail_status":429})");

  // One of the two requests gets 429: the batch as a whole must be sent
  // again, and the other request's events then come back as 409s.
  EXPECT_THROW(output.send(batch), TransientError);
  const std::int64_t indexed_first = control.stat("/distinct_ids");
  EXPECT_GT(indexed_first, 50);
  EXPECT_LT(indexed_first, 150);
  auto results = output.send(batch);
  EXPECT_EQ(countDelivery(results, Delivery::kDelivered), 200u);
  EXPECT_EQ(control.stat("/distinct_ids"), 200);
  EXPECT_EQ(control.stat("/conflicts"), indexed_first);
}

TEST(ElasticsearchOutput, FailsOverToNextUrl) {
  DoubleProcess double_process;
  DoubleControl control(double_process);
  MetricsRegistry metrics;
  auto options = optionsFor(double_process);
  // Port 1 on loopback has no listener, so the connection is refused.
  options.urls = {"http://127.0.0.1:1", double_process.url()};
  ElasticsearchOutput output(options, metrics);

  for (int round = 0; round < 3; ++round) {
    EXPECT_EQ(countDelivery(output.send(makeEvents(2, round * 10)), Delivery::kDelivered), 2u);
  }
  EXPECT_EQ(control.stat("/distinct_ids"), 6);
}

TEST(ElasticsearchOutput, ServerDownThrowsTransientError) {
  MetricsRegistry metrics;
  ElasticsearchOptions options;
  options.urls = {"http://127.0.0.1:1"};
  ElasticsearchOutput output(options, metrics);

  EXPECT_THROW(output.send(makeEvents(1)), TransientError);
}

TEST(ElasticsearchOutput, OutageThenRecovery) {
  DoubleProcess double_process;
  DoubleControl control(double_process);
  MetricsRegistry metrics;
  ElasticsearchOutput output(optionsFor(double_process), metrics);
  control.setFaults(R"({"down_seconds":1})");

  EXPECT_THROW(output.send(makeEvents(3)), TransientError);
  std::this_thread::sleep_for(std::chrono::milliseconds(1200));
  EXPECT_EQ(countDelivery(output.send(makeEvents(3)), Delivery::kDelivered), 3u);
}

using testing::TlsCertificates;

TEST(ElasticsearchOutput, TlsWithCaBundle) {
  TlsCertificates certificates;
  ASSERT_TRUE(certificates.ok()) << "openssl could not make the test certificates";
  DoubleProcess double_process({"--tls-cert", certificates.path("server.pem").string(),
                                "--tls-key", certificates.path("server.key").string()});
  MetricsRegistry metrics;
  ElasticsearchOptions options;
  options.urls = {double_process.url("https")};
  options.ca_file = certificates.path("ca.pem").string();
  ElasticsearchOutput output(options, metrics);

  EXPECT_EQ(countDelivery(output.send(makeEvents(3)), Delivery::kDelivered), 3u);

  ElasticsearchOptions untrusted = options;
  untrusted.ca_file.clear();
  ElasticsearchOutput without_ca(untrusted, metrics);
  try {
    without_ca.send(makeEvents(1, 50));
    ADD_FAILURE() << "the server certificate was accepted without its CA";
  } catch (const TransientError& error) {
    EXPECT_NE(std::string(error.what()).find("ca_file"), std::string::npos) << error.what();
  }
}

TEST(ElasticsearchOutput, ThroughHttpProxy) {
  DoubleProcess target;
  DoubleProcess proxy;
  DoubleControl target_control(target);
  DoubleControl proxy_control(proxy);
  MetricsRegistry metrics;
  auto options = optionsFor(target);
  options.proxy = proxy.url();
  ElasticsearchOutput output(options, metrics);

  EXPECT_EQ(countDelivery(output.send(makeEvents(4)), Delivery::kDelivered), 4u);
  EXPECT_EQ(proxy_control.stat("/proxied_requests"), 1);
  EXPECT_EQ(proxy_control.stat("/items"), 0);
  EXPECT_EQ(target_control.stat("/distinct_ids"), 4);
}

// Prints the output's throughput against the double's fast mode. The
// number depends on the machine and its load, so only correctness is asserted.
TEST(ElasticsearchOutput, ThroughputAgainstFastDouble) {
  DoubleProcess double_process({"--fast"});
  DoubleControl control(double_process);
  MetricsRegistry metrics;
  ElasticsearchOutput output(optionsFor(double_process), metrics);
  constexpr int kBatches = 20;
  constexpr int kBatchSize = 1000;
  std::vector<std::vector<StoredEvent>> batches;
  for (int b = 0; b < kBatches; ++b) {
    batches.push_back(makeLargeEvents(kBatchSize, 1300, b * kBatchSize));
  }

  auto started = std::chrono::steady_clock::now();
  std::size_t delivered = 0;
  for (const auto& batch : batches) {
    delivered += countDelivery(output.send(batch), Delivery::kDelivered);
  }
  double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();

  EXPECT_EQ(delivered, static_cast<std::size_t>(kBatches * kBatchSize));
  EXPECT_EQ(control.stat("/distinct_ids"), kBatches * kBatchSize);
  std::printf("elasticsearch output -> es_double --fast: %d docs of ~1.5 KB in %.2f s = %.0f docs/s\n",
              kBatches * kBatchSize, seconds, kBatches * kBatchSize / seconds);
}

TEST(ElasticsearchBulkResponse, OfficialFailedActionsExample) {
  fs::path example = sharedDir() / "elasticsearch/examples/BulkResponseExample2.json";
  if (!fs::exists(example)) {
    GTEST_SKIP() << example << " not found; set WEBTRAP_SHARED_DIR";
  }
  simdjson::dom::parser parser;
  simdjson::dom::element body;
  ASSERT_FALSE(parser.load(example.string()).at_pointer("/body").get(body));
  std::string text = simdjson::minify(body);

  BulkResponseItems items = parseBulkResponse(text, 3);

  ASSERT_EQ(items.results.size(), 3u);
  EXPECT_EQ(items.statuses[0], 404);
  // A 404 on create means the index is missing, so the event waits.
  EXPECT_EQ(items.results[0].delivery, Delivery::kRetry);
  EXPECT_EQ(items.results[0].reason, "404 document_missing_exception: [5]: document missing");
  EXPECT_EQ(items.results[2].delivery, Delivery::kDelivered);
  EXPECT_EQ(items.statuses[2], 201);
}

TEST(ElasticsearchBulkResponse, ItemCountMismatchThrows) {
  std::string body = R"({"took":1,"errors":false,"items":[{"create":{"_id":"a","status":201}}]})";
  EXPECT_THROW(parseBulkResponse(body, 2), TransientError);
  EXPECT_THROW(parseBulkResponse("<html>", 1), TransientError);
  EXPECT_THROW(parseBulkResponse(R"({"took":1})", 1), TransientError);
}

TEST(ElasticsearchBulkResponse, StatusMapping) {
  struct Case {
    int status;
    Delivery expected;
  };
  const Case cases[] = {{200, Delivery::kDelivered}, {201, Delivery::kDelivered},
                        {409, Delivery::kDelivered}, {429, Delivery::kRetry},
                        {500, Delivery::kRetry},     {503, Delivery::kRetry},
                        {401, Delivery::kRetry},     {403, Delivery::kRetry},
                        {404, Delivery::kRetry},     {400, Delivery::kRejected},
                        {413, Delivery::kRejected},  {422, Delivery::kRejected}};
  for (const auto& test_case : cases) {
    std::string body = fmt::format(
        R"({{"took":1,"errors":true,"items":[{{"create":{{"_index":"i","_id":"a","status":{},"error":{{"type":"t","reason":"r"}}}}}}]}})",
        test_case.status);
    BulkResponseItems items = parseBulkResponse(body, 1);
    EXPECT_EQ(items.results[0].delivery, test_case.expected) << test_case.status;
    EXPECT_EQ(items.statuses[0], test_case.status);
    if (test_case.expected != Delivery::kDelivered) {
      EXPECT_EQ(items.results[0].reason, fmt::format("{} t: r", test_case.status));
    }
  }
}

TEST(ElasticsearchBulkResponse, CausedByIsKept) {
  std::string body =
      R"({"errors":true,"items":[{"create":{"status":400,"error":{"type":"document_parsing_exception","reason":"[1:30] failed to parse field [source.ip] of type [ip]","caused_by":{"type":"illegal_argument_exception","reason":"'x' is not an IP string literal."}}}}]})";
  BulkResponseItems items = parseBulkResponse(body, 1);
  EXPECT_EQ(items.results[0].delivery, Delivery::kRejected);
  EXPECT_EQ(items.results[0].reason,
            "400 document_parsing_exception: [1:30] failed to parse field [source.ip] of type "
            "[ip] (caused by illegal_argument_exception: 'x' is not an IP string literal.)");
}

TEST(ElasticsearchOptionsParse, Defaults) {
  auto options = parseElasticsearchOptions(YAML::Load("{url: http://127.0.0.1:9200/}"));
  ASSERT_EQ(options.urls.size(), 1u);
  EXPECT_EQ(options.urls[0], "http://127.0.0.1:9200");
  EXPECT_EQ(options.data_stream, "logs-webtrap-default");
  EXPECT_TRUE(options.index.empty());
  EXPECT_TRUE(options.tls_verify);
  EXPECT_FALSE(options.compression);
  EXPECT_EQ(options.request_max_bytes, 5u << 20);
  EXPECT_EQ(options.parallel_requests, 1u);
}

TEST(ElasticsearchOptionsParse, AllKeys) {
  auto options = parseElasticsearchOptions(YAML::Load(R"(
url: [https://es1:9200, https://es2:9200]
index: webtrap-%Y.%m.%d
api_key: abc
tls_verify: false
proxy: http://127.0.0.1:3128
timeout: 5s
connect_timeout: 500ms
compression: gzip
request_max_bytes: 10MiB
parallel_requests: 4
batch_max_events: 500
flush_interval: 1s
)"));
  EXPECT_EQ(options.urls.size(), 2u);
  EXPECT_EQ(options.index, "webtrap-%Y.%m.%d");
  EXPECT_TRUE(options.data_stream.empty());
  EXPECT_EQ(options.api_key, "abc");
  EXPECT_FALSE(options.tls_verify);
  EXPECT_EQ(options.proxy, "http://127.0.0.1:3128");
  EXPECT_EQ(options.timeout, std::chrono::milliseconds(5000));
  EXPECT_EQ(options.connect_timeout, std::chrono::milliseconds(500));
  EXPECT_TRUE(options.compression);
  EXPECT_EQ(options.request_max_bytes, 10u << 20);
  EXPECT_EQ(options.parallel_requests, 4u);
}

TEST(ElasticsearchOptionsParse, InvalidValuesNameTheKey) {
  struct Case {
    const char* yaml;
    const char* expected;
  };
  const Case cases[] = {
      {"{urls: x}", "outputs.elasticsearch.urls: invalid URL"},
      {"{colour: red}", "outputs.elasticsearch.colour: unknown key"},
      {"{data_stream: a, index: b}", "both data_stream and index"},
      {"{username: u}", "password: missing"},
      {"{username: u, password: p, api_key: k}", "both username and api_key"},
      {"{index: Webtrap-%Y}", "upper-case"},
      {"{data_stream: 'logs webtrap'}", "not a valid data stream name"},
      {"{ca_file: /nonexistent/ca.pem}", "ca_file: file \"/nonexistent/ca.pem\" not found"},
      {"{timeout: 30}", "outputs.elasticsearch.timeout"},
      {"{request_max_bytes: 10}", "too small"},
      {"{parallel_requests: 0}", "outputs.elasticsearch.parallel_requests: 0 is out of range"},
      {"{parallel_requests: 17}", "use 1 to 16"},
      {"{url: []}", "empty"},
  };
  for (const auto& test_case : cases) {
    try {
      parseElasticsearchOptions(YAML::Load(test_case.yaml));
      ADD_FAILURE() << "no ConfigError for " << test_case.yaml;
    } catch (const ConfigError& error) {
      EXPECT_NE(std::string(error.what()).find(test_case.expected), std::string::npos)
          << test_case.yaml << " -> " << error.what();
    }
  }
}

// A template folder with placeholder files, so these tests do not depend on
// the contents of etc/elasticsearch.
class TemplateFolder {
 public:
  TemplateFolder() : dir_(makeTempDir()) {
    std::ofstream(dir_ / "index-template.json")
        << R"({"index_patterns":["placeholder-*"],"data_stream":{},"priority":300,)"
        << R"("template":{"settings":{"index.lifecycle.name":"test-policy","index.codec":"best_compression"},)"
        << R"("mappings":{"properties":{"@timestamp":{"type":"date"}}}}})";
    std::ofstream(dir_ / "ilm-policy.json")
        << R"({"policy":{"phases":{"hot":{"actions":{"rollover":{"max_age":"1d"}}}}}})";
    std::ofstream(dir_ / "ilm-policy-dated.json")
        << R"({"policy":{"phases":{"delete":{"min_age":"90d","actions":{"delete":{}}}}}})";
  }
  ~TemplateFolder() {
    std::error_code ignored;
    fs::remove_all(dir_, ignored);
  }
  const fs::path& path() const { return dir_; }

 private:
  fs::path dir_;
};

TEST(ElasticsearchSetup, InstallsPolicyTemplateAndDataStream) {
  DoubleProcess double_process;
  DoubleControl control(double_process);
  TemplateFolder templates;
  auto options = optionsFor(double_process);

  setupElasticsearch(options, templates.path());

  auto policy = control.get("/_ilm/policy/test-policy");
  EXPECT_EQ(policy.status, 200) << policy.body;
  EXPECT_NE(policy.body.find(R"("rollover":{"max_age":"1d"})"), std::string::npos) << policy.body;
  auto index_template = control.get("/_index_template/test-policy");
  ASSERT_EQ(index_template.status, 200) << index_template.body;
  EXPECT_NE(index_template.body.find(R"("index_patterns":["logs-webtrap-default"])"),
            std::string::npos)
      << index_template.body;
  EXPECT_NE(index_template.body.find(R"("index.lifecycle.name":"test-policy")"), std::string::npos);
  EXPECT_NE(index_template.body.find(R"("index.codec":"best_compression")"), std::string::npos);
  EXPECT_NE(index_template.body.find(R"("priority":300)"), std::string::npos);
  auto stream = control.get("/_data_stream/logs-webtrap-default");
  EXPECT_EQ(stream.status, 200) << stream.body;
  EXPECT_NE(stream.body.find(R"("template":"test-policy")"), std::string::npos) << stream.body;
  recordFixture(control, "setup-data-stream");

  // Running it again must succeed (the data stream already exists).
  EXPECT_NO_THROW(setupElasticsearch(options, templates.path()));
}

TEST(ElasticsearchSetup, DatedIndicesGetTheirOwnPolicy) {
  DoubleProcess double_process;
  DoubleControl control(double_process);
  TemplateFolder templates;
  auto options = optionsFor(double_process);
  options.data_stream.clear();
  options.index = "honeypot-%Y.%m";

  setupElasticsearch(options, templates.path());

  auto index_template = control.get("/_index_template/test-policy-dated");
  ASSERT_EQ(index_template.status, 200) << index_template.body;
  EXPECT_NE(index_template.body.find(R"("index_patterns":["honeypot-*.*"])"), std::string::npos)
      << index_template.body;
  EXPECT_EQ(index_template.body.find("data_stream"), std::string::npos) << index_template.body;
  EXPECT_NE(index_template.body.find(R"("index.lifecycle.name":"test-policy-dated")"),
            std::string::npos);
  auto policy = control.get("/_ilm/policy/test-policy-dated");
  EXPECT_EQ(policy.status, 200);
  EXPECT_NE(policy.body.find(R"("min_age":"90d")"), std::string::npos) << policy.body;
}

TEST(ElasticsearchSetup, ShippedTemplateInstalls) {
  fs::path folder = sourceDir() / "etc/elasticsearch";
  if (!fs::exists(folder / "index-template.json")) {
    GTEST_SKIP() << folder << " has no index-template.json yet";
  }
  DoubleProcess double_process;
  DoubleControl control(double_process);
  simdjson::dom::parser parser;
  std::string_view policy_name;
  ASSERT_FALSE(parser.load((folder / "index-template.json").string())
                   .at_pointer("/template/settings/index.lifecycle.name")
                   .get_string()
                   .get(policy_name));
  std::string policy(policy_name);

  setupElasticsearch(optionsFor(double_process), folder);

  EXPECT_EQ(control.get("/_ilm/policy/" + policy).status, 200);
  EXPECT_EQ(control.get("/_index_template/" + policy).status, 200);
  EXPECT_EQ(control.get("/_data_stream/logs-webtrap-default").status, 200);
}

TEST(ElasticsearchSetup, OpenSearchSkipsIlm) {
  DoubleProcess double_process({"--distribution", "opensearch", "--es-version", "2.11.0"});
  DoubleControl control(double_process);
  TemplateFolder templates;

  setupElasticsearch(optionsFor(double_process), templates.path());

  EXPECT_EQ(control.get("/_ilm/policy/test-policy").status, 404);
  auto index_template = control.get("/_index_template/test-policy");
  ASSERT_EQ(index_template.status, 200) << index_template.body;
  EXPECT_EQ(index_template.body.find("index.lifecycle.name"), std::string::npos)
      << index_template.body;
  EXPECT_NE(index_template.body.find(R"("index.codec":"best_compression")"), std::string::npos);
}

TEST(ElasticsearchSetup, OldClusterIsRejected) {
  DoubleProcess double_process({"--es-version", "7.4.2"});
  try {
    TemplateFolder templates;
    setupElasticsearch(optionsFor(double_process), templates.path());
    ADD_FAILURE() << "no error for Elasticsearch 7.4.2";
  } catch (const std::runtime_error& error) {
    EXPECT_NE(std::string(error.what()).find("7.4.2 is too old"), std::string::npos) << error.what();
  }
}

}  // namespace
}  // namespace webtrap::collector
