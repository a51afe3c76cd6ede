#include "collector/ecs.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstring>
#include <optional>
#include <string_view>
#include <unordered_set>
#include <vector>

#include <fmt/format.h>

#include "collector/ecs_form.h"
#include "collector/ecs_threat.h"
#include "common/encoding.h"
#include "common/json_writer.h"

namespace webtrap::collector {

namespace {

// The member key that spliceOriginal() writes before the escaped original.
constexpr std::string_view kOriginalKey = ",\"original\":\"";

using std::string_view;

// Distinct values in first-seen order. Most records carry a few dozen rule
// messages, where a linear search beats hashing. Past kLinearSearchMax
// values a hash set takes over, because a sender controls how many messages
// a libmodsecurity record has, and the linear search would then cost time
// quadratic in their count.
class DistinctValues {
 public:
  void add(string_view value) {
    if (value.empty()) {
      return;
    }
    if (values_.size() < kLinearSearchMax) {
      for (string_view seen : values_) {
        if (seen == value) {
          return;
        }
      }
      values_.push_back(value);
      return;
    }
    if (seen_.empty()) {
      seen_.insert(values_.begin(), values_.end());
    }
    if (seen_.insert(value).second) {
      values_.push_back(value);
    }
  }
  bool empty() const { return values_.empty(); }
  const std::vector<string_view>& values() const { return values_; }

 private:
  static constexpr std::size_t kLinearSearchMax = 64;
  std::vector<string_view> values_;
  std::unordered_set<string_view> seen_;
};

// Writes `key` as one string when there is one value and as an array when
// there are several; ECS lets any field hold an array, and a single value
// keeps the common case readable.
void writeKeywords(JsonWriter& writer, const LiteralKey& key, const DistinctValues& values) {
  if (values.empty()) {
    return;
  }
  writer.key(key);
  if (values.values().size() == 1) {
    writer.string(values.values().front());
    return;
  }
  writer.beginArray();
  for (string_view value : values.values()) {
    writer.string(value);
  }
  writer.endArray();
}

// Writes `value` as `width` decimal digits with leading zeros at `to`.
void writeDigits(char* to, std::uint64_t value, int width) {
  for (int i = width - 1; i >= 0; --i) {
    to[i] = static_cast<char>('0' + value % 10);
    value /= 10;
  }
}

// Appends "YYYY-MM-DDTHH:MM:SS" plus a fraction of `fraction_digits` digits
// (3 or 6) and "Z" for a time in microseconds since the epoch, in UTC. The
// digits are written by hand because fmt's run-time format parsing took
// about 3% of building a document.
void appendIsoTimestamp(std::string& out, std::int64_t micros, int fraction_digits) {
  using namespace std::chrono;
  const sys_time<microseconds> time{microseconds{micros}};
  const auto day = floor<days>(time);
  const year_month_day date{day};
  const hh_mm_ss<microseconds> clock{time - day};
  auto fraction = static_cast<std::uint64_t>(clock.subseconds().count());
  if (fraction_digits == 3) {
    fraction /= 1000;
  }
  // Callers pass years 1970 to 9999, so four digits always fit.
  char text[27] = "0000-00-00T00:00:00.000000";
  writeDigits(text, static_cast<std::uint64_t>(static_cast<int>(date.year())), 4);
  writeDigits(text + 5, static_cast<unsigned>(date.month()), 2);
  writeDigits(text + 8, static_cast<unsigned>(date.day()), 2);
  writeDigits(text + 11, static_cast<std::uint64_t>(clock.hours().count()), 2);
  writeDigits(text + 14, static_cast<std::uint64_t>(clock.minutes().count()), 2);
  writeDigits(text + 17, static_cast<std::uint64_t>(clock.seconds().count()), 2);
  writeDigits(text + 20, fraction, fraction_digits);
  std::size_t length = 20 + static_cast<std::size_t>(fraction_digits);
  text[length] = 'Z';
  out.append(text, length + 1);
}

void writeTimestamp(JsonWriter& writer, const LiteralKey& key, std::int64_t micros, int digits) {
  writer.key(key);
  std::string& out = writer.output();
  // raw() writes the separator and the opening quote; the text follows it.
  writer.raw("\"");
  appendIsoTimestamp(out, micros, digits);
  out.push_back('"');
}

// Returns the value of the first header named `name` (ASCII case-insensitive).
const std::string* findHeader(const std::vector<HeaderField>& headers, string_view name) {
  for (const auto& header : headers) {
    if (equalsIgnoreCase(header.name, name)) {
      return &header.value;
    }
  }
  return nullptr;
}

string_view trimSpaces(string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) {
    text.remove_prefix(1);
  }
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) {
    text.remove_suffix(1);
  }
  return text;
}

