// Tests for the card number maskers: which digit runs maskCardNumbers takes
// for cards, and maskEveryCardNumber on numbers spelled to dodge masking.
#include "common/card_numbers.h"

#include <optional>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace webtrap {
namespace {

const std::string kCard = "4111111111111111";

// Percent-encodes every byte of `text`.
std::string percentEncode(std::string_view text) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : text) {
    out += '%';
    out += hex[c >> 4];
    out += hex[c & 15];
  }
  return out;
}

std::string fullWidth(std::string_view digits) {
  std::string out;
  for (char c : digits) {
    out += "\xEF\xBC";
    out += static_cast<char>(0x90 + (c - '0'));
  }
  return out;
}

std::string jsonEscaped(std::string_view digits) {
  std::string out;
  for (char c : digits) {
    out += "\\u003";
    out += c;
  }
  return out;
}

// Returns the masked text, or `text` when nothing was masked.
std::string masked(std::string_view text) {
  std::optional<std::string> result = maskEveryCardNumber(text);
  return result ? *result : std::string(text);
}

TEST(MaskEveryCardNumber, PlainNumbersAsBefore) {
  EXPECT_EQ(masked(kCard), "411111******1111");
  EXPECT_EQ(masked("cc=4111 1111 1111 1111&x=1"), "cc=4111 11** **** 1111&x=1");
  EXPECT_EQ(masked("n=4111+1111+1111+1111"), "n=4111+11**+****+1111");
  EXPECT_EQ(masked("378282246310005"), "378282*****0005");
  EXPECT_FALSE(maskEveryCardNumber("4111111111112").has_value());
  EXPECT_FALSE(maskEveryCardNumber("phone +49 941 1234567").has_value());
  EXPECT_FALSE(maskEveryCardNumber("").has_value());
  EXPECT_FALSE(maskEveryCardNumber("411111111116").has_value());
}

TEST(MaskEveryCardNumber, PercentEscapedDigits) {
  std::string text = "card_number=" + percentEncode(kCard) + "&cvv=123";
  EXPECT_EQ(masked(text), "card_number=%34%31%31%31%31%31%2A%2A%2A%2A%2A%2A%31%31%31%31&cvv=123");
  // A second urlencoding pass turns each '%' into "%25".
  std::string twice;
  for (char c : kCard) {
    twice += "%253";
    twice += c;
  }
  EXPECT_EQ(masked(twice).find(twice), std::string::npos);
  EXPECT_NE(masked(twice).find("%252A"), std::string::npos);
}

TEST(MaskEveryCardNumber, FullWidthDigits) {
  std::string stars;
  for (int i = 0; i < 6; ++i) {
    stars += "\xEF\xBC\x8A";  // U+FF0A FULLWIDTH ASTERISK
  }
  EXPECT_EQ(masked("n=" + fullWidth(kCard)), "n=" + fullWidth("411111") + stars + fullWidth("1111"));
  std::string encoded = percentEncode(fullWidth(kCard));
  std::string result = masked(encoded);
  EXPECT_NE(result, encoded);
  EXPECT_NE(result.find("%EF%BC%8A"), std::string::npos);
}

TEST(MaskEveryCardNumber, JsonEscapedDigits) {
  std::string text = "{\"pan\":\"" + jsonEscaped(kCard) + "\"}";
  std::string result = masked(text);
  EXPECT_NE(result, text);
  EXPECT_NE(result.find("\\u002A"), std::string::npos);
  EXPECT_EQ(masked("\\uFF14\\uFF11\\uFF11\\uFF11\\uFF11\\uFF11\\uFF11\\uFF11"
                   "\\uFF11\\uFF11\\uFF11\\uFF11\\uFF11\\uFF11\\uFF11\\uFF11")
                .find("\\uFF0A"),
            6u * 6);
}

TEST(MaskEveryCardNumber, LooseSeparators) {
  EXPECT_EQ(masked("4111.1111.1111.1111"), "4111.11**.****.1111");
  EXPECT_EQ(masked("4111\n1111\n1111\n1111"), "4111\n11**\n****\n1111");
  EXPECT_EQ(masked("4111\r\n1111\r\n1111\r\n1111"), "4111\r\n11**\r\n****\r\n1111");
  EXPECT_EQ(masked("4111/1111/1111/1111"), "4111/11**/****/1111");
  EXPECT_EQ(masked("4111_1111_1111_1111"), "4111_11**_****_1111");
  EXPECT_EQ(masked("4111 - 1111 - 1111 - 1111"), "4111 - 11** - **** - 1111");
  EXPECT_EQ(masked("4111%0A1111%0A1111%0A1111"), "4111%0A11**%0A****%0A1111");
  EXPECT_EQ(masked("4111\\n1111\\n1111\\n1111"), "4111\\n11**\\n****\\n1111");
  // Four separators in a row end the run.
  EXPECT_FALSE(maskEveryCardNumber("4111    1111    1111    1111").has_value());
}

