#include "probe/inspection.h"

#include <algorithm>
#include <array>
#include <bit>
#include <optional>
#include <string_view>
#include <unordered_set>

#include <fmt/format.h>

#include "common/card_numbers.h"
#include "common/encoding.h"

namespace webtrap::probe {

const char* toString(InspectionStatus status) {
  switch (status) {
    case InspectionStatus::kComplete:
      return "complete";
    case InspectionStatus::kCached:
      return "cached";
    case InspectionStatus::kShed:
      return "shed";
    case InspectionStatus::kFailed:
      return "failed";
    case InspectionStatus::kInterrupted:
      return "interrupted";
  }
  return "unknown";
}

namespace {

// Bytes past the cut that are masked together with the kept part, so that a
// card number that straddles the cut is masked as the record writer would
// mask it in the whole string. One Luhn window is at most 19 digits of 9
// bytes ("%EF%BC%94") with 3 separators of 3 bytes ("%0A") between digits,
// about 650 bytes.
constexpr std::size_t kMaskLookahead = 1024;

// The JSON bytes that the record writer needs for `text`, as an estimate
// that is never too low: a control byte, '"' and '\\' take up to 6 bytes. A
// string that is not valid UTF-8 is written with U+FFFD in place of each
// invalid byte and gets a base64 copy in webtrap.encoded, so it is charged
// 8 bytes a byte.
std::size_t jsonCost(std::string_view text) {
  if (!isValidUtf8(text)) {
    return 8 * text.size() + 2;
  }
  std::size_t cost = 2;
  for (unsigned char byte : text) {
    if (byte < 0x20) {
      cost += 6;
    } else if (byte == '"' || byte == '\\') {
      cost += 2;
    } else {
      cost += 1;
    }
  }
  return cost;
}

// Keys, the numbers written as strings and the punctuation of one message
// in transaction.messages, rounded up.
constexpr std::size_t kMessageFrameCost = 200;

std::size_t matchCost(const RuleMatch& match) {
  std::size_t cost = kMessageFrameCost + jsonCost(match.id) + jsonCost(match.message) +
                     jsonCost(match.data) + jsonCost(match.match) + jsonCost(match.reference) +
                     jsonCost(match.file) + jsonCost(match.version) + jsonCost(match.revision);
  for (const std::string& tag : match.tags) {
    cost += jsonCost(tag) + 1;
  }
  return cost;
}

// The strings of a match that grow with the request.
std::array<std::string*, 4> longStrings(RuleMatch& match) {
  return {&match.message, &match.data, &match.match, &match.reference};
}

using StringSizes = std::array<std::size_t, 4>;

// Cuts `text` as truncateMatchText does, with `original_size` in the marker.
bool cutText(std::string& text, std::size_t max_bytes, std::size_t original_size) {
  max_bytes = std::max(max_bytes, kMinTruncatedBytes);
  if (text.size() <= max_bytes) {
    return false;
  }
  std::string marker = fmt::format(" [truncated by webtrap from {} bytes]", original_size);
  std::size_t keep = max_bytes - marker.size();
  // Step back over at most 3 UTF-8 continuation bytes, so that the cut does
  // not split a character.
  for (int step = 0;
       step < 3 && keep > 0 && (static_cast<unsigned char>(text[keep]) & 0xC0) == 0x80; ++step) {
    --keep;
  }
  // The record writer masks card numbers in every string, but a number cut
  // in half is no longer recognised, so its kept digits would show. Masking
  // before the cut keeps what the writer would have kept of the whole string.
  std::string_view window = std::string_view(text).substr(0, keep + kMaskLookahead);
  std::optional<std::string> masked = maskEveryCardNumber(window);
  if (masked) {
    text = std::move(*masked);
  }
  text.resize(keep);
  text += marker;
  return true;
}

// Cuts the long strings of `match` to `max_bytes` each and sets bit i of
// `cut_mask` for each string i that it cut. Returns true when it cut any.
bool cutLongStrings(RuleMatch& match, std::size_t max_bytes, const StringSizes& sizes,
                    unsigned& cut_mask) {
  auto strings = longStrings(match);
  bool cut_any = false;
  for (std::size_t i = 0; i < strings.size(); ++i) {
    if (cutText(*strings[i], max_bytes, sizes[i])) {
      cut_mask |= 1u << i;
      cut_any = true;
    }
  }
  return cut_any;
}

}  // namespace

bool truncateMatchText(std::string& text, std::size_t max_bytes) {
  return cutText(text, max_bytes, text.size());
}

MatchDetailCuts boundMatchDetails(std::vector<RuleMatch>& matches,
                                  const MatchDetailLimits& limits) {
  MatchDetailCuts cuts;
  std::vector<StringSizes> sizes(matches.size());
  std::vector<unsigned> cut_masks(matches.size(), 0);
  for (std::size_t i = 0; i < matches.size(); ++i) {
    auto strings = longStrings(matches[i]);
    for (std::size_t j = 0; j < strings.size(); ++j) {
      sizes[i][j] = strings[j]->size();
    }
    cutLongStrings(matches[i], limits.max_string_bytes, sizes[i], cut_masks[i]);
  }

  // First the first match of each rule id, then the repeats, each in order.
  std::vector<std::size_t> order;
  order.reserve(matches.size());
  std::vector<bool> first(matches.size(), false);
  std::unordered_set<std::string_view> seen;
  for (std::size_t i = 0; i < matches.size(); ++i) {
    if (seen.insert(matches[i].id).second) {
      first[i] = true;
      order.push_back(i);
    }
  }
  for (std::size_t i = 0; i < matches.size(); ++i) {
    if (!first[i]) {
      order.push_back(i);
    }
  }

  std::vector<bool> omit(matches.size(), false);
  std::size_t spent = 0;
  for (std::size_t i : order) {
    std::size_t cost = matchCost(matches[i]);
    if (spent + cost <= limits.max_total_bytes) {
      spent += cost;
    } else if (first[i]) {
      // A match whose texts all fit in kReducedStringBytes stays whole, so
      // it is not counted as reduced.
      if (cutLongStrings(matches[i], kReducedStringBytes, sizes[i], cut_masks[i])) {
        cuts.reduced_matches += 1;
      }
      spent += matchCost(matches[i]);
    } else {
      omit[i] = true;
      cuts.omitted_matches += 1;
    }
  }

  // Only the strings that stay in the record count as truncated.
  std::size_t out = 0;
  for (std::size_t i = 0; i < matches.size(); ++i) {
    if (omit[i]) {
      continue;
    }
    cuts.truncated_strings += static_cast<std::uint64_t>(std::popcount(cut_masks[i]));
    if (out != i) {
      matches[out] = std::move(matches[i]);
    }
    ++out;
  }
  matches.resize(out);
  return cuts;
}

}  // namespace webtrap::probe
