// Tests of GeoIP enrichment against small MaxMind databases that
// tests/tools/make_geoip_db.pl writes at test time, and of the rule id to
// category table against the CRS and webtrap rule files.
#include "collector/enrich.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/error.h"

namespace webtrap::collector {
namespace {

namespace fs = std::filesystem;

const fs::path kSourceDir = WEBTRAP_SOURCE_DIR;
const fs::path kCrsRules = "/usr/share/modsecurity-crs/rules";

std::string readFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// Builds the test databases once for all tests in this binary.
class GeoDatabases : public ::testing::Environment {
 public:
  void SetUp() override {
    char pattern[] = "/tmp/enrich_test.XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr);
    folder = pattern;
    std::string command = "perl '" + (kSourceDir / "tests/tools/make_geoip_db.pl").string() +
                          "' '" + folder.string() + "'";
    int status = std::system(command.c_str());
    ASSERT_TRUE(WIFEXITED(status)) << "tests/tools/make_geoip_db.pl did not exit normally";
    ASSERT_EQ(WEXITSTATUS(status), 0)
        << "tests/tools/make_geoip_db.pl failed; it needs perl and the Debian package "
           "libmaxmind-db-writer-perl";
    ready = true;
  }
  void TearDown() override {
    if (!folder.empty()) {
      fs::remove_all(folder);
    }
  }

  static inline fs::path folder;
  static inline bool ready = false;
};

EnrichOptions testOptions() {
  EnrichOptions options;
  options.geoip_city = GeoDatabases::folder / "test-city.mmdb";
  options.geoip_asn = GeoDatabases::folder / "test-asn.mmdb";
  return options;
}

class EnricherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(GeoDatabases::ready) << "the test databases were not built";
  }
};

TEST_F(EnricherTest, CityAndAsnForIpv4) {
  Enricher enricher(testOptions());
  EXPECT_TRUE(enricher.hasCityDatabase());
  EXPECT_TRUE(enricher.hasAsnDatabase());
  GeoFacts facts = enricher.lookup("192.0.2.55");
  EXPECT_EQ(facts.country_iso, "DE");
  EXPECT_EQ(facts.country_name, "Germany");
  EXPECT_EQ(facts.region_name, "Land Berlin");
  EXPECT_EQ(facts.city_name, "Berlin");
  ASSERT_TRUE(facts.latitude.has_value());
  ASSERT_TRUE(facts.longitude.has_value());
  EXPECT_DOUBLE_EQ(*facts.latitude, 52.5244);
  EXPECT_DOUBLE_EQ(*facts.longitude, 13.4105);
  ASSERT_TRUE(facts.asn.has_value());
  EXPECT_EQ(*facts.asn, 64496u);
  EXPECT_EQ(facts.as_organization, "Example Transit GmbH");
}

TEST_F(EnricherTest, NamesKeepUtf8) {
  Enricher enricher(testOptions());
  GeoFacts facts = enricher.lookup("198.51.100.7");
  EXPECT_EQ(facts.country_iso, "BR");
  EXPECT_EQ(facts.city_name, "S\xC3\xA3o Paulo");
  EXPECT_EQ(facts.as_organization, "Provedor Exemplo S\xC3\xA3o Paulo");
  ASSERT_TRUE(facts.latitude.has_value());
  EXPECT_DOUBLE_EQ(*facts.latitude, -23.5475);
}

TEST_F(EnricherTest, CountryOnlyEntryWithoutAsn) {
  Enricher enricher(testOptions());
  GeoFacts facts = enricher.lookup("203.0.113.200");
  EXPECT_EQ(facts.country_iso, "JP");
  EXPECT_EQ(facts.country_name, "Japan");
  EXPECT_EQ(facts.region_name, "");
  EXPECT_EQ(facts.city_name, "");
  EXPECT_TRUE(facts.latitude.has_value());
  EXPECT_FALSE(facts.asn.has_value());
  EXPECT_EQ(facts.as_organization, "");
}