TEST(MaskEveryCardNumber, CardInsideLongerRun) {
  std::string padded = "9" + kCard + "000";
  EXPECT_EQ(masked(padded).find(kCard), std::string::npos) << masked(padded);
  std::string misaligned = "99994111 11111111 1111";
  EXPECT_EQ(masked(misaligned).find("4111 11111111 1111"), std::string::npos)
      << masked(misaligned);
}

// Returns true when `text` still has a run of 13 to 19 plain digits (ignoring
// the loose separators) that passes the Luhn check.
bool hasLuhnValidWindow(std::string_view text) {
  std::string digits;
  auto check = [&] {
    for (std::size_t begin = 0; begin < digits.size(); ++begin) {
      for (std::size_t length = 13; length <= 19 && begin + length <= digits.size(); ++length) {
        if (luhnValid(std::string_view(digits).substr(begin, length))) {
          return true;
        }
      }
    }
    return false;
  };
  for (char c : text) {
    if (c >= '0' && c <= '9') {
      digits += c;
    } else if (c != ' ' && c != '-' && c != '.') {
      if (check()) {
        return true;
      }
      digits.clear();
    }
  }
  return check();
}

TEST(MaskEveryCardNumber, NoValidWindowSurvivesRandomRuns) {
  std::mt19937 random(7);
  std::uniform_int_distribution<int> digit(0, 9);
  std::uniform_int_distribution<int> separator(0, 5);
  for (int round = 0; round < 2000; ++round) {
    std::string text;
    int length = 10 + round % 40;
    for (int i = 0; i < length; ++i) {
      text += static_cast<char>('0' + digit(random));
      int kind = separator(random);
      if (kind == 0) {
        text += ' ';
      } else if (kind == 1) {
        text += '-';
      } else if (kind == 2) {
        text += '.';
      }
    }
    ASSERT_FALSE(hasLuhnValidWindow(masked(text))) << text << " -> " << masked(text);
  }
}

TEST(MaskEveryCardNumber, LongRunIsLinear) {
  // A 1 MiB run of digits must finish quickly and mask nearly all of it.
  std::string text(1 << 20, '1');
  std::string result = masked(text);
  EXPECT_EQ(result.substr(0, 6), "111111");
  EXPECT_EQ(result.substr(result.size() - 4), "1111");
  EXPECT_FALSE(hasLuhnValidWindow(result));
}

// Returns the masked text, or `text` when maskCardNumbers masked nothing.
std::string maskedCards(std::string_view text) {
  std::optional<std::string> result = maskCardNumbers(text);
  return result ? *result : std::string(text);
}

// Returns `text` without the separators maskCardNumbers reads (' ', '-', '+',
// "%20"), so that a number is found by a plain search.
std::string withoutSeparators(std::string_view text) {
  std::string out;
  for (std::size_t pos = 0; pos < text.size(); ++pos) {
    if (text.substr(pos, 3) == "%20") {
      pos += 2;
    } else if (text[pos] != ' ' && text[pos] != '-' && text[pos] != '+') {
      out += text[pos];
    }
  }
  return out;
}

// Returns `digits` split into groups of the given sizes, joined by `separator`.
std::string grouped(std::string_view digits, const std::vector<std::size_t>& sizes,
                    std::string_view separator) {
  std::string out;
  std::size_t pos = 0;
  for (std::size_t size : sizes) {
    if (!out.empty()) {
      out += separator;
    }
    out += digits.substr(pos, size);
    pos += size;
  }
  return out;
}

struct NetworkCard {
  std::string network;
  std::string digits;
  std::vector<std::size_t> groups;  // as the network prints the number
};

const std::vector<NetworkCard> kNetworkCards = {
    {"Visa", "4111111111111111", {4, 4, 4, 4}},
    {"Visa 13 digits", "4222222222222", {4, 4, 4, 1}},
    {"Visa 19 digits", "4000000000000000006", {4, 4, 4, 4, 3}},
    {"Mastercard", "5555555555554444", {4, 4, 4, 4}},
    {"Mastercard 2-series", "2223000048410010", {4, 4, 4, 4}},
    {"Amex", "378282246310005", {4, 6, 5}},
    {"Diners", "30569309025904", {4, 6, 4}},
    {"Discover", "6011111111111117", {4, 4, 4, 4}},
    {"JCB", "3530111333300000", {4, 4, 4, 4}},
    {"UnionPay", "6200000000000005", {4, 4, 4, 4}},
};

TEST(CardShapedMasking, EveryNetworkEverySpelling) {
  for (const NetworkCard& card : kNetworkCards) {
    ASSERT_TRUE(luhnValid(card.digits)) << card.network;
    std::string hidden(card.digits.size() - 10, '*');
    std::string expected = card.digits.substr(0, 6) + hidden + card.digits.substr(card.digits.size() - 4);
    EXPECT_EQ(maskedCards("pan=" + card.digits + "&x=1"), "pan=" + expected + "&x=1")
        << card.network;
    for (std::string_view separator : {" ", "-", "+", "%20"}) {
      std::string text = grouped(card.digits, card.groups, separator);
      EXPECT_EQ(withoutSeparators(maskedCards(text)), expected)
          << card.network << ": " << text << " -> " << maskedCards(text);
    }
  }
}

