#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <set>

#include <fmt/format.h>
#include <simdjson.h>

#include "collector/misp_event.h"
#include "collector/stix_bundle.h"
#include "collector/stix_output.h"
#include "common/error.h"

namespace webtrap::collector {
namespace {

namespace fs = std::filesystem;

// 2026-12-04 00:00:00 UTC.
constexpr std::int64_t kDayOneMs = 1796342400000;

constexpr std::string_view kAmber = "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82";
constexpr std::string_view kWhite = "marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9";
constexpr std::string_view kGreen = "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da";
constexpr std::string_view kRed = "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed";

// ---------------------------------------------------------------- helpers

// A STIX object parsed back, with its properties as JSON text by name.
struct Parsed {
  std::string type;
  std::string id;
  std::map<std::string, std::string> json;  // property name -> minified JSON value
  std::string text(const std::string& name) const {
    auto found = json.find(name);
    if (found == json.end() || found->second.size() < 2) {
      return {};
    }
    return found->second.substr(1, found->second.size() - 2);  // a string without quotes
  }
  bool has(const std::string& name) const { return json.contains(name); }
};

Parsed parseObject(simdjson::dom::object object) {
  Parsed parsed;
  for (auto field : object) {
    parsed.json[std::string(field.key)] = simdjson::minify(field.value);
  }
  parsed.type = parsed.text("type");
  parsed.id = parsed.text("id");
  return parsed;
}

// Parses the objects that convertMispEvent returned, the way a bundle holds
// them (without the version times).
std::vector<Parsed> parseConverted(const StixEvent& event) {
  std::vector<Parsed> out;
  for (const auto& object : event.objects) {
    std::string text = fmt::format(R"({{"type":"{}","id":"{}"{}{}}})", object.type, object.id,
                                   object.properties.empty() ? "" : ",", object.properties);
    simdjson::dom::parser parser;
    simdjson::dom::element root;
    EXPECT_EQ(parser.parse(text).get(root), simdjson::SUCCESS) << text;
    out.push_back(parseObject(root.get_object().value()));
  }
  return out;
}

std::vector<const Parsed*> ofType(const std::vector<Parsed>& objects, const std::string& type) {
  std::vector<const Parsed*> out;
  for (const auto& object : objects) {
    if (object.type == type) {
      out.push_back(&object);
    }
  }
  return out;
}

const Parsed* byId(const std::vector<Parsed>& objects, const std::string& id) {
  for (const auto& object : objects) {
    if (object.id == id) {
      return &object;
    }
  }
  return nullptr;
}

// A MISP event as MispModel::renderEvent writes it, with every item the
// converter handles.
constexpr const char* kMispEvent = R"({"Event":{
  "uuid":"5e6f5d0a-1111-5222-8333-444455556666","info":"webtrap honeypot activity: group edge, 2026-12-04",
  "date":"2026-12-04","timestamp":"1796342500",
  "Tag":[{"name":"tlp:amber"},{"name":"cssa:origin=\"honeypot\""}],
  "Attribute":[
    {"uuid":"aaaaaaaa-0000-5000-8000-000000000001","type":"ip-src","value":"198.51.100.7","to_ids":false,
     "comment":"source","first_seen":"2026-12-04T01:00:00.250000+00:00","last_seen":"2026-12-04T05:00:00.000000+00:00",
     "Tag":[{"name":"owasp-oat:OAT-014"},{"name":"misp-galaxy:mitre-attack-pattern=\"Vulnerability Scanning - T1595.002\""}]},
    {"uuid":"aaaaaaaa-0000-5000-8000-000000000002","type":"ip-src","value":"2001:db8::5","to_ids":true,
     "comment":"v6 source","first_seen":"2026-12-04T02:00:00.000000+00:00","last_seen":"2026-12-04T03:00:00.000000+00:00"}
  ],
  "Object":[
    {"uuid":"bbbbbbbb-0000-5000-8000-000000000001","name":"http-request","first_seen":"2026-12-04T01:00:00.250000+00:00",
     "last_seen":"2026-12-04T01:00:00.250000+00:00","Attribute":[
      {"object_relation":"host","type":"hostname","value":"shop.example"},
      {"object_relation":"ip-src","type":"ip-src","value":"198.51.100.7","to_ids":false},
      {"object_relation":"method","type":"http-method","value":"POST"},
      {"object_relation":"text","type":"text","value":"ModSecurity rule ids: 942100, 949110"},
      {"object_relation":"uri","type":"uri","value":"/wp-login.php","Tag":[{"name":"owasp-oat:OAT-007"}]},
      {"object_relation":"user-agent","type":"user-agent","value":"curl/8.0"}]},
    {"uuid":"bbbbbbbb-0000-5000-8000-000000000002","name":"http-request","first_seen":"2026-12-04T02:00:00.000000+00:00",
     "last_seen":"2026-12-04T02:30:00.000000+00:00","Attribute":[
      {"object_relation":"ip-dst","type":"ip-dst","value":"203.0.113.9"},
      {"object_relation":"ip-src","type":"ip-src","value":"2001:db8::5"},
      {"object_relation":"method","type":"http-method","value":"GET"},
      {"object_relation":"uri","type":"uri","value":"/.env"}]},
    {"uuid":"bbbbbbbb-0000-5000-8000-000000000003","name":"http-request","first_seen":"2026-12-04T02:00:00.000000+00:00",
     "last_seen":"2026-12-04T02:00:00.000000+00:00","Attribute":[
      {"object_relation":"header","type":"text","value":"Host: intranet"},
      {"object_relation":"ip-src","type":"ip-src","value":"198.51.100.7"},
      {"object_relation":"method","type":"http-method","value":"GET"},
      {"object_relation":"uri","type":"uri","value":"/"}]},
    {"uuid":"cccccccc-0000-5000-8000-000000000001","name":"credential","first_seen":"2026-12-04T03:00:00.000000+00:00",
     "last_seen":"2026-12-04T03:00:00.000000+00:00","Attribute":[
      {"object_relation":"format","type":"text","value":"clear-text"},
      {"object_relation":"password","type":"text","value":"hunter2"},
      {"object_relation":"username","type":"text","value":"admin"}]},
    {"uuid":"cccccccc-0000-5000-8000-000000000002","name":"credential","first_seen":"2026-12-04T03:00:00.000000+00:00",
     "last_seen":"2026-12-04T03:00:00.000000+00:00","Attribute":[
      {"object_relation":"format","type":"text","value":"hashed"},
      {"object_relation":"password","type":"text","value":"f52fbd32b2b3b86ff88ef6c490628285f482af15ddcb29541f94bcf526a3f6c7"},
      {"object_relation":"username","type":"text","value":"root"}]},
    {"uuid":"cccccccc-0000-5000-8000-000000000003","name":"credential","first_seen":"2026-12-04T03:00:00.000000+00:00",
     "last_seen":"2026-12-04T03:00:00.000000+00:00","Attribute":[
      {"object_relation":"format","type":"text","value":"hashed"},
      {"object_relation":"password","type":"text","value":"00ff"}]}
  ]}})";

