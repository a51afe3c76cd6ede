#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <simdjson.h>

#include "collector/misp_event.h"
#include "collector/misp_feed_output.h"
#include "common/error.h"

namespace webtrap::collector {
namespace {

namespace fs = std::filesystem;

// 2026-12-04 00:00:00 UTC.
constexpr std::int64_t kDayOneMs = 1796342400000;
constexpr std::int64_t kDayMs = 86400000;

struct Hit {
  std::string group;
  std::string sensor;
  std::string ip;
  std::string method;
  std::string host;
  std::string path;
  std::string user_agent;
  std::int64_t timestamp_ms = 0;
};

std::string ecsDocument(const Hit& hit, const std::string& event_id, bool canary = false) {
  std::string bait_hits = canary ? R"(,"bait_hits":["credential_canary"])" : "";
  std::string original;
  if (canary) {
    original =
        R"(,"event":{"original":"{\"webtrap\":{\"baits\":[{\"kind\":\"credential_canary\",\"detail\":\"user=admin password=hunter2\"}]}}"})";
  }
  return fmt::format(
      R"({{"@timestamp":"x","source":{{"ip":"{ip}"}},"http":{{"request":{{"method":"{method}"}}}},)"
      R"("url":{{"original":"{path}?q=1","domain":"{host}","path":"{path}"}},)"
      R"("user_agent":{{"original":"{ua}"}},"rule":{{"id":["942100","949110"]}},)"
      R"("threat":{{"framework":"OWASP OAT","technique":{{"id":["OAT-014"]}}}},)"
      R"("webtrap":{{"format":"webtrap","sensor":{{"id":"{sensor}","group":"{group}"}},)"
      R"("oat":[{{"id":"OAT-014","attack":["T1595.002","T9999"]}}]{baits}}}{original}}})",
      fmt::arg("ip", hit.ip), fmt::arg("method", hit.method), fmt::arg("path", hit.path),
      fmt::arg("host", hit.host), fmt::arg("ua", hit.user_agent), fmt::arg("sensor", hit.sensor),
      fmt::arg("group", hit.group), fmt::arg("baits", bait_hits), fmt::arg("original", original));
}

// 10,000 hits from 300 sources over two UTC days, from two sensor groups of
// two sensors each. A small generator keeps it reproducible.
std::vector<Hit> makeHits(std::vector<StoredEvent>& events) {
  std::vector<Hit> hits;
  std::uint64_t state = 12345;
  auto next = [&state](std::uint64_t n) {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (state >> 33) % n;
  };
  const char* paths[] = {"/",
                         "/wp-login.php",
                         "/.env",
                         "/admin",
                         "/phpmyadmin/index.php",
                         "/api/v1/users",
                         "/cgi-bin/test.cgi",
                         "/login",
                         "/xmlrpc.php",
                         "/.git/config"};
  const char* agents[] = {"curl/8.0", "sqlmap/1.7", "Mozilla/5.0 zgrab/0.x", "Nuclei",
                          "python-requests/2.31"};
  for (int i = 0; i < 10000; ++i) {
    Hit hit;
    std::uint64_t source = next(300);
    hit.ip = source % 3 == 0 ? fmt::format("2001:db8::1:{:x}", source)
                             : fmt::format("198.51.{}.{}", source / 200, source % 200 + 1);
    // A source stays with one group most of the time, as scanners do.
    bool other = next(10) == 0;
    hit.group = ((source % 2 == 0) != other) ? "edge" : "core";
    hit.sensor = hit.group + "-" + std::to_string(next(2) + 1);
    hit.method = next(4) == 0 ? "POST" : "GET";
    hit.host = next(5) == 0 ? "203.0.113.7" : "shop.example";
    hit.path = paths[next(10)];
    hit.user_agent = agents[(source + next(2)) % 5];
    hit.timestamp_ms = kDayOneMs + static_cast<std::int64_t>(i) * (2 * kDayMs / 10000);
    hits.push_back(hit);

    StoredEvent event;
    event.seq = i + 1;
    event.event_id = fmt::format("01938f5e-0000-7000-8000-{:012}", i);
    event.timestamp_ms = hit.timestamp_ms;
    event.sensor_id = hit.sensor;
    event.document = ecsDocument(hit, event.event_id);
    events.push_back(std::move(event));
  }
  return hits;
}

std::string readFile(const fs::path& path) {
  std::ifstream file(path, std::ios::binary);
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

// Every file of the folder, with the timestamps (wall-clock time of the
// write) blanked, so runs at different times compare equal.
std::map<std::string, std::string> folderContent(const fs::path& folder, bool blank_timestamps) {
  static const std::regex kTimestamp(R"re("timestamp":"[0-9]+")re");
  std::map<std::string, std::string> content;
  for (const auto& entry : fs::directory_iterator(folder)) {
    std::string text = readFile(entry.path());
    if (blank_timestamps) {
      text = std::regex_replace(text, kTimestamp, "\"timestamp\":\"T\"");
    }
    content[entry.path().filename().string()] = text;
  }
  return content;
}

class MispFeedTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() /
            fmt::format("misp-feed-test-{}-{}", ::getpid(),
                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    fs::create_directories(root_);
    hits_ = makeHits(events_);
  }
  void TearDown() override { fs::remove_all(root_); }

  MispFeedOptions options(const std::string& name) {
    MispFeedOptions o;
    o.path = root_ / name;
    o.state_path = root_ / (name + ".state.sqlite");
    finishMispModelOptions(o.model);
    return o;
  }

  // Sends events [first, last) in batches of `batch`.
  static void sendRange(MispFeedOutput& output, const std::vector<StoredEvent>& events,
                        std::size_t first, std::size_t last, std::size_t batch = 1000) {
    for (std::size_t at = first; at < last; at += batch) {
      std::size_t end = std::min(last, at + batch);
      auto results = output.send(std::span(events).subspan(at, end - at));
      ASSERT_EQ(results.size(), end - at);
      for (const auto& result : results) {
        ASSERT_EQ(result.delivery, Delivery::kDelivered) << result.reason;
      }
    }
  }

  fs::path root_;
  std::vector<StoredEvent> events_;
  std::vector<Hit> hits_;
};

TEST(MispUuid, VersionFiveKnownAnswers) {
  // uuid5(NAMESPACE_URL, "urn:webtrap:misp:v1"), as Python's uuid module gives it.
  EXPECT_EQ(uuidV5("6ba7b811-9dad-11d1-80b4-00c04fd430c8", "urn:webtrap:misp:v1"),
            std::string(kMispNamespace));
  // uuid5(NAMESPACE_DNS, "python.org") from Python's documentation.
  EXPECT_EQ(uuidV5("6ba7b810-9dad-11d1-80b4-00c04fd430c8", "python.org"),
            "886313e1-3b8a-5372-9b90-0c9aee199e5d");
  EXPECT_THROW(uuidV5("not-a-uuid", "x"), std::invalid_argument);
  EXPECT_EQ(md5Hex("admin"), "21232f297a57a5a743894a0e4a801fc3");
}

TEST(MispEventKey, GroupOrSensorPerUtcDay) {
  MispModelOptions options;
  MispRecord record;
  record.sensor_id = "s1";
  record.sensor_group = "edge";
  record.timestamp_ms = kDayOneMs + kDayMs - 1;  // 23:59:59.999 on day one
  MispEventKey key = mispEventKey(options, record);
  EXPECT_EQ(key.date, "2026-12-04");
  EXPECT_EQ(key.uuid, uuidV5(kMispNamespace, "group|edge|2026-12-04"));
  record.timestamp_ms += 1;
  EXPECT_EQ(mispEventKey(options, record).date, "2026-12-05");
  options.event_per = MispEventPer::kSensor;
  EXPECT_EQ(mispEventKey(options, record).uuid, uuidV5(kMispNamespace, "sensor|s1|2026-12-05"));
}

TEST(MispEventKey, AttackGalaxyNames) {
  EXPECT_EQ(attackGalaxyTag("T1595.002"),
            "misp-galaxy:mitre-attack-pattern=\"Vulnerability Scanning - T1595.002\"");
  EXPECT_EQ(attackGalaxyTag("T9999"), "");
}

TEST(MispRecordTest, ReadsTheEcsFieldsAndCutsLongValues) {
  Hit hit{"edge",     "s1",     "198.51.100.1", "GET", "shop.example", "/" + std::string(3000, 'a'),
          "curl/8.0", kDayOneMs};
  StoredEvent event;
  event.event_id = "e1";
  event.timestamp_ms = kDayOneMs;
  event.document = ecsDocument(hit, event.event_id, true);
  MispRecord record = readMispRecord(event);
  EXPECT_EQ(record.source_ip, "198.51.100.1");
  EXPECT_EQ(record.sensor_id, "s1");  // from the document when the event has none
  EXPECT_EQ(record.sensor_group, "edge");
  EXPECT_EQ(record.path.size(), kMispMaxValueBytes);
  EXPECT_EQ(record.rule_ids, (std::vector<std::string>{"942100", "949110"}));
  EXPECT_EQ(record.oat_ids, (std::vector<std::string>{"OAT-014"}));
  EXPECT_EQ(record.attack_ids, (std::vector<std::string>{"T1595.002", "T9999"}));
  ASSERT_EQ(record.credentials.size(), 1u);
  EXPECT_EQ(record.credentials[0].username, "admin");
  EXPECT_EQ(record.credentials[0].password, "hunter2");
  EXPECT_FALSE(record.credentials[0].hashed);

  event.document = "[1,2]";
  EXPECT_THROW(readMispRecord(event), std::runtime_error);
}

TEST(MispRecordTest, LoginFormGivesHashedCredential) {
  StoredEvent event;
  event.event_id = "f1";
  event.timestamp_ms = kDayOneMs;
  event.document = R"({"source":{"ip":"198.51.100.1"},"http":{"request":{"method":"POST"}},)"
                   R"("url":{"path":"/login"},"webtrap":{"format":"webtrap","sensor":{"id":"s1"}},)"
                   R"("event":{"original":"{\"webtrap\":{\"form\":{\"kind\":\"login\",)"
                   R"(\"username\":\"root\",\"password_sha256\":\"ab12\"}}}"}})";
  MispRecord record = readMispRecord(event);
  ASSERT_EQ(record.credentials.size(), 1u);
  EXPECT_EQ(record.credentials[0].username, "root");
  EXPECT_EQ(record.credentials[0].password, "ab12");
  EXPECT_TRUE(record.credentials[0].hashed);

  // A search form is no credential.
  const std::string kind = R"(\"kind\":\"login\")";
  ASSERT_NE(event.document.find(kind), std::string::npos);
  event.document.replace(event.document.find(kind), kind.size(), R"(\"kind\":\"search\")");
  EXPECT_TRUE(readMispRecord(event).credentials.empty());

  // The form in the ECS document itself is read, and the original's form is
  // not read a second time.
  event.document = R"({"source":{"ip":"198.51.100.1"},"http":{"request":{"method":"POST"}},)"
                   R"("url":{"path":"/login"},"webtrap":{"format":"webtrap","sensor":{"id":"s1"},)"
                   R"("form":{"kind":"login","username":"admin","password_sha256":"cd34"}},)"
                   R"("event":{"original":"{\"webtrap\":{\"form\":{\"kind\":\"login\",)"
                   R"(\"username\":\"admin\",\"password_sha256\":\"cd34\"}}}"}})";
  record = readMispRecord(event);
  ASSERT_EQ(record.credentials.size(), 1u);
  EXPECT_EQ(record.credentials[0].username, "admin");
  EXPECT_EQ(record.credentials[0].password, "cd34");
  EXPECT_TRUE(record.credentials[0].hashed);
}