TEST_F(EnricherTest, Ipv6AndMappedIpv4) {
  Enricher enricher(testOptions());
  GeoFacts six = enricher.lookup("2001:db8:1234::1");
  EXPECT_EQ(six.country_iso, "NL");
  EXPECT_EQ(six.city_name, "Amsterdam");
  ASSERT_TRUE(six.asn.has_value());
  EXPECT_EQ(*six.asn, 4200000000u);  // a 32-bit private-use ASN
  EXPECT_EQ(six.as_organization, "Example Six B.V.");

  GeoFacts mapped = enricher.lookup("::ffff:192.0.2.1");
  EXPECT_EQ(mapped.country_iso, "DE");
  EXPECT_EQ(mapped.city_name, "Berlin");
}

TEST_F(EnricherTest, NonPublicAddressesSkipped) {
  Enricher enricher(testOptions());
  // The test databases hold entries for these networks; the enricher must
  // not return them.
  for (const char* address : {"127.0.0.1", "10.1.2.3", "192.168.1.1", "fd00::1", "::1",
                              "::ffff:10.0.0.1", "::ffff:127.0.0.1"}) {
    GeoFacts facts = enricher.lookup(address);
    EXPECT_EQ(facts.country_iso, "") << address;
    EXPECT_FALSE(facts.latitude.has_value()) << address;
    EXPECT_FALSE(facts.asn.has_value()) << address;
    EXPECT_EQ(facts.as_organization, "") << address;
  }
}

TEST_F(EnricherTest, UnknownAndInvalidAddressesEmpty) {
  Enricher enricher(testOptions());
  for (const char* text : {"8.8.8.8", "2a00:1450::1", "not-an-ip", "", "192.0.2.1 ",
                           "192.0.2.1:80", "[2001:db8::1]", "999.1.1.1"}) {
    GeoFacts facts = enricher.lookup(text);
    EXPECT_EQ(facts.country_iso, "") << text;
    EXPECT_FALSE(facts.asn.has_value()) << text;
  }
}

TEST_F(EnricherTest, CityDatabaseOnly) {
  EnrichOptions options;
  options.geoip_city = GeoDatabases::folder / "test-city.mmdb";
  Enricher enricher(options);
  EXPECT_FALSE(enricher.hasAsnDatabase());
  GeoFacts facts = enricher.lookup("192.0.2.55");
  EXPECT_EQ(facts.country_iso, "DE");
  EXPECT_FALSE(facts.asn.has_value());
}

TEST_F(EnricherTest, Ipv4OnlyDatabase) {
  EnrichOptions options;
  options.geoip_city = GeoDatabases::folder / "test-city-v4.mmdb";
  Enricher enricher(options);
  EXPECT_EQ(enricher.lookup("192.0.2.1").country_iso, "DE");
  // An IPv4-mapped IPv6 address is looked up as IPv4.
  EXPECT_EQ(enricher.lookup("::ffff:192.0.2.1").country_iso, "DE");
  // An IPv6 address has no entry in an IPv4-only tree.
  EXPECT_EQ(enricher.lookup("2001:db8::1").country_iso, "");
}

TEST_F(EnricherTest, NoDatabasesGiveEmptyFacts) {
  Enricher enricher(EnrichOptions{});
  GeoFacts facts = enricher.lookup("192.0.2.55");
  EXPECT_EQ(facts.country_iso, "");
  EXPECT_FALSE(facts.asn.has_value());
}

TEST_F(EnricherTest, ConcurrentLookupsAgree) {
  Enricher enricher(testOptions());
  std::vector<std::thread> threads;
  std::vector<int> mismatches(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 5000; ++i) {
        GeoFacts facts = enricher.lookup(i % 2 == 0 ? "192.0.2.9" : "2001:db8::9");
        const char* expected = i % 2 == 0 ? "DE" : "NL";
        if (facts.country_iso != expected) {
          ++mismatches[t];
        }
      }
    });
  }
  for (auto& thread : threads) {
    thread.join();
  }
  for (int t = 0; t < 4; ++t) {
    EXPECT_EQ(mismatches[t], 0) << "thread " << t;
  }
}

