// Shared pieces of the audit record decoders (one file per producer layout):
// the error type and typed readers over simdjson On-Demand values that name
// the field in every error.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <simdjson.h>

#include "collector/audit_record.h"
#include "collector/audit_time.h"

namespace webtrap::collector::decoder {

namespace ondemand = simdjson::ondemand;

// Thrown inside the decoder for a record that cannot be decoded; the entry
// point turns it into DecodeResult::error. The message starts with the field.
struct DecodeFailure {
  std::string message;
};

[[noreturn]] void fail(std::string_view field, std::string_view problem);

// Fails with the simdjson error text, unless `code` is SUCCESS.
void check(simdjson::error_code code, std::string_view field);

// Joins a parent field and a child name: "transaction" + "client_ip".
std::string childField(std::string_view parent, std::string_view name);
// Names an array element: "transaction.messages" + 2 gives
// "transaction.messages[2]". setIndexField() writes it into `out`, which
// keeps its capacity when reused.
std::string indexField(std::string_view parent, std::size_t index);
void setIndexField(std::string& out, std::string_view parent, std::size_t index);

ondemand::object readObject(ondemand::value value, std::string_view field);
ondemand::array readArray(ondemand::value value, std::string_view field);

// A JSON string.
std::string readString(ondemand::value value, std::string_view field);
void readStringInto(ondemand::value value, std::string_view field, std::string& out);

// Reads a well-formed string into `out` and returns true. Returns false for
// anything else, so the caller can build the field name (which costs an
// allocation) only on that slow path and read the value again with a reader
// that reports the error.
bool readPlainString(ondemand::value& value, std::string& out);

// A string, number or boolean as text (numbers as written); null as "".
std::string readScalarText(ondemand::value value, std::string_view field);

// A port: a JSON number or a string of digits, 0 to 65535.
std::uint16_t readPort(ondemand::value value, std::string_view field);

// An HTTP status: a JSON number or a string of digits, 0 to 999.
int readStatus(ondemand::value value, std::string_view field);

// A non-negative integer: a JSON number or a string of digits.
std::uint64_t readCount(ondemand::value value, std::string_view field);

bool readBool(ondemand::value value, std::string_view field);

// The HTTP version as text without "HTTP/": a number (1.1), a string ("1.1"
// or "HTTP/1.1") or null (empty).
std::string readHttpVersion(ondemand::value value, std::string_view field);

// Header fields of an object, in document order, repeated names kept. Values
// that are not strings (numbers, booleans) are kept as written.
void readHeaderObject(ondemand::value value, std::string_view field,
                      std::vector<HeaderField>& out);

// An array of strings.
void readStringArray(ondemand::value value, std::string_view field,
                     std::vector<std::string>& out);

// Calls `handle(key, value)` for each member of the object at `value`, in
// document order; repeated keys are each passed.
template <class Handler>
void forEachMember(ondemand::value value, std::string_view field, Handler&& handle) {
  ondemand::object object = readObject(value, field);
  for (auto entry : object) {
    ondemand::field member;
    check(std::move(entry).get(member), field);
    std::string_view key;
    check(member.unescaped_key().get(key), field);
    handle(key, member.value());
  }
}

// Returns the value of the first header named `name`, ASCII case-insensitive.
std::string_view findHeader(const std::vector<HeaderField>& headers, std::string_view name);

// The libmodsecurity v3 `transaction` object (also the first half of a
// webtrap record). Time stamps without a zone are read in `zone`.
void decodeModsec3Transaction(ondemand::value transaction, const TimeZone& zone,
                              AuditRecord& record);

// What the webtrap object adds; applied after the whole record was read,
// because the exact header list and the encoded map override fields of the
// transaction object that precedes them.
struct WebtrapExtras {
  bool present = false;
  bool has_headers = false;
  std::vector<HeaderField> headers;
  bool has_timestamp = false;
  std::vector<std::pair<std::string, std::string>> encoded;  // JSON pointer, base64
};

void decodeWebtrapObject(ondemand::value webtrap, AuditRecord& record, WebtrapExtras& extras);
void applyWebtrapExtras(WebtrapExtras& extras, AuditRecord& record);

// The whole mod_security2 record.
void decodeModsec2Record(ondemand::object root, AuditRecord& record);

// Splits one mod_security2 message line ("Warning. Pattern match ... [id
// \"942100\"] [msg \"...\"] ...") into its fields.
RuleMessage parseModsec2Message(std::string_view text);

}  // namespace webtrap::collector::decoder
