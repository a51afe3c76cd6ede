// gunzip() of ingest request bodies: members, limits and bad data, including
// trailers that state the wrong size.
#include <zlib.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include <gtest/gtest.h>

#include "collector/gunzip.h"

namespace webtrap::collector {
namespace {

// Compresses `text` as one gzip member with zlib.
std::string gzipMember(const std::string& text, int level = 6) {
  z_stream zs{};
  EXPECT_EQ(deflateInit2(&zs, level, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY), Z_OK);
  std::string out(deflateBound(&zs, text.size()), '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(text.data()));
  zs.avail_in = static_cast<uInt>(text.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&zs, Z_FINISH), Z_STREAM_END);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

// Text that compresses well but not to nothing: numbered lines.
std::string lines(int count) {
  std::string text;
  for (int i = 0; i < count; ++i) {
    text += "{\"line\":" + std::to_string(i) + ",\"text\":\"some repeated words\"}\n";
  }
  return text;
}

// Overwrites the trailer's size field (the last four bytes, little-endian).
void setTrailerSize(std::string& member, std::uint32_t size) {
  for (int i = 0; i < 4; ++i) {
    member[member.size() - 4 + i] = static_cast<char>((size >> (8 * i)) & 0xFF);
  }
}

TEST(Gunzip, InflatesOneMember) {
  std::string text = lines(2000);
  auto inflated = gunzip(gzipMember(text), 1 << 20);
  ASSERT_TRUE(inflated.has_value());
  EXPECT_EQ(*inflated, text);
}

TEST(Gunzip, InflatesEmptyMember) {
  auto inflated = gunzip(gzipMember(""), 1024);
  ASSERT_TRUE(inflated.has_value());
  EXPECT_EQ(*inflated, "");
}

TEST(Gunzip, JoinsConcatenatedMembers) {
  std::string first = lines(300);
  std::string second = lines(5000);
  auto inflated = gunzip(gzipMember(first) + gzipMember(second) + gzipMember(first), 1 << 20);
  ASSERT_TRUE(inflated.has_value());
  EXPECT_EQ(*inflated, first + second + first);
}

TEST(Gunzip, RejectsWrongTrailerSize) {
  // The trailer's size is checked like the CRC-32, so a wrong one is bad
  // data however the buffer was sized from it.
  std::string member = gzipMember(lines(4000));
  std::string understated = member;
  setTrailerSize(understated, 10);
  EXPECT_THROW(gunzip(understated, 1 << 20), std::invalid_argument);
  std::string overstated = member;
  setTrailerSize(overstated, 0xFFFFFFFF);
  EXPECT_THROW(gunzip(overstated, 1 << 20), std::invalid_argument);
}

TEST(Gunzip, GrowsBufferPastLastMembersSize) {
  // The buffer starts at the last member's size, far below the total.
  std::string big = lines(20000);
  std::string small = lines(3);
  auto inflated = gunzip(gzipMember(big) + gzipMember(small), 4 << 20);
  ASSERT_TRUE(inflated.has_value());
  EXPECT_EQ(*inflated, big + small);
}

TEST(Gunzip, ReturnsNulloptPastLimit) {
  std::string zeros(4 << 20, '\0');
  std::string member = gzipMember(zeros, 9);
  ASSERT_LT(member.size(), 16U << 10);
  EXPECT_FALSE(gunzip(member, 1 << 20).has_value());
  // The same with a trailer that understates the size, so the buffer grows
  // from a small guess up to the limit before the size is checked.
  setTrailerSize(member, 100);
  EXPECT_FALSE(gunzip(member, 1 << 20).has_value());
}

TEST(Gunzip, ReturnsNulloptWhenLaterMemberPassesLimit) {
  std::string text = lines(1000);
  std::string body = gzipMember(text) + gzipMember(text);
  EXPECT_TRUE(gunzip(body, 2 * text.size()).has_value());
  EXPECT_FALSE(gunzip(body, 2 * text.size() - 1).has_value());
}

TEST(Gunzip, RejectsBadData) {
  std::string member = gzipMember(lines(100));
  EXPECT_THROW(gunzip("", 1024), std::invalid_argument);
  EXPECT_THROW(gunzip("not gzip at all", 1024), std::invalid_argument);
  EXPECT_THROW(gunzip(member.substr(0, member.size() / 2), 1 << 20), std::invalid_argument);
  EXPECT_THROW(gunzip(member + "trailing bytes", 1 << 20), std::invalid_argument);
  std::string corrupted = member;
  corrupted[corrupted.size() - 6] ^= 0x55;  // inside the CRC-32
  EXPECT_THROW(gunzip(corrupted, 1 << 20), std::invalid_argument);
}

TEST(Gunzip, ReportsHeaderFieldsOfAnyMember) {
  std::string text = lines(10);
  bool plain = false;
  ASSERT_TRUE(gunzip(gzipMember(text) + gzipMember(text), 1 << 20, &plain).has_value());
  EXPECT_TRUE(plain);

  // FCOMMENT (bit 4 of FLG): a zero-terminated comment after the 10-byte
  // header, which inflates to nothing.
  std::string commented = gzipMember(text);
  commented[3] = static_cast<char>(commented[3] | 0x10);
  commented.insert(10, std::string("a comment", 10));
  auto inflated = gunzip(gzipMember(text) + commented, 1 << 20, &plain);
  ASSERT_TRUE(inflated.has_value());
  EXPECT_EQ(*inflated, text + text);
  EXPECT_FALSE(plain);
}

}  // namespace
}  // namespace webtrap::collector