StixConvertOptions convertOptions(const std::string& tlp = "tlp:amber") {
  StixConvertOptions options;
  options.tlp = tlp;
  options.org_name = "CERT-Example";
  options.org_uuid = "5ab999bf-32a9-47fe-9e40-9d0cb7b38edf";
  return options;
}

std::int64_t fourSightings(const std::string&) { return 4; }

// ---------------------------------------------------------------- ids

TEST(StixIds, MatchSpecExamples) {
  // The deterministic ids of the SCO examples in STIX 2.1 sections 2.9,
  // 6.4 and 6.12.2.
  EXPECT_EQ(stixScoId("ipv4-addr", R"({"value":"198.51.100.3"})"),
            "ipv4-addr--28bb3599-77cd-5a82-a950-b5bc3caf07c4");
  EXPECT_EQ(stixScoId("ipv4-addr", R"({"value":"198.51.100.53"})"),
            "ipv4-addr--165070a8-c561-58a8-8659-fce2f255c2c0");
  EXPECT_EQ(stixScoId("domain-name", R"({"value":"example.com"})"),
            "domain-name--bedb4899-d24b-5401-bc86-8f6b4cc18ec7");
}

TEST(StixIds, JcsStringEscapes) {
  std::string out;
  appendJcsString(out, "a\"b\\c\nd\te\x01\x7f\xc3\xa9/");
  EXPECT_EQ(out, "\"a\\\"b\\\\c\\nd\\te\\u0001\x7f\xc3\xa9/\"");
}

