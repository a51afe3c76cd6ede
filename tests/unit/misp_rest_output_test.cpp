// Drives MispRestOutput (outputs.misp) against tests/tools/misp_double.py,
// the MISP 2.5.1 test double, started on loopback for each test. Each test
// compares what the double stored with what the output's own model holds:
// every event, attribute, object, tag and sighting once, none twice.
#include <sqlite3.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <simdjson.h>
#include <yaml-cpp/yaml.h>

#include "collector/misp_client.h"
#include "collector/misp_rest_output.h"
#include "common/error.h"
#include "common/metrics.h"
#include "double_process.h"
#include "temp_path.h"

namespace webtrap::collector {
namespace {

namespace fs = std::filesystem;
using testing::DoubleProcess;

constexpr const char* kApiKey = "webtraprestoutputtestkey000000000000000000";
// 2026-12-04 00:00:00 UTC.
constexpr std::int64_t kDayOneMs = 1796342400000;
constexpr std::int64_t kDayMs = 86400000;

bool mispDataPresent() {
  return fs::exists(testing::sharedDir() / "misp" / "describeTypes.json");
}

// An ECS document as the collector stores it, with the fields the model reads.
std::string ecsDocument(const std::string& ip, const std::string& group,
                        const std::string& sensor, const std::string& method,
                        const std::string& path, const std::string& agent) {
  return fmt::format(
      R"({{"source":{{"ip":"{ip}"}},"http":{{"request":{{"method":"{method}"}}}},)"
      R"("url":{{"domain":"shop.example","path":"{path}"}},)"
      R"("user_agent":{{"original":"{agent}"}},"rule":{{"id":["942100","949110"]}},)"
      R"("webtrap":{{"sensor":{{"id":"{sensor}","group":"{group}"}},)"
      R"("oat":[{{"id":"OAT-014","attack":["T1595.002"]}}]}}}})",
      fmt::arg("ip", ip), fmt::arg("method", method), fmt::arg("path", path),
      fmt::arg("agent", agent), fmt::arg("sensor", sensor), fmt::arg("group", group));
}

// `count` hits from `sources` sources, two sensor groups, over two UTC days.
std::vector<StoredEvent> makeEvents(int count, int sources) {
  std::vector<StoredEvent> events;
  std::uint64_t state = 4242;
  auto next = [&state](std::uint64_t n) {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (state >> 33) % n;
  };
  const char* paths[] = {"/", "/wp-login.php", "/.env", "/admin", "/xmlrpc.php"};
  const char* agents[] = {"curl/8.0", "sqlmap/1.7", "Nuclei"};
  for (int i = 0; i < count; ++i) {
    std::uint64_t source = next(sources);
    std::string ip = source % 3 == 0 ? fmt::format("2001:db8::2:{:x}", source)
                                     : fmt::format("198.51.{}.{}", source / 200, source % 200 + 1);
    std::string group = source % 2 == 0 ? "edge" : "core";
    StoredEvent event;
    event.seq = i + 1;
    event.event_id = fmt::format("01938f5e-0000-7000-9000-{:012}", i);
    event.timestamp_ms = kDayOneMs + static_cast<std::int64_t>(i) * (2 * kDayMs / count);
    event.sensor_id = group + "-" + std::to_string(next(2) + 1);
    event.document = ecsDocument(ip, group, event.sensor_id, next(3) == 0 ? "POST" : "GET",
                                 paths[next(5)], agents[source % 3]);
    events.push_back(std::move(event));
  }
  return events;
}

// What the model holds, counted from its rendered events.
struct Counts {
  std::int64_t events = 0;
  std::int64_t attributes = 0;
  std::int64_t object_attributes = 0;
  std::int64_t objects = 0;
  std::int64_t sightings = 0;
  std::int64_t attribute_tags = 0;
};

Counts modelCounts(MispModel& model) {
  Counts counts;
  simdjson::dom::parser parser;
  for (const auto& summary : model.events()) {
    std::string json = *model.renderEvent(summary.uuid);
    simdjson::dom::element root = parser.parse(json);
    ++counts.events;
    for (simdjson::dom::element a : root.at_pointer("/Event/Attribute").get_array()) {
      ++counts.attributes;
      simdjson::dom::array list;
      if (a["Sighting"].get_array().get(list) == simdjson::SUCCESS) {
        counts.sightings += static_cast<std::int64_t>(list.size());
      }
      if (a["Tag"].get_array().get(list) == simdjson::SUCCESS) {
        counts.attribute_tags += static_cast<std::int64_t>(list.size());
      }
    }
    for (simdjson::dom::element o : root.at_pointer("/Event/Object").get_array()) {
      ++counts.objects;
      for (simdjson::dom::element a : o["Attribute"].get_array()) {
        ++counts.object_attributes;
        simdjson::dom::array list;
        if (a["Tag"].get_array().get(list) == simdjson::SUCCESS) {
          counts.attribute_tags += static_cast<std::int64_t>(list.size());
        }
      }
    }
  }
  return counts;
}

// The value of the counter `name`{output="misp"} in the rendered metrics.
std::int64_t metric(const MetricsRegistry& metrics, const std::string& name) {
  std::string text = metrics.render();
  std::string prefix = name + "{output=\"misp\"} ";
  std::size_t at = text.find(prefix);
  return at == std::string::npos ? -1 : std::stoll(text.substr(at + prefix.size()));
}

class MispRestOutputTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!mispDataPresent()) {
      GTEST_SKIP() << "../shared/misp is missing";
    }
    double_ = std::make_unique<DoubleProcess>(
        "misp_double.py",
        std::vector<std::string>{"--api-key", kApiKey, "--quiet", "--data-dir",
                                 (testing::sharedDir() / "misp").string()});
    dir_ = testing::makeTempDir("misp-rest");
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  MispRestOptions options(const std::string& state = "state.sqlite",
                          std::string key = kApiKey) {
    MispRestOptions o;
    o.client.url = double_->url();
    o.client.api_key = std::move(key);
    o.client.timeout = std::chrono::milliseconds(10000);
    o.state_path = dir_ / state;
    o.model.max_sightings_per_attribute = 1000000;
    o.publish = MispPublish::kNever;
    o.api_key_source = "api_key";
    return o;
  }

