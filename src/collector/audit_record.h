// An audit record decoded from any producer the collector accepts: a webtrap
// probe, libmodsecurity v3 (JSON file or its HTTPS audit log type) or
// mod_security2 (JSON). Every later stage (enrichment, the ECS document, the
// outputs) reads this one shape, never the producer's own layout.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/request_facts.h"

namespace webtrap {
class JsonWriter;
}

namespace webtrap::collector {

enum class RecordFormat {
  kAuto,      // decoder picks from the record's shape
  kWebtrap,   // probe record: libmodsecurity v3 layout plus the `webtrap` object
  kModsec3,   // libmodsecurity v3 JSON audit record
  kModsec2,   // mod_security2 JSON audit record (a different layout)
};

std::string_view formatName(RecordFormat format);  // "webtrap", "modsec3", ...

struct HeaderField {
  std::string name;   // as sent, case kept
  std::string value;
};

struct RuleMessage {
  std::string rule_id;   // "942100"; empty when the producer gave none
  std::string message;   // "SQL Injection Attack Detected via libinjection"
  // What the operator matched: details.match (libmodsecurity v3), or the text
  // before the first [key "value"] field (mod_security2).
  std::string match;
  std::string data;      // matched data
  std::string severity;  // as the producer wrote it: "2" or "CRITICAL"
  std::string file;
  std::string line;
  std::string version;   // rule set version, such as "OWASP_CRS/3.3.4"
  std::vector<std::string> tags;
};

struct AuditRecord {
  RecordFormat format = RecordFormat::kAuto;

  // Globally unique id, the deduplication key and the Elasticsearch _id. For
  // webtrap records it is webtrap.event_id. For ModSecurity records, whose own
  // ids are not globally unique, it is derived from the record's time stamp,
  // bytes and origin, so reading the same record twice gives the same id.
  std::string event_id;
  std::string transaction_id;  // the producer's own id
  std::string server_id;       // transaction.server_id (libmodsecurity v3 and webtrap)

  std::int64_t timestamp_us = 0;  // UTC, microseconds since the epoch

  std::string client_ip;
  std::uint16_t client_port = 0;
  std::string server_ip;
  std::uint16_t server_port = 0;

  std::string request_line;  // as received, when the producer wrote it (webtrap, mod_security2)
  std::string method;
  std::string uri;           // as requested: path and query
  std::string http_version;  // "1.1"
  std::string host;
  std::vector<HeaderField> request_headers;   // wire order, duplicates kept
  std::string request_body;                   // bytes as decoded
  std::optional<std::uint64_t> request_body_bytes;  // full size when known

  int response_status = 0;
  std::vector<HeaderField> response_headers;

  std::vector<RuleMessage> messages;

  std::string producer_version;  // "ModSecurity v3.0.9 (Linux)"
  // "ModSecurity-nginx v1.0.3"; for mod_security2, which names no connector,
  // the server banner from audit_data.server ("Apache/2.4.62 (Debian)").
  std::string connector;
  std::string secrules_engine;   // "DetectionOnly"
  std::vector<std::string> components;  // rule sets, such as "OWASP_CRS/3.3.4"

  // What the probe adds (empty for ModSecurity records).
  std::string sensor_id;
  std::string sensor_group;
  std::string persona;
  std::vector<std::string> bait_hits;     // webtrap.baits[].kind, in order
  std::vector<std::string> bait_details;  // webtrap.baits[].detail, same order
  std::vector<std::string> tags;
  std::string persona_product;  // webtrap.persona.product
  std::string listener;         // webtrap.listener.name
  bool bait_listener = false;   // webtrap.listener.bait
  std::vector<std::string> issued_tokens;  // webtrap.issued_tokens
  std::string inspection_status;           // webtrap.inspection.status
  bool inspection_recovered = false;       // webtrap.inspection.recovered
  std::optional<std::int64_t> anomaly_score;  // webtrap.inspection.anomaly_score
  // webtrap.inspection.details_cut: what the probe cut from the rule
  // messages to bound the record; absent when nothing was cut.
  struct DetailsCut {
    std::uint64_t truncated_strings = 0;
    std::uint64_t reduced_matches = 0;
    std::uint64_t omitted_matches = 0;
  };
  std::optional<DetailsCut> details_cut;
  std::string request_body_sha256;            // webtrap.request.body_sha256
  bool request_body_truncated = false;        // webtrap.request.body_truncated
  std::vector<OatTag> oat_tags;  // webtrap.oat: per-request tags from the probe
  // True when the record has webtrap.oat, even as an empty list: the probe
  // tagged it, so the collector does not tag it again from its rule ids.
  bool oat_tagged = false;
  FormFacts form;                // webtrap.form; kind is empty when absent

