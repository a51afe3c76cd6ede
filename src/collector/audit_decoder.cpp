// decodeAuditRecord: input repair (invalid UTF-8, the stray quote of
// libmodsecurity 3.0.x), layout detection, derived event ids, and dispatch
// to the decoder of each producer layout.
#include <algorithm>

#include <fmt/format.h>

#include "collector/audit_decoder_internal.h"
#include "collector/card_masking.h"
#include "common/card_numbers.h"
#include "common/encoding.h"

namespace webtrap::collector {

namespace {

using decoder::DecodeFailure;
using decoder::check;
using decoder::fail;
using decoder::ondemand::document;
using decoder::ondemand::field;
using decoder::ondemand::object;

std::string_view trimRecord(std::string_view text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ' ||
                           text.back() == '\t')) {
    text.remove_suffix(1);
  }
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t' ||
                           text.front() == '\n' || text.front() == '\r')) {
    text.remove_prefix(1);
  }
  // A UTF-8 byte order mark, which some editors put at the start of a file.
  if (text.substr(0, 3) == "\xEF\xBB\xBF") {
    text.remove_prefix(3);
  }
  return text;
}

// The parser and its input buffer are reused by each thread, so decoding a
// record allocates only what the record itself keeps.
struct ThreadState {
  decoder::ondemand::parser parser;
  std::string buffer;  // the record plus simdjson's padding
};

ThreadState& threadState() {
  thread_local ThreadState state;
  return state;
}

// Returns a view of `text` that simdjson can read. simdjson reads up to
// SIMDJSON_PADDING bytes past the end of its input, whatever they contain, so
// `text` is read in place when at least that many bytes after it may be read
// (`readable_after`), and copied into the padded buffer otherwise.
simdjson::padded_string_view padText(std::string& buffer, std::string_view text,
                                     std::size_t readable_after) {
  if (readable_after >= simdjson::SIMDJSON_PADDING) {
    return simdjson::padded_string_view(text.data(), text.size(), text.size() + readable_after);
  }
  buffer.reserve(text.size() + simdjson::SIMDJSON_PADDING);
  buffer.assign(text);
  return simdjson::padded_string_view(buffer.data(), buffer.size(), buffer.capacity());
}

// libmodsecurity 3.0.x writes each component with a trailing quote. Most
// builds escape it ("OWASP_CRS/3.3.4\""), which is valid JSON and is dealt
// with by the v3 decoder; a build that does not escape it writes
// "OWASP_CRS/3.3.4"" and so invalid JSON. This removes that unescaped extra
// quote from the elements of "components" and returns whether it did.
bool removeStrayComponentQuotes(std::string& text) {
  std::size_t key = text.find("\"components\"");
  if (key == std::string::npos) {
    return false;
  }
  std::size_t pos = key + 12;
  auto skipSpace = [&]() {
    while (pos < text.size() && (text[pos] == ' ' || text[pos] == '\t')) {
      ++pos;
    }
  };
  skipSpace();
  if (pos >= text.size() || text[pos] != ':') {
    return false;
  }
  ++pos;
  skipSpace();
  if (pos >= text.size() || text[pos] != '[') {
    return false;
  }
  ++pos;
  bool changed = false;
  while (true) {
    skipSpace();
    if (pos >= text.size() || text[pos] != '"') {
      return changed;
    }
    // Find the closing quote of this element, stepping over escapes.
    ++pos;
    while (pos < text.size() && text[pos] != '"') {
      pos += text[pos] == '\\' ? 2 : 1;
    }
    if (pos >= text.size()) {
      return changed;
    }
    ++pos;
    if (pos + 1 < text.size() && text[pos] == '"' && (text[pos + 1] == ']' || text[pos + 1] == ',')) {
      text.erase(pos, 1);
      changed = true;
    }
    skipSpace();
    if (pos >= text.size() || text[pos] != ',') {
      return changed;
    }
    ++pos;
  }
}

// Returns the record's top-level object. A record that is valid JSON of
// another type, or no JSON at all, is rejected with an error that describes
// what a record must be.
object rootObject(document& doc) {
  object root;
  const simdjson::error_code code = doc.get_object().get(root);
  if (code == simdjson::INCORRECT_TYPE) {
    fail("record",
         "invalid JSON or not a JSON object; an audit record is one JSON object, "
         "such as {\"transaction\": {...}}");
  }
  check(code, "record");
  return root;
}

