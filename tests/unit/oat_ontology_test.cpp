#include "common/oat_ontology.h"

#include <array>
#include <set>
#include <stdexcept>
#include <string>

#include <gtest/gtest.h>

#include "common/oat_tagging.h"

namespace webtrap::oat {
namespace {

// OWASP Automated Threat Handbook - Web Applications v1.30 (March 2026).
constexpr std::array<std::pair<const char*, const char*>, 21> kHandbookNames = {{
    {"OAT-001", "Carding"},
    {"OAT-002", "Token Cracking"},
    {"OAT-003", "Cost-Inflation Fraud"},
    {"OAT-004", "Fingerprinting"},
    {"OAT-005", "Scalping"},
    {"OAT-006", "Expediting"},
    {"OAT-007", "Credential Cracking"},
    {"OAT-008", "Credential Stuffing"},
    {"OAT-009", "CAPTCHA Defeat"},
    {"OAT-010", "Card Cracking"},
    {"OAT-011", "Scraping"},
    {"OAT-012", "Cashing Out"},
    {"OAT-013", "Sniping"},
    {"OAT-014", "Vulnerability Scanning"},
    {"OAT-015", "Denial of Service"},
    {"OAT-016", "Skewing"},
    {"OAT-017", "Spamming"},
    {"OAT-018", "Footprinting"},
    {"OAT-019", "Account Creation"},
    {"OAT-020", "Account Aggregation"},
    {"OAT-021", "Denial of Inventory"},
}};

TEST(OatOntology, EmbeddedHasAllTwentyOneThreatsInOrder) {
  const Ontology& ontology = Ontology::embedded();
  ASSERT_EQ(ontology.threats().size(), kHandbookNames.size());
  for (std::size_t i = 0; i < kHandbookNames.size(); ++i) {
    EXPECT_EQ(ontology.threats()[i].id, kHandbookNames[i].first);
    EXPECT_EQ(ontology.threats()[i].name, kHandbookNames[i].second) << kHandbookNames[i].first;
  }
}

TEST(OatOntology, FindReturnsThreatByIdOrNull) {
  const Ontology& ontology = Ontology::embedded();
  const Threat* threat = ontology.find("OAT-003");
  ASSERT_NE(threat, nullptr);
  EXPECT_EQ(threat->name, "Cost-Inflation Fraud");
  EXPECT_EQ(ontology.find("OAT-022"), nullptr);
  EXPECT_EQ(ontology.find(""), nullptr);
}

TEST(OatOntology, VersionsArePresent) {
  const Ontology& ontology = Ontology::embedded();
  EXPECT_TRUE(ontology.version().starts_with("webtrap-oat-")) << ontology.version();
  EXPECT_EQ(ontology.handbookVersion(), "1.3");
  EXPECT_FALSE(ontology.handbookName().empty());
  EXPECT_TRUE(ontology.handbookUrl().starts_with("https://owasp.org/"));
}

TEST(OatOntology, EveryThreatHasSummaryReferenceAndWasc) {
  for (const Threat& threat : Ontology::embedded().threats()) {
    EXPECT_FALSE(threat.summary.empty()) << threat.id;
    EXPECT_TRUE(threat.reference.starts_with("https://owasp.org/")) << threat.id;
    EXPECT_NE(threat.reference.find(threat.id), std::string::npos) << threat.id;
    EXPECT_FALSE(threat.wasc.empty()) << threat.id;
    if (!threat.observable) {
      EXPECT_FALSE(threat.unobservable_reason.empty()) << threat.id;
    }
  }
}

TEST(OatOntology, CashingOutIsNotObservable) {
  const Threat* threat = Ontology::embedded().find("OAT-012");
  ASSERT_NE(threat, nullptr);
  EXPECT_FALSE(threat->observable);
}

TEST(OatOntology, EveryRulePointsAtKnownThreat) {
  const Ontology& ontology = Ontology::embedded();
  ASSERT_FALSE(ontology.requestRules().empty());
  for (const RequestRule& rule : ontology.requestRules()) {
    const Threat* threat = ontology.find(rule.oat);
    ASSERT_NE(threat, nullptr) << rule.source << " " << rule.match;
    // A rule that tags a threat the honeypot cannot see would be a contradiction.
    EXPECT_TRUE(threat->observable) << rule.oat << " from " << rule.match;
    EXPECT_GT(rule.confidence, 0.0);
    EXPECT_LE(rule.confidence, 1.0);
  }
}

TEST(OatOntology, RulesCoverCrsFamiliesAndBaits) {
  std::set<std::string> crs;
  std::set<std::string> baits;
  for (const RequestRule& rule : Ontology::embedded().requestRules()) {
    (rule.source == "crs" ? crs : baits).insert(rule.match);
  }
  for (const char* family : {"913", "920", "921", "930", "931", "932", "933", "934", "941",
                             "942", "943", "944"}) {
    EXPECT_TRUE(crs.count(family)) << family;
  }
  for (const char* kind : {"fake_port", "robots_trap", "comment_trap", "form_field", "cookie",
                           "credential_canary", "honeytoken"}) {
    EXPECT_TRUE(baits.count(kind)) << kind;
  }
}

TEST(OatOntology, TagFillsNameAttackAndVersion) {
  const Ontology& ontology = Ontology::embedded();
  OatTag tag = ontology.tag("OAT-008", "behaviour", 0.8, "behaviour:pairs=40");
  EXPECT_EQ(tag.id, "OAT-008");
  EXPECT_EQ(tag.name, "Credential Stuffing");
  EXPECT_EQ(tag.basis, "behaviour");
  EXPECT_DOUBLE_EQ(tag.confidence, 0.8);
  EXPECT_EQ(tag.reason, "behaviour:pairs=40");
  EXPECT_EQ(tag.attack, std::vector<std::string>{"T1110.004"});
  EXPECT_EQ(tag.version, ontology.version());
}

TEST(OatOntology, TagRejectsUnknownId) {
  EXPECT_THROW(Ontology::embedded().tag("OAT-099", "rule", 0.5, ""), std::invalid_argument);
}

constexpr const char* kMinimal = R"(
version: test-1
handbook: {name: Handbook, version: "1.3", url: "https://owasp.org/x"}
threats:
  - {id: OAT-001, name: Carding, summary: s, reference: "https://owasp.org/OAT-001",
     wasc: [WASC-21]}
request_rules:
  - {source: crs, match: "942", oat: OAT-001, confidence: 0.5}
)";

TEST(OatOntologyYaml, MinimalDocumentParses) {
  Ontology ontology = Ontology::fromYaml(kMinimal);
  EXPECT_EQ(ontology.version(), "test-1");
  ASSERT_EQ(ontology.threats().size(), 1u);
  ASSERT_EQ(ontology.requestRules().size(), 1u);
  EXPECT_EQ(ontology.requestRules()[0].oat, "OAT-001");
}

// Replaces the first `from` in kMinimal with `to`.
std::string minimalWith(std::string_view from, std::string_view to) {
  std::string text = kMinimal;
  std::size_t at = text.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  text.replace(at, from.size(), to);
  return text;
}

void expectRejected(const std::string& yaml, std::string_view expected_words) {
  try {
    Ontology::fromYaml(yaml);
    FAIL() << "accepted:\n" << yaml;
  } catch (const std::invalid_argument& error) {
    EXPECT_NE(std::string(error.what()).find(expected_words), std::string::npos) << error.what();
  }
}

TEST(OatOntologyYaml, RuleWithUnknownOatIsRejected) {
  expectRejected(minimalWith("oat: OAT-001", "oat: OAT-002"), "OAT-002");
}

TEST(OatOntologyYaml, ConfidenceOutsideRangeIsRejected) {
  expectRejected(minimalWith("confidence: 0.5", "confidence: 1.5"), "at most 1");
  expectRejected(minimalWith("confidence: 0.5", "confidence: high"), "not a number");
}

TEST(OatOntologyYaml, MalformedIdsAreRejected) {
  expectRejected(minimalWith("id: OAT-001", "id: OAT-1"), "OAT-1");
  expectRejected(minimalWith("wasc: [WASC-21]", "wasc: [21]"), "WASC-21");
  expectRejected(minimalWith("confidence: 0.5}", "confidence: 0.5, attack: [1190]}"), "such as T1190");
}

TEST(OatOntologyYaml, UnknownKeyIsRejected) {
  expectRejected(minimalWith("summary: s", "summary: s, sumary: t"), "unknown key 'sumary'");
}

TEST(OatOntologyYaml, UnobservableWithoutReasonIsRejected) {
  expectRejected(minimalWith("wasc: [WASC-21]", "wasc: [WASC-21], observable: false"),
                 "unobservable_reason");
}

TEST(OatOntologyYaml, BadRouteMatchIsRejected) {
  expectRejected(minimalWith("source: crs, match: \"942\"", "source: route, match: login"),
                 "<route kind> <METHOD>");
}

TEST(OatOntologyYaml, DataOnlyForCrsRules) {
  expectRejected(minimalWith("source: crs, match: \"942\"",
                             "source: bait, match: cookie, data: [x]"),
                 "only crs rules take 'data'");
  Ontology ontology = Ontology::fromYaml(minimalWith("match: \"942\"",
                                                     "match: \"913100\", data: [whatweb]"));
  EXPECT_EQ(ontology.requestRules()[0].data, std::vector<std::string>{"whatweb"});
}

TEST(OatOntology, FindToolByUserAgentToken) {
  const Ontology& ontology = Ontology::embedded();
  const Tool* nmap = ontology.findTool(
      "Mozilla/5.0 (compatible; Nmap Scripting Engine; https://nmap.org/book/nse.html)");
  ASSERT_NE(nmap, nullptr);
  EXPECT_EQ(nmap->name, "nmap");
  EXPECT_TRUE(nmap->isFor("OAT-018"));
  EXPECT_FALSE(nmap->isFor("OAT-014"));
  EXPECT_TRUE(nmap->checkTriggers("930110"));
  EXPECT_FALSE(nmap->checkTriggers("942100"));

  const Tool* whatweb = ontology.findTool("WhatWeb/0.5.5");
  ASSERT_NE(whatweb, nullptr);
  EXPECT_EQ(whatweb->footprint_paths, 3u);
  const Tool* gobuster = ontology.findTool("gobuster/3.5");
  ASSERT_NE(gobuster, nullptr);
  EXPECT_TRUE(gobuster->isFor("OAT-014"));

  EXPECT_EQ(ontology.findTool("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Firefox/128.0"),
            nullptr);
  EXPECT_EQ(ontology.findTool(""), nullptr);
}

TEST(OatOntologyYaml, ToolsParseAndValidate) {
  std::string tool = R"(
tools:
  - {name: demo, user_agent: [demo-scan], oats: [OAT-001], checks: ["930"], note: n}
)";
  Ontology ontology = Ontology::fromYaml(std::string(kMinimal) + tool);
  ASSERT_EQ(ontology.tools().size(), 1u);
  EXPECT_EQ(ontology.tools()[0].checks, std::vector<std::string>{"930"});
  EXPECT_EQ(ontology.findTool("x DEMO-SCAN/1.0"), &ontology.tools()[0]);