  // The record as received, as valid UTF-8 JSON text: kept whole in the
  // stored document (event.original), so nothing the producer wrote is lost.
  // NOTE: the decoder checks the JSON syntax of every value it reads. For
  // speed, it skips the fields it does not use (such as mod_security2's
  // error_messages) without checking them, so a syntax error there stays in
  // `original` instead of rejecting the record. Full checking cost 35% of
  // the decoding rate.
  std::string original;

  // True when the input held bytes that were not well-formed UTF-8. The
  // decoder replaced each such byte with U+FFFD before parsing (JSON text must
  // be Unicode), so `original` and the string fields contain the replaced
  // text, and `original_base64` contains the exact input bytes (with card
  // numbers masked, as everywhere in a ModSecurity record).
  bool invalid_utf8 = false;
  std::string original_base64;  // standard base64 of the input; empty when invalid_utf8 is false
};

struct DecodeResult {
  bool ok = false;
  AuditRecord record;
  std::string error;  // why the record was rejected, naming the field
  // True when record.original was left empty because it is the input
  // exactly (see DecodeOptions::copy_unchanged_original).
  bool original_is_input = false;
};

// Decodes one JSON audit record. `origin` names where it came from (a file
// path, a sensor id) and takes part in derived event ids. Never throws on bad
// input: a record that cannot be decoded gives ok = false and an error.
// libmodsecurity v3 time stamps, which carry no zone, are read in the
// collector's local time zone (TZ, else /etc/localtime, else UTC).
// In every record that is not a webtrap probe record, each Luhn-valid card
// number inside a JSON string is masked before decoding (first 6 and last 4
// digits kept), so no field, `original`, `original_base64`, the derived
// event id or the error text contains the full number.
DecodeResult decodeAuditRecord(std::string_view json, RecordFormat format,
                               std::string_view origin);

// A time zone from the IANA database (/usr/share/zoneinfo), opaque here so
// that users of this header need not include the date library.
class TimeZone;

// Returns the zone named `name` ("Europe/Berlin", "UTC"), or nullptr when the
// system time zone database has no such zone.
const TimeZone* findTimeZone(std::string_view name);

// Returns the collector's local time zone: the TZ variable when it names a
// zone, else /etc/localtime, else UTC.
const TimeZone* localTimeZone();

// The input that delivered the decoded text. It chooses the advice in error
// messages, because each input offers the sender different fixes.
enum class RecordInput {
  kLine,             // a line of a file input or of `webtrap decode`, both with a format setting
  kProbeBatch,       // a line of a POST /v1/records batch, which takes probe records only
  kModsecurityPost,  // the body of one POST /v1/modsecurity request
};

struct DecodeOptions {
  RecordFormat format = RecordFormat::kAuto;
  RecordInput input = RecordInput::kLine;
  std::string_view origin;
  // Zone of libmodsecurity v3 time stamps; nullptr means localTimeZone().
  const TimeZone* time_zone = nullptr;
  // Bytes after the end of `json` that the decoder may read but that are not
  // part of the record, such as the next lines of a batch. With at least
  // simdjson::SIMDJSON_PADDING (64) of them, the record is parsed in place
  // instead of being copied into a padded buffer first.
  std::size_t readable_after = 0;
  // When false, the decoder leaves AuditRecord::original empty if it would
  // be `json` byte for byte, and sets DecodeResult::original_is_input. The
  // ingest path sets it to false because it keeps the batch's lines itself,
  // and copying and comparing every line cost time.
  bool copy_unchanged_original = true;
};

DecodeResult decodeAuditRecord(std::string_view json, const DecodeOptions& options);

// Parses "auto", "webtrap", "modsec3" or "modsec2"; nullopt for anything else.
std::optional<RecordFormat> parseRecordFormat(std::string_view name);

// Returns the record as one JSON object (no trailing newline), every field of
// the struct under its own name: what `webtrap decode` prints.
std::string auditRecordToJson(const AuditRecord& record);

// Writes `cut` as an object of its three counts, the layout of the probe
// record's webtrap.inspection.details_cut.
void writeDetailsCut(JsonWriter& json, const AuditRecord::DetailsCut& cut);

}  // namespace webtrap::collector
