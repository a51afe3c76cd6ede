#include "probe/record.h"

#include <algorithm>
#include <charconv>
#include <deque>
#include <optional>
#include <span>
#include <string_view>
#include <unordered_map>

#include <fmt/format.h>

#include "common/encoding.h"
#include "common/ids.h"
#include "common/json_writer.h"
#include "probe/form_facts.h"
#include "probe/oat_tags.h"

namespace webtrap::probe {

namespace {

constexpr int kSchemaVersion = 1;

// Past this many header fields, duplicates are found with a hash map instead
// of comparing every pair, because the header size limit lets a client send
// thousands of tiny fields.
constexpr std::size_t kQuadraticHeaderLimit = 64;

// Appends `token` to a JSON pointer (RFC 6901): first as the JSON text will
// decode it (invalid UTF-8 replaced), then with '~' and '/' escaped.
void appendPointerToken(std::string& pointer, std::string_view token) {
  std::string sanitized;
  std::string_view text = token;
  if (!isValidUtf8(token)) {
    appendSanitizedUtf8(sanitized, token);
    text = sanitized;
  }
  for (char c : text) {
    if (c == '~') {
      pointer.append("~0");
    } else if (c == '/') {
      pointer.append("~1");
    } else {
      pointer.push_back(c);
    }
  }
}

// A string that was not valid UTF-8: where it sits in the record and its
// exact bytes. `view` points into the serialized inputs, unless the string
// was built here (a joined header), in which case `owned` contains it.
struct EncodedString {
  std::string pointer;
  std::string_view view;
  std::string owned;
  bool is_owned = false;

  std::string_view bytes() const { return is_owned ? std::string_view(owned) : view; }
};

// Wraps JsonWriter with the JSON pointer of the current position, so that
// every string that needs an entry in webtrap.encoded has its address at hand.
// The pointer is one string grown and shrunk in place, so walking the record
// costs no allocation. member(), element() and joinedMember() mask payment
// card numbers (maskEveryCardNumber) in keys and values, and the encoded copies
// contain the masked bytes, so no full card number reaches the record.
// trustedMember() writes values that the probe made itself (hashes, ids) and
// that masking could corrupt.
class RecordWriter {
 public:
  explicit RecordWriter(std::string& out) : json_(out) {
    pointer_.reserve(128);
    marks_.reserve(16);
  }

  JsonWriter& json() { return json_; }

  void beginObject(std::string_view name) {
    json_.key(name);
    json_.beginObject();
    enter(name);
  }
  void beginObjectAt(std::size_t index) {
    json_.beginObject();
    enter(index);
  }
  void endObject() {
    json_.endObject();
    leave();
  }
  void beginArray(std::string_view name) {
    json_.key(name);
    json_.beginArray();
    enter(name);
  }
  void beginArrayAt(std::size_t index) {
    json_.beginArray();
    enter(index);
  }
  void endArray() {
    json_.endArray();
    leave();
  }

  void member(std::string_view name, std::string_view value) {
    json_.key(name);
    if (std::optional<std::string> masked = maskEveryCardNumber(value)) {
      if (!json_.string(*masked)) {
        rememberOwned(name, std::move(*masked));
      }
    } else if (!json_.string(value)) {
      remember(name, value);
    }
  }

  // Writes `value` unmasked: for text the probe made itself, or text that
  // was masked already.
  void trustedMember(std::string_view name, std::string_view value) {
    json_.key(name);
    if (!json_.string(value)) {
      remember(name, value);
    }
  }

  void element(std::size_t index, std::string_view value) {
    std::optional<std::string> masked = maskEveryCardNumber(value);
    if (!json_.string(masked ? std::string_view(*masked) : value)) {
      char digits[24];
      auto end = std::to_chars(digits, digits + sizeof digits, index).ptr;
      std::string_view token(digits, end - digits);
      if (masked) {
        rememberOwned(token, std::move(*masked));
      } else {
        remember(token, value);
      }
    }
  }