  std::unique_ptr<MispRestOutput> output(MispRestOptions o) {
    return std::make_unique<MispRestOutput>(std::move(o), metrics_, [this](const DeadLetter& l) {
      letters_.push_back(l);
    });
  }

  MispClient control() {
    MispClientOptions o;
    o.url = double_->url();
    o.api_key = kApiKey;
    return MispClient(o);
  }
  void setFaults(const std::string& json) {
    auto response = control().request("POST", "/_double/faults", json);
    ASSERT_EQ(response.status, 200) << response.body;
  }
  // GET /_double/stats, parsed; `document_` keeps the text alive.
  simdjson::dom::element stats(bool full = false) {
    document_ = control().request("GET", full ? "/_double/stats" : "/_double/stats?summary", "")
                    .body;
    return parser_.parse(document_);
  }
  std::int64_t total(const char* key) {
    return stats().at_pointer(std::string("/totals/") + key).get_int64().value();
  }

  // Checks that the double holds exactly what the model holds, with no
  // schema violation and no duplicate attribute value in any event.
  void expectSameAsModel(MispModel& model) {
    Counts want = modelCounts(model);
    simdjson::dom::element s = stats(true);
    EXPECT_EQ(s.at_pointer("/totals/events").get_int64().value(), want.events);
    EXPECT_EQ(s.at_pointer("/totals/attributes").get_int64().value(), want.attributes);
    EXPECT_EQ(s.at_pointer("/totals/objects").get_int64().value(), want.objects);
    EXPECT_EQ(s.at_pointer("/totals/object_attributes").get_int64().value(),
              want.object_attributes);
    EXPECT_EQ(s.at_pointer("/totals/sightings").get_int64().value(), want.sightings);
    EXPECT_EQ(s.at_pointer("/totals/attribute_tags").get_int64().value(), want.attribute_tags);
    EXPECT_EQ(s.at_pointer("/totals/event_tags").get_int64().value(), want.events * 5);
    EXPECT_EQ(s["schema_violations"].get_int64().value(), 0);
    EXPECT_EQ(s["stored_event_schema_violations"].get_int64().value(), 0);
    for (simdjson::dom::element event : s["events"].get_array()) {
      std::set<std::string> values;
      for (simdjson::dom::element a : event["Attribute"].get_array()) {
        EXPECT_TRUE(values.insert(std::string(a["value"].get_string().value())).second);
      }
    }
  }

