// Tests for each bait: hit and no-hit cases, honeytoken determinism and
// verification, and the secret file.
#include "probe/baits.h"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include <gtest/gtest.h>

#include "common/encoding.h"
#include "common/error.h"
#include "probe/persona.h"

namespace webtrap::probe {
namespace {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "webtrap-baits-XXXXXX").string();
    path_ = ::mkdtemp(pattern.data());
  }
  ~TempDir() { fs::remove_all(path_); }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

CapturedRequest makeRequest(std::string target, std::vector<HeaderField> headers = {},
                            std::string body = {}) {
  CapturedRequest request;
  request.parsed = true;
  request.method = body.empty() ? "GET" : "POST";
  request.target = std::move(target);
  request.http_version = "1.1";
  request.headers = std::move(headers);
  request.body = std::move(body);
  request.client = {"203.0.113.9", 51000};
  request.server = {"127.0.0.1", 8080};
  return request;
}

const BaitHit* findHit(const RouteOutcome& outcome, std::string_view kind) {
  for (const auto& hit : outcome.baits) {
    if (hit.kind == kind) {
      return &hit;
    }
  }
  return nullptr;
}

class BaitsTest : public ::testing::Test {
 protected:
  BaitsTest() : baits_(BaitsConfig{dir_.path() / "secret"}, metrics_) {}

  TempDir dir_;
  MetricsRegistry metrics_;
  Baits baits_;
  RouteOutcome outcome_;
  const BaitValue field_{"bags", "false"};
  const BaitValue cookie_{"user_role", "guest"};
};