// The media type of a Content-Type value, without parameters: "text/html"
// from "text/html; charset=utf-8".
string_view mediaType(string_view content_type) {
  return trimSpaces(content_type.substr(0, content_type.find(';')));
}

bool isIpAddress(string_view text) {
  char buffer[64];
  if (text.empty() || text.size() >= sizeof buffer) {
    return false;
  }
  std::memcpy(buffer, text.data(), text.size());
  buffer[text.size()] = '\0';
  in6_addr address;
  return inet_pton(AF_INET, buffer, &address) == 1 || inet_pton(AF_INET6, buffer, &address) == 1;
}

// The version number in a producer string: "3.0.9" from "ModSecurity v3.0.9
// (Linux)", "2.9.7" from "ModSecurity for Apache/2.9.7 (http://...)", "0.1.0"
// from "webtrap v0.1.0".
string_view versionIn(string_view text) {
  for (std::size_t i = 0; i < text.size(); ++i) {
    bool digit = text[i] >= '0' && text[i] <= '9';
    bool starts = i == 0 || text[i - 1] == 'v' || text[i - 1] == '/' || text[i - 1] == ' ';
    if (digit && starts) {
      std::size_t end = i;
      while (end < text.size() && text[end] != ' ' && text[end] != '(' && text[end] != ')') {
        ++end;
      }
      return text.substr(i, end - i);
    }
  }
  return {};
}

// A rule set version such as "OWASP_CRS/3.3.4", split into the rule set name
// and its version.
struct RulesetVersion {
  string_view ruleset;
  string_view version;
};

RulesetVersion splitRulesetVersion(string_view text) {
  std::size_t slash = text.rfind('/');
  if (slash == string_view::npos) {
    return {text, {}};
  }
  return {text.substr(0, slash), text.substr(slash + 1)};
}

// The ModSecurity severity as a syslog number (0 emergency ... 7 debug), from
// either a digit or a name. libmodsecurity 3.0.9 writes "0" for a rule that
// sets no severity, so "0" counts as unknown.
// NOTE: a rule that really sets EMERGENCY (0) is therefore not reported as
// such; CRS 3.3.4 and webtrap's rules never use it.
std::optional<int> severityNumber(string_view text) {
  if (text.size() == 1 && text[0] >= '1' && text[0] <= '7') {
    return text[0] - '0';
  }
  static constexpr std::array<string_view, 8> kNames = {
      "EMERGENCY", "ALERT", "CRITICAL", "ERROR", "WARNING", "NOTICE", "INFO", "DEBUG"};
  for (std::size_t i = 0; i < kNames.size(); ++i) {
    if (equalsIgnoreCase(text, kNames[i])) {
      return static_cast<int>(i);
    }
  }
  return std::nullopt;
}

// The parts of the request target that go into url.*. Origin-form ("/a?b")
// fills path and query. Absolute-form ("http://host/a?b", which clients send
// to proxies and proxy scanners send to anything) also fills scheme and
// authority. Authority-form ("host:443", for CONNECT) fills only the authority.
struct UrlParts {
  string_view scheme;
  string_view authority;
  string_view path;
  std::optional<string_view> query;
};