  static void sendAll(MispRestOutput& out, const std::vector<StoredEvent>& events,
                      std::size_t batch) {
    for (std::size_t i = 0; i < events.size(); i += batch) {
      std::size_t n = std::min(batch, events.size() - i);
      auto results = out.send(std::span<const StoredEvent>(events.data() + i, n));
      for (const auto& r : results) {
        ASSERT_EQ(r.delivery, Delivery::kDelivered) << r.reason;
      }
    }
  }

  // Sends every batch, retrying a batch that throws TransientError, as the
  // runner does. Returns the number of TransientErrors.
  static int sendWithRetries(MispRestOutput& out, const std::vector<StoredEvent>& events,
                             std::size_t batch) {
    int failures = 0;
    for (std::size_t i = 0; i < events.size(); i += batch) {
      std::size_t n = std::min(batch, events.size() - i);
      for (int attempt = 0;; ++attempt) {
        try {
          out.send(std::span<const StoredEvent>(events.data() + i, n));
          break;
        } catch (const TransientError&) {
          ++failures;
          if (attempt > 5000) {
            throw;
          }
        }
      }
    }
    return failures;
  }

  std::unique_ptr<DoubleProcess> double_;
  fs::path dir_;
  MetricsRegistry metrics_;
  std::vector<DeadLetter> letters_;
  simdjson::dom::parser parser_;
  std::string document_;
};