TEST_F(BaitsTest, SecretFileIsPrivate) {
  struct stat info {};
  ASSERT_EQ(::stat((dir_.path() / "secret").c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0600u);
  EXPECT_EQ(info.st_size, 32);
}

TEST_F(BaitsTest, SecretSurvivesRestart) {
  std::string first = baits_.issueToken(TokenKind::kAwsAccessKeyId, "192.0.2.1");
  Baits again(BaitsConfig{dir_.path() / "secret"}, metrics_);
  EXPECT_EQ(again.issueToken(TokenKind::kAwsAccessKeyId, "192.0.2.1"), first);
  EXPECT_TRUE(again.verifyToken(TokenKind::kAwsAccessKeyId, first));
}

TEST_F(BaitsTest, ShortSecretRejected) {
  std::ofstream(dir_.path() / "short") << "tooshort";
  EXPECT_THROW(Baits(BaitsConfig{dir_.path() / "short"}, metrics_), ConfigError);
}

TEST_F(BaitsTest, FakePortHit) {
  CapturedRequest request = makeRequest("/");
  request.bait_listener = true;
  request.listener = "bait-8888";
  baits_.checkListener(request, outcome_);
  ASSERT_NE(findHit(outcome_, "fake_port"), nullptr);
  EXPECT_EQ(outcome_.tx.at("webtrap_bait_listener"), "1");
}

TEST_F(BaitsTest, FakePortNoHit) {
  baits_.checkListener(makeRequest("/"), outcome_);
  EXPECT_TRUE(outcome_.baits.empty());
  EXPECT_TRUE(outcome_.tx.empty());
}

TEST_F(BaitsTest, TrapRecordsKindAndPath) {
  baits_.recordTrap("robots", "/admin-old/", outcome_);
  ASSERT_NE(findHit(outcome_, "robots_trap"), nullptr);
  EXPECT_EQ(outcome_.tx.at("webtrap_trap"), "robots");
  EXPECT_EQ(outcome_.tx.at("webtrap_trap_path"), "/admin-old/");
}

TEST_F(BaitsTest, FormFieldInQuery) {
  baits_.checkFormField(makeRequest("/login.php?bags=true"), field_, outcome_);
  const BaitHit* hit = findHit(outcome_, "form_field");
  ASSERT_NE(hit, nullptr);
  EXPECT_EQ(hit->detail, "bags=true");
}

TEST_F(BaitsTest, FormFieldInUrlencodedBody) {
  auto request = makeRequest("/login.php", {{"Content-Type", "application/x-www-form-urlencoded"}},
                             "user=a&bags=%74rue&pass=b");
  baits_.checkFormField(request, field_, outcome_);
  ASSERT_NE(findHit(outcome_, "form_field"), nullptr);
  EXPECT_EQ(findHit(outcome_, "form_field")->detail, "bags=true");
}

TEST_F(BaitsTest, FormFieldEmptyValueHits) {
  baits_.checkFormField(makeRequest("/contact.php?bags="), field_, outcome_);
  EXPECT_NE(findHit(outcome_, "form_field"), nullptr);
}

TEST_F(BaitsTest, FormFieldInMultipartBody) {
  std::string body =
      "--XyZ\r\nContent-Disposition: form-data; name=\"user\"\r\n\r\nadmin\r\n"
      "--XyZ\r\nContent-Disposition: form-data; name=\"bags\"\r\n\r\n1\r\n--XyZ--\r\n";
  auto request =
      makeRequest("/contact.php", {{"Content-Type", "multipart/form-data; boundary=XyZ"}}, body);
  baits_.checkFormField(request, field_, outcome_);
  ASSERT_NE(findHit(outcome_, "form_field"), nullptr);
  EXPECT_EQ(findHit(outcome_, "form_field")->detail, "bags=1");
}

TEST_F(BaitsTest, FormFieldInJsonBody) {
  auto request = makeRequest("/login.php", {{"Content-Type", "application/json"}},
                             R"({"user":"a","bags":true})");
  baits_.checkFormField(request, field_, outcome_);
  ASSERT_NE(findHit(outcome_, "form_field"), nullptr);
  EXPECT_EQ(findHit(outcome_, "form_field")->detail, "bags=true");
}

TEST_F(BaitsTest, FormFieldUnchangedNoHit) {
  auto request =
      makeRequest("/login.php?bags=false", {{"Content-Type", "application/x-www-form-urlencoded"}},
                  "user=a&pass=b&bags=false");
  baits_.checkFormField(request, field_, outcome_);
  auto json =
      makeRequest("/login.php", {{"Content-Type", "application/json"}}, R"({"bags":false})");
  baits_.checkFormField(json, field_, outcome_);
  baits_.checkFormField(makeRequest("/login.php?xbags=1&bagsy=2"), field_, outcome_);
  EXPECT_TRUE(outcome_.baits.empty());
}

TEST_F(BaitsTest, CookieTamperedHit) {
  auto request = makeRequest("/", {{"Cookie", "PHPSESSID=abc; user_role=admin"}});
  baits_.checkCookie(request, cookie_, outcome_);
  ASSERT_NE(findHit(outcome_, "cookie"), nullptr);
  EXPECT_EQ(outcome_.tx.at("webtrap_cookie_tampered"), "user_role=admin");
}

TEST_F(BaitsTest, CookieUnchangedNoHit) {
  baits_.checkCookie(makeRequest("/", {{"Cookie", "user_role=guest"}}), cookie_, outcome_);
  baits_.checkCookie(makeRequest("/", {{"Cookie", "other_role=admin"}}), cookie_, outcome_);
  baits_.checkCookie(makeRequest("/"), cookie_, outcome_);
  EXPECT_TRUE(outcome_.baits.empty());
  EXPECT_TRUE(outcome_.tx.empty());
}

TEST_F(BaitsTest, CanaryRecordsEveryCredential) {
  auto request =
      makeRequest("/admin-old/", {{"Authorization", "Basic " + base64Encode("admin:s3cret:x")},
                                  {"Authorization", "Basic " + base64Encode("root:toor")}});
  baits_.recordCredentials(request, outcome_);
  ASSERT_EQ(outcome_.baits.size(), 2u);
  EXPECT_EQ(outcome_.baits[0].kind, "credential_canary");
  EXPECT_EQ(outcome_.baits[0].detail, "user=admin password=s3cret:x");
  EXPECT_EQ(outcome_.baits[1].detail, "user=root password=toor");
  EXPECT_EQ(outcome_.tx.at("webtrap_canary_user"), "admin");
  EXPECT_EQ(outcome_.tx.at("webtrap_canary_password"), "s3cret:x");
}

TEST_F(BaitsTest, CanaryKeepsUndecodableValue) {
  baits_.recordCredentials(makeRequest("/admin-old/", {{"Authorization", "Basic !!!"}}), outcome_);
  ASSERT_NE(findHit(outcome_, "credential_canary"), nullptr);
  EXPECT_EQ(outcome_.tx.at("webtrap_canary_user"), "Basic !!!");
}

TEST_F(BaitsTest, CanaryWithoutCredentialsNoHit) {
  baits_.recordCredentials(makeRequest("/admin-old/"), outcome_);
  EXPECT_TRUE(outcome_.baits.empty());
}

TEST_F(BaitsTest, TokensDeterministicPerAddress) {
  for (auto kind : {TokenKind::kAwsAccessKeyId, TokenKind::kAwsSecretAccessKey,
                    TokenKind::kStripeSecretKey, TokenKind::kDbPassword}) {
    std::string first = baits_.issueToken(kind, "192.0.2.1");
    EXPECT_EQ(baits_.issueToken(kind, "192.0.2.1"), first);
    EXPECT_NE(baits_.issueToken(kind, "192.0.2.2"), first);
    EXPECT_TRUE(baits_.verifyToken(kind, first)) << first;
  }
}

TEST_F(BaitsTest, TokensLookReal) {
  std::string key_id = baits_.issueToken(TokenKind::kAwsAccessKeyId, "192.0.2.1");
  EXPECT_EQ(key_id.size(), 20u);
  EXPECT_TRUE(key_id.starts_with("AKIA"));
  EXPECT_EQ(key_id.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"), std::string::npos);
  EXPECT_EQ(baits_.issueToken(TokenKind::kAwsSecretAccessKey, "192.0.2.1").size(), 40u);
  std::string stripe = baits_.issueToken(TokenKind::kStripeSecretKey, "192.0.2.1");
  EXPECT_TRUE(stripe.starts_with("sk_live_"));
  EXPECT_EQ(stripe.size(), 32u);
  EXPECT_EQ(baits_.issueToken(TokenKind::kDbPassword, "192.0.2.1").size(), 20u);
}

TEST_F(BaitsTest, TokenFromOtherAddressDetected) {
  std::string token = baits_.issueToken(TokenKind::kStripeSecretKey, "192.0.2.1");
  auto request = makeRequest("/v1/charges", {{"Authorization", "Bearer " + token}});
  request.client.address = "198.51.100.200";
  baits_.scanHoneytokens(request, outcome_);
  ASSERT_NE(findHit(outcome_, "honeytoken"), nullptr);
  EXPECT_EQ(outcome_.tx.at("webtrap_honeytoken"), token);
  EXPECT_EQ(outcome_.tx.at("webtrap_honeytoken_issued_to"), "192.0.2.1");
}

TEST_F(BaitsTest, TokenDetectedInUriAndBody) {
  std::string key_id = baits_.issueToken(TokenKind::kAwsAccessKeyId, "192.0.2.1");
  std::string secret = baits_.issueToken(TokenKind::kAwsSecretAccessKey, "192.0.2.1");
  std::string password = baits_.issueToken(TokenKind::kDbPassword, "192.0.2.1");

  RouteOutcome in_uri;
  baits_.scanHoneytokens(makeRequest("/?AWSAccessKeyId=" + key_id), in_uri);
  EXPECT_NE(findHit(in_uri, "honeytoken"), nullptr);

  // '+' and '/' in the secret arrive percent-encoded in a form body.
  std::string encoded;
  for (char c : secret) {
    if (c == '+') {
      encoded += "%2B";
    } else if (c == '/') {
      encoded += "%2F";
    } else {
      encoded += c;
    }
  }
  RouteOutcome in_body;
  baits_.scanHoneytokens(makeRequest("/", {}, "key=" + encoded), in_body);
  EXPECT_NE(findHit(in_body, "honeytoken"), nullptr);
  EXPECT_EQ(in_body.tx.at("webtrap_honeytoken"), secret);

  RouteOutcome in_basic;
  auto basic = makeRequest("/", {{"Authorization", "Basic " + base64Encode("portal:" + password)}});
  baits_.scanHoneytokens(basic, in_basic);
  EXPECT_NE(findHit(in_basic, "honeytoken"), nullptr);
}

TEST_F(BaitsTest, TamperedTokenRejected) {
  std::string token = baits_.issueToken(TokenKind::kAwsAccessKeyId, "192.0.2.1");
  std::string tampered = token;
  tampered[10] = tampered[10] == 'A' ? 'B' : 'A';
  EXPECT_FALSE(baits_.verifyToken(TokenKind::kAwsAccessKeyId, tampered));
  std::string wrong_mac = token;
  wrong_mac.back() = wrong_mac.back() == 'A' ? 'B' : 'A';
  EXPECT_FALSE(baits_.verifyToken(TokenKind::kAwsAccessKeyId, wrong_mac));

  baits_.scanHoneytokens(makeRequest("/?k=" + tampered + "&m=" + wrong_mac), outcome_);
  EXPECT_TRUE(outcome_.baits.empty());
  EXPECT_TRUE(outcome_.tx.empty());
}

TEST_F(BaitsTest, TokenFromOtherSecretRejected) {
  TempDir other_dir;
  MetricsRegistry other_metrics;
  Baits other(BaitsConfig{other_dir.path() / "secret"}, other_metrics);
  std::string foreign = other.issueToken(TokenKind::kAwsAccessKeyId, "192.0.2.1");
  EXPECT_FALSE(baits_.verifyToken(TokenKind::kAwsAccessKeyId, foreign));
}

TEST_F(BaitsTest, LookalikeKeysNoHit) {
  // Well-formed key shapes that this probe never issued.
  baits_.scanHoneytokens(
      makeRequest("/?id=AKIAIOSFODNN7EXAMPLE&s=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
                  "&p=abcdefghij0123456789"),
      outcome_);
  EXPECT_TRUE(outcome_.baits.empty());
}

TEST_F(BaitsTest, ForgottenTokenStillVerifies) {
  TempDir small_dir;
  MetricsRegistry small_metrics;
  Baits small(BaitsConfig{small_dir.path() / "secret", 2}, small_metrics);
  std::string first = small.issueToken(TokenKind::kDbPassword, "192.0.2.1");
  small.issueToken(TokenKind::kDbPassword, "192.0.2.2");
  small.issueToken(TokenKind::kDbPassword, "192.0.2.3");
  RouteOutcome outcome;
  small.scanHoneytokens(makeRequest("/?password=" + first), outcome);
  ASSERT_NE(findHit(outcome, "honeytoken"), nullptr);
  EXPECT_EQ(outcome.tx.at("webtrap_honeytoken_issued_to"), "unknown");
}

TEST_F(BaitsTest, ConcurrentIssueAndScan) {
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) {
        std::string address = "10.0." + std::to_string(t) + "." + std::to_string(i);
        std::string token = baits_.issueToken(TokenKind::kAwsAccessKeyId, address);
        RouteOutcome outcome;
        baits_.scanHoneytokens(makeRequest("/?k=" + token), outcome);
        if (outcome.tx["webtrap_honeytoken_issued_to"] != address) {
          ++failures;
        }
      }
    });
  }
  for (auto& thread : threads) {
    thread.join();
  }
  EXPECT_EQ(failures.load(), 0);
}

