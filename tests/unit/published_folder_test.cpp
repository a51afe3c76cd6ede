#include "collector/published_folder.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "collector/misp_feed_output.h"
#include "common/error.h"

namespace webtrap::collector {
namespace {

namespace http = boost::beast::http;
using Request = http::request<http::string_body>;

constexpr const char* kToken = "0123456789abcdef0123456789abcdef";
constexpr const char* kEventName = "5f0c2a3e-1b2c-4d5e-8f90-a1b2c3d4e5f6.json";

PublishedFolder parse(const std::string& yaml) {
  return parsePublishedFolder(YAML::Load(yaml), "outputs.misp_feed.serve");
}

class PublishedFolderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = std::filesystem::temp_directory_path() /
            ("published-folder-test-" + std::to_string(::getpid()));
    std::filesystem::remove_all(root_);
    std::filesystem::create_directories(root_ / "feed");
    write("feed/manifest.json", "{\"a\": 1}\n");
    write("feed/hashes.csv", "d41d8cd98f00b204e9800998ecf8427e,x\n");
    write("outside.json", "secret");
    folder_.name = "misp_feed";
    folder_.prefix = "/feeds/misp";
    folder_.folder = root_ / "feed";
    folder_.token = kToken;
    folder_.is_published_name = isMispFeedFileName;
  }

  void TearDown() override { std::filesystem::remove_all(root_); }

  void write(const std::string& name, const std::string& content) {
    std::ofstream(root_ / name, std::ios::binary) << content;
  }

  // Waits until the current second is later than the last change of every
  // file, so that they get a Last-Modified.
  void settle() {
    std::time_t changed = 0;
    for (const auto& entry : std::filesystem::directory_iterator(root_ / "feed")) {
      struct stat status {};
      ASSERT_EQ(::stat(entry.path().c_str(), &status), 0);
      changed = std::max({changed, status.st_mtime, status.st_ctime});
    }
    while (std::time(nullptr) <= changed) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }

  PublishedFileResponse getSince(const std::string& target, const std::string& since) {
    Request request{http::verb::get, target, 11};
    request.set(http::field::authorization, std::string("Bearer ") + kToken);
    request.set(http::field::if_modified_since, since);
    return servePublishedFile(folder_, request, slots_);
  }

  PublishedFileResponse get(const std::string& target, http::verb method = http::verb::get,
                            const std::string& authorization = std::string("Bearer ") + kToken,
                            const std::string& if_none_match = {}) {
    Request request{method, target, 11};
    if (!authorization.empty()) {
      request.set(http::field::authorization, authorization);
    }
    if (!if_none_match.empty()) {
      request.set(http::field::if_none_match, if_none_match);
    }
    return servePublishedFile(folder_, request, slots_);
  }

  std::filesystem::path root_;
  PublishedFolder folder_;
  PublishedReadSlots slots_{4};
};

TEST(PublishedFolderOptions, ParsesTokenAndPrefix) {
  PublishedFolder folder = parse(std::string("{prefix: /feeds/misp, token: ") + kToken + "}");
  EXPECT_EQ(folder.prefix, "/feeds/misp");
  EXPECT_EQ(folder.token, kToken);
  EXPECT_EQ(folder.token_setting, "token");
  EXPECT_FALSE(folder.allow_anonymous);
  EXPECT_EQ(folder.max_file_bytes, 64ULL << 20);
}

TEST(PublishedFolderOptions, AnonymousNeedsOptIn) {
  EXPECT_THROW(parse("{prefix: /feeds/misp}"), ConfigError);
  PublishedFolder folder = parse("{prefix: /feeds/misp, allow_anonymous: true}");
  EXPECT_TRUE(folder.allow_anonymous);
  EXPECT_THROW(parse(std::string("{prefix: /f, allow_anonymous: true, token: ") + kToken + "}"),
               ConfigError);
}

TEST(PublishedFolderOptions, RejectsInvalidValues) {
  const std::string token = std::string(", token: ") + kToken + "}";
  for (const char* prefix : {"/", "feeds", "/feeds/", "/a//b", "/a/../b", "/a/./b", "/v1",
                             "/v1/feed", "/a%2eb", "/a b"}) {
    EXPECT_THROW(parse(std::string("{prefix: \"") + prefix + "\"" + token), ConfigError) << prefix;
  }
  EXPECT_THROW(parse(std::string("{token: ") + kToken + "}"), ConfigError);
  EXPECT_THROW(parse("{prefix: /f, token: short}"), ConfigError);
  EXPECT_THROW(parse("{prefix: /f, token: \"0123456789abcdef 0123\"}"), ConfigError);
  EXPECT_THROW(parse("{prefix: /f, max_file_size: 512" + token), ConfigError);
  EXPECT_THROW(parse("{prefix: /f, colour: red" + token), ConfigError);
  EXPECT_THROW(parse("[/feeds/misp]"), ConfigError);
}

