#include "common/encoding.h"
#include "common/gzip.h"

#include <zlib.h>

#include <optional>
#include <random>
#include <stdexcept>
#include <string>

#include <gtest/gtest.h>

namespace webtrap {
namespace {

// A byte-by-byte reading of RFC 3629, built on utf8SequenceLength, that the
// simdjson validator behind isValidUtf8 is compared against.
bool referenceValidUtf8(std::string_view bytes) {
  std::size_t pos = 0;
  while (pos < bytes.size()) {
    std::size_t length = utf8SequenceLength(bytes, pos);
    if (length == 0) {
      return false;
    }
    pos += length;
  }
  return true;
}

TEST(Utf8, AcceptsWellFormedText) {
  EXPECT_TRUE(isValidUtf8(""));
  EXPECT_TRUE(isValidUtf8("plain ascii"));
  EXPECT_TRUE(isValidUtf8("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80"));
  EXPECT_TRUE(isValidUtf8("\xF4\x8F\xBF\xBF"));
  EXPECT_TRUE(isValidUtf8(std::string_view("\0", 1)));
}

TEST(Utf8, RejectsMalformedText) {
  for (std::string_view bad :
       {"\x80", "\xC0\x80", "\xC1\xBF", "\xE0\x80\x80", "\xED\xA0\x80", "\xF0\x80\x80\x80",
        "\xF4\x90\x80\x80", "\xF5\x80\x80\x80", "\xFF", "\xE2\x82", "\xC3"}) {
    EXPECT_FALSE(isValidUtf8(bad)) << testing::PrintToString(std::string(bad));
    EXPECT_FALSE(referenceValidUtf8(bad)) << testing::PrintToString(std::string(bad));
  }
}

TEST(Utf8, SequenceLengthAgreesWithValidator) {
  std::mt19937 random(7);
  // Mostly bytes near the UTF-8 boundaries, where validators go wrong.
  const unsigned char interesting[] = {0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF,
                                       0xC0, 0xC1, 0xC2, 0xDF, 0xE0, 0xE1, 0xEC, 0xED, 0xEE,
                                       0xEF, 0xF0, 0xF1, 0xF3, 0xF4, 0xF5, 0xFF};
  std::uniform_int_distribution<int> pick(0, sizeof interesting - 1);
  std::uniform_int_distribution<int> length(0, 6);
  for (int i = 0; i < 200000; ++i) {
    std::string text;
    int size = length(random);
    for (int j = 0; j < size; ++j) {
      text.push_back(static_cast<char>(interesting[pick(random)]));
    }
    ASSERT_EQ(isValidUtf8(text), referenceValidUtf8(text)) << testing::PrintToString(text);
  }
}

TEST(Utf8, SanitizeReplacesEachInvalidByte) {
  std::string out;
  EXPECT_FALSE(appendSanitizedUtf8(out, "a\xE2\x82z\xC3\xA9"));
  EXPECT_EQ(out, "a\xEF\xBF\xBD\xEF\xBF\xBDz\xC3\xA9");
  out.clear();
  EXPECT_TRUE(appendSanitizedUtf8(out, "\xC3\xA9"));
}

TEST(Base64, EncodesRfc4648Vectors) {
  EXPECT_EQ(base64Encode(""), "");
  EXPECT_EQ(base64Encode("f"), "Zg==");
  EXPECT_EQ(base64Encode("fo"), "Zm8=");
  EXPECT_EQ(base64Encode("foo"), "Zm9v");
  EXPECT_EQ(base64Encode("foob"), "Zm9vYg==");
  EXPECT_EQ(base64Encode("fooba"), "Zm9vYmE=");
  EXPECT_EQ(base64Encode("foobar"), "Zm9vYmFy");
  EXPECT_EQ(base64Encode("\xFF\xFE\x00"), "//4=");
  EXPECT_EQ(base64Encode(std::string_view("\xFB\xFF\x00", 3)), "+/8A");
}

TEST(Base64, DecodesRfc4648Vectors) {
  EXPECT_EQ(base64Decode("Zm9vYmFy"), "foobar");
  EXPECT_EQ(base64Decode("Zm9vYg=="), "foob");
  EXPECT_EQ(base64Decode("Zm9vYmE="), "fooba");
  EXPECT_EQ(base64Decode(""), "");
}

TEST(Base64, RejectsMalformedInput) {
  EXPECT_FALSE(base64Decode("Zm9"));       // length not a multiple of 4
  EXPECT_FALSE(base64Decode("Zm9v!mFy"));  // outside the alphabet
  EXPECT_FALSE(base64Decode("Zg==Zg=="));  // padding in the middle
  EXPECT_FALSE(base64Decode("Zh=="));      // non-zero bits under padding
  EXPECT_FALSE(base64Decode("Z==="));
  EXPECT_FALSE(base64Decode("Zm9v\n"));
}

TEST(Base64, RoundTripsRandomBytes) {
  std::mt19937 random(11);
  for (int size = 0; size < 300; ++size) {
    std::string bytes;
    for (int i = 0; i < size; ++i) {
      bytes.push_back(static_cast<char>(random()));
    }
    auto decoded = base64Decode(base64Encode(bytes));
    ASSERT_TRUE(decoded.has_value());
    EXPECT_EQ(*decoded, bytes);
  }
}

TEST(Hex, EncodesLowercase) {
  EXPECT_EQ(hexEncode(std::string_view("\x00\x0f\xab\xff", 4)), "000fabff");
  EXPECT_EQ(hexEncode(""), "");
}

// Inflates one gzip member with zlib, or returns nullopt when zlib rejects it.
std::optional<std::string> gunzipWithZlib(std::string_view member) {
  z_stream stream{};
  if (inflateInit2(&stream, 15 + 16) != Z_OK) {
    return std::nullopt;
  }
  std::string output;
  char buffer[4096];
  stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(member.data()));
  stream.avail_in = static_cast<uInt>(member.size());
  int result = Z_OK;
  while (result == Z_OK) {
    stream.next_out = reinterpret_cast<Bytef*>(buffer);
    stream.avail_out = sizeof buffer;
    result = inflate(&stream, Z_NO_FLUSH);
    output.append(buffer, sizeof buffer - stream.avail_out);
  }
  bool whole = result == Z_STREAM_END && stream.avail_in == 0;
  inflateEnd(&stream);
  if (!whole) {
    return std::nullopt;
  }
  return output;
}

TEST(Gzip, RoundTripsThroughZlib) {
  std::mt19937 random(11);
  std::string noise;
  for (int i = 0; i < 100000; ++i) {
    noise.push_back(static_cast<char>(random()));
  }
  std::string lines;
  for (int i = 0; i < 5000; ++i) {
    lines += "{\"line\":" + std::to_string(i) + "}\n";
  }
  for (int level : {Z_BEST_SPEED, Z_DEFAULT_COMPRESSION, Z_BEST_COMPRESSION}) {
    for (const std::string& input : {std::string(), std::string("a"), noise, lines}) {
      std::string member = gzipCompress(input, level);
      auto inflated = gunzipWithZlib(member);
      ASSERT_TRUE(inflated.has_value()) << "level " << level << ", " << input.size() << " bytes";
      EXPECT_EQ(*inflated, input) << "level " << level << ", " << input.size() << " bytes";
    }
  }
}

TEST(Gzip, WritesGzipHeader) {
  std::string member = gzipCompress("text", Z_DEFAULT_COMPRESSION);
  ASSERT_GE(member.size(), 18u);
  EXPECT_EQ(static_cast<unsigned char>(member[0]), 0x1f);
  EXPECT_EQ(static_cast<unsigned char>(member[1]), 0x8b);
  EXPECT_EQ(member[2], 8);  // CM: deflate
}

TEST(Gzip, CompressesRepeatedText) {
  std::string repeated(100000, 'x');
  EXPECT_LT(gzipCompress(repeated, Z_BEST_SPEED).size(), 1000u);
}

TEST(Gzip, RejectsInvalidLevel) {
  EXPECT_THROW(gzipCompress("text", 42), std::runtime_error);
}

TEST(Hex, DigitValueOfEitherCase) {
  EXPECT_EQ(hexDigitValue('0'), 0);
  EXPECT_EQ(hexDigitValue('9'), 9);
  EXPECT_EQ(hexDigitValue('a'), 10);
  EXPECT_EQ(hexDigitValue('f'), 15);
  EXPECT_EQ(hexDigitValue('A'), 10);
  EXPECT_EQ(hexDigitValue('F'), 15);
  for (char c : std::string_view("gG/:@`-x \0\xff", 11)) {
    EXPECT_EQ(hexDigitValue(c), -1) << "byte " << static_cast<int>(static_cast<unsigned char>(c));
  }
}

TEST(Sha256, MatchesKnownDigests) {
  EXPECT_EQ(sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(Sha256, IncrementalEqualsOneShot) {
  Sha256 hasher;
  hasher.update("a");
  hasher.update("");
  hasher.update("bc");
  EXPECT_EQ(hasher.finalHex(), sha256Hex("abc"));
  // finalHex resets, so the hasher starts over.
  hasher.update("abc");
  EXPECT_EQ(hasher.finalHex(), sha256Hex("abc"));
}

TEST(Sha256, CopyForksState) {
  Sha256 original;
  original.update("ab");
  Sha256 copy = original;
  copy.update("c");
  original.update("d");
  EXPECT_EQ(copy.finalHex(), sha256Hex("abc"));
  EXPECT_EQ(original.finalHex(), sha256Hex("abd"));
}

TEST(Sha256, MovedFromStartsOver) {
  Sha256 original;
  original.update("ab");
  Sha256 moved = std::move(original);
  moved.update("c");
  EXPECT_EQ(moved.finalHex(), sha256Hex("abc"));
  original.update("x");  // NOLINT(bugprone-use-after-move): a valid, empty state
  EXPECT_EQ(original.finalHex(), sha256Hex("x"));
}

TEST(Utf8Prefix, CutsAtCharacterStart) {
  EXPECT_EQ(utf8Prefix("abc", 5), "abc");
  EXPECT_EQ(utf8Prefix("abc", 3), "abc");
  EXPECT_EQ(utf8Prefix("abcdef", 2), "ab");
  EXPECT_EQ(utf8Prefix("a\xC3\xA9", 2), "a");                      // é is two bytes
  EXPECT_EQ(utf8Prefix("a\xF0\x9F\x98\x80z", 4), "a");             // U+1F600 is four
  EXPECT_EQ(utf8Prefix("a\xF0\x9F\x98\x80z", 5), "a\xF0\x9F\x98\x80");
  EXPECT_EQ(utf8Prefix("\xC3\xA9", 0), "");
}

TEST(CaseInsensitive, ComparesAsciiOnly) {
  EXPECT_TRUE(equalsIgnoreCase("Content-Type", "content-TYPE"));
  EXPECT_FALSE(equalsIgnoreCase("Host", "Hosts"));
  EXPECT_FALSE(equalsIgnoreCase("\xC3\xA9", "\xC3\x89"));  // é and É differ
  EXPECT_FALSE(equalsIgnoreCase("[", "{"));
  EXPECT_TRUE(equalsIgnoreCase("", ""));
}

TEST(CaseInsensitive, StartsWithComparesPrefixOnly) {
  EXPECT_TRUE(startsWithIgnoreCase("Text/HTML; charset=utf-8", "text/html"));
  EXPECT_TRUE(startsWithIgnoreCase("multipart/form-data", ""));
  EXPECT_FALSE(startsWithIgnoreCase("text", "text/html"));
  EXPECT_FALSE(startsWithIgnoreCase("application/json", "text/"));
  EXPECT_FALSE(startsWithIgnoreCase("\xC3\x89t\xC3\xA9", "\xC3\xA9"));  // É is not é
}

TEST(AsciiLowercase, LowersAsciiLettersOnly) {
  EXPECT_EQ(asciiLowercase("Admin@Example.COM"), "admin@example.com");
  EXPECT_EQ(asciiLowercase("\xC3\x89"), "\xC3\x89");  // É keeps its bytes
  EXPECT_EQ(asciiLowercase("[@Z]"), "[@z]");
  EXPECT_EQ(asciiLowercase(""), "");
}

TEST(TerminalSafe, EscapesWhatTerminalsObey) {
  // ESC, CSI as one C1 character (U+009B), DEL, a right-to-left override
  // (U+202E) and a first strong isolate (U+2068), between plain text.
  EXPECT_EQ(terminalSafe("GET /a\x1b[2J\xc2\x9b" "31m\x7f\xe2\x80\xae" "b\xe2\x81\xa8!\t"),
            "GET /a\\u001b[2J\\u009b31m\\u007f\\u202eb\\u2068!\\u0009");
  // Letters next to those ranges stay: U+00A0, U+00E9, U+2029 and U+206A.
  const std::string letters = "\xc2\xa0\xc3\xa9\xe2\x80\xa9\xe2\x81\xaa caf\xc3\xa9";
  EXPECT_EQ(terminalSafe(letters), letters);
  // A cut-off sequence at the end stays as it is.
  EXPECT_EQ(terminalSafe("x\xc2"), "x\xc2");
  EXPECT_EQ(terminalSafe("x\xe2\x80"), "x\xe2\x80");
}

}  // namespace
}  // namespace webtrap