TEST(StixIds, TimestampHasMilliseconds) {
  EXPECT_EQ(stixTimestamp(kDayOneMs + 123), "2026-12-04T00:00:00.123Z");
  EXPECT_EQ(stixTimestamp(kDayOneMs), "2026-12-04T00:00:00.000Z");
}

// ---------------------------------------------------------------- converter

TEST(StixConvert, AttributesByToIds) {
  StixEvent event = convertMispEvent(kMispEvent, convertOptions(), fourSightings);
  std::vector<Parsed> objects = parseConverted(event);

  // to_ids false: observed-data of the address, 1 + 4 sightings.
  const std::string v4 = stixScoId("ipv4-addr", R"({"value":"198.51.100.7"})");
  ASSERT_NE(byId(objects, v4), nullptr);
  const Parsed* observed = byId(
      objects, "observed-data--" + uuidV5("aaaaaaaa-0000-5000-8000-000000000001",
                                          "stix|observed-data"));
  ASSERT_NE(observed, nullptr);
  EXPECT_EQ(observed->json.at("object_refs"), "[\"" + v4 + "\"]");
  EXPECT_EQ(observed->json.at("number_observed"), "5");
  EXPECT_EQ(observed->text("first_observed"), "2026-12-04T01:00:00.250Z");
  EXPECT_EQ(observed->text("last_observed"), "2026-12-04T05:00:00.000Z");
  EXPECT_NE(observed->json.at("labels").find("owasp-oat:OAT-014"), std::string::npos);
  const std::string& references = observed->json.at("external_references");
  EXPECT_NE(references.find(R"("source_name":"owasp-oat")"), std::string::npos);
  EXPECT_NE(references.find(R"("external_id":"OAT-014")"), std::string::npos);
  EXPECT_NE(references.find(R"("url":"https://attack.mitre.org/techniques/T1595/002/")"),
            std::string::npos);
  EXPECT_NE(references.find(R"("external_id":"T1595.002")"), std::string::npos);

  // to_ids true: an indicator and its sighting, and no address SCO.
  const std::string indicator_id =
      "indicator--" + uuidV5("aaaaaaaa-0000-5000-8000-000000000002", "stix|indicator");
  const Parsed* indicator = byId(objects, indicator_id);
  ASSERT_NE(indicator, nullptr);
  EXPECT_EQ(indicator->text("pattern"), "[ipv6-addr:value = '2001:db8::5']");
  EXPECT_EQ(indicator->text("pattern_type"), "stix");
  EXPECT_EQ(indicator->text("valid_from"), "2026-12-04T02:00:00.000Z");
  EXPECT_EQ(indicator->text("created_by_ref"), "identity--5ab999bf-32a9-47fe-9e40-9d0cb7b38edf");
  auto sightings = ofType(objects, "sighting");
  ASSERT_EQ(sightings.size(), 1u);
  EXPECT_EQ(sightings[0]->text("sighting_of_ref"), indicator_id);
  EXPECT_EQ(sightings[0]->json.at("count"), "5");
  EXPECT_EQ(ofType(objects, "indicator").size(), 1u);
  // Two addresses as attributes, three requests, two usable credentials.
  EXPECT_EQ(ofType(objects, "observed-data").size(), 1u + 3u + 2u);

  StixConvertOptions quiet = convertOptions();
  quiet.sightings = false;
  EXPECT_TRUE(ofType(parseConverted(convertMispEvent(kMispEvent, quiet, fourSightings)),
                     "sighting")
                  .empty());
}

TEST(StixConvert, HttpRequestsAsNetworkTraffic) {
  std::vector<Parsed> objects =
      parseConverted(convertMispEvent(kMispEvent, convertOptions(), fourSightings));
  auto traffic = ofType(objects, "network-traffic");
  ASSERT_EQ(traffic.size(), 3u);
  const std::string v4 = stixScoId("ipv4-addr", R"({"value":"198.51.100.7"})");
  const std::string domain = stixScoId("domain-name", R"({"value":"shop.example"})");
  int with_domain = 0;
  for (const Parsed* object : traffic) {
    // Every property of this SCO contributes to its id, so the id is the
    // UUIDv5 of the object's own canonical text minus type and id.
    std::string canonical = "{";
    bool first = true;
    for (const auto& [name, value] : object->json) {
      if (name == "type" || name == "id") {
        continue;
      }
      canonical += (first ? "\"" : ",\"") + name + "\":" + value;
      first = false;
    }
    canonical += "}";
    EXPECT_EQ(object->id, stixScoId("network-traffic", canonical)) << canonical;
    ASSERT_TRUE(object->has("src_ref"));
    ASSERT_NE(byId(objects, object->text("src_ref")), nullptr);
    if (object->text("dst_ref") == domain) {
      ++with_domain;
      EXPECT_EQ(object->text("src_ref"), v4);
      EXPECT_EQ(object->json.at("protocols"), R"(["ipv4","tcp","http"])");
      EXPECT_EQ(object->json.at("extensions"),
                R"({"http-request-ext":{"request_header":{"Host":["shop.example"],)"
                R"("User-Agent":["curl/8.0"]},"request_method":"post",)"
                R"("request_value":"/wp-login.php"}})");
    }
  }
  EXPECT_EQ(with_domain, 1);
  ASSERT_NE(byId(objects, domain), nullptr);
  // The Host that is an address is the destination address SCO.
  ASSERT_NE(byId(objects, stixScoId("ipv4-addr", R"({"value":"203.0.113.9"})")), nullptr);
  // A Host MISP rejects as a host name is only a header.
  bool intranet = false;
  for (const Parsed* object : traffic) {
    if (object->json.at("extensions").find(R"("Host":["intranet"])") != std::string::npos) {
      intranet = true;
      EXPECT_FALSE(object->has("dst_ref"));
    }
  }
  EXPECT_TRUE(intranet);
  // The rule ids and the uri's OAT tag reach the observed-data.
  const Parsed* observed = byId(
      objects, "observed-data--" + uuidV5("bbbbbbbb-0000-5000-8000-000000000001",
                                          "stix|observed-data"));
  ASSERT_NE(observed, nullptr);
  EXPECT_NE(observed->json.at("external_references").find(R"("external_id":"942100")"),
            std::string::npos);
  EXPECT_NE(observed->json.at("labels").find("owasp-oat:OAT-007"), std::string::npos);
  EXPECT_EQ(observed->text("first_observed"), "2026-12-04T01:00:00.250Z");
}

TEST(StixConvert, CredentialsAsUserAccounts) {
  std::vector<Parsed> objects =
      parseConverted(convertMispEvent(kMispEvent, convertOptions(), fourSightings));
  auto accounts = ofType(objects, "user-account");
  ASSERT_EQ(accounts.size(), 2u);
  int clear = 0;
  for (const Parsed* account : accounts) {
    if (account->text("account_login") == "admin") {
      ++clear;
      EXPECT_EQ(account->text("credential"), "hunter2");
      // Not the spec's namespace, because credential does not contribute.
      EXPECT_NE(account->id, stixScoId("user-account", R"({"account_login":"admin"})"));
    } else {
      EXPECT_EQ(account->text("account_login"), "root");
      EXPECT_FALSE(account->has("credential")) << "a hashed password is no clear credential";
      EXPECT_EQ(account->id, stixScoId("user-account", R"({"account_login":"root"})"));
    }
  }
  EXPECT_EQ(clear, 1);
}

TEST(StixConvert, ReportListsEverything) {
  StixEvent event = convertMispEvent(kMispEvent, convertOptions(), fourSightings);
  std::vector<Parsed> objects = parseConverted(event);
  auto reports = ofType(objects, "report");
  ASSERT_EQ(reports.size(), 1u);
  const Parsed& report = *reports[0];
  EXPECT_EQ(report.id, "report--" + uuidV5("5e6f5d0a-1111-5222-8333-444455556666", "stix|report"));
  EXPECT_EQ(report.text("name"), "webtrap honeypot activity: group edge, 2026-12-04");
  EXPECT_EQ(report.json.at("labels"), R"(["tlp:amber","cssa:origin=\"honeypot\""])");
  std::set<std::string> ids;
  for (const auto& object : objects) {
    EXPECT_TRUE(ids.insert(object.id).second) << "duplicate id " << object.id;
    if (object.type == "report" || object.type == "marking-definition") {
      continue;
    }
    EXPECT_NE(report.json.at("object_refs").find("\"" + object.id + "\""), std::string::npos)
        << object.id << " missing from object_refs";
  }
  EXPECT_EQ(ofType(objects, "identity").size(), 1u);
  EXPECT_EQ(report.json.at("object_marking_refs"), fmt::format(R"(["{}"])", kAmber));
}

