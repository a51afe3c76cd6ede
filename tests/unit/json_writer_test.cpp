#include "common/json_writer.h"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <simdjson.h>

#include "common/encoding.h"

namespace webtrap {
namespace {

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";

// Writes `bytes` as one JSON string and returns it parsed back by simdjson.
// Fails the test when the output is not valid JSON.
std::string roundTrip(std::string_view bytes, bool* valid = nullptr) {
  std::string out;
  JsonWriter writer(out);
  bool was_valid = writer.string(bytes);
  if (valid != nullptr) {
    *valid = was_valid;
  }
  simdjson::dom::parser parser;
  std::string_view parsed;
  auto error = parser.parse(out).get_string().get(parsed);
  EXPECT_EQ(error, simdjson::SUCCESS) << "output: " << out;
  return std::string(parsed);
}

std::string repeat(std::string_view text, int count) {
  std::string out;
  for (int i = 0; i < count; ++i) {
    out.append(text);
  }
  return out;
}

// Runs `check` with each escaping kernel this CPU has: the AVX-512 one
// where supported, then the SSE2 one. The name goes into failure messages.
template <class Check>
void forEachKernel(Check check) {
  if (jsonEscapeWideSupported()) {
    setJsonEscapeWide(true);
    check("avx512");
  }
  setJsonEscapeWide(false);
  check("sse2");
  setJsonEscapeWide(true);
}

TEST(JsonWriter, EscapesQuoteBackslashAndControls) {
  std::string out;
  JsonWriter writer(out);
  writer.string(std::string_view("a\"b\\c\n\t\x01\x1f\x7f", 10));
  EXPECT_EQ(out, "\"a\\\"b\\\\c\\u000a\\u0009\\u0001\\u001f\x7f\"");
}

TEST(JsonWriter, EscapesNulInsideString) {
  std::string out;
  JsonWriter writer(out);
  writer.string(std::string_view("a\0b", 3));
  EXPECT_EQ(out, "\"a\\u0000b\"");
  EXPECT_EQ(roundTrip(std::string_view("a\0b", 3)), std::string("a\0b", 3));
}

TEST(JsonWriter, EverySingleByteGivesValidJson) {
  for (int byte = 0; byte < 256; ++byte) {
    std::string input(1, static_cast<char>(byte));
    bool valid = true;
    std::string parsed = roundTrip(input, &valid);
    if (byte < 0x80) {
      EXPECT_TRUE(valid) << "byte " << byte;
      EXPECT_EQ(parsed, input) << "byte " << byte;
    } else {
      EXPECT_FALSE(valid) << "byte " << byte;
      EXPECT_EQ(parsed, kReplacement) << "byte " << byte;
    }
  }
}

TEST(JsonWriter, EveryBytePairGivesValidJson) {
  simdjson::dom::parser parser;
  std::string out;
  for (int first = 0; first < 256; ++first) {
    for (int second = 0; second < 256; ++second) {
      out.clear();
      JsonWriter writer(out);
      const char pair[2] = {static_cast<char>(first), static_cast<char>(second)};
      writer.string(std::string_view(pair, 2));
      std::string_view parsed;
      ASSERT_EQ(parser.parse(out).get_string().get(parsed), simdjson::SUCCESS)
          << first << " " << second;
    }
  }
}

TEST(JsonWriter, KeepsWellFormedMultibyte) {
  for (std::string_view text : {"\xC3\xA9", "\xE2\x82\xAC", "\xF0\x9F\x98\x80", "\xF4\x8F\xBF\xBF",
                                "\xEF\xBF\xBD", "\xE2\x80\xA8"}) {
    bool valid = false;
    EXPECT_EQ(roundTrip(text, &valid), text);
    EXPECT_TRUE(valid);
  }
}

TEST(JsonWriter, ReplacesEachByteOfTruncatedSequence) {
  bool valid = true;
  EXPECT_EQ(roundTrip("\xE2\x82", &valid), repeat(kReplacement, 2));
  EXPECT_FALSE(valid);
  EXPECT_EQ(roundTrip("\xF0\x9F\x98"), repeat(kReplacement, 3));
  EXPECT_EQ(roundTrip("ab\xC3"), "ab" + std::string(kReplacement));
  EXPECT_EQ(roundTrip("\xE2\x82x"), repeat(kReplacement, 2) + "x");
}

TEST(JsonWriter, ReplacesOverlongForms) {
  EXPECT_EQ(roundTrip("\xC0\xAF"), repeat(kReplacement, 2));
  EXPECT_EQ(roundTrip("\xC1\xBF"), repeat(kReplacement, 2));
  EXPECT_EQ(roundTrip("\xE0\x80\xAF"), repeat(kReplacement, 3));
  EXPECT_EQ(roundTrip("\xE0\x9F\xBF"), repeat(kReplacement, 3));
  EXPECT_EQ(roundTrip("\xF0\x80\x80\xAF"), repeat(kReplacement, 4));
  EXPECT_EQ(roundTrip("\xF0\x8F\xBF\xBF"), repeat(kReplacement, 4));
}

TEST(JsonWriter, ReplacesSurrogates) {
  EXPECT_EQ(roundTrip("\xED\xA0\x80"), repeat(kReplacement, 3));
  EXPECT_EQ(roundTrip("\xED\xBF\xBF"), repeat(kReplacement, 3));
  EXPECT_EQ(roundTrip("\xED\x9F\xBF"), "\xED\x9F\xBF");  // U+D7FF is fine
}

TEST(JsonWriter, ReplacesCodePointsAboveMax) {
  EXPECT_EQ(roundTrip("\xF4\x90\x80\x80"), repeat(kReplacement, 4));
  EXPECT_EQ(roundTrip("\xF5\x80\x80\x80"), repeat(kReplacement, 4));
  EXPECT_EQ(roundTrip("\xFF\xFE"), repeat(kReplacement, 2));
}

// Keys that are not string literals go through the escaping overload. (A
// literal with such bytes does not compile: see LiteralKey.)
TEST(JsonWriter, KeysAreEscapedAndReportInvalid) {
  std::string out;
  JsonWriter writer(out);
  writer.beginObject();
  EXPECT_FALSE(writer.key(std::string_view("bad\xFF")));
  writer.null();
  EXPECT_TRUE(writer.key(std::string_view("q\"k")));
  writer.integer(1);
  writer.endObject();
  EXPECT_EQ(out, "{\"bad\xEF\xBF\xBD\":null,\"q\\\"k\":1}");
}

TEST(JsonWriter, PlacesCommasInNestedContainers) {
  std::string out;
  JsonWriter writer(out);
  writer.beginObject();
  writer.key("a");
  writer.beginArray();
  writer.integer(1);
  writer.beginObject();
  writer.endObject();
  writer.beginArray();
  writer.endArray();
  writer.string("x");
  writer.endArray();
  writer.member("b", true);
  writer.member("c", std::int64_t{-2});
  writer.key("d");
  writer.raw("[1,2]");
  writer.key("e");
  writer.null();
  writer.endObject();
  EXPECT_EQ(out, R"({"a":[1,{},[],"x"],"b":true,"c":-2,"d":[1,2],"e":null})");
}

TEST(JsonWriter, WritesIntegerLimits) {
  std::string out;
  JsonWriter writer(out);
  writer.beginArray();
  writer.integer(std::numeric_limits<std::int64_t>::min());
  writer.unsignedInteger(std::numeric_limits<std::uint64_t>::max());
  writer.boolean(false);
  writer.endArray();
  EXPECT_EQ(out, "[-9223372036854775808,18446744073709551615,false]");
}

TEST(JsonWriter, JoinsStringParts) {
  std::string out;
  JsonWriter writer(out);
  writer.beginArray();
  writer.beginString();
  EXPECT_TRUE(writer.stringPart("a"));
  EXPECT_TRUE(writer.stringPart(", "));
  EXPECT_FALSE(writer.stringPart("\x80"));
  writer.endString();
  writer.integer(3);
  writer.endArray();
  EXPECT_EQ(out, "[\"a, \xEF\xBF\xBD\",3]");
}

TEST(JsonWriter, AppendsToExistingOutput) {
  std::string out = "prefix ";
  JsonWriter writer(out);
  writer.string("x");
  EXPECT_EQ(out, "prefix \"x\"");
}

// appendJsonEscaped writes through a 4096-byte stack buffer; these lengths
// put each kind of escape just before, across and just after a flush.
TEST(JsonWriter, EscapesAcrossBufferFlush) {
  struct Case {
    std::string_view input;
    std::string_view escaped;
    bool valid;
  };
  const Case cases[] = {
      {"\"", "\\\"", true},
      {"\\", "\\\\", true},
      {std::string_view("\0", 1), "\\u0000", true},
      {"\x1f", "\\u001f", true},
      {"\xC3\xA9", "\xC3\xA9", true},
      {"\xE2\x82\xAC", "\xE2\x82\xAC", true},
      {"\xF0\x9F\x98\x80", "\xF0\x9F\x98\x80", true},
      {"\xFF", kReplacement, false},
      {"\xE2\x82", "\xEF\xBF\xBD\xEF\xBF\xBD", false},
  };
  forEachKernel([&](const char* kernel) {
    for (std::size_t prefix = 4080; prefix <= 4100; ++prefix) {
      for (const Case& c : cases) {
        // A quote first, so the escaper's buffer fills from the start.
        std::string input = "\"" + std::string(prefix, 'a');
        input.append(c.input);
        input.append("z");
        std::string expected = "\\\"" + std::string(prefix, 'a');
        expected.append(c.escaped);
        expected.append("z");
        std::string out;
        bool valid = appendJsonEscaped(out, input);
        EXPECT_EQ(out, expected) << kernel << ", prefix " << prefix << ", escaped " << c.escaped;
        EXPECT_EQ(valid, c.valid) << kernel << ", prefix " << prefix << ", escaped " << c.escaped;
      }
    }
  });
}

TEST(JsonWriter, LongInputMatchesPartByPart) {
  const std::string_view pieces[] = {"plain text ", "\"quoted\"", "back\\slash", "\n\t",
                                     "\xC3\xA9t\xC3\xA9", "\xFF", "\xF0\x9F\x98\x80"};
  std::string input;
  std::string expected;
  bool expected_valid = true;
  for (int i = 0; i < 3000; ++i) {
    std::string_view piece = pieces[i % std::size(pieces)];
    input.append(piece);
    expected_valid = appendJsonEscaped(expected, piece) && expected_valid;
  }
  ASSERT_GT(input.size(), 3 * 4096u);
  std::string out = "kept ";
  bool valid = appendJsonEscaped(out, input);
  EXPECT_EQ(out, "kept " + expected);
  EXPECT_FALSE(valid);
  EXPECT_FALSE(expected_valid);
  std::string sanitized;
  for (char byte : input) {
    if (byte == '\xFF') {
      sanitized.append(kReplacement);
    } else {
      sanitized.push_back(byte);
    }
  }
  EXPECT_EQ(roundTrip(input), sanitized);
}

// Escapes one byte at a time, the plainest reading of the contract:
// quote and backslash get a backslash, control characters become \u00XX,
// well-formed UTF-8 sequences are kept, and every other byte becomes U+FFFD.
std::string referenceEscape(std::string_view bytes, bool& valid) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  valid = true;
  std::size_t pos = 0;
  while (pos < bytes.size()) {
    auto byte = static_cast<unsigned char>(bytes[pos]);
    if (byte == '"' || byte == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(byte));
      ++pos;
    } else if (byte < 0x20) {
      out.append("\\u00");
      out.push_back(kDigits[byte >> 4]);
      out.push_back(kDigits[byte & 0x0F]);
      ++pos;
    } else if (byte < 0x80) {
      out.push_back(static_cast<char>(byte));
      ++pos;
    } else if (std::size_t length = utf8SequenceLength(bytes, pos); length > 0) {
      out.append(bytes.substr(pos, length));
      pos += length;
    } else {
      out.append(kReplacement);
      valid = false;
      ++pos;
    }
  }
  return out;
}

