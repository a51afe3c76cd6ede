// Payment card numbers in text: finding them, the Luhn check, masking, and
// keyed fingerprints, so that records and logs keep no full number in the
// spellings that the maskers read.
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

// Finds the card numbers in `text` that maskCardNumbers masks. A run of
// digit groups is read as findCardCandidates reads it with encoded
// separators. A card number is a stretch of whole groups of that run that
//  - has 13 to 19 digits and passes the Luhn check,
//  - starts with a card network's major industry identifier, 2 to 6
//    (Visa 4, Mastercard 2 and 5, Amex 34 and 37, Diners 30, 36 and 38,
//    Discover, UnionPay and JCB 6 and 35), and
//  - is written in one group, as 4-6-5 (Amex) or 4-6-4 (Diners), or in
//    groups of 4 with a last group of 1 to 4 digits (4-4-4-1 to 4-4-4-4-3).
// From each group on, left to right, the longest such stretch is taken, and
// the search goes on after it. So "18 4111 1111 1111 1111" yields the card
// after the 18, while UUID tails ("b809-847100000279"), ISBNs
// ("978-3-16-148409-4") and numbers that start with 0, 1, 7, 8 or 9 yield
// nothing, even where they pass the Luhn check.
// NOTE: so cards with first digit 1 (UATP airline cards) or 7 (petroleum
// industry cards), and cards written in other groupings
// ("4111-111111-111111") or glued to a digit ("04111111111111111") are not
// found. maskEveryCardNumber, which the probe uses, masks them.
std::vector<CardCandidate> findCardNumbersToMask(std::string_view text);

// Returns `text` with every card number that findCardNumbersToMask finds
// masked: the first 6 and the last 4 digits kept, the others replaced by
// '*', separators left in place ("411111******1111"). Returns nullopt when
// there is nothing to mask, so callers copy only the strings that change.
// Only group-aligned numbers are masked, so that a caller can restore bare
// JSON numbers that findCardNumbersToMask reports. maskEveryCardNumber below
// also finds numbers spelled to dodge this function.
std::optional<std::string> maskCardNumbers(std::string_view text);

// Returns `text` with every digit masked that belongs to the middle of a
// Luhn-valid window of 13 to 19 consecutive digits, or nullopt when there is
// nothing to mask. Unlike maskCardNumbers, it reads digits written as
// percent escapes ("%34", "%2534"), JSON escapes ("\u0034"), and full-width
// digits (U+FF10 to U+FF19, raw or percent-encoded). It joins digits
// separated by up to 3 separators from this set: space, '-', '.', '/', '_',
// '+', tab, CR, LF (raw, percent-encoded or as JSON escapes). It checks
// every window, not only whole groups, so a card inside a longer digit run
// is masked too, and no Luhn-valid 13 to 19 digit window survives in the
// result. Each masked digit is replaced by '*' in the same spelling ("%2A",
// "\u002A", U+FF0A), so the result has the same length and stays valid
// percent or JSON escaping. It also masks numbers that are not cards:
// about one random 13-digit run in ten, and most runs of 20 digits or more.
// Not for JSON text with bare numbers, where a '*' would make the JSON
// invalid.
// NOTE: other spellings (HTML entities, base64, other Unicode digits,
// commas as separators) are not read.
std::optional<std::string> maskEveryCardNumber(std::string_view text);

// Returns the first 16 hex digits of HMAC-SHA256(`key`, `digits`).
std::string cardFingerprint(std::string_view digits, std::string_view key);

}  // namespace webtrap
