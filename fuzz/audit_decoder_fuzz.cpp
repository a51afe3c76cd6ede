// Fuzzes the audit record decoders with arbitrary bytes in each format. A
// decoded record must keep valid UTF-8 in `original` (its JSON syntax is
// checked only where the decoder reads, see audit_record.h), carry a
// UUID-shaped event id, dump to valid JSON, and decode the same way twice.
#include <cstdio>
#include <cstdlib>
#include <string>

#include <simdjson.h>

#include "collector/audit_decoder_internal.h"
#include "collector/audit_record.h"
#include "common/encoding.h"

namespace {

using webtrap::collector::DecodeOptions;
using webtrap::collector::DecodeResult;
using webtrap::collector::RecordFormat;

[[noreturn]] void fail(const char* what, std::string_view detail) {
  std::fprintf(stderr, "audit_decoder_fuzz: %s: %.*s\n", what, static_cast<int>(detail.size()),
               detail.data());
  std::abort();
}

bool isJson(std::string_view text) {
  static simdjson::dom::parser parser;
  simdjson::dom::element root;
  return parser.parse(text.data(), text.size()).get(root) == simdjson::SUCCESS;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) {
    return 0;
  }
  // The first byte picks the format and the zone, the rest is the record.
  static const RecordFormat kFormats[] = {RecordFormat::kAuto, RecordFormat::kWebtrap,
                                          RecordFormat::kModsec3, RecordFormat::kModsec2};
  static const webtrap::collector::TimeZone* kZones[] = {
      webtrap::collector::findTimeZone("UTC"),
      webtrap::collector::findTimeZone("Europe/Berlin")};
  DecodeOptions options;
  options.format = kFormats[data[0] % 4];
  options.time_zone = kZones[(data[0] >> 2) % 2];
  options.origin = "/var/log/fuzz.json";
  std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);

  DecodeResult first = webtrap::collector::decodeAuditRecord(input, options);
  webtrap::collector::decoder::parseModsec2Message(input);
  if (!first.ok) {
    if (first.error.empty()) {
      fail("rejected without an error", input);
    }
    return 0;
  }
  const auto& record = first.record;
  if (!webtrap::isValidUtf8(record.original)) {
    fail("original is not valid UTF-8", record.original);
  }
  if (record.event_id.size() != 36) {
    fail("event id is not UUID-shaped", record.event_id);
  }
  if (record.invalid_utf8 != !record.original_base64.empty()) {
    fail("original_base64 does not match invalid_utf8", input);
  }
  std::string dump = webtrap::collector::auditRecordToJson(record);
  if (!isJson(dump)) {
    fail("the JSON dump is not valid JSON", dump);
  }
  DecodeResult second = webtrap::collector::decodeAuditRecord(input, options);
  if (!second.ok || webtrap::collector::auditRecordToJson(second.record) != dump) {
    fail("decoding twice differs", input);
  }
  return 0;
}
