#include "collector/card_masking.h"

#include <bit>
#include <cstddef>
#include <cstdint>
#include <vector>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

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

// Bytes that do not end a run for findLongRun: digits and the bytes of
// the separators findCardCandidates accepts (' ', '-', '+', "%20", "%2D").
bool continuesRun(char c) {
  return isDigit(c) || c == ' ' || c == '-' || c == '+' || c == '%' || c == 'D' || c == 'd';
}

// Counts the set bits of a 16-bit mask. std::popcount becomes a library
// call when the build does not target a CPU with POPCNT, which cost more
// than the rest of the scan.
int countBits16(std::uint32_t mask) {
  mask = mask - ((mask >> 1) & 0x5555u);
  mask = (mask & 0x3333u) + ((mask >> 2) & 0x3333u);
  mask = (mask + (mask >> 4)) & 0x0F0Fu;
  return static_cast<int>((mask + (mask >> 8)) & 0x1Fu);
}

// Returns the offset of a byte inside the first run, at or after `from`, of
// at least 13 digits joined only by bytes that continue a run, or npos when
// there is none. Every card number findCardNumbersToMask finds lies in such a
// run, also when its digits are percent escapes ("%34" counts twice). The count is loose (the '2' and '0' of "%20" count as digits), so no
// card is missed. With SSE2 it reads 16 bytes a step, because this scan is
// the whole cost of masking for most records. A plain loop over each byte
// took about 5 us per 3.3 KB ModSecurity record in card_mask_bench.
std::size_t findLongRun(std::string_view text, std::size_t from) {
  std::size_t run = 0;
  std::size_t pos = from;
  // Runs the byte loop over [pos, stop), carrying `run`.
  auto scanBytes = [&](std::size_t stop) -> std::size_t {
    for (; pos < stop; ++pos) {
      char c = text[pos];
      if (!continuesRun(c)) {
        run = 0;
      } else if (isDigit(c) && ++run >= kMinCardDigits) {
        return pos;
      }
    }
    return std::string_view::npos;
  };
#if defined(__SSE2__)
  const __m128i zero_char = _mm_set1_epi8('0');
  const __m128i nine = _mm_set1_epi8(9);
  const __m128i space = _mm_set1_epi8(' ');
  const __m128i dash = _mm_set1_epi8('-');
  const __m128i plus = _mm_set1_epi8('+');
  const __m128i percent = _mm_set1_epi8('%');
  const __m128i upper_d = _mm_set1_epi8('D');
  const __m128i lower_d = _mm_set1_epi8('d');
  while (pos + 16 <= text.size()) {
    __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(text.data() + pos));
    __m128i offset = _mm_sub_epi8(bytes, zero_char);
    __m128i digit = _mm_cmpeq_epi8(_mm_min_epu8(offset, nine), offset);
    __m128i separator = _mm_or_si128(
        _mm_or_si128(_mm_cmpeq_epi8(bytes, space), _mm_cmpeq_epi8(bytes, dash)),
        _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(bytes, plus), _mm_cmpeq_epi8(bytes, percent)),
                     _mm_or_si128(_mm_cmpeq_epi8(bytes, upper_d),
                                  _mm_cmpeq_epi8(bytes, lower_d))));
    auto digits = static_cast<std::uint32_t>(_mm_movemask_epi8(digit));
    auto ends = ~(digits | static_cast<std::uint32_t>(_mm_movemask_epi8(separator))) & 0xFFFFu;
    if (digits == 0) {
      // Most blocks of a record: text without digits.
      run = ends == 0 ? run : 0;
      pos += 16;
      continue;
    }
    // Bit i is byte pos + i. The run carried from earlier blocks goes on to
    // the first byte that ends it, and a new run starts after the last one.
    // A run wholly inside the block needs 13 of its 16 bytes to be digits.
    std::uint32_t before_first = ends == 0 ? 0xFFFFu : (1u << std::countr_zero(ends)) - 1;
    std::size_t carried = run + static_cast<std::size_t>(countBits16(digits & before_first));
    if (carried >= kMinCardDigits ||
        (ends != 0 && countBits16(digits) >= static_cast<int>(kMinCardDigits))) {
      std::size_t hit = scanBytes(pos + 16);
      if (hit != std::string_view::npos) {
        return hit;
      }
      continue;
    }
    if (ends == 0) {
      run = carried;
    } else {
      run = static_cast<std::size_t>(countBits16(digits >> (32 - std::countl_zero(ends))));
    }
    pos += 16;
  }
