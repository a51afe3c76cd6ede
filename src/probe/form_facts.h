// Facts read from a POST to one of the persona's forms (webtrap.form in the
// record), and the payment card number handling shared with the record
// writer: finding card numbers in text, the Luhn check and masking.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/request_facts.h"
#include "probe/capture.h"

namespace webtrap::probe {

// Bounds on the text fields of FormFacts, in bytes.
inline constexpr std::size_t kMaxFormUsernameBytes = 256;
inline constexpr std::size_t kMaxFormEmailBytes = 256;
inline constexpr std::size_t kMaxFormCouponBytes = 64;
// Cards kept per request; more distinct numbers in one request are dropped.
inline constexpr std::size_t kMaxFormCards = 16;

// Returns true for the route kinds whose POSTs carry form facts: login,
// register, comment, contact, coupon and checkout.
bool isFormKind(std::string_view kind);

// Reads the form facts of a POST to a route of `kind` from the query string
// and the urlencoded, multipart or JSON body. `card_key` is the HMAC-SHA256
// key of the card fingerprints. Never throws for any request content.
FormFacts extractFormFacts(const CapturedRequest& request, std::string_view kind,
                           std::string_view card_key);

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

// Counts links in free text: http:// and https:// URLs, www. host names
// and BBCode [url] tags, each link once ("[url=http://www.x]" is one).
std::uint32_t countLinks(std::string_view text);

// Returns the first 16 hex digits of HMAC-SHA256(`key`, `digits`).
std::string cardFingerprint(std::string_view digits, std::string_view key);

}  // namespace webtrap::probe
