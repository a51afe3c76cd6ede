#include "probe/record.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>

#include <gtest/gtest.h>
#include <simdjson.h>

#include "common/encoding.h"

namespace webtrap::probe {
namespace {

using std::chrono::microseconds;
using std::chrono::system_clock;

// 2026-12-04T12:00:00.123456Z
const system_clock::time_point kReceivedAt(microseconds(1796385600123456));

CapturedRequest normalRequest() {
  CapturedRequest request;
  request.connection_id = "c-1";
  request.request_index = 2;
  request.client = {"203.0.113.7", 51515};
  request.server = {"127.0.0.1", 8080};
  request.listener = "web";
  request.parsed = true;
  request.request_line = "POST /login.php?next=%2F HTTP/1.1";
  request.method = "POST";
  request.target = "/login.php?next=%2F";
  request.http_version = "1.1";
  request.headers = {{"Host", "shop.example"},
                     {"User-Agent", "curl/8.0"},
                     {"Content-Type", "application/x-www-form-urlencoded"},
                     {"Content-Length", "18"}};
  request.body = "user=a&pass=b%27--";
  request.body_size = request.body.size();
  request.body_sha256 = sha256Hex(request.body);
  request.received_at = kReceivedAt;
  request.timings = {120, 180, 400, -1};
  return request;
}

PersonaResponse normalResponse() {
  PersonaResponse response;
  response.status = 302;
  response.headers = {{"Server", "Apache/2.4.41 (Ubuntu)"}, {"Location", "/"}};
  response.body = "<html>moved</html>";
  return response;
}

RouteOutcome loginOutcome() {
  RouteOutcome outcome;
  outcome.route = "login";
  outcome.route_kind = "login";
  outcome.baits = {{"credential_canary", "user=a"}};
  outcome.issued_tokens = {"AKIAFAKE0000EXAMPLE"};
  return outcome;
}

InspectionResult sqliInspection() {
  InspectionResult inspection;
  inspection.status = InspectionStatus::kComplete;
  inspection.duration_us = 850;
  inspection.anomaly_score = 5;
  RuleMatch match;
  match.id = "942100";
  match.message = "SQL Injection Attack Detected via libinjection";
  match.data = "Matched Data: s&1c found within ARGS:pass: b'--";
  match.file = "/usr/share/modsecurity-crs/rules/REQUEST-942-APPLICATION-ATTACK-SQLI.conf";
  match.line = 45;
  match.phase = 2;
  match.severity = 2;
  match.version = "OWASP_CRS/3.3.4";
  match.maturity = 0;
  match.accuracy = 0;
  match.tags = {"application-multi", "attack-sqli"};
  inspection.matches = {match, match};
  return inspection;
}

RecordMeta testMeta() {
  RecordMeta meta;
  meta.event_id = "01938f5e-1c2a-7abc-8def-0123456789ab";
  meta.sensor_id = "sensor-1";
  meta.sensor_group = "eu";
  meta.persona = "wordpress";
  meta.product = "WordPress 6.4";
  meta.engine_version = "ModSecurity v3.0.9 (Linux)";
  meta.components = {"OWASP_CRS/3.3.4"};
  return meta;
}

// A parsed record, kept alive with its parser.
struct Parsed {
  simdjson::dom::parser parser;
  simdjson::dom::element root;
};

void parseRecord(const std::string& text, Parsed& parsed) {
  ASSERT_EQ(text.find('\n'), std::string::npos) << "a record must be one line";
  ASSERT_EQ(parsed.parser.parse(text).get(parsed.root), simdjson::SUCCESS) << text;
}

std::string stringAt(const simdjson::dom::element& root, std::string_view pointer) {
  std::string_view value;
  auto error = root.at_pointer(pointer).get_string().get(value);
  EXPECT_EQ(error, simdjson::SUCCESS) << pointer;
  return std::string(value);
}

std::int64_t intAt(const simdjson::dom::element& root, std::string_view pointer) {
  std::int64_t value = 0;
  EXPECT_EQ(root.at_pointer(pointer).get_int64().get(value), simdjson::SUCCESS) << pointer;
  return value;
}

bool boolAt(const simdjson::dom::element& root, std::string_view pointer) {
  bool value = false;
  EXPECT_EQ(root.at_pointer(pointer).get_bool().get(value), simdjson::SUCCESS) << pointer;
  return value;
}

bool isNullAt(const simdjson::dom::element& root, std::string_view pointer) {
  simdjson::dom::element value;
  return root.at_pointer(pointer).get(value) == simdjson::SUCCESS && value.is_null();
}

bool exists(const simdjson::dom::element& root, std::string_view pointer) {
  simdjson::dom::element value;
  return root.at_pointer(pointer).get(value) == simdjson::SUCCESS;
}

// Returns the exact bytes webtrap.encoded stores for `pointer`, or nullopt.
std::optional<std::string> encodedBytes(const simdjson::dom::element& root,
                                        std::string_view pointer) {
  simdjson::dom::object encoded;
  if (root.at_pointer("/webtrap/encoded").get_object().get(encoded) != simdjson::SUCCESS) {
    return std::nullopt;
  }
  for (auto field : encoded) {
    if (field.key == pointer) {
      std::string_view base64;
      if (field.value.get_string().get(base64) != simdjson::SUCCESS) {
        return std::nullopt;
      }
      return base64Decode(base64);
    }
  }
  return std::nullopt;
}

std::size_t encodedCount(const simdjson::dom::element& root) {
  simdjson::dom::object encoded;
  EXPECT_EQ(root.at_pointer("/webtrap/encoded").get_object().get(encoded), simdjson::SUCCESS);
  return encoded.size();
}

TEST(Record, NormalRequestHasModSecurityLayout) {
  std::string text = serializeRecord(normalRequest(), normalResponse(), loginOutcome(),
                                     sqliInspection(), testMeta());
  Parsed parsed;
  ASSERT_NO_FATAL_FAILURE(parseRecord(text, parsed));
  const auto& root = parsed.root;

  EXPECT_EQ(stringAt(root, "/transaction/client_ip"), "203.0.113.7");
  EXPECT_EQ(intAt(root, "/transaction/client_port"), 51515);
  EXPECT_EQ(stringAt(root, "/transaction/host_ip"), "127.0.0.1");
  EXPECT_EQ(intAt(root, "/transaction/host_port"), 8080);
  EXPECT_EQ(stringAt(root, "/transaction/time_stamp"), "Fri Dec  4 12:00:00 2026");
  EXPECT_EQ(stringAt(root, "/transaction/server_id"), "sensor-1");
  EXPECT_EQ(stringAt(root, "/transaction/unique_id"), "01938f5e-1c2a-7abc-8def-0123456789ab");

  EXPECT_EQ(stringAt(root, "/transaction/request/method"), "POST");
  double version = 0;
  EXPECT_EQ(root.at_pointer("/transaction/request/http_version").get_double().get(version),
            simdjson::SUCCESS);
  EXPECT_DOUBLE_EQ(version, 1.1);
  EXPECT_NE(text.find("\"http_version\":1.1,"), std::string::npos);
  EXPECT_EQ(stringAt(root, "/transaction/request/uri"), "/login.php?next=%2F");
  EXPECT_EQ(stringAt(root, "/transaction/request/body"), "user=a&pass=b%27--");
  EXPECT_EQ(stringAt(root, "/transaction/request/headers/User-Agent"), "curl/8.0");

  EXPECT_EQ(stringAt(root, "/transaction/response/body"), "<html>moved</html>");
  EXPECT_EQ(intAt(root, "/transaction/response/http_code"), 302);
  EXPECT_EQ(stringAt(root, "/transaction/response/headers/Server"), "Apache/2.4.41 (Ubuntu)");

  EXPECT_EQ(stringAt(root, "/transaction/producer/modsecurity"), "ModSecurity v3.0.9 (Linux)");
  EXPECT_EQ(stringAt(root, "/transaction/producer/connector"), "webtrap v" WEBTRAP_VERSION);
  EXPECT_EQ(stringAt(root, "/transaction/producer/secrules_engine"), "DetectionOnly");
  EXPECT_EQ(stringAt(root, "/transaction/producer/components/0"), "OWASP_CRS/3.3.4");

  EXPECT_EQ(stringAt(root, "/transaction/messages/0/message"),
            "SQL Injection Attack Detected via libinjection");
  EXPECT_EQ(stringAt(root, "/transaction/messages/0/details/ruleId"), "942100");
  EXPECT_EQ(stringAt(root, "/transaction/messages/0/details/lineNumber"), "45");
  EXPECT_EQ(stringAt(root, "/transaction/messages/0/details/severity"), "2");
  EXPECT_EQ(stringAt(root, "/transaction/messages/0/details/ver"), "OWASP_CRS/3.3.4");
  EXPECT_EQ(stringAt(root, "/transaction/messages/0/details/maturity"), "0");
  EXPECT_EQ(stringAt(root, "/transaction/messages/0/details/accuracy"), "0");
  EXPECT_EQ(stringAt(root, "/transaction/messages/0/details/tags/1"), "attack-sqli");
  EXPECT_TRUE(exists(root, "/transaction/messages/1"));
}

TEST(Record, NormalRequestHasWebtrapObject) {
  std::string text = serializeRecord(normalRequest(), normalResponse(), loginOutcome(),
                                     sqliInspection(), testMeta());
  Parsed parsed;
  ASSERT_NO_FATAL_FAILURE(parseRecord(text, parsed));
  const auto& root = parsed.root;

  EXPECT_EQ(intAt(root, "/webtrap/schema_version"), 1);
  EXPECT_EQ(stringAt(root, "/webtrap/event_id"), "01938f5e-1c2a-7abc-8def-0123456789ab");
  EXPECT_EQ(stringAt(root, "/webtrap/@timestamp"), "2026-12-04T12:00:00.123456Z");
  EXPECT_EQ(stringAt(root, "/webtrap/sensor/id"), "sensor-1");
  EXPECT_EQ(stringAt(root, "/webtrap/sensor/group"), "eu");
  EXPECT_EQ(stringAt(root, "/webtrap/persona/name"), "wordpress");
  EXPECT_EQ(stringAt(root, "/webtrap/persona/product"), "WordPress 6.4");
  EXPECT_EQ(stringAt(root, "/webtrap/listener/name"), "web");
  EXPECT_FALSE(boolAt(root, "/webtrap/listener/bait"));
  EXPECT_EQ(stringAt(root, "/webtrap/connection/id"), "c-1");
  EXPECT_EQ(intAt(root, "/webtrap/connection/request_index"), 2);
  EXPECT_FALSE(exists(root, "/webtrap/tls"));

  EXPECT_EQ(stringAt(root, "/webtrap/request/line"), "POST /login.php?next=%2F HTTP/1.1");
  EXPECT_EQ(stringAt(root, "/webtrap/request/headers/0/0"), "Host");
  EXPECT_EQ(stringAt(root, "/webtrap/request/headers/3/1"), "18");
  EXPECT_EQ(intAt(root, "/webtrap/request/body_size"), 18);
  EXPECT_EQ(stringAt(root, "/webtrap/request/body_sha256"), sha256Hex("user=a&pass=b%27--"));
  EXPECT_FALSE(boolAt(root, "/webtrap/request/body_truncated"));
  EXPECT_FALSE(boolAt(root, "/webtrap/request/chunked"));
  EXPECT_FALSE(exists(root, "/webtrap/request/raw_head"));

  EXPECT_TRUE(boolAt(root, "/webtrap/parse/ok"));
  EXPECT_EQ(stringAt(root, "/webtrap/parse/error"), "");
  EXPECT_EQ(stringAt(root, "/webtrap/route/name"), "login");
  EXPECT_EQ(stringAt(root, "/webtrap/route/kind"), "login");
  EXPECT_EQ(stringAt(root, "/webtrap/baits/0/kind"), "credential_canary");
  EXPECT_EQ(stringAt(root, "/webtrap/baits/0/detail"), "user=a");
  EXPECT_EQ(stringAt(root, "/webtrap/issued_tokens/0"), "AKIAFAKE0000EXAMPLE");

  EXPECT_EQ(stringAt(root, "/webtrap/inspection/status"), toString(InspectionStatus::kComplete));
  EXPECT_EQ(intAt(root, "/webtrap/inspection/duration_us"), 850);
  EXPECT_EQ(intAt(root, "/webtrap/inspection/anomaly_score"), 5);
  EXPECT_EQ(stringAt(root, "/webtrap/inspection/rule_ids/0"), "942100");
  EXPECT_FALSE(exists(root, "/webtrap/inspection/rule_ids/1")) << "rule ids are distinct";

  EXPECT_EQ(intAt(root, "/webtrap/timings/headers_us"), 120);
  EXPECT_EQ(intAt(root, "/webtrap/timings/response_us"), 400);
  EXPECT_TRUE(isNullAt(root, "/webtrap/timings/inspection_us"));
  EXPECT_EQ(encodedCount(root), 0u);
}

TEST(Record, TlsObjectOnlyWhenTls) {
  CapturedRequest request = normalRequest();
  request.tls = {true, "shop.example", "TLSv1.3", "TLS_AES_256_GCM_SHA384"};
  std::string text =
      serializeRecord(request, normalResponse(), loginOutcome(), sqliInspection(), testMeta());
  Parsed parsed;
  ASSERT_NO_FATAL_FAILURE(parseRecord(text, parsed));
  EXPECT_EQ(stringAt(parsed.root, "/webtrap/tls/sni"), "shop.example");
  EXPECT_EQ(stringAt(parsed.root, "/webtrap/tls/version"), "TLSv1.3");
  EXPECT_EQ(stringAt(parsed.root, "/webtrap/tls/cipher"), "TLS_AES_256_GCM_SHA384");
}

TEST(Record, SeverityUnsetIsZeroLikeLibmodsecurity) {
  InspectionResult inspection = sqliInspection();
  inspection.matches.resize(1);
  inspection.matches[0].severity = -1;
  std::string text =
      serializeRecord(normalRequest(), normalResponse(), loginOutcome(), inspection, testMeta());
  Parsed parsed;
  ASSERT_NO_FATAL_FAILURE(parseRecord(text, parsed));
  EXPECT_EQ(stringAt(parsed.root, "/transaction/messages/0/details/severity"), "0");
}

TEST(Record, ParseErrorWithBinaryJunkSerializes) {
  CapturedRequest request;
  request.client = {"2001:db8::1", 40000};
  request.server = {"::1", 8443};
  request.listener = "bait-8443";
  request.bait_listener = true;
  request.parsed = false;
  request.parse_error = "bad method";
  request.raw_head = std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\x00\xff\r\n", 15);
  request.raw_head_truncated = true;
  request.received_at = kReceivedAt;
  InspectionResult shed;
  shed.status = InspectionStatus::kShed;

  std::string text = serializeRecord(request, PersonaResponse{}, RouteOutcome{}, shed, testMeta());
  Parsed parsed;
  ASSERT_NO_FATAL_FAILURE(parseRecord(text, parsed));
  const auto& root = parsed.root;

  EXPECT_EQ(stringAt(root, "/transaction/request/method"), "-");
  EXPECT_EQ(stringAt(root, "/transaction/request/uri"), "");
  EXPECT_TRUE(isNullAt(root, "/transaction/request/http_version"));
  EXPECT_FALSE(boolAt(root, "/webtrap/parse/ok"));
  EXPECT_EQ(stringAt(root, "/webtrap/parse/error"), "bad method");
  EXPECT_TRUE(boolAt(root, "/webtrap/listener/bait"));
  EXPECT_TRUE(boolAt(root, "/webtrap/request/raw_head_truncated"));
  EXPECT_EQ(stringAt(root, "/webtrap/inspection/status"), toString(InspectionStatus::kShed));
  EXPECT_EQ(encodedBytes(root, "/webtrap/request/raw_head"), request.raw_head);
  EXPECT_EQ(encodedCount(root), 1u);
}

TEST(Record, OddHttpVersionIsNull) {
  for (std::string version : {"", "1", "01.1", "1.", "1.1a", "HTTP/1.1", "1.1.1", "9999.1"}) {
    CapturedRequest request = normalRequest();
    request.http_version = version;
    std::string text =
        serializeRecord(request, normalResponse(), loginOutcome(), sqliInspection(), testMeta());
    Parsed parsed;
    ASSERT_NO_FATAL_FAILURE(parseRecord(text, parsed));
    if (version == "1") {
      EXPECT_EQ(intAt(parsed.root, "/transaction/request/http_version"), 1);
    } else {
      EXPECT_TRUE(isNullAt(parsed.root, "/transaction/request/http_version")) << version;
    }
  }
}

TEST(Record, EncodedMapRestoresNonUtf8Bytes) {
  CapturedRequest request = normalRequest();
  request.target = "/search?q=\xC0\xAF\xFF";
  request.request_line = "GET " + request.target + " HTTP/1.1";
  request.headers.push_back({"X-Bin", "a\xE9z"});
  request.headers.push_back({"X/Odd~Name", "\xFE"});
  request.body = std::string("\x00\x01\x80\x81", 4);

  std::string text =
      serializeRecord(request, normalResponse(), loginOutcome(), sqliInspection(), testMeta());
  Parsed parsed;
  ASSERT_NO_FATAL_FAILURE(parseRecord(text, parsed));
  const auto& root = parsed.root;

  EXPECT_EQ(stringAt(root, "/transaction/request/uri"),
            "/search?q=\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(encodedBytes(root, "/transaction/request/uri"), request.target);
  EXPECT_EQ(encodedBytes(root, "/transaction/request/body"), request.body);
  EXPECT_EQ(encodedBytes(root, "/transaction/request/headers/X-Bin"), "a\xE9z");
  EXPECT_EQ(encodedBytes(root, "/transaction/request/headers/X~1Odd~0Name"), "\xFE");
  EXPECT_EQ(encodedBytes(root, "/webtrap/request/line"), request.request_line);
  EXPECT_EQ(encodedBytes(root, "/webtrap/request/headers/4/1"), "a\xE9z");
  EXPECT_EQ(encodedBytes(root, "/webtrap/request/headers/5/1"), "\xFE");
  EXPECT_EQ(encodedCount(root), 7u);

  // Each pointer resolves to the string it stands for.
  EXPECT_TRUE(exists(root, "/transaction/request/headers/X~1Odd~0Name"));
  EXPECT_EQ(stringAt(root, "/webtrap/request/headers/5/1"), "\xEF\xBF\xBD");
}

TEST(Record, InvalidHeaderNameGetsSanitizedPointer) {
  CapturedRequest request = normalRequest();
  request.headers = {{"X-\xFF", "v\xFF"}};
  std::string text =
      serializeRecord(request, normalResponse(), loginOutcome(), sqliInspection(), testMeta());
  Parsed parsed;
  ASSERT_NO_FATAL_FAILURE(parseRecord(text, parsed));
  EXPECT_EQ(encodedBytes(parsed.root, "/transaction/request/headers/X-\xEF\xBF\xBD"), "v\xFF");
  EXPECT_EQ(encodedBytes(parsed.root, "/webtrap/request/headers/0/0"), "X-\xFF");
  EXPECT_EQ(encodedBytes(parsed.root, "/webtrap/request/headers/0/1"), "v\xFF");
}

TEST(Record, InvalidNamesThatCollideShareOneKey) {
  CapturedRequest request = normalRequest();
  request.headers = {{"\xFE", "1"}, {"\xFF", "2"}};
  std::string text =
      serializeRecord(request, normalResponse(), loginOutcome(), sqliInspection(), testMeta());
  Parsed parsed;
  ASSERT_NO_FATAL_FAILURE(parseRecord(text, parsed));
  simdjson::dom::object headers;
  ASSERT_EQ(parsed.root.at_pointer("/transaction/request/headers").get_object().get(headers),
            simdjson::SUCCESS);
  EXPECT_EQ(headers.size(), 1u);
  EXPECT_EQ(stringAt(parsed.root, "/transaction/request/headers/\xEF\xBF\xBD"), "1, 2");
  EXPECT_EQ(encodedBytes(parsed.root, "/webtrap/request/headers/0/0"), "\xFE");
  EXPECT_EQ(encodedBytes(parsed.root, "/webtrap/request/headers/1/0"), "\xFF");
}

TEST(Record, DuplicateHeadersJoinedInTransaction) {
  CapturedRequest request = normalRequest();
  request.headers = {{"Cookie", "a=1"}, {"Accept", "*/*"}, {"cookie", "b=2"}, {"COOKIE", "c=\xFF"}};
  std::string text =
      serializeRecord(request, normalResponse(), loginOutcome(), sqliInspection(), testMeta());
  Parsed parsed;
  ASSERT_NO_FATAL_FAILURE(parseRecord(text, parsed));
  const auto& root = parsed.root;

  simdjson::dom::object headers;
  ASSERT_EQ(root.at_pointer("/transaction/request/headers").get_object().get(headers),
            simdjson::SUCCESS);
  EXPECT_EQ(headers.size(), 2u);
  EXPECT_EQ(stringAt(root, "/transaction/request/headers/Cookie"), "a=1, b=2, c=\xEF\xBF\xBD");
  EXPECT_FALSE(exists(root, "/transaction/request/headers/cookie"));
  EXPECT_EQ(encodedBytes(root, "/transaction/request/headers/Cookie"), "a=1, b=2, c=\xFF");

  EXPECT_EQ(stringAt(root, "/webtrap/request/headers/2/0"), "cookie");
  EXPECT_EQ(stringAt(root, "/webtrap/request/headers/2/1"), "b=2");
  EXPECT_EQ(stringAt(root, "/webtrap/request/headers/3/0"), "COOKIE");
}

TEST(Record, ManyHeadersJoinedInFirstSeenOrder) {
  CapturedRequest request = normalRequest();
  request.headers.clear();
  for (int i = 0; i < 300; ++i) {
    std::string name = "X-H" + std::to_string(i % 100);
    if (i >= 200) {
      name[0] = 'x';
    }
    request.headers.push_back({name, std::to_string(i)});
  }
  std::string text =
      serializeRecord(request, normalResponse(), loginOutcome(), sqliInspection(), testMeta());
  Parsed parsed;
  ASSERT_NO_FATAL_FAILURE(parseRecord(text, parsed));
  simdjson::dom::object headers;
  ASSERT_EQ(parsed.root.at_pointer("/transaction/request/headers").get_object().get(headers),
            simdjson::SUCCESS);
  EXPECT_EQ(headers.size(), 100u);
  EXPECT_EQ(stringAt(parsed.root, "/transaction/request/headers/X-H7"), "7, 107, 207");
  auto first = *headers.begin();
  EXPECT_EQ(first.key, "X-H0");
}

TEST(Record, ZeroPortsAndEmptyEverything) {
  std::string text = serializeRecord(CapturedRequest{}, PersonaResponse{}, RouteOutcome{},
                                     InspectionResult{}, RecordMeta{});
  Parsed parsed;
  ASSERT_NO_FATAL_FAILURE(parseRecord(text, parsed));
  EXPECT_EQ(intAt(parsed.root, "/transaction/client_port"), 0);
  EXPECT_EQ(intAt(parsed.root, "/transaction/response/http_code"), 200);
}

// Puts random bytes in every attacker-controlled string and checks that the
// record parses and that each encoded entry decodes to bytes that, once
// sanitized, equal the string at its pointer.
TEST(Record, RandomBytesAlwaysGiveValidRecord) {
  std::mt19937 random(2026);
  auto junk = [&](std::size_t max) {
    std::string bytes(random() % (max + 1), '\0');
    for (char& c : bytes) {
      c = static_cast<char>(random());
    }
    return bytes;
  };
  for (int round = 0; round < 2000; ++round) {
    CapturedRequest request = normalRequest();
    request.parsed = round % 2 == 0;
    request.raw_head = junk(64);
    request.request_line = junk(32);
    request.method = junk(8);
    request.target = junk(32);
    request.http_version = junk(4);
    request.headers = {{junk(6), junk(16)}, {junk(2), junk(16)}, {"Host", junk(8)}};
    request.body = junk(64);
    InspectionResult inspection = sqliInspection();
    inspection.matches[0].data = junk(32);
    inspection.matches[1].tags = {junk(8)};

    std::string text =
        serializeRecord(request, normalResponse(), loginOutcome(), inspection, testMeta());
    Parsed parsed;
    ASSERT_NO_FATAL_FAILURE(parseRecord(text, parsed));

    simdjson::dom::object encoded;
    ASSERT_EQ(parsed.root.at_pointer("/webtrap/encoded").get_object().get(encoded),
              simdjson::SUCCESS);
    for (auto field : encoded) {
      std::string_view base64;
      ASSERT_EQ(field.value.get_string().get(base64), simdjson::SUCCESS);
      auto bytes = base64Decode(base64);
      ASSERT_TRUE(bytes.has_value()) << field.key;
      std::string sanitized;
      EXPECT_FALSE(appendSanitizedUtf8(sanitized, *bytes)) << field.key;
      EXPECT_EQ(stringAt(parsed.root, field.key), sanitized)
          << testing::PrintToString(std::string(field.key));
    }
    if (!isValidUtf8(request.target)) {
      EXPECT_EQ(encodedBytes(parsed.root, "/transaction/request/uri"), request.target);
    }
    if (!isValidUtf8(request.body)) {
      EXPECT_EQ(encodedBytes(parsed.root, "/transaction/request/body"), request.body);
    }
  }
}

// Writes sample records for tests/integration/test_record_schema.py, which
// validates them against docs/record-schema.json. Skipped unless the script
// sets WEBTRAP_RECORD_SAMPLES_DIR.
TEST(RecordSamples, WriteForSchemaCheck) {
  const char* dir = std::getenv("WEBTRAP_RECORD_SAMPLES_DIR");
  if (dir == nullptr) {
    GTEST_SKIP() << "WEBTRAP_RECORD_SAMPLES_DIR is not set";
  }
  std::ofstream out(std::filesystem::path(dir) / "samples.ndjson", std::ios::binary);
  ASSERT_TRUE(out) << dir;

  out << serializeRecord(normalRequest(), normalResponse(), loginOutcome(), sqliInspection(),
                         testMeta())
      << '\n';

  CapturedRequest tls = normalRequest();
  tls.tls = {true, "shop.example", "TLSv1.3", "TLS_AES_128_GCM_SHA256"};
  tls.chunked = true;
  tls.body_truncated = true;
  out << serializeRecord(tls, normalResponse(), RouteOutcome{}, InspectionResult{}, testMeta())
      << '\n';

  CapturedRequest broken;
  broken.parsed = false;
  broken.parse_error = "bad version";
  broken.raw_head = std::string("GET /\x00\xff HTTP/9\r\n", 16);
  broken.client = {"198.51.100.4", 1};
  InspectionResult failed;
  failed.status = InspectionStatus::kFailed;
  failed.error = "processURI failed";
  out << serializeRecord(broken, PersonaResponse{}, RouteOutcome{}, failed, testMeta()) << '\n';

  CapturedRequest binary = normalRequest();
  binary.target = "/\xC0\xAF";
  binary.headers.push_back({"X-Bin", "\xFF"});
  binary.headers.push_back({"x-bin", "2"});
  InspectionResult cached = sqliInspection();
  cached.status = InspectionStatus::kCached;
  cached.matches[0].severity = -1;
  out << serializeRecord(binary, normalResponse(), loginOutcome(), cached, testMeta()) << '\n';
  ASSERT_TRUE(out.good());
}

}  // namespace
}  // namespace webtrap::probe