// Looks at the record's keys to tell the layouts apart: webtrap records have
// a `webtrap` object, mod_security2 records `audit_data` and a transaction
// with `time`, libmodsecurity v3 records a transaction with `time_stamp`.
RecordFormat detectFormat(document& doc) {
  object root = rootObject(doc);
  RecordFormat transaction_shape = RecordFormat::kAuto;
  for (auto entry : root) {
    field member;
    check(std::move(entry).get(member), "record");
    std::string_view key;
    check(member.unescaped_key().get(key), "record");
    if (key == "webtrap") {
      return RecordFormat::kWebtrap;
    }
    if (key == "audit_data") {
      return RecordFormat::kModsec2;
    }
    if (key != "transaction" || transaction_shape != RecordFormat::kAuto) {
      continue;
    }
    object transaction;
    if (member.value().get_object().get(transaction) != simdjson::SUCCESS) {
      continue;  // the decoder reports the wrong type
    }
    for (auto inner : transaction) {
      field inner_member;
      check(std::move(inner).get(inner_member), "transaction");
      std::string_view name;
      check(inner_member.unescaped_key().get(name), "transaction");
      if (name == "time_stamp" || name == "client_ip" || name == "unique_id") {
        transaction_shape = RecordFormat::kModsec3;
        break;
      }
      if (name == "time" || name == "transaction_id" || name == "remote_address") {
        transaction_shape = RecordFormat::kModsec2;
        break;
      }
    }
  }
  if (transaction_shape == RecordFormat::kAuto) {
    fail("transaction",
         "cannot tell the record's layout: expected transaction.time_stamp (libmodsecurity v3), "
         "transaction.time (mod_security2) or a webtrap object");
  }
  return transaction_shape;
}

const TimeZone& utcZone() { return TimeZone::utc(); }

// Returns the reason for a record without the webtrap object that had to
// have one, with the fix open to the sender on `input`.
std::string missingWebtrapMessage(RecordInput input) {
  if (input == RecordInput::kProbeBatch) {
    return "missing; the record is not a webtrap probe record, and POST /v1/records takes probe "
           "records only. Send ModSecurity records to POST /v1/modsecurity, one per request, "
           "or to a file input (inputs.files)";
  }
  return "missing; the record is not a webtrap probe record (read it as modsec3 or auto)";
}

// Returns the reason for text after the record's JSON object, with the
// framing that `input` expects.
std::string trailingTextMessage(RecordInput input) {
  if (input == RecordInput::kModsecurityPost) {
    return "unexpected text after the JSON object; POST /v1/modsecurity takes one record per "
           "request. Send each record in a request of its own, or write them to a file that a "
           "file input (inputs.files) reads. POST /v1/records takes batches of probe records "
           "only";
  }
  return "unexpected text after the JSON object; give one record per line";
}

// Decodes the libmodsecurity v3 layout. `mode` kWebtrap requires the webtrap
// object, kModsec3 ignores it, and kAuto reads it when it is there.
void decodeV3Layout(document& doc, RecordFormat mode, RecordInput input, const TimeZone& zone,
                    AuditRecord& record) {
  object root = rootObject(doc);
  decoder::WebtrapExtras extras;
  bool has_transaction = false;
  for (auto entry : root) {
    field member;
    check(std::move(entry).get(member), "record");
    std::string_view key;
    check(member.unescaped_key().get(key), "record");
    if (key == "transaction") {
      // A probe writes time_stamp in UTC, and webtrap.@timestamp wins anyway.
      decoder::decodeModsec3Transaction(member.value(),
                                        mode == RecordFormat::kWebtrap ? utcZone() : zone,
                                        record);
      has_transaction = true;
    } else if (key == "webtrap" && mode != RecordFormat::kModsec3) {
      decoder::decodeWebtrapObject(member.value(), record, extras);
    }
  }
  if (!has_transaction) {
    fail("transaction", "missing; every audit record has a transaction object");
  }
  if (mode == RecordFormat::kWebtrap && !extras.present) {
    fail("webtrap", missingWebtrapMessage(input));
  }
  record.format = extras.present ? RecordFormat::kWebtrap : RecordFormat::kModsec3;
  if (extras.present) {
    decoder::applyWebtrapExtras(extras, record);
  }
}

