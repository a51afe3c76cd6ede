#include "collector/behaviour.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <random>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <fmt/format.h>
#include <sqlite3.h>

#include "collector/collector_sections.h"
#include "collector/ingest.h"
#include "collector/key_index.h"
#include "collector/recent_ids.h"
#include "collector/store.h"
#include "common/error.h"
#include "common/metrics.h"
#include "temp_path.h"

namespace webtrap::collector {
namespace {

// Random inserts, lookups and erases against std::unordered_map. The keys
// come from a small range, many of them multiples of a power of two, so
// runs of occupied slots are long and erases shift many of them back.
TEST(KeyIndexTest, MatchesUnorderedMapUnderRandomChurn) {
  std::mt19937_64 random(7);
  KeyIndex<int> index(4);
  std::unordered_map<std::uint64_t, int> expected;
  for (int step = 0; step < 200000; ++step) {
    std::uint64_t key = random() % 3 == 0 ? (random() % 64) << 40 : random() % 700;
    int action = static_cast<int>(random() % 3);
    int* found = index.find(key);
    auto it = expected.find(key);
    ASSERT_EQ(found != nullptr, it != expected.end()) << "step " << step << " key " << key;
    if (found != nullptr) {
      ASSERT_EQ(*found, it->second) << "step " << step << " key " << key;
    }
    if (action == 0 && it == expected.end()) {
      index.insert(key, step);
      expected.emplace(key, step);
    } else if (action == 1) {
      index.erase(key);
      expected.erase(key);
    }
    ASSERT_EQ(index.size(), expected.size());
  }
  // Every key left is still found, and no erased one is.
  for (std::uint64_t key = 0; key < 700; ++key) {
    EXPECT_EQ(index.find(key) != nullptr, expected.contains(key)) << key;
  }
  for (std::uint64_t high = 0; high < 64; ++high) {
    EXPECT_EQ(index.find(high << 40) != nullptr, expected.contains(high << 40)) << high;
  }
}

TEST(KeyIndexTest, GrowsAndStaysHalfEmpty) {
  KeyIndex<std::uint64_t> index(8);
  EXPECT_EQ(index.slotCount(), 16u);
  for (std::uint64_t key = 0; key < 1000; ++key) {
    index.insert(key * 16, key);
    ASSERT_LE(2 * index.size(), index.slotCount());
  }
  for (std::uint64_t key = 0; key < 1000; ++key) {
    ASSERT_NE(index.find(key * 16), nullptr) << key;
    EXPECT_EQ(*index.find(key * 16), key);
  }
  EXPECT_EQ(index.find(16 * 1000), nullptr);
}

TEST(RecentIdsTest, KeepsTheLastIdsOnly) {
  RecentIds recent(3);
  EXPECT_TRUE(recent.addIfNew("a"));
  EXPECT_FALSE(recent.addIfNew("a"));
  EXPECT_TRUE(recent.addIfNew("b"));
  EXPECT_TRUE(recent.addIfNew("c"));
  // "d" pushes out "a", the oldest.
  EXPECT_TRUE(recent.addIfNew("d"));
  EXPECT_EQ(recent.size(), 3u);
  EXPECT_FALSE(recent.addIfNew("b"));
  EXPECT_TRUE(recent.addIfNew("a"));
  recent.forget("d");
  EXPECT_TRUE(recent.addIfNew("d"));
}

constexpr std::int64_t kStartMs = 1'764'849'600'000;  // 2025-12-04T12:00:00Z
constexpr const char* kFirefox =
    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
constexpr const char* kNmap =
    "Mozilla/5.0 (compatible; Nmap Scripting Engine; https://nmap.org/book/nse.html)";
constexpr const char* kWhatWeb = "WhatWeb/0.5.5";

RuleMessage rule(const std::string& id) {
  RuleMessage message;
  message.rule_id = id;
  return message;
}

AuditRecord request(const std::string& ip, const std::string& method, const std::string& uri,
                    int status, std::int64_t time_ms, const std::string& agent = kFirefox) {
  AuditRecord record;
  record.client_ip = ip;
  record.method = method;
  record.uri = uri;
  record.response_status = status;
  record.timestamp_us = time_ms * 1000;
  record.request_headers.push_back({"Host", "shop.example"});
  record.request_headers.push_back({"User-Agent", agent});
  return record;
}

AuditRecord login(const std::string& ip, const std::string& user, const std::string& password,
                  std::int64_t time_ms, const std::string& agent = kFirefox) {
  AuditRecord record = request(ip, "POST", "/login.php", 200, time_ms, agent);
  record.form.kind = "login";
  record.form.username = user;
  record.form.password_sha256 = "sha256-of-" + password;
  return record;
}

AuditRecord formPost(const std::string& ip, const std::string& kind, std::int64_t time_ms) {
  AuditRecord record = request(ip, "POST", "/" + kind + ".php", 200, time_ms);
  record.form.kind = kind;
  return record;
}

AuditRecord checkout(const std::string& ip, const std::string& fingerprint, bool luhn_valid,
                     std::int64_t time_ms) {
  AuditRecord record = formPost(ip, "checkout", time_ms);
  CardFacts card;
  card.bin = "411111";
  card.last4 = fingerprint.substr(0, 4);
  card.luhn_valid = luhn_valid;
  card.fingerprint = fingerprint;
  record.form.cards.push_back(card);
  return record;
}

std::vector<std::string> ids(const std::vector<OatTag>& tags) {
  std::vector<std::string> out;
  for (const OatTag& tag : tags) {
    out.push_back(tag.id);
  }
  return out;
}

bool has(const std::vector<OatTag>& tags, const std::string& id) {
  return std::any_of(tags.begin(), tags.end(), [&](const OatTag& tag) { return tag.id == id; });
}

const OatTag* find(const std::vector<OatTag>& tags, const std::string& id) {
  auto found =
      std::find_if(tags.begin(), tags.end(), [&](const OatTag& tag) { return tag.id == id; });
  return found == tags.end() ? nullptr : &*found;
}

class BehaviourTest : public ::testing::Test {
 protected:
  std::vector<OatTag> observe(const AuditRecord& record) {
    return tagger().observe(record, record.timestamp_us / 1000);
  }

  BehaviourTagger& tagger() {
    if (!tagger_) {
      tagger_ = std::make_unique<BehaviourTagger>(options, metrics);
    }
    return *tagger_;
  }

  std::uint64_t metricValue(const std::string& needle) {
    // Sample lines are "name{labels} value"; the HELP and TYPE lines start with '#'.
    std::string text = "\n" + metrics.render();
    std::size_t at = text.find("\n" + needle + " ");
    if (at == std::string::npos) {
      return 0;
    }
    return std::stoull(text.substr(at + needle.size() + 2));
  }

