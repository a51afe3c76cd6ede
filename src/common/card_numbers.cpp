#include "common/card_numbers.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>

#include "common/encoding.h"

namespace webtrap {
namespace {

constexpr std::size_t kMaxCardDigits = 19;
constexpr std::size_t kMinMaskedDigits = 13;
// Digits kept at each end of a masked number: the BIN and the last four.
constexpr std::size_t kKeptLeading = 6;
constexpr std::size_t kKeptTrailing = 4;

bool isDigit(char c) { return c >= '0' && c <= '9'; }

// Counts the ASCII digits in `text`, eight bytes at a time: the record writer
// calls this on every string, and most strings have few digits.
std::size_t countDigits(std::string_view text) {
  constexpr std::uint64_t kHighBits = 0x8080808080808080ULL;
  constexpr std::uint64_t kLowBits = 0x7F7F7F7F7F7F7F7FULL;
  constexpr std::uint64_t kFromZero = 0x5050505050505050ULL;   // 0x80 - '0'
  constexpr std::uint64_t kPastNine = 0x4646464646464646ULL;   // 0x80 - ('9' + 1)
  std::size_t count = 0;
  std::size_t pos = 0;
  for (; pos + 8 <= text.size(); pos += 8) {
    std::uint64_t word;
    std::memcpy(&word, text.data() + pos, 8);
    // With the high bits cleared no byte carries into the next one. A byte
    // is a digit when it is >= '0', not > '9', and was below 0x80.
    std::uint64_t low = word & kLowBits;
    std::uint64_t digits = (low + kFromZero) & ~(low + kPastNine) & ~word & kHighBits;
    count += static_cast<std::size_t>(std::popcount(digits));
  }
  for (; pos < text.size(); ++pos) {
    count += isDigit(text[pos]) ? 1 : 0;
  }
  return count;
}

std::size_t separatorLength(std::string_view text, std::size_t pos, bool encoded) {
  if (pos >= text.size()) {
    return 0;
  }
  char c = text[pos];
  if (c == ' ' || c == '-') {
    return 1;
  }
  if (!encoded) {
    return 0;
  }
  if (c == '+') {
    return 1;
  }
  if (c == '%' && pos + 2 < text.size() && text[pos + 1] == '2' &&
      (text[pos + 2] == '0' || text[pos + 2] == 'D' || text[pos + 2] == 'd')) {
    return 3;
  }
  return 0;
}

struct DigitGroup {
  std::size_t begin;
  std::size_t end;
};

std::string joinDigits(std::string_view text, const std::vector<DigitGroup>& groups,
                       std::size_t first, std::size_t last) {
  std::string digits;
  for (std::size_t i = first; i <= last; ++i) {
    digits.append(text.substr(groups[i].begin, groups[i].end - groups[i].begin));
  }
  return digits;
}

// Adds, left to right, the longest Luhn-valid stretch of whole groups with
// kMinMaskedDigits to kMaxCardDigits digits that starts at a group and for
// which `accept(first, last)` is true. The search goes on after each
// stretch it adds.
template <typename Accept>
void addLuhnStretches(std::string_view text, const std::vector<DigitGroup>& groups, Accept accept,
                      std::vector<CardCandidate>& out) {
  std::size_t start = 0;
  while (start < groups.size()) {
    std::size_t count = 0;
    std::optional<std::size_t> best;
    std::string best_digits;
    for (std::size_t last = start; last < groups.size(); ++last) {
      count += groups[last].end - groups[last].begin;
      if (count > kMaxCardDigits) {
        break;
      }
      if (count < kMinMaskedDigits || !accept(start, last)) {
        continue;
      }
      std::string digits = joinDigits(text, groups, start, last);
      if (luhnValid(digits)) {
        best = last;
        best_digits = std::move(digits);
      }
    }
    if (!best) {
      ++start;
      continue;
    }
    out.push_back({groups[start].begin, groups[*best].end, std::move(best_digits), true});
    start = *best + 1;
  }
}

// Adds the candidates of one run of digit groups (see findCardCandidates).
void addRunCandidates(std::string_view text, const std::vector<DigitGroup>& groups,
                      std::size_t min_digits, std::vector<CardCandidate>& out) {
  std::size_t total = 0;
  for (const auto& group : groups) {
    total += group.end - group.begin;
  }
  std::optional<CardCandidate> whole;
  if (total >= min_digits && total <= kMaxCardDigits) {
    whole = CardCandidate{groups.front().begin, groups.back().end,
                          joinDigits(text, groups, 0, groups.size() - 1), false};
    whole->luhn_valid = luhnValid(whole->digits);
    if (whole->luhn_valid) {
      out.push_back(std::move(*whole));
      return;
    }
  }

  // Longest Luhn-valid stretches of whole groups, left to right.
  const std::size_t before = out.size();
  addLuhnStretches(
      text, groups, [](std::size_t, std::size_t) { return true; }, out);
  if (out.size() == before && whole) {
    out.push_back(std::move(*whole));
  }
}

// Calls `visit` with the groups of each run of digits in `text` that are
// joined by single separators (see findCardCandidates).
template <typename Visit>
void forEachDigitRun(std::string_view text, bool encoded_separators, Visit visit) {
  std::vector<DigitGroup> groups;
  std::size_t pos = 0;
  while (pos < text.size()) {
    if (!isDigit(text[pos])) {
      ++pos;
      continue;
    }
    groups.clear();
    while (true) {
      std::size_t begin = pos;
      while (pos < text.size() && isDigit(text[pos])) {
        ++pos;
      }
      groups.push_back({begin, pos});
      std::size_t separator = separatorLength(text, pos, encoded_separators);
      if (separator == 0 || pos + separator >= text.size() || !isDigit(text[pos + separator])) {
        break;
      }
      pos += separator;
    }
    visit(groups);
  }
}

// Returns whether a number starts with the major industry identifier of a
// card network: 2 (Mastercard), 3 (Amex, Diners, JCB), 4 (Visa),
// 5 (Mastercard) or 6 (Discover, UnionPay, Maestro).
bool hasCardNetworkDigit(char first_digit) { return first_digit >= '2' && first_digit <= '6'; }

// Returns whether the groups [first, last] are in a grouping that card
// numbers are written in (see findCardNumbersToMask).
bool isCardGrouping(const std::vector<DigitGroup>& groups, std::size_t first, std::size_t last) {
  auto size = [&groups](std::size_t i) { return groups[i].end - groups[i].begin; };
  if (first == last) {
    return true;
  }
  if (last - first == 2 && size(first) == 4 && size(first + 1) == 6 &&
      (size(last) == 5 || size(last) == 4)) {
    return true;
  }
  for (std::size_t i = first; i < last; ++i) {
    if (size(i) != 4) {
      return false;
    }
  }
  return size(last) <= 4;
}

// Adds the card numbers of one run of digit groups (see
// findCardNumbersToMask).
void addRunCardNumbers(std::string_view text, const std::vector<DigitGroup>& groups,
                       std::vector<CardCandidate>& out) {
  addLuhnStretches(
      text, groups,
      [&](std::size_t first, std::size_t last) {
        return hasCardNetworkDigit(text[groups[first].begin]) &&
               isCardGrouping(groups, first, last);
      },
      out);
}

// The spellings of a digit that maskEveryCardNumber reads, each with the
// spelling of '*' that replaces it (the same length).
enum class DigitSpelling { kAscii, kPercent, kDoublePercent, kFullWidth, kPercentFullWidth,
                           kJsonEscape, kJsonFullWidth };

struct DigitSymbol {
  std::size_t begin = 0;
  DigitSpelling spelling = DigitSpelling::kAscii;
  int value = 0;
};

struct SymbolLength {
  std::size_t length = 0;  // 0: no symbol at this position
  DigitSpelling spelling = DigitSpelling::kAscii;
  int value = 0;
};

bool matchesAt(std::string_view text, std::size_t pos, std::string_view pattern) {
  return text.size() - pos >= pattern.size() &&
         std::equal(pattern.begin(), pattern.end(), text.begin() + static_cast<std::ptrdiff_t>(pos),
                    [](char p, char c) {
                      return p == c || (p >= 'A' && p <= 'F' && c == p - 'A' + 'a');
                    });
}

// Reads one digit at `pos` in any spelling of DigitSpelling.
SymbolLength readDigit(std::string_view text, std::size_t pos) {
  char c = text[pos];
  std::size_t rest = text.size() - pos;
  if (isDigit(c)) {
    return {1, DigitSpelling::kAscii, c - '0'};
  }
  if (c == '%') {
    if (rest >= 3 && text[pos + 1] == '3' && isDigit(text[pos + 2])) {
      return {3, DigitSpelling::kPercent, text[pos + 2] - '0'};
    }
    if (rest >= 5 && matchesAt(text, pos, "%253") && isDigit(text[pos + 4])) {
      return {5, DigitSpelling::kDoublePercent, text[pos + 4] - '0'};
    }
    if (rest >= 9 && matchesAt(text, pos, "%EF%BC%9") && isDigit(text[pos + 8])) {
      return {9, DigitSpelling::kPercentFullWidth, text[pos + 8] - '0'};
    }
    return {};
  }
  if (c == '\\' && rest >= 6 && text[pos + 1] == 'u') {
    if (matchesAt(text, pos + 2, "003") && isDigit(text[pos + 5])) {
      return {6, DigitSpelling::kJsonEscape, text[pos + 5] - '0'};
    }
    if (matchesAt(text, pos + 2, "FF1") && isDigit(text[pos + 5])) {
      return {6, DigitSpelling::kJsonFullWidth, text[pos + 5] - '0'};
    }
    return {};
  }
  // U+FF10 to U+FF19 are EF BC 90 to EF BC 99 in UTF-8.
  if (static_cast<unsigned char>(c) == 0xEF && rest >= 3 &&
      static_cast<unsigned char>(text[pos + 1]) == 0xBC) {
    auto last = static_cast<unsigned char>(text[pos + 2]);
    if (last >= 0x90 && last <= 0x99) {
      return {3, DigitSpelling::kFullWidth, last - 0x90};
    }
  }
  return {};
}

std::string_view maskSpelling(DigitSpelling spelling) {
  switch (spelling) {
    case DigitSpelling::kAscii:
      return "*";
    case DigitSpelling::kPercent:
      return "%2A";
    case DigitSpelling::kDoublePercent:
      return "%252A";
    case DigitSpelling::kFullWidth:
      return "\xEF\xBC\x8A";  // U+FF0A FULLWIDTH ASTERISK
    case DigitSpelling::kPercentFullWidth:
      return "%EF%BC%8A";
    case DigitSpelling::kJsonEscape:
      return "\\u002A";
    case DigitSpelling::kJsonFullWidth:
      return "\\uFF0A";
  }
  return "*";
}

// Returns the length of a separator that maskEveryCardNumber skips between
// digits, or 0.
std::size_t looseSeparatorLength(std::string_view text, std::size_t pos) {
  char c = text[pos];
  switch (c) {
    case ' ': case '-': case '.': case '/': case '_': case '+': case '\t': case '\r': case '\n':
      return 1;
    default:
      break;
  }
  if (c == '%') {
    for (std::string_view escape : {"%20", "%2D", "%2E", "%2F", "%5F", "%2B", "%09", "%0A", "%0D"}) {
      if (matchesAt(text, pos, escape)) {
        return 3;
      }
    }
    return 0;
  }
  if (c == '\\' && pos + 1 < text.size()) {
    char next = text[pos + 1];
    if (next == 'n' || next == 'r' || next == 't' || next == '/') {
      return 2;
    }
  }
  return 0;
}

// Separators allowed between two digits of one run: enough for "\r\n" and
// " - ".
constexpr std::size_t kMaxLooseSeparators = 3;

// Marks in `masked` every digit of `run` in the middle of a Luhn-valid
// window of 13 to 19 digits. Luhn sums come from prefix sums, so a run of n
// digits costs O(n), not O(n * 19).
void maskRunWindows(std::string_view text, const std::vector<DigitSymbol>& run,
                    std::optional<std::string>& masked) {
  const std::size_t count = run.size();
  if (count < kMinMaskedDigits) {
    return;
  }
  auto doubled = [](int digit) { return digit * 2 > 9 ? digit * 2 - 9 : digit * 2; };
  // even_plain[k]: the Luhn sum of run[0, k) when even indexes are not
  // doubled; odd_plain[k]: when odd indexes are not doubled. A window's last
  // digit is never doubled, so its parity picks the array.
  std::vector<int> even_plain(count + 1, 0);
  std::vector<int> odd_plain(count + 1, 0);
  for (std::size_t m = 0; m < count; ++m) {
    int digit = run[m].value;
    bool even = m % 2 == 0;
    even_plain[m + 1] = even_plain[m] + (even ? digit : doubled(digit));
    odd_plain[m + 1] = odd_plain[m] + (even ? doubled(digit) : digit);
  }
  // Difference array of the masked ranges [begin + 6, end - 4).
  std::vector<int> cover(count + 1, 0);
  bool any = false;
  for (std::size_t begin = 0; begin + kMinMaskedDigits <= count; ++begin) {
    for (std::size_t length = kMinMaskedDigits; length <= kMaxCardDigits; ++length) {
      std::size_t end = begin + length;
      if (end > count) {
        break;
      }
      const std::vector<int>& sums = (end - 1) % 2 == 0 ? even_plain : odd_plain;
      if ((sums[end] - sums[begin]) % 10 == 0) {
        ++cover[begin + kKeptLeading];
        --cover[end - kKeptTrailing];
        any = true;
      }
    }
  }
  if (!any) {
    return;
  }
  if (!masked) {
    masked.emplace(text);
  }
  int depth = 0;
  for (std::size_t m = 0; m < count; ++m) {
    depth += cover[m];
    if (depth > 0) {
      std::string_view star = maskSpelling(run[m].spelling);
      masked->replace(run[m].begin, star.size(), star);
    }
  }
}

}  // namespace

bool luhnValid(std::string_view digits) {
  if (digits.empty()) {
    return false;
  }
  int sum = 0;
  bool double_it = false;
  for (auto it = digits.rbegin(); it != digits.rend(); ++it) {
    if (!isDigit(*it)) {
      return false;
    }
    int digit = *it - '0';
    if (double_it) {
      digit *= 2;
      if (digit > 9) {
        digit -= 9;
      }
    }
    sum += digit;
    double_it = !double_it;
  }
  return sum % 10 == 0;
}

std::vector<CardCandidate> findCardCandidates(std::string_view text, bool encoded_separators,
                                              std::size_t min_digits) {
  std::vector<CardCandidate> out;
  forEachDigitRun(text, encoded_separators, [&](const std::vector<DigitGroup>& groups) {
    addRunCandidates(text, groups, min_digits, out);
  });
  return out;
}

std::vector<CardCandidate> findCardNumbersToMask(std::string_view text) {
  std::vector<CardCandidate> out;
  forEachDigitRun(text, true, [&](const std::vector<DigitGroup>& groups) {
    addRunCardNumbers(text, groups, out);
  });
  return out;
}

std::optional<std::string> maskCardNumbers(std::string_view text) {
  // Most strings contain fewer than 13 digits in all, so they cannot contain a card.
  if (countDigits(text) < kMinMaskedDigits) {
    return std::nullopt;
  }
  // Many others (user agents, dates) have no 13 digits in one run. This
  // check counts more loosely than findCardCandidates, so it never skips a card.
  std::size_t run = 0;
  std::size_t longest = 0;
  for (char c : text) {
    if (isDigit(c)) {
      longest = std::max(longest, ++run);
    } else if (c != ' ' && c != '-' && c != '+' && c != '%' && c != 'D' && c != 'd') {
      run = 0;
    }
  }
  if (longest < kMinMaskedDigits) {
    return std::nullopt;
  }

  std::optional<std::string> masked;
  for (const CardCandidate& candidate : findCardNumbersToMask(text)) {
    if (!masked) {
      masked.emplace(text);
    }
    std::size_t last_masked = candidate.digits.size() - kKeptTrailing;
    std::size_t index = 0;
    std::size_t pos = candidate.begin;
    while (pos < candidate.end) {
      std::size_t separator = separatorLength(text, pos, true);
      if (separator > 0) {
        pos += separator;
        continue;
      }
      if (index >= kKeptLeading && index < last_masked) {
        (*masked)[pos] = '*';
      }
      ++index;
      ++pos;
    }
  }
  return masked;
}

std::string cardFingerprint(std::string_view digits, std::string_view key) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(digits.data()), digits.size(), digest, &length);
  return hexEncode(std::string_view(reinterpret_cast<const char*>(digest), length)).substr(0, 16);
}

std::optional<std::string> maskEveryCardNumber(std::string_view text) {
  // Most strings contain fewer than 13 digits in all and no full-width digit
  // (lead byte 0xEF), so they cannot contain a card. Every other spelling contains
  // at least one ASCII digit per digit.
  if (countDigits(text) < kMinMaskedDigits &&
      std::memchr(text.data(), 0xEF, text.size()) == nullptr) {
    return std::nullopt;
  }
  std::optional<std::string> masked;
  std::vector<DigitSymbol> run;
  std::size_t separators = 0;
  std::size_t pos = 0;
  while (pos < text.size()) {
    SymbolLength digit = readDigit(text, pos);
    if (digit.length > 0) {
      run.push_back({pos, digit.spelling, digit.value});
      separators = 0;
      pos += digit.length;
      continue;
    }
    std::size_t separator = run.empty() ? 0 : looseSeparatorLength(text, pos);
    if (separator > 0 && ++separators <= kMaxLooseSeparators) {
      pos += separator;
      continue;
    }
    maskRunWindows(text, run, masked);
    run.clear();
    separators = 0;
    ++pos;
  }
  maskRunWindows(text, run, masked);
  return masked;
}

}  // namespace webtrap