// Prints the thread CPU time per lookup of an address that both databases
// contain. The bound is loose so that a loaded machine passes.
TEST_F(EnricherTest, LookupSpeed) {
  Enricher enricher(testOptions());
  const int iterations = 20000;
  std::size_t found = 0;
  timespec start{};
  timespec end{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &start);
  for (int i = 0; i < iterations; ++i) {
    found += enricher.lookup("192.0.2.55").asn.has_value() ? 1 : 0;
  }
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &end);
  double elapsed_ns = (end.tv_sec - start.tv_sec) * 1e9 + (end.tv_nsec - start.tv_nsec);
  double micros = elapsed_ns / 1000.0 / iterations;
  std::printf("Enricher::lookup: %.2f us CPU per address (city and ASN)\n", micros);
  EXPECT_EQ(found, static_cast<std::size_t>(iterations));
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "no time bound under AddressSanitizer";
#endif
  EXPECT_LT(micros, 20.0);
}

TEST_F(EnricherTest, MissingFileNamesPathAndKey) {
  EnrichOptions options;
  options.geoip_city = GeoDatabases::folder / "absent.mmdb";
  try {
    Enricher enricher(options);
    FAIL() << "a missing database was accepted";
  } catch (const ConfigError& error) {
    std::string message = error.what();
    EXPECT_NE(message.find("enrich.geoip_city"), std::string::npos) << message;
    EXPECT_NE(message.find("absent.mmdb"), std::string::npos) << message;
    EXPECT_NE(message.find("not found"), std::string::npos) << message;
  }
}

TEST_F(EnricherTest, InvalidFileNamesPath) {
  fs::path bogus = GeoDatabases::folder / "bogus.mmdb";
  std::ofstream(bogus) << "this is not a MaxMind database\n";
  EnrichOptions options;
  options.geoip_asn = bogus;
  try {
    Enricher enricher(options);
    FAIL() << "an invalid database was accepted";
  } catch (const ConfigError& error) {
    std::string message = error.what();
    EXPECT_NE(message.find("enrich.geoip_asn"), std::string::npos) << message;
    EXPECT_NE(message.find("bogus.mmdb"), std::string::npos) << message;
  }
}

TEST_F(EnricherTest, SwappedDatabasesRejected) {
  EnrichOptions options;
  options.geoip_city = GeoDatabases::folder / "test-asn.mmdb";
  EXPECT_THROW(Enricher{options}, ConfigError);

  options = EnrichOptions{};
  options.geoip_asn = GeoDatabases::folder / "test-city.mmdb";
  EXPECT_THROW(Enricher{options}, ConfigError);
}

TEST(EnrichAddress, NonPublicRanges) {
  for (const char* address : {"0.0.0.0", "10.0.0.1", "100.64.0.1", "127.0.0.1", "169.254.1.1",
                              "172.16.0.1", "172.31.255.255", "192.168.0.1", "224.0.0.1",
                              "255.255.255.255", "::", "::1", "fc00::1", "fe80::1", "ff02::1",
                              "::ffff:192.168.1.1"}) {
    EXPECT_TRUE(isNonPublicAddress(address)) << address;
  }
  for (const char* address : {"8.8.8.8", "172.32.0.1", "100.128.0.1", "192.0.2.1",
                              "203.0.113.1", "2001:db8::1", "2a00:1450::1", "::ffff:8.8.8.8",
                              "not-an-ip"}) {
    EXPECT_FALSE(isNonPublicAddress(address)) << address;
  }
}

TEST(EnrichOptionsParse, BothPaths) {
  YAML::Node node = YAML::Load("{geoip_city: /data/City.mmdb, geoip_asn: /data/ASN.mmdb}");
  EnrichOptions options = parseEnrichOptions(node);
  EXPECT_EQ(options.geoip_city, "/data/City.mmdb");
  EXPECT_EQ(options.geoip_asn, "/data/ASN.mmdb");
}

TEST(EnrichOptionsParse, EmptySectionMeansNoDatabases) {
  EnrichOptions options = parseEnrichOptions(YAML::Load("{}"));
  EXPECT_TRUE(options.geoip_city.empty());
  EXPECT_TRUE(options.geoip_asn.empty());
  options = parseEnrichOptions(YAML::Node());
  EXPECT_TRUE(options.geoip_city.empty());
}