TEST(StixConvert, TlpMarkings) {
  auto markings = [](const std::string& tlp) {
    std::vector<std::string> ids;
    for (const auto& object :
         parseConverted(convertMispEvent(kMispEvent, convertOptions(tlp), fourSightings))) {
      if (object.type == "marking-definition") {
        ids.push_back(object.id);
      }
    }
    return ids;
  };
  EXPECT_EQ(markings("tlp:clear"), std::vector<std::string>{std::string(kWhite)});
  EXPECT_EQ(markings("tlp:white"), std::vector<std::string>{std::string(kWhite)});
  EXPECT_EQ(markings("tlp:green"), std::vector<std::string>{std::string(kGreen)});
  EXPECT_EQ(markings("tlp:amber"), std::vector<std::string>{std::string(kAmber)});
  EXPECT_EQ(markings("tlp:red"), std::vector<std::string>{std::string(kRed)});
  std::vector<std::string> strict = markings("tlp:amber+strict");
  ASSERT_EQ(strict.size(), 2u);
  EXPECT_EQ(strict[0], kAmber);
  EXPECT_TRUE(strict[1].starts_with("marking-definition--"));

  std::vector<Parsed> objects =
      parseConverted(convertMispEvent(kMispEvent, convertOptions("tlp:green"), fourSightings));
  const Parsed* green = byId(objects, std::string(kGreen));
  ASSERT_NE(green, nullptr);
  EXPECT_EQ(green->text("created"), "2017-01-20T00:00:00.000Z");
  EXPECT_EQ(green->text("name"), "TLP:GREEN");
  EXPECT_EQ(green->json.at("definition"), R"({"tlp":"green"})");
}

