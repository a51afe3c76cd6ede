// auditRecordToJson: a plain dump of AuditRecord, one key per struct field.
#include "collector/audit_record.h"
#include "common/json_writer.h"
#include "common/request_facts_json.h"

namespace webtrap::collector {

namespace {

void writeHeaders(JsonWriter& json, std::string_view name,
                  const std::vector<HeaderField>& headers) {
  // A list of [name, value] pairs, because names repeat.
  json.key(name);
  json.beginArray();
  for (const HeaderField& header : headers) {
    json.beginArray();
    json.string(header.name);
    json.string(header.value);
    json.endArray();
  }
  json.endArray();
}

void writeStrings(JsonWriter& json, std::string_view name, const std::vector<std::string>& items) {
  json.key(name);
  json.beginArray();
  for (const std::string& item : items) {
    json.string(item);
  }
  json.endArray();
}

void writeMessages(JsonWriter& json, const std::vector<RuleMessage>& messages) {
  json.key("messages");
  json.beginArray();
  for (const RuleMessage& message : messages) {
    json.beginObject();
    json.member("rule_id", message.rule_id);
    json.member("message", message.message);
    json.member("match", message.match);
    json.member("data", message.data);
    json.member("severity", message.severity);
    json.member("file", message.file);
    json.member("line", message.line);
    json.member("version", message.version);
    writeStrings(json, "tags", message.tags);
    json.endObject();
  }
  json.endArray();
}

}  // namespace

void writeDetailsCut(JsonWriter& json, const AuditRecord::DetailsCut& cut) {
  json.beginObject();
  json.key("truncated_strings");
  json.unsignedInteger(cut.truncated_strings);
  json.key("reduced_matches");
  json.unsignedInteger(cut.reduced_matches);
  json.key("omitted_matches");
  json.unsignedInteger(cut.omitted_matches);
  json.endObject();
}

std::string auditRecordToJson(const AuditRecord& record) {
  std::string out;
  out.reserve(record.original.size() * 2 + 1024);
  JsonWriter json(out);
  json.beginObject();
  json.member("format", formatName(record.format));
  json.member("event_id", record.event_id);
  json.member("transaction_id", record.transaction_id);
  json.member("server_id", record.server_id);
  json.member("timestamp_us", record.timestamp_us);
  json.member("client_ip", record.client_ip);
  json.member("client_port", static_cast<std::int64_t>(record.client_port));
  json.member("server_ip", record.server_ip);
  json.member("server_port", static_cast<std::int64_t>(record.server_port));
  json.member("request_line", record.request_line);
  json.member("method", record.method);
  json.member("uri", record.uri);
  json.member("http_version", record.http_version);
  json.member("host", record.host);
  writeHeaders(json, "request_headers", record.request_headers);
  json.member("request_body", record.request_body);
  json.key("request_body_bytes");
  if (record.request_body_bytes) {
    json.unsignedInteger(*record.request_body_bytes);
  } else {
    json.null();
  }
  json.member("request_body_sha256", record.request_body_sha256);
  json.member("request_body_truncated", record.request_body_truncated);
  json.member("response_status", static_cast<std::int64_t>(record.response_status));
  writeHeaders(json, "response_headers", record.response_headers);
  writeMessages(json, record.messages);
  json.member("producer_version", record.producer_version);
  json.member("connector", record.connector);
  json.member("secrules_engine", record.secrules_engine);
  writeStrings(json, "components", record.components);
  json.member("sensor_id", record.sensor_id);
  json.member("sensor_group", record.sensor_group);
  json.member("persona", record.persona);
  json.member("persona_product", record.persona_product);
  json.member("listener", record.listener);
  json.member("bait_listener", record.bait_listener);
  writeStrings(json, "bait_hits", record.bait_hits);
  writeStrings(json, "bait_details", record.bait_details);
  writeStrings(json, "issued_tokens", record.issued_tokens);
  writeStrings(json, "tags", record.tags);
  json.key("oat_tags");
  writeOatTags(json, record.oat_tags);
  json.key("form");
  writeFormFacts(json, record.form);
  json.member("inspection_status", record.inspection_status);
  json.key("anomaly_score");
  if (record.anomaly_score) {
    json.integer(*record.anomaly_score);
  } else {
    json.null();
  }
  json.key("details_cut");
  if (record.details_cut) {
    writeDetailsCut(json, *record.details_cut);
  } else {
    json.null();
  }
  json.member("invalid_utf8", record.invalid_utf8);
  json.member("original_base64", record.original_base64);
  json.member("original", record.original);
  json.endObject();
  return out;
}

}  // namespace webtrap::collector
