// Payment card numbers in text: finding them, the Luhn check, masking, and
// keyed fingerprints, so that no full number is ever stored.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace webtrap {

// A digit sequence that may be a payment card number, at bytes
// [begin, end) of the text it was found in.
struct CardCandidate {
  std::size_t begin = 0;
  std::size_t end = 0;
  std::string digits;  // the digits alone, separators removed
  bool luhn_valid = false;
};

// Finds card number candidates in `text`: runs of digits in groups joined
// by single separators (space or '-'; with `encoded_separators` also '+',
// "%20" and "%2D", as a urlencoded text writes them). A run of
// `min_digits` to 19 digits is one candidate. When a run is longer or
// fails the Luhn check, each Luhn-valid stretch of whole groups with 13 to
// 19 digits inside it is a candidate instead, so "4111 1111 1111 1111 12 26"
// still yields the card.
std::vector<CardCandidate> findCardCandidates(std::string_view text, bool encoded_separators,
                                              std::size_t min_digits);

// Returns true when `digits` (ASCII digits only) passes the Luhn check.
bool luhnValid(std::string_view digits);

// Returns `text` with every Luhn-valid card number of 13 to 19 digits
// masked: the first 6 and the last 4 digits kept, the others replaced by
// '*', separators left in place ("411111******1111"). Returns nullopt when
// there is nothing to mask, so callers copy only the strings that change.
// NOTE: digits written as percent escapes ("%34%31...") or a card inside a
// run of more than 19 digits without separators are not found.
std::optional<std::string> maskCardNumbers(std::string_view text);

// Returns the first 16 hex digits of HMAC-SHA256(`key`, `digits`).
std::string cardFingerprint(std::string_view digits, std::string_view key);

}  // namespace webtrap