// Tells the layout from the first key of `transaction` when the record
// starts the way libmodsecurity, mod_security2 and the probe write it, which
// saves the detection pass over the whole text. Returns kModsec3 for the v3
// layout (with or without a webtrap object), kModsec2, or kAuto when unsure.
RecordFormat quickLayout(std::string_view text) {
  constexpr std::string_view kStart = R"({"transaction":{")";
  if (!text.starts_with(kStart)) {
    return RecordFormat::kAuto;
  }
  std::string_view first_key = text.substr(kStart.size());
  if (first_key.starts_with(R"(client_ip")")) {
    return RecordFormat::kModsec3;
  }
  if (first_key.starts_with(R"(time")")) {
    return RecordFormat::kModsec2;
  }
  return RecordFormat::kAuto;
}

// Returns a UUID-shaped id: the record's time stamp in the first 48 bits,
// as Unix milliseconds like UUIDv7, then bits of SHA-256 over the origin and
// the record's bytes. Version 8 (RFC 9562 custom) and variant 10 keep it
// apart from the UUIDv7 event ids of probe records. The time prefix keeps the
// store's event_id index growing at its end: with hash-only ids, each commit
// of 500 records rewrote about 500 index pages once the store held a million
// events.
std::string derivedEventId(std::string_view origin, std::string_view bytes,
                           std::int64_t timestamp_us) {
  thread_local Sha256 hasher;
  hasher.update(origin);
  hasher.update(std::string_view("\n", 1));
  hasher.update(bytes);
  std::string hex = hasher.finalHex();
  constexpr std::uint64_t kMaxMs = (std::uint64_t{1} << 48) - 1;
  std::uint64_t ms = timestamp_us > 0 ? std::min<std::uint64_t>(timestamp_us / 1000, kMaxMs) : 0;
  std::string prefix = fmt::format("{:012x}", ms);
  hex.replace(0, 12, prefix);
  hex[12] = '8';
  hex[16] = "89ab"[hexDigitValue(hex[16]) & 0x3];
  std::string id;
  id.reserve(36);
  id.append(hex, 0, 8).push_back('-');
  id.append(hex, 8, 4).push_back('-');
  id.append(hex, 12, 4).push_back('-');
  id.append(hex, 16, 4).push_back('-');
  id.append(hex, 20, 12);
  return id;
}

void decodeText(std::string_view text, std::size_t readable_after, const DecodeOptions& options,
                ThreadState& state, AuditRecord& record) {
  document doc;
  check(state.parser.iterate(padText(state.buffer, text, readable_after)).get(doc), "record");
  // The v3 layout in kAuto mode reads a webtrap object when it finds one.
  RecordFormat layout = options.format;
  if (layout == RecordFormat::kAuto) {
    layout = quickLayout(text);
    if (layout == RecordFormat::kAuto) {
      layout = detectFormat(doc);
      doc.rewind();
    }
  }
  if (layout == RecordFormat::kModsec2) {
    object root = rootObject(doc);
    decoder::decodeModsec2Record(root, record);
    record.format = RecordFormat::kModsec2;
  } else {
    const TimeZone* zone = options.time_zone != nullptr ? options.time_zone : localTimeZone();
    RecordFormat mode = options.format == RecordFormat::kAuto && layout == RecordFormat::kModsec3
                            ? RecordFormat::kAuto
                            : layout;
    decodeV3Layout(doc, mode, options.input, *zone, record);
  }
  // current_location() fails with OUT_OF_BOUNDS once the whole text is read.
  const char* rest = nullptr;
  if (doc.current_location().get(rest) == simdjson::SUCCESS) {
    fail("record", trailingTextMessage(options.input));
  }
}

}  // namespace

std::string_view formatName(RecordFormat format) {
  switch (format) {
    case RecordFormat::kAuto:
      return "auto";
    case RecordFormat::kWebtrap:
      return "webtrap";
    case RecordFormat::kModsec3:
      return "modsec3";
    case RecordFormat::kModsec2:
      return "modsec2";
  }
  return "unknown";
}