  BehaviourOptions options;
  MetricsRegistry metrics;
  std::unique_ptr<BehaviourTagger> tagger_;
};

// A browser loading a few pages with their assets, one favicon per page and
// one contact message, as a person would in a few minutes.
TEST_F(BehaviourTest, QuietBrowsingGetsNoTags) {
  std::int64_t t = kStartMs;
  std::vector<std::string> pages = {"/", "/about.php", "/blog/", "/shop/", "/contact.php"};
  for (const std::string& page : pages) {
    EXPECT_TRUE(observe(request("198.51.100.7", "GET", page, 200, t)).empty()) << page;
    for (const char* asset : {"/style.css", "/app.js", "/logo.png", "/hero.jpg"}) {
      EXPECT_TRUE(observe(request("198.51.100.7", "GET", asset, 200, t + 50)).empty()) << asset;
    }
    EXPECT_TRUE(observe(request("198.51.100.7", "GET", "/favicon.ico", 404, t + 80)).empty());
    t += 8'000;
  }
  AuditRecord contact = formPost("198.51.100.7", "contact", t);
  contact.form.links = 1;
  contact.form.text_bytes = 300;
  EXPECT_TRUE(observe(contact).empty());
  EXPECT_TRUE(observe(login("198.51.100.7", "anna", "secret", t + 5'000)).empty());
  EXPECT_TRUE(observe(login("198.51.100.7", "anna", "secret2", t + 9'000)).empty());
}

TEST_F(BehaviourTest, CredentialStuffingFromManyUsernames) {
  std::vector<OatTag> tags;
  for (int i = 0; i < 7; ++i) {
    tags = observe(login("192.0.2.10", "user" + std::to_string(i), "pw" + std::to_string(i),
                         kStartMs + i * 500));
    EXPECT_TRUE(tags.empty()) << "attempt " << i;
  }
  tags = observe(login("192.0.2.10", "user7", "pw7", kStartMs + 4'000));
  ASSERT_TRUE(has(tags, "OAT-008")) << testing::PrintToString(ids(tags));
  EXPECT_FALSE(has(tags, "OAT-007"));
  const OatTag* tag = find(tags, "OAT-008");
  EXPECT_EQ(tag->basis, "behaviour");
  EXPECT_DOUBLE_EQ(tag->confidence, 0.5);
  EXPECT_NE(tag->reason.find("usernames=8"), std::string::npos) << tag->reason;
  EXPECT_NE(tag->reason.find("window=120s"), std::string::npos) << tag->reason;
  EXPECT_FALSE(tag->version.empty());
  EXPECT_FALSE(tag->name.empty());

  for (int i = 8; i < 32; ++i) {
    tags = observe(login("192.0.2.10", "user" + std::to_string(i), "pw" + std::to_string(i),
                         kStartMs + 4'000 + i * 100));
  }
  ASSERT_TRUE(has(tags, "OAT-008"));
  EXPECT_GT(find(tags, "OAT-008")->confidence, 0.8);
  EXPECT_EQ(metricValue("webtrap_collector_behaviour_tags_total{oat=\"OAT-008\"}"), 25u);
}

TEST_F(BehaviourTest, CredentialCrackingFromOneUsername) {
  std::vector<OatTag> tags;
  for (int i = 0; i < 7; ++i) {
    tags = observe(login("192.0.2.11", "admin", "guess" + std::to_string(i), kStartMs + i * 200));
    EXPECT_TRUE(tags.empty()) << "attempt " << i;
  }
  tags = observe(login("192.0.2.11", "admin", "guess7", kStartMs + 2'000));
  EXPECT_TRUE(has(tags, "OAT-007")) << testing::PrintToString(ids(tags));
  EXPECT_FALSE(has(tags, "OAT-008"));
}

TEST_F(BehaviourTest, RepeatedPasswordIsNotCracking) {
  // A person retrying one password: many attempts, one distinct password.
  for (int i = 0; i < 12; ++i) {
    EXPECT_TRUE(observe(login("192.0.2.12", "admin", "same", kStartMs + i * 1'000)).empty());
  }
}

TEST_F(BehaviourTest, PasswordSprayingIsCracking) {
  std::vector<OatTag> tags;
  for (int i = 0; i < 10; ++i) {
    tags = observe(login("192.0.2.13", "user" + std::to_string(i), "Winter2025!",
                         kStartMs + i * 300));
  }
  EXPECT_TRUE(has(tags, "OAT-007")) << testing::PrintToString(ids(tags));
  EXPECT_FALSE(has(tags, "OAT-008"));
  EXPECT_NE(find(tags, "OAT-007")->reason.find("spraying"), std::string::npos);
}

// A source that browses and then replays credentials: only its login posts
// carry the credential tag.
TEST_F(BehaviourTest, MixedSourceTagsOnlyLoginPosts) {
  std::int64_t t = kStartMs;
  EXPECT_TRUE(observe(request("192.0.2.14", "GET", "/", 200, t)).empty());
  EXPECT_TRUE(observe(request("192.0.2.14", "GET", "/style.css", 200, t + 10)).empty());
  std::vector<OatTag> tags;
  for (int i = 0; i < 12; ++i) {
    tags = observe(login("192.0.2.14", "u" + std::to_string(i), "p" + std::to_string(i),
                         t + 1'000 + i * 100));
  }
  EXPECT_TRUE(has(tags, "OAT-008"));
  EXPECT_TRUE(observe(request("192.0.2.14", "GET", "/about.php", 200, t + 3'000)).empty());
}

TEST_F(BehaviourTest, VulnerabilityScanningFromAttackRules) {
  std::vector<OatTag> tags;
  for (int i = 0; i < 3; ++i) {
    AuditRecord record =
        request("192.0.2.20", "GET", "/about.php?id=1%27+OR+" + std::to_string(i), 200,
                kStartMs + i * 100);
    record.messages.push_back(rule("942100"));
    tags = observe(record);
    if (i < 2) {
      EXPECT_FALSE(has(tags, "OAT-014")) << "request " << i;
    }
  }
  EXPECT_TRUE(has(tags, "OAT-014")) << testing::PrintToString(ids(tags));

  // Rules that are not attack families (protocol checks, scanner agents)
  // do not count.
  for (int i = 0; i < 5; ++i) {
    AuditRecord record = request("192.0.2.21", "GET", "/", 200, kStartMs + i * 100);
    record.messages.push_back(rule("920350"));  // numeric Host header
    record.messages.push_back(rule("913100"));  // scanner user agent
    EXPECT_FALSE(has(observe(record), "OAT-014")) << "request " << i;
  }
}

TEST_F(BehaviourTest, VulnerabilityScanningFromPathBreadth) {
  std::vector<OatTag> tags;
  for (int i = 0; i < 45; ++i) {
    tags = observe(request("192.0.2.22", "GET", "/word" + std::to_string(i), 404,
                           kStartMs + i * 50, "gobuster/3.5"));
    if (i < 39) {
      EXPECT_TRUE(tags.empty()) << "request " << i << ": " << testing::PrintToString(ids(tags));
    }
  }
  EXPECT_TRUE(has(tags, "OAT-014"));
  EXPECT_FALSE(has(tags, "OAT-018"));
  EXPECT_FALSE(has(tags, "OAT-011"));
  EXPECT_FALSE(has(tags, "OAT-015"));
}

// A scanner fuzzing every form: many user names, registrations, posts and
// fast requests, all carrying attack payloads. Only OAT-014 fits.
TEST_F(BehaviourTest, ScannerFormFuzzingGetsOnlyScanning) {
  std::int64_t t = kStartMs;
  std::vector<std::vector<OatTag>> all;
  for (int i = 0; i < 60; ++i) {
    AuditRecord fuzz = login("192.0.2.29", "admin' OR " + std::to_string(i), "x", t + i * 20,
                             "Mozilla/5.0 (Windows NT 6.1; rv:45.0) Gecko/20100101 Firefox/45.0");
    fuzz.messages.push_back(rule("942100"));
    all.push_back(observe(fuzz));
    AuditRecord post = formPost("192.0.2.29", i % 2 == 0 ? "register" : "comment", t + i * 20 + 5);
    post.request_headers = fuzz.request_headers;
    all.push_back(observe(post));
    AuditRecord page = request("192.0.2.29", "GET", "/about.php?id=" + std::to_string(i), 200,
                               t + i * 20 + 10, fuzz.request_headers[1].value);
    all.push_back(observe(page));
  }
  for (const auto& tags : all) {
    for (const OatTag& tag : tags) {
      EXPECT_EQ(tag.id, "OAT-014") << tag.reason;
    }
  }
  EXPECT_TRUE(has(all.back(), "OAT-014"));
}

TEST_F(BehaviourTest, FootprintingFromProductPaths) {
  std::vector<std::string> paths = {"/wp-login.php", "/administrator/", "/phpmyadmin/",
                                    "/readme.html", "/typo3/"};
  std::vector<OatTag> tags;
  for (std::size_t i = 0; i < paths.size(); ++i) {
    tags = observe(request("192.0.2.23", "GET", paths[i], 404, kStartMs + i * 100));
    if (i < 4) {
      EXPECT_FALSE(has(tags, "OAT-018")) << paths[i];
    }
  }
  EXPECT_TRUE(has(tags, "OAT-018")) << testing::PrintToString(ids(tags));
  EXPECT_FALSE(has(tags, "OAT-014"));
}

// A client reading what the site publishes about itself: metadata files,
// then version files. The sweep is footprinting, not fingerprinting.
TEST_F(BehaviourTest, MetadataSweepIsFootprintingOnly) {
  std::vector<std::string> paths = {"/robots.txt",  "/sitemap.xml", "/.well-known/security.txt",
                                    "/humans.txt",  "/crossdomain.xml", "/readme.html",
                                    "/CHANGELOG.txt", "/server-info", "/admin-old/"};
  std::vector<OatTag> tags;
  for (std::size_t i = 0; i < paths.size(); ++i) {
    tags = observe(request("192.0.2.33", "GET", paths[i], 404, kStartMs + i * 100));
    EXPECT_FALSE(has(tags, "OAT-004")) << paths[i];
    EXPECT_EQ(has(tags, "OAT-018"), i >= 4) << paths[i];
  }
}

TEST_F(BehaviourTest, FootprintingFromUnusualMethods) {
  std::vector<OatTag> tags;
  for (const char* method : {"PUT", "DELETE", "PROPFIND"}) {
    tags = observe(request("192.0.2.24", method, "/", 405, kStartMs));
  }
  EXPECT_TRUE(has(tags, "OAT-018")) << testing::PrintToString(ids(tags));
  // OPTIONS is a banner probe, not method enumeration.
  for (int i = 0; i < 4; ++i) {
    EXPECT_FALSE(has(observe(request("192.0.2.25", "OPTIONS", "/", 200, kStartMs + i)),
                     "OAT-018"));
  }
}

TEST_F(BehaviourTest, FingerprintingFromVersionProbes) {
  EXPECT_TRUE(observe(request("192.0.2.26", "GET", "/", 200, kStartMs)).empty());
  EXPECT_TRUE(observe(request("192.0.2.26", "HEAD", "/", 200, kStartMs + 10)).empty());
  std::vector<OatTag> tags =
      observe(request("192.0.2.26", "GET", "/readme.html", 404, kStartMs + 20));
  EXPECT_TRUE(has(tags, "OAT-004")) << testing::PrintToString(ids(tags));
  EXPECT_NE(find(tags, "OAT-004")->reason.find("probes=2"), std::string::npos);
}

TEST_F(BehaviourTest, RepeatedFaviconIsOneProbe) {
  for (int i = 0; i < 6; ++i) {
    EXPECT_TRUE(
        observe(request("192.0.2.27", "GET", "/favicon.ico", 200, kStartMs + i * 3'000)).empty());
  }
}

TEST_F(BehaviourTest, FingerprintingStopsPastMaxRequests) {
  for (int i = 0; i < 31; ++i) {
    observe(request("192.0.2.28", "GET", "/", 200, kStartMs + i * 10));
  }
  EXPECT_FALSE(has(observe(request("192.0.2.28", "HEAD", "/", 200, kStartMs + 400)), "OAT-004"));
  EXPECT_FALSE(
      has(observe(request("192.0.2.28", "GET", "/readme.txt", 404, kStartMs + 410)), "OAT-004"));
}

TEST_F(BehaviourTest, ScrapingFromManyExistingPages) {
  std::vector<OatTag> tags;
  for (int i = 0; i < 8; ++i) {
    std::string page = "/page" + std::to_string(i) + ".php";
    observe(request("192.0.2.30", "GET", "/img" + std::to_string(i) + ".png", 200,
                    kStartMs + i * 100, "Wget/1.21.3"));
    tags = observe(request("192.0.2.30", "GET", page, 200, kStartMs + i * 100 + 10, "Wget/1.21.3"));
    if (i < 7) {
      EXPECT_FALSE(has(tags, "OAT-011")) << page;
    }
  }
  EXPECT_TRUE(has(tags, "OAT-011")) << testing::PrintToString(ids(tags));
  EXPECT_FALSE(has(tags, "OAT-014"));
}

TEST_F(BehaviourTest, ScrapingFromIdWalkWithMissingIds) {
  // Five products exist, and the scraper requests ids 1 to 20.
  observe(request("192.0.2.34", "GET", "/shop/", 200, kStartMs, "PriceBot/2.1"));
  std::vector<OatTag> tags;
  for (int id = 1; id <= 20; ++id) {
    tags = observe(request("192.0.2.34", "GET", "/shop/product.php?id=" + std::to_string(id),
                           id <= 5 ? 200 : 404, kStartMs + id * 30, "PriceBot/2.1"));
    if (id < 15) {
      EXPECT_FALSE(has(tags, "OAT-011")) << "id " << id;
    }
  }
  EXPECT_TRUE(has(tags, "OAT-011")) << testing::PrintToString(ids(tags));
  EXPECT_FALSE(has(tags, "OAT-014"));
}

TEST_F(BehaviourTest, ScrapingCountsPagesByQuery) {
  std::vector<OatTag> tags;
  for (int id = 1; id <= 8; ++id) {
    tags = observe(request("192.0.2.32", "GET", "/shop/product.php?id=" + std::to_string(id), 200,
                           kStartMs + id * 30, "PriceBot/2.0"));
  }
  EXPECT_TRUE(has(tags, "OAT-011")) << testing::PrintToString(ids(tags));
}

// Pages are distinguished by a hash of path and query. These URLs differ only
// in their first 16 bytes, where glibc writes its free-list pointers into a
// freed block, so a hash over a freed copy of the URL counted one page.
TEST_F(BehaviourTest, ScrapingCountsPagesDifferingAtStart) {
  std::vector<OatTag> tags;
  for (char letter = 'a'; letter < 'a' + 8; ++letter) {
    std::string url = "/" + std::string(1, letter) + "-catalogue-page.php?sort=name&page=1";
    tags = observe(request("192.0.2.33", "GET", url, 200, kStartMs + (letter - 'a') * 30,
                           "PriceBot/2.0"));
  }
  EXPECT_TRUE(has(tags, "OAT-011")) << testing::PrintToString(ids(tags));
}

TEST_F(BehaviourTest, StaticAssetsAreNotPages) {
  for (int i = 0; i < 20; ++i) {
    EXPECT_TRUE(observe(request("192.0.2.31", "GET", "/assets/" + std::to_string(i) + ".css", 200,
                                kStartMs + i * 100))
                    .empty());
  }
}

// A scanner's crawl (wapiti) requests a made-up file in each folder to learn
// its 404 page, so a quarter of its requests get 404 while its pages are
// found. A crawler that follows links gets almost none.
TEST_F(BehaviourTest, CrawlWithMissingPagesIsNotScraping) {
  std::int64_t t = kStartMs;
  for (int folder = 0; folder < 4; ++folder) {
    std::string base = "/folder" + std::to_string(folder) + "/";
    EXPECT_FALSE(has(observe(request("192.0.2.35", "GET", base + "zqxjuxJRsMXtaw.html", 404, t++)),
                     "OAT-011"));
    for (int page = 0; page < 3; ++page) {
      std::string uri = base + "page" + std::to_string(page) + ".php";
      EXPECT_FALSE(has(observe(request("192.0.2.35", "GET", uri, 200, t++)), "OAT-011")) << uri;
    }
  }
}

// A crawl that submits the forms it finds is a scanner filling in forms, not
// a scraper. A single login before scraping is allowed.
TEST_F(BehaviourTest, CrawlThatPostsFormsIsNotScraping) {
  std::int64_t t = kStartMs;
  observe(formPost("192.0.2.36", "contact", t++));
  observe(formPost("192.0.2.36", "comment", t++));
  for (int i = 0; i < 12; ++i) {
    std::string uri = "/page" + std::to_string(i) + ".php";
    EXPECT_FALSE(has(observe(request("192.0.2.36", "GET", uri, 200, t++)), "OAT-011")) << uri;
  }

  AuditRecord first_login = login("192.0.2.37", "reader", "secret", t++);
  observe(first_login);
  std::vector<OatTag> tags;
  for (int i = 0; i < 8; ++i) {
    tags = observe(request("192.0.2.37", "GET", "/page" + std::to_string(i) + ".php", 200, t++));
  }
  const OatTag* scraping = find(tags, "OAT-011");
  ASSERT_NE(scraping, nullptr) << testing::PrintToString(ids(tags));
  EXPECT_NE(scraping->reason.find("posts=1"), std::string::npos) << scraping->reason;
}

const OatVerdict* findVerdict(const std::vector<OatVerdict>& verdicts, const std::string& id) {
  auto found = std::find_if(verdicts.begin(), verdicts.end(),
                            [&](const OatVerdict& verdict) { return verdict.id == id; });
  return found == verdicts.end() ? nullptr : &*found;
}

// A crawl that reads as scraping until the same client posts forms, as
// wapiti does when its crawl finds existing pages first.
TEST_F(BehaviourTest, FormPostsWithdrawScrapingVerdict) {
  std::int64_t t = kStartMs;
  std::vector<OatTag> tags;
  std::vector<OatVerdict> verdicts;
  for (int i = 0; i < 8; ++i) {
    verdicts.clear();
    tags = tagger().observe(
        request("192.0.2.50", "GET", "/page" + std::to_string(i) + ".php", 200, t), t, &verdicts);
    t += 100;
  }
  const OatTag* scraping = find(tags, "OAT-011");
  ASSERT_NE(scraping, nullptr) << testing::PrintToString(ids(tags));
  EXPECT_TRUE(scraping->provisional);
  EXPECT_EQ(scraping->key.rfind("ip_ua:", 0), 0u) << scraping->key;
  const OatVerdict* verdict = findVerdict(verdicts, "OAT-011");
  ASSERT_NE(verdict, nullptr);
  EXPECT_EQ(verdict->status, "provisional");
  EXPECT_EQ(verdict->key, scraping->key);
  EXPECT_EQ(verdict->records, 1u);
  EXPECT_EQ(verdict->first_ms, kStartMs + 700);

  verdicts.clear();
  tags = tagger().observe(formPost("192.0.2.50", "contact", t), t, &verdicts);
  t += 100;
  verdict = findVerdict(verdicts, "OAT-011");
  ASSERT_NE(verdict, nullptr);
  EXPECT_EQ(verdict->status, "provisional") << "one post is allowed";

  verdicts.clear();
  tags = tagger().observe(formPost("192.0.2.50", "comment", t), t, &verdicts);
  EXPECT_FALSE(has(tags, "OAT-011"));
  verdict = findVerdict(verdicts, "OAT-011");
  ASSERT_NE(verdict, nullptr);
  EXPECT_EQ(verdict->status, "withdrawn");
  EXPECT_EQ(verdict->withdrawn_ms, t);
  EXPECT_NE(verdict->reason.find("posts=2"), std::string::npos) << verdict->reason;
  EXPECT_EQ(metricValue(
                "webtrap_collector_behaviour_verdicts_withdrawn_total{oat=\"OAT-011\"}"),
            1u);

  // Later records keep reporting the withdrawn verdict.
  t += 100;
  verdicts.clear();
  tagger().observe(request("192.0.2.50", "GET", "/page9.php", 200, t), t, &verdicts);
  verdict = findVerdict(verdicts, "OAT-011");
  ASSERT_NE(verdict, nullptr);
  EXPECT_EQ(verdict->status, "withdrawn");
}

TEST_F(BehaviourTest, AttackPayloadsWithdrawCredentialVerdict) {
  std::int64_t t = kStartMs;
  std::vector<OatTag> tags;
  for (int i = 0; i < 8; ++i) {
    tags = observe(login("192.0.2.51", "user" + std::to_string(i), "pw" + std::to_string(i), t));
    t += 100;
  }
  const OatTag* stuffing = find(tags, "OAT-008");
  ASSERT_NE(stuffing, nullptr) << testing::PrintToString(ids(tags));
  EXPECT_TRUE(stuffing->provisional);

  std::vector<OatVerdict> verdicts;
  for (int i = 0; i < 3; ++i) {
    AuditRecord record = request("192.0.2.51", "GET", "/about.php?id=1%27", 200, t);
    record.messages.push_back(rule("942100"));
    verdicts.clear();
    tags = tagger().observe(record, t, &verdicts);
    t += 100;
  }
  const OatVerdict* verdict = findVerdict(verdicts, "OAT-008");
  ASSERT_NE(verdict, nullptr);
  EXPECT_EQ(verdict->status, "withdrawn");
  EXPECT_NE(verdict->reason.find("attack_requests=3"), std::string::npos) << verdict->reason;
  // Scanning has no counter-evidence: its tag is final when given.
  const OatTag* scanning = find(tags, "OAT-014");
  ASSERT_NE(scanning, nullptr);
  EXPECT_FALSE(scanning->provisional);
  verdict = findVerdict(verdicts, "OAT-014");
  ASSERT_NE(verdict, nullptr);
  EXPECT_EQ(verdict->status, "final");
}

TEST_F(BehaviourTest, VerdictFinalOnceEvidenceLeavesWindow) {
  std::int64_t t = kStartMs;
  for (int i = 0; i < 8; ++i) {
    observe(request("192.0.2.52", "GET", "/page" + std::to_string(i) + ".php", 200, t));
    t += 100;
  }
  // One window after the last scraping record, the same client posts two
  // forms: the scraping evidence has left the window, so the verdict stands.
  t += options.window_ms;
  std::vector<OatVerdict> verdicts;
  tagger().observe(formPost("192.0.2.52", "contact", t), t, &verdicts);
  const OatVerdict* verdict = findVerdict(verdicts, "OAT-011");
  ASSERT_NE(verdict, nullptr);
  EXPECT_EQ(verdict->status, "final");
  verdicts.clear();
  tagger().observe(formPost("192.0.2.52", "comment", t + 1), t + 1, &verdicts);
  verdict = findVerdict(verdicts, "OAT-011");
  ASSERT_NE(verdict, nullptr);
  EXPECT_EQ(verdict->status, "final");
}

TEST_F(BehaviourTest, VerdictTableListsKeys) {
  std::int64_t t = kStartMs;
  for (int i = 0; i < 8; ++i) {
    observe(request("192.0.2.53", "GET", "/page" + std::to_string(i) + ".php", 200, t,
                    "Wget/1.21.3"));
    t += 100;
  }
  observe(request("192.0.2.54", "GET", "/", 200, t));  // no verdict

  std::vector<KeyVerdicts> table = tagger().verdicts(t, 100);
  ASSERT_EQ(table.size(), 1u);
  EXPECT_EQ(table[0].kind, "ip_ua");
  EXPECT_EQ(table[0].source_ip, "192.0.2.53");
  EXPECT_EQ(table[0].user_agent, "Wget/1.21.3");
  ASSERT_EQ(table[0].verdicts.size(), 1u);
  EXPECT_EQ(table[0].verdicts[0].id, "OAT-011");
  EXPECT_EQ(table[0].verdicts[0].status, "provisional");

  // Reported final once the collector's clock is a window past the last
  // record's arrival, with no later record of the key.
  table = tagger().verdicts(t + options.window_ms, 100);
  ASSERT_EQ(table.size(), 1u);
  EXPECT_EQ(table[0].verdicts[0].status, "final");
  EXPECT_TRUE(tagger().verdicts(t, 0).empty());

  std::string json = keyVerdictsJson(table);
  EXPECT_EQ(json.rfind("{\"keys\":[{\"key\":\"ip_ua:", 0), 0u) << json;
  EXPECT_NE(json.find("\"user_agent\":\"Wget/1.21.3\""), std::string::npos) << json;
  EXPECT_NE(json.find("\"status\":\"final\""), std::string::npos) << json;
  EXPECT_NE(json.find("\"first\":\"2025-12-04T12:00:00.700Z\""), std::string::npos) << json;
}

// CRS 942140 lists "northwind" as a database name. A cracker trying
// passwords for admin@northwind.example on www.northwind.example sends no
// SQL injection: the match is the site's own name.
TEST_F(BehaviourTest, OwnNameMatchIsNoAttackPayload) {
  auto attempt = [](const std::string& ip, const std::string& host, int i) {
    AuditRecord record = login(ip, "admin@northwind.example", "Summer" + std::to_string(2000 + i),
                               kStartMs + i * 300);
    record.request_headers[0].value = host;
    RuleMessage match = rule("942140");
    match.data = "Matched Data: northwind found within ARGS:user: admin@northwind.example";
    record.messages.push_back(match);
    return record;
  };
  std::vector<OatTag> tags;
  for (int i = 0; i < 9; ++i) {
    tags = observe(attempt("192.0.2.60", "www.northwind.example:8080", i));
  }
  EXPECT_TRUE(has(tags, "OAT-007")) << testing::PrintToString(ids(tags));
  EXPECT_FALSE(has(tags, "OAT-014")) << testing::PrintToString(ids(tags));

  // On a site with another name the same word is a database name, so the
  // requests count as payloads.
  for (int i = 0; i < 9; ++i) {
    tags = observe(attempt("192.0.2.61", "shop.example", i));
  }
  EXPECT_TRUE(has(tags, "OAT-014")) << testing::PrintToString(ids(tags));
  EXPECT_FALSE(has(tags, "OAT-007")) << testing::PrintToString(ids(tags));
}

// WhatWeb at aggression 3: the home page, then its plugins' own paths.
TEST_F(BehaviourTest, WhatWebPluginPathsAreFootprinting) {
  std::int64_t t = kStartMs;
  EXPECT_TRUE(observe(request("192.0.2.38", "GET", "/", 200, t++, kWhatWeb)).empty());
  EXPECT_TRUE(
      observe(request("192.0.2.38", "GET", "/icons/apache_pb.gif", 404, t++, kWhatWeb)).empty());
  std::vector<OatTag> tags =
      observe(request("192.0.2.38", "GET", "/icons/apache_pb2.gif", 404, t++, kWhatWeb));
  const OatTag* footprinting = find(tags, "OAT-018");
  ASSERT_NE(footprinting, nullptr) << testing::PrintToString(ids(tags));
  EXPECT_GE(footprinting->confidence, 0.5);
  EXPECT_NE(footprinting->reason.find("tool:whatweb"), std::string::npos) << footprinting->reason;
  EXPECT_FALSE(has(tags, "OAT-014"));

  // At aggression 1 WhatWeb requests the target URL only, however often.
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(observe(request("192.0.2.39", "GET", "/", 200, t++, kWhatWeb)).empty());
  }
  // The same three paths from a client that names no tool are no sweep.
  for (const char* path : {"/", "/icons/apache_pb.gif", "/icons/apache_pb2.gif"}) {
    EXPECT_FALSE(has(observe(request("192.0.2.40", "GET", path, 404, t++)), "OAT-018")) << path;
  }
}

// nmap -sV's version scripts request five paths on every run, which is
// fingerprinting only.
TEST_F(BehaviourTest, NmapVersionScanIsNotFootprinting) {
  std::int64_t t = kStartMs;
  std::vector<std::pair<std::string, std::string>> requests = {
      {"GET", "/"},      {"GET", "/nmaplowercheck1796420341"}, {"POST", "/sdk"},
      {"HEAD", "/"},     {"OPTIONS", "/"},                     {"GET", "/HNAP1"},
      {"GET", "/evox/about"}, {"GET", "/"}};
  for (const auto& [method, path] : requests) {
    std::vector<OatTag> tags = observe(request("192.0.2.41", method, path, 404, t++, kNmap));
    EXPECT_FALSE(has(tags, "OAT-018")) << method << " " << path;
    EXPECT_FALSE(has(tags, "OAT-014")) << method << " " << path;
  }
}

// nmap's http-enum: a long list of mostly missing product paths, with a few
// path traversal checks among them. That maps the site (OAT-018); it is not
// a directory brute force (OAT-014).
TEST_F(BehaviourTest, NmapEnumerationIsFootprintingNotScanning) {
  std::int64_t t = kStartMs;
  std::vector<OatTag> tags;
  for (int i = 0; i < 60; ++i) {
    AuditRecord record =
        request("192.0.2.42", "HEAD", "/product" + std::to_string(i) + "/", 404, t++, kNmap);
    if (i % 10 == 0) {
      record.messages.push_back(rule("930100"));
      record.messages.push_back(rule("932160"));
    }
    tags = observe(record);
    EXPECT_FALSE(has(tags, "OAT-014")) << "request " << i << ": " << tags.size();
  }
  const OatTag* footprinting = find(tags, "OAT-018");
  ASSERT_NE(footprinting, nullptr) << testing::PrintToString(ids(tags));
  EXPECT_GE(footprinting->confidence, 0.5);
  EXPECT_NE(footprinting->reason.find("tool:nmap"), std::string::npos) << footprinting->reason;

  // Payloads outside the tool's own checks still count, whatever the agent.
  for (int i = 0; i < 3; ++i) {
    AuditRecord record =
        request("192.0.2.43", "GET", "/about.php?id=1%27+OR+" + std::to_string(i), 200, t++, kNmap);
    record.messages.push_back(rule("942100"));
    tags = observe(record);
  }
  EXPECT_TRUE(has(tags, "OAT-014")) << testing::PrintToString(ids(tags));
}

TEST_F(BehaviourTest, DenialOfServiceFromFloodOfOnePath) {
  std::vector<OatTag> tags;
  for (int i = 0; i < 250; ++i) {
    tags = observe(request("192.0.2.40", "GET", "/", 200, kStartMs + i * 10, "ApacheBench/2.3"));
    if (i < 150) {
      EXPECT_FALSE(has(tags, "OAT-015")) << "request " << i;
    }
  }
  EXPECT_TRUE(has(tags, "OAT-015")) << testing::PrintToString(ids(tags));
  EXPECT_FALSE(has(tags, "OAT-011"));
}

TEST_F(BehaviourTest, SlowRepeatsAreNoFlood) {
  // 240 requests at 2 per second: under 200 in any 10 s span.
  for (int i = 0; i < 240; ++i) {
    EXPECT_FALSE(
        has(observe(request("192.0.2.41", "GET", "/", 200, kStartMs + i * 500)), "OAT-015"))
        << "request " << i;
  }
}

TEST_F(BehaviourTest, FastBroadRequestsAreNoFlood) {
  for (int i = 0; i < 250; ++i) {
    EXPECT_FALSE(has(observe(request("192.0.2.42", "GET", "/w" + std::to_string(i), 404,
                                     kStartMs + i * 10)),
                     "OAT-015"));
  }
}

TEST_F(BehaviourTest, AccountCreationFromRegistrations) {
  EXPECT_TRUE(observe(formPost("192.0.2.50", "register", kStartMs)).empty());
  EXPECT_TRUE(observe(formPost("192.0.2.50", "register", kStartMs + 500)).empty());
  std::vector<OatTag> tags = observe(formPost("192.0.2.50", "register", kStartMs + 900));
  EXPECT_TRUE(has(tags, "OAT-019")) << testing::PrintToString(ids(tags));
  // A page view of the same source is not a registration.
  EXPECT_TRUE(observe(request("192.0.2.50", "GET", "/", 200, kStartMs + 1'000)).empty());
}

TEST_F(BehaviourTest, TokenCrackingFromDistinctCoupons) {
  std::vector<OatTag> tags;
  for (int i = 0; i < 5; ++i) {
    AuditRecord record = formPost("192.0.2.51", "coupon", kStartMs + i * 100);
    record.form.coupon = "SAVE" + std::to_string(i);
    tags = observe(record);
    if (i < 4) {
      EXPECT_TRUE(tags.empty()) << record.form.coupon;
    }
  }
  EXPECT_TRUE(has(tags, "OAT-002")) << testing::PrintToString(ids(tags));

  for (int i = 0; i < 8; ++i) {
    AuditRecord record = formPost("192.0.2.52", "coupon", kStartMs + i * 100);
    record.form.coupon = "WELCOME10";
    EXPECT_TRUE(observe(record).empty());
  }
}

TEST_F(BehaviourTest, CardingFromDistinctValidCards) {
  EXPECT_TRUE(observe(checkout("192.0.2.60", "aaaa000000000001", true, kStartMs)).empty());
  // Cards failing the Luhn check are typing errors, not carding.
  EXPECT_TRUE(observe(checkout("192.0.2.60", "bbbb000000000002", false, kStartMs + 10)).empty());
  EXPECT_TRUE(observe(checkout("192.0.2.60", "cccc000000000003", false, kStartMs + 20)).empty());
  EXPECT_TRUE(observe(checkout("192.0.2.60", "dddd000000000004", true, kStartMs + 30)).empty());
  std::vector<OatTag> tags = observe(checkout("192.0.2.60", "eeee000000000005", true, kStartMs + 40));
  EXPECT_TRUE(has(tags, "OAT-001")) << testing::PrintToString(ids(tags));
  EXPECT_FALSE(has(tags, "OAT-010"));
}

TEST_F(BehaviourTest, CardCrackingFromOneCardRepeated) {
  std::vector<OatTag> tags;
  for (int i = 0; i < 4; ++i) {
    tags = observe(checkout("192.0.2.61", "aaaa000000000001", true, kStartMs + i * 200));
    if (i < 3) {
      EXPECT_TRUE(tags.empty()) << "attempt " << i;
    }
  }
  EXPECT_TRUE(has(tags, "OAT-010")) << testing::PrintToString(ids(tags));
  EXPECT_FALSE(has(tags, "OAT-001"));
}

TEST_F(BehaviourTest, SpammingFromLinkPosts) {
  AuditRecord first = formPost("192.0.2.70", "comment", kStartMs);
  first.form.links = 2;
  EXPECT_TRUE(observe(first).empty());
  AuditRecord second = formPost("192.0.2.70", "comment", kStartMs + 300);
  second.form.links = 3;
  EXPECT_TRUE(has(observe(second), "OAT-017"));

  AuditRecord dense = formPost("192.0.2.71", "contact", kStartMs);
  dense.form.links = 6;
  EXPECT_TRUE(has(observe(dense), "OAT-017"));

  std::vector<OatTag> tags;
  for (int i = 0; i < 10; ++i) {
    tags = observe(formPost("192.0.2.72", "comment", kStartMs + i * 100));
    if (i < 9) {
      EXPECT_TRUE(tags.empty()) << "post " << i;
    }
  }
  EXPECT_TRUE(has(tags, "OAT-017"));
}

TEST_F(BehaviourTest, WindowExpiryForgetsOldEvidence) {
  for (int i = 0; i < 7; ++i) {
    observe(login("192.0.2.80", "user" + std::to_string(i), "pw" + std::to_string(i),
                  kStartMs + i * 100));
  }
  // Past the 2-minute window, the first seven no longer count.
  std::int64_t later = kStartMs + 130'000;
  EXPECT_TRUE(observe(login("192.0.2.80", "user7", "pw7", later)).empty());
  EXPECT_TRUE(observe(login("192.0.2.80", "user8", "pw8", later + 100)).empty());
}

TEST_F(BehaviourTest, OutOfOrderRecordsCountInTheirWindow) {
  std::vector<AuditRecord> records;
  for (int i = 0; i < 10; ++i) {
    records.push_back(login("192.0.2.81", "user" + std::to_string(i), "pw" + std::to_string(i),
                            kStartMs + i * 1'000));
  }
  // Two probes shipping in batches: arrival order differs from time order
  // by up to 5 s.
  std::vector<int> order = {2, 0, 1, 5, 3, 4, 8, 6, 9, 7};
  std::vector<OatTag> tags;
  for (int index : order) {
    tags = observe(records[index]);
  }
  EXPECT_TRUE(has(tags, "OAT-008")) << testing::PrintToString(ids(tags));
  EXPECT_EQ(metricValue("webtrap_collector_behaviour_late_records_total"), 0u);

  // A record older than its key's window arrives last: it is not counted,
  // and the late counter counts it.
  AuditRecord stale = login("192.0.2.81", "old", "old", kStartMs - 200'000);
  observe(stale);
  EXPECT_EQ(metricValue("webtrap_collector_behaviour_late_records_total"), 1u);
}

TEST_F(BehaviourTest, RecordTimeDecidesTheWindowNotArrival) {
  // Eight attempts that arrive at once but lie minutes apart never share a
  // window.
  for (int i = 0; i < 8; ++i) {
    EXPECT_TRUE(tagger()
                    .observe(login("192.0.2.82", "user" + std::to_string(i),
                                   "pw" + std::to_string(i), kStartMs + i * 125'000),
                             kStartMs + 8 * 125'000)
                    .empty())
        << "attempt " << i;
  }
}

TEST_F(BehaviourTest, KeyCapEvictsLeastRecentlySeen) {
  options.max_keys = 4;  // two sources: each has an address key and an address+agent key
  for (int i = 0; i < 7; ++i) {
    observe(login("192.0.2.90", "user" + std::to_string(i), "pw" + std::to_string(i),
                  kStartMs + i * 100));
  }
  observe(request("192.0.2.91", "GET", "/", 200, kStartMs + 800));
  EXPECT_EQ(tagger().trackedKeys(), 4u);
  EXPECT_EQ(metricValue("webtrap_collector_behaviour_evictions_total"), 0u);
  // A third source pushes out the least recently seen one, 192.0.2.90.
  observe(request("192.0.2.92", "GET", "/", 200, kStartMs + 900));
  EXPECT_EQ(tagger().trackedKeys(), 4u);
  EXPECT_EQ(metricValue("webtrap_collector_behaviour_evictions_total"), 2u);
  EXPECT_EQ(metricValue("webtrap_collector_behaviour_tracked_keys"), 4u);
  // Its seven attempts are gone, so the eighth starts a new count.
  EXPECT_TRUE(observe(login("192.0.2.90", "user7", "pw7", kStartMs + 1'000)).empty());
}

TEST_F(BehaviourTest, EvictedKeyLeavesNothingToItsSuccessor) {
  // One source fills the cap (its address key and its address+agent key).
  // The next source takes over both entries, which must start empty: with
  // the first source's seven user names still in them, its one login would
  // be the eighth and be tagged.
  options.max_keys = 2;
  for (int i = 0; i < 7; ++i) {
    observe(login("192.0.2.93", "user" + std::to_string(i), "pw" + std::to_string(i),
                  kStartMs + i * 100));
  }
  EXPECT_TRUE(observe(login("192.0.2.94", "user7", "pw7", kStartMs + 800)).empty());
  EXPECT_EQ(metricValue("webtrap_collector_behaviour_evictions_total"), 2u);
  EXPECT_EQ(tagger().trackedKeys(), 2u);
}

TEST_F(BehaviourTest, AgentsBehindOneAddressKeepOwnWindows) {
  // Two people behind one NAT address, five logins each: neither reaches
  // the threshold of eight user names.
  for (int i = 0; i < 5; ++i) {
    EXPECT_TRUE(observe(login("203.0.113.5", "a" + std::to_string(i), "x" + std::to_string(i),
                              kStartMs + i * 100, "AgentA/1.0"))
                    .empty());
    EXPECT_TRUE(observe(login("203.0.113.5", "b" + std::to_string(i), "y" + std::to_string(i),
                              kStartMs + i * 100 + 50, "AgentB/1.0"))
                    .empty());
  }
}

TEST_F(BehaviourTest, RotatingAgentsMakeTheAddressTheKey) {
  std::vector<OatTag> tags;
  for (int i = 0; i < 10; ++i) {
    tags = observe(login("203.0.113.6", "u" + std::to_string(i), "p" + std::to_string(i),
                         kStartMs + i * 100, "Agent/" + std::to_string(i)));
  }
  ASSERT_TRUE(has(tags, "OAT-008")) << testing::PrintToString(ids(tags));
  EXPECT_NE(find(tags, "OAT-008")->reason.find("key=ip "), std::string::npos);
}

TEST_F(BehaviourTest, SessionCookieJoinsAddresses) {
  // One session hopping between addresses (a mobile client, a proxy pool
  // that keeps cookies).
  std::vector<OatTag> tags;
  for (int i = 0; i < 8; ++i) {
    AuditRecord record = login("203.0.113." + std::to_string(20 + i), "u" + std::to_string(i),
                               "p" + std::to_string(i), kStartMs + i * 100);
    record.request_headers.push_back({"Cookie", "lang=en; PHPSESSID=abc123def; theme=dark"});
    tags = observe(record);
  }
  ASSERT_TRUE(has(tags, "OAT-008")) << testing::PrintToString(ids(tags));
  EXPECT_NE(find(tags, "OAT-008")->reason.find("key=session"), std::string::npos);
}

TEST_F(BehaviourTest, DisabledTaggerReturnsNothing) {
  options.enabled = false;
  for (int i = 0; i < 20; ++i) {
    EXPECT_TRUE(observe(login("192.0.2.95", "u" + std::to_string(i), "p" + std::to_string(i),
                              kStartMs + i))
                    .empty());
  }
  EXPECT_EQ(tagger().trackedKeys(), 0u);
}

TEST_F(BehaviourTest, ConcurrentObserversKeepEveryCount) {
  options.max_keys = 100'000;
  constexpr int kThreads = 4;
  constexpr int kSourcesPerThread = 50;
  std::atomic<int> stuffing_sources{0};
  tagger();  // built once here, because the fixture builds it lazily without a lock
  std::vector<std::thread> threads;
  for (int thread = 0; thread < kThreads; ++thread) {
    threads.emplace_back([&, thread] {
      for (int source = 0; source < kSourcesPerThread; ++source) {
        std::string ip = fmt::format("10.{}.{}.1", thread, source);
        bool tagged = false;

        for (int i = 0; i < 8; ++i) {
          auto tags = observe(login(ip, "u" + std::to_string(i), "p" + std::to_string(i),
                                    kStartMs + i * 10));
          tagged = has(tags, "OAT-008");
        }
        if (tagged) {
          ++stuffing_sources;
        }

        // Every thread also writes one shared source.
        observe(request("10.255.255.1", "GET", fmt::format("/x{}-{}", thread, source), 404,
                        kStartMs + source));
      }
    });
  }
  for (auto& thread : threads) {
    thread.join();
  }
  EXPECT_EQ(stuffing_sources.load(), kThreads * kSourcesPerThread);
  // Two keys per source, plus the shared one's two.
  EXPECT_EQ(tagger().trackedKeys(), static_cast<std::size_t>(kThreads * kSourcesPerThread * 2 + 2));
  // The shared source saw 200 distinct 404 paths from four threads.
  auto tags = observe(request("10.255.255.1", "GET", "/last", 404, kStartMs + 60));
  EXPECT_TRUE(has(tags, "OAT-014")) << testing::PrintToString(ids(tags));
}

// A store, a tagger and an ingest path in a folder of their own, and nine
// logins from one client with nine user names.
class BehaviourIngestTest : public ::testing::Test {
 protected:
  BehaviourIngestTest() : temp_dir_("webtrap-behaviour-ingest") {
    StoreOptions store_options;
    store_options.path = temp_dir_.path() / "store.sqlite";
    store_options.synchronous = "normal";
    store_ = std::make_unique<Store>(store_options);
    ingest_ = std::make_unique<Ingest>(*store_, enricher_, metrics_, [] {}, &tagger_);
    for (int i = 0; i < 9; ++i) {
      AuditRecord record = login("192.0.2.99", "user" + std::to_string(i),
                                 "pw" + std::to_string(i), kStartMs + i * 100);
      record.format = RecordFormat::kWebtrap;
      record.event_id = "behaviour-ingest-" + std::to_string(i);
      records_.push_back(record);
    }
    source_.input = InputKind::kFile;
    source_.sensor_id = "s1";
  }

  // The number of records for which OAT-008 held on the client's ip_ua key.
  std::uint64_t stuffingRecords() {
    for (const KeyVerdicts& key : tagger_.verdicts(kStartMs + 1000, 10)) {
      for (const OatVerdict& verdict : key.verdicts) {
        if (key.kind == "ip_ua" && verdict.id == "OAT-008") {
          return verdict.records;
        }
      }
    }
    return 0;
  }

  test_support::TempDir temp_dir_;
  Enricher enricher_{EnrichOptions{}};
  MetricsRegistry metrics_;
  BehaviourTagger tagger_{BehaviourOptions{}, metrics_};
  std::unique_ptr<Store> store_;
  std::unique_ptr<Ingest> ingest_;
  std::vector<AuditRecord> records_;
  IngestSource source_;
};

// The tagger's tags reach the stored document through ingest.
TEST_F(BehaviourIngestTest, StoredDocumentCarriesBehaviourTags) {
  {
    IngestResult result = ingest_->ingestDecoded(records_, {}, source_);
    ASSERT_EQ(result.stored, 9u);

    std::vector<StoredEvent> events = store_->readAfter(0, 100, 1 << 24);
    ASSERT_EQ(events.size(), 9u);
    EXPECT_EQ(events.front().document.find("\"basis\":\"behaviour\""), std::string::npos)
        << events.front().document;
    const std::string& last = events.back().document;
    EXPECT_NE(last.find("\"basis\":\"behaviour\""), std::string::npos) << last;
    EXPECT_NE(last.find("OAT-008"), std::string::npos) << last;
    EXPECT_NE(last.find("behaviour:key=ip_ua logins=9 usernames=9"), std::string::npos) << last;
    EXPECT_NE(last.find("\"provisional\":true"), std::string::npos) << last;
    EXPECT_NE(last.find("\"oat_verdicts\":[{\"id\":\"OAT-008\""), std::string::npos) << last;
  }
}

// A batch sent again after a lost acknowledgement is stored as duplicates
// and must not count in the windows a second time.
TEST_F(BehaviourIngestTest, ResentRecordsCountedOnce) {
  ingest_->ingestDecoded(records_, {}, source_);
  const std::uint64_t first = stuffingRecords();
  ASSERT_GT(first, 0u);
  IngestResult again = ingest_->ingestDecoded(records_, {}, source_);
  EXPECT_EQ(again.duplicates, 9u);
  EXPECT_EQ(stuffingRecords(), first);
}

// A batch whose commit failed was counted when it was prepared. The
// sender's retry must not count it again, and its documents still get the
// tags of that first count.
TEST_F(BehaviourIngestTest, RetryAfterFailedCommitCountedOnce) {
  MetricsRegistry reference_metrics;
  BehaviourTagger reference{BehaviourOptions{}, reference_metrics};
  for (const AuditRecord& record : records_) {
    reference.observe(record, kStartMs);
  }
  std::uint64_t expected = 0;
  for (const KeyVerdicts& key : reference.verdicts(kStartMs + 1000, 10)) {
    for (const OatVerdict& verdict : key.verdicts) {
      if (key.kind == "ip_ua" && verdict.id == "OAT-008") {
        expected = verdict.records;
      }
    }
  }
  ASSERT_GT(expected, 0u);

  // Every event insert fails, as on a full disk or a busy store.
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(store_->path().c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db,
                         "CREATE TRIGGER fail_events BEFORE INSERT ON events "
                         "BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
                         nullptr, nullptr, nullptr),
            SQLITE_OK);
  EXPECT_THROW(ingest_->ingestDecoded(records_, {}, source_), StoreUnavailable);
  EXPECT_THROW(ingest_->ingestDecoded(records_, {}, source_), StoreUnavailable);
  ASSERT_EQ(sqlite3_exec(db, "DROP TRIGGER fail_events;", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);

  IngestResult result = ingest_->ingestDecoded(records_, {}, source_);
  ASSERT_EQ(result.stored, 9u);
  EXPECT_EQ(stuffingRecords(), expected);
  std::vector<StoredEvent> events = store_->readAfter(0, 100, 1 << 24);
  ASSERT_EQ(events.size(), 9u);
  EXPECT_NE(events.back().document.find("\"basis\":\"behaviour\""), std::string::npos)
      << events.back().document;
}

TEST(BehaviourOptionsTest, DefaultsWhenSectionAbsent) {
  BehaviourOptions options = parseBehaviourOptions(YAML::Node());
  EXPECT_TRUE(options.enabled);
  EXPECT_EQ(options.window_ms, 120'000);
  EXPECT_EQ(options.max_keys, 20'000u);
  EXPECT_EQ(options.session_cookies, std::vector<std::string>{"PHPSESSID"});
}

TEST(BehaviourOptionsTest, ParsesNestedKeys) {
  BehaviourOptions options = parseBehaviourOptions(YAML::Load(R"(
enabled: false
window: 5m
max_keys: 500
session_cookies: [PHPSESSID, JSESSIONID]
credential_stuffing: {min_usernames: 20, max_attempts_per_username: 1.5}
denial_of_service: {span: 30s, min_requests: 1000, max_distinct_path_ratio: 0.05}
spamming:
  min_link_posts: 4
)"));
  EXPECT_FALSE(options.enabled);
  EXPECT_EQ(options.window_ms, 300'000);
  EXPECT_EQ(options.max_keys, 500u);
  EXPECT_EQ(options.session_cookies, (std::vector<std::string>{"PHPSESSID", "JSESSIONID"}));
  EXPECT_EQ(options.credential_stuffing.min_usernames, 20u);
  EXPECT_DOUBLE_EQ(options.credential_stuffing.max_attempts_per_username, 1.5);
  EXPECT_EQ(options.denial_of_service.span_ms, 30'000);
  EXPECT_EQ(options.denial_of_service.min_requests, 1000u);
  EXPECT_DOUBLE_EQ(options.denial_of_service.max_distinct_path_ratio, 0.05);
  EXPECT_EQ(options.spamming.min_link_posts, 4u);
  EXPECT_EQ(options.spamming.min_posts, 10u);
}

void expectConfigError(const std::string& yaml, const std::string& fragment) {
  try {
    parseBehaviourOptions(YAML::Load(yaml));
    ADD_FAILURE() << "no error for: " << yaml;
  } catch (const ConfigError& error) {
    EXPECT_NE(std::string(error.what()).find(fragment), std::string::npos)
        << "message: " << error.what();
  }
}

TEST(BehaviourOptionsTest, RejectsBadValues) {
  expectConfigError("windw: 2m", "behaviour.windw: unknown configuration key");
  expectConfigError("scraping: {min_page: 3}", "behaviour.scraping.min_page: unknown");
  expectConfigError("window: 120", "behaviour.window");
  expectConfigError("window: 200ms", "use a duration from 1s to 24h");
  expectConfigError("vulnerability_scanning: {min_ratio_404: 1.5}", "from 0 to 1");
  expectConfigError("carding: {min_cards: 0}", "use a count from 1 to 1000000");
  expectConfigError("max_keys: 0", "behaviour.max_keys");
  expectConfigError("session_cookies: PHPSESSID", "use a list of cookie names");
  expectConfigError("session_cookies: ['a b']", "invalid cookie name");
  expectConfigError("window: 5s\ndenial_of_service: {span: 10s}", "longer than behaviour.window");
  expectConfigError("spamming: 3", "behaviour.spamming: expected a map");
  expectConfigError("window: 1m\nwindow: 2m", "appears twice");
}

TEST(BehaviourOptionsTest, CollectorConfigDelegatesSection) {
  CollectorConfig config = parseCollectorConfig("behaviour:\n  window: 90s\n", "test.yaml");
  EXPECT_EQ(behaviourOptions(config).window_ms, 90'000);
  EXPECT_THROW(parseCollectorConfig("behaviour:\n  scraping: {pages: 3}\n", "test.yaml"),
               ConfigError);

  std::filesystem::path shipped =
      std::filesystem::path(WEBTRAP_SOURCE_DIR) / "etc" / "collector.yaml";
  BehaviourOptions options = behaviourOptions(loadCollectorConfig(shipped));
  EXPECT_TRUE(options.enabled);
  EXPECT_EQ(options.window_ms, 120'000);
  EXPECT_EQ(options.max_keys, 20'000u);
}

TEST(BehaviourOptionsTest, ReferenceListsEveryKey) {
  std::string rows = behaviourConfigurationRows();
  for (const char* key : {"behaviour.enabled", "behaviour.window", "behaviour.max_keys",
                          "behaviour.session_cookies", "behaviour.card_cracking.min_attempts",
                          "behaviour.spamming.min_links_per_post"}) {
    EXPECT_NE(rows.find(std::string("| ") + key + " |"), std::string::npos) << key;
  }
  // Every documented default parses to the built-in default.
  YAML::Node root(YAML::NodeType::Map);
  std::size_t start = 0;
  int keys = 0;
  while ((start = rows.find("| behaviour.", start)) != std::string::npos) {
    std::size_t key_end = rows.find(" |", start + 2);
    std::string key = rows.substr(start + 12, key_end - start - 12);
    std::size_t type_end = rows.find(" |", key_end + 3);
    std::size_t default_end = rows.find(" |", type_end + 3);
    std::string value = rows.substr(type_end + 3, default_end - type_end - 3);
    std::size_t dot = key.find('.');
    if (dot == std::string::npos) {
      root[key] = YAML::Load(value);
    } else {
      root[key.substr(0, dot)][key.substr(dot + 1)] = YAML::Load(value);
    }
    ++keys;
    start = default_end;
  }
  EXPECT_EQ(keys, 30);
  BehaviourOptions parsed = parseBehaviourOptions(root);
  EXPECT_EQ(describeBehaviourOptions(parsed), describeBehaviourOptions(BehaviourOptions{}));
}

}  // namespace
}  // namespace webtrap::collector
