// Fuzzes record serialization. Arbitrary bytes go into every field of a
// request that a client controls. The record must parse as JSON, and each
// string must be either intact or restorable byte for byte from
// webtrap.encoded.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>

#include <simdjson.h>

#include "common/card_numbers.h"
#include "common/encoding.h"
#include "probe/record.h"

namespace {

using webtrap::probe::CapturedRequest;

[[noreturn]] void fail(const char* what, std::string_view detail) {
  std::fprintf(stderr, "record_fuzz: %s: %.*s\n", what, static_cast<int>(detail.size()),
               detail.data());
  std::abort();
}

// Returns `text` with card numbers masked, as the record writes every string.
std::string maskedText(std::string_view text) {
  std::optional<std::string> masked = webtrap::maskEveryCardNumber(text);
  return masked ? *masked : std::string(text);
}

// Returns the pointer-escaped form of a token, as the serializer builds it.
std::string pointerToken(std::string_view token) {
  std::string sanitized;
  webtrap::appendSanitizedUtf8(sanitized, maskedText(token));
  std::string escaped;
  for (char c : sanitized) {
    if (c == '~') {
      escaped += "~0";
    } else if (c == '/') {
      escaped += "~1";
    } else {
      escaped += c;
    }
  }
  return escaped;
}

// Checks that the string at `pointer` is `expected`, or, when `expected` is
// not valid UTF-8, that webtrap.encoded restores it exactly.
void checkRestores(const simdjson::dom::element& root, simdjson::dom::object encoded,
                   const std::string& pointer, std::string_view input) {
  // The record masks card numbers before it writes or encodes a string.
  const std::optional<std::string> masked = webtrap::maskEveryCardNumber(input);
  const std::string_view expected = masked ? std::string_view(*masked) : input;
  std::string_view written;
  if (root.at_pointer(pointer).get_string().get(written) != simdjson::SUCCESS) {
    fail("pointer does not resolve to a string", pointer);
  }
  std::string_view base64;
  bool listed = encoded.at_key(pointer).get_string().get(base64) == simdjson::SUCCESS;
  if (webtrap::isValidUtf8(expected)) {
    if (listed) {
      fail("valid string listed in encoded", pointer);
    }
    if (written != expected) {
      fail("valid string changed", pointer);
    }
    return;
  }
  if (!listed) {
    fail("invalid string missing from encoded", pointer);
  }
  auto bytes = webtrap::base64Decode(base64);
  if (!bytes || *bytes != expected) {
    fail("encoded bytes differ", pointer);
  }
  std::string sanitized;
  webtrap::appendSanitizedUtf8(sanitized, expected);
  if (written != sanitized) {
    fail("written string is not the sanitized bytes", pointer);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider input(data, size);

  CapturedRequest request;
  request.parsed = input.ConsumeBool();
  request.client = {input.ConsumeRandomLengthString(48), input.ConsumeIntegral<std::uint16_t>()};
  request.tls.enabled = input.ConsumeBool();
  request.tls.sni = input.ConsumeRandomLengthString(64);
  request.request_line = input.ConsumeRandomLengthString(256);
  request.method = input.ConsumeRandomLengthString(16);
  request.target = input.ConsumeRandomLengthString(256);
  request.http_version = input.ConsumeRandomLengthString(8);
  request.parse_error = input.ConsumeRandomLengthString(32);
  request.raw_head = input.ConsumeRandomLengthString(512);
  std::size_t header_count = input.ConsumeIntegralInRange<std::size_t>(0, 80);
  for (std::size_t i = 0; i < header_count && input.remaining_bytes() > 0; ++i) {
    std::string name = input.ConsumeRandomLengthString(24);
    std::string value = input.ConsumeRandomLengthString(128);
    request.headers.push_back({std::move(name), std::move(value)});
  }
  request.body = input.ConsumeRemainingBytesAsString();
  request.body_size = request.body.size();

  webtrap::probe::InspectionResult inspection;
  webtrap::probe::RuleMatch match;
  match.id = "942100";
  match.data = request.target;
  match.tags = {request.method};
  inspection.matches.push_back(match);

  webtrap::probe::RecordMeta meta;
  meta.event_id = "01938f5e-1c2a-7abc-8def-0123456789ab";
  std::string record = webtrap::probe::serializeRecord(
      request, webtrap::probe::PersonaResponse{}, webtrap::probe::RouteOutcome{}, inspection, meta);
  if (record.find('\n') != std::string::npos) {
    fail("record spans lines", record);
  }

  simdjson::dom::parser parser;
  simdjson::dom::element root;
  if (parser.parse(record).get(root) != simdjson::SUCCESS) {
    fail("record is not valid JSON", record);
  }
  simdjson::dom::object encoded;
  if (root.at_pointer("/webtrap/encoded").get_object().get(encoded) != simdjson::SUCCESS) {
    fail("webtrap.encoded missing", record);
  }

  checkRestores(root, encoded, "/transaction/request/uri", request.target);
  checkRestores(root, encoded, "/transaction/request/method",
                request.method.empty() ? std::string_view("-") : std::string_view(request.method));
  checkRestores(root, encoded, "/transaction/request/body", request.body);
  checkRestores(root, encoded, "/transaction/client_ip", request.client.address);
  checkRestores(root, encoded, "/transaction/messages/0/details/data", request.target);
  checkRestores(root, encoded, "/transaction/messages/0/details/tags/0", request.method);
  checkRestores(root, encoded, "/webtrap/request/line", request.request_line);
  checkRestores(root, encoded, "/webtrap/parse/error", request.parse_error);
  if (!request.parsed) {
    checkRestores(root, encoded, "/webtrap/request/raw_head", request.raw_head);
  }
  if (request.tls.enabled) {
    checkRestores(root, encoded, "/webtrap/tls/sni", request.tls.sni);
  }
  for (std::size_t i = 0; i < request.headers.size(); ++i) {
    std::string prefix = "/webtrap/request/headers/" + std::to_string(i);
    checkRestores(root, encoded, prefix + "/0", request.headers[i].name);
    checkRestores(root, encoded, prefix + "/1", request.headers[i].value);
  }

  // Each joined header value is the values of its name, in order.
  for (std::size_t i = 0; i < request.headers.size(); ++i) {
    std::string sanitized_name;
    webtrap::appendSanitizedUtf8(sanitized_name, maskedText(request.headers[i].name));
    std::string joined;
    bool seen_before = false;
    bool first = true;
    for (std::size_t j = 0; j < request.headers.size(); ++j) {
      std::string other;
      webtrap::appendSanitizedUtf8(other, maskedText(request.headers[j].name));
      if (!webtrap::equalsIgnoreCase(other, sanitized_name)) {
        continue;
      }
      if (j < i) {
        seen_before = true;
        break;
      }
      if (!first) {
        joined += ", ";
      }
      first = false;
      joined += request.headers[j].value;
    }
    if (!seen_before) {
      checkRestores(root, encoded,
                    "/transaction/request/headers/" + pointerToken(request.headers[i].name),
                    joined);
    }
  }

  // Every entry in the map is the base64 of bytes that are not UTF-8.
  for (auto field : encoded) {
    std::string_view base64;
    if (field.value.get_string().get(base64) != simdjson::SUCCESS) {
      fail("encoded value is not a string", field.key);
    }
    auto bytes = webtrap::base64Decode(base64);
    if (!bytes || webtrap::isValidUtf8(*bytes)) {
      fail("encoded entry is not base64 of invalid UTF-8", field.key);
    }
  }
  return 0;
}
