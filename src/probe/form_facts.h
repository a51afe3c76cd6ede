// Facts read from a POST to one of the persona's forms (webtrap.form in the
// record).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/card_numbers.h"
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
// key of the card fingerprints. Malformed content leaves the fields empty
// instead of throwing.
FormFacts extractFormFacts(const CapturedRequest& request, std::string_view kind,
                           std::string_view card_key);

// Counts links in free text: http:// and https:// URLs, www. host names
// and BBCode [url] tags, each link once ("[url=http://www.x]" is one).
std::uint32_t countLinks(std::string_view text);

}  // namespace webtrap::probe