TEST(MispRestOptionsTest, ParsesKeySourcesAndRejectsMistakes) {
  auto parse = [](const std::string& yaml) { return parseMispRestOptions(YAML::Load(yaml)); };
  setenv("WEBTRAP_TEST_MISP_KEY", " envkey0123 \n", 1);
  MispRestOptions o = parse(
      "{url: 'https://misp.example/', api_key_env: WEBTRAP_TEST_MISP_KEY, state_path: s.db, "
      "publish: always, publish_delay: 2s, tlp: 'tlp:green', distribution: 1, to_ids: true, "
      "batch_max_events: 10}");
  EXPECT_EQ(o.client.api_key, "envkey0123");
  EXPECT_EQ(o.api_key_source, "api_key_env WEBTRAP_TEST_MISP_KEY");
  EXPECT_EQ(o.publish, MispPublish::kAlways);
  EXPECT_EQ(o.publish_delay, std::chrono::milliseconds(2000));
  EXPECT_EQ(o.model.tlp, "tlp:green");
  EXPECT_EQ(o.model.distribution, 1);
  EXPECT_TRUE(o.model.to_ids);
  EXPECT_EQ(o.state_path, "s.db");

  test_support::TempDir temp_dir("misp-rest-options");
  const fs::path& dir = temp_dir.path();
  std::ofstream(dir / "key") << "filekey0123\n";
  o = parse(fmt::format("{{url: 'http://127.0.0.1:1', api_key_file: '{}', state_path: s.db}}",
                        (dir / "key").string()));
  EXPECT_EQ(o.client.api_key, "filekey0123");
  EXPECT_EQ(o.publish, MispPublish::kWhenDayCloses);
  EXPECT_EQ(o.publish_delay, std::chrono::milliseconds(3600000));

  auto message = [&](const std::string& yaml) {
    try {
      parse(yaml);
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message("{api_key: k, state_path: s}").find("outputs.misp.url: missing"),
            std::string::npos);
  EXPECT_NE(message("{url: 'http://h', state_path: s}").find("outputs.misp.api_key: missing"),
            std::string::npos);
  EXPECT_NE(message("{url: 'http://h', api_key: k}").find("outputs.misp.state_path: missing"),
            std::string::npos);
  EXPECT_NE(message("{url: 'http://h', api_key: k, api_key_env: WEBTRAP_TEST_MISP_KEY, "
                    "state_path: s}")
                .find("more than one"),
            std::string::npos);
  EXPECT_NE(message("{url: 'http://h', api_key_env: WEBTRAP_TEST_MISP_UNSET, state_path: s}")
                .find("WEBTRAP_TEST_MISP_UNSET"),
            std::string::npos);
  EXPECT_NE(message("{url: 'http://h', api_key: k, state_path: s, publish: daily}")
                .find("outputs.misp.publish"),
            std::string::npos);
  EXPECT_NE(message("{url: 'http://h', api_key: k, state_path: s, colour: red}")
                .find("outputs.misp.colour: unknown key"),
            std::string::npos);
  // The key never appears in an error message.
  EXPECT_EQ(message("{url: 'http://h', api_key: 'filekey0123', api_key_file: '" +
                    (dir / "key").string() + "', state_path: s}")
                .find("filekey0123"),
            std::string::npos);
}

TEST(MispRestOptionsTest, ADamagedStateFileIsNamedWithTheFix) {
  test_support::TempDir temp_dir("misp-rest-state");
  const fs::path& dir = temp_dir.path();
  std::ofstream(dir / "state.sqlite") << "this is not an SQLite database, it is long enough\n";
  MispRestOptions o;
  o.client.url = "http://127.0.0.1:1";
  o.client.api_key = kApiKey;
  o.state_path = dir / "state.sqlite";
  o.publish = MispPublish::kNever;
  MetricsRegistry metrics;
  try {
    MispRestOutput output(o, metrics, nullptr);
    ADD_FAILURE() << "expected a ConfigError";
  } catch (const ConfigError& e) {
    std::string message = e.what();
    EXPECT_NE(message.find("outputs.misp.state_path"), std::string::npos) << message;
    EXPECT_NE(message.find((dir / "state.sqlite").string()), std::string::npos) << message;
    EXPECT_NE(message.find("move the damaged file away"), std::string::npos) << message;
  }
}

TEST_F(MispRestOutputTest, PushesEverythingOnceAndNothingOnAResend) {
  std::vector<StoredEvent> events = makeEvents(2000, 120);
  auto out = output(options());
  sendAll(*out, events, 250);
  expectSameAsModel(out->model());
  Counts counts = modelCounts(out->model());
  EXPECT_EQ(counts.events, 4);  // two groups, two days
  EXPECT_EQ(counts.attributes, metric(metrics_, "webtrap_collector_misp_attributes_sent_total"));
  EXPECT_EQ(counts.sightings, metric(metrics_, "webtrap_collector_misp_sightings_sent_total"));
  EXPECT_EQ(4, metric(metrics_, "webtrap_collector_misp_events_created_total"));
  // Hits that are not first hits of their source in their event.
  EXPECT_GT(counts.sightings, 1500);
  // The tags an ip-src has when it is first sent go inline in attributes/add;
  // the others (object attributes, later tags) by one attachTag each.
  {
    simdjson::dom::element s = stats();
    std::int64_t inline_tags = s["tags_attached_inline"].get_int64().value();
    std::int64_t attached = s["tags_attached"].get_int64().value();
    EXPECT_GT(inline_tags, 0);
    EXPECT_GT(attached, 0);
    EXPECT_EQ(inline_tags + attached, counts.attribute_tags);
    EXPECT_EQ(s["tags_already_attached"].get_int64().value(), 0);
    EXPECT_EQ(counts.attribute_tags, metric(metrics_, "webtrap_collector_misp_tags_attached_total"));
  }

  // At-least-once delivery: the same events again change nothing in MISP.
  std::int64_t requests = stats().at_pointer("/api_requests").get_int64().value_unsafe();
  sendAll(*out, events, 500);
  expectSameAsModel(out->model());
  EXPECT_EQ(stats().at_pointer("/api_requests").get_int64().value_unsafe(), requests);
  EXPECT_TRUE(letters_.empty());
}

TEST_F(MispRestOutputTest, FailuresAndLostAnswersDuplicateNothing) {
  std::vector<StoredEvent> events = makeEvents(1500, 90);
  // One write in 20 is stored and then answered with 500, and one request
  // in 50 fails before anything is written.
  setFaults(R"({"fail_after_write_rate":0.05,"fail_rate":0.02})");
  auto out = output(options());
  int failures = sendWithRetries(*out, events, 300);
  EXPECT_GT(failures, 10);
  setFaults(R"({"fail_after_write_rate":0,"fail_rate":0})");
  expectSameAsModel(out->model());
  EXPECT_GT(metric(metrics_, "webtrap_collector_misp_sightings_reconciled_total"), 0);
  EXPECT_GT(metric(metrics_, "webtrap_collector_misp_duplicates_total"), 0);
  EXPECT_EQ(metric(metrics_, "webtrap_collector_misp_request_errors_total"), failures);
  EXPECT_TRUE(letters_.empty());
}

TEST_F(MispRestOutputTest, AnOutageAndARestartSendOnlyTheRest) {
  std::vector<StoredEvent> events = makeEvents(1500, 90);
  std::vector<StoredEvent> first(events.begin(), events.begin() + 700);
  {
    auto out = output(options());
    sendAll(*out, first, 350);
    // MISP goes away in the middle of the next batch: the connection closes
    // without an answer, as when the server is stopped.
    std::int64_t done = stats().at_pointer("/api_requests").get_int64().value_unsafe();
    setFaults(fmt::format(R"({{"unavailable_after":{},"down_for":30}})", done + 40));
    EXPECT_THROW(out->send(std::span<const StoredEvent>(events.data() + 700, 400)),
                 TransientError);
    // The output is dropped without a clean stop, as by a kill.
  }
  setFaults(R"({"down_seconds":0,"unavailable_after":0,"down_for":0})");
  auto out = output(options());
  // The runner sends the unfinished batch again, then the rest.
  sendAll(*out, std::vector<StoredEvent>(events.begin() + 700, events.end()), 400);
  expectSameAsModel(out->model());
}

TEST_F(MispRestOutputTest, AnEventGoneFromMispIsSentAgainWhole) {
  // Mostly new sources, so every batch adds attributes to each event.
  std::vector<StoredEvent> events = makeEvents(1000, 2000);
  {
    auto out = output(options());
    sendAll(*out, std::vector<StoredEvent>(events.begin(), events.begin() + 300), 300);
  }
  // MISP loses the events (restored from an empty backup, or deleted by an
  // analyst): a new, empty double. The next attributes/add gets 404, and
  // the recreated event must hold the earlier items too.
  double_ = std::make_unique<DoubleProcess>(
      "misp_double.py",
      std::vector<std::string>{"--api-key", kApiKey, "--quiet", "--data-dir",
                               (testing::sharedDir() / "misp").string()});
  auto out = output(options());
  int failures =
      sendWithRetries(*out, std::vector<StoredEvent>(events.begin() + 300, events.end()), 400);
  EXPECT_GT(failures, 0);
  expectSameAsModel(out->model());
  EXPECT_TRUE(letters_.empty());
}

TEST_F(MispRestOutputTest, AWrongKeyIsRetriedAndNothingIsDropped) {
  std::vector<StoredEvent> events = makeEvents(300, 30);
  {
    auto out = output(options("state.sqlite", "wrongkey00000000000000000000000000000000"));
    EXPECT_THROW(out->send(events), TransientError);
    EXPECT_THROW(out->send(events), TransientError);
    EXPECT_EQ(metric(metrics_, "webtrap_collector_misp_config_errors_total"), 2);
  }
  EXPECT_EQ(total("events"), 0);
  // The key is fixed and the collector restarted: the runner sends the
  // batch again, and everything arrives.
  auto out = output(options());
  sendAll(*out, events, 300);
  expectSameAsModel(out->model());
}

TEST_F(MispRestOutputTest, RejectedItemsGoToDeadLetters) {
  std::vector<StoredEvent> events = makeEvents(200, 20);
  MispRestOptions o = options();
  {
    MispModel model(o.state_path, o.model);
    std::vector<MispRecord> records;
    for (const auto& e : events) {
      records.push_back(readMispRecord(e));
    }
    model.apply(records, 1796500000);
  }
  // One source address that MISP rejects (the model never writes one; the
  // state is edited to stand for a value MISP refuses).
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(o.state_path.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db,
                         "UPDATE attributes SET value='300.1.2.3' WHERE uuid=(SELECT uuid FROM "
                         "attributes WHERE type='ip-src' AND object_uuid IS NULL ORDER BY uuid "
                         "LIMIT 1)",
                         nullptr, nullptr, nullptr),
            SQLITE_OK);
  std::string origin;
  sqlite3_stmt* stmt = nullptr;
  sqlite3_prepare_v2(db, "SELECT origin FROM attributes WHERE value='300.1.2.3'", -1, &stmt,
                     nullptr);
  ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
  origin = reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0));
  sqlite3_finalize(stmt);
  sqlite3_close(db);

  auto out = output(o);
  out->push(1796500000);
  ASSERT_EQ(letters_.size(), 1u);
  EXPECT_EQ(letters_[0].output, "misp");
  EXPECT_EQ(letters_[0].event_id, origin);
  EXPECT_NE(letters_[0].reason.find("IP address has an invalid format"), std::string::npos)
      << letters_[0].reason;
  EXPECT_NE(letters_[0].payload.find("300.1.2.3"), std::string::npos);
  EXPECT_EQ(metric(metrics_, "webtrap_collector_misp_rejected_total"), 1);
  Counts want = modelCounts(out->model());
  EXPECT_EQ(total("attributes"), want.attributes - 1);
  // Its sightings are not sent either, and a second push sends nothing.
  std::int64_t sightings = total("sightings");
  EXPECT_LT(sightings, want.sightings);
  out->push(1796500000);
  EXPECT_EQ(total("sightings"), sightings);
  EXPECT_EQ(letters_.size(), 1u);
}