UrlParts splitTarget(string_view target, string_view method) {
  UrlParts parts;
  if (method == "CONNECT") {
    parts.authority = target;
    return parts;
  }
  std::size_t scheme_end = target.find("://");
  if (target.empty() || target.front() == '/' || scheme_end == string_view::npos ||
      target.find_first_of("/?") < scheme_end) {
    parts.path = target;
  } else {
    parts.scheme = target.substr(0, scheme_end);
    string_view rest = target.substr(scheme_end + 3);
    std::size_t authority_end = rest.find_first_of("/?#");
    parts.authority = rest.substr(0, authority_end);
    parts.path = authority_end == string_view::npos ? string_view() : rest.substr(authority_end);
  }
  std::size_t fragment = parts.path.find('#');
  if (fragment != string_view::npos) {
    parts.path = parts.path.substr(0, fragment);
  }
  std::size_t question = parts.path.find('?');
  if (question != string_view::npos) {
    parts.query = parts.path.substr(question + 1);
    parts.path = parts.path.substr(0, question);
  }
  return parts;
}

struct HostPort {
  string_view host;
  std::optional<std::uint16_t> port;
};

// Splits "example.com:8080" or "[2001:db8::1]:80". A bare IPv6 address (more
// than one colon, no brackets) has no port.
HostPort splitHostPort(string_view authority) {
  std::size_t at = authority.rfind('@');
  if (at != string_view::npos) {
    authority = authority.substr(at + 1);  // drop user information
  }
  HostPort result{authority, std::nullopt};
  std::size_t colon = authority.rfind(':');
  if (colon == string_view::npos) {
    return result;
  }
  bool bracketed = !authority.empty() && authority.front() == '[';
  if (!bracketed && authority.find(':') != colon) {
    return result;
  }
  if (bracketed && (colon == 0 || authority[colon - 1] != ']')) {
    return result;
  }
  string_view digits = authority.substr(colon + 1);
  unsigned value = 0;
  auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
  if (error == std::errc() && end == digits.data() + digits.size() && !digits.empty() &&
      value <= 65535) {
    result.port = static_cast<std::uint16_t>(value);
  }
  result.host = authority.substr(0, colon);
  return result;
}

// Cuts `body` to at most `max_bytes` without splitting a UTF-8 sequence.
string_view capBody(string_view body, std::size_t max_bytes) {
  if (body.size() <= max_bytes) {
    return body;
  }
  std::size_t end = max_bytes;
  // Step back over at most three continuation bytes (10xxxxxx) so a
  // multi-byte character is kept whole or dropped whole.
  for (int step = 0; step < 3 && end > 0; ++step) {
    if ((static_cast<unsigned char>(body[end]) & 0xC0) != 0x80) {
      break;
    }
    --end;
  }
  return body.substr(0, end);
}

bool isProbeRecord(const AuditRecord& record) { return record.format == RecordFormat::kWebtrap; }

// Facts derived from the rule messages, gathered in one pass.
struct RuleSummary {
  DistinctValues ids;
  DistinctValues names;
  DistinctValues categories;
  DistinctValues rulesets;
  DistinctValues versions;
  std::optional<int> severity;  // most severe: lowest syslog number
};

RuleSummary summarizeRules(const AuditRecord& record) {
  RuleSummary summary;
  for (const auto& message : record.messages) {
    summary.ids.add(message.rule_id);
    summary.names.add(message.message);
    summary.categories.add(ruleCategory(message.rule_id));
    RulesetVersion split = splitRulesetVersion(message.version);
    summary.rulesets.add(split.ruleset);
    summary.versions.add(split.version);
    std::optional<int> severity = severityNumber(message.severity);
    if (severity && (!summary.severity || *severity < *summary.severity)) {
      summary.severity = severity;
    }
  }
  return summary;
}