  // Writes `name` with the values of `headers[indices...]` joined by ", ".
  template <class Indices>
  void joinedMember(std::string_view name, const std::vector<HeaderField>& headers,
                    const Indices& indices) {
    std::optional<std::string> masked_name = maskEveryCardNumber(name);
    if (masked_name) {
      name = *masked_name;
    }
    // Masked copies of the values that held a card number. A deque keeps
    // the views into it valid while it grows.
    std::deque<std::string> masked_values;
    auto valueAt = [&](std::size_t index) -> std::string_view {
      const std::string& value = headers[index].value;
      if (std::optional<std::string> masked = maskEveryCardNumber(value)) {
        return masked_values.emplace_back(std::move(*masked));
      }
      return value;
    };

    json_.key(name);
    json_.beginString();
    bool valid = true;
    bool first = true;
    std::vector<std::string_view> parts;
    for (std::size_t index : indices) {
      if (!first) {
        json_.stringPart(", ");
      }
      first = false;
      parts.push_back(valueAt(index));
      valid = json_.stringPart(parts.back()) && valid;
    }
    json_.endString();
    if (!valid) {
      std::string joined;
      first = true;
      for (std::string_view part : parts) {
        if (!first) {
          joined.append(", ");
        }
        first = false;
        joined.append(part);
      }
      rememberOwned(name, std::move(joined));
    }
  }

  void writeEncoded() {
    json_.key("encoded");
    json_.beginObject();
    // Base64 text never needs JSON escaping, so it is written quoted as is.
    std::string base64;
    for (const EncodedString& entry : encoded_) {
      json_.key(entry.pointer);
      base64.assign(1, '"');
      appendBase64(base64, entry.bytes());
      base64.push_back('"');
      json_.raw(base64);
    }
    json_.endObject();
  }

 private:
  void enter(std::string_view token) {
    marks_.push_back(pointer_.size());
    pointer_.push_back('/');
    appendPointerToken(pointer_, token);
  }
  void enter(std::size_t index) {
    marks_.push_back(pointer_.size());
    pointer_.push_back('/');
    char digits[24];
    auto end = std::to_chars(digits, digits + sizeof digits, index).ptr;
    pointer_.append(digits, end);
  }
  void leave() {
    pointer_.resize(marks_.back());
    marks_.pop_back();
  }

  EncodedString& add(std::string_view token) {
    EncodedString& entry = encoded_.emplace_back();
    entry.pointer.reserve(pointer_.size() + token.size() + 1);
    entry.pointer = pointer_;
    entry.pointer.push_back('/');
    appendPointerToken(entry.pointer, token);
    return entry;
  }
  void remember(std::string_view token, std::string_view bytes) { add(token).view = bytes; }
  void rememberOwned(std::string_view token, std::string bytes) {
    EncodedString& entry = add(token);
    entry.owned = std::move(bytes);
    entry.is_owned = true;
  }