TEST(StixConvert, SameInputSameObjects) {
  StixEvent first = convertMispEvent(kMispEvent, convertOptions(), fourSightings);
  StixEvent second = convertMispEvent(kMispEvent, convertOptions(), fourSightings);
  ASSERT_EQ(first.objects.size(), second.objects.size());
  for (std::size_t i = 0; i < first.objects.size(); ++i) {
    EXPECT_EQ(first.objects[i].id, second.objects[i].id);
    EXPECT_EQ(first.objects[i].properties, second.objects[i].properties);
  }
  EXPECT_THROW(convertMispEvent("[]", convertOptions(), fourSightings), std::runtime_error);
}

// ---------------------------------------------------------------- the output

std::string ecsDocument(const std::string& ip, const std::string& path, const std::string& group) {
  return fmt::format(
      R"({{"@timestamp":"x","source":{{"ip":"{ip}"}},"http":{{"request":{{"method":"GET"}}}},)"
      R"("url":{{"original":"{path}","domain":"shop.example","path":"{path}"}},)"
      R"("user_agent":{{"original":"curl/8.0"}},"rule":{{"id":["942100"]}},)"
      R"("threat":{{"framework":"OWASP OAT","technique":{{"id":["OAT-014"]}}}},)"
      R"("webtrap":{{"format":"webtrap","sensor":{{"id":"{group}-1","group":"{group}"}},)"
      R"("oat":[{{"id":"OAT-014","attack":["T1595.002"]}}]}}}})",
      fmt::arg("ip", ip), fmt::arg("path", path), fmt::arg("group", group));
}