void writeEvent(JsonWriter& writer, const AuditRecord& record, const RuleSummary& rules,
                std::int64_t ingest_ms, std::size_t* original_at) {
  const bool alert = !record.messages.empty();
  writer.key("event");
  writer.beginObject();
  writer.member("kind", alert ? "alert" : "event");
  writer.key("category");
  writer.beginArray();
  writer.string("web");
  if (alert) {
    writer.string("intrusion_detection");
  }
  writer.endArray();
  writer.key("type");
  writer.beginArray();
  writer.string("access");
  if (alert) {
    // ECS types for intrusion_detection: the request was let through unless
    // the engine blocked it. Only an engine in "On" mode can block, and it
    // responds with an error status.
    bool denied = record.secrules_engine == "On" && record.response_status >= 400;
    writer.string(denied ? "denied" : "allowed");
  }
  writer.endArray();
  writer.member("dataset", "webtrap.audit");
  writer.member("module", "webtrap");
  writer.member("id", record.event_id);
  writeTimestamp(writer, "ingested", ingest_ms * 1000, 3);
  if (rules.severity) {
    writer.member("severity", static_cast<std::int64_t>(*rules.severity));
  }
  // event.original is the event object's last member, after at least
  // "kind", so spliceOriginal() inserts it with a leading comma.
  if (original_at != nullptr) {
    *original_at = writer.output().size();
  } else {
    writer.member("original", record.original);
  }
  writer.endObject();
}

void writeGeo(JsonWriter& writer, const GeoFacts& geo) {
  // A geo_point outside these ranges makes Elasticsearch reject the document.
  bool has_location = geo.latitude && geo.longitude && std::abs(*geo.latitude) <= 90.0 &&
                      std::abs(*geo.longitude) <= 180.0;
  if (geo.country_iso.empty() && geo.country_name.empty() && geo.region_name.empty() &&
      geo.city_name.empty() && !has_location) {
    return;
  }
  writer.key("geo");
  writer.beginObject();
  writeStringIfPresent(writer, "country_iso_code", geo.country_iso);
  writeStringIfPresent(writer, "country_name", geo.country_name);
  writeStringIfPresent(writer, "region_name", geo.region_name);
  writeStringIfPresent(writer, "city_name", geo.city_name);
  if (has_location) {
    writer.key("location");
    writer.beginObject();
    writer.key("lat");
    writer.raw(fmt::format("{}", *geo.latitude));
    writer.key("lon");
    writer.raw(fmt::format("{}", *geo.longitude));
    writer.endObject();
  }
  writer.endObject();
}

// Writes source.* or destination.*: address always, ip only when the text is
// an IP address (an ip field rejects anything else, which would make
// Elasticsearch reject the whole document).
void writeEndpoint(JsonWriter& writer, const LiteralKey& key, const std::string& address,
                   std::uint16_t port, const GeoFacts* geo) {
  bool has_geo = geo != nullptr &&
                 (!geo->country_iso.empty() || !geo->country_name.empty() ||
                  !geo->region_name.empty() || !geo->city_name.empty() || geo->latitude ||
                  geo->asn || !geo->as_organization.empty());
  if (address.empty() && port == 0 && !has_geo) {
    return;
  }
  writer.key(key);
  writer.beginObject();
  writeStringIfPresent(writer, "address", address);
  if (isIpAddress(address)) {
    writer.member("ip", address);
  }
  if (port != 0) {
    writer.member("port", static_cast<std::int64_t>(port));
  }
  if (geo != nullptr) {
    writeGeo(writer, *geo);
    if (geo->asn || !geo->as_organization.empty()) {
      writer.key("as");
      writer.beginObject();
      if (geo->asn) {
        writer.member("number", static_cast<std::int64_t>(*geo->asn));
      }
      if (!geo->as_organization.empty()) {
        writer.key("organization");
        writer.beginObject();
        writer.member("name", geo->as_organization);
        writer.endObject();
      }
      writer.endObject();
    }
  }
  writer.endObject();
}