// The escapers work on 16- or 32-byte blocks, on runs within them and byte
// by byte near the end, so random text of every length up to a few blocks, made of
// pieces that take each path, must match the byte-at-a-time reference.
TEST(JsonWriter, RandomInputMatchesReference) {
  using Pieces = std::vector<std::string_view>;
  const Pieces kinds[] = {
      {"\"", " ", "abc"},                                     // quotes in text
      {"\"", "\\", "/", "a"},                                 // dense escapes
      {std::string_view("\0", 1), "\n", "\t", "\x1f", "\x7f"},  // control characters
      {"\xC3\xA9", "\xE2\x82\xAC", "\xF0\x9F\x98\x80"},        // well-formed UTF-8
      {"\x80", "\xBF", "\xC3", "\xE2\x82", "\xED\xA0\x80", "\xF4\x90\x80\x80", "\xFF"},
  };
  forEachKernel([&](const char* kernel) {
    std::mt19937 random(12345);
    for (std::size_t length = 0; length <= 200; ++length) {
      for (int round = 0; round < 40; ++round) {
        const Pieces& pieces = kinds[round % std::size(kinds)];
        std::string input;
        while (input.size() < length) {
          // Mostly plain letters, so runs of many lengths occur.
          if (random() % 3 == 0) {
            input.append(pieces[random() % pieces.size()]);
          } else {
            input.push_back(static_cast<char>('c' + random() % 20));
          }
        }
        bool expected_valid = true;
        std::string expected = referenceEscape(input, expected_valid);
        std::string out = "kept";
        bool valid = appendJsonEscaped(out, input);
        ASSERT_EQ(out, "kept" + expected) << kernel << ", length " << length << ", round " << round;
        ASSERT_EQ(valid, expected_valid) << kernel << ", length " << length << ", round " << round;
      }
    }
  });
}