TEST(MispFeedOptionsTest, ParsesAndRejects) {
  auto parse = [](const std::string& yaml) { return parseMispFeedOptions(YAML::Load(yaml)); };
  MispFeedOptions o = parse(
      "{path: var/feed/, event_per: sensor, tlp: 'tlp:clear', distribution: 1, to_ids: true, "
      "credentials: sha256, org_name: CERT-X, flush_interval: 1s}");
  EXPECT_EQ(o.path, "var/feed");
  EXPECT_EQ(o.state_path, "var/feed.state.sqlite");
  EXPECT_EQ(o.model.event_per, MispEventPer::kSensor);
  EXPECT_EQ(o.model.tlp, "tlp:clear");
  EXPECT_EQ(o.model.distribution, 1);
  EXPECT_TRUE(o.model.to_ids);
  EXPECT_EQ(o.model.credentials, MispCredentials::kSha256);
  EXPECT_EQ(o.model.org_uuid, uuidV5(kMispNamespace, "org|CERT-X"));
  EXPECT_THROW(parse("{event_per: group}"), ConfigError);  // no path
  EXPECT_THROW(parse("{path: x, tlp: amber}"), ConfigError);
  EXPECT_THROW(parse("{path: x, distribution: 4}"), ConfigError);
  EXPECT_THROW(parse("{path: x, threat_level_id: 0}"), ConfigError);
  EXPECT_THROW(parse("{path: x, org_uuid: nope}"), ConfigError);
  EXPECT_THROW(parse("{path: x, colour: red}"), ConfigError);
}