TEST(CardShapedMasking, KeepsUuidTails) {
  // 809847100000279 passes the Luhn check, but no card starts with 8 or is
  // written 3-12.
  ASSERT_TRUE(luhnValid("809847100000279"));
  EXPECT_FALSE(maskCardNumbers("id=0f8e2c1a-5d3b-4e6f-b809-847100000279").has_value());
  // 4123456789012349 starts like a Visa number, but no card is written 4-12.
  ASSERT_TRUE(luhnValid("4123456789012349"));
  EXPECT_FALSE(maskCardNumbers("0f8e2c1a-5d3b-4e6f-4123-456789012349").has_value());
}

TEST(CardShapedMasking, KeepsNonNetworkFirstDigits) {
  // Luhn-valid runs that start with a major industry identifier of no card
  // network (0, 1, 7, 8, 9), plain and in groups of 4.
  for (std::string digits : {"0123456789012347", "1123456789012345", "7123456789012342",
                             "8123456789012340", "9123456789012348", "1796400783389"}) {
    ASSERT_TRUE(luhnValid(digits)) << digits;
    EXPECT_FALSE(maskCardNumbers(digits).has_value()) << digits;
    std::string dashed = grouped(digits, {4, 4, 4, digits.size() - 12}, "-");
    EXPECT_FALSE(maskCardNumbers(dashed).has_value()) << dashed;
  }
  // An ISBN-13 in its usual dashes, which passes the Luhn check too.
  ASSERT_TRUE(luhnValid("9783161484094"));
  EXPECT_FALSE(maskCardNumbers("isbn=978-3-16-148409-4").has_value());
}

TEST(CardShapedMasking, KeepsOddGroupings) {
  // Luhn-valid, with a Visa first digit, but in groups no card is written in.
  ASSERT_TRUE(luhnValid("412345678901233"));
  EXPECT_FALSE(maskCardNumbers("412-345678901233").has_value());
  ASSERT_TRUE(luhnValid("41234567890120"));
  EXPECT_FALSE(maskCardNumbers("41 23 45 67 89 01 20").has_value());
  EXPECT_FALSE(maskCardNumbers("41111111-11111111").has_value());
  EXPECT_FALSE(maskCardNumbers("4111 111111 111111").has_value());
  EXPECT_FALSE(maskCardNumbers("4111 1111 11 11 1111").has_value());
}

TEST(CardShapedMasking, FindsCardAfterOddGroup) {
  // The whole run (2-4-4-4-4) passes the Luhn check but is no card shape,
  // so the card inside it is masked on its own.
  ASSERT_TRUE(luhnValid("184111111111111111"));
  EXPECT_EQ(maskedCards("n=18 4111 1111 1111 1111"), "n=18 4111 11** **** 1111");
  EXPECT_EQ(maskedCards("n=18-4111111111111111"), "n=18-411111******1111");
}

TEST(CardShapedMasking, RandomCardsAlwaysMasked) {
  // Random Luhn-valid numbers of each network digit, length and grouping,
  // between other text: the full number never survives.
  const std::vector<std::vector<std::size_t>> groupings = {
      {4, 4, 4, 1}, {4, 4, 4, 2}, {4, 4, 4, 3}, {4, 4, 4, 4}, {4, 4, 4, 4, 1},
      {4, 4, 4, 4, 2}, {4, 4, 4, 4, 3}, {4, 6, 5}, {4, 6, 4}};
  std::mt19937 random(11);
  std::uniform_int_distribution<int> digit(0, 9);
  std::uniform_int_distribution<int> network(2, 6);
  for (int round = 0; round < 2000; ++round) {
    const std::vector<std::size_t>& groups = groupings[round % groupings.size()];
    std::size_t length = 0;
    for (std::size_t size : groups) {
      length += size;
    }
    std::string digits(1, static_cast<char>('0' + network(random)));
    while (digits.size() + 1 < length) {
      digits += static_cast<char>('0' + digit(random));
    }
    for (char check = '0'; check <= '9'; ++check) {
      if (luhnValid(digits + check)) {
        digits += check;
        break;
      }
    }
    ASSERT_EQ(digits.size(), length);
    for (std::string_view separator : {"", " ", "-"}) {
      std::string number = separator.empty() ? digits : grouped(digits, groups, separator);
      std::string text = "a=x&cc=" + number + "&b=12";
      EXPECT_EQ(withoutSeparators(maskedCards(text)).find(digits), std::string::npos) << text;
    }
  }
}

}  // namespace
}  // namespace webtrap