void writeHttp(JsonWriter& writer, const AuditRecord& record, string_view body_content) {
  writer.key("http");
  writer.beginObject();
  writeStringIfPresent(writer, "version", record.http_version);

  writer.key("request");
  writer.beginObject();
  writeStringIfPresent(writer, "method", record.method);
  // Elasticsearch's long is signed.
  std::uint64_t body_bytes = std::min<std::uint64_t>(
      record.request_body_bytes.value_or(record.request_body.size()), INT64_MAX);
  writer.key("body");
  writer.beginObject();
  writer.key("bytes");
  writer.unsignedInteger(body_bytes);
  if (!body_content.empty()) {
    writer.member("content", body_content);
  }
  writer.endObject();
  if (const std::string* referrer = findHeader(record.request_headers, "Referer")) {
    writer.member("referrer", *referrer);
  }
  if (const std::string* content_type = findHeader(record.request_headers, "Content-Type")) {
    writeStringIfPresent(writer, "mime_type", mediaType(*content_type));
  }
  writer.endObject();

  writer.key("response");
  writer.beginObject();
  if (record.response_status > 0) {
    writer.member("status_code", static_cast<std::int64_t>(record.response_status));
  }
  if (const std::string* content_type = findHeader(record.response_headers, "Content-Type")) {
    writeStringIfPresent(writer, "mime_type", mediaType(*content_type));
  }
  writer.endObject();
  writer.endObject();
}

void writeUrl(JsonWriter& writer, const AuditRecord& record) {
  string_view host = record.host;
  if (host.empty()) {
    if (const std::string* header = findHeader(record.request_headers, "Host")) {
      host = *header;
    }
  }
  UrlParts parts = splitTarget(record.uri, record.method);
  HostPort authority = splitHostPort(parts.authority.empty() ? host : parts.authority);
  if (record.uri.empty() && authority.host.empty()) {
    return;
  }
  writer.key("url");
  writer.beginObject();
  writeStringIfPresent(writer, "original", record.uri);
  writeStringIfPresent(writer, "scheme", parts.scheme);
  writeStringIfPresent(writer, "domain", authority.host);
  if (authority.port) {
    writer.member("port", static_cast<std::int64_t>(*authority.port));
  }
  writeStringIfPresent(writer, "path", parts.path);
  if (parts.query) {
    writer.member("query", *parts.query);
  }
  writer.endObject();
}

void writeRules(JsonWriter& writer, const RuleSummary& rules) {
  if (rules.ids.empty() && rules.names.empty()) {
    return;
  }
  writer.key("rule");
  writer.beginObject();
  writeKeywords(writer, "id", rules.ids);
  writeKeywords(writer, "name", rules.names);
  writeKeywords(writer, "category", rules.categories);
  writeKeywords(writer, "ruleset", rules.rulesets);
  writeKeywords(writer, "version", rules.versions);
  writer.endObject();
}

void writeObserver(JsonWriter& writer, const AuditRecord& record, string_view sensor_id) {
  writer.key("observer");
  writer.beginObject();
  writeStringIfPresent(writer, "name", sensor_id);
  if (isProbeRecord(record)) {
    writer.member("type", "honeypot");
    writer.member("vendor", "webtrap");
    writer.member("product", "webtrap");
    writeStringIfPresent(writer, "version", versionIn(record.connector));
  } else {
    writer.member("type", "waf");
    // Trustwave transferred ModSecurity to the OWASP Foundation in 2024.
    writer.member("vendor", "OWASP");
    writer.member("product", "ModSecurity");
    writeStringIfPresent(writer, "version", versionIn(record.producer_version));
  }
  writer.endObject();
}

void writeTags(JsonWriter& writer, const AuditRecord& record) {
  DistinctValues tags;
  if (isProbeRecord(record)) {
    tags.add("honeypot");
  }
  std::vector<std::string> bait_tags;
  bait_tags.reserve(record.bait_hits.size());
  for (const auto& hit : record.bait_hits) {
    bait_tags.push_back("webtrap/bait/" + hit);
  }
  for (const auto& tag : bait_tags) {
    tags.add(tag);
  }
  for (const auto& tag : record.tags) {
    tags.add(tag);
  }
  if (tags.empty()) {
    return;
  }
  writer.key("tags");
  writer.beginArray();
  for (string_view tag : tags.values()) {
    writer.string(tag);
  }
  writer.endArray();
}

void writeRelated(JsonWriter& writer, const AuditRecord& record) {
  DistinctValues ips;
  if (isIpAddress(record.client_ip)) {
    ips.add(record.client_ip);
  }
  if (isIpAddress(record.server_ip)) {
    ips.add(record.server_ip);
  }
  if (ips.empty()) {
    return;
  }
  writer.key("related");
  writer.beginObject();
  writer.key("ip");
  writer.beginArray();
  for (string_view ip : ips.values()) {
    writer.string(ip);
  }
  writer.endArray();
  writer.endObject();
}