// Counts what the feed folder holds, read the way a MISP pulling it would:
// manifest first, then each event file it names, then hashes.csv.
struct FeedCounts {
  std::map<std::string, std::set<std::string>> sources;    // event uuid -> ip-src values
  std::map<std::string, std::size_t> objects;              // event uuid -> http-request objects
  std::map<std::string, std::size_t> sightings;            // event uuid -> sightings
  std::map<std::string, std::multiset<std::string>> md5s;  // event uuid -> md5 of every value
  std::size_t manifest_events = 0;
};

FeedCounts readFeed(const fs::path& folder) {
  FeedCounts counts;
  simdjson::dom::parser manifest_parser;
  simdjson::dom::object manifest =
      manifest_parser.load((folder / "manifest.json").string()).get_object().value();
  for (auto field : manifest) {
    ++counts.manifest_events;
    std::string uuid(field.key);
    simdjson::dom::parser parser;
    simdjson::dom::element root = parser.load((folder / (uuid + ".json")).string()).value();
    simdjson::dom::element event = root["Event"].value();
    EXPECT_EQ(std::string_view(event["uuid"].get_string().value()), uuid);
    EXPECT_EQ(std::string_view(event["timestamp"].get_string().value()),
              std::string_view(field.value["timestamp"].get_string().value()));
    auto& md5s = counts.md5s[uuid];
    simdjson::dom::array attributes = event["Attribute"].get_array().value();
    for (simdjson::dom::element attribute : attributes) {
      std::string value(attribute["value"].get_string().value());
      md5s.insert(md5Hex(value));
      if (std::string_view(attribute["type"].get_string().value()) == "ip-src") {
        EXPECT_TRUE(counts.sources[uuid].insert(value).second) << "duplicate ip-src " << value;
      }
      simdjson::dom::array sightings;
      if (attribute["Sighting"].get_array().get(sightings) == simdjson::SUCCESS) {
        counts.sightings[uuid] += sightings.size();
      }
    }
    simdjson::dom::array objects = event["Object"].get_array().value();
    for (simdjson::dom::element object : objects) {
      if (std::string_view(object["name"].get_string().value()) == "http-request") {
        ++counts.objects[uuid];
      }
      simdjson::dom::array members = object["Attribute"].get_array().value();
      for (simdjson::dom::element attribute : members) {
        md5s.insert(md5Hex(std::string(attribute["value"].get_string().value())));
      }
    }
  }
  std::map<std::string, std::multiset<std::string>> hashes;
  std::ifstream csv(folder / "hashes.csv");
  std::string line;
  while (std::getline(csv, line)) {
    auto comma = line.find(',');
    hashes[line.substr(comma + 1)].insert(line.substr(0, comma));
  }
  EXPECT_EQ(hashes, counts.md5s) << "hashes.csv disagrees with the event files";
  return counts;
}

