// Turns one ftw stage input into the exact bytes sent on the socket, following
// the legacy Python ftw (1.x) rules that the CRS 3.3 test files were written
// for.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "replay/ftw_test.h"

namespace webtrap::replay {

struct BuiltRequest {
  std::string bytes;
  std::string error;  // non-empty when the input cannot be turned into a request
};

// Builds the request:
// - `encoded_request`: base64-decoded, then backslash escapes decoded as
//   Python's string_escape codec does (ftw does both).
// - `raw_request`: sent as written, in UTF-8. A YAML `\xNN` escape is the code
//   point U+00NN, so `\xac` goes out as the bytes C2 AC. The CRS test
//   944200-0FP expects that encoding.
// - otherwise `METHOD SP URI SP VERSION CRLF`, each header as `Name: value
//   CRLF` in file order, CRLF, then `data`. Unless stop_magic is true or
//   autocomplete_headers is false, a non-empty `data` gets a Content-Type of
//   application/x-www-form-urlencoded when none is given, is re-encoded as a
//   form when that is its Content-Type and it holds no %XX escape, and gets a
//   Content-Length when none is given. Header names compare without case.
BuiltRequest buildRequest(const FtwInput& input);

// Decodes backslash escapes like Python 2's string_escape codec: \\ \' \" \a
// \b \f \n \r \t \v, \xHH, one to three octal digits, and backslash-newline
// (removed). Any other backslash stays as written. Returns nullopt for a \x
// without two hex digits, which Python rejects too.
std::optional<std::string> decodePythonEscapes(std::string_view text);

// Re-encodes a form body the way Python's urlencode(parse_qsl(data)) does:
// pairs split on '&', pairs without '=' or with an empty value dropped, '+'
// read as space, names and values written with quote_plus. Returns the data
// unchanged when no pair survives.
std::string reencodeForm(std::string_view data);

}  // namespace webtrap::replay