TEST_F(MispRestOutputTest, PublishesClosedDaysOnceAndAgainAfterAChange) {
  std::vector<StoredEvent> events = makeEvents(400, 40);
  MispRestOptions o = options();
  o.publish = MispPublish::kWhenDayCloses;
  o.publish_delay = std::chrono::hours(1);
  auto out = output(o);
  sendAll(*out, events, 400);
  // The state's timestamps are wall-clock times, so "now" is well after them.
  // After both days closed and after the events' last change (wall-clock
  // time) plus the delay.
  const std::int64_t later =
      std::max<std::int64_t>(std::chrono::duration_cast<std::chrono::seconds>(
                                 std::chrono::system_clock::now().time_since_epoch())
                                     .count() +
                                 7200,
                             kDayOneMs / 1000 + 3 * 86400);
  // Day one closed at 2026-12-05 00:00 UTC, day two a day later.
  out->push(kDayOneMs / 1000 + 86400 + 1800);  // inside the delay: nothing yet
  EXPECT_EQ(metric(metrics_, "webtrap_collector_misp_publish_total"), 0);
  out->push(later);
  EXPECT_EQ(metric(metrics_, "webtrap_collector_misp_publish_total"), 4);
  out->push(later);
  EXPECT_EQ(metric(metrics_, "webtrap_collector_misp_publish_total"), 4);
  for (simdjson::dom::element event : stats(true)["events"].get_array()) {
    EXPECT_TRUE(event["published"].get_bool().value());
  }
  // A late hit from a new source changes one event: it is published again.
  StoredEvent late = events.front();
  late.event_id = "01938f5e-0000-7000-9000-late00000001";
  late.document = ecsDocument("192.0.2.77", "edge", "edge-1", "GET", "/late", "curl/8.0");
  out->send(std::span<const StoredEvent>(&late, 1));
  out->push(later + 7200);
  EXPECT_EQ(metric(metrics_, "webtrap_collector_misp_publish_total"), 5);
  expectSameAsModel(out->model());

  // publish: never publishes nothing, the same events in MISP or not.
  MispRestOptions never = options("never.sqlite");
  auto quiet = output(never);
  sendAll(*quiet, events, 400);
  quiet->push(later + 7200);
  EXPECT_EQ(metric(metrics_, "webtrap_collector_misp_publish_total"), 5);
}

}  // namespace
}  // namespace webtrap::collector