TEST_F(MispFeedTest, TenThousandHitsMakeFourBoundedEvents) {
  MispFeedOptions o = options("feed");
  o.model.max_sightings_per_attribute = 100000;
  MispFeedOutput output(o);
  sendRange(output, events_, 0, events_.size());

  // What the model must hold, computed from the hits directly.
  MispModelOptions model_options;
  std::map<std::string, std::set<std::string>> sources;
  std::map<std::string, std::set<std::string>> signatures;
  std::map<std::string, std::size_t> hit_count;
  for (const auto& hit : hits_) {
    MispRecord record;
    record.sensor_group = hit.group;
    record.timestamp_ms = hit.timestamp_ms;
    std::string uuid = mispEventKey(model_options, record).uuid;
    sources[uuid].insert(hit.ip);
    signatures[uuid].insert(hit.method + "|" + hit.host + "|" + hit.path + "|" + hit.user_agent +
                            "|" + hit.ip);
    ++hit_count[uuid];
  }
  ASSERT_EQ(sources.size(), 4u);

  FeedCounts counts = readFeed(o.path);
  EXPECT_EQ(counts.manifest_events, 4u);
  std::size_t files = 0;
  for (const auto& entry : fs::directory_iterator(o.path)) {
    files += entry.path().extension() == ".json" ? 1 : 0;
  }
  EXPECT_EQ(files, 5u);  // four events and the manifest, no temporary file left
  std::set<std::string> all_sources;
  for (const auto& [uuid, ips] : sources) {
    EXPECT_EQ(counts.sources[uuid], ips) << uuid;
    EXPECT_EQ(counts.objects[uuid], signatures[uuid].size()) << uuid;
    // Every hit after the first of its source in this event is a sighting.
    EXPECT_EQ(counts.sightings[uuid], hit_count[uuid] - ips.size()) << uuid;
    all_sources.insert(ips.begin(), ips.end());
  }
  EXPECT_EQ(all_sources.size(), 300u);

  // Delivered again (at-least-once): nothing changes, not even a timestamp.
  auto before = folderContent(o.path, false);
  sendRange(output, events_, 0, events_.size(), 2500);
  EXPECT_EQ(folderContent(o.path, false), before);
  EXPECT_TRUE(output.model().dirtyEvents().empty());
}

