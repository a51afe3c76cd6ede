#include "collector/dashboard_queries.h"

#include <gtest/gtest.h>
#include <simdjson.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include "collector/dashboard_http.h"
#include "collector/dashboard_index.h"
#include "collector/dashboard_sqlite.h"
#include "collector/output_runner.h"
#include "common/json_writer.h"

namespace webtrap::collector {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr std::int64_t kBaseMs = 1'780'000'000'000;  // 2026-05-28, a fixed event time

struct Fields {
  std::string sensor = "s1";
  std::string source = "198.51.100.4";
  std::string country;
  std::int64_t asn = 0;
  std::string as_org;
  bool located = false;
  double lat = 0;
  double lon = 0;
  std::string path = "/";
  std::string user_agent = "curl/7.88";
  std::vector<std::string> oat;
  std::vector<std::string> categories;
  std::vector<std::string> baits;
};

// Writes an ECS document with the fields the dashboard index reads, in the
// nesting that ecs.cpp writes.
std::string ecsDocument(const std::string& id, const Fields& fields) {
  std::string out;
  JsonWriter json(out);
  json.beginObject();
  json.key("event");
  json.beginObject();
  json.member("id", id);
  json.endObject();
  json.key("source");
  json.beginObject();
  json.member("ip", fields.source);
  json.member("address", fields.source);
  if (!fields.country.empty() || fields.located) {
    json.key("geo");
    json.beginObject();
    if (!fields.country.empty()) {
      json.member("country_iso_code", fields.country);
    }
    if (fields.located) {
      json.key("location");
      json.beginObject();
      json.key("lat");
      json.raw(std::to_string(fields.lat));
      json.key("lon");
      json.raw(std::to_string(fields.lon));
      json.endObject();
    }
    json.endObject();
  }
  if (fields.asn != 0) {
    json.key("as");
    json.beginObject();
    json.member("number", fields.asn);
    json.key("organization");
    json.beginObject();
    json.member("name", fields.as_org);
    json.endObject();
    json.endObject();
  }
  json.endObject();
  json.key("http");
  json.beginObject();
  json.key("request");
  json.beginObject();
  json.member("method", "GET");
  json.endObject();
  json.key("response");
  json.beginObject();
  json.member("status_code", std::int64_t{404});
  json.endObject();
  json.endObject();
  json.key("url");
  json.beginObject();
  json.member("path", fields.path);
  json.endObject();
  json.key("user_agent");
  json.beginObject();
  json.member("original", fields.user_agent);
  json.endObject();
  auto stringArray = [&](const std::vector<std::string>& values) {
    json.beginArray();
    for (const auto& value : values) {
      json.string(value);
    }
    json.endArray();
  };
  if (!fields.categories.empty()) {
    json.key("rule");
    json.beginObject();
    json.key("category");
    // One category is written as a string, several as an array, as ecs.cpp does.
    if (fields.categories.size() == 1) {
      json.string(fields.categories.front());
    } else {
      stringArray(fields.categories);
    }
    json.endObject();
  }
  if (!fields.oat.empty()) {
    json.key("threat");
    json.beginObject();
    json.key("technique");
    json.beginObject();
    json.key("id");
    stringArray(fields.oat);
    json.endObject();
    json.endObject();
  }
  json.key("webtrap");
  json.beginObject();
  json.key("bait_hits");
  stringArray(fields.baits);
  json.endObject();
  json.endObject();
  return out;
}

simdjson::dom::element parse(simdjson::dom::parser& parser, const std::string& json) {
  simdjson::dom::element root;
  EXPECT_EQ(parser.parse(json).get(root), simdjson::SUCCESS) << json;
  return root;
}

// Returns the count of `value` in an {"items": [{"value", "count"}]} answer, 0 when absent.
std::int64_t countOf(const std::string& json, std::string_view value) {
  simdjson::dom::parser parser;
  auto root = parse(parser, json);
  for (simdjson::dom::element item : root["items"].get_array()) {
    if (std::string_view(item["value"].get_string()) == value) {
      return item["count"].get_int64();
    }
  }
  return 0;
}

std::int64_t integerField(const std::string& json, const char* pointer) {
  simdjson::dom::parser parser;
  auto root = parse(parser, json);
  std::int64_t value = -1;
  EXPECT_EQ(root.at_pointer(pointer).get_int64().get(value), simdjson::SUCCESS) << json;
  return value;
}

class DashboardTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("webtrap-dashboard-test-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    StoreOptions options;
    options.path = dir_ / "store.sqlite";
    options.synchronous = "normal";
    store_ = std::make_unique<Store>(options);
    index_ = std::make_unique<DashboardIndex>(dir_ / "dashboard.sqlite");
    queries_ = std::make_unique<DashboardQueries>(dir_ / "dashboard.sqlite", *store_);
  }
  void TearDown() override {
    queries_.reset();
    index_.reset();
    store_.reset();
    fs::remove_all(dir_);
  }

  // Stores one event and indexes everything stored so far.
  void addEvent(const std::string& id, std::int64_t ts, const Fields& fields) {
    NewEvent event{id, ts, fields.sensor, fields.source, ecsDocument(id, fields)};
    store_->insert(std::span<const NewEvent>(&event, 1));
  }
  // Indexes everything stored so far. The store stamps each event with the
  // wall clock as its receive time, but these tests date their events
  // around kBaseMs, so the events not indexed yet get `received_ms_`
  // instead, as if the collector had received them then. The timeline's
  // open start depends on it (kTimelinePastSlackMs).
  void indexAll() {
    setReceivedMs(index_->lastSeq(), received_ms_);
    auto events = store_->readAfter(index_->lastSeq(), 100000, 1 << 30);
    index_->add(events);
  }
  // Sets the receive time of the stored events after `after_seq`, through
  // a second connection to the store's file.
  void setReceivedMs(std::int64_t after_seq, std::int64_t received_ms) {
    dashboard::Database db(dir_ / "store.sqlite", false);
    dashboard::Statement update(db, "UPDATE events SET received_ms = ?1 WHERE seq > ?2");
    update.bind(1, received_ms);
    update.bind(2, after_seq);
    update.step();
  }

  fs::path dir_;
  std::int64_t received_ms_ = kBaseMs;
  std::unique_ptr<Store> store_;
  std::unique_ptr<DashboardIndex> index_;
  std::unique_ptr<DashboardQueries> queries_;
};

// Three sources, two sensors, over three hours:
//   a: 198.51.100.4, s1, OAT-014 + sqli category, 4 events in hour 0
//   b: 203.0.113.9, s2, OAT-008 + bait env_file, 2 events in hour 1
//   c: 192.0.2.77, s1, no tags, 1 event in hour 2
void fillThreeSources(DashboardTest& test, auto add) {
  Fields a;
  a.source = "198.51.100.4";
  a.country = "DE";
  a.asn = 64500;
  a.as_org = "Example Net";
  a.located = true;
  a.lat = 52.52;
  a.lon = 13.40;
  a.path = "/wp-login.php";
  a.user_agent = "sqlmap/1.7";
  a.oat = {"OAT-014"};
  a.categories = {"attack-sqli"};
  Fields b;
  b.sensor = "s2";
  b.source = "203.0.113.9";
  b.country = "FR";
  b.path = "/.env";
  b.user_agent = "python-requests/2.31";
  b.oat = {"OAT-008", "OAT-014"};
  b.categories = {"attack-rce", "attack-sqli"};
  b.baits = {"env_file"};
  Fields c;
  c.source = "192.0.2.77";
  (void)test;
  for (int i = 0; i < 4; ++i) {
    add("a" + std::to_string(i), kBaseMs + i * 1000, a);
  }
  for (int i = 0; i < 2; ++i) {
    add("b" + std::to_string(i), kBaseMs + 3'600'000 + i * 1000, b);
  }
  add("c0", kBaseMs + 7'200'000, c);
}