  JsonWriter json_;
  std::string pointer_;
  std::vector<std::size_t> marks_;
  std::vector<EncodedString> encoded_;
};

// Returns true when `version` can be written as a JSON number, as
// libmodsecurity writes http_version: digits, optionally a dot and digits,
// no leading zero before another digit.
bool isPlainVersionNumber(std::string_view version) {
  std::size_t dot = version.find('.');
  std::string_view whole = version.substr(0, dot);
  std::string_view fraction = dot == std::string_view::npos ? "" : version.substr(dot + 1);
  auto digits = [](std::string_view text, std::size_t max) {
    return !text.empty() && text.size() <= max &&
           std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
  };
  if (!digits(whole, 3) || (whole.size() > 1 && whole[0] == '0')) {
    return false;
  }
  return dot == std::string_view::npos || digits(fraction, 3);
}

std::string lowercaseAscii(std::string_view text) {
  std::string lower(text);
  std::transform(lower.begin(), lower.end(), lower.begin(), [](char c) {
    return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
  });
  return lower;
}

// Writes a header object with one key per distinct name (ASCII
// case-insensitive, spelled as first seen) and the values joined by ", ", the
// combination RFC 9110 section 5.3 allows, so the JSON has no duplicate keys.
// Names are compared as written, after U+FFFD replacement and card number
// masking, because two different names can become the same key.
void writeHeaderObject(RecordWriter& writer, const std::vector<HeaderField>& headers) {
  writer.beginObject("headers");
  const std::size_t count = headers.size();

  std::vector<std::string> sanitized;
  bool all_valid = std::all_of(headers.begin(), headers.end(), [](const HeaderField& header) {
    return isValidUtf8(header.name) && !maskEveryCardNumber(header.name);
  });
  if (!all_valid) {
    sanitized.resize(count);
    for (std::size_t i = 0; i < count; ++i) {
      appendSanitizedUtf8(sanitized[i], headers[i].name);
      if (std::optional<std::string> masked = maskEveryCardNumber(sanitized[i])) {
        sanitized[i] = std::move(*masked);
      }
    }
  }
  auto name = [&](std::size_t i) -> std::string_view {
    return all_valid ? std::string_view(headers[i].name) : std::string_view(sanitized[i]);
  };

  if (count <= kQuadraticHeaderLimit) {
    std::size_t same[kQuadraticHeaderLimit];
    for (std::size_t i = 0; i < count; ++i) {
      bool seen = false;
      for (std::size_t j = 0; j < i && !seen; ++j) {
        seen = equalsIgnoreCase(name(j), name(i));
      }
      if (seen) {
        continue;
      }
      std::size_t matches = 0;
      for (std::size_t j = i; j < count; ++j) {
        if (equalsIgnoreCase(name(j), name(i))) {
          same[matches++] = j;
        }
      }
      writer.joinedMember(name(i), headers, std::span<const std::size_t>(same, matches));
    }
  } else {
    std::unordered_map<std::string, std::vector<std::size_t>> groups;
    std::vector<std::size_t> order;
    for (std::size_t i = 0; i < count; ++i) {
      auto& group = groups[lowercaseAscii(name(i))];
      if (group.empty()) {
        order.push_back(i);
      }
      group.push_back(i);
    }
    for (std::size_t first : order) {
      writer.joinedMember(name(first), headers, groups[lowercaseAscii(name(first))]);
    }
  }
  writer.endObject();
}

void writeMessage(RecordWriter& writer, std::size_t index, const RuleMatch& match) {
  JsonWriter& json = writer.json();
  writer.beginObjectAt(index);
  writer.member("message", match.message);

  // libmodsecurity 3.0.9 writes every detail as a string, numbers included,
  // and a rule without a severity as "0".
  writer.beginObject("details");
  writer.member("match", match.match);
  writer.member("reference", match.reference);
  writer.member("ruleId", match.id);
  writer.member("file", match.file);
  json.member("lineNumber", std::to_string(match.line));
  writer.member("data", match.data);
  json.member("severity", std::to_string(match.severity < 0 ? 0 : match.severity));
  writer.member("ver", match.version);
  writer.member("rev", match.revision);
  writer.beginArray("tags");
  for (std::size_t i = 0; i < match.tags.size(); ++i) {
    writer.element(i, match.tags[i]);
  }
  writer.endArray();
  json.member("maturity", std::to_string(match.maturity));
  json.member("accuracy", std::to_string(match.accuracy));
  writer.endObject();

  writer.endObject();
}

// The libmodsecurity v3 part, in the field order of Transaction::toJSON.
void writeTransaction(RecordWriter& writer, const CapturedRequest& request,
                      const PersonaResponse& response, const InspectionResult& inspection,
                      const RecordMeta& meta) {
  JsonWriter& json = writer.json();
  writer.beginObject("transaction");
  writer.member("client_ip", request.client.address);
  json.member("time_stamp", ctimeTimestamp(request.received_at));
  writer.member("server_id", meta.sensor_id);
  json.member("client_port", static_cast<std::int64_t>(request.client.port));
  writer.member("host_ip", request.server.address);
  json.member("host_port", static_cast<std::int64_t>(request.server.port));
  writer.trustedMember("unique_id", meta.event_id);

  // libmodsecurity 3.0.9 writes "-" for an empty method; webtrap.request.line
  // keeps what was actually sent.
  writer.beginObject("request");
  writer.member("method",
                request.method.empty() ? std::string_view("-") : std::string_view(request.method));
  json.key("http_version");
  if (isPlainVersionNumber(request.http_version)) {
    json.raw(request.http_version);
  } else {
    json.null();
  }
  writer.member("uri", request.target);
  writer.member("body", request.body);
  writeHeaderObject(writer, request.headers);
  writer.endObject();

  writer.beginObject("response");
  writer.member("body", response.omit_body ? std::string_view() : std::string_view(response.body));
  json.member("http_code", static_cast<std::int64_t>(response.status));
  writeHeaderObject(writer, response.headers);
  writer.endObject();

  writer.beginObject("producer");
  writer.member("modsecurity", meta.engine_version);
  json.member("connector", "webtrap v" WEBTRAP_VERSION);
  writer.member("secrules_engine", meta.secrules_engine);
  writer.beginArray("components");
  for (std::size_t i = 0; i < meta.components.size(); ++i) {
    writer.element(i, meta.components[i]);
  }
  writer.endArray();
  writer.endObject();

  writer.beginArray("messages");
  for (std::size_t i = 0; i < inspection.matches.size(); ++i) {
    writeMessage(writer, i, inspection.matches[i]);
  }
  writer.endArray();

  writer.endObject();
}

void writeTiming(JsonWriter& json, std::string_view name, std::int64_t value) {
  json.key(name);
  if (value < 0) {
    json.null();
  } else {
    json.integer(value);
  }
}

void writeWebtrapRequest(RecordWriter& writer, const CapturedRequest& request) {
  JsonWriter& json = writer.json();
  writer.beginObject("request");
  writer.member("line", request.request_line);
  writer.beginArray("headers");
  for (std::size_t i = 0; i < request.headers.size(); ++i) {
    writer.beginArrayAt(i);
    writer.element(0, request.headers[i].name);
    writer.element(1, request.headers[i].value);
    writer.endArray();
  }
  writer.endArray();
  json.key("body_size");
  json.unsignedInteger(request.body_size);
  // A hash over a body whose card number was masked would let anyone who
  // reads the record recover the hidden digits by brute force (10^5
  // Luhn-valid candidates for 16 digits), so such a record hashes the masked
  // captured body instead.
  std::optional<std::string> masked_body = maskEveryCardNumber(request.body);
  if (masked_body) {
    Sha256 hash;
    hash.update(*masked_body);
    writer.trustedMember("body_sha256", hash.finalHex());
  } else {
    writer.trustedMember("body_sha256", request.body_sha256);
  }
  json.member("body_truncated", request.body_truncated);
  json.member("body_masked", masked_body.has_value());
  json.member("chunked", request.chunked);
  if (!request.parsed) {
    writer.member("raw_head", request.raw_head);
    json.member("raw_head_truncated", request.raw_head_truncated);
  }
  writer.endObject();
}

void writeInspection(RecordWriter& writer, const InspectionResult& inspection) {
  JsonWriter& json = writer.json();
  writer.beginObject("inspection");
  json.member("status", toString(inspection.status));
  // Written only when true, so live records keep their size.
  if (inspection.recovered) {
    json.member("recovered", true);
  }
  if (!inspection.error.empty()) {
    writer.member("error", inspection.error);
  }
  json.member("duration_us", static_cast<std::int64_t>(inspection.duration_us));
  json.member("anomaly_score", static_cast<std::int64_t>(inspection.anomaly_score));

  // One entry per rule, in the order of first match.
  writer.beginArray("rule_ids");
  std::size_t written = 0;
  for (std::size_t i = 0; i < inspection.matches.size(); ++i) {
    const std::string& id = inspection.matches[i].id;
    bool seen = false;
    for (std::size_t j = 0; j < i && !seen; ++j) {
      seen = inspection.matches[j].id == id;
    }
    if (!seen) {
      writer.element(written++, id);
    }
  }
  writer.endArray();

  // Present only when the inspector cut rule match text to bound the record.
  const MatchDetailCuts& cuts = inspection.details_cut;
  if (cuts.any()) {
    json.key("details_cut");
    json.beginObject();
    json.member("truncated_strings", static_cast<std::int64_t>(cuts.truncated_strings));
    json.member("reduced_matches", static_cast<std::int64_t>(cuts.reduced_matches));
    json.member("omitted_matches", static_cast<std::int64_t>(cuts.omitted_matches));
    json.endObject();
  }
  writer.endObject();
}

void writeForm(RecordWriter& writer, const FormFacts& form) {
  JsonWriter& json = writer.json();
  writer.beginObject("form");
  writer.member("kind", form.kind);
  writer.member("username", form.username);
  writer.trustedMember("password_sha256", form.password_sha256);
  writer.member("email", form.email);
  writer.member("coupon", form.coupon);
  writer.beginArray("cards");
  for (std::size_t i = 0; i < form.cards.size(); ++i) {
    const CardFacts& card = form.cards[i];
    writer.beginObjectAt(i);
    writer.trustedMember("bin", card.bin);
    writer.trustedMember("last4", card.last4);
    json.member("luhn_valid", card.luhn_valid);
    writer.trustedMember("fingerprint", card.fingerprint);
    writer.endObject();
  }
  writer.endArray();
  json.member("links", static_cast<std::int64_t>(form.links));
  json.member("text_bytes", static_cast<std::int64_t>(form.text_bytes));
  writer.endObject();
}

// webtrap.oat: the request's OAT tags. Every text but the reason comes from
// the ontology compiled into the probe.
void writeOat(RecordWriter& writer, const std::vector<OatTag>& tags) {
  JsonWriter& json = writer.json();
  writer.beginArray("oat");
  for (std::size_t i = 0; i < tags.size(); ++i) {
    const OatTag& tag = tags[i];
    writer.beginObjectAt(i);
    json.member("id", tag.id);
    json.member("name", tag.name);
    json.member("basis", tag.basis);
    json.key("confidence");
    json.raw(fmt::format("{}", tag.confidence));
    writer.member("reason", tag.reason);
    json.key("attack");
    json.beginArray();
    for (const std::string& technique : tag.attack) {
      json.string(technique);
    }
    json.endArray();
    json.member("version", tag.version);
    writer.endObject();
  }
  writer.endArray();
}

// What ModSecurity does not know about the request.
void writeWebtrap(RecordWriter& writer, const CapturedRequest& request, const RouteOutcome& outcome,
                  const InspectionResult& inspection, const RecordMeta& meta) {
  JsonWriter& json = writer.json();
  writer.beginObject("webtrap");
  json.member("schema_version", static_cast<std::int64_t>(kSchemaVersion));
  writer.trustedMember("event_id", meta.event_id);
  json.member("@timestamp", isoTimestamp(request.received_at));

  writer.beginObject("sensor");
  writer.member("id", meta.sensor_id);
  writer.member("group", meta.sensor_group);
  writer.endObject();

  writer.beginObject("persona");
  writer.member("name", meta.persona);
  writer.member("product", meta.product);
  writer.endObject();

  writer.beginObject("listener");
  writer.member("name", request.listener);
  json.member("bait", request.bait_listener);
  writer.endObject();

  writer.beginObject("connection");
  writer.trustedMember("id", request.connection_id);
  json.key("request_index");
  json.unsignedInteger(request.request_index);
  writer.endObject();

  if (request.tls.enabled) {
    writer.beginObject("tls");
    writer.member("sni", request.tls.sni);
    writer.member("version", request.tls.version);
    writer.member("cipher", request.tls.cipher);
    writer.endObject();
  }

  writeWebtrapRequest(writer, request);

  writer.beginObject("parse");
  json.member("ok", request.parsed);
  writer.member("error", request.parse_error);
  writer.endObject();

  writer.beginObject("route");
  writer.member("name", outcome.route);
  writer.member("kind", outcome.route_kind);
  writer.endObject();

  writer.beginArray("baits");
  for (std::size_t i = 0; i < outcome.baits.size(); ++i) {
    writer.beginObjectAt(i);
    writer.member("kind", outcome.baits[i].kind);
    writer.member("detail", outcome.baits[i].detail);
    writer.endObject();
  }
  writer.endArray();

  // The tokens are fake credentials made for this client, so writing them
  // discloses nothing, and a later reuse can be traced back to this event.
  writer.beginArray("issued_tokens");
  for (std::size_t i = 0; i < outcome.issued_tokens.size(); ++i) {
    writer.element(i, outcome.issued_tokens[i]);
  }
  writer.endArray();

  if (!outcome.form.kind.empty()) {
    writeForm(writer, outcome.form);
  }

  const std::string* host = findHeader(request.headers, "host");
  writeOat(writer, tagProbeRequest(request.method, host != nullptr ? *host : std::string_view(),
                                   outcome, inspection));
  writeInspection(writer, inspection);

  json.key("timings");
  json.beginObject();
  writeTiming(json, "headers_us", request.timings.headers_us);
  writeTiming(json, "body_us", request.timings.body_us);
  writeTiming(json, "response_us", request.timings.response_us);
  writeTiming(json, "inspection_us", request.timings.inspection_us);
  json.endObject();

  // Last, so it lists every string written before it.
  writer.writeEncoded();
  writer.endObject();
}

std::size_t estimateSize(const CapturedRequest& request, const PersonaResponse& response,
                         const InspectionResult& inspection) {
  std::size_t size = 2048 + request.request_line.size() + request.target.size() +
                     request.body.size() + request.raw_head.size() + response.body.size();
  for (const auto& header : request.headers) {
    size += 2 * (header.name.size() + header.value.size()) + 16;
  }
  for (const auto& header : response.headers) {
    size += header.name.size() + header.value.size() + 8;
  }
  size += inspection.matches.size() * 512;
  // Escaping and the encoded map can grow a string; a small margin avoids
  // most reallocations without doubling every buffer.
  return size + size / 8;
}

}  // namespace

std::string serializeRecord(const CapturedRequest& request, const PersonaResponse& response,
                            const RouteOutcome& outcome, const InspectionResult& inspection,
                            const RecordMeta& meta) {
  std::string out;
  out.reserve(estimateSize(request, response, inspection));
  RecordWriter writer(out);
  writer.json().beginObject();
  writeTransaction(writer, request, response, inspection, meta);
  writeWebtrap(writer, request, outcome, inspection, meta);
  writer.json().endObject();
  return out;
}

}  // namespace webtrap::probe