TEST_F(PublishedFolderTest, ReadsTokenFile) {
  write("token", std::string(kToken) + "\n");
  PublishedFolder folder =
      parse("{prefix: /feeds/misp, token_file: " + (root_ / "token").string() + "}");
  EXPECT_EQ(folder.token, kToken);
  EXPECT_EQ(folder.token_setting, "token_file");
  EXPECT_THROW(parse("{prefix: /f, token_file: " + (root_ / "missing").string() + "}"),
               ConfigError);
}

TEST_F(PublishedFolderTest, UnauthorizedNamesTokenSetting) {
  auto denied = get("/feeds/misp/hashes.csv", http::verb::get, "Bearer wrong");
  EXPECT_EQ(denied.response.result(), http::status::unauthorized);
  EXPECT_NE(denied.response.body().find("<serve.token>"), std::string::npos)
      << denied.response.body();

  folder_.token_setting = "token_file";
  denied = get("/feeds/misp/hashes.csv", http::verb::get, "Bearer wrong");
  EXPECT_EQ(denied.response.result(), http::status::unauthorized);
  EXPECT_NE(denied.response.body().find("<the token in serve.token_file>"), std::string::npos)
      << denied.response.body();
}

TEST(PublishedFolderOptions, OverlappingPrefixesRejected) {
  PublishedFolder a;
  a.name = "misp_feed";
  a.prefix = "/feeds";
  PublishedFolder b = a;
  b.name = "stix";
  b.prefix = "/feeds/stix";
  EXPECT_THROW(checkPublishedPrefixes({a, b}), ConfigError);
  b.prefix = "/feeds";
  EXPECT_THROW(checkPublishedPrefixes({a, b}), ConfigError);
  b.prefix = "/feedsstix";
  EXPECT_NO_THROW(checkPublishedPrefixes({a, b}));
}

TEST(MispFeedFileName, AcceptsOnlyFeedFiles) {
  EXPECT_TRUE(isMispFeedFileName("manifest.json"));
  EXPECT_TRUE(isMispFeedFileName("hashes.csv"));
  EXPECT_TRUE(isMispFeedFileName(kEventName));
  EXPECT_FALSE(isMispFeedFileName("5F0C2A3E-1B2C-4D5E-8F90-A1B2C3D4E5F6.json"));
  EXPECT_FALSE(isMispFeedFileName("5f0c2a3e1b2c4d5e8f90a1b2c3d4e5f6abcd.json"));
  EXPECT_FALSE(isMispFeedFileName(".manifest.json.tmp"));
  EXPECT_FALSE(isMispFeedFileName("manifest.json.tmp"));
  EXPECT_FALSE(isMispFeedFileName("state.sqlite"));
  EXPECT_FALSE(isMispFeedFileName(""));
}

TEST(HttpDate, FormatsAndParses) {
  EXPECT_EQ(httpDate(784111777), "Sun, 06 Nov 1994 08:49:37 GMT");
  EXPECT_EQ(parseHttpDate("Sun, 06 Nov 1994 08:49:37 GMT"), 784111777);
  EXPECT_EQ(parseHttpDate(httpDate(1796342400)), 1796342400);
  EXPECT_EQ(parseHttpDate("Sunday, 06-Nov-94 08:49:37 GMT"), -1);
  EXPECT_EQ(parseHttpDate("Sun Nov  6 08:49:37 1994"), -1);
  EXPECT_EQ(parseHttpDate("Sun, 06 Foo 1994 08:49:37 GMT"), -1);
  EXPECT_EQ(parseHttpDate("Sun, 0x Nov 1994 08:49:37 GMT"), -1);
  // Fields out of range are not carried over into a later date.
  EXPECT_EQ(parseHttpDate("Mon, 99 Nov 2026 08:49:37 GMT"), -1);
  EXPECT_EQ(parseHttpDate("Sun, 06 Nov 1994 25:49:37 GMT"), -1);
  EXPECT_EQ(parseHttpDate("Mon, 06 Nov 1994 08:49:37 GMT"), -1);  // 6 Nov 1994 was a Sunday
}

