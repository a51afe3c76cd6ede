// OAT tags in the collector: the decoder reading webtrap.oat and
// webtrap.form, tagging of records that carry no tags, and the ECS threat
// fields with behavioural tags merged in.
#include "collector/ecs_threat.h"

#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <simdjson.h>

#include "collector/ecs.h"
#include "common/encoding.h"
#include "common/oat_ontology.h"
#include "probe/record.h"

namespace webtrap::collector {
namespace {

constexpr std::int64_t kIngestMs = 1796385600123;  // 2026-12-04T12:00:00.123Z

// A probe record of a login POST with SQL injection, a form and a card.
std::string probeLoginRecord(bool with_form, std::string username = "admin") {
  probe::CapturedRequest request;
  request.connection_id = "c-1";
  request.client = {"198.51.100.23", 40404};
  request.server = {"127.0.0.1", 8080};
  request.parsed = true;
  request.request_line = "POST /login.php HTTP/1.1";
  request.method = "POST";
  request.target = "/login.php";
  request.http_version = "1.1";
  request.headers = {{"Host", "shop.example"}};
  request.body = "user=admin&pass=' or 1=1--";
  request.body_size = request.body.size();
  request.body_sha256 = sha256Hex(request.body);
  request.received_at = std::chrono::system_clock::time_point(
      std::chrono::microseconds(1796385600000000));

  probe::RouteOutcome outcome;
  outcome.route = "login";
  outcome.route_kind = "login";
  if (with_form) {
    outcome.form.kind = "login";
    outcome.form.username = username;
    outcome.form.password_sha256 = std::string(64, 'a');
    outcome.form.cards = {{"411111", "1111", true, "0123456789abcdef"}};
    outcome.form.links = 2;
    outcome.form.text_bytes = 40;
  }

  probe::InspectionResult inspection;
  inspection.status = probe::InspectionStatus::kComplete;
  probe::RuleMatch match;
  match.id = "942100";
  match.message = "SQL Injection Attack Detected via libinjection";
  match.version = "OWASP_CRS/3.3.4";
  inspection.matches.push_back(match);

  probe::RecordMeta meta;
  meta.event_id = "01938f5e-1c2a-7abc-8def-00000000beef";
  meta.sensor_id = "sensor-1";
  return probe::serializeRecord(request, probe::PersonaResponse{}, outcome, inspection, meta);
}

AuditRecord decoded(const std::string& json) {
  DecodeOptions options;
  options.origin = "test";
  DecodeResult result = decodeAuditRecord(json, options);
  EXPECT_TRUE(result.ok) << result.error;
  return result.record;
}

std::vector<std::string> ids(const std::vector<OatTag>& tags) {
  std::vector<std::string> out;
  for (const OatTag& tag : tags) {
    out.push_back(tag.id);
  }
  return out;
}

std::vector<std::string> stringsAt(simdjson::dom::element document, std::string_view pointer) {
  std::vector<std::string> values;
  simdjson::dom::array array;
  if (document.at_pointer(pointer).get(array) != simdjson::SUCCESS) {
    ADD_FAILURE() << "no array at " << pointer;
    return values;
  }
  for (auto item : array) {
    values.emplace_back(std::string_view(item.get_string().value()));
  }
  return values;
}

TEST(WebtrapDecoderOat, ReadsProbeTags) {
  AuditRecord record = decoded(probeLoginRecord(true));
  ASSERT_EQ(ids(record.oat_tags), (std::vector<std::string>{"OAT-007", "OAT-008", "OAT-014"}));
  const OatTag& sqli = record.oat_tags[2];
  EXPECT_EQ(sqli.name, "Vulnerability Scanning");
  EXPECT_EQ(sqli.basis, "rule");
  EXPECT_DOUBLE_EQ(sqli.confidence, 0.7);
  EXPECT_EQ(sqli.reason, "crs:942100");
  EXPECT_EQ(sqli.attack, std::vector<std::string>{"T1190"});
  EXPECT_EQ(sqli.version, oat::Ontology::embedded().version());
}

TEST(WebtrapDecoderOat, ReadsFormFacts) {
  AuditRecord record = decoded(probeLoginRecord(true));
  EXPECT_EQ(record.form.kind, "login");
  EXPECT_EQ(record.form.username, "admin");
  EXPECT_EQ(record.form.password_sha256, std::string(64, 'a'));
  ASSERT_EQ(record.form.cards.size(), 1u);
  EXPECT_EQ(record.form.cards[0].bin, "411111");
  EXPECT_EQ(record.form.cards[0].last4, "1111");
  EXPECT_TRUE(record.form.cards[0].luhn_valid);
  EXPECT_EQ(record.form.cards[0].fingerprint, "0123456789abcdef");
  EXPECT_EQ(record.form.links, 2u);
  EXPECT_EQ(record.form.text_bytes, 40u);
}

TEST(WebtrapDecoderOat, FormBytesRestoredFromEncoded) {
  std::string username = "adm\xFFin";
  std::string json = probeLoginRecord(true, username);
  ASSERT_NE(json.find("/webtrap/form/username"), std::string::npos);
  AuditRecord record = decoded(json);
  EXPECT_EQ(record.form.username, username);
}

TEST(WebtrapDecoderOat, RecordWithoutFormOrTagsDecodes) {
  std::string json = probeLoginRecord(false);
  // A record from a probe that predates OAT tags.
  std::size_t begin = json.find(",\"oat\":[");
  ASSERT_NE(begin, std::string::npos);
  std::size_t end = json.find("],\"inspection\"", begin);
  ASSERT_NE(end, std::string::npos);
  json.erase(begin, end + 1 - begin);
  ASSERT_EQ(json.find("\"oat\""), std::string::npos);

  AuditRecord record = decoded(json);
  EXPECT_TRUE(record.oat_tags.empty());
  EXPECT_FALSE(record.oat_tagged);
  EXPECT_TRUE(record.form.kind.empty());
  // The collector tags it from its rule ids instead, without route rules
  // because the record names no route kind.
  EXPECT_EQ(ids(recordOatTags(record)), std::vector<std::string>{"OAT-014"});
}

TEST(WebtrapDecoderOat, BadConfidenceIsRejected) {
  std::string json = probeLoginRecord(false);
  std::size_t at = json.find("\"confidence\":0.7");
  ASSERT_NE(at, std::string::npos);
  json.replace(at, 16, "\"confidence\":7");
  DecodeOptions options;
  DecodeResult result = decodeAuditRecord(json, options);
  EXPECT_FALSE(result.ok);
  EXPECT_NE(result.error.find("webtrap.oat[2].confidence"), std::string::npos) << result.error;
}

TEST(EcsThreat, ModsecRecordTaggedFromRuleIds) {
  AuditRecord record;
  record.format = RecordFormat::kModsec3;
  RuleMessage sqli;
  sqli.rule_id = "942100";
  RuleMessage scanner;
  scanner.rule_id = "913100";
  RuleMessage score;
  score.rule_id = "949110";
  record.messages = {sqli, scanner, score};
  std::vector<OatTag> tags = recordOatTags(record);
  ASSERT_EQ(ids(tags), (std::vector<std::string>{"OAT-004", "OAT-014"}));
  EXPECT_EQ(tags[1].reason, "crs:942100");
  EXPECT_DOUBLE_EQ(tags[1].confidence, 0.7);
}

TEST(EcsThreat, OwnNameMatchGivesNoTag) {
  AuditRecord record;
  record.format = RecordFormat::kModsec3;
  record.request_headers.push_back({"Host", "www.northwind.example"});
  RuleMessage database_name;
  database_name.rule_id = "942140";
  database_name.data = "Matched Data: northwind found within ARGS:user: admin@northwind.example";
  record.messages = {database_name};
  EXPECT_TRUE(recordOatTags(record).empty());
  record.request_headers[0].value = "shop.example";
  EXPECT_EQ(ids(recordOatTags(record)), std::vector<std::string>{"OAT-014"});
}

TEST(EcsThreat, ProbeTagsAreTakenAsWritten) {
  AuditRecord record;
  record.format = RecordFormat::kWebtrap;
  RuleMessage sqli;
  sqli.rule_id = "942100";
  record.messages = {sqli};
  record.oat_tags = {oat::Ontology::embedded().tag("OAT-018", "rule", 0.5, "bait:fake_port")};
  EXPECT_EQ(ids(recordOatTags(record)), std::vector<std::string>{"OAT-018"});
}

TEST(EcsThreat, EmptyProbeTagsAreNotRedone) {
  AuditRecord record;
  record.format = RecordFormat::kWebtrap;
  RuleMessage sqli;
  sqli.rule_id = "942100";
  record.messages = {sqli};
  record.oat_tagged = true;
  EXPECT_TRUE(recordOatTags(record).empty());
  EXPECT_TRUE(documentOatTags(record, {}).empty());
}

TEST(EcsThreat, DocumentMergesBehaviourTags) {
  AuditRecord record = decoded(probeLoginRecord(true));
  const auto& ontology = oat::Ontology::embedded();
  std::vector<OatTag> behaviour = {
      ontology.tag("OAT-008", "behaviour", 0.9, "behaviour:pairs=40 window=120s"),
      ontology.tag("OAT-015", "behaviour", 0.8, "behaviour:rate=90/s")};
  std::string json = buildEcsDocument(record, GeoFacts{}, {"", "", "probe"}, kIngestMs, behaviour);

  simdjson::dom::parser parser;
  simdjson::dom::element document = parser.parse(json);
  EXPECT_EQ(std::string_view(document["threat"]["framework"].get_string()), "OWASP OAT");
  EXPECT_EQ(stringsAt(document, "/threat/technique/id"),
            (std::vector<std::string>{"OAT-007", "OAT-008", "OAT-014", "OAT-015"}));
  EXPECT_EQ(stringsAt(document, "/threat/technique/name"),
            (std::vector<std::string>{"Credential Cracking", "Credential Stuffing",
                                      "Vulnerability Scanning", "Denial of Service"}));
  std::vector<std::string> references = stringsAt(document, "/threat/technique/reference");
  ASSERT_EQ(references.size(), 4u);
  EXPECT_NE(references[1].find("OAT-008_Credential_Stuffing"), std::string::npos);

  simdjson::dom::array oat = document["webtrap"]["oat"].get_array();
  ASSERT_EQ(oat.size(), 4u);
  simdjson::dom::element stuffing = oat.at(1);
  EXPECT_EQ(std::string_view(stuffing["basis"].get_string()), "behaviour");
  EXPECT_DOUBLE_EQ(double(stuffing["confidence"].get_double()), 0.9);
  EXPECT_EQ(std::string_view(stuffing["reason"].get_string()), "behaviour:pairs=40 window=120s");
  simdjson::dom::element cracking = oat.at(0);
  EXPECT_EQ(std::string_view(cracking["basis"].get_string()), "rule");
  EXPECT_EQ(std::string_view(cracking["attack"].at(0).get_string()), "T1110.001");
}

TEST(EcsThreat, UntaggedRecordHasNoThreatFields) {
  AuditRecord record;
  record.format = RecordFormat::kModsec3;
  record.method = "GET";
  record.uri = "/";
  std::string json = buildEcsDocument(record, GeoFacts{}, {"", "", "file"}, kIngestMs);
  simdjson::dom::parser parser;
  simdjson::dom::element document = parser.parse(json);
  EXPECT_EQ(document["threat"].error(), simdjson::NO_SUCH_FIELD);
  EXPECT_EQ(document["webtrap"]["oat"].error(), simdjson::NO_SUCH_FIELD);
}

}  // namespace
}  // namespace webtrap::collector