TEST(EnrichOptionsParse, UnknownKeyRejected) {
  try {
    parseEnrichOptions(YAML::Load("{geoip_country: /x.mmdb}"));
    FAIL() << "an unknown key was accepted";
  } catch (const ConfigError& error) {
    std::string message = error.what();
    EXPECT_NE(message.find("geoip_country"), std::string::npos) << message;
    EXPECT_NE(message.find("geoip_city"), std::string::npos) << message;
  }
}

TEST(EnrichOptionsParse, ListValueRejected) {
  EXPECT_THROW(parseEnrichOptions(YAML::Load("{geoip_city: [a, b]}")), ConfigError);
  EXPECT_THROW(parseEnrichOptions(YAML::Load("[geoip_city]")), ConfigError);
}

// ---------------------------------------------------------------------------
// Rule categories, checked against the rule files themselves.

std::vector<std::string> ruleIds(const std::string& text) {
  std::vector<std::string> ids;
  static const std::regex kId(R"(id:(\d+))");
  for (auto it = std::sregex_iterator(text.begin(), text.end(), kId); it != std::sregex_iterator();
       ++it) {
    ids.push_back((*it)[1]);
  }
  return ids;
}

TEST(RuleCategory, EveryCrsRuleFileMatches) {
  if (!fs::exists(kCrsRules)) {
    GTEST_SKIP() << "CRS rules not found at " << kCrsRules << "; install modsecurity-crs";
  }
  // The category each CRS 3.3.4 rule file's rules must get. Files whose rules
  // report no attack (initialization, exclusions) map to "".
  const std::map<std::string, std::string> kFileCategory = {
      {"REQUEST-901-INITIALIZATION.conf", ""},
      {"REQUEST-905-COMMON-EXCEPTIONS.conf", ""},
      {"REQUEST-910-IP-REPUTATION.conf", "ip-reputation"},
      {"REQUEST-911-METHOD-ENFORCEMENT.conf", "method-enforcement"},
      {"REQUEST-912-DOS-PROTECTION.conf", "dos"},
      {"REQUEST-913-SCANNER-DETECTION.conf", "scanner-detection"},
      {"REQUEST-920-PROTOCOL-ENFORCEMENT.conf", "protocol-enforcement"},
      {"REQUEST-921-PROTOCOL-ATTACK.conf", "protocol-attack"},
      {"REQUEST-922-MULTIPART-ATTACK.conf", "multipart"},
      {"REQUEST-930-APPLICATION-ATTACK-LFI.conf", "lfi"},
      {"REQUEST-931-APPLICATION-ATTACK-RFI.conf", "rfi"},
      {"REQUEST-932-APPLICATION-ATTACK-RCE.conf", "rce"},
      {"REQUEST-933-APPLICATION-ATTACK-PHP.conf", "php"},
      {"REQUEST-934-APPLICATION-ATTACK-NODEJS.conf", "nodejs"},
      {"REQUEST-941-APPLICATION-ATTACK-XSS.conf", "xss"},
      {"REQUEST-942-APPLICATION-ATTACK-SQLI.conf", "sqli"},
      {"REQUEST-943-APPLICATION-ATTACK-SESSION-FIXATION.conf", "session-fixation"},
      {"REQUEST-944-APPLICATION-ATTACK-JAVA.conf", "java"},
      {"REQUEST-949-BLOCKING-EVALUATION.conf", "anomaly-evaluation"},
      {"RESPONSE-950-DATA-LEAKAGES.conf", "data-leakage"},
      {"RESPONSE-951-DATA-LEAKAGES-SQL.conf", "data-leakage"},
      {"RESPONSE-952-DATA-LEAKAGES-JAVA.conf", "data-leakage"},
      {"RESPONSE-953-DATA-LEAKAGES-PHP.conf", "data-leakage"},
      {"RESPONSE-954-DATA-LEAKAGES-IIS.conf", "data-leakage"},
      {"RESPONSE-959-BLOCKING-EVALUATION.conf", "anomaly-evaluation"},
      {"RESPONSE-980-CORRELATION.conf", "correlation"},
  };
  int checked = 0;
  for (const auto& entry : fs::directory_iterator(kCrsRules)) {
    std::string name = entry.path().filename().string();
    if (entry.path().extension() != ".conf") {
      continue;
    }
    std::string expected;
    if (name.starts_with("REQUEST-903.")) {
      expected = "";  // application exclusion rules, seven-digit ids
    } else {
      auto found = kFileCategory.find(name);
      ASSERT_NE(found, kFileCategory.end()) << "CRS rule file " << name << " is not in the table";
      expected = found->second;
    }
    for (const std::string& id : ruleIds(readFile(entry.path()))) {
      EXPECT_EQ(ruleCategory(id), expected) << "rule " << id << " in " << name;
      ++checked;
    }
  }
  EXPECT_GT(checked, 500);
}

