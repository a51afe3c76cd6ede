#include "probe/journal_entry.h"

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <new>
#include <optional>
#include <random>
#include <string>

#include <gtest/gtest.h>

#include "collector/audit_record.h"
#include "common/encoding.h"
#include "probe/journal_lines.h"

// The size of the largest allocation made while tracking is on, so a test
// can check that decoding a crafted entry allocates no more than a small
// multiple of the entry's size.
namespace {
std::atomic<bool> g_track_allocations{false};
std::atomic<std::size_t> g_largest_allocation{0};
}  // namespace

void* operator new(std::size_t size) {
  if (g_track_allocations.load(std::memory_order_relaxed)) {
    std::size_t largest = g_largest_allocation.load(std::memory_order_relaxed);
    while (size > largest && !g_largest_allocation.compare_exchange_weak(largest, size)) {
    }
  }
  if (void* memory = std::malloc(size == 0 ? 1 : size)) {
    return memory;
  }
  throw std::bad_alloc();
}

// GCC cannot see that these pair with the operator new above.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void operator delete(void* memory) noexcept { std::free(memory); }
void operator delete(void* memory, std::size_t) noexcept { std::free(memory); }
#pragma GCC diagnostic pop

namespace webtrap::probe {
namespace {

using namespace std::string_literals;
using std::chrono::microseconds;
using std::chrono::system_clock;

RecordMeta testMeta() {
  RecordMeta meta;
  meta.event_id = "01939a8e-5f2c-7d41-8a10-0123456789ab";
  meta.sensor_id = "sensor-1";
  meta.sensor_group = "lab";
  meta.persona = "wordpress";
  meta.product = "Apache/2.4.41 (Ubuntu)";
  meta.engine_version = "ModSecurity v3.0.9 (Linux)";
  meta.components = {"OWASP_CRS/3.3.4", "webtrap-honeytrap/1"};
  return meta;
}

// A request that sets every field the entry carries, with the bytes that
// need care: newlines and backslashes (the line escaping), a NUL and
// invalid UTF-8 (webtrap.encoded), and a card number (masking).
CapturedRequest richRequest() {
  CapturedRequest request;
  request.connection_id = "c-77";
  request.request_index = 3;
  request.client = {"2001:db8::7", 51515};
  request.server = {"127.0.0.1", 8443};
  request.listener = "web-tls";
  request.bait_listener = true;
  request.tls = {true, "shop.example", "TLSv1.3", "TLS_AES_128_GCM_SHA256"};
  request.parsed = true;
  request.request_line = "POST /checkout?x=\\n\xff HTTP/1.1";
  request.method = "POST";
  request.target = "/checkout?x=\\n\xff";
  request.http_version = "1.1";
  request.headers = {{"Host", "shop.example"},
                     {"X-Dup", "a\\b"},
                     {"x-dup", "second"},
                     {"User-Agent", "ua\0nul"s}};
  request.body = "card=4111111111111111&note=line1\nline2\\\\n\r\n\x00\xc3"s;
  request.body_size = 9000;
  request.body_sha256 = sha256Hex(request.body);
  request.body_truncated = true;
  request.chunked = true;
  request.received_at = system_clock::time_point(microseconds(1796385600123456));
  request.timings = {120, 180, -1, -1};
  return request;
}

PersonaResponse richResponse() {
  PersonaResponse response;
  response.status = 302;
  response.reason = "Found";
  response.headers = {{"Server", "Apache/2.4.41 (Ubuntu)"}, {"Set-Cookie", "s=1\\2"}};
  response.body = "<html>\nmoved\\</html>";
  response.close_connection = true;
  return response;
}

RouteOutcome richOutcome() {
  RouteOutcome outcome;
  outcome.route = "checkout";
  outcome.route_kind = "checkout";
  outcome.baits = {{"credential_canary", "user=a\nb"}, {"robots", ""}};
  outcome.tx = {{"honeytrap_route", "checkout"}, {"bait", "1"}};
  outcome.issued_tokens = {"AKIAFAKE0000EXAMPLE", "ghp_fake"};
  outcome.form.kind = "checkout";
  outcome.form.username = "alice";
  outcome.form.password_sha256 = std::string(64, 'a');
  outcome.form.email = "a@example.com";
  outcome.form.coupon = "SAVE10";
  outcome.form.cards = {{"411111", "1111", true, "0123456789abcdef"}};
  outcome.form.links = 2;
  outcome.form.text_bytes = 40;
  return outcome;
}

std::string encodeRich() {
  std::string encoded;
  encodeJournalEntry(encoded, richRequest(), richResponse(), richOutcome(), testMeta());
  return encoded;
}

std::string expectedRecord(const CapturedRequest& request, const PersonaResponse& response,
                           const RouteOutcome& outcome) {
  return serializeRecord(request, response, outcome, interruptedInspection(), testMeta());
}

TEST(JournalEntry, RecoveredRecordEqualsSerializedRecord) {
  std::string reason;
  std::optional<JournalEntry> decoded =
      decodeJournalEntry(encodeRich(), testMeta().event_id, reason);
  ASSERT_TRUE(decoded) << reason;
  EXPECT_EQ(serializeInterruptedRecord(*decoded),
            expectedRecord(richRequest(), richResponse(), richOutcome()));
  EXPECT_EQ(decoded->outcome.tx, richOutcome().tx);
  EXPECT_EQ(decoded->response.reason, "Found");
  EXPECT_TRUE(decoded->response.close_connection);
}

TEST(JournalEntry, UnparsedRequestRecordMatches) {
  CapturedRequest request;
  request.connection_id = "c-9";
  request.client = {"198.51.100.2", 40000};
  request.server = {"127.0.0.1", 8080};
  request.listener = "web";
  request.parse_error = "invalid request line";
  request.raw_head = "GARBAGE\r\n\\\n\x80";
  request.raw_head_truncated = true;
  request.received_at = system_clock::time_point(microseconds(1796385600000001));
  PersonaResponse none;
  none.status = 0;
  RouteOutcome outcome;
  outcome.route = "parse_error";

  std::string encoded;
  encodeJournalEntry(encoded, request, none, outcome, testMeta());
  std::string reason;
  std::optional<JournalEntry> decoded = decodeJournalEntry(encoded, testMeta().event_id, reason);
  ASSERT_TRUE(decoded) << reason;
  EXPECT_EQ(serializeInterruptedRecord(*decoded), expectedRecord(request, none, outcome));
}

TEST(JournalEntry, RecoveredRecordIsAcceptedByCollector) {
  std::string reason;
  std::optional<JournalEntry> decoded =
      decodeJournalEntry(encodeRich(), testMeta().event_id, reason);
  ASSERT_TRUE(decoded) << reason;
  collector::DecodeResult result = collector::decodeAuditRecord(
      serializeInterruptedRecord(*decoded), collector::RecordFormat::kWebtrap, "test");
  ASSERT_TRUE(result.ok) << result.error;
  EXPECT_EQ(result.record.event_id, testMeta().event_id);
  EXPECT_EQ(result.record.inspection_status, "interrupted");
  EXPECT_TRUE(result.record.inspection_recovered);
}

TEST(JournalEntry, EveryTruncationIsRejected) {
  std::string encoded = encodeRich();
  for (std::size_t size = 0; size < encoded.size(); ++size) {
    std::string reason;
    EXPECT_FALSE(decodeJournalEntry(encoded.substr(0, size), "id", reason))
        << "a prefix of " << size << " of " << encoded.size() << " bytes was decoded";
    EXPECT_FALSE(reason.empty()) << "no reason for a prefix of " << size << " bytes";
  }
}

TEST(JournalEntry, TrailingBytesAreRejected) {
  std::string reason;
  EXPECT_FALSE(decodeJournalEntry(encodeRich() + "x", "id", reason));
  EXPECT_EQ(reason, "bytes left after the last field");
}

TEST(JournalEntry, UnknownFormatIsRejected) {
  std::string encoded = encodeRich();
  encoded[0] = static_cast<char>(kJournalEntryFormat + 1);
  std::string reason;
  EXPECT_FALSE(decodeJournalEntry(encoded, "id", reason));
  EXPECT_NE(reason.find("unknown entry format 2"), std::string::npos) << reason;
}

TEST(JournalEntry, HugeCountIsRejected) {
  // The meta's component count sits after five empty strings.
  std::string encoded;
  encodeJournalEntry(encoded, CapturedRequest{}, PersonaResponse{}, RouteOutcome{}, RecordMeta{});
  const std::size_t count_offset = 1 + 5 * 4;
  for (std::size_t i = 0; i < 4; ++i) {
    encoded[count_offset + i] = '\xff';
  }
  std::string reason;
  EXPECT_FALSE(decodeJournalEntry(encoded, "id", reason));
  EXPECT_EQ(reason, "an element count exceeds the entry's size");
}

// Returns a RecordMeta whose strings are all empty.
RecordMeta emptyMeta() {
  RecordMeta meta;
  meta.secrules_engine.clear();
  return meta;
}

// The offset of the request's header count in an entry of empty fields.
// The format byte comes first, then the meta (5 strings, a count, a
// string). The request up to its headers follows: a string, a u64, two
// endpoints of a string and a u32, a string, 2 flags, 3 strings, a flag,
// 2 strings, a flag and 4 strings.
constexpr std::size_t kHeaderCountOffset =
    1 + (5 * 4 + 4 + 4) + (4 + 8 + 2 * (4 + 4) + 4 + 2 + 3 * 4 + 1 + 2 * 4 + 1 + 4 * 4);

// Returns an entry of empty fields whose request header count is `size`,
// followed by `size` zero bytes. Each header then reads as two empty
// strings until the entry runs out.
std::string entryWithHeaderCount(std::size_t size) {
  std::string encoded;
  encodeJournalEntry(encoded, CapturedRequest{}, PersonaResponse{}, RouteOutcome{}, emptyMeta());
  encoded.resize(kHeaderCountOffset + 4 + size, '\0');
  std::uint32_t count = static_cast<std::uint32_t>(size);
  for (std::size_t i = 0; i < 4; ++i) {
    encoded[kHeaderCountOffset + i] = static_cast<char>((count >> (8 * i)) & 0xff);
  }
  return encoded;
}

TEST(JournalEntry, HeaderCountOffsetIsRight) {
  CapturedRequest request;
  request.headers = {{"N", "V"}};
  std::string encoded;
  encodeJournalEntry(encoded, request, PersonaResponse{}, RouteOutcome{}, emptyMeta());
  ASSERT_GT(encoded.size(), kHeaderCountOffset + 9);
  EXPECT_EQ(encoded.substr(kHeaderCountOffset, 9), "\1\0\0\0\1\0\0\0N"s);
}

TEST(JournalEntry, CraftedCountAllocatesLittle) {
  const std::size_t size = 1 << 20;
  std::string encoded = entryWithHeaderCount(size);
  std::string reason;
  g_largest_allocation = 0;
  g_track_allocations = true;
  std::optional<JournalEntry> decoded = decodeJournalEntry(encoded, "id", reason);
  g_track_allocations = false;
  EXPECT_FALSE(decoded) << "an entry cut short after its headers was decoded";
  // Each header takes at least 8 bytes of the entry (two lengths) and 64
  // bytes of memory, so 8 times the entry's size is what a valid entry of
  // empty headers costs.
  EXPECT_LE(g_largest_allocation.load(), 8 * encoded.size() + 4096)
      << "decoding a " << encoded.size() << "-byte entry allocated " << g_largest_allocation
      << " bytes at once";
}

// Decodes entries with random bytes changed, cut or inserted. None may
// throw, and a decoded one must serialize to a record without throwing.
TEST(JournalEntry, MutatedEntriesNeverThrow) {
  const std::string original = encodeRich();
  std::mt19937 random(20261205);
  std::size_t decoded_count = 0;
  for (int round = 0; round < 20000; ++round) {
    std::string mutated = original;
    int changes = 1 + static_cast<int>(random() % 4);
    for (int change = 0; change < changes && !mutated.empty(); ++change) {
      std::size_t at = random() % mutated.size();
      switch (random() % 5) {
        case 0:
          mutated[at] = static_cast<char>(mutated[at] ^ (1 << (random() % 8)));
          break;
        case 1:
          mutated[at] = static_cast<char>(random() & 0xff);
          break;
        case 2:
          mutated.resize(at);
          break;
        case 3:
          mutated.insert(at, 1, static_cast<char>(random() & 0xff));
          break;
        default:
          mutated.erase(at, 1 + random() % 8);
          break;
      }
    }
    std::string reason;
    std::optional<JournalEntry> decoded;
    ASSERT_NO_THROW(decoded = decodeJournalEntry(mutated, "01939a8e-5f2c-7d41-8a10-0123456789ab",
                                                 reason))
        << "round " << round;
    if (!decoded) {
      EXPECT_FALSE(reason.empty()) << "round " << round;
      continue;
    }
    ++decoded_count;
    std::string record;
    ASSERT_NO_THROW(record = serializeInterruptedRecord(*decoded)) << "round " << round;
    ASSERT_NO_THROW(
        collector::decodeAuditRecord(record, collector::RecordFormat::kWebtrap, "test"))
        << "round " << round;
  }
  // Flips inside string bytes leave the entry decodable, so some rounds
  // must reach serializeRecord().
  EXPECT_GT(decoded_count, 0u);
}

TEST(JournalEntryLine, EscapingRoundTrips) {
  const std::string entry = encodeRich() + "\\n\n\\\\\n"s;
  std::string line = journal_lines::makeEntryLine("event-1", entry);
  ASSERT_EQ(line.back(), '\n');
  std::string_view body(line.data(), line.size() - 1);
  EXPECT_EQ(body.find('\n'), std::string_view::npos) << "a newline was left in the line";

  const char* line_error = nullptr;
  std::optional<journal_lines::ParsedLine> parsed = journal_lines::parseLine(body, line_error);
  ASSERT_TRUE(parsed) << line_error;
  EXPECT_EQ(parsed->kind, journal_lines::kEntry);
  ASSERT_TRUE(parsed->payload.starts_with("event-1 "));
  std::string unescaped;
  ASSERT_TRUE(journal_lines::unescapeEntry(parsed->payload.substr(8), unescaped));
  EXPECT_EQ(unescaped, entry);
}

// "123456789" is the check input of CRC-32 (ISO-HDLC, as zlib computes it),
// whose value is cbf43926, so the journal's lines keep the CRC that
// earlier probes wrote and checked.
TEST(JournalEntryLine, CrcIsZlibCrc32) {
  EXPECT_EQ(journal_lines::makeLine(journal_lines::kDone, "123456789", {}),
            "D cbf43926 123456789\n");
}

TEST(JournalEntryLine, InvalidEscapeIsRejected) {
  std::string unescaped;
  EXPECT_FALSE(journal_lines::unescapeEntry("ab\\x", unescaped));
  EXPECT_FALSE(journal_lines::unescapeEntry("ab\\", unescaped));
  EXPECT_TRUE(journal_lines::unescapeEntry("a\\\\b\\nc", unescaped));
  EXPECT_EQ(unescaped, "a\\b\nc");
}

}  // namespace
}  // namespace webtrap::probe