#endif
  return scanBytes(text.size());
}

// Returns `run` with the card numbers masked whose digits are written, all
// or in part, as percent escapes ("%34%31..."), which PHP decodes into
// digits in $_GET and $_POST. A masked escape becomes "%2A" and a
// masked plain digit '*', so the length does not change. Returns nullopt
// when `run` contains no escaped digit or no card.
std::optional<std::string> maskPercentEscapedCards(std::string_view run) {
  // The run with each "%3X" (X a digit) read as its digit, and where each
  // byte of that view starts in `run`.
  std::string decoded;
  std::vector<std::size_t> starts;
  bool escaped = false;
  std::size_t pos = 0;
  while (pos < run.size()) {
    starts.push_back(pos);
    if (run[pos] == '%' && pos + 2 < run.size() && run[pos + 1] == '3' && isDigit(run[pos + 2])) {
      decoded += run[pos + 2];
      pos += 3;
      escaped = true;
      continue;
    }
    decoded += run[pos];
    ++pos;
  }
  if (!escaped) {
    return std::nullopt;
  }

  std::optional<std::string> masked = maskCardNumbers(decoded);
  if (!masked) {
    return std::nullopt;
  }

  std::string out(run);
  for (std::size_t i = 0; i < decoded.size(); ++i) {
    if ((*masked)[i] == decoded[i]) {
      continue;
    }
    if (run[starts[i]] == '%') {
      out.replace(starts[i], 3, "%2A");
    } else {
      out[starts[i]] = '*';
    }
  }
  return out;
}

}  // namespace

std::optional<std::string> maskCardNumbersInJson(std::string_view json) {
  std::optional<std::string> out;
  StringTracker tracker(json);
  std::size_t pos = 0;
  // Each long run is masked on its own, so a record pays for the full
  // candidate search only over the few bytes that may be a card number.
  for (std::size_t hit = findLongRun(json, 0); hit != std::string_view::npos;
       hit = findLongRun(json, pos)) {
    std::size_t begin = hit;
    while (begin > pos && continuesRun(json[begin - 1])) {
      --begin;
    }
    std::size_t end = hit;
    while (end < json.size() && continuesRun(json[end])) {
      ++end;
    }
    pos = end;
    std::string_view run = json.substr(begin, end - begin);
    // A run with a '%' is not a bare JSON number, so nothing is restored.
    if (std::optional<std::string> escaped = maskPercentEscapedCards(run)) {
      if (!out) {
        out.emplace(json);
      }
      out->replace(begin, run.size(), *escaped);
      continue;
    }
    std::optional<std::string> masked = maskCardNumbers(run);
    if (!masked) {
      continue;
    }
    // Bare numbers among the candidates get their digits back.
    bool changed = false;
    for (const CardCandidate& candidate : findCardNumbersToMask(run)) {
      std::size_t length = candidate.end - candidate.begin;
      if (!tracker.insideStringAt(begin + candidate.begin) &&
          looksLikeBareNumber(json, begin + candidate.begin, begin + candidate.end)) {
        masked->replace(candidate.begin, length, run.substr(candidate.begin, length));
        continue;
      }
      changed = true;
    }
    if (changed) {
      if (!out) {
        out.emplace(json);
      }
      out->replace(begin, run.size(), *masked);
    }
  }
  return out;
}

}  // namespace webtrap::collector
