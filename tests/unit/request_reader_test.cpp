#include "probe/request_reader.h"

#include <gtest/gtest.h>

#include "common/encoding.h"

namespace webtrap::probe {
namespace {

struct Fed {
  std::vector<CapturedRequest> requests;
  std::vector<RequestReader::Step> last_steps;
};

// Feeds `wire` to a reader in pieces cut at `splits`, the way reads from a
// socket would arrive, and collects every request it ends.
Fed feed(const std::string& wire, const std::vector<std::size_t>& splits,
         const LimitsConfig& limits = {}, std::uint64_t keep = 1 << 20) {
  RequestReader reader(limits, keep);
  reader.begin({});
  Fed fed;
  std::string buffer;
  std::size_t offset = 0;
  std::vector<std::size_t> cuts = splits;
  cuts.push_back(wire.size());
  for (std::size_t cut : cuts) {
    buffer.append(wire, offset, cut - offset);
    offset = cut;
    while (true) {
      std::size_t used = 0;
      auto step = reader.parse(buffer, used);
      buffer.erase(0, used);
      if (step == RequestReader::Step::kComplete || step == RequestReader::Step::kFailed) {
        fed.requests.push_back(std::move(reader.request()));
        fed.last_steps.push_back(step);
        if (step == RequestReader::Step::kFailed) {
          return fed;
        }
        reader.begin({});
        continue;
      }
      break;
    }
  }
  return fed;
}

const std::string kPost =
    "POST /login.php?next=%2F HTTP/1.1\r\n"
    "Host: www.example.com\r\n"
    "X-Dup: a\r\n"
    "Content-Type: application/x-www-form-urlencoded\r\n"
    "X-Dup: b\r\n"
    "Content-Length: 27\r\n"
    "\r\n"
    "user=admin&pass=hunter2&x=1";

TEST(RequestReader, EverySplitPointGivesTheSameRequest) {
  for (std::size_t split = 0; split <= kPost.size(); ++split) {
    Fed fed = feed(kPost, {split});
    ASSERT_EQ(fed.requests.size(), 1u) << "split at " << split;
    const CapturedRequest& request = fed.requests[0];
    EXPECT_TRUE(request.parsed) << "split at " << split;
    EXPECT_EQ(request.request_line, "POST /login.php?next=%2F HTTP/1.1");
    EXPECT_EQ(request.method, "POST");
    EXPECT_EQ(request.target, "/login.php?next=%2F");
    EXPECT_EQ(request.http_version, "1.1");
    ASSERT_EQ(request.headers.size(), 5u);
    EXPECT_EQ(request.headers[1].name, "X-Dup");
    EXPECT_EQ(request.headers[3].value, "b");
    EXPECT_EQ(request.body, "user=admin&pass=hunter2&x=1");
    EXPECT_EQ(request.body_size, 27u);
    EXPECT_EQ(request.body_sha256, sha256Hex("user=admin&pass=hunter2&x=1"));
    EXPECT_EQ(request.raw_head, kPost.substr(0, kPost.find("\r\n\r\n") + 4));
  }
}

TEST(RequestReader, ByteAtATime) {
  std::vector<std::size_t> splits;
  for (std::size_t i = 1; i < kPost.size(); ++i) {
    splits.push_back(i);
  }
  Fed fed = feed(kPost, splits);
  ASSERT_EQ(fed.requests.size(), 1u);
  EXPECT_EQ(fed.requests[0].body, "user=admin&pass=hunter2&x=1");
}

TEST(RequestReader, GetWithBody) {
  Fed fed = feed("GET /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello", {});
  ASSERT_EQ(fed.requests.size(), 1u);
  EXPECT_EQ(fed.requests[0].method, "GET");
  EXPECT_EQ(fed.requests[0].body, "hello");
}

TEST(RequestReader, PipelinedRequestsStaySeparate) {
  std::string wire = "GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: b\r\n\r\n";
  for (std::size_t split = 0; split <= wire.size(); ++split) {
    Fed fed = feed(wire, {split});
    ASSERT_EQ(fed.requests.size(), 2u) << "split at " << split;
    EXPECT_EQ(fed.requests[0].target, "/a");
    EXPECT_EQ(fed.requests[1].target, "/b");
    EXPECT_EQ(fed.requests[1].raw_head, "GET /b HTTP/1.1\r\nHost: b\r\n\r\n");
  }
}

TEST(RequestReader, ChunkedBodyIsDecodedAtEverySplit) {
  std::string wire =
      "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
      "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
  for (std::size_t split = 0; split <= wire.size(); ++split) {
    Fed fed = feed(wire, {split});
    ASSERT_EQ(fed.requests.size(), 1u) << "split at " << split;
    EXPECT_EQ(fed.requests[0].body, "hello world");
    EXPECT_TRUE(fed.requests[0].chunked);
  }
}

TEST(RequestReader, BodyPastKeepLimitIsTruncatedButHashedWhole) {
  std::string body(5000, 'x');
  std::string wire = "PUT /u HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n\r\n" + body;
  Fed fed = feed(wire, {100, 2000, 4000}, {}, 1024);
  ASSERT_EQ(fed.requests.size(), 1u);
  EXPECT_EQ(fed.requests[0].body.size(), 1024u);
  EXPECT_TRUE(fed.requests[0].body_truncated);
  EXPECT_EQ(fed.requests[0].body_size, 5000u);
  EXPECT_EQ(fed.requests[0].body_sha256, sha256Hex(body));
}

TEST(RequestReader, GarbageIsRecordedWithItsBytes) {
  std::string wire = std::string("\x16\x03\x01 NOT HTTP\r\n\r\n", 17);
  Fed fed = feed(wire, {});
  ASSERT_EQ(fed.requests.size(), 1u);
  EXPECT_EQ(fed.last_steps[0], RequestReader::Step::kFailed);
  EXPECT_FALSE(fed.requests[0].parsed);
  EXPECT_FALSE(fed.requests[0].parse_error.empty());
  EXPECT_EQ(fed.requests[0].raw_head, wire);
}

TEST(RequestReader, HeadPastLimitFails) {
  LimitsConfig limits;
  limits.max_header_bytes = 256;
  std::string wire = "GET / HTTP/1.1\r\nX-Long: " + std::string(1000, 'a') + "\r\n\r\n";
  Fed fed = feed(wire, {}, limits);
  ASSERT_EQ(fed.requests.size(), 1u);
  EXPECT_FALSE(fed.requests[0].parsed);
  EXPECT_EQ(fed.requests[0].raw_head.size(), 256u);
  EXPECT_TRUE(fed.requests[0].raw_head_truncated);
}

TEST(RequestReader, TooManyHeaderFieldsFails) {
  LimitsConfig limits;
  limits.max_header_count = 3;
  std::string wire = "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n";
  Fed fed = feed(wire, {}, limits);
  ASSERT_EQ(fed.requests.size(), 1u);
  EXPECT_FALSE(fed.requests[0].parsed);
  EXPECT_EQ(fed.requests[0].headers.size(), 3u);
  EXPECT_NE(fed.requests[0].parse_error.find("too many header fields"), std::string::npos);
}

// Beast keeps a chunk-size line whole until its CRLF arrives, with no limit
// of its own, so an endless chunk extension would grow the buffer without end.
TEST(RequestReader, EndlessChunkExtensionFails) {
  LimitsConfig limits;
  limits.max_header_bytes = 256;
  std::string wire = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;" +
                     std::string(4096, 'x');
  std::vector<std::size_t> splits;
  for (std::size_t cut = 64; cut < wire.size(); cut += 64) {
    splits.push_back(cut);
  }
  Fed fed = feed(wire, splits, limits);
  ASSERT_EQ(fed.requests.size(), 1u);
  EXPECT_FALSE(fed.requests[0].parsed);
  EXPECT_NE(fed.requests[0].parse_error.find("limits.max_header_bytes"), std::string::npos);
}

TEST(RequestReader, BodyPastMaxBodyFails) {
  LimitsConfig limits;
  limits.max_body_bytes = 10;
  Fed fed = feed("POST / HTTP/1.1\r\nContent-Length: 50\r\n\r\n" + std::string(50, 'b'), {},
                 limits);
  ASSERT_EQ(fed.requests.size(), 1u);
  EXPECT_FALSE(fed.requests[0].parsed);
  EXPECT_EQ(fed.requests[0].method, "POST");
}

TEST(RequestReader, ExpectContinueAsksBeforeBody) {
  RequestReader reader({}, 1024);
  reader.begin({});
  std::string head = "POST /e HTTP/1.1\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n";
  std::size_t used = 0;
  EXPECT_EQ(reader.parse(head, used), RequestReader::Step::kSendContinue);
  EXPECT_EQ(used, head.size());
  EXPECT_EQ(reader.parse("data", used), RequestReader::Step::kComplete);
  EXPECT_EQ(reader.request().body, "data");
}

TEST(RequestReader, CutShortKeepsWhatArrived) {
  RequestReader reader({}, 1024);
  reader.begin({});
  std::size_t used = 0;
  std::string partial = "GET /slow HTTP/1.1\r\nHost: a\r\n";
  EXPECT_EQ(reader.parse(partial, used), RequestReader::Step::kNeedMore);
  reader.fail("timeout", partial.substr(used));
  EXPECT_FALSE(reader.request().parsed);
  EXPECT_EQ(reader.request().request_line, "GET /slow HTTP/1.1");
  EXPECT_EQ(reader.request().raw_head, partial);
  EXPECT_EQ(reader.request().parse_error, "timeout");
  EXPECT_EQ(reader.request().body_sha256, sha256Hex(""));
}

TEST(RequestReader, KeepAliveFollowsVersionAndConnection) {
  RequestReader reader({}, 1024);
  std::size_t used = 0;
  reader.begin({});
  reader.parse("GET / HTTP/1.0\r\n\r\n", used);
  EXPECT_FALSE(reader.keepAlive());
  reader.begin({});
  reader.parse("GET / HTTP/1.1\r\nConnection: close\r\n\r\n", used);
  EXPECT_FALSE(reader.keepAlive());
  reader.begin({});
  reader.parse("GET / HTTP/1.1\r\n\r\n", used);
  EXPECT_TRUE(reader.keepAlive());
}

}  // namespace
}  // namespace webtrap::probe
