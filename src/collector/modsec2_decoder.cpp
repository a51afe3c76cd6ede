// The mod_security2 JSON audit layout (SecAuditLogFormat JSON, 2.9.x):
// `transaction`, `request`, `response` and `audit_data`, with rule matches
// as text lines carrying [key "value"] fields.
#include <fmt/format.h>

#include "collector/audit_decoder_internal.h"

namespace webtrap::collector::decoder {

namespace {

// Splits "GET /path?q HTTP/1.1" into method, target and version. The target
// is everything between the first and the last space, so a target with
// spaces (which Apache accepts) stays whole.
void splitRequestLine(std::string_view line, AuditRecord& record) {
  std::size_t first = line.find(' ');
  if (first == std::string_view::npos) {
    record.method = std::string(line);
    return;
  }
  record.method = std::string(line.substr(0, first));
  std::string_view rest = line.substr(first + 1);
  std::size_t last = rest.rfind(' ');
  if (last != std::string_view::npos && rest.substr(last + 1, 5) == "HTTP/") {
    record.uri = std::string(rest.substr(0, last));
    record.http_version = std::string(rest.substr(last + 6));
  } else {
    // HTTP/0.9 style: no version.
    record.uri = std::string(rest);
  }
}

// Reads a body written as one string or as an array of string parts.
void readBody(ondemand::value value, std::string_view field, std::string& out) {
  ondemand::json_type type = ondemand::json_type::null;
  check(value.type().get(type), field);
  if (type == ondemand::json_type::array) {
    std::vector<std::string> parts;
    readStringArray(value, field, parts);
    out.clear();
    for (const std::string& part : parts) {
      out.append(part);
    }
    return;
  }
  out = readScalarText(value, field);
}

void decodeTransaction(ondemand::value value, AuditRecord& record) {
  constexpr std::string_view kField = "transaction";
  bool has_time = false;
  bool has_address = false;
  forEachMember(value, kField, [&](std::string_view key, ondemand::value member) {
    if (key == "time") {
      std::string text = readString(member, "transaction.time");
      auto micros = parseApacheMicros(text);
      if (!micros) {
        fail("transaction.time",
             fmt::format("'{}' is not a time of the form '04/Dec/2026:15:48:57.030246 +0000'",
                         text.substr(0, 40)));
      }
      record.timestamp_us = *micros;
      has_time = true;
    } else if (key == "transaction_id") {
      record.transaction_id = readScalarText(member, "transaction.transaction_id");
    } else if (key == "remote_address") {
      readStringInto(member, "transaction.remote_address", record.client_ip);
      has_address = true;
    } else if (key == "remote_port") {
      record.client_port = readPort(member, "transaction.remote_port");
    } else if (key == "local_address") {
      readStringInto(member, "transaction.local_address", record.server_ip);
    } else if (key == "local_port") {
      record.server_port = readPort(member, "transaction.local_port");
    }
  });
  if (!has_time) {
    fail("transaction.time", "missing; every mod_security2 audit record has it");
  }
  if (!has_address) {
    fail("transaction.remote_address", "missing; every mod_security2 audit record has it");
  }
}

void decodeRequest(ondemand::value value, AuditRecord& record) {
  forEachMember(value, "request", [&](std::string_view key, ondemand::value member) {
    if (key == "request_line") {
      readStringInto(member, "request.request_line", record.request_line);
      splitRequestLine(record.request_line, record);
    } else if (key == "headers") {
      record.request_headers.clear();
      readHeaderObject(member, "request.headers", record.request_headers);
    } else if (key == "body") {
      readBody(member, "request.body", record.request_body);
    }
  });
}

void decodeResponse(ondemand::value value, AuditRecord& record) {
  forEachMember(value, "response", [&](std::string_view key, ondemand::value member) {
    if (key == "status") {
      record.response_status = readStatus(member, "response.status");
    } else if (key == "headers") {
      record.response_headers.clear();
      readHeaderObject(member, "response.headers", record.response_headers);
    }
  });
}

void decodeAuditData(ondemand::value value, AuditRecord& record) {
  forEachMember(value, "audit_data", [&](std::string_view key, ondemand::value member) {
    if (key == "messages") {
      std::vector<std::string> lines;
      readStringArray(member, "audit_data.messages", lines);
      record.messages.clear();
      for (const std::string& line : lines) {
        record.messages.push_back(parseModsec2Message(line));
      }
    } else if (key == "producer") {
      // ["ModSecurity for Apache/2.9.7 (http://www.modsecurity.org/)",
      //  "OWASP_CRS/3.3.4"]: the engine, then each SecComponentSignature.
      ondemand::json_type type = ondemand::json_type::null;
      check(member.type().get(type), "audit_data.producer");
      std::vector<std::string> names;
      if (type == ondemand::json_type::array) {
        readStringArray(member, "audit_data.producer", names);
      } else {
        names.push_back(readScalarText(member, "audit_data.producer"));
      }
      if (!names.empty()) {
        record.producer_version = std::move(names.front());
        record.components.assign(std::make_move_iterator(names.begin() + 1),
                                 std::make_move_iterator(names.end()));
      }
    } else if (key == "server") {
      record.connector = readScalarText(member, "audit_data.server");
    } else if (key == "engine_mode") {
      record.secrules_engine = readScalarText(member, "audit_data.engine_mode");
    }
  });
}

// Reads the quoted value at `pos` (just after the opening quote) up to the
// closing `"]`. mod_security2 escapes a quote inside a value as \" and a
// backslash as \\; those two are unescaped, other escapes (\xHH for bytes
// that are not printable) are kept as written.
bool readBracketValue(std::string_view text, std::size_t& pos, std::string& value) {
  value.clear();
  std::size_t run = pos;  // start of the bytes not yet copied
  while (pos < text.size()) {
    std::size_t quote = text.find('"', pos);
    if (quote == std::string_view::npos) {
      return false;
    }
    std::size_t backslash = text.substr(0, quote).find('\\', pos);
    if (backslash != std::string_view::npos) {
      if (backslash + 1 < text.size() &&
          (text[backslash + 1] == '"' || text[backslash + 1] == '\\')) {
        value.append(text, run, backslash - run);
        value.push_back(text[backslash + 1]);
        run = backslash + 2;
      }
      pos = backslash + 2;
      continue;
    }
    if (quote + 1 < text.size() && text[quote + 1] == ']') {
      value.append(text, run, quote - run);
      pos = quote + 2;
      return true;
    }
    pos = quote + 1;
  }
  return false;
}

// Returns the length of the key when `text[pos]` starts `[key "`, else 0.
std::size_t bracketKeyLength(std::string_view text, std::size_t pos) {
  if (pos >= text.size() || text[pos] != '[') {
    return 0;
  }
  std::size_t end = pos + 1;
  while (end < text.size() && ((text[end] >= 'a' && text[end] <= 'z') || text[end] == '_')) {
    ++end;
  }
  std::size_t length = end - pos - 1;
  if (length == 0 || end + 1 >= text.size() || text[end] != ' ' || text[end + 1] != '"') {
    return 0;
  }
  return length;
}

void assignBracketField(std::string_view key, std::string&& value, RuleMessage& message) {
  if (key == "id") {
    message.rule_id = std::move(value);
  } else if (key == "msg") {
    message.message = std::move(value);
  } else if (key == "data") {
    message.data = std::move(value);
  } else if (key == "severity") {
    message.severity = std::move(value);
  } else if (key == "file") {
    message.file = std::move(value);
  } else if (key == "line") {
    message.line = std::move(value);
  } else if (key == "ver") {
    message.version = std::move(value);
  } else if (key == "tag") {
    message.tags.push_back(std::move(value));
  }
  // rev, maturity, accuracy, hostname, uri and unique_id stay in `original`.
}

}  // namespace

RuleMessage parseModsec2Message(std::string_view text) {
  RuleMessage message;
  // The description ends where the first [key "value"] field starts.
  std::size_t pos = 0;
  while (pos < text.size()) {
    pos = text.find('[', pos);
    if (pos == std::string_view::npos || bracketKeyLength(text, pos) > 0) {
      break;
    }
    ++pos;
  }
  if (pos == std::string_view::npos) {
    message.match = std::string(text);
    return message;
  }
  std::string_view description = text.substr(0, pos);
  while (!description.empty() && description.back() == ' ') {
    description.remove_suffix(1);
  }
  message.match = std::string(description);

  std::string value;
  while (pos < text.size()) {
    std::size_t key_length = bracketKeyLength(text, pos);
    if (key_length == 0) {
      // Text between fields that is not a field: skip to the next '['.
      pos = text.find('[', pos + 1);
      if (pos == std::string_view::npos) {
        break;
      }
      continue;
    }
    std::string_view key = text.substr(pos + 1, key_length);
    pos += key_length + 3;  // '[', the key, ' ', '"'
    if (!readBracketValue(text, pos, value)) {
      break;  // an unterminated value ends the scan; the line stays in `original`
    }
    assignBracketField(key, std::move(value), message);
    while (pos < text.size() && text[pos] == ' ') {
      ++pos;
    }
  }
  return message;
}

void decodeModsec2Record(ondemand::object root, AuditRecord& record) {
  bool has_transaction = false;
  for (auto entry : root) {
    ondemand::field member;
    check(std::move(entry).get(member), "record");
    std::string_view key;
    check(member.unescaped_key().get(key), "record");
    if (key == "transaction") {
      decodeTransaction(member.value(), record);
      has_transaction = true;
    } else if (key == "request") {
      decodeRequest(member.value(), record);
    } else if (key == "response") {
      decodeResponse(member.value(), record);
    } else if (key == "audit_data") {
      decodeAuditData(member.value(), record);
    }
  }
  if (!has_transaction) {
    fail("transaction", "missing; every mod_security2 audit record has it");
  }
  record.host = std::string(findHeader(record.request_headers, "Host"));
}

}  // namespace webtrap::collector::decoder
