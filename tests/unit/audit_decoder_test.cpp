#include "collector/audit_record.h"

#include <chrono>
#include <ctime>
#include <fstream>
#include <sstream>
#include <string>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <simdjson.h>

#include "collector/audit_decoder_internal.h"
#include "collector/audit_time.h"
#include "common/encoding.h"
#include "probe/record.h"

namespace webtrap::collector {
namespace {

using std::chrono::microseconds;
using std::chrono::system_clock;

// 2026-12-04T16:13:03Z, when the fixtures were captured.
constexpr std::int64_t kFixtureSeconds = 1796400783;

std::string fixture(const std::string& name) {
  std::ifstream stream(std::string(WEBTRAP_SOURCE_DIR) + "/tests/fixtures/modsecurity/" + name,
                       std::ios::binary);
  EXPECT_TRUE(stream) << "missing fixture " << name;
  std::stringstream content;
  content << stream.rdbuf();
  return content.str();
}

const TimeZone* zone(const char* name) {
  const TimeZone* found = findTimeZone(name);
  EXPECT_NE(found, nullptr) << name;
  return found;
}

DecodeResult decode(std::string_view json, RecordFormat format = RecordFormat::kAuto,
                    const char* time_zone = "UTC", std::string_view origin = "test") {
  DecodeOptions options;
  options.format = format;
  options.origin = origin;
  options.time_zone = zone(time_zone);
  return decodeAuditRecord(json, options);
}

std::vector<std::string> headerValues(const std::vector<HeaderField>& headers,
                                      std::string_view name) {
  std::vector<std::string> values;
  for (const HeaderField& header : headers) {
    if (header.name == name) {
      values.push_back(header.value);
    }
  }
  return values;
}

bool hasRule(const AuditRecord& record, std::string_view id) {
  for (const RuleMessage& message : record.messages) {
    if (message.rule_id == id) {
      return true;
    }
  }
  return false;
}

// A small libmodsecurity v3 record; `transaction_members` replaces the
// members before "request", and `extra` goes after "messages".
std::string modsec3Record(std::string_view transaction_members =
                              R"("client_ip":"203.0.113.9","time_stamp":"Fri Dec  4 15:41:52 2026",)"
                              R"("server_id":"abc","client_port":51000,"host_ip":"127.0.0.1",)"
                              R"("host_port":80,"unique_id":"17963993203.232894",)",
                          std::string_view request =
                              R"({"method":"GET","http_version":1.1,"uri":"/a?b=c",)"
                              R"("headers":{"Host":"shop.example","Accept":"*/*"}})",
                          std::string_view extra = "") {
  std::string record = R"({"transaction":{)";
  record += transaction_members;
  record += R"("request":)";
  record += request;
  record += R"(,"response":{"body":"","http_code":200,"headers":{"Server":"nginx"}},)";
  record += R"json("producer":{"modsecurity":"ModSecurity v3.0.9 (Linux)",)json";
  record += R"("connector":"ModSecurity-nginx v1.0.3","secrules_engine":"DetectionOnly",)";
  record += R"("components":["OWASP_CRS/3.3.4\""]},)";
  record += R"("messages":[{"message":"SQL Injection Attack Detected via libinjection",)";
  record += R"("details":{"match":"detected SQLi using libinjection.","reference":"v10,11",)";
  record += R"("ruleId":"942100","file":"/usr/share/modsecurity-crs/rules/REQUEST-942.conf",)";
  record += R"("lineNumber":"46","data":"Matched Data: s&1c","severity":"2",)";
  record += R"("ver":"OWASP_CRS/3.3.4","rev":"","tags":["attack-sqli","OWASP_CRS"],)";
  record += R"("maturity":"0","accuracy":"0"}}])";
  record += extra;
  record += "}}";
  return record;
}

// --- Real records captured by tests/integration/test_modsecurity_decoders.py

TEST(AuditDecoder, NginxFixtureFields) {
  std::string text = fixture("modsec3-nginx-sqli.json");
  DecodeResult result = decode(text, RecordFormat::kAuto, "America/New_York");
  ASSERT_TRUE(result.ok) << result.error;
  const AuditRecord& record = result.record;
  EXPECT_EQ(record.format, RecordFormat::kModsec3);
  EXPECT_EQ(record.method, "GET");
  EXPECT_EQ(record.uri, "/?id=1%27%20or%201=1--");
  EXPECT_EQ(record.http_version, "1.1");
  EXPECT_EQ(record.client_ip, "127.0.0.1");
  EXPECT_EQ(record.client_port, 56572);
  EXPECT_EQ(record.server_ip, "127.0.0.1");
  EXPECT_NE(record.server_port, 0);
  // Written as 11:13:03 in New York (UTC-5 in December).
  EXPECT_EQ(record.timestamp_us, kFixtureSeconds * 1000000);
  EXPECT_TRUE(hasRule(record, "942100"));
  EXPECT_EQ(record.components, std::vector<std::string>{"OWASP_CRS/3.3.4"});
  EXPECT_EQ(record.producer_version, "ModSecurity v3.0.9 (Linux)");
  EXPECT_EQ(record.connector, "ModSecurity-nginx v1.0.3");
  EXPECT_EQ(record.secrules_engine, "DetectionOnly");
  EXPECT_EQ(headerValues(record.request_headers, "X-Dup"),
            (std::vector<std::string>{"one", "two"}));
  EXPECT_TRUE(record.host.starts_with("127.0.0.1:"));
  EXPECT_FALSE(record.invalid_utf8);
  EXPECT_EQ(record.original + "\n", text);
}

TEST(AuditDecoder, NginxFixtureInvalidUtf8) {
  std::string text = fixture("modsec3-nginx-invalid-utf8.json");
  ASSERT_FALSE(isValidUtf8(text));
  DecodeResult result = decode(text, RecordFormat::kAuto, "America/New_York");
  ASSERT_TRUE(result.ok) << result.error;
  const AuditRecord& record = result.record;
  EXPECT_TRUE(record.invalid_utf8);
  EXPECT_EQ(record.uri, "/search?q=caf\xEF\xBF\xBD");
  EXPECT_TRUE(isValidUtf8(record.original));
  auto exact = base64Decode(record.original_base64);
  ASSERT_TRUE(exact.has_value());
  EXPECT_EQ(*exact + "\n", text);
}

TEST(AuditDecoder, ApacheFixtureFields) {
  DecodeResult result = decode(fixture("modsec2-apache-sqli.json"));
  ASSERT_TRUE(result.ok) << result.error;
  const AuditRecord& record = result.record;
  EXPECT_EQ(record.format, RecordFormat::kModsec2);
  EXPECT_EQ(record.request_line, "GET /?id=1%27%20or%201=1-- HTTP/1.1");
  EXPECT_EQ(record.method, "GET");
  EXPECT_EQ(record.uri, "/?id=1%27%20or%201=1--");
  EXPECT_EQ(record.http_version, "1.1");
  EXPECT_EQ(record.client_port, 42664);
  EXPECT_EQ(record.timestamp_us, kFixtureSeconds * 1000000 + 945057);
  EXPECT_FALSE(record.transaction_id.empty());
  // Apache joins repeated request header fields before mod_security2 sees them.
  EXPECT_EQ(headerValues(record.request_headers, "X-Dup"),
            std::vector<std::string>{"one, two"});
  EXPECT_EQ(record.secrules_engine, "DETECTION_ONLY");
  EXPECT_TRUE(record.producer_version.starts_with("ModSecurity for Apache/2.9"));
  EXPECT_EQ(record.components, std::vector<std::string>{"OWASP_CRS/3.3.4"});
  EXPECT_TRUE(record.connector.starts_with("Apache/2.4"));
  ASSERT_TRUE(hasRule(record, "942100"));
  for (const RuleMessage& message : record.messages) {
    if (message.rule_id != "942100") {
      continue;
    }
    EXPECT_EQ(message.message, "SQL Injection Attack Detected via libinjection");
    EXPECT_EQ(message.severity, "CRITICAL");
    EXPECT_EQ(message.version, "OWASP_CRS/3.3.4");
    EXPECT_TRUE(message.file.ends_with("REQUEST-942-APPLICATION-ATTACK-SQLI.conf"));
    EXPECT_FALSE(message.line.empty());
    EXPECT_NE(std::find(message.tags.begin(), message.tags.end(), "attack-sqli"),
              message.tags.end());
    EXPECT_TRUE(message.match.starts_with("Warning. detected SQLi using libinjection"));
    EXPECT_EQ(message.data, "Matched Data: s&1c found within ARGS:id: 1' or 1=1--");
  }
}

TEST(AuditDecoder, ApacheFixturePostBody) {
  DecodeResult result = decode(fixture("modsec2-apache-post.json"), RecordFormat::kModsec2);
  ASSERT_TRUE(result.ok) << result.error;
  EXPECT_EQ(result.record.method, "POST");
  EXPECT_EQ(result.record.uri, "/login");
  EXPECT_EQ(result.record.request_body, "user=admin&pass=%27+or+%271%27%3D%271");
}

// --- Probe records, written by the probe's own serializer

struct ProbeRecordParts {
  probe::CapturedRequest request;
  probe::PersonaResponse response;
  probe::RouteOutcome outcome;
  probe::InspectionResult inspection;
  probe::RecordMeta meta;
};

ProbeRecordParts probeParts() {
  ProbeRecordParts parts;
  probe::CapturedRequest& request = parts.request;
  request.client = {"203.0.113.7", 51515};
  request.server = {"127.0.0.1", 8080};
  request.listener = "web";
  request.parsed = true;
  request.request_line = "POST /login.php?x=\xC0\xAF HTTP/1.1";
  request.method = "POST";
  request.target = "/login.php?x=\xC0\xAF";
  request.http_version = "1.1";
  request.headers = {{"Host", "shop.example"},
                     {"X-Dup", "one"},
                     {"User-Agent", "curl/8.0"},
                     {"x-dup", "two"},
                     {"X-Bin", "\xFF"}};
  request.body = "user=a&pass=b%27--";
  request.body_size = request.body.size();
  request.body_sha256 = sha256Hex(request.body);
  request.received_at = system_clock::time_point(microseconds(1796385600123456));
  parts.response.status = 302;
  parts.response.headers = {{"Server", "Apache"}, {"Set-Cookie", "a=1"}, {"Set-Cookie", "b=2"}};
  parts.outcome.route = "login";
  parts.outcome.route_kind = "login";
  parts.outcome.baits = {{"credential_canary", "user=admin password=admin"}};
  parts.outcome.issued_tokens = {"AKIAFAKE0000EXAMPLE"};
  probe::RuleMatch match;
  match.id = "942100";
  match.message = "SQL Injection Attack Detected via libinjection";
  match.severity = 2;
  match.line = 45;
  match.version = "OWASP_CRS/3.3.4";
  match.tags = {"attack-sqli"};
  parts.inspection.matches.push_back(match);
  parts.inspection.status = probe::InspectionStatus::kComplete;
  parts.inspection.anomaly_score = 5;
  parts.meta.event_id = "01938f5e-1c2a-7abc-8def-0123456789ab";
  parts.meta.sensor_id = "sensor-1";
  parts.meta.sensor_group = "eu";
  parts.meta.persona = "wordpress";
  parts.meta.product = "WordPress 6.4";
  parts.meta.engine_version = "ModSecurity v3.0.9 (Linux)";
  parts.meta.components = {"OWASP_CRS/3.3.4"};
  return parts;
}

std::string probeRecord() {
  ProbeRecordParts parts = probeParts();
  return probe::serializeRecord(parts.request, parts.response, parts.outcome, parts.inspection,
                                parts.meta);
}

TEST(AuditDecoder, ProbeRecordDetailsCut) {
  ProbeRecordParts parts = probeParts();
  parts.inspection.details_cut.truncated_strings = 4;
  parts.inspection.details_cut.reduced_matches = 2;
  parts.inspection.details_cut.omitted_matches = 930;
  DecodeResult result = decode(probe::serializeRecord(parts.request, parts.response,
                                                      parts.outcome, parts.inspection, parts.meta));
  ASSERT_TRUE(result.ok) << result.error;
  ASSERT_TRUE(result.record.details_cut.has_value());
  EXPECT_EQ(result.record.details_cut->truncated_strings, 4u);
  EXPECT_EQ(result.record.details_cut->reduced_matches, 2u);
  EXPECT_EQ(result.record.details_cut->omitted_matches, 930u);
}

TEST(AuditDecoder, ProbeRecordFields) {
  DecodeResult result = decode(probeRecord(), RecordFormat::kAuto, "Pacific/Auckland");
  ASSERT_TRUE(result.ok) << result.error;
  const AuditRecord& record = result.record;
  EXPECT_EQ(record.format, RecordFormat::kWebtrap);
  EXPECT_EQ(record.event_id, "01938f5e-1c2a-7abc-8def-0123456789ab");
  EXPECT_EQ(record.transaction_id, "01938f5e-1c2a-7abc-8def-0123456789ab");
  // From webtrap.@timestamp, with microseconds, whatever the zone option.
  EXPECT_EQ(record.timestamp_us, 1796385600123456);
  EXPECT_EQ(record.sensor_id, "sensor-1");
  EXPECT_EQ(record.sensor_group, "eu");
  EXPECT_EQ(record.persona, "wordpress");
  EXPECT_EQ(record.persona_product, "WordPress 6.4");
  EXPECT_EQ(record.listener, "web");
  EXPECT_EQ(record.bait_hits, std::vector<std::string>{"credential_canary"});
  EXPECT_EQ(record.bait_details, std::vector<std::string>{"user=admin password=admin"});
  EXPECT_EQ(record.issued_tokens, std::vector<std::string>{"AKIAFAKE0000EXAMPLE"});
  EXPECT_EQ(record.inspection_status, "complete");
  ASSERT_TRUE(record.anomaly_score.has_value());
  EXPECT_EQ(*record.anomaly_score, 5);
  EXPECT_FALSE(record.details_cut.has_value()) << "nothing was cut from this record";
  EXPECT_EQ(record.request_body, "user=a&pass=b%27--");
  ASSERT_TRUE(record.request_body_bytes.has_value());
  EXPECT_EQ(*record.request_body_bytes, 18u);
  EXPECT_EQ(record.request_body_sha256, sha256Hex("user=a&pass=b%27--"));
  EXPECT_EQ(record.response_status, 302);
  EXPECT_EQ(record.client_port, 51515);
  EXPECT_EQ(record.server_port, 8080);
  EXPECT_EQ(record.host, "shop.example");
  EXPECT_TRUE(hasRule(record, "942100"));
  EXPECT_EQ(record.connector, "webtrap v" WEBTRAP_VERSION);
  EXPECT_FALSE(record.invalid_utf8);
}

TEST(AuditDecoder, ProbeRecordExactHeaders) {
  DecodeResult result = decode(probeRecord());
  ASSERT_TRUE(result.ok) << result.error;
  const auto& headers = result.record.request_headers;
  // webtrap.request.headers, not the joined transaction object.
  ASSERT_EQ(headers.size(), 5u);
  EXPECT_EQ(headers[1].name, "X-Dup");
  EXPECT_EQ(headers[1].value, "one");
  EXPECT_EQ(headers[2].name, "User-Agent");
  EXPECT_EQ(headers[3].name, "x-dup");
  EXPECT_EQ(headers[3].value, "two");
  // The joined response headers keep the probe's ", " join.
  EXPECT_EQ(headerValues(result.record.response_headers, "Set-Cookie"),
            std::vector<std::string>{"a=1, b=2"});
}

TEST(AuditDecoder, ProbeRecordRestoresEncodedBytes) {
  DecodeResult result = decode(probeRecord());
  ASSERT_TRUE(result.ok) << result.error;
  const AuditRecord& record = result.record;
  EXPECT_EQ(record.uri, "/login.php?x=\xC0\xAF");
  EXPECT_EQ(record.request_line, "POST /login.php?x=\xC0\xAF HTTP/1.1");
  EXPECT_EQ(record.request_headers[4].value, "\xFF");
  // The record itself was valid UTF-8; only strings inside it were not.
  EXPECT_FALSE(record.invalid_utf8);
  EXPECT_TRUE(isValidUtf8(record.original));
}

TEST(AuditDecoder, ProbeRecordReadAsModsec3) {
  DecodeResult result = decode(probeRecord(), RecordFormat::kModsec3);
  ASSERT_TRUE(result.ok) << result.error;
  EXPECT_EQ(result.record.format, RecordFormat::kModsec3);
  // The webtrap object is ignored, so the id is derived.
  EXPECT_NE(result.record.event_id, "01938f5e-1c2a-7abc-8def-0123456789ab");
  EXPECT_EQ(result.record.sensor_id, "");
}

TEST(AuditDecoder, AutoDetectsAnyKeyOrder) {
  // Producers write `transaction` first, and its first key decides; other
  // orders take the detection pass over the keys.
  std::string text = probeRecord();
  std::size_t split = text.find(R"(,"webtrap":)");
  ASSERT_NE(split, std::string::npos);
  std::string webtrap_first =
      "{" + text.substr(split + 1, text.size() - split - 2) + "," + text.substr(1, split - 1) + "}";
  DecodeResult probe = decode(webtrap_first);
  ASSERT_TRUE(probe.ok) << probe.error;
  EXPECT_EQ(probe.record.format, RecordFormat::kWebtrap);
  EXPECT_EQ(probe.record.request_headers.size(), 5u);

  DecodeResult v3 = decode(modsec3Record(
      R"("time_stamp":"Fri Dec  4 15:41:52 2026","client_ip":"203.0.113.9",)"));
  ASSERT_TRUE(v3.ok) << v3.error;
  EXPECT_EQ(v3.record.format, RecordFormat::kModsec3);

  DecodeResult v2 = decode(
      R"({"audit_data":{},"transaction":{"remote_address":"a","time":"04/Dec/2026:16:13:03 +0000"}})");
  ASSERT_TRUE(v2.ok) << v2.error;
  EXPECT_EQ(v2.record.format, RecordFormat::kModsec2);
  EXPECT_EQ(v2.record.timestamp_us, kFixtureSeconds * 1000000);
}

TEST(AuditDecoder, WebtrapFormatNeedsWebtrapObject) {
  DecodeResult result = decode(modsec3Record(), RecordFormat::kWebtrap);
  ASSERT_FALSE(result.ok);
  EXPECT_TRUE(result.error.starts_with("webtrap: missing")) << result.error;
}

// The advice in an error names what the sender on that input can change.
DecodeResult decodeFrom(std::string_view json, RecordFormat format, RecordInput input) {
  DecodeOptions options;
  options.format = format;
  options.input = input;
  options.origin = "test";
  options.time_zone = zone("UTC");
  return decodeAuditRecord(json, options);
}

TEST(AuditDecoder, ProbeBatchNamesOtherInputs) {
  DecodeResult result =
      decodeFrom(modsec3Record(), RecordFormat::kWebtrap, RecordInput::kProbeBatch);
  ASSERT_FALSE(result.ok);
  EXPECT_TRUE(result.error.starts_with("webtrap: missing")) << result.error;
  EXPECT_NE(result.error.find("POST /v1/modsecurity"), std::string::npos) << result.error;
  EXPECT_NE(result.error.find("inputs.files"), std::string::npos) << result.error;
  // The batch's format is fixed, so no format setting is offered.
  EXPECT_EQ(result.error.find("read it as"), std::string::npos) << result.error;
}

TEST(AuditDecoder, FileLineNamesFormatSetting) {
  DecodeResult result = decodeFrom(modsec3Record(), RecordFormat::kWebtrap, RecordInput::kLine);
  ASSERT_FALSE(result.ok);
  EXPECT_NE(result.error.find("read it as modsec3 or auto"), std::string::npos) << result.error;
}

// Valid JSON that is no object, or no JSON, is named as what it is not.
TEST(AuditDecoder, NonObjectNamed) {
  for (const std::string text : {"[1,2]", "\"text\"", "42", "not json"}) {
    for (RecordFormat format : {RecordFormat::kAuto, RecordFormat::kModsec3, RecordFormat::kModsec2,
                                RecordFormat::kWebtrap}) {
      DecodeResult result = decodeAuditRecord(text, format, "test");
      ASSERT_FALSE(result.ok) << text;
      EXPECT_TRUE(result.error.starts_with("record: invalid JSON or not a JSON object"))
          << text << ": " << result.error;
    }
  }
}

TEST(AuditDecoder, TwoRecordsInOnePost) {
  std::string two = modsec3Record() + "\n" + modsec3Record();
  DecodeResult post = decodeFrom(two, RecordFormat::kAuto, RecordInput::kModsecurityPost);
  ASSERT_FALSE(post.ok);
  EXPECT_TRUE(post.error.starts_with("record: unexpected text after the JSON object"))
      << post.error;
  EXPECT_NE(post.error.find("one record per request"), std::string::npos) << post.error;
  EXPECT_NE(post.error.find("inputs.files"), std::string::npos) << post.error;
  EXPECT_EQ(post.error.find("per line"), std::string::npos) << post.error;

  DecodeResult line =
      decodeFrom(modsec3Record() + " " + modsec3Record(), RecordFormat::kAuto, RecordInput::kLine);
  ASSERT_FALSE(line.ok);
  EXPECT_NE(line.error.find("give one record per line"), std::string::npos) << line.error;
}

TEST(AuditDecoder, WebtrapEventIdChecked) {
  std::string text = probeRecord();
  std::string missing = text;
  missing.replace(missing.find("\"event_id\""), 10, "\"event_xx\"");
  DecodeResult result = decode(missing);
  ASSERT_FALSE(result.ok);
  EXPECT_TRUE(result.error.starts_with("webtrap.event_id: missing")) << result.error;

  std::string invalid = text;
  std::size_t at = invalid.find("\"event_id\":\"") + 12;
  invalid.replace(at, 36, std::string(36, 'z'));
  result = decode(invalid);
  ASSERT_FALSE(result.ok);
  EXPECT_TRUE(result.error.starts_with("webtrap.event_id: 'zzzz")) << result.error;
}

TEST(AuditDecoder, WebtrapSchemaVersionChecked) {
  std::string text = probeRecord();
  text.replace(text.find("\"schema_version\":1"), 18, "\"schema_version\":2");
  DecodeResult result = decode(text);
  ASSERT_FALSE(result.ok);
  EXPECT_TRUE(result.error.starts_with("webtrap.schema_version: version 2 is not supported"))
      << result.error;
}

TEST(AuditDecoder, WebtrapBadBase64Rejected) {
  std::string text = probeRecord();
  std::size_t at = text.find("\"/transaction/request/uri\":\"") + 28;
  text.insert(at, "!");
  DecodeResult result = decode(text);
  ASSERT_FALSE(result.ok);
  EXPECT_TRUE(result.error.starts_with("webtrap.encoded: the value of '/transaction/request/uri'"))
      << result.error;
}

TEST(AuditDecoder, WebtrapBadTimestampRejected) {
  std::string text = probeRecord();
  std::size_t at = text.find("\"@timestamp\":\"") + 14;
  text.replace(at, 4, "20x6");
  DecodeResult result = decode(text);
  ASSERT_FALSE(result.ok);
  EXPECT_TRUE(result.error.starts_with("webtrap.@timestamp: '20x6-")) << result.error;
}

// --- libmodsecurity v3 quirks, crafted

TEST(AuditDecoder, DuplicateHeaderKeysKept) {
  std::string text = modsec3Record(
      R"("client_ip":"203.0.113.9","time_stamp":"Fri Dec  4 15:41:52 2026",)",
      R"({"method":"GET","uri":"/","headers":{"X":"1","Host":"h","x":"2","X":"3"}})");
  DecodeResult result = decode(text);
  ASSERT_TRUE(result.ok) << result.error;
  const auto& headers = result.record.request_headers;
  ASSERT_EQ(headers.size(), 4u);
  EXPECT_EQ(headers[0].name, "X");
  EXPECT_EQ(headers[0].value, "1");
  EXPECT_EQ(headers[2].name, "x");
  EXPECT_EQ(headers[2].value, "2");
  EXPECT_EQ(headers[3].name, "X");
  EXPECT_EQ(headers[3].value, "3");
  EXPECT_EQ(result.record.host, "h");
}

TEST(AuditDecoder, NumbersAsStrings) {
  std::string text = modsec3Record(
      R"("client_ip":"203.0.113.9","time_stamp":"Fri Dec  4 15:41:52 2026",)"
      R"("client_port":"443","host_ip":"127.0.0.1","host_port":"8080",)",
      R"({"method":"GET","http_version":"HTTP/2.0","uri":"/","headers":{}})");
  text.replace(text.find("\"http_code\":200"), 15, "\"http_code\":\"404\"");
  DecodeResult result = decode(text);
  ASSERT_TRUE(result.ok) << result.error;
  EXPECT_EQ(result.record.client_port, 443);
  EXPECT_EQ(result.record.server_port, 8080);
  EXPECT_EQ(result.record.response_status, 404);
  EXPECT_EQ(result.record.http_version, "2.0");
}

TEST(AuditDecoder, NumericDetailsKeptAsText) {
  std::string text = modsec3Record();
  text.replace(text.find("\"ruleId\":\"942100\""), 17, "\"ruleId\":942100");
  text.replace(text.find("\"lineNumber\":\"46\""), 17, "\"lineNumber\":46");
  DecodeResult result = decode(text);
  ASSERT_TRUE(result.ok) << result.error;
  ASSERT_EQ(result.record.messages.size(), 1u);
  EXPECT_EQ(result.record.messages[0].rule_id, "942100");
  EXPECT_EQ(result.record.messages[0].line, "46");
  EXPECT_EQ(result.record.messages[0].severity, "2");
  EXPECT_EQ(result.record.messages[0].match, "detected SQLi using libinjection.");
  EXPECT_EQ(result.record.messages[0].tags, (std::vector<std::string>{"attack-sqli", "OWASP_CRS"}));
}

TEST(AuditDecoder, BadPortNamesField) {
  struct Case {
    const char* members;
    const char* field;
  };
  const Case cases[] = {
      {R"("client_ip":"a","time_stamp":"Fri Dec  4 15:41:52 2026","client_port":"44x3",)",
       "transaction.client_port: expected a port number"},
      {R"("client_ip":"a","time_stamp":"Fri Dec  4 15:41:52 2026","host_port":70000,)",
       "transaction.host_port: expected a port number"},
      {R"("client_ip":"a","time_stamp":"Fri Dec  4 15:41:52 2026","client_port":true,)",
       "transaction.client_port: expected a port number 0-65535 (a number or a string of "
       "digits), got a boolean"},
      {R"("client_ip":"a","time_stamp":"Fri Dec  4 15:41:52 2026","client_port":-1,)",
       "transaction.client_port: expected a port number"},
  };
  for (const Case& c : cases) {
    DecodeResult result = decode(modsec3Record(c.members));
    EXPECT_FALSE(result.ok) << c.members;
    EXPECT_TRUE(result.error.starts_with(c.field)) << result.error;
  }
}

TEST(AuditDecoder, StrayQuoteEscaped) {
  DecodeResult result = decode(modsec3Record());
  ASSERT_TRUE(result.ok) << result.error;
  EXPECT_EQ(result.record.components, std::vector<std::string>{"OWASP_CRS/3.3.4"});
}

TEST(AuditDecoder, StrayQuoteUnescaped) {
  std::string text = modsec3Record();
  std::size_t at = text.find(R"("OWASP_CRS/3.3.4\"")");
  ASSERT_NE(at, std::string::npos);
  // A writer that does not escape the quote: "OWASP_CRS/3.3.4"" is not JSON.
  text.replace(at, 19, R"("OWASP_CRS/3.3.4"", "comp2/1.0"")");
  DecodeResult result = decode(text);
  ASSERT_TRUE(result.ok) << result.error;
  EXPECT_EQ(result.record.components,
            (std::vector<std::string>{"OWASP_CRS/3.3.4", "comp2/1.0"}));
  EXPECT_EQ(result.record.method, "GET");
  EXPECT_TRUE(hasRule(result.record, "942100"));
  // `original` is the repaired, valid JSON text.
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  EXPECT_EQ(parser.parse(result.record.original).get(root), simdjson::SUCCESS);
}

TEST(AuditDecoder, InvalidUtf8Repaired) {
  std::string text = modsec3Record(
      R"("client_ip":"203.0.113.9","time_stamp":"Fri Dec  4 15:41:52 2026",)",
      "{\"method\":\"GET\",\"uri\":\"/\xFF\xFE?a=\xC3\",\"headers\":{\"X-\xE9\":\"v\xC0\"}}");
  DecodeResult result = decode(text);
  ASSERT_TRUE(result.ok) << result.error;
  const AuditRecord& record = result.record;
  EXPECT_TRUE(record.invalid_utf8);
  EXPECT_EQ(record.uri, "/\xEF\xBF\xBD\xEF\xBF\xBD?a=\xEF\xBF\xBD");
  ASSERT_EQ(record.request_headers.size(), 1u);
  EXPECT_EQ(record.request_headers[0].name, "X-\xEF\xBF\xBD");
  EXPECT_EQ(record.request_headers[0].value, "v\xEF\xBF\xBD");
  EXPECT_EQ(base64Decode(record.original_base64), text);
  EXPECT_TRUE(isValidUtf8(record.original));
}

TEST(AuditDecoder, LocalTimeConverted) {
  struct Case {
    const char* stamp;
    const char* zone;
    std::int64_t utc_seconds;
  };
  const Case cases[] = {
      {"Fri Dec  4 16:13:03 2026", "UTC", kFixtureSeconds},
      {"Fri Dec  4 11:13:03 2026", "America/New_York", kFixtureSeconds},
      {"Fri Dec  4 17:13:03 2026", "Europe/Berlin", kFixtureSeconds},
      // Summer time: UTC+2.
      {"Wed Jul  1 12:00:00 2026", "Europe/Berlin", 1782900000},
      // 02:30 happens twice when summer time ends; the earlier one is taken.
      {"Sun Oct 25 02:30:00 2026", "Europe/Berlin", 1792888200},
      // A zero-padded day, as some writers produce.
      {"Fri Dec 04 16:13:03 2026", "UTC", kFixtureSeconds},
  };
  for (const Case& c : cases) {
    std::string members = std::string(R"("client_ip":"a","time_stamp":")") + c.stamp + "\",";
    DecodeResult result = decode(modsec3Record(members), RecordFormat::kAuto, c.zone);
    ASSERT_TRUE(result.ok) << result.error;
    EXPECT_EQ(result.record.timestamp_us, c.utc_seconds * 1000000) << c.stamp << " " << c.zone;
  }
}

TEST(AuditDecoder, LocalZoneIsDefault) {
  DecodeOptions options;
  options.origin = "test";
  DecodeResult result = decodeAuditRecord(modsec3Record(), options);
  ASSERT_TRUE(result.ok) << result.error;
  DecodeResult explicit_zone = decode(modsec3Record(), RecordFormat::kAuto, "UTC");
  std::int64_t offset_us = result.record.timestamp_us - explicit_zone.record.timestamp_us;
  // Whatever the machine's zone, the difference is its UTC offset: whole
  // quarter hours within a day.
  EXPECT_EQ(offset_us % (15LL * 60 * 1000000), 0);
  EXPECT_LE(std::llabs(offset_us), 26LL * 3600 * 1000000);
  EXPECT_NE(localTimeZone(), nullptr);
}

TEST(AuditDecoder, UnknownZoneIsNull) {
  EXPECT_EQ(findTimeZone("Mars/Olympus_Mons"), nullptr);
  EXPECT_EQ(findTimeZone(""), nullptr);
  EXPECT_NE(findTimeZone("Europe/Paris"), nullptr);
}

TEST(AuditDecoder, ErrorsNameTheField) {
  struct Case {
    std::string json;
    RecordFormat format;
    std::string error_prefix;
  };
  std::string base = modsec3Record();
  auto replaced = [&](std::string text, std::string_view from, std::string_view to) {
    text.replace(text.find(from), from.size(), to);
    return text;
  };
  const Case cases[] = {
      {"", RecordFormat::kAuto, "record: empty"},
      {"not json", RecordFormat::kAuto, "record: invalid JSON"},
      {"[1,2]", RecordFormat::kAuto, "record: invalid JSON"},
      {R"({"transaction":{"client_ip":"a"})", RecordFormat::kModsec3, "transaction"},
      {base + " trailing", RecordFormat::kAuto, "record: invalid JSON"},
      {base + base, RecordFormat::kAuto, "record: "},
      {R"({"other":1})", RecordFormat::kAuto, "transaction: cannot tell the record's layout"},
      {R"({"transaction":{"client_ip":"a","request":{}}})", RecordFormat::kModsec3,
       "transaction.time_stamp: missing"},
      {R"({"transaction":{"time_stamp":"Fri Dec  4 15:41:52 2026","request":{}}})",
       RecordFormat::kModsec3, "transaction.client_ip: missing"},
      {R"({"transaction":{"client_ip":"a","time_stamp":"Fri Dec  4 15:41:52 2026"}})",
       RecordFormat::kModsec3, "transaction.request: missing"},
      {replaced(base, "Fri Dec  4 15:41:52 2026", "yesterday"), RecordFormat::kAuto,
       "transaction.time_stamp: 'yesterday' is not a time stamp"},
      {replaced(base, "Fri Dec  4 15:41:52 2026", "Fri Feb 30 15:41:52 2026"), RecordFormat::kAuto,
       "transaction.time_stamp: 'Fri Feb 30"},
      {replaced(base, R"("client_ip":"203.0.113.9")", R"("client_ip":7)"), RecordFormat::kAuto,
       "transaction.client_ip: expected a string, got a number"},
      {replaced(base, R"("headers":{"Host")", R"("headers":["Host")"), RecordFormat::kAuto,
       "transaction.request.headers: expected an object, got an array"},
      {replaced(base, R"("messages":[{)", R"("messages":{"x":[{)") + "}", RecordFormat::kAuto,
       "transaction.messages: expected an array, got an object"},
      {replaced(base, R"("tags":["attack-sqli")", R"("tags":[{}})"), RecordFormat::kAuto,
       "transaction.messages[0].details.tags[0]: expected a string, got an object"},
      {replaced(replaced(base, R"("messages":[{)",
                         R"("messages":[{"message":"m","details":{"ruleId":"1","tags":["a"]}},{)"),
                R"("tags":["attack-sqli")", R"("tags":[{}})"),
       RecordFormat::kAuto,
       "transaction.messages[1].details.tags[0]: expected a string, got an object"},
      {replaced(base, R"("ruleId":"942100")", R"("ruleId":{})"), RecordFormat::kAuto,
       "transaction.messages[0].details.ruleId: "},
      {replaced(probeRecord(), R"("headers":[[)", R"("headers":[["A","B","C"],[)"),
       RecordFormat::kWebtrap, "webtrap.request.headers[0]: expected [name, value], got 3 items"},
      {replaced(probeRecord(), R"("headers":[[)", R"("headers":[["A"],[)"), RecordFormat::kWebtrap,
       "webtrap.request.headers[0]: expected [name, value], got 1 items"},
      {replaced(probeRecord(), R"("headers":[[)", R"("headers":[["A",{}],[)"),
       RecordFormat::kWebtrap, "webtrap.request.headers[0][1]: expected a string"},
      {replaced(base, R"("http_code":200)", R"("http_code":2000)"), RecordFormat::kAuto,
       "transaction.response.http_code: expected an HTTP status"},
      {R"({"transaction":{"transaction_id":"x","remote_address":"a"}})", RecordFormat::kAuto,
       "transaction.time: missing"},
      {R"({"transaction":{"time":"04/Dec/2026:15:48:57 +0000","transaction_id":"x"}})",
       RecordFormat::kModsec2, "transaction.remote_address: missing"},
      {R"({"transaction":{"time":"4 Dec","remote_address":"a"}})", RecordFormat::kModsec2,
       "transaction.time: '4 Dec' is not a time"},
      {R"({"request":{}})", RecordFormat::kModsec2, "transaction: missing"},
      {R"({"transaction":{"time":"04/Dec/2026:15:48:57 +0000","remote_address":"a"},)"
       R"("audit_data":{"messages":"x"}})",
       RecordFormat::kAuto, "audit_data.messages: expected an array, got a string"},
      {R"({"transaction":{"client_ip":"\ud800","time_stamp":"x"}})", RecordFormat::kModsec3,
       "transaction.client_ip: invalid JSON"},
  };
  for (const Case& c : cases) {
    DecodeResult result = decode(c.json, c.format);
    EXPECT_FALSE(result.ok) << c.json;
    EXPECT_TRUE(result.error.starts_with(c.error_prefix))
        << "expected '" << c.error_prefix << "', got '" << result.error << "'";
  }
}

// --- Event ids

TEST(AuditDecoder, DerivedIdsAreStable) {
  std::string text = modsec3Record();
  DecodeResult first = decode(text, RecordFormat::kAuto, "UTC", "/var/log/a.json");
  DecodeResult again = decode(text + "\r\n", RecordFormat::kModsec3, "UTC", "/var/log/a.json");
  DecodeResult other_origin = decode(text, RecordFormat::kAuto, "UTC", "/var/log/b.json");
  std::string changed = text;
  changed.replace(changed.find("51000"), 5, "51001");
  DecodeResult other_record = decode(changed, RecordFormat::kAuto, "UTC", "/var/log/a.json");
  ASSERT_TRUE(first.ok && again.ok && other_origin.ok && other_record.ok);
  EXPECT_EQ(first.record.event_id, again.record.event_id);
  EXPECT_NE(first.record.event_id, other_origin.record.event_id);
  EXPECT_NE(first.record.event_id, other_record.record.event_id);
}

TEST(AuditDecoder, DerivedIdIsUuidShaped) {
  DecodeResult result = decode(fixture("modsec2-apache-sqli.json"));
  ASSERT_TRUE(result.ok) << result.error;
  const std::string& id = result.record.event_id;
  ASSERT_EQ(id.size(), 36u);
  EXPECT_EQ(id[8], '-');
  EXPECT_EQ(id[13], '-');
  EXPECT_EQ(id[18], '-');
  EXPECT_EQ(id[23], '-');
  EXPECT_EQ(id[14], '8');  // version 8
  EXPECT_NE(std::string("89ab").find(id[19]), std::string::npos);  // variant 10
  // The producer's own id stays in transaction_id.
  EXPECT_NE(id, result.record.transaction_id);
}

TEST(AuditDecoder, DerivedIdStartsWithRecordTime) {
  DecodeResult result = decode(fixture("modsec2-apache-sqli.json"));
  ASSERT_TRUE(result.ok) << result.error;
  ASSERT_GT(result.record.timestamp_us, 0);
  const std::string& id = result.record.event_id;
  ASSERT_EQ(id.size(), 36u);
  std::string expected_ms = fmt::format("{:012x}", result.record.timestamp_us / 1000);
  EXPECT_EQ(id.substr(0, 8) + id.substr(9, 4), expected_ms);
}

// --- mod_security2 message lines

TEST(AuditDecoder, Modsec2MessageEscapes) {
  RuleMessage message = decoder::parseModsec2Message(
      R"(Warning. Match of "rx x" against "ARGS:a" required. [file "/r.conf"] [line "7"] )"
      R"([id "1234"] [msg "Quote \"here\" and \\ backslash"] [data "a\"]b"] )"
      R"([severity "NOTICE"] [tag "t1"] [tag "t2"] [hostname "h"] [uri "/"])");
  EXPECT_EQ(message.match, R"(Warning. Match of "rx x" against "ARGS:a" required.)");
  EXPECT_EQ(message.file, "/r.conf");
  EXPECT_EQ(message.line, "7");
  EXPECT_EQ(message.rule_id, "1234");
  EXPECT_EQ(message.message, R"(Quote "here" and \ backslash)");
  EXPECT_EQ(message.data, R"(a"]b)");
  EXPECT_EQ(message.severity, "NOTICE");
  EXPECT_EQ(message.tags, (std::vector<std::string>{"t1", "t2"}));
}

TEST(AuditDecoder, Modsec2MessageWithoutFields) {
  RuleMessage message = decoder::parseModsec2Message("Audit log: a [note] without fields");
  EXPECT_EQ(message.match, "Audit log: a [note] without fields");
  EXPECT_EQ(message.rule_id, "");
}

TEST(AuditDecoder, Modsec2MessageUnterminated) {
  RuleMessage message = decoder::parseModsec2Message(R"(Warning. [id "99"] [msg "cut off)");
  EXPECT_EQ(message.match, "Warning.");
  EXPECT_EQ(message.rule_id, "99");
  EXPECT_EQ(message.message, "");
}

TEST(AuditDecoder, Modsec2BodyParts) {
  std::string text =
      R"({"transaction":{"time":"04/Dec/2026:15:48:57 -0130","remote_address":"::1",)"
      R"("remote_port":"5000"},"request":{"request_line":"PUT /a b HTTP/1.0",)"
      R"("headers":{"Cookie":"a","Cookie":"b"},"body":["part1","part2"]},)"
      R"("response":{"status":"201","headers":{"Set-Cookie":"x","Set-Cookie":"y"}},)"
      R"("audit_data":{"producer":"ModSecurity for Apache/2.9.7"}})";
  DecodeResult result = decode(text);
  ASSERT_TRUE(result.ok) << result.error;
  const AuditRecord& record = result.record;
  EXPECT_EQ(record.method, "PUT");
  EXPECT_EQ(record.uri, "/a b");
  EXPECT_EQ(record.http_version, "1.0");
  EXPECT_EQ(record.client_port, 5000);
  EXPECT_EQ(record.request_body, "part1part2");
  EXPECT_EQ(record.response_status, 201);
  EXPECT_EQ(headerValues(record.request_headers, "Cookie"), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(headerValues(record.response_headers, "Set-Cookie"),
            (std::vector<std::string>{"x", "y"}));
  EXPECT_EQ(record.producer_version, "ModSecurity for Apache/2.9.7");
  EXPECT_TRUE(record.components.empty());
  // 15:48:57 at UTC-01:30 is 17:18:57 UTC.
  EXPECT_EQ(record.timestamp_us, (daysFromCivil(2026, 12, 4) * 86400 + 17 * 3600 + 18 * 60 + 57) *
                                     1000000);
}

// --- Time parsing helpers

TEST(AuditTime, IsoForms) {
  EXPECT_EQ(parseIsoMicros("2026-12-04T16:13:03Z"), kFixtureSeconds * 1000000);
  EXPECT_EQ(parseIsoMicros("2026-12-04T16:13:03.5Z"), kFixtureSeconds * 1000000 + 500000);
  EXPECT_EQ(parseIsoMicros("2026-12-04T17:13:03.000001+01:00"), kFixtureSeconds * 1000000 + 1);
  EXPECT_EQ(parseIsoMicros("2026-12-04T11:13:03-0500"), kFixtureSeconds * 1000000);
  EXPECT_EQ(parseIsoMicros("2026-12-04T16:13:03"), std::nullopt);  // no zone
  EXPECT_EQ(parseIsoMicros("2026-13-04T16:13:03Z"), std::nullopt);
  EXPECT_EQ(parseIsoMicros("2026-12-04T16:13:03.Z"), std::nullopt);
  EXPECT_EQ(parseIsoMicros("2026-12-04T16:13:03Zjunk"), std::nullopt);
}

TEST(AuditTime, ApacheForms) {
  EXPECT_EQ(parseApacheMicros("04/Dec/2026:16:13:03 +0000"), kFixtureSeconds * 1000000);
  EXPECT_EQ(parseApacheMicros("04/Dec/2026:17:13:03.25 +0100"), kFixtureSeconds * 1000000 + 250000);
  EXPECT_EQ(parseApacheMicros("04/Dez/2026:16:13:03 +0000"), std::nullopt);
  EXPECT_EQ(parseApacheMicros("04/Dec/2026:16:13:03"), std::nullopt);
}

TEST(AuditTime, CtimeForms) {
  std::int64_t expected = kFixtureSeconds;
  EXPECT_EQ(parseCtimeWallSeconds("Fri Dec  4 16:13:03 2026"), expected);
  EXPECT_EQ(parseCtimeWallSeconds("Fri Dec 04 16:13:03 2026"), expected);
  EXPECT_EQ(parseCtimeWallSeconds("Fri Dec 4 16:13:03 2026"), expected);
  EXPECT_EQ(parseCtimeWallSeconds("Fri Dec  4 16:13:03 2026\n"), std::nullopt);
  EXPECT_EQ(parseCtimeWallSeconds("Xyz Dec  4 16:13:03 2026"), std::nullopt);
  EXPECT_EQ(parseCtimeWallSeconds("Fri Dec  4 24:13:03 2026"), std::nullopt);
  EXPECT_EQ(parseCtimeWallSeconds("Sat Feb 29 00:00:00 2028"),
            daysFromCivil(2028, 2, 29) * 86400);
  EXPECT_EQ(parseCtimeWallSeconds("Sun Feb 29 00:00:00 2026"), std::nullopt);
}

// --- The JSON dump

TEST(AuditDecoder, JsonDumpIsValid) {
  DecodeResult result = decode(fixture("modsec3-nginx-invalid-utf8.json"));
  ASSERT_TRUE(result.ok) << result.error;
  std::string json = auditRecordToJson(result.record);
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  ASSERT_EQ(parser.parse(json).get(root), simdjson::SUCCESS) << json;
  std::string_view format;
  ASSERT_EQ(root["format"].get_string().get(format), simdjson::SUCCESS);
  EXPECT_EQ(format, "modsec3");
  bool invalid = false;
  ASSERT_EQ(root["invalid_utf8"].get_bool().get(invalid), simdjson::SUCCESS);
  EXPECT_TRUE(invalid);
  simdjson::dom::array headers;
  ASSERT_EQ(root["request_headers"].get_array().get(headers), simdjson::SUCCESS);
  EXPECT_EQ(headers.size(), result.record.request_headers.size());
}

TEST(AuditDecoder, FormatNames) {
  for (RecordFormat format : {RecordFormat::kAuto, RecordFormat::kWebtrap, RecordFormat::kModsec3,
                              RecordFormat::kModsec2}) {
    EXPECT_EQ(parseRecordFormat(formatName(format)), format);
  }
  EXPECT_EQ(parseRecordFormat("modsec4"), std::nullopt);
}

// Prints the decoding rate of the real records, so a slow change shows in
// the test log. The bound only catches a pathological slowdown, because
// sanitizer and debug builds run this too.
TEST(AuditDecoder, ThroughputOfRealRecords) {
  const std::string records[] = {fixture("modsec3-nginx-sqli.json"),
                                 fixture("modsec3-nginx-invalid-utf8.json"),
                                 fixture("modsec2-apache-sqli.json"),
                                 fixture("modsec2-apache-post.json"), probeRecord()};
  std::size_t bytes = 0;
  std::size_t decoded = 0;
  constexpr int kRounds = 4000;
  // CPU time, because the wall time on a shared machine includes waiting.
  std::clock_t started = std::clock();
  for (int round = 0; round < kRounds; ++round) {
    for (const std::string& record : records) {
      DecodeResult result = decode(record, RecordFormat::kAuto, "America/New_York");
      decoded += result.ok ? 1 : 0;
      bytes += record.size();
    }
  }
  double seconds = static_cast<double>(std::clock() - started) / CLOCKS_PER_SEC;
  double rate = decoded / seconds;
  std::printf("decoded %zu records (%.0f bytes each on average) in %.3f CPU s: %.0f records/s\n",
              decoded, static_cast<double>(bytes) / decoded, seconds, rate);
  EXPECT_EQ(decoded, std::size(records) * kRounds);
  EXPECT_GT(rate, 2000.0);
}

// Decodes `json` as one line of a batch: the bytes in `after` follow it in
// the same buffer, and DecodeOptions::readable_after allows reading them.
DecodeResult decodeInBatch(std::string_view json, std::string_view after) {
  std::string batch(json);
  batch.append(after);
  DecodeOptions options;
  options.origin = "test";
  options.time_zone = zone("UTC");
  options.readable_after = after.size();
  return decodeAuditRecord(std::string_view(batch.data(), json.size()), options);
}

TEST(AuditDecoder, InPlaceMatchesCopy) {
  std::string record = modsec3Record();
  // The next line of a batch, padded past simdjson's 64 bytes.
  std::string next = "\n" + record + std::string(64, ' ');
  DecodeResult copied = decode(record);
  DecodeResult in_place = decodeInBatch(record, next);
  ASSERT_TRUE(copied.ok) << copied.error;
  ASSERT_TRUE(in_place.ok) << in_place.error;
  EXPECT_EQ(auditRecordToJson(in_place.record), auditRecordToJson(copied.record));
}

TEST(AuditDecoder, InPlaceIgnoresBytesAfterRecord) {
  std::string record = modsec3Record();
  std::string record_without_close = record.substr(0, record.size() - 1);
  const std::string_view followers[] = {
      "}" + std::string(80, ' '),         // would close the cut record
      "12345" + std::string(80, '6'),     // digits right after the record
      "{\"unclosed\":\"" + std::string(80, 'x'),  // a string that never ends
  };
  for (std::string_view after : followers) {
    DecodeResult whole = decodeInBatch(record, after);
    EXPECT_TRUE(whole.ok) << whole.error << " followed by " << after.substr(0, 10);
    DecodeResult cut = decodeInBatch(record_without_close, after);
    EXPECT_FALSE(cut.ok) << "followed by " << after.substr(0, 10);
  }
}

}  // namespace
}  // namespace webtrap::collector