// The persona plants tokens in /.env per client address and records them.
TEST(PersonaBaitsTest, EnvFileIssuesTokensPerSource) {
  TempDir dir;
  MetricsRegistry metrics;
  Baits baits(BaitsConfig{dir.path() / "secret"}, metrics);
  auto persona = Persona::load(fs::path(WEBTRAP_SOURCE_DIR) / "personas" / "apache-debian-php");

  CapturedRequest request = makeRequest("/.env", {{"Host", "www.example.com"}});
  RouteOutcome first;
  PersonaResponse response = persona->respond(request, baits, first);
  ASSERT_EQ(first.issued_tokens.size(), 4u);
  for (const auto& token : first.issued_tokens) {
    EXPECT_NE(response.body.find(token), std::string::npos) << token;
  }
  RouteOutcome again;
  EXPECT_EQ(persona->respond(request, baits, again).body, response.body);

  request.client.address = "198.51.100.1";
  RouteOutcome other;
  EXPECT_NE(persona->respond(request, baits, other).body, response.body);

  CapturedRequest reuse = makeRequest("/login.php", {{"Host", "www.example.com"}},
                                      "user=portal&pass=" + first.issued_tokens[0]);
  reuse.client.address = "198.51.100.77";
  RouteOutcome detected;
  persona->respond(reuse, baits, detected);
  ASSERT_NE(findHit(detected, "honeytoken"), nullptr);
  EXPECT_EQ(detected.tx.at("webtrap_honeytoken_issued_to"), "203.0.113.9");
}

