#include "common/oat_export.h"

#include <stdexcept>
#include <string>

#include <gtest/gtest.h>
#include <simdjson.h>

namespace webtrap::oat {
namespace {

TEST(OatExport, UuidV5MatchesRfcExample) {
  // RFC 9562 appendix A.4: "www.example.com" in the DNS namespace.
  EXPECT_EQ(uuidV5("6ba7b810-9dad-11d1-80b4-00c04fd430c8", "www.example.com"),
            "2ed6657d-e927-568b-95e1-2665a8aea6a2");
}

TEST(OatExport, UuidV5RejectsMalformedNamespace) {
  EXPECT_THROW(uuidV5("not-a-uuid", "x"), std::invalid_argument);
  EXPECT_THROW(uuidV5("6ba7b810-9dad-11d1-80b4-00c04fd430c", "x"), std::invalid_argument);
}

TEST(OatExport, MispTaxonomyHasEveryThreat) {
  const Ontology& ontology = Ontology::embedded();
  std::string text = renderMispTaxonomy(ontology);
  simdjson::dom::parser parser;
  simdjson::dom::element taxonomy = parser.parse(text);
  EXPECT_EQ(std::string_view(taxonomy["namespace"].get_string()), "owasp-oat");
  // The version is the ontology version's digits: 2026.12 gives 202612.
  std::string digits;
  for (char c : ontology.version()) {
    if (c >= '0' && c <= '9') {
      digits.push_back(c);
    }
  }
  EXPECT_EQ(int64_t(taxonomy["version"].get_int64()), std::stoll(digits));
  EXPECT_FALSE(bool(taxonomy["exclusive"].get_bool()));
  simdjson::dom::array predicates = taxonomy["predicates"].get_array();
  ASSERT_EQ(predicates.size(), ontology.threats().size());
  std::size_t index = 0;
  for (simdjson::dom::element predicate : predicates) {
    const Threat& threat = ontology.threats()[index++];
    EXPECT_EQ(std::string_view(predicate["value"].get_string()), threat.id);
    EXPECT_EQ(std::string_view(predicate["expanded"].get_string()), threat.name);
    std::string_view description = predicate["description"].get_string();
    EXPECT_TRUE(description.starts_with(threat.summary)) << threat.id;
    EXPECT_NE(description.find("WASC: "), std::string_view::npos) << threat.id;
  }
}

TEST(OatExport, MispTagNameUsesNamespace) {
  EXPECT_EQ(mispTagName("OAT-014"), "owasp-oat:OAT-014");
}

TEST(OatExport, MispVersionNeedsDigits) {
  Ontology ontology = Ontology::fromYaml(R"(
version: no-digits
handbook: {name: Handbook, version: "1.3", url: "https://owasp.org/x"}
threats:
  - {id: OAT-001, name: Carding, summary: s, reference: "https://owasp.org/OAT-001"}
)");
  EXPECT_THROW(renderMispTaxonomy(ontology), std::invalid_argument);
}

TEST(OatExport, JsonRoundTripsRules) {
  const Ontology& ontology = Ontology::embedded();
  simdjson::dom::parser parser;
  simdjson::dom::element root = parser.parse(renderJson(ontology));
  EXPECT_EQ(std::string_view(root["version"].get_string()), ontology.version());
  EXPECT_EQ(root["threats"].get_array().size(), 21u);
  simdjson::dom::array rules = root["request_rules"].get_array();
  ASSERT_EQ(rules.size(), ontology.requestRules().size());
  simdjson::dom::element first = rules.at(0);
  EXPECT_EQ(std::string_view(first["oat"].get_string()), ontology.requestRules()[0].oat);
  EXPECT_DOUBLE_EQ(double(first["confidence"].get_double()),
                   ontology.requestRules()[0].confidence);
  simdjson::dom::array tools = root["tools"].get_array();
  ASSERT_EQ(tools.size(), ontology.tools().size());
  simdjson::dom::element nmap = tools.at(0);
  EXPECT_EQ(std::string_view(nmap["name"].get_string()), ontology.tools()[0].name);
  EXPECT_EQ(nmap["oats"].get_array().size(), ontology.tools()[0].oats.size());
}

TEST(OatExport, MarkdownEscapesCellPipes) {
  Ontology ontology = Ontology::fromYaml(R"(
version: test-1
handbook: {name: Handbook, version: "1.3", url: "https://owasp.org/x"}
threats:
  - {id: OAT-001, name: Carding, summary: "a | b", reference: "https://owasp.org/OAT-001"}
)");
  std::string markdown = renderMarkdown(ontology);
  EXPECT_NE(markdown.find("a \\| b"), std::string::npos) << markdown;
}

TEST(OatExport, TableListsEveryName) {
  const Ontology& ontology = Ontology::embedded();
  std::string table = renderTable(ontology);
  for (const Threat& threat : ontology.threats()) {
    EXPECT_NE(table.find(threat.name), std::string::npos) << threat.id;
  }
}

}  // namespace
}  // namespace webtrap::oat