TEST_F(PublishedFolderTest, ServesFileWithHeaders) {
  settle();
  PublishedFileResponse result = get("/feeds/misp/manifest.json");
  EXPECT_EQ(result.response.result(), http::status::ok);
  EXPECT_TRUE(result.denied.empty());
  EXPECT_EQ(result.response.body(), "{\"a\": 1}\n");
  EXPECT_EQ(result.body_bytes, 9u);
  EXPECT_EQ(result.response[http::field::content_type], "application/json");
  EXPECT_EQ(result.response[http::field::content_length], "9");
  EXPECT_FALSE(result.response[http::field::etag].empty());
  EXPECT_FALSE(result.response[http::field::last_modified].empty());
  EXPECT_NE(result.read_slot, nullptr);

  PublishedFileResponse csv = get("/feeds/misp/hashes.csv?cache=1");
  EXPECT_EQ(csv.response.result(), http::status::ok);
  EXPECT_EQ(csv.response[http::field::content_type], "text/csv");
}

TEST_F(PublishedFolderTest, HeadSendsNoBody) {
  PublishedFileResponse result = get("/feeds/misp/manifest.json", http::verb::head);
  EXPECT_EQ(result.response.result(), http::status::ok);
  EXPECT_TRUE(result.response.body().empty());
  EXPECT_EQ(result.response[http::field::content_length], "9");
  EXPECT_EQ(result.body_bytes, 0u);
}

TEST_F(PublishedFolderTest, RevalidationGivesNotModified) {
  std::string etag{get("/feeds/misp/manifest.json").response[http::field::etag]};
  PublishedFileResponse same =
      get("/feeds/misp/manifest.json", http::verb::get, std::string("Bearer ") + kToken, etag);
  EXPECT_EQ(same.response.result(), http::status::not_modified);
  EXPECT_TRUE(same.response.body().empty());

  // A new version renamed over the file gets a new tag.
  write("feed/.manifest.json.tmp", "{\"a\": 2}\n");
  std::filesystem::rename(root_ / "feed/.manifest.json.tmp", root_ / "feed/manifest.json");
  PublishedFileResponse changed =
      get("/feeds/misp/manifest.json", http::verb::get, std::string("Bearer ") + kToken, etag);
  EXPECT_EQ(changed.response.result(), http::status::ok);
  EXPECT_EQ(changed.response.body(), "{\"a\": 2}\n");
  EXPECT_NE(changed.response[http::field::etag], etag);
}

TEST_F(PublishedFolderTest, FileChangedThisSecondIsNotRevalidatedByDate) {
  // A file rewritten twice within one second keeps its Last-Modified
  // second, so a 304 by date could hide the second version.
  for (int attempt = 0; attempt < 5; ++attempt) {
    std::time_t before = std::time(nullptr);
    write("feed/manifest.json", "{\"a\": 3}\n");
    PublishedFileResponse fresh = getSince("/feeds/misp/manifest.json", httpDate(before));
    if (std::time(nullptr) != before) {
      continue;  // the second ended mid-test; try again
    }
    EXPECT_EQ(fresh.response.result(), http::status::ok);
    EXPECT_EQ(fresh.response.body(), "{\"a\": 3}\n");
    EXPECT_TRUE(fresh.response[http::field::last_modified].empty());
    EXPECT_FALSE(fresh.response[http::field::etag].empty());
    break;
  }

  settle();
  PublishedFileResponse settled = get("/feeds/misp/manifest.json");
  std::string last_modified{settled.response[http::field::last_modified]};
  ASSERT_FALSE(last_modified.empty());
  EXPECT_EQ(getSince("/feeds/misp/manifest.json", last_modified).response.result(),
            http::status::not_modified);
  // A date after the current time was not sent by this server and is ignored.
  EXPECT_EQ(getSince("/feeds/misp/manifest.json", httpDate(std::time(nullptr) + 3600))
                .response.result(),
            http::status::ok);
}

TEST_F(PublishedFolderTest, TokenForms) {
  EXPECT_EQ(get("/feeds/misp/hashes.csv", http::verb::get, kToken).response.result(),
            http::status::ok);
  EXPECT_EQ(get("/feeds/misp/hashes.csv", http::verb::get, "").denied, "token");
  EXPECT_EQ(get("/feeds/misp/hashes.csv", http::verb::get, "Bearer wrong").denied, "token");
  EXPECT_EQ(get("/feeds/misp/hashes.csv", http::verb::get, std::string("Basic ") + kToken).denied,
            "token");
  folder_.allow_anonymous = true;
  folder_.token.clear();
  EXPECT_EQ(get("/feeds/misp/hashes.csv", http::verb::get, "").response.result(), http::status::ok);
}