TEST_F(DashboardTest, CountsMatchStoredEvents) {
  fillThreeSources(*this, [&](auto id, auto ts, auto fields) { addEvent(id, ts, fields); });
  indexAll();
  DashboardFilter all;
  EXPECT_EQ(integerField(queries_->summary(all), "/events"), 7);
  EXPECT_EQ(integerField(queries_->summary(all), "/sources"), 3);

  std::string sources = queries_->top(all, TopField::kSource, 10);
  EXPECT_EQ(countOf(sources, "198.51.100.4"), 4);
  EXPECT_EQ(countOf(sources, "203.0.113.9"), 2);
  EXPECT_EQ(countOf(sources, "192.0.2.77"), 1);
  EXPECT_NE(sources.find("\"country\":\"DE\""), std::string::npos) << sources;
  EXPECT_NE(sources.find("\"as_org\":\"Example Net\""), std::string::npos) << sources;

  EXPECT_EQ(countOf(queries_->top(all, TopField::kPath, 10), "/.env"), 2);
  EXPECT_EQ(countOf(queries_->top(all, TopField::kUserAgent, 10), "sqlmap/1.7"), 4);
  EXPECT_EQ(countOf(queries_->top(all, TopField::kCountry, 10), "FR"), 2);

  std::string oat = queries_->tags(all, TagKind::kOat, 10);
  EXPECT_EQ(countOf(oat, "OAT-014"), 6);
  EXPECT_EQ(countOf(oat, "OAT-008"), 2);
  std::string crs = queries_->tags(all, TagKind::kCrsCategory, 10);
  EXPECT_EQ(countOf(crs, "attack-sqli"), 6);
  EXPECT_EQ(countOf(crs, "attack-rce"), 2);
  EXPECT_EQ(countOf(queries_->tags(all, TagKind::kBait, 10), "env_file"), 2);

  std::string geo = queries_->geo(all, 100);
  EXPECT_NE(geo.find("{\"lat\":52.5,\"lon\":13.4,\"count\":4}"), std::string::npos) << geo;

  std::string timeline = queries_->timeline(all, 3, kBaseMs + kRollupDayMs);
  simdjson::dom::parser parser;
  auto root = parse(parser, timeline);
  std::int64_t total = 0;
  for (simdjson::dom::element point : root["points"].get_array()) {
    total += std::int64_t(point["count"].get_int64());
  }
  EXPECT_EQ(total, 7) << timeline;
  EXPECT_EQ(integerField(timeline, "/bucket_ms") % 60'000, 0);
}

TEST_F(DashboardTest, FiltersChangeCounts) {
  fillThreeSources(*this, [&](auto id, auto ts, auto fields) { addEvent(id, ts, fields); });
  indexAll();
  DashboardFilter by_sensor;
  by_sensor.sensor = "s2";
  EXPECT_EQ(integerField(queries_->summary(by_sensor), "/events"), 2);
  EXPECT_EQ(countOf(queries_->tags(by_sensor, TagKind::kOat, 10), "OAT-014"), 2);
  EXPECT_EQ(countOf(queries_->top(by_sensor, TopField::kUserAgent, 10), "python-requests/2.31"),
            2);

  DashboardFilter by_oat;
  by_oat.oat = "OAT-014";
  EXPECT_EQ(integerField(queries_->summary(by_oat), "/events"), 6);
  EXPECT_EQ(countOf(queries_->top(by_oat, TopField::kSource, 10), "192.0.2.77"), 0);

  DashboardFilter by_source;
  by_source.source = "192.0.2.77";
  EXPECT_EQ(integerField(queries_->summary(by_source), "/events"), 1);
  EXPECT_EQ(countOf(queries_->tags(by_source, TagKind::kOat, 10), "OAT-014"), 0);

  DashboardFilter by_time;
  by_time.from_ms = kBaseMs + 3'600'000;
  by_time.to_ms = kBaseMs + 7'200'000;  // excluded: c0 is at exactly this time
  EXPECT_EQ(integerField(queries_->summary(by_time), "/events"), 2);
  EXPECT_EQ(countOf(queries_->tags(by_time, TagKind::kOat, 10), "OAT-014"), 2);

  DashboardFilter nothing;
  nothing.sensor = "no-such-sensor";
  EXPECT_EQ(integerField(queries_->summary(nothing), "/events"), 0);
}

TEST_F(DashboardTest, FeedAndEventDetail) {
  fillThreeSources(*this, [&](auto id, auto ts, auto fields) { addEvent(id, ts, fields); });
  indexAll();
  std::string feed = queries_->feed(DashboardFilter{}, 2);
  simdjson::dom::parser parser;
  auto root = parse(parser, feed);
  auto events = root["events"].get_array();
  ASSERT_EQ(events.size(), 2u) << feed;
  EXPECT_EQ(std::string_view(events.at(0)["event_id"].get_string()), "c0");
  EXPECT_EQ(std::string_view(events.at(1)["event_id"].get_string()), "b1");
  EXPECT_EQ(events.at(1)["baits"].get_array().size(), 1u);

  auto detail = queries_->event("b1");
  ASSERT_TRUE(detail.has_value());
  EXPECT_NE(detail->find("\"path\":\"/.env\""), std::string::npos) << *detail;
  EXPECT_FALSE(queries_->event("missing").has_value());
}

TEST_F(DashboardTest, HealthListsSensorsAndOutputs) {
  SensorInfo sensor;
  sensor.sensor_id = "s1";
  sensor.group = "g";
  sensor.token_sha256 = std::string(64, 'a');
  store_->enrolSensor(sensor);
  store_->noteSensorSeen("s1", kBaseMs + 7'200'000 + 1500, 5);
  fillThreeSources(*this, [&](auto id, auto ts, auto fields) { addEvent(id, ts, fields); });
  indexAll();
  store_->registerOutput("dashboard");
  store_->setCursor("dashboard", 3);
  std::string health = queries_->health(DashboardFilter{}, kBaseMs + 8'000'000);
  EXPECT_NE(health.find("\"sensor\":\"s1\",\"events\":5"), std::string::npos) << health;
  EXPECT_NE(health.find("\"shipping_lag_ms\":1500"), std::string::npos) << health;
  EXPECT_NE(health.find("\"output\":\"dashboard\",\"cursor\":3,\"queue_depth\":4"),
            std::string::npos)
      << health;
}

TEST_F(DashboardTest, OutputIndexesAndRebuilds) {
  fillThreeSources(*this, [&](auto id, auto ts, auto fields) { addEvent(id, ts, fields); });
  {
    auto output = std::make_unique<DashboardIndexOutput>(*index_, *store_);
    auto events = store_->readAfter(0, 100, 1 << 20);
    auto results = output->send(events);
    EXPECT_EQ(results.size(), 7u);
    // A batch sent again after a crash adds nothing.
    output->send(events);
  }
  EXPECT_EQ(integerField(queries_->summary(DashboardFilter{}), "/events"), 7);
  EXPECT_EQ(countOf(queries_->tags(DashboardFilter{}, TagKind::kOat, 10), "OAT-014"), 6);

  // A deleted index file with a cursor left in the store starts over.
  store_->registerOutput("dashboard");
  store_->setCursor("dashboard", 7);
  queries_.reset();
  index_.reset();
  fs::remove(dir_ / "dashboard.sqlite");
  fs::remove(dir_ / "dashboard.sqlite-wal");
  fs::remove(dir_ / "dashboard.sqlite-shm");
  index_ = std::make_unique<DashboardIndex>(dir_ / "dashboard.sqlite");
  DashboardIndexOutput output(*index_, *store_);
  EXPECT_EQ(store_->cursor("dashboard"), 0);
}

TEST_F(DashboardTest, DocumentTextIsNotSql) {
  Fields hostile;
  hostile.path = "/x' OR 1=1; DROP TABLE facts; --";
  hostile.user_agent = "<script>alert(1)</script>";
  addEvent("h0", kBaseMs, hostile);
  indexAll();
  DashboardFilter filter;
  filter.source = "' OR ''='";
  EXPECT_EQ(integerField(queries_->summary(filter), "/events"), 0);
  EXPECT_EQ(countOf(queries_->top(DashboardFilter{}, TopField::kPath, 10), hostile.path), 1);
}

// One generated event and the seq the store gave it, for the plain counts
// that the rollup test compares the queries with.
struct PlainEvent {
  std::int64_t seq = 0;
  std::int64_t ts = 0;
  Fields fields;
};

bool matches(const PlainEvent& event, const DashboardFilter& filter) {
  if (event.ts < filter.from_ms || event.ts >= filter.to_ms) {
    return false;
  }
  if (!filter.sensor.empty() && event.fields.sensor != filter.sensor) {
    return false;
  }
  if (!filter.source.empty() && event.fields.source != filter.source) {
    return false;
  }
  const auto& oat = event.fields.oat;
  return filter.oat.empty() || std::find(oat.begin(), oat.end(), filter.oat) != oat.end();
}

using CountMap = std::map<std::string, std::int64_t>;

CountMap itemsOf(const std::string& json) {
  simdjson::dom::parser parser;
  auto root = parse(parser, json);
  CountMap items;
  for (simdjson::dom::element item : root["items"].get_array()) {
    items[std::string(std::string_view(item["value"].get_string()))] =
        std::int64_t(item["count"].get_int64());
  }
  return items;
}

std::string describe(const DashboardFilter& filter) {
  return fmt::format("from={} to={} sensor={} oat={} source={}", filter.from_ms, filter.to_ms,
                     filter.sensor, filter.oat, filter.source);
}

// Compares every counting panel with plain counts over `events`.
void expectPlainCounts(DashboardQueries& queries, const std::vector<PlainEvent>& events,
                       const DashboardFilter& filter) {
  SCOPED_TRACE(describe(filter));
  std::int64_t total = 0;
  std::int64_t first = 0;
  std::int64_t last = 0;
  std::set<std::string> sources;
  std::map<TopField, CountMap> top;
  std::map<TagKind, CountMap> tags;
  CountMap cells;
  std::map<std::string, std::pair<std::int64_t, std::int64_t>> sensors;  // events, newest
  for (const PlainEvent& event : events) {
    if (!matches(event, filter)) {
      continue;
    }
    const Fields& f = event.fields;
    first = total == 0 ? event.ts : std::min(first, event.ts);
    last = total == 0 ? event.ts : std::max(last, event.ts);
    ++total;
    sources.insert(f.source);
    for (auto [field, value] : {std::pair{TopField::kSource, &f.source},
                                {TopField::kPath, &f.path},
                                {TopField::kUserAgent, &f.user_agent},
                                {TopField::kCountry, &f.country}}) {
      if (!value->empty()) {
        ++top[field][*value];
      }
    }
    for (auto [kind, values] : {std::pair{TagKind::kOat, &f.oat},
                                {TagKind::kCrsCategory, &f.categories},
                                {TagKind::kBait, &f.baits}}) {
      for (const std::string& value : std::set<std::string>(values->begin(), values->end())) {
        ++tags[kind][value];
      }
    }
    if (f.located) {
      ++cells[fmt::format("{:.1f},{:.1f}", f.lat, f.lon)];
    }
    auto& sensor = sensors[f.sensor];
    ++sensor.first;
    sensor.second = std::max(sensor.second, event.ts);
  }

  std::string summary = queries.summary(filter);
  EXPECT_EQ(integerField(summary, "/events"), total) << summary;
  EXPECT_EQ(integerField(summary, "/sources"), static_cast<std::int64_t>(sources.size()))
      << summary;
  EXPECT_EQ(integerField(summary, "/first_ms"), first) << summary;
  EXPECT_EQ(integerField(summary, "/last_ms"), last) << summary;

  for (TopField field : {TopField::kSource, TopField::kPath, TopField::kUserAgent,
                         TopField::kCountry}) {
    EXPECT_EQ(itemsOf(queries.top(filter, field, 1000)), top[field])
        << "top field " << static_cast<int>(field);
  }
  for (TagKind kind : {TagKind::kOat, TagKind::kCrsCategory, TagKind::kBait}) {
    EXPECT_EQ(itemsOf(queries.tags(filter, kind, 1000)), tags[kind])
        << "tag kind " << static_cast<int>(kind);
  }

  simdjson::dom::parser parser;
  std::string geo = queries.geo(filter, 10000);
  CountMap answered_cells;
  for (simdjson::dom::element point : parse(parser, geo)["points"].get_array()) {
    answered_cells[fmt::format("{:.1f},{:.1f}", double(point["lat"].get_double()),
                               double(point["lon"].get_double()))] =
        std::int64_t(point["count"].get_int64());
  }
  EXPECT_EQ(answered_cells, cells) << geo;

  std::string timeline = queries.timeline(filter, 120, kBaseMs + 30 * kRollupDayMs);
  auto timeline_root = parse(parser, timeline);
  const std::int64_t bucket_ms = timeline_root["bucket_ms"].get_int64();
  std::int64_t timeline_total = 0;
  for (simdjson::dom::element point : timeline_root["points"].get_array()) {
    const std::int64_t t = point["t"].get_int64();
    const std::int64_t count = point["count"].get_int64();
    timeline_total += count;
    DashboardFilter bucket = filter;
    bucket.from_ms = std::max(filter.from_ms, t);
    bucket.to_ms = std::min(filter.to_ms, t + bucket_ms);
    std::int64_t expected = 0;
    for (const PlainEvent& event : events) {
      expected += matches(event, bucket) ? 1 : 0;
    }
    EXPECT_EQ(count, expected) << "timeline bucket at " << t;
  }
  EXPECT_EQ(timeline_total, total) << timeline;

  std::string health = queries.health(filter, kBaseMs);
  std::map<std::string, std::pair<std::int64_t, std::int64_t>> answered_sensors;
  for (simdjson::dom::element row : parse(parser, health)["sensors"].get_array()) {
    answered_sensors[std::string(std::string_view(row["sensor"].get_string()))] = {
        std::int64_t(row["events"].get_int64()), std::int64_t(row["newest_event_ms"].get_int64())};
  }
  EXPECT_EQ(answered_sensors, sensors) << health;
}

// Random filters over the generated events: ranges with edges inside hours
// and days, whole hours, one hour, open ends, and every filter field.
std::vector<DashboardFilter> randomFilters(std::mt19937& random, int count,
                                           const std::vector<PlainEvent>& events) {
  const std::int64_t span = 6 * kRollupDayMs;
  std::uniform_int_distribution<std::int64_t> offset(-kRollupHourMs, span + kRollupHourMs);
  std::uniform_int_distribution<std::int64_t> length(0, 3 * kRollupDayMs);
  std::uniform_int_distribution<int> pick(0, 99);
  std::vector<DashboardFilter> filters;
  for (int i = 0; i < count; ++i) {
    DashboardFilter filter;
    int shape = pick(random) % 5;
    if (shape == 1) {
      filter.from_ms = kBaseMs + offset(random);
    } else if (shape == 2) {
      filter.from_ms = kBaseMs + offset(random);
      filter.to_ms = filter.from_ms + length(random);
    } else if (shape == 3) {  // whole hours
      filter.from_ms = (kBaseMs + offset(random)) / kRollupHourMs * kRollupHourMs;
      filter.to_ms = filter.from_ms + (1 + pick(random)) * kRollupHourMs;
    } else if (shape == 4) {  // inside one hour
      filter.from_ms = (kBaseMs + offset(random)) / kRollupHourMs * kRollupHourMs + 60'000;
      filter.to_ms = filter.from_ms + 30 * 60'000;
    }
    int sensor = pick(random);
    filter.sensor = sensor < 60 ? "" : "s" + std::to_string(sensor % 3 + 1);
    int oat = pick(random);
    filter.oat = oat < 60 ? "" : "OAT-00" + std::to_string(oat % 5 + 1);
    if (pick(random) < 20) {
      filter.source = events[static_cast<std::size_t>(pick(random)) % events.size()].fields.source;
    }
    filters.push_back(filter);
  }
  return filters;
}

// Counts the rollup rows that reached 0 and were not deleted, and returns
// the events that hourly_counts holds for all OAT ids ('').
std::pair<std::int64_t, std::int64_t> rollupState(const fs::path& index_path) {
  dashboard::Database db(index_path, true);
  dashboard::Statement zero(db, "SELECT (SELECT count(*) FROM hourly_counts WHERE events <= 0) + "
                                "(SELECT count(*) FROM daily_values WHERE events <= 0)");
  zero.step();
  dashboard::Statement total(db, "SELECT coalesce(sum(events), 0) FROM hourly_counts "
                                 "WHERE oat = ''");
  total.step();
  return {zero.integer(0), total.integer(0)};
}

TEST_F(DashboardTest, RollupsMatchPlainCounts) {
  std::mt19937 random(20261205);
  std::uniform_int_distribution<int> pick(0, 99);
  std::uniform_int_distribution<std::int64_t> when(0, 6 * kRollupDayMs);
  std::vector<PlainEvent> events;
  for (int i = 0; i < 3000; ++i) {
    PlainEvent event;
    // Times are in random order, so seq order is not time order, as with
    // sensors that ship late.
    event.ts = kBaseMs + when(random);
    Fields& f = event.fields;
    f.sensor = "s" + std::to_string(pick(random) % 3 + 1);
    f.source = pick(random) < 2 ? "" : "192.0.2." + std::to_string(pick(random) % 40);
    const char* countries[] = {"", "DE", "US", "FR"};
    f.country = countries[pick(random) % 4];
    f.path = "/p" + std::to_string(pick(random) % 15);
    f.user_agent = "agent-" + std::to_string(pick(random) % 5);
    f.located = pick(random) < 50;
    // Coordinates 0.03 off a 0.1 grid, so rounding never meets a tie.
    f.lat = (pick(random) * 17 % 1700 - 850) / 10.0 + 0.03;
    f.lon = (pick(random) * 35 % 3500 - 1750) / 10.0 + 0.03;
    for (int n = pick(random) % 3; n > 0; --n) {
      f.oat.push_back("OAT-00" + std::to_string(pick(random) % 5 + 1));
    }
    for (int n = pick(random) % 3; n > 0; --n) {
      f.categories.push_back("attack-" + std::to_string(pick(random) % 3));
    }
    if (pick(random) < 30) {
      f.baits.push_back("bait-" + std::to_string(pick(random) % 2));
    }
    std::string id = "r" + std::to_string(i);
    addEvent(id, event.ts, f);
    event.seq = store_->findEvent(id)->seq;
    events.push_back(std::move(event));
  }
  indexAll();
  auto filters = randomFilters(random, 40, events);
  for (const DashboardFilter& filter : filters) {
    expectPlainCounts(*queries_, events, filter);
  }

  // A lost index file is rebuilt from the store with the same rollups.
  queries_.reset();
  index_.reset();
  for (const char* suffix : {"", "-wal", "-shm"}) {
    fs::remove(dir_ / (std::string("dashboard.sqlite") + suffix));
  }
  index_ = std::make_unique<DashboardIndex>(dir_ / "dashboard.sqlite");
  queries_ = std::make_unique<DashboardQueries>(dir_ / "dashboard.sqlite", *store_);
  for (std::int64_t after = 0;;) {
    auto batch = store_->readAfter(after, 700, 1 << 30);
    if (batch.empty()) {
      break;
    }
    index_->add(batch);
    index_->add(batch);  // sent again after a crash: counted once
    after = batch.back().seq;
  }
  for (std::size_t i = 0; i < 10; ++i) {
    expectPlainCounts(*queries_, events, filters[i]);
  }

  // Retention removes the first third by seq, which touches hours and days
  // all over the range; the rollups lose exactly those events.
  const std::int64_t cutoff = events[1000].seq;
  index_->removeBefore(cutoff);
  std::erase_if(events, [&](const PlainEvent& event) { return event.seq < cutoff; });
  for (const DashboardFilter& filter : randomFilters(random, 25, events)) {
    expectPlainCounts(*queries_, events, filter);
  }
  auto [zero_rows, rollup_events] = rollupState(dir_ / "dashboard.sqlite");
  EXPECT_EQ(zero_rows, 0);
  EXPECT_EQ(rollup_events, static_cast<std::int64_t>(events.size()));

  index_->removeBefore(std::numeric_limits<std::int64_t>::max());
  events.clear();
  expectPlainCounts(*queries_, events, DashboardFilter{});
  auto [zero_after_all, events_after_all] = rollupState(dir_ / "dashboard.sqlite");
  EXPECT_EQ(zero_after_all, 0);
  EXPECT_EQ(events_after_all, 0);
}

// The peer of bench/dashboard/run.sh: one panel's question in plain SQL
// with SQLite's JSON functions over the stored documents, as a user of the
// store would write it for the sqlite3 tool. It uses the store's columns
// timestamp_ms, sensor_id and source_ip where they exist. The store has no
// index on these columns, so each query reads every document.
// Returns the seconds taken to step through every row of the result.
double peerQuery(const fs::path& store_path, std::string_view panel,
                 const DashboardFilter& filter) {
  std::string where = "e.timestamp_ms >= :from AND e.timestamp_ms < :to";
  if (!filter.sensor.empty()) {
    where += " AND e.sensor_id = :sensor";
  }
  if (!filter.source.empty()) {
    where += " AND e.source_ip = :source";
  }
  if (!filter.oat.empty()) {
    where += " AND EXISTS (SELECT 1 FROM json_each(e.document, '$.threat.technique.id') o "
             "WHERE o.value = :oat)";
  }
  auto topOf = [&](std::string_view expression, int limit) {
    return fmt::format("SELECT {0} AS v, count(*) AS n FROM events e WHERE {1} AND v != '' "
                       "GROUP BY v ORDER BY n DESC, v LIMIT {2}",
                       expression, where, limit);
  };
  auto tagsOf = [&](std::string_view path) {
    return fmt::format("SELECT t.value, count(*) AS n FROM events e, json_each(e.document, '{0}') "
                       "t WHERE {1} GROUP BY t.value ORDER BY n DESC, t.value LIMIT 25",
                       path, where);
  };
  std::string sql;
  if (panel == "summary") {
    sql = "SELECT count(*), count(DISTINCT e.source_ip), min(e.timestamp_ms), "
          "max(e.timestamp_ms) FROM events e WHERE " + where;
  } else if (panel == "timeline") {
    sql = "SELECT (e.timestamp_ms - :from) / 21600000 AS b, count(*) FROM events e WHERE " +
          where + " GROUP BY b";
  } else if (panel == "top_sources") {
    sql = topOf("e.source_ip", 10);
  } else if (panel == "top_paths") {
    sql = topOf("json_extract(e.document, '$.url.path')", 10);
  } else if (panel == "top_agents") {
    sql = topOf("json_extract(e.document, '$.user_agent.original')", 10);
  } else if (panel == "countries") {
    sql = topOf("json_extract(e.document, '$.source.geo.country_iso_code')", 10);
  } else if (panel == "oat") {
    sql = tagsOf("$.threat.technique.id");
  } else if (panel == "crs") {
    sql = tagsOf("$.rule.category");
  } else if (panel == "baits") {
    sql = tagsOf("$.webtrap.bait_hits");
  } else if (panel == "geo") {
    sql = "SELECT round(json_extract(e.document, '$.source.geo.location.lat'), 1) AS la, "
          "round(json_extract(e.document, '$.source.geo.location.lon'), 1) AS lo, count(*) AS n "
          "FROM events e WHERE " + where + " AND la IS NOT NULL GROUP BY la, lo "
          "ORDER BY n DESC LIMIT 2000";
  } else if (panel == "health") {
    sql = "SELECT e.sensor_id, count(*), max(e.timestamp_ms) FROM events e WHERE " + where +
          " GROUP BY e.sensor_id";
  } else {  // feed
    sql = "SELECT e.seq, e.timestamp_ms, e.sensor_id, e.source_ip, "
          "json_extract(e.document, '$.url.path'), "
          "json_extract(e.document, '$.threat.technique.id') FROM events e WHERE " + where +
          " ORDER BY e.seq DESC LIMIT 50";
  }
  dashboard::Database db(store_path, true);
  const auto start = Clock::now();
  dashboard::Statement rows(db, sql);
  auto bind = [&](const char* name, auto value) {
    if (int index = rows.parameter(name); index > 0) {
      rows.bind(index, value);
    }
  };
  bind(":from", filter.from_ms);
  bind(":to", filter.to_ms);
  bind(":sensor", std::string_view(filter.sensor));
  bind(":source", std::string_view(filter.source));
  bind(":oat", std::string_view(filter.oat));
  while (rows.step()) {
  }
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Fills the index with WEBTRAP_DASHBOARD_EVENTS events (default 200,000;
// bench/dashboard/run.sh sets 1,000,000) and times every panel's query.
TEST_F(DashboardTest, QueriesAreFastOnLargeIndex) {
  const char* env = std::getenv("WEBTRAP_DASHBOARD_EVENTS");
  const int total = env ? std::atoi(env) : 200'000;
  const int sources = 5000;
  // With WEBTRAP_DASHBOARD_PEER=1 (bench/dashboard/run.sh), the events are
  // also stored, and each panel is timed a second time as plain SQL with
  // SQLite's JSON functions over the stored documents (peerQuery).
  const bool with_peer = std::getenv("WEBTRAP_DASHBOARD_PEER") != nullptr;
  auto storeBatch = [&](const std::vector<StoredEvent>& events) {
    std::vector<NewEvent> stored;
    stored.reserve(events.size());
    for (const StoredEvent& event : events) {
      const std::string source = event.document.substr(
          event.document.find("\"ip\":\"") + 6,
          event.document.find('"', event.document.find("\"ip\":\"") + 6) -
              (event.document.find("\"ip\":\"") + 6));
      stored.push_back(
          NewEvent{event.event_id, event.timestamp_ms, event.sensor_id, source, event.document});
    }
    store_->insert(stored);
  };
  std::vector<StoredEvent> batch;
  const auto fill_start = Clock::now();
  for (int i = 0; i < total; ++i) {
    Fields fields;
    fields.sensor = "s" + std::to_string(i % 8);
    fields.source = "10." + std::to_string(i % sources / 250) + "." +
                    std::to_string(i % 250) + ".1";
    fields.country = i % 3 == 0 ? "US" : "DE";
    fields.located = i % 2 == 0;
    fields.lat = (i % 170) - 85;
    fields.lon = (i % 350) - 175;
    fields.path = "/p" + std::to_string(i % 2000);
    fields.user_agent = "agent-" + std::to_string(i % 200);
    fields.oat = {"OAT-0" + std::to_string(10 + i % 11)};
    fields.categories = {i % 2 ? "attack-sqli" : "attack-xss"};
    if (i % 10 == 0) {
      fields.baits = {"robots"};
    }
    StoredEvent event;
    event.seq = i + 1;
    event.event_id = "e" + std::to_string(i);
    // 30 days of events.
    event.timestamp_ms = kBaseMs + static_cast<std::int64_t>(i) * (30LL * 86'400'000 / total);
    event.sensor_id = fields.sensor;
    event.document = ecsDocument(event.event_id, fields);
    batch.push_back(std::move(event));
    if (batch.size() == 5000) {
      index_->add(batch);
      if (with_peer) {
        storeBatch(batch);
      }
      batch.clear();
    }
  }
  index_->add(batch);
  if (with_peer) {
    storeBatch(batch);
  }
  const double fill_seconds =
      std::chrono::duration<double>(Clock::now() - fill_start).count();
  std::printf("dashboard index: %d events indexed in %.1f s (%.0f events/s)\n", total,
              fill_seconds, total / fill_seconds);
  std::printf("dashboard sqlite %s\n", sqlite3_libversion());

  DashboardFilter all;
  DashboardFilter last_day;
  last_day.from_ms = kBaseMs + 29LL * 86'400'000;
  DashboardFilter by_sensor;
  by_sensor.sensor = "s3";
  DashboardFilter by_oat;
  by_oat.oat = "OAT-014";
  DashboardFilter by_source;
  by_source.source = "10.0.7.1";
  double slowest = 0;
  for (const auto& [name, filter] :
       {std::pair{"all", all}, {"last_day", last_day}, {"sensor", by_sensor}, {"oat", by_oat},
        {"source", by_source}}) {
    std::vector<std::pair<const char*, std::function<std::string()>>> panels = {
        {"summary", [&] { return queries_->summary(filter); }},
        {"timeline", [&] { return queries_->timeline(filter, 120, kBaseMs + 60 * kRollupDayMs); }},
        {"top_sources", [&] { return queries_->top(filter, TopField::kSource, 10); }},
        {"top_paths", [&] { return queries_->top(filter, TopField::kPath, 10); }},
        {"top_agents", [&] { return queries_->top(filter, TopField::kUserAgent, 10); }},
        {"countries", [&] { return queries_->top(filter, TopField::kCountry, 10); }},
        {"oat", [&] { return queries_->tags(filter, TagKind::kOat, 25); }},
        {"crs", [&] { return queries_->tags(filter, TagKind::kCrsCategory, 25); }},
        {"baits", [&] { return queries_->tags(filter, TagKind::kBait, 25); }},
        {"geo", [&] { return queries_->geo(filter, 2000); }},
        {"health", [&] { return queries_->health(filter, kBaseMs); }},
        {"feed", [&] { return queries_->feed(filter, 50); }},
    };
    for (const auto& [panel, query] : panels) {
      const auto start = Clock::now();
      std::string answer = query();
      const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
      slowest = std::max(slowest, seconds);
      std::printf("dashboard query %-8s %-12s %7.1f ms\n", name, panel, seconds * 1000);
      EXPECT_LT(seconds, 1.0) << name << " " << panel;
      EXPECT_FALSE(answer.empty());
      if (with_peer) {
        const double peer_seconds = peerQuery(dir_ / "store.sqlite", panel, filter);
        std::printf("dashboard peer  %-8s %-12s %7.1f ms\n", name, panel, peer_seconds * 1000);
      }
    }
  }
  std::printf("dashboard queries: slowest %.1f ms on %d events\n", slowest * 1000, total);
  EXPECT_EQ(integerField(queries_->summary(all), "/events"), total);
}

}  // namespace
}  // namespace webtrap::collector

namespace webtrap::collector {
namespace {

DashboardHttp::Request makeRequest(boost::beast::http::verb verb, std::string target,
                                   std::string authorization = "") {
  DashboardHttp::Request request{verb, target, 11};
  if (!authorization.empty()) {
    request.set(boost::beast::http::field::authorization, authorization);
  }
  return request;
}

// GETs `target` from `http` with the token "secret-token", expects 200 and
// returns the body.
std::string getOk(DashboardHttp& http, const std::string& target) {
  auto response =
      http.handle(makeRequest(boost::beast::http::verb::get, target, "Bearer secret-token"));
  EXPECT_EQ(response.result(), boost::beast::http::status::ok) << target << ": " << response.body();
  return response.body();
}

TEST_F(DashboardTest, HttpChecksTokenAndParameters) {
  fillThreeSources(*this, [&](auto id, auto ts, auto fields) { addEvent(id, ts, fields); });
  indexAll();
  DashboardHttp http(*queries_, "secret-token");
  namespace beast_http = boost::beast::http;

  auto closed = http.handle(makeRequest(beast_http::verb::get, "/dashboard/api/summary"));
  EXPECT_EQ(closed.result(), beast_http::status::unauthorized);
  auto wrong = http.handle(
      makeRequest(beast_http::verb::get, "/dashboard/api/summary", "Bearer secret-tokeN"));
  EXPECT_EQ(wrong.result(), beast_http::status::unauthorized);

  auto tags = http.handle(
      makeRequest(beast_http::verb::get, "/dashboard/api/tags?limit=3&kind=oat", "Bearer secret-token"));
  EXPECT_EQ(tags.result(), beast_http::status::ok) << tags.body();
  EXPECT_EQ(countOf(tags.body(), "OAT-014"), 6) << tags.body();
  auto filtered = http.handle(makeRequest(
      beast_http::verb::get, "/dashboard/api/top?x=1&field=user_agent&sensor=s2",
      "Bearer secret-token"));
  EXPECT_EQ(countOf(filtered.body(), "python-requests/2.31"), 2) << filtered.body();
  EXPECT_EQ(countOf(filtered.body(), "sqlmap/1.7"), 0) << filtered.body();
  auto encoded = http.handle(makeRequest(beast_http::verb::get, "/dashboard/api/summary?sensor=s%32",
                                         "Bearer secret-token"));
  EXPECT_EQ(integerField(encoded.body(), "/events"), 2) << encoded.body();
  auto invalid = http.handle(makeRequest(beast_http::verb::get, "/dashboard/api/summary?from=abc",
                                         "Bearer secret-token"));
  EXPECT_EQ(invalid.result(), beast_http::status::bad_request);

  auto page = http.handle(makeRequest(beast_http::verb::get, "/dashboard/"));
  EXPECT_EQ(page.result(), beast_http::status::ok);
  std::string policy(page["Content-Security-Policy"]);
  EXPECT_NE(policy.find("script-src 'self'"), std::string::npos) << policy;
  EXPECT_EQ(policy.find("unsafe-inline"), std::string::npos) << policy;
  EXPECT_EQ(std::string(page["X-Content-Type-Options"]), "nosniff");

  // A JSON body carries no form field, so the response names the form field.
  auto json_login = makeRequest(beast_http::verb::post, "/dashboard/login");
  json_login.set(beast_http::field::content_type, "application/json");
  json_login.body() = R"({"token":"secret-token"})";
  json_login.prepare_payload();
  auto json_answer = http.handle(json_login);
  EXPECT_EQ(json_answer.result(), beast_http::status::bad_request);
  EXPECT_NE(json_answer.body().find("missing form field token"), std::string::npos)
      << json_answer.body();

  auto login = makeRequest(beast_http::verb::post, "/dashboard/login");
  login.body() = "token=secret-token";
  login.prepare_payload();
  auto logged_in = http.handle(login);
  EXPECT_EQ(logged_in.result(), beast_http::status::no_content);
  std::string cookie(logged_in[beast_http::field::set_cookie]);
  EXPECT_NE(cookie.find("HttpOnly"), std::string::npos) << cookie;
  EXPECT_NE(cookie.find("SameSite=Strict"), std::string::npos) << cookie;
  auto with_cookie = makeRequest(beast_http::verb::get, "/dashboard/api/summary");
  with_cookie.set(beast_http::field::cookie, "other=1; " + cookie.substr(0, cookie.find(';')));
  EXPECT_EQ(http.handle(with_cookie).result(), beast_http::status::ok);
  auto forged = makeRequest(beast_http::verb::get, "/dashboard/api/summary");
  forged.set(beast_http::field::cookie, "webtrap_dashboard=" + std::string(64, '0'));
  EXPECT_EQ(http.handle(forged).result(), beast_http::status::unauthorized);
}


// Sums the counts of a timeline response and checks that its bucket width
// is positive.
std::int64_t timelineTotal(const std::string& json) {
  simdjson::dom::parser parser;
  auto root = parse(parser, json);
  std::int64_t bucket_ms = root["bucket_ms"].get_int64();
  EXPECT_GT(bucket_ms, 0) << json;
  std::int64_t total = 0;
  for (simdjson::dom::element point : root["points"].get_array()) {
    total += point["count"].get_int64();
  }
  return total;
}

// Record times are attacker-controlled: a probe record may carry any ISO
// 8601 time, also one before 1970. The view without a time range ("all",
// the page's default) must still count such events, in every panel and in
// the live feed, or a record dated 1969 would hide from the dashboard. The
// timeline of that view starts shortly before the collector received its
// first event, so it counts them in earlier_events, and a range with a
// start before 1970 puts them on it.
TEST_F(DashboardTest, EventsBeforeEpochAreShown) {
  Fields old_fields;
  old_fields.path = "/before-1970";
  old_fields.oat = {"OAT-014"};
  addEvent("old0", -5 * kRollupDayMs - 1234, old_fields);  // 1969-12-26
  addEvent("old1", -1, old_fields);                          // 1969-12-31T23:59:59.999Z
  addEvent("new0", kBaseMs, Fields{});
  indexAll();
  DashboardHttp http(*queries_, "secret-token");
  auto get = [&](const std::string& target) { return getOk(http, target); };

  EXPECT_EQ(integerField(get("/dashboard/api/summary"), "/events"), 3);
  EXPECT_EQ(integerField(get("/dashboard/api/summary"), "/first_ms"), -5 * kRollupDayMs - 1234);
  EXPECT_EQ(countOf(get("/dashboard/api/top?field=path"), "/before-1970"), 2);
  EXPECT_EQ(countOf(get("/dashboard/api/tags?kind=oat"), "OAT-014"), 2);
  const std::string timeline = get("/dashboard/api/timeline?limit=120");
  EXPECT_EQ(timelineTotal(timeline), 1) << timeline;
  EXPECT_EQ(integerField(timeline, "/earlier_events"), 2) << timeline;
  const std::string from_1969 =
      get("/dashboard/api/timeline?limit=120&from=" + std::to_string(-6 * kRollupDayMs));
  EXPECT_EQ(timelineTotal(from_1969), 3) << from_1969;
  EXPECT_EQ(integerField(from_1969, "/earlier_events"), 0) << from_1969;
  std::string feed = get("/dashboard/api/feed?limit=10");
  EXPECT_NE(feed.find("\"old0\""), std::string::npos) << feed;
  EXPECT_NE(feed.find("\"old1\""), std::string::npos) << feed;
  EXPECT_EQ(integerField(get("/dashboard/api/health"), "/sensors/0/events"), 3);

  // A range that starts before 1970 is a valid filter too.
  const std::string before = std::to_string(-kRollupDayMs);
  EXPECT_EQ(integerField(get("/dashboard/api/summary?from=" + before + "&to=0"), "/events"), 1);
  EXPECT_EQ(integerField(get("/dashboard/api/summary?to=0"), "/events"), 2);
}

// from and to are any int64 the admin sends; the bucket arithmetic must not
// overflow into a negative or zero bucket width.
TEST_F(DashboardTest, TimelineHandlesExtremeRanges) {
  fillThreeSources(*this, [&](auto id, auto ts, auto fields) { addEvent(id, ts, fields); });
  indexAll();
  DashboardHttp http(*queries_, "secret-token");
  namespace beast_http = boost::beast::http;
  for (const std::string query :
       {"from=1&to=9223372036854775806&limit=1", "from=1&to=9223372036854775806&limit=7",
        "from=-9223372036854775808&to=9223372036854775806&limit=1",
        "from=-9223372036854775808&limit=1", "to=9223372036854775806&limit=3",
        "from=-9223372036854775807&to=9223372036854775807&limit=1000"}) {
    auto response = http.handle(makeRequest(
        beast_http::verb::get, "/dashboard/api/timeline?" + query, "Bearer secret-token"));
    ASSERT_EQ(response.result(), beast_http::status::ok) << query << ": " << response.body();
    EXPECT_EQ(timelineTotal(response.body()), 7) << query << ": " << response.body();
    auto summary = http.handle(makeRequest(
        beast_http::verb::get, "/dashboard/api/summary?" + query, "Bearer secret-token"));
    EXPECT_EQ(integerField(summary.body(), "/events"), 7) << query << ": " << summary.body();
  }
}

// A record dated far ahead (a wrong sensor clock or a forged time) must not
// stretch the timeline of the page's default view, whose range has no end.
// That end stops shortly after now, so the bucket width stays what it is
// without the record. A range with an explicit end still shows the record,
// and the summary and the feed count it.
TEST_F(DashboardTest, FarFutureRecordKeepsDefaultTimeline) {
  fillThreeSources(*this, [&](auto id, auto ts, auto fields) { addEvent(id, ts, fields); });
  indexAll();
  DashboardHttp http(*queries_, "secret-token");
  auto get = [&](const std::string& target) { return getOk(http, target); };
  // The page's "all" view has neither end, its "last N" views only a start.
  const std::vector<std::string> open_ended = {"limit=120", "limit=120&from=0"};
  std::map<std::string, std::int64_t> bucket_before;
  for (const std::string& query : open_ended) {
    bucket_before[query] = integerField(get("/dashboard/api/timeline?" + query), "/bucket_ms");
  }

  constexpr std::int64_t kYear2100Ms = 4'102'444'800'000;  // 2100-01-01T00:00:00Z
  Fields outlier;
  outlier.path = "/from-2100";
  addEvent("future0", kYear2100Ms, outlier);
  indexAll();

  for (const std::string& query : open_ended) {
    const std::string after = get("/dashboard/api/timeline?" + query);
    EXPECT_EQ(integerField(after, "/bucket_ms"), bucket_before[query]) << query << ": " << after;
    EXPECT_EQ(timelineTotal(after), 7) << query << ": " << after;
    EXPECT_EQ(integerField(after, "/later_events"), 1) << query << ": " << after;
    EXPECT_LT(integerField(after, "/to_ms"), kYear2100Ms) << query << ": " << after;
  }

  const std::string explicit_end =
      get("/dashboard/api/timeline?limit=120&to=" + std::to_string(kYear2100Ms + 1));
  EXPECT_EQ(timelineTotal(explicit_end), 8) << explicit_end;
  EXPECT_EQ(integerField(explicit_end, "/later_events"), 0) << explicit_end;
  EXPECT_GT(integerField(explicit_end, "/bucket_ms"), bucket_before["limit=120"]) << explicit_end;

  const std::string summary = get("/dashboard/api/summary");
  EXPECT_EQ(integerField(summary, "/events"), 8) << summary;
  EXPECT_EQ(integerField(summary, "/last_ms"), kYear2100Ms) << summary;
  EXPECT_EQ(countOf(get("/dashboard/api/top?field=path"), "/from-2100"), 1);
  const std::string feed = get("/dashboard/api/feed?limit=10");
  EXPECT_NE(feed.find("\"future0\""), std::string::npos) << feed;
}

// A record dated far back (a wrong sensor clock or a forged time) must not
// stretch the timeline of the page's default view either. Its range has no
// start, so the timeline starts kTimelinePastSlackMs before the collector
// received its oldest stored event, and the bucket width stays what it is
// without the record. A range with an explicit start still shows the
// record, and the summary and the feed count it.
TEST_F(DashboardTest, FarPastRecordKeepsDefaultTimeline) {
  fillThreeSources(*this, [&](auto id, auto ts, auto fields) { addEvent(id, ts, fields); });
  indexAll();
  DashboardHttp http(*queries_, "secret-token");
  auto get = [&](const std::string& target) { return getOk(http, target); };
  // The page's "all" view has no start; the link under the timeline for
  // events dated ahead sets only an end.
  const std::vector<std::string> open_started = {
      "limit=120", "limit=120&to=" + std::to_string(kBaseMs + kRollupDayMs)};
  std::map<std::string, std::int64_t> bucket_before;
  for (const std::string& query : open_started) {
    bucket_before[query] = integerField(get("/dashboard/api/timeline?" + query), "/bucket_ms");
  }

  // A record dated 1970 and one dated 2001, both received with the others.
  constexpr std::int64_t kYear1970Ms = 86'400'000;       // 1970-01-02T00:00:00Z
  constexpr std::int64_t kYear2001Ms = 978'307'200'000;  // 2001-01-01T00:00:00Z
  Fields outlier;
  outlier.path = "/from-the-past";
  addEvent("past1970", kYear1970Ms, outlier);
  addEvent("past2001", kYear2001Ms, outlier);
  indexAll();

  for (const std::string& query : open_started) {
    const std::string after = get("/dashboard/api/timeline?" + query);
    EXPECT_EQ(integerField(after, "/bucket_ms"), bucket_before[query]) << query << ": " << after;
    EXPECT_EQ(timelineTotal(after), 7) << query << ": " << after;
    EXPECT_EQ(integerField(after, "/earlier_events"), 2) << query << ": " << after;
    EXPECT_EQ(integerField(after, "/open_from_ms"), kBaseMs - kTimelinePastSlackMs)
        << query << ": " << after;
    EXPECT_GT(integerField(after, "/from_ms"), kYear2001Ms) << query << ": " << after;
  }

  const std::string explicit_start =
      get("/dashboard/api/timeline?limit=120&from=" + std::to_string(kYear1970Ms));
  EXPECT_EQ(timelineTotal(explicit_start), 9) << explicit_start;
  EXPECT_EQ(integerField(explicit_start, "/earlier_events"), 0) << explicit_start;
  EXPECT_NE(explicit_start.find("\"open_from_ms\":null"), std::string::npos) << explicit_start;
  EXPECT_GT(integerField(explicit_start, "/bucket_ms"), bucket_before["limit=120"])
      << explicit_start;

  const std::string summary = get("/dashboard/api/summary");
  EXPECT_EQ(integerField(summary, "/events"), 9) << summary;
  EXPECT_EQ(integerField(summary, "/first_ms"), kYear1970Ms) << summary;
  EXPECT_EQ(countOf(get("/dashboard/api/top?field=path"), "/from-the-past"), 2);
  const std::string feed = get("/dashboard/api/feed?limit=10");
  EXPECT_NE(feed.find("\"past1970\""), std::string::npos) << feed;
  EXPECT_NE(feed.find("\"past2001\""), std::string::npos) << feed;
}

// The open start of the timeline follows the receive time of the oldest
// stored event, minus kTimelinePastSlackMs: an event dated at that start is
// shown, one a millisecond before it is counted in earlier_events. An
// empty store leaves the start open.
TEST_F(DashboardTest, TimelineOpenStartFollowsFirstReceipt) {
  DashboardFilter all;
  const std::string empty = queries_->timeline(all, 120, kBaseMs);
  EXPECT_NE(empty.find("\"open_from_ms\":null"), std::string::npos) << empty;
  EXPECT_EQ(integerField(empty, "/earlier_events"), 0) << empty;

  received_ms_ = kBaseMs + 10 * kRollupDayMs;
  const std::int64_t start = received_ms_ - kTimelinePastSlackMs;
  addEvent("outside", start - 1, Fields{});
  addEvent("inside", start, Fields{});
  addEvent("recent", received_ms_ - 60'000, Fields{});
  indexAll();
  // Events received later do not move the start.
  received_ms_ += 5 * kRollupDayMs;
  addEvent("later", received_ms_ - 60'000, Fields{});
  indexAll();
  const std::string timeline = queries_->timeline(all, 120, received_ms_);
  EXPECT_EQ(timelineTotal(timeline), 3) << timeline;
  EXPECT_EQ(integerField(timeline, "/earlier_events"), 1) << timeline;
  EXPECT_EQ(integerField(timeline, "/open_from_ms"), start) << timeline;
  EXPECT_EQ(integerField(timeline, "/from_ms") % integerField(timeline, "/bucket_ms"), 0)
      << timeline;
  EXPECT_LE(integerField(timeline, "/from_ms"), start) << timeline;
}

// A sensor whose clock runs ahead sends events dated after the collector
// received them. The health row states how far its newest event lies
// after the last receipt (after now for a sensor without receipts), and the
// shipping lag is measured to its newest event dated before that receipt.
TEST_F(DashboardTest, HealthMarksSensorClockAhead) {
  SensorInfo sensor;
  sensor.sensor_id = "s1";
  sensor.group = "g";
  sensor.token_sha256 = std::string(64, 'a');
  store_->enrolSensor(sensor);
  const std::int64_t last_seen = kBaseMs + 600'000;
  store_->noteSensorSeen("s1", last_seen, 3);
  addEvent("s1-first", kBaseMs, Fields{});
  addEvent("s1-second", kBaseMs + 60'000, Fields{});
  addEvent("s1-ahead", kBaseMs + kRollupDayMs, Fields{});
  // s2 is not enrolled, like the sensor of a ModSecurity input: its events
  // are compared with now.
  Fields unenrolled;
  unenrolled.sensor = "s2";
  addEvent("s2-first", kBaseMs, unenrolled);
  addEvent("s2-ahead", kBaseMs + 2 * kRollupDayMs, unenrolled);
  indexAll();
  const std::int64_t now = kBaseMs + 700'000;

  const std::string health = queries_->health(DashboardFilter{}, now);
  EXPECT_EQ(integerField(health, "/sensors/0/newest_event_ms"), kBaseMs + kRollupDayMs) << health;
  EXPECT_EQ(integerField(health, "/sensors/0/newest_event_ahead_ms"), kRollupDayMs - 600'000)
      << health;
  EXPECT_EQ(integerField(health, "/sensors/0/shipping_lag_ms"), 540'000) << health;
  EXPECT_EQ(integerField(health, "/sensors/1/newest_event_ahead_ms"), 2 * kRollupDayMs - 700'000)
      << health;
  simdjson::dom::parser parser;
  auto unenrolled_row = parse(parser, health).at_pointer("/sensors/1");
  EXPECT_EQ(std::string_view(unenrolled_row["sensor"].get_string().value()), "s2") << health;
  EXPECT_TRUE(unenrolled_row["shipping_lag_ms"].is_null()) << health;

  // Without the event dated ahead in the range, nothing is marked.
  DashboardFilter before_ahead;
  before_ahead.to_ms = kBaseMs + 120'000;
  const std::string in_time = queries_->health(before_ahead, now);
  EXPECT_EQ(integerField(in_time, "/sensors/0/newest_event_ms"), kBaseMs + 60'000) << in_time;
  EXPECT_EQ(integerField(in_time, "/sensors/0/newest_event_ahead_ms"), 0) << in_time;
  EXPECT_EQ(integerField(in_time, "/sensors/0/shipping_lag_ms"), 540'000) << in_time;
  EXPECT_EQ(integerField(in_time, "/sensors/1/newest_event_ahead_ms"), 0) << in_time;
}

// The open end of the timeline follows the `now_ms` it is given, plus
// kTimelineFutureSlackMs: an event just inside the slack is shown, one just
// past it is counted in later_events.
TEST_F(DashboardTest, TimelineOpenEndFollowsNow) {
  const std::int64_t now = kBaseMs + kRollupDayMs;
  addEvent("past", now - 60'000, Fields{});
  addEvent("inside", now + kTimelineFutureSlackMs - 1, Fields{});
  addEvent("outside", now + kTimelineFutureSlackMs, Fields{});
  indexAll();
  DashboardFilter all;
  const std::string timeline = queries_->timeline(all, 120, now);
  EXPECT_EQ(timelineTotal(timeline), 2) << timeline;
  EXPECT_EQ(integerField(timeline, "/later_events"), 1) << timeline;
  EXPECT_EQ(integerField(timeline, "/to_ms"), now + kTimelineFutureSlackMs) << timeline;
  // Per-minute buckets: the range is the two shown events, about an hour.
  EXPECT_LE(integerField(timeline, "/bucket_ms"), 60'000) << timeline;
  const std::string later = queries_->timeline(all, 120, now + kRollupDayMs);
  EXPECT_EQ(timelineTotal(later), 3) << later;
  EXPECT_EQ(integerField(later, "/later_events"), 0) << later;
}

// A response to HEAD has the headers of the GET response and no body
// (RFC 9110, 9.3.2), because a keep-alive client would read a body as the
// start of its next response.
TEST_F(DashboardTest, HeadAnswersWithoutBody) {
  DashboardHttp http(*queries_, "secret-token");
  namespace beast_http = boost::beast::http;
  for (const char* target : {"/dashboard/", "/dashboard/world-outline.json",
                             "/dashboard/dashboard.js"}) {
    auto get = http.handle(makeRequest(beast_http::verb::get, target));
    auto head = http.handle(makeRequest(beast_http::verb::head, target));
    ASSERT_EQ(get.result(), beast_http::status::ok) << target;
    EXPECT_EQ(head.result(), beast_http::status::ok) << target;
    EXPECT_TRUE(head.body().empty()) << target << ": HEAD got " << head.body().size()
                                     << " bytes of body";
    EXPECT_EQ(std::string(head[beast_http::field::content_length]),
              std::to_string(get.body().size()))
        << target;
  }
}


// threat.technique.id is copied from the record, so a record may carry
// thousands of OAT ids, also ones that no OAT version defines. The rollups
// keep an OAT dimension only for the ontology's ids, so the rows that one
// event adds grow with its tags, not with the square of them. A filter on
// an unknown id is still counted exactly from the raw rows.
TEST_F(DashboardTest, ManyOatIdsStayLinear) {
  constexpr int kUnknownIds = 1000;
  Fields flood;
  flood.oat = {"OAT-014", "OAT-008"};
  for (int i = 0; i < kUnknownIds; ++i) {
    flood.oat.push_back(fmt::format("OAT-X{:04}", i));
  }
  flood.categories = {"attack-sqli", "attack-rce"};
  addEvent("flood", kBaseMs + 3 * kRollupDayMs + 5000, flood);
  fillThreeSources(*this, [&](auto id, auto ts, auto fields) { addEvent(id, ts, fields); });
  const auto started = Clock::now();
  indexAll();
  const double seconds = std::chrono::duration<double>(Clock::now() - started).count();

  std::int64_t rollup_rows = 0;
  {
    dashboard::Database db(dir_ / "dashboard.sqlite", true);
    dashboard::Statement rows(db, "SELECT (SELECT count(*) FROM daily_values) + "
                                  "(SELECT count(*) FROM hourly_counts)");
    ASSERT_TRUE(rows.step());
    rollup_rows = rows.integer(0);
  }
  // About 3 dimensions ('' and two known ids) times 1,000 tags; the square
  // would be over a million rows.
  EXPECT_LT(rollup_rows, 20 * kUnknownIds) << "indexing took " << seconds << " s";

  // Whole days (rollups) and days with range ends inside them (raw rows).
  for (const auto& [from, to] : {std::pair{kBaseMs - kRollupDayMs, kBaseMs + 10 * kRollupDayMs},
                                 std::pair{kBaseMs + 1000, kBaseMs + 3 * kRollupDayMs + 6000}}) {
    DashboardFilter unknown;
    unknown.from_ms = from;
    unknown.to_ms = to;
    unknown.oat = "OAT-X0007";
    EXPECT_EQ(integerField(queries_->summary(unknown), "/events"), 1);
    EXPECT_EQ(countOf(queries_->tags(unknown, TagKind::kCrsCategory, 10), "attack-rce"), 1);
    EXPECT_EQ(countOf(queries_->top(unknown, TopField::kPath, 10), "/"), 1);
    DashboardFilter known = unknown;
    known.oat = "OAT-014";
    // a0..a3 and b0..b1 carry OAT-014 too, but a0 is before the second range.
    const std::int64_t expected = from == kBaseMs + 1000 ? 6 : 7;
    EXPECT_EQ(integerField(queries_->summary(known), "/events"), expected);
    EXPECT_EQ(countOf(queries_->tags(known, TagKind::kOat, 2000), "OAT-X0100"), 1);
    DashboardFilter all;
    all.from_ms = from;
    all.to_ms = to;
    EXPECT_EQ(countOf(queries_->tags(all, TagKind::kOat, 2000), "OAT-X0500"), 1);
    EXPECT_EQ(countOf(queries_->tags(all, TagKind::kOat, 2000), "OAT-014"), expected);
  }
}

// An index of schema version 2 may hold rollup rows for made-up OAT ids,
// so opening it drops every table and the output indexes the store again.
TEST_F(DashboardTest, SchemaVersionTwoIsRebuilt) {
  fillThreeSources(*this, [&](auto id, auto ts, auto fields) { addEvent(id, ts, fields); });
  indexAll();
  ASSERT_EQ(index_->lastSeq(), 7);
  index_.reset();
  {
    dashboard::Database db(dir_ / "dashboard.sqlite", false);
    db.exec("INSERT INTO daily_values(field, oat, day, sensor, value, events) "
            "VALUES(11, 'OAT-X1', 1, 's1', 'OAT-X1', 1)");
    db.exec("PRAGMA user_version=2");
  }
  index_ = std::make_unique<DashboardIndex>(dir_ / "dashboard.sqlite");
  EXPECT_EQ(index_->lastSeq(), 0);
  {
    dashboard::Database db(dir_ / "dashboard.sqlite", true);
    dashboard::Statement rows(db, "SELECT count(*) FROM daily_values");
    ASSERT_TRUE(rows.step());
    EXPECT_EQ(rows.integer(0), 0);
  }
  indexAll();
  DashboardFilter all;
  EXPECT_EQ(integerField(queries_->summary(all), "/events"), 7);
  EXPECT_EQ(countOf(queries_->tags(all, TagKind::kOat, 10), "OAT-014"), 6);
}

// Anyone who reaches the admin listener can post logins. A failed one is
// logged, but not once per request: one connection made about 10,000
// failed logins a second, each a line in the collector's log. Past the
// login limit the address gets 429, and those rejections are logged once
// too.
TEST_F(DashboardTest, FailedLoginsLogThrottled) {
  DashboardHttp http(*queries_, "secret-token");
  namespace beast_http = boost::beast::http;
  std::ostringstream captured;
  auto previous = spdlog::default_logger();
  auto capture = std::make_shared<spdlog::logger>(
      "capture", std::make_shared<spdlog::sinks::ostream_sink_mt>(captured));
  spdlog::set_default_logger(capture);
  const auto client = boost::asio::ip::make_address("192.0.2.10");
  int unauthorized = 0;
  int limited = 0;
  for (int i = 0; i < 500; ++i) {
    auto login = makeRequest(beast_http::verb::post, "/dashboard/login");
    login.body() = "token=guess-" + std::to_string(i);
    login.prepare_payload();
    const auto status = http.handle(login, client).result();
    unauthorized += status == beast_http::status::unauthorized ? 1 : 0;
    limited += status == beast_http::status::too_many_requests ? 1 : 0;
  }
  spdlog::set_default_logger(previous);
  const LoginLimitOptions defaults;
  EXPECT_EQ(unauthorized, static_cast<int>(defaults.max_failures));
  EXPECT_EQ(limited, 500 - static_cast<int>(defaults.max_failures));
  const std::string log = captured.str();
  auto countLines = [&log](std::string_view text) {
    std::size_t lines = 0;
    for (auto at = log.find(text); at != std::string::npos; at = log.find(text, at + 1)) {
      ++lines;
    }
    return lines;
  };
  EXPECT_EQ(countLines("wrong admin token from 192.0.2.10 on /dashboard/login"), 1u)
      << log.substr(0, 400);
  EXPECT_EQ(countLines("rejected a request from 192.0.2.10 on /dashboard/login with 429"), 1u)
      << log.substr(0, 400);
}

}  // namespace
}  // namespace webtrap::collector