TEST_F(MispFeedTest, RestartsAndRepeatsLoseAndDuplicateNothing) {
  MispFeedOptions whole = options("whole");
  {
    MispFeedOutput output(whole);
    sendRange(output, events_, 0, events_.size());
  }
  auto expected = folderContent(whole.path, true);

  // Stopped after 4,500 events, then started again on the same state; the
  // runner resends the events after its cursor, here from 4,000.
  MispFeedOptions restarted = options("restarted");
  {
    MispFeedOutput output(restarted);
    sendRange(output, events_, 0, 4500, 1500);
  }
  {
    MispFeedOutput output(restarted);
    sendRange(output, events_, 4000, events_.size(), 1500);
  }
  EXPECT_EQ(folderContent(restarted.path, true), expected);

  // Killed after the database commit but before the files were written:
  // the next start writes them.
  MispFeedOptions killed = options("killed");
  {
    MispFeedOutput output(killed);
    sendRange(output, events_, 0, 6000);
    std::vector<MispRecord> records;
    for (std::size_t i = 6000; i < events_.size(); ++i) {
      records.push_back(readMispRecord(events_[i]));
    }
    output.model().apply(records, 1);
    EXPECT_EQ(output.model().dirtyEvents().size(), 2u);  // the second day's events
  }
  {
    MispFeedOutput output(killed);
    EXPECT_TRUE(output.model().dirtyEvents().empty());
  }
  EXPECT_EQ(folderContent(killed.path, true), expected);
}

TEST_F(MispFeedTest, TimestampsIncreaseOnEveryChange) {
  MispFeedOptions o = options("feed");
  MispFeedOutput output(o);
  sendRange(output, events_, 0, 100);
  auto stamp = [&] { return output.model().events().at(0).timestamp; };
  std::int64_t first = stamp();
  sendRange(output, events_, 100, 200);
  std::int64_t second = stamp();
  EXPECT_GT(second, first);
  sendRange(output, events_, 0, 200);  // nothing new
  EXPECT_EQ(stamp(), second);
}