// A literal key is written as compiled, with its quotes and colon, and the
// commas between members are the same as for other keys.
TEST(JsonWriter, LiteralKeysMatchEscapedKeys) {
  std::string literal_out;
  JsonWriter literal(literal_out);
  literal.beginObject();
  EXPECT_TRUE(literal.key("a"));
  literal.integer(1);
  literal.member("longest_key_of_29_bytes_xxxxx", "v");
  literal.member("n", std::int64_t{2});
  literal.member("b", true);
  literal.member("c", "text");
  literal.key("o");
  literal.beginObject();
  literal.member("in", "x");
  literal.endObject();
  literal.endObject();

  std::string text_out;
  JsonWriter text(text_out);
  text.beginObject();
  EXPECT_TRUE(text.key(std::string("a")));
  text.integer(1);
  text.member(std::string_view("longest_key_of_29_bytes_xxxxx"), "v");
  text.member(std::string("n"), std::int64_t{2});
  text.member(std::string("b"), true);
  text.member(std::string("c"), "text");
  text.key(std::string_view("o"));
  text.beginObject();
  text.member(std::string("in"), "x");
  text.endObject();
  text.endObject();

  EXPECT_EQ(literal_out, text_out);
  EXPECT_EQ(literal_out,
            "{\"a\":1,\"longest_key_of_29_bytes_xxxxx\":\"v\",\"n\":2,\"b\":true,"
            "\"c\":\"text\",\"o\":{\"in\":\"x\"}}");
  EXPECT_EQ(LiteralKey("source").text(), "source");
  EXPECT_EQ(LiteralKey("source").quoted(), "\"source\":");
}