StoredEvent storedEvent(int n, const std::string& ip, const std::string& path,
                        std::int64_t timestamp_ms, const std::string& group = "edge") {
  StoredEvent event;
  event.seq = n;
  event.event_id = fmt::format("01938f5e-0000-7000-8000-{:012}", n);
  event.timestamp_ms = timestamp_ms;
  event.sensor_id = group + "-1";
  event.document = ecsDocument(ip, path, group);
  return event;
}

class StixOutputTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() /
            fmt::format("stix-output-test-{}-{}", ::getpid(),
                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    fs::create_directories(root_);
  }
  void TearDown() override { fs::remove_all(root_); }

  StixOutputOptions options(const std::string& name) {
    StixOutputOptions o;
    o.path = root_ / name;
    o.state_path = root_ / (name + ".state.sqlite");
    finishMispModelOptions(o.model);
    return o;
  }

  // Every object of every bundle in `folder`, by id.
  static std::map<std::string, Parsed> readBundles(const fs::path& folder) {
    std::map<std::string, Parsed> objects;
    for (const auto& entry : fs::directory_iterator(folder)) {
      std::string name = entry.path().filename().string();
      if (name == "index.json") {
        continue;
      }
      EXPECT_NE(name.front(), '.') << "temporary file left: " << name;
      simdjson::dom::parser parser;
      simdjson::dom::element root = parser.load(entry.path().string()).value();
      EXPECT_EQ(std::string_view(root["type"].get_string().value()), "bundle");
      EXPECT_EQ(std::string(root["id"].get_string().value()),
                "bundle--" + name.substr(0, name.size() - 5));
      simdjson::dom::array list = root["objects"].get_array().value();
      for (simdjson::dom::element object : list) {
        Parsed parsed = parseObject(object.get_object().value());
        objects[parsed.id] = parsed;
      }
    }
    return objects;
  }

  fs::path root_;
};

TEST_F(StixOutputTest, WritesBundlesAndIndex) {
  StixOutputOptions o = options("stix");
  StixOutput output(o);
  std::vector<StoredEvent> batch = {
      storedEvent(1, "198.51.100.7", "/a", kDayOneMs + 1000),
      storedEvent(2, "198.51.100.8", "/b", kDayOneMs + 2000),
      storedEvent(3, "198.51.100.7", "/a", kDayOneMs + 3000),
      storedEvent(4, "198.51.100.9", "/c", kDayOneMs + 86400000 + 1000, "core"),
  };
  auto results = output.send(batch);
  ASSERT_EQ(results.size(), 4u);
  for (const auto& result : results) {
    EXPECT_EQ(result.delivery, Delivery::kDelivered);
  }
  std::vector<MispEventSummary> events = output.model().events();
  ASSERT_EQ(events.size(), 2u);

  simdjson::dom::parser parser;
  simdjson::dom::element index = parser.load((o.path / "index.json").string()).value();
  simdjson::dom::array bundles = index["bundles"].get_array().value();
  ASSERT_EQ(bundles.size(), 2u);
  for (simdjson::dom::element bundle : bundles) {
    std::string uuid(bundle["event_uuid"].get_string().value());
    EXPECT_EQ(std::string(bundle["id"].get_string().value()), "bundle--" + uuid);
    EXPECT_TRUE(fs::exists(o.path / (uuid + ".json")));
    EXPECT_EQ(std::string_view(bundle["modified"].get_string().value()).size(), 24u);
  }

  std::map<std::string, Parsed> objects = readBundles(o.path);
  const std::string address = stixScoId("ipv4-addr", R"({"value":"198.51.100.7"})");
  int observed_for_address = 0;
  for (const auto& [id, object] : objects) {
    if (object.type == "observed-data" &&
        object.json.at("object_refs") == "[\"" + address + "\"]") {
      ++observed_for_address;
      EXPECT_EQ(object.json.at("number_observed"), "2") << "one hit and one sighting";
      EXPECT_EQ(object.text("created"), object.text("modified"));
    }
    if (object.type == "indicator") {
      ADD_FAILURE() << "an indicator without to_ids: " << id;
    }
  }
  EXPECT_EQ(observed_for_address, 1);
}