void writeStringArray(JsonWriter& writer, const LiteralKey& key,
                      const std::vector<std::string>& items) {
  if (items.empty()) {
    return;
  }
  writer.key(key);
  writer.beginArray();
  for (const auto& item : items) {
    writer.string(item);
  }
  writer.endArray();
}

// The `webtrap` object: what ECS has no field for. Every key here is fixed
// by this code; attacker-controlled text appears only as values, so the
// index mapping cannot grow from what attackers send.
void writeWebtrap(JsonWriter& writer, const AuditRecord& record, const SensorFacts& sensor,
                  string_view sensor_id, bool body_content_truncated, bool timestamp_missing,
                  std::span<const OatTag> oat_tags, std::span<const OatVerdict> verdicts) {
  writer.key("webtrap");
  writer.beginObject();
  writeStringIfPresent(writer, "input", sensor.input);
  writer.member("format", formatName(record.format));
  writeStringIfPresent(writer, "transaction_id", record.transaction_id);
  if (timestamp_missing) {
    writer.member("timestamp_missing", true);
  }

  string_view group = sensor.group.empty() ? string_view(record.sensor_group) : sensor.group;
  if (!sensor_id.empty() || !group.empty()) {
    writer.key("sensor");
    writer.beginObject();
    writeStringIfPresent(writer, "id", sensor_id);
    writeStringIfPresent(writer, "group", group);
    writer.endObject();
  }
  writeStringIfPresent(writer, "persona", record.persona);
  if (!record.listener.empty()) {
    writer.key("listener");
    writer.beginObject();
    writer.member("name", record.listener);
    writer.member("bait", record.bait_listener);
    writer.endObject();
  }
  if (!record.inspection_status.empty() || record.anomaly_score || record.details_cut) {
    writer.key("inspection");
    writer.beginObject();
    writeStringIfPresent(writer, "status", record.inspection_status);
    if (record.inspection_recovered) {
      writer.member("recovered", true);
    }
    if (record.anomaly_score) {
      writer.member("anomaly_score", *record.anomaly_score);
    }
    if (record.details_cut) {
      writer.key("details_cut");
      writeDetailsCut(writer, *record.details_cut);
    }
    writer.endObject();
  }
  writeStringArray(writer, "bait_hits", record.bait_hits);
  writeWebtrapOat(writer, oat_tags);
  if (!verdicts.empty()) {
    writer.key("oat_verdicts");
    writer.beginArray();
    for (const OatVerdict& verdict : verdicts) {
      writeOatVerdict(writer, verdict);
    }
    writer.endArray();
  }
  writeWebtrapForm(writer, record.form);

  writer.key("request");
  writer.beginObject();
  writeStringIfPresent(writer, "line", record.request_line);
  writer.member("body_content_truncated", body_content_truncated);
  if (!record.request_headers.empty()) {
    writer.key("headers");
    writer.beginArray();
    for (const auto& header : record.request_headers) {
      writer.beginObject();
      writer.member("name", header.name);
      writer.member("value", header.value);
      writer.endObject();
    }
    writer.endArray();
  }
  writer.endObject();

  if (!record.messages.empty()) {
    writer.key("rules");
    writer.beginArray();
    for (const auto& message : record.messages) {
      writer.beginObject();
      writeStringIfPresent(writer, "id", message.rule_id);
      writeStringIfPresent(writer, "message", message.message);
      writeStringIfPresent(writer, "match", message.match);
      writeStringIfPresent(writer, "data", message.data);
      writeStringIfPresent(writer, "severity", message.severity);
      writeStringIfPresent(writer, "category", ruleCategory(message.rule_id));
      writeStringIfPresent(writer, "version", message.version);
      writeStringArray(writer, "tags", message.tags);
      writer.endObject();
    }
    writer.endArray();
  }

  if (!record.producer_version.empty() || !record.connector.empty() ||
      !record.secrules_engine.empty() || !record.components.empty()) {
    writer.key("producer");
    writer.beginObject();
    writeStringIfPresent(writer, "modsecurity", record.producer_version);
    writeStringIfPresent(writer, "connector", record.connector);
    writeStringIfPresent(writer, "secrules_engine", record.secrules_engine);
    writeStringArray(writer, "components", record.components);
    writer.endObject();
  }
  writer.endObject();
}

}  // namespace

