// Tests for maskEveryCardNumber: card numbers spelled to dodge masking.
#include "common/card_numbers.h"

#include <random>
#include <string>

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

}  // namespace
}  // namespace webtrap
