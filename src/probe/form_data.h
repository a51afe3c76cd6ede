// Decoding of the request parts that baits and personas read: form fields,
// cookies, Basic credentials. Each function accepts any bytes: malformed input
// gives empty or partial results, not an exception.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "probe/capture.h"

namespace webtrap::probe {

// Decodes application/x-www-form-urlencoded text: '+' becomes a space and
// %XX a byte. A '%' not followed by two hex digits is kept as it is.
std::string formDecode(std::string_view text);

struct FormField {
  std::string name;
  std::string value;
};

// Returns the values of field `name` from the query string and from a
// urlencoded, multipart/form-data or JSON (top-level member) body, in that
// order. JSON strings come out unquoted, other JSON values as JSON text.
std::vector<std::string> formFieldValues(const CapturedRequest& request, std::string_view name);

// Returns every field of the query string and the body, decoded as
// formFieldValues decodes them, in the order sent.
std::vector<FormField> formFields(const CapturedRequest& request);

// Returns the values of cookie `name` over every Cookie header.
std::vector<std::string> cookieValues(const std::vector<HeaderField>& headers,
                                      std::string_view name);

// Decodes an `Authorization: Basic` value into user and password. The
// password is empty when the decoded text has no ':'. Returns nullopt for
// other schemes and invalid base64.
std::optional<std::pair<std::string, std::string>> decodeBasicCredentials(std::string_view value);

// Escapes &, <, >, " and ' for HTML text and attribute values.
std::string htmlEscape(std::string_view text);

}  // namespace webtrap::probe