// Short keys and values take their own path (checked in one pass below 16
// bytes, by 16-byte blocks up to 48), so every length around those limits,
// with and without bytes to escape, must match the reference too.
TEST(JsonWriter, ShortStringsAndKeysMatchReference) {
  const std::string_view specials[] = {"\"", "\\", "\n", "\x7f", "\xC3\xA9", "\xFF"};
  std::mt19937 random(777);
  for (std::size_t length = 0; length <= 64; ++length) {
    for (int round = 0; round < 24; ++round) {
      std::string input;
      while (input.size() < length) {
        input.push_back(static_cast<char>('a' + random() % 26));
      }
      // Half the rounds put one byte to escape at a random place.
      if (round % 2 == 1 && length > 0) {
        std::string_view special = specials[random() % std::size(specials)];
        input.replace(random() % length, 1, special);
      }
      bool expected_valid = true;
      std::string expected = referenceEscape(input, expected_valid);
      std::string out;
      JsonWriter writer(out);
      writer.beginObject();
      bool key_valid = writer.key(input);
      bool value_valid = writer.string(input);
      writer.endObject();
      ASSERT_EQ(out, "{\"" + expected + "\":\"" + expected + "\"}") << "length " << length;
      ASSERT_EQ(key_valid, expected_valid) << "length " << length;
      ASSERT_EQ(value_valid, expected_valid) << "length " << length;
    }
  }
}

}  // namespace
}  // namespace webtrap