TEST_F(StixOutputTest, VersionsOnlyWhatChanged) {
  StixOutputOptions o = options("stix");
  StixOutput output(o);
  output.send(std::vector<StoredEvent>{storedEvent(1, "198.51.100.7", "/a", kDayOneMs + 1000),
                                       storedEvent(2, "198.51.100.8", "/b", kDayOneMs + 2000)});
  std::map<std::string, Parsed> before = readBundles(o.path);

  // A repeat of the same stored event changes nothing.
  output.send(std::vector<StoredEvent>{storedEvent(1, "198.51.100.7", "/a", kDayOneMs + 1000)});
  std::map<std::string, Parsed> same = readBundles(o.path);
  ASSERT_EQ(same.size(), before.size());
  for (const auto& [id, object] : before) {
    EXPECT_EQ(same.at(id).json, object.json) << id;
  }

  // A further hit of 198.51.100.7 makes a new version of its observed-data
  // only (and of nothing that lists it, because its id stays).
  output.send(std::vector<StoredEvent>{storedEvent(3, "198.51.100.7", "/a", kDayOneMs + 5000)});
  std::map<std::string, Parsed> after = readBundles(o.path);
  ASSERT_EQ(after.size(), before.size());
  const std::string address = stixScoId("ipv4-addr", R"({"value":"198.51.100.7"})");
  int changed = 0;
  for (const auto& [id, object] : before) {
    const Parsed& now = after.at(id);
    if (object.type == "observed-data" &&
        object.json.at("object_refs") == "[\"" + address + "\"]") {
      ++changed;
      EXPECT_EQ(now.json.at("number_observed"), "2");
      EXPECT_EQ(now.text("created"), object.text("created"));
      EXPECT_GT(now.text("modified"), object.text("modified"));
      EXPECT_EQ(now.text("last_observed"), "2026-12-04T00:00:05.000Z");
    } else if (object.type == "observed-data" &&
               object.json.at("object_refs").find("network-traffic--") != std::string::npos &&
               now.text("last_observed") != object.text("last_observed")) {
      // The request signature of the further hit widens its time range.
      EXPECT_GT(now.text("modified"), object.text("modified"));
    } else {
      EXPECT_EQ(now.json, object.json) << id << " changed without a reason";
    }
  }
  EXPECT_EQ(changed, 1);
}

TEST_F(StixOutputTest, RerunGivesSameIds) {
  std::vector<StoredEvent> batch;
  for (int i = 0; i < 50; ++i) {
    batch.push_back(storedEvent(i + 1, fmt::format("198.51.100.{}", i % 7 + 1),
                                fmt::format("/p{}", i % 5), kDayOneMs + i * 3600000LL));
  }
  std::map<std::string, std::set<std::string>> ids[2];
  for (int run = 0; run < 2; ++run) {
    StixOutputOptions o = options(fmt::format("run{}", run));
    StixOutput output(o);
    // The second run gets the records in two batches.
    if (run == 0) {
      output.send(batch);
    } else {
      output.send(std::span(batch).first(20));
      output.send(std::span(batch).subspan(20));
    }
    for (const auto& [id, object] : readBundles(o.path)) {
      ids[run][object.type].insert(id);
    }
  }
  EXPECT_EQ(ids[0], ids[1]);
  EXPECT_EQ(ids[0]["report"].size(), 3u);  // 50 hours span three UTC days
  EXPECT_EQ(ids[0]["ipv4-addr"].size(), 7u);
}