std::optional<RecordFormat> parseRecordFormat(std::string_view name) {
  for (RecordFormat format : {RecordFormat::kAuto, RecordFormat::kWebtrap, RecordFormat::kModsec3,
                              RecordFormat::kModsec2}) {
    if (formatName(format) == name) {
      return format;
    }
  }
  return std::nullopt;
}

DecodeResult decodeAuditRecord(std::string_view json, RecordFormat format,
                               std::string_view origin) {
  DecodeOptions options;
  options.format = format;
  options.origin = origin;
  return decodeAuditRecord(json, options);
}

DecodeResult decodeAuditRecord(std::string_view json, const DecodeOptions& options) {
  DecodeResult result;
  std::string_view raw = trimRecord(json);
  if (raw.empty()) {
    result.error = "record: empty; expected one JSON object";
    return result;
  }
  ThreadState& state = threadState();
  AuditRecord& record = result.record;

  // simdjson accepts only valid UTF-8, but real audit logs copy request bytes
  // as they came. Each invalid byte becomes U+FFFD, and the exact input is
  // kept in original_base64.
  std::string repaired;
  std::string_view text = raw;
  // Bytes after `raw` that the parser may read: what trimRecord cut off and
  // what the caller promised. A repaired copy gets the padded buffer instead.
  std::size_t readable_after =
      static_cast<std::size_t>((json.data() + json.size()) - (raw.data() + raw.size())) +
      options.readable_after;
  if (!simdjson::validate_utf8(raw.data(), raw.size())) {
    appendSanitizedUtf8(repaired, raw);
    text = repaired;
    readable_after = 0;
    record.invalid_utf8 = true;
  }

  // The input bytes with card numbers masked, when they contain any.
  std::optional<std::string> masked_raw;
  bool raw_checked = false;
  try {
    try {
      decodeText(text, readable_after, options, state, record);
    } catch (const DecodeFailure&) {
      std::string fixed(text);
      if (!removeStrayComponentQuotes(fixed)) {
        throw;
      }
      record = AuditRecord();
      record.invalid_utf8 = !repaired.empty();
      repaired = std::move(fixed);
      text = repaired;
      decodeText(text, 0, options, state, record);
    }
    // A probe masks card numbers before it writes a record, so only records
    // of other producers are scanned. The masked text is decoded again, so
    // every field of the record comes from masked bytes.
    if (record.format != RecordFormat::kWebtrap) {
      raw_checked = text.data() == raw.data() && text.size() == raw.size();
      if (std::optional<std::string> masked = maskCardNumbersInJson(text)) {
        if (raw_checked) {
          masked_raw = *masked;
        }
        bool invalid_utf8 = record.invalid_utf8;
        record = AuditRecord();
        record.invalid_utf8 = invalid_utf8;
        repaired = std::move(*masked);
        text = repaired;
        decodeText(text, 0, options, state, record);
      }
    }
  } catch (const DecodeFailure& failure) {
    // Errors quote values, and the ingest path logs them.
    std::optional<std::string> masked = maskCardNumbers(failure.message);
    result.error = masked ? std::move(*masked) : failure.message;
    return result;
  }

  if (record.format != RecordFormat::kWebtrap) {
    // The event id and original_base64 come from the masked input bytes:
    // with a hash over the full number, anyone who has the rest of
    // the record could test the 10^5 numbers that fit the kept digits.
    if (!raw_checked) {
      masked_raw = maskCardNumbersInJson(raw);
    }
    std::string_view input = masked_raw ? std::string_view(*masked_raw) : raw;
    record.event_id = derivedEventId(options.origin, input, record.timestamp_us);
    if (record.invalid_utf8) {
      record.original_base64 = base64Encode(input);
    }
  } else if (record.invalid_utf8) {
    record.original_base64 = base64Encode(raw);
  }
  if (!options.copy_unchanged_original && text.data() == json.data() &&
      text.size() == json.size()) {
    result.original_is_input = true;
  } else {
    record.original.assign(text);
  }
  result.ok = true;
  return result;
}

}  // namespace webtrap::collector
