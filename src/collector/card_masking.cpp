#include "collector/card_masking.h"

#include <cstddef>

#include "common/card_numbers.h"

namespace webtrap::collector {
namespace {

constexpr std::size_t kMinCardDigits = 13;

bool isDigit(char c) { return c >= '0' && c <= '9'; }

bool isSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

// Follows the string boundaries of a JSON text from its start: a quote opens
// or closes a string, and inside a string a backslash escapes the next byte.
class StringTracker {
 public:
  explicit StringTracker(std::string_view text) : text_(text) {}

  // Returns whether the byte at `target` lies inside a string. Targets must
  // not decrease from one call to the next.
  bool insideStringAt(std::size_t target) {
    while (pos_ < target) {
      char c = text_[pos_];
      if (inside_ && c == '\\') {
        pos_ += 2;
        continue;
      }
      if (c == '"') {
        inside_ = !inside_;
      }
      ++pos_;
    }
    return inside_;
  }

 private:
  std::string_view text_;
  std::size_t pos_ = 0;
  bool inside_ = false;
};

// Returns whether [begin, end) of `text` reads as a bare JSON number: digits
// only, after a byte that may precede a number's digits and before one that
// may follow them (skipping whitespace).
bool looksLikeBareNumber(std::string_view text, std::size_t begin, std::size_t end) {
  for (std::size_t pos = begin; pos < end; ++pos) {
    if (!isDigit(text[pos])) {
      return false;
    }
  }
  std::size_t before = begin;
  while (before > 0 && isSpace(text[before - 1])) {
    --before;
  }
  if (before > 0) {
    char c = text[before - 1];
    if (c != ':' && c != ',' && c != '[' && c != '-' && c != '+' && c != '.' && c != 'e' &&
        c != 'E') {
      return false;
    }
  }
  std::size_t after = end;
  while (after < text.size() && isSpace(text[after])) {
    ++after;
  }
  if (after < text.size()) {
    char c = text[after];
    if (c != ',' && c != '}' && c != ']' && c != '.' && c != 'e' && c != 'E') {
      return false;
    }
  }
  return true;
}

}  // namespace

std::optional<std::string> maskCardNumbersInJson(std::string_view json) {
  // maskCardNumbers returns nullopt at once for most records, so that is the
  // whole cost in the common case. When it masked something, the bare
  // numbers among its candidates get their digits back.
  std::optional<std::string> masked = maskCardNumbers(json);
  if (!masked) {
    return std::nullopt;
  }
  StringTracker tracker(json);
  bool changed = false;
  for (const CardCandidate& candidate : findCardCandidates(json, true, kMinCardDigits)) {
    if (!candidate.luhn_valid || candidate.digits.size() < kMinCardDigits) {
      continue;
    }
    if (!tracker.insideStringAt(candidate.begin) &&
        looksLikeBareNumber(json, candidate.begin, candidate.end)) {
      masked->replace(candidate.begin, candidate.end - candidate.begin,
                      json.substr(candidate.begin, candidate.end - candidate.begin));
      continue;
    }
    changed = true;
  }
  if (!changed) {
    return std::nullopt;
  }
  return masked;
}

}  // namespace webtrap::collector