std::string buildEcsDocument(const AuditRecord& record, const GeoFacts& geo,
                             const SensorFacts& sensor, std::int64_t ingest_ms,
                             std::span<const OatTag> behaviour_tags,
                             std::span<const OatVerdict> verdicts, std::size_t* original_at) {
  std::string out;
  // The document contains the original record escaped (about 1.1 times its
  // size) and most of its values again as fields, so it is about twice the
  // record's size: 8,960 bytes for a 4,345-byte record on average with
  // bench/collector/make_records.py. Reserving that once avoids regrowing
  // the buffer, which copies everything written so far. Without
  // event.original (`original_at` given, and record.original then often
  // empty) those records gave 4,227 bytes on average and at most 6,043.
  constexpr std::size_t kStrippedReserve = 8192;
  out.reserve(original_at != nullptr
                  ? kStrippedReserve + record.request_body.size()
                  : 2 * record.original.size() + record.request_body.size() + 1024);
  JsonWriter writer(out);
  const RuleSummary rules = summarizeRules(record);
  const string_view sensor_id =
      sensor.sensor_id.empty() ? string_view(record.sensor_id) : string_view(sensor.sensor_id);
  const string_view body_content = capBody(record.request_body, kEcsBodyContentMaxBytes);
  // A time outside years 1970-9999 would not fit the four-digit year of a
  // date field, so Elasticsearch would reject the document.
  constexpr std::int64_t kLastMicros = 253402300799999999;  // 9999-12-31T23:59:59.999999Z
  const bool timestamp_missing = record.timestamp_us <= 0 || record.timestamp_us > kLastMicros;

  writer.beginObject();
  writeTimestamp(writer, "@timestamp", timestamp_missing ? ingest_ms * 1000 : record.timestamp_us,
                 6);
  writer.key("ecs");
  writer.beginObject();
  writer.member("version", kEcsVersion);
  writer.endObject();
  writeEvent(writer, record, rules, ingest_ms, original_at);
  writeEndpoint(writer, "source", record.client_ip, record.client_port, &geo);
  writeEndpoint(writer, "destination", record.server_ip, record.server_port, nullptr);
  writeHttp(writer, record, body_content);
  writeUrl(writer, record);
  if (const std::string* agent = findHeader(record.request_headers, "User-Agent")) {
    writer.key("user_agent");
    writer.beginObject();
    writer.member("original", *agent);
    writer.endObject();
  }
  writeRules(writer, rules);
  writeObserver(writer, record, sensor_id);
  writeTags(writer, record);
  writeRelated(writer, record);
  const std::vector<OatTag> oat_tags = documentOatTags(record, behaviour_tags);
  writeEcsThreat(writer, oat_tags);
  writeWebtrap(writer, record, sensor, sensor_id, body_content.size() < record.request_body.size(),
               timestamp_missing, oat_tags, verdicts);
  writer.endObject();
  return out;
}

std::size_t splicedBytes(std::size_t stripped_bytes, std::size_t original_bytes) {
  // Escaping a JSON record's quotes makes it about 30% longer, so a
  // quarter was too little and cost a reallocation and a copy per event.
  return stripped_bytes + kOriginalKey.size() + original_bytes + original_bytes / 2 + 1;
}

void spliceOriginal(std::string& out, std::string_view stripped, std::size_t original_at,
                    std::string_view original) {
  original_at = std::min(original_at, stripped.size());
  out.reserve(out.size() + splicedBytes(stripped.size(), original.size()));
  out.append(stripped.substr(0, original_at));
  out.append(kOriginalKey);
  appendJsonEscaped(out, original);
  out.push_back('"');
  out.append(stripped.substr(original_at));
}

}  // namespace webtrap::collector