TEST(PersonaBaitsTest, TrapAndCanaryRoutes) {
  TempDir dir;
  MetricsRegistry metrics;
  Baits baits(BaitsConfig{dir.path() / "secret"}, metrics);
  auto persona = Persona::load(fs::path(WEBTRAP_SOURCE_DIR) / "personas" / "apache-debian-php");

  RouteOutcome robots;
  persona->respond(makeRequest("/robots.txt", {{"Host", "a"}}), baits, robots);
  EXPECT_TRUE(robots.baits.empty());

  RouteOutcome comment;
  persona->respond(makeRequest("/backup-2019/", {{"Host", "a"}}), baits, comment);
  EXPECT_EQ(comment.tx.at("webtrap_trap"), "comment");

  RouteOutcome canary;
  PersonaResponse response = persona->respond(
      makeRequest("/admin-old/", {{"Host", "a"}, {"Authorization", "Basic YWRtaW46YWRtaW4="}}),
      baits, canary);
  EXPECT_EQ(response.status, 401);
  EXPECT_EQ(canary.tx.at("webtrap_trap"), "robots");
  EXPECT_EQ(canary.tx.at("webtrap_canary_user"), "admin");
  EXPECT_EQ(canary.tx.at("webtrap_canary_password"), "admin");
}

TEST(PersonaBaitsTest, ConcurrentRespondIsConsistent) {
  TempDir dir;
  MetricsRegistry metrics;
  Baits baits(BaitsConfig{dir.path() / "secret"}, metrics);
  auto persona = Persona::load(fs::path(WEBTRAP_SOURCE_DIR) / "personas" / "apache-debian-php");

  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 100; ++i) {
        CapturedRequest request = makeRequest("/.env", {{"Host", "www.example.com"}});
        request.client.address = "10.1." + std::to_string(t) + "." + std::to_string(i);
        RouteOutcome outcome;
        PersonaResponse response = persona->respond(request, baits, outcome);
        bool ok = response.status == 200 && outcome.issued_tokens.size() == 4;
        for (const auto& token : outcome.issued_tokens) {
          ok = ok && response.body.find(token) != std::string::npos;
        }
        if (!ok) {
          ++failures;
        }
      }
    });
  }
  for (auto& thread : threads) {
    thread.join();
  }
  EXPECT_EQ(failures.load(), 0);
}

}  // namespace
}  // namespace webtrap::probe