TEST_F(PublishedFolderTest, DeniesNamesOutsideTheRule) {
  for (const char* target : {"/feeds/misp", "/feeds/misp/", "/feeds/misp/../outside.json",
                             "/feeds/misp/..%2foutside.json", "/feeds/misp/%2e%2e/outside.json",
                             "/feeds/misp/..\\outside.json", "/feeds/misp//etc/passwd",
                             "/feeds/misp/manifest.json%00", "/feeds/misp/.manifest.json.tmp",
                             "/feeds/misp/state.sqlite", "/feeds/misp/sub/manifest.json"}) {
    PublishedFileResponse result = get(target);
    EXPECT_EQ(result.response.result(), http::status::not_found) << target;
    EXPECT_EQ(result.denied, "name") << target;
  }
  PublishedFileResponse missing = get(std::string("/feeds/misp/") + kEventName);
  EXPECT_EQ(missing.response.result(), http::status::not_found);
  EXPECT_TRUE(missing.denied.empty());
}

TEST_F(PublishedFolderTest, DeniesSymlinksAndSpecialFiles) {
  std::filesystem::create_symlink(root_ / "outside.json", root_ / "feed" / kEventName);
  PublishedFileResponse link = get(std::string("/feeds/misp/") + kEventName);
  EXPECT_EQ(link.response.result(), http::status::not_found);
  EXPECT_EQ(link.denied, "symlink");
  std::filesystem::remove(root_ / "feed" / kEventName);

  ASSERT_EQ(::mkfifo((root_ / "feed" / kEventName).c_str(), 0600), 0);
  EXPECT_EQ(get(std::string("/feeds/misp/") + kEventName).denied, "not_regular");
  std::filesystem::remove(root_ / "feed" / kEventName);

  // A hard link to a file outside the folder is not followed either.
  std::filesystem::create_hard_link(root_ / "outside.json", root_ / "feed" / kEventName);
  PublishedFileResponse hard_link = get(std::string("/feeds/misp/") + kEventName);
  EXPECT_EQ(hard_link.response.result(), http::status::not_found);
  EXPECT_EQ(hard_link.denied, "hardlink");
  EXPECT_TRUE(hard_link.response.body().find("secret") == std::string::npos);
  std::filesystem::remove(root_ / "feed" / kEventName);

  std::filesystem::create_directory(root_ / "feed" / kEventName);
  EXPECT_EQ(get(std::string("/feeds/misp/") + kEventName).denied, "not_regular");
}

TEST_F(PublishedFolderTest, DeniesOtherMethods) {
  for (http::verb method : {http::verb::post, http::verb::put, http::verb::delete_,
                            http::verb::options, http::verb::unknown}) {
    PublishedFileResponse result = get("/feeds/misp/manifest.json", method);
    EXPECT_EQ(result.response.result(), http::status::method_not_allowed);
    EXPECT_EQ(result.denied, "method");
    EXPECT_EQ(result.response[http::field::allow], "GET, HEAD");
  }
}

TEST_F(PublishedFolderTest, BoundsSizeAndReaders) {
  folder_.max_file_bytes = 4;
  PublishedFileResponse large = get("/feeds/misp/manifest.json");
  EXPECT_EQ(large.response.result(), http::status::internal_server_error);
  EXPECT_EQ(large.denied, "too_large");
  folder_.max_file_bytes = 1024;

  PublishedReadSlots one(1);
  Request request{http::verb::get, "/feeds/misp/manifest.json", 11};
  request.set(http::field::authorization, kToken);
  PublishedFileResponse first = servePublishedFile(folder_, request, one);
  EXPECT_EQ(first.response.result(), http::status::ok);
  PublishedFileResponse second = servePublishedFile(folder_, request, one);
  EXPECT_EQ(second.response.result(), http::status::service_unavailable);
  EXPECT_EQ(second.denied, "busy");
  first.read_slot.reset();
  EXPECT_EQ(servePublishedFile(folder_, request, one).response.result(), http::status::ok);
}

TEST(PublishedFolderPrefix, MatchesWholeSegments) {
  PublishedFolder folder;
  folder.prefix = "/feeds/misp";
  EXPECT_TRUE(isUnderPrefix(folder, "/feeds/misp"));
  EXPECT_TRUE(isUnderPrefix(folder, "/feeds/misp/manifest.json"));
  EXPECT_TRUE(isUnderPrefix(folder, "/feeds/misp?x=1"));
  EXPECT_FALSE(isUnderPrefix(folder, "/feeds/mispx/manifest.json"));
  EXPECT_FALSE(isUnderPrefix(folder, "/feeds"));
  EXPECT_FALSE(isUnderPrefix(folder, "/v1/records"));
}

}  // namespace
}  // namespace webtrap::collector