TEST_F(MispFeedTest, CredentialsAndAddressHosts) {
  MispFeedOptions o = options("feed");
  o.model.credentials = MispCredentials::kSha256;
  MispFeedOutput output(o);
  Hit hit{"edge", "s1", "", "POST", "[2001:DB8:0::1]", "/login", "curl/8.0", kDayOneMs};
  std::vector<StoredEvent> batch(2);
  for (int i = 0; i < 2; ++i) {
    // One address in two spellings.
    hit.ip = i == 0 ? "2001:db8::5" : "2001:DB8:0::5";
    batch[i].event_id = fmt::format("c{}", i);
    batch[i].timestamp_ms = kDayOneMs + i;
    batch[i].sensor_id = "s1";
    batch[i].document = ecsDocument(hit, batch[i].event_id, true);
  }
  output.send(batch);
  MispRecord record;
  record.sensor_group = "edge";
  record.timestamp_ms = kDayOneMs;
  std::string uuid = mispEventKey(o.model, record).uuid;
  std::string json = readFile(o.path / (uuid + ".json"));
  EXPECT_EQ(json.find("hunter2"), std::string::npos) << "password in clear";
  // The SHA-256 of "hunter2".
  EXPECT_NE(json.find("f52fbd32b2b3b86ff88ef6c490628285f482af15ddcb29541f94bcf526a3f6c7"),
            std::string::npos);
  EXPECT_NE(json.find("\"value\":\"hashed\""), std::string::npos);
  EXPECT_NE(json.find("\"object_relation\":\"ip-dst\",\"type\":\"ip-dst\""), std::string::npos);
  EXPECT_NE(json.find("\"value\":\"2001:db8::1\""), std::string::npos);
  EXPECT_NE(json.find("\"type\":\"ip-src\",\"category\":\"Network activity\","
                      "\"value\":\"2001:db8::5\""),
            std::string::npos);
  EXPECT_EQ(json.find("DB8"), std::string::npos);
  EXPECT_EQ(json.find("hostname"), std::string::npos);
  // One credential object, and the second hit is a sighting.
  EXPECT_EQ(json.find("\"name\":\"credential\""), json.rfind("\"name\":\"credential\""));
  EXPECT_NE(json.find("\"Sighting\""), std::string::npos);

  // A document that is not JSON is rejected, the rest delivered.
  batch[0].document = "not json";
  batch[0].event_id = "bad";
  auto results = output.send(batch);
  EXPECT_EQ(results[0].delivery, Delivery::kRejected);
  EXPECT_EQ(results[1].delivery, Delivery::kDelivered);
}

TEST_F(MispFeedTest, HostHeadersMispRejects) {
  MispFeedOptions o = options("feed");
  MispFeedOutput output(o);
  std::vector<StoredEvent> batch(2);
  const char* hosts[] = {"Shop.Example", "localhost"};
  for (int i = 0; i < 2; ++i) {
    Hit hit{"edge", "s1", "198.51.100.1", "GET", hosts[i], "/", "curl/8.0", kDayOneMs};
    batch[i].event_id = fmt::format("h{}", i);
    batch[i].timestamp_ms = kDayOneMs + i;
    batch[i].sensor_id = "s1";
    batch[i].document = ecsDocument(hit, batch[i].event_id);
  }
  output.send(batch);
  MispRecord record;
  record.sensor_group = "edge";
  record.timestamp_ms = kDayOneMs;
  std::string json = readFile(o.path / (mispEventKey(o.model, record).uuid + ".json"));
  // A valid host name is kept, in lowercase as MISP stores it.
  EXPECT_NE(json.find("\"type\":\"hostname\",\"category\":\"Network activity\","
                      "\"value\":\"shop.example\""),
            std::string::npos);
  // A name without a dot is not a MISP hostname, so it goes in as a header.
  EXPECT_NE(json.find("\"object_relation\":\"header\",\"type\":\"text\","
                      "\"category\":\"Network activity\",\"value\":\"Host: localhost\""),
            std::string::npos);
  EXPECT_EQ(json.find("\"value\":\"localhost\""), std::string::npos);
}

}  // namespace
}  // namespace webtrap::collector