// Reads each SecRule of a webtrap rule file as its id and tags.
std::map<std::string, std::vector<std::string>> webtrapRules(const fs::path& path) {
  std::map<std::string, std::vector<std::string>> rules;
  std::string text = readFile(path);
  static const std::regex kId(R"(id:(\d+))");
  static const std::regex kTag(R"(tag:'([^']+)')");
  std::size_t start = 0;
  while ((start = text.find("SecRule ", start)) != std::string::npos) {
    std::size_t end = text.find("SecRule ", start + 1);
    std::string rule = text.substr(start, end == std::string::npos ? std::string::npos : end - start);
    std::smatch id;
    if (std::regex_search(rule, id, kId)) {
      auto& tags = rules[id[1]];
      for (auto it = std::sregex_iterator(rule.begin(), rule.end(), kTag);
           it != std::sregex_iterator(); ++it) {
        tags.push_back((*it)[1]);
      }
    }
    start = end == std::string::npos ? text.size() : end;
  }
  return rules;
}

TEST(RuleCategory, WebtrapHoneytrapRules) {
  auto rules = webtrapRules(kSourceDir / "rules/webtrap-honeytrap.conf");
  ASSERT_GE(rules.size(), 5u);
  for (const auto& [id, tags] : rules) {
    EXPECT_EQ(ruleCategory(id), "honeytrap") << "rule " << id;
  }
}

TEST(RuleCategory, WebtrapGapRulesFollowTheirTags) {
  const std::map<std::string, std::string> kTagCategory = {
      {"attack-injection-java", "java"}, {"attack-injection-php", "php"},
      {"attack-rce", "rce"},             {"attack-ssrf", "ssrf"},
      {"attack-disclosure", "disclosure"}, {"attack-bruteforce", "bruteforce"},
  };
  auto rules = webtrapRules(kSourceDir / "rules/webtrap-gaps.conf");
  ASSERT_GE(rules.size(), 20u);
  for (const auto& [id, tags] : rules) {
    std::string expected;
    for (const auto& tag : tags) {
      if (tag.starts_with("attack-")) {
        auto found = kTagCategory.find(tag);
        ASSERT_NE(found, kTagCategory.end())
            << "rule " << id << " has attack tag " << tag << " that the test does not know";
        expected = found->second;
      }
    }
    ASSERT_FALSE(expected.empty()) << "rule " << id << " has no attack-* tag";
    EXPECT_EQ(ruleCategory(id), expected) << "rule " << id;
  }
}

TEST(RuleCategory, EdgeCases) {
  EXPECT_EQ(ruleCategory(""), "");
  EXPECT_EQ(ruleCategory("abc"), "");
  EXPECT_EQ(ruleCategory("942100x"), "");
  EXPECT_EQ(ruleCategory("1"), "");
  EXPECT_EQ(ruleCategory("9001000"), "");     // CRS Drupal exclusion rule
  EXPECT_EQ(ruleCategory("77299"), "webtrap-gap");  // in the gap range, not in the table
  EXPECT_EQ(ruleCategory("77099"), "honeytrap");
  EXPECT_EQ(ruleCategory("77300"), "");
  EXPECT_EQ(ruleCategory("99999999999"), "");
}

}  // namespace
}  // namespace webtrap::collector

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  ::testing::AddGlobalTestEnvironment(new webtrap::collector::GeoDatabases);
  return RUN_ALL_TESTS();
}