  auto with = [&](std::string_view from, std::string_view to) {
    std::string text = tool;
    text.replace(text.find(from), from.size(), to);
    return std::string(kMinimal) + text;
  };
  expectRejected(with("oats: [OAT-001]", "oats: [OAT-002]"), "OAT-002");
  expectRejected(with("oats: [OAT-001]", "oats: []"), "'oats' must list");
  expectRejected(with("user_agent: [demo-scan]", "user_agent: []"), "'user_agent' must list");
  expectRejected(with("checks: [\"930\"]", "checks: [abc]"), "abc");
  expectRejected(with("note: n", "footprint_paths: 3, note: n"), "OAT-018");
  expectRejected(with(", note: n}", "}"), "'note' is missing");
}

TEST(OatOntologyYaml, MissingVersionIsRejected) {
  expectRejected(minimalWith("version: test-1", "versio: test-1"), "unknown key");
}

TEST(OatOntologyYaml, InvalidYamlIsRejected) {
  expectRejected("threats: [", "YAML");
}

}  // namespace
}  // namespace webtrap::oat

// containsIgnoreCase scans 16 bytes at a time. These cases place the needle
// in the first block, across a block boundary, at the very end and after the
// last whole block. They also check that case only matters for letters.
TEST(OatOntology, ContainsIgnoreCaseFindsNeedleAnywhere) {
  using webtrap::oat::containsIgnoreCase;
  const std::string filler(40, 'x');
  EXPECT_TRUE(containsIgnoreCase("sqlmap/1.7", "SQLMAP"));
  EXPECT_TRUE(containsIgnoreCase(filler.substr(0, 13) + "SqlMap" + filler, "sqlmap"));
  EXPECT_TRUE(containsIgnoreCase(filler + "Nikto", "nikto"));
  EXPECT_TRUE(containsIgnoreCase(filler.substr(0, 33) + "ab", "AB"));
  EXPECT_TRUE(containsIgnoreCase(filler, ""));
  EXPECT_FALSE(containsIgnoreCase(filler + "Nikt", "nikto"));
  EXPECT_FALSE(containsIgnoreCase("abc", "abcd"));
  // Many first-byte candidates before the match.
  EXPECT_TRUE(containsIgnoreCase("nnnnnnnnnnnnnnnnnnnnnnnnnnnnNIKTO", "nikto"));
  // '@' and '`' sit next to the letters in ASCII and must not match them.
  EXPECT_FALSE(containsIgnoreCase(filler + "@bc", "abc"));
  EXPECT_FALSE(containsIgnoreCase(filler + "`bc", "abc"));
  EXPECT_TRUE(containsIgnoreCase(filler + "/WP-login.php", "/wp-LOGIN"));
  EXPECT_FALSE(containsIgnoreCase(filler + "/wp_login", "/wp-login"));
}