TEST_F(StixOutputTest, ToIdsMakesIndicators) {
  StixOutputOptions o = options("stix");
  o.model.to_ids = true;
  StixOutput output(o);
  output.send(std::vector<StoredEvent>{storedEvent(1, "198.51.100.7", "/a", kDayOneMs + 1000),
                                       storedEvent(2, "198.51.100.7", "/a", kDayOneMs + 2000),
                                       storedEvent(3, "2001:db8::7", "/a", kDayOneMs + 3000)});
  std::map<std::string, Parsed> objects = readBundles(o.path);
  std::set<std::string> patterns;
  for (const auto& [id, object] : objects) {
    if (object.type == "indicator") {
      patterns.insert(object.text("pattern"));
    }
    if (object.type == "sighting") {
      const Parsed& indicator = objects.at(object.text("sighting_of_ref"));
      if (indicator.text("pattern").find("198.51.100.7") != std::string::npos) {
        EXPECT_EQ(object.json.at("count"), "2");
      }
    }
  }
  EXPECT_EQ(patterns, (std::set<std::string>{"[ipv4-addr:value = '198.51.100.7']",
                                              "[ipv6-addr:value = '2001:db8::7']"}));
}

TEST(StixOutputOptionsTest, ParsesAndRejects) {
  auto parse = [](const std::string& yaml) { return parseStixOutputOptions(YAML::Load(yaml)); };
  StixOutputOptions o = parse("{path: var/stix/, sightings: false, tlp: 'tlp:green'}");
  EXPECT_EQ(o.path, "var/stix");
  EXPECT_EQ(o.state_path, "var/stix.state.sqlite");
  EXPECT_FALSE(o.sightings);
  EXPECT_EQ(o.model.tlp, "tlp:green");
  EXPECT_TRUE(parse("{path: x}").sightings);
  EXPECT_THROW(parse("{sightings: true}"), ConfigError);  // no path
  EXPECT_THROW(parse("{path: x, sightings: maybe}"), ConfigError);
  EXPECT_THROW(parse("{path: x, serve: {prefix: /stix}}"), ConfigError);  // no token
  EXPECT_THROW(parse("{path: x, tlp: amber}"), ConfigError);
}

TEST(StixOutputOptionsTest, ServePublishesBundlesOnly) {
  StixOutputOptions options = parseStixOutputOptions(YAML::Load(
      "{path: var/stix, serve: {prefix: /feeds/stix, token: 0123456789abcdef0123}}"));
  ASSERT_TRUE(options.serve.has_value());
  EXPECT_EQ(options.serve->name, "stix");
  EXPECT_EQ(options.serve->prefix, "/feeds/stix");
  EXPECT_EQ(options.serve->folder, "var/stix");
  EXPECT_TRUE(options.serve->is_published_name("index.json"));
  EXPECT_TRUE(options.serve->is_published_name("2bb61a18-3693-52b2-84b7-ab98d8bfdb29.json"));
  EXPECT_FALSE(options.serve->is_published_name("2BB61A18-3693-52B2-84B7-AB98D8BFDB29.json"));
  EXPECT_FALSE(options.serve->is_published_name("manifest.json"));
  EXPECT_FALSE(options.serve->is_published_name(".index.json.tmp"));
  EXPECT_FALSE(parseStixOutputOptions(YAML::Load("{path: x}")).serve.has_value());
}

}  // namespace
}  // namespace webtrap::collector
