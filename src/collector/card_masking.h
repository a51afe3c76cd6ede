// Masking of payment card numbers in records the collector takes in from
// ModSecurity servers, which copy request bytes into their audit logs as
// they came. Probe records arrive masked already.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace webtrap::collector {

// Returns `json` with every card number inside a JSON string masked as
// maskCardNumbers() does ("411111******1111"), or nullopt when
// nothing was masked. The result has the same length as `json`, and a valid
// JSON text stays valid: a bare JSON number is never changed, because
// masking its digits would break the syntax. Text that is not valid JSON is
// masked too. There, a run of digits outside any string is kept only when
// the bytes around it are those of a JSON number (':', ',', '[' before it,
// ',', '}', ']' after it), so a stray unescaped quote, which flips what
// counts as inside a string, cannot hide a card from the mask.
// Digits written as percent escapes ("%34") count as digits, and a masked
// escape becomes "%2A".
// NOTE: double escapes ("%2534"), JSON escapes ("\u0034") and full-width
// digits are not found, although a client can send them.
// maskEveryCardNumber reads them, but it also masks about 4 in 5
// libmodsecurity unique_ids ("17964007833.886302"), because it joins digit
// groups across a dot.
std::optional<std::string> maskCardNumbersInJson(std::string_view json);

}  // namespace webtrap::collector
