#include "probe/oat_tags.h"

#include <string>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <simdjson.h>

#include "common/encoding.h"
#include "common/oat_tagging.h"
#include "common/own_name.h"
#include "probe/record.h"

namespace webtrap::probe {
namespace {

const OatTag* findTag(const std::vector<OatTag>& tags, std::string_view id) {
  for (const OatTag& tag : tags) {
    if (tag.id == id) {
      return &tag;
    }
  }
  return nullptr;
}

RuleMatch ruleMatch(std::string id, std::vector<std::string> tags = {}, std::string data = "") {
  RuleMatch match;
  match.id = std::move(id);
  match.tags = std::move(tags);
  match.data = std::move(data);
  return match;
}

// CRS 913100's logdata for a scanner name found in the User-Agent.
RuleMatch scannerMatch(std::string_view name, std::string_view agent) {
  return ruleMatch("913100", {"attack-reputation-scanner"},
                   fmt::format("Matched Data: {} found within REQUEST_HEADERS:User-Agent: {}",
                               name, agent));
}

InspectionResult inspected(std::vector<RuleMatch> matches) {
  InspectionResult inspection;
  inspection.status = InspectionStatus::kComplete;
  inspection.matches = std::move(matches);
  return inspection;
}

RouteOutcome route(std::string kind) {
  RouteOutcome outcome;
  outcome.route = kind;
  outcome.route_kind = std::move(kind);
  return outcome;
}

TEST(ProbeOatTags, SqlInjectionIsVulnerabilityScanning) {
  auto tags = tagProbeRequest("GET", route("page"), inspected({ruleMatch("942100")}));
  ASSERT_EQ(tags.size(), 1u);
  EXPECT_EQ(tags[0].id, "OAT-014");
  EXPECT_EQ(tags[0].name, "Vulnerability Scanning");
  EXPECT_EQ(tags[0].basis, "rule");
  EXPECT_DOUBLE_EQ(tags[0].confidence, 0.7);
  EXPECT_EQ(tags[0].reason, "crs:942100");
  EXPECT_EQ(tags[0].attack, std::vector<std::string>{"T1190"});
  EXPECT_EQ(tags[0].version, oat::Ontology::embedded().version());
}

TEST(ProbeOatTags, OneTagPerIdWithHighestConfidence) {
  // 941 gives OAT-014 at 0.6, 942 at 0.7, 930 at 0.7 (first of the two).
  auto tags = tagProbeRequest(
      "GET", route("page"),
      inspected({ruleMatch("941100"), ruleMatch("930120"), ruleMatch("942100")}));
  ASSERT_EQ(tags.size(), 1u);
  EXPECT_DOUBLE_EQ(tags[0].confidence, 0.7);
  EXPECT_EQ(tags[0].reason, "crs:930120");
}

TEST(ProbeOatTags, SpecificRuleOverridesFamily) {
  auto family = tagProbeRequest("GET", route("page"), inspected({ruleMatch("913100")}));
  EXPECT_NE(findTag(family, "OAT-004"), nullptr);
  EXPECT_NE(findTag(family, "OAT-014"), nullptr);
  EXPECT_EQ(findTag(family, "OAT-011"), nullptr);

  auto crawler = tagProbeRequest("GET", route("page"), inspected({ruleMatch("913102")}));
  ASSERT_EQ(crawler.size(), 1u);
  EXPECT_EQ(crawler[0].id, "OAT-011");
}

TEST(ProbeOatTags, RestrictedFileIsAmbiguous) {
  // 930130 reports a path such as /.git/config, not an attack payload, so
  // it stays below 0.5 for both candidates, unlike the rest of 930.
  auto path = tagProbeRequest("GET", route("page"), inspected({ruleMatch("930130")}));
  ASSERT_EQ(path.size(), 2u);
  EXPECT_EQ(path[0].id, "OAT-014");
  EXPECT_LT(path[0].confidence, 0.5);
  EXPECT_EQ(path[1].id, "OAT-018");
  EXPECT_LT(path[1].confidence, 0.5);

  auto payload = tagProbeRequest("GET", route("page"), inspected({ruleMatch("930120")}));
  ASSERT_EQ(payload.size(), 1u);
  EXPECT_GE(payload[0].confidence, 0.5);
}

TEST(ProbeOatTags, ScannerNameTellsToolsApart) {
  auto whatweb = tagProbeRequest(
      "GET", route("page"), inspected({scannerMatch("whatweb", "whatweb/0.5.5")}));
  ASSERT_EQ(whatweb.size(), 1u);
  EXPECT_EQ(whatweb[0].id, "OAT-004");
  EXPECT_GE(whatweb[0].confidence, 0.5);

  auto nikto = tagProbeRequest("GET", route("page"),
                               inspected({scannerMatch("nikto", "mozilla/5.00 (nikto/2.1.6)")}));
  ASSERT_EQ(nikto.size(), 1u);
  EXPECT_EQ(nikto[0].id, "OAT-014");
  EXPECT_GE(nikto[0].confidence, 0.5);

  auto hydra = tagProbeRequest("POST", route("page"),
                               inspected({scannerMatch("(hydra)", "mozilla/4.0 (hydra)")}));
  ASSERT_EQ(hydra.size(), 2u);
  EXPECT_EQ(hydra[0].id, "OAT-007");
  EXPECT_LT(hydra[0].confidence, 0.5);
  EXPECT_EQ(hydra[1].id, "OAT-008");
}

TEST(ProbeOatTags, UnlistedScannerFallsBackToFamily) {
  auto tags = tagProbeRequest("GET", route("page"),
                              inspected({scannerMatch("cgichk", "cgichk 1.0")}));
  ASSERT_EQ(tags.size(), 2u);
  EXPECT_EQ(tags[0].id, "OAT-004");
  EXPECT_DOUBLE_EQ(tags[0].confidence, 0.4);
  EXPECT_EQ(tags[1].id, "OAT-014");
}

// nmap's http-enum probe list contains a few path traversal checks. On a
// request whose User-Agent names nmap, CRS 930 gives OAT-014 only below 0.5.
TEST(ProbeOatTags, NmapTraversalCheckStaysBelowActionLevel) {
  RuleMatch nmap = scannerMatch(
      "nmap scripting engine",
      "Mozilla/5.0 (compatible; Nmap Scripting Engine; https://nmap.org/book/nse.html)");
  auto tags = tagProbeRequest("GET", route("page"),
                              inspected({nmap, ruleMatch("930100"), ruleMatch("932160")}));
  const OatTag* scanning = findTag(tags, "OAT-014");
  ASSERT_NE(scanning, nullptr);
  EXPECT_DOUBLE_EQ(scanning->confidence, oat::kToolCheckConfidence);
  EXPECT_NE(scanning->reason.find("tool:nmap"), std::string::npos) << scanning->reason;
  const OatTag* fingerprinting = findTag(tags, "OAT-004");
  ASSERT_NE(fingerprinting, nullptr);
  EXPECT_GE(fingerprinting->confidence, 0.5);
}

// Only the rules listed as the tool's checks are discounted: a SQL injection
// payload under nmap's User-Agent is still scanning at full confidence.
TEST(ProbeOatTags, ToolAgentKeepsOtherPayloads) {
  RuleMatch nmap = scannerMatch("nmap scripting engine", "Nmap Scripting Engine");
  auto tags = tagProbeRequest("GET", route("page"), inspected({nmap, ruleMatch("942100")}));
  const OatTag* scanning = findTag(tags, "OAT-014");
  ASSERT_NE(scanning, nullptr);
  EXPECT_DOUBLE_EQ(scanning->confidence, 0.7);
  EXPECT_EQ(scanning->reason, "crs:942100");

  // Without a tool in the User-Agent the traversal keeps its family's confidence.
  auto plain = tagProbeRequest("GET", route("page"), inspected({ruleMatch("930100")}));
  const OatTag* plain_scanning = findTag(plain, "OAT-014");
  ASSERT_NE(plain_scanning, nullptr);
  EXPECT_DOUBLE_EQ(plain_scanning->confidence, 0.7);

  // A vulnerability scanner's traversal is what it is made for: not discounted.
  auto nikto = tagProbeRequest(
      "GET", route("page"),
      inspected({scannerMatch("nikto", "mozilla/5.00 (nikto/2.1.6)"), ruleMatch("930100")}));
  const OatTag* nikto_scanning = findTag(nikto, "OAT-014");
  ASSERT_NE(nikto_scanning, nullptr);
  EXPECT_DOUBLE_EQ(nikto_scanning->confidence, 0.7);
}

TEST(ProbeOatTags, OwnNameMatchGivesNoTag) {
  RuleMatch database_name =
      ruleMatch("942140", {"attack-sqli"},
                "Matched Data: northwind found within ARGS:user: admin@northwind.example");
  auto own = tagProbeRequest("POST", "www.northwind.example:8080", route("login"),
                             inspected({database_name}));
  EXPECT_EQ(findTag(own, "OAT-014"), nullptr);
  EXPECT_NE(findTag(own, "OAT-007"), nullptr);
  auto other = tagProbeRequest("POST", "shop.example", route("login"), inspected({database_name}));
  ASSERT_NE(findTag(other, "OAT-014"), nullptr);
  EXPECT_DOUBLE_EQ(findTag(other, "OAT-014")->confidence, 0.7);
}

TEST(OwnName, MatchesOnlyWholeHostLabels) {
  constexpr std::string_view kData =
      "Matched Data: northwind found within ARGS:user: admin@northwind.example";
  EXPECT_TRUE(oat::isOwnNameMatch("942140", kData, "www.northwind.example"));
  EXPECT_TRUE(oat::isOwnNameMatch("942140", kData, "NorthWind.example:443"));
  EXPECT_TRUE(oat::isOwnNameMatch("942140", kData, "www.northwind.example."));
  EXPECT_FALSE(oat::isOwnNameMatch("942140", kData, "northwinds.example"));
  EXPECT_FALSE(oat::isOwnNameMatch("942140", kData, "shop.northwind"));  // the top-level label
  EXPECT_FALSE(oat::isOwnNameMatch("942140", kData, "northwind"));
  EXPECT_FALSE(oat::isOwnNameMatch("942140", kData, "127.0.0.1:8080"));
  EXPECT_FALSE(oat::isOwnNameMatch("942140", kData, "[::1]:8080"));
  EXPECT_FALSE(oat::isOwnNameMatch("942140", kData, ""));
  EXPECT_FALSE(oat::isOwnNameMatch("942140", "northwind", "www.northwind.example"));
  EXPECT_FALSE(oat::isOwnNameMatch(
      "942140", "Matched Data: northwind union found within ARGS:q: northwind union",
      "www.northwind.example"));
  // Only CRS attack rules are discounted.
  EXPECT_FALSE(oat::isOwnNameMatch("913100", kData, "www.northwind.example"));
  EXPECT_FALSE(oat::isOwnNameMatch("920440", kData, "www.northwind.example"));
  EXPECT_TRUE(oat::isOwnNameMatch("930120", kData, "www.northwind.example"));
}

TEST(ProbeOatTags, UnmappedRulesGiveNoTag) {
  // 949110 is CRS's inbound anomaly score check, 980130 its correlation.
  auto tags = tagProbeRequest("GET", route("page"),
                              inspected({ruleMatch("949110"), ruleMatch("980130")}));
  EXPECT_TRUE(tags.empty());
}

TEST(ProbeOatTags, RobotsTrapGivesScrapingAndFootprinting) {
  RouteOutcome outcome = route("canary");
  outcome.baits = {{"robots_trap", "/admin-old/"}};
  auto tags = tagProbeRequest("GET", outcome, inspected({}));
  ASSERT_EQ(tags.size(), 2u);
  EXPECT_EQ(tags[0].id, "OAT-011");
  EXPECT_EQ(tags[0].reason, "bait:robots_trap");
  EXPECT_EQ(tags[1].id, "OAT-018");
}

TEST(ProbeOatTags, HoneytrapRuleTagCountsAsBait) {
  auto tags = tagProbeRequest(
      "GET", route("page"),
      inspected({ruleMatch("77040", {"webtrap/honeytrap", "webtrap/bait/honeytoken"})}));
  ASSERT_EQ(tags.size(), 1u);
  EXPECT_EQ(tags[0].id, "OAT-011");
  EXPECT_EQ(tags[0].reason, "bait:honeytoken");
}

TEST(ProbeOatTags, LoginPostIsCrackingOrStuffing) {
  auto tags = tagProbeRequest("POST", route("login"), inspected({}));
  ASSERT_EQ(tags.size(), 2u);
  EXPECT_EQ(tags[0].id, "OAT-007");
  EXPECT_EQ(tags[1].id, "OAT-008");
  EXPECT_EQ(tags[0].reason, "route:login POST");
  EXPECT_LT(tags[0].confidence, 0.5);
  EXPECT_LT(tags[1].confidence, 0.5);
}

TEST(ProbeOatTags, LoginGetGivesNoTag) {
  EXPECT_TRUE(tagProbeRequest("GET", route("login"), inspected({})).empty());
}

TEST(ProbeOatTags, FormRoutesMapToTheirThreats) {
  EXPECT_EQ(tagProbeRequest("POST", route("register"), inspected({})).at(0).id, "OAT-019");
  EXPECT_EQ(tagProbeRequest("POST", route("coupon"), inspected({})).at(0).id, "OAT-002");
  auto checkout = tagProbeRequest("POST", route("checkout"), inspected({}));
  ASSERT_EQ(checkout.size(), 2u);
  EXPECT_EQ(checkout[0].id, "OAT-001");
  EXPECT_EQ(checkout[1].id, "OAT-010");
}

TEST(ProbeOatTags, CommentWithLinksIsSpam) {
  RouteOutcome outcome = route("comment");
  outcome.form.kind = "comment";
  outcome.form.links = 0;
  EXPECT_TRUE(tagProbeRequest("POST", outcome, inspected({})).empty());

  outcome.form.links = 3;
  auto tags = tagProbeRequest("POST", outcome, inspected({}));
  ASSERT_EQ(tags.size(), 1u);
  EXPECT_EQ(tags[0].id, "OAT-017");
  EXPECT_EQ(tags[0].reason, "route:comment POST links=3");
}

TEST(ProbeOatTags, ShedInspectionTagsFromBaitsAndRoute) {
  InspectionResult shed;
  shed.status = InspectionStatus::kShed;
  RouteOutcome outcome = route("login");
  outcome.baits = {{"cookie", "user_role=admin"}};
  auto tags = tagProbeRequest("POST", outcome, shed);
  ASSERT_EQ(tags.size(), 3u);
  EXPECT_EQ(tags[0].id, "OAT-007");
  EXPECT_EQ(tags[1].id, "OAT-008");
  EXPECT_EQ(tags[2].id, "OAT-014");
  EXPECT_EQ(tags[2].reason, "bait:cookie");
}

TEST(OatMerge, KeepsHighestConfidenceAndSortsById) {
  const auto& ontology = oat::Ontology::embedded();
  std::vector<OatTag> tags = {ontology.tag("OAT-014", "rule", 0.7, "crs:942100"),
                              ontology.tag("OAT-007", "rule", 0.3, "route:login POST")};
  std::vector<OatTag> behaviour = {ontology.tag("OAT-007", "behaviour", 0.9, "behaviour:x"),
                                   ontology.tag("OAT-014", "behaviour", 0.5, "behaviour:y"),
                                   ontology.tag("OAT-004", "behaviour", 0.6, "behaviour:z")};
  oat::mergeOatTags(tags, behaviour);
  ASSERT_EQ(tags.size(), 3u);
  EXPECT_EQ(tags[0].id, "OAT-004");
  EXPECT_EQ(tags[1].id, "OAT-007");
  EXPECT_EQ(tags[1].basis, "behaviour");
  EXPECT_DOUBLE_EQ(tags[1].confidence, 0.9);
  EXPECT_EQ(tags[2].id, "OAT-014");
  EXPECT_EQ(tags[2].basis, "rule");
}

TEST(OatMerge, TieKeepsEarlierTag) {
  const auto& ontology = oat::Ontology::embedded();
  std::vector<OatTag> tags = {ontology.tag("OAT-011", "rule", 0.5, "first")};
  OatTag later = ontology.tag("OAT-011", "behaviour", 0.5, "second");
  oat::mergeOatTags(tags, std::span<const OatTag>(&later, 1));
  ASSERT_EQ(tags.size(), 1u);
  EXPECT_EQ(tags[0].reason, "first");
}

// The tags reach the record as webtrap.oat.
TEST(ProbeRecordOat, RecordCarriesOatArray) {
  CapturedRequest request;
  request.connection_id = "c-1";
  request.client = {"203.0.113.7", 51515};
  request.server = {"127.0.0.1", 8080};
  request.parsed = true;
  request.request_line = "POST /login.php HTTP/1.1";
  request.method = "POST";
  request.target = "/login.php";
  request.http_version = "1.1";
  request.body = "user=admin&pass=x' or 1=1--";
  request.body_size = request.body.size();
  request.body_sha256 = sha256Hex(request.body);
  RecordMeta meta;
  meta.event_id = "01938f5e-1c2a-7abc-8def-0123456789ab";
  std::string json = serializeRecord(request, PersonaResponse{}, route("login"),
                                     inspected({ruleMatch("942100")}), meta);

  simdjson::dom::parser parser;
  simdjson::dom::element record = parser.parse(json);
  simdjson::dom::array oat = record["webtrap"]["oat"].get_array();
  ASSERT_EQ(oat.size(), 3u);
  std::vector<std::string> ids;
  for (simdjson::dom::element tag : oat) {
    ids.emplace_back(std::string_view(tag["id"].get_string()));
  }
  EXPECT_EQ(ids, (std::vector<std::string>{"OAT-007", "OAT-008", "OAT-014"}));
  simdjson::dom::element sqli = oat.at(2);
  EXPECT_EQ(std::string_view(sqli["name"].get_string()), "Vulnerability Scanning");
  EXPECT_EQ(std::string_view(sqli["basis"].get_string()), "rule");
  EXPECT_DOUBLE_EQ(double(sqli["confidence"].get_double()), 0.7);
  EXPECT_EQ(std::string_view(sqli["reason"].get_string()), "crs:942100");
  EXPECT_EQ(std::string_view(sqli["attack"].at(0).get_string()), "T1190");
  EXPECT_EQ(std::string_view(sqli["version"].get_string()), oat::Ontology::embedded().version());
}

TEST(ProbeRecordOat, UntaggedRecordHasEmptyArray) {
  CapturedRequest request;
  request.parsed = true;
  request.method = "GET";
  request.target = "/";
  RecordMeta meta;
  meta.event_id = "01938f5e-1c2a-7abc-8def-0123456789ab";
  std::string json =
      serializeRecord(request, PersonaResponse{}, route("page"), inspected({}), meta);
  simdjson::dom::parser parser;
  simdjson::dom::element record = parser.parse(json);
  simdjson::dom::array oat = record["webtrap"]["oat"].get_array();
  EXPECT_EQ(oat.size(), 0u);
}

}  // namespace
}  // namespace webtrap::probe
