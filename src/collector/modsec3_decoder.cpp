// The libmodsecurity v3 JSON audit layout (Transaction::toJSON in 3.0.x),
// which webtrap probe records share under `transaction`.
#include <fmt/format.h>

#include "collector/audit_decoder_internal.h"

namespace webtrap::collector::decoder {

namespace {

constexpr std::string_view kTransaction = "transaction";

// libmodsecurity 3.0.x appends a quote to each component name it reads from
// SecComponentSignature ("OWASP_CRS/3.3.4\""), so the stray quote is removed.
void stripStrayQuotes(std::vector<std::string>& components) {
  for (std::string& component : components) {
    if (!component.empty() && component.back() == '"') {
      component.pop_back();
    }
  }
}

void decodeRequest(ondemand::value value, AuditRecord& record) {
  constexpr std::string_view kField = "transaction.request";
  ondemand::object request = readObject(value, kField);
  for (auto entry : request) {
    ondemand::field field;
    check(std::move(entry).get(field), kField);
    std::string_view key;
    check(field.unescaped_key().get(key), kField);
    if (key == "method") {
      readStringInto(field.value(), "transaction.request.method", record.method);
    } else if (key == "http_version") {
      record.http_version = readHttpVersion(field.value(), "transaction.request.http_version");
    } else if (key == "uri") {
      readStringInto(field.value(), "transaction.request.uri", record.uri);
    } else if (key == "headers") {
      record.request_headers.clear();
      readHeaderObject(field.value(), "transaction.request.headers", record.request_headers);
    } else if (key == "body") {
      readStringInto(field.value(), "transaction.request.body", record.request_body);
    }
  }
}

void decodeResponse(ondemand::value value, AuditRecord& record) {
  constexpr std::string_view kField = "transaction.response";
  ondemand::object response = readObject(value, kField);
  for (auto entry : response) {
    ondemand::field field;
    check(std::move(entry).get(field), kField);
    std::string_view key;
    check(field.unescaped_key().get(key), kField);
    if (key == "http_code") {
      record.response_status = readStatus(field.value(), "transaction.response.http_code");
    } else if (key == "headers") {
      record.response_headers.clear();
      readHeaderObject(field.value(), "transaction.response.headers", record.response_headers);
    }
  }
}

void decodeProducer(ondemand::value value, AuditRecord& record) {
  constexpr std::string_view kField = "transaction.producer";
  ondemand::object producer = readObject(value, kField);
  for (auto entry : producer) {
    ondemand::field field;
    check(std::move(entry).get(field), kField);
    std::string_view key;
    check(field.unescaped_key().get(key), kField);
    if (key == "modsecurity") {
      record.producer_version = readScalarText(field.value(), "transaction.producer.modsecurity");
    } else if (key == "connector") {
      record.connector = readScalarText(field.value(), "transaction.producer.connector");
    } else if (key == "secrules_engine") {
      record.secrules_engine =
          readScalarText(field.value(), "transaction.producer.secrules_engine");
    } else if (key == "components") {
      record.components.clear();
      readStringArray(field.value(), "transaction.producer.components", record.components);
      stripStrayQuotes(record.components);
    }
  }
}

// `details_field` and `tags_field` name the details object and its tags in
// error messages ("transaction.messages[2].details").
void decodeDetails(ondemand::value value, std::string_view details_field,
                   std::string_view tags_field, RuleMessage& message) {
  ondemand::object details = readObject(value, details_field);
  for (auto entry : details) {
    ondemand::field field;
    check(std::move(entry).get(field), details_field);
    std::string_view key;
    check(field.unescaped_key().get(key), details_field);
    std::string* target = nullptr;
    if (key == "ruleId") {
      target = &message.rule_id;
    } else if (key == "match") {
      target = &message.match;
    } else if (key == "data") {
      target = &message.data;
    } else if (key == "severity") {
      target = &message.severity;
    } else if (key == "file") {
      target = &message.file;
    } else if (key == "lineNumber") {
      target = &message.line;
    } else if (key == "ver") {
      target = &message.version;
    } else if (key == "tags") {
      readStringArray(field.value(), tags_field, message.tags);
      continue;
    }
    // libmodsecurity writes every detail as a string, but other writers use
    // numbers for ids and line numbers, and both are kept as text.
    if (target != nullptr && !readPlainString(field.value(), *target)) {
      *target = readScalarText(field.value(), childField(details_field, key));
    }
  }
}

void decodeMessages(ondemand::value value, AuditRecord& record) {
  constexpr std::string_view kField = "transaction.messages";
  ondemand::array messages = readArray(value, kField);
  std::size_t index = 0;
  // The field names of each message, for error messages. They are built in
  // the same three strings for every message, so only the first allocates.
  std::string item_field;
  std::string details_field;
  std::string tags_field;
  record.messages.reserve(8);
  for (auto element : messages) {
    ondemand::value item;
    check(std::move(element).get(item), kField);
    setIndexField(item_field, kField, index);
    ondemand::object object = readObject(item, item_field);
    RuleMessage& message = record.messages.emplace_back();
    for (auto entry : object) {
      ondemand::field field;
      check(std::move(entry).get(field), item_field);
      std::string_view key;
      check(field.unescaped_key().get(key), item_field);
      if (key == "message") {
        if (!readPlainString(field.value(), message.message)) {
          message.message = readScalarText(field.value(), childField(item_field, "message"));
        }
      } else if (key == "details") {
        details_field.assign(item_field).append(".details");
        tags_field.assign(details_field).append(".tags");
        decodeDetails(field.value(), details_field, tags_field, message);
      }
    }
    ++index;
  }
}

}  // namespace

void decodeModsec3Transaction(ondemand::value value, const TimeZone& zone, AuditRecord& record) {
  ondemand::object transaction = readObject(value, kTransaction);
  bool has_client_ip = false;
  bool has_time = false;
  bool has_request = false;
  for (auto entry : transaction) {
    ondemand::field field;
    check(std::move(entry).get(field), kTransaction);
    std::string_view key;
    check(field.unescaped_key().get(key), kTransaction);
    if (key == "client_ip") {
      readStringInto(field.value(), "transaction.client_ip", record.client_ip);
      has_client_ip = true;
    } else if (key == "time_stamp") {
      std::string text = readString(field.value(), "transaction.time_stamp");
      auto wall = parseCtimeWallSeconds(text);
      if (!wall) {
        fail("transaction.time_stamp",
             fmt::format("'{}' is not a time stamp of the form 'Fri Dec  4 15:41:52 2026'",
                         text.substr(0, 40)));
      }
      record.timestamp_us = zone.toUtcSeconds(*wall) * 1000000;
      has_time = true;
    } else if (key == "server_id") {
      record.server_id = readScalarText(field.value(), "transaction.server_id");
    } else if (key == "client_port") {
      record.client_port = readPort(field.value(), "transaction.client_port");
    } else if (key == "host_ip") {
      readStringInto(field.value(), "transaction.host_ip", record.server_ip);
    } else if (key == "host_port") {
      record.server_port = readPort(field.value(), "transaction.host_port");
    } else if (key == "unique_id") {
      record.transaction_id = readScalarText(field.value(), "transaction.unique_id");
    } else if (key == "request") {
      decodeRequest(field.value(), record);
      has_request = true;
    } else if (key == "response") {
      decodeResponse(field.value(), record);
    } else if (key == "producer") {
      decodeProducer(field.value(), record);
    } else if (key == "messages") {
      record.messages.clear();
      decodeMessages(field.value(), record);
    }
  }
  if (!has_client_ip) {
    fail("transaction.client_ip", "missing; every libmodsecurity v3 audit record has it");
  }
  if (!has_time) {
    fail("transaction.time_stamp", "missing; every libmodsecurity v3 audit record has it");
  }
  if (!has_request) {
    fail("transaction.request", "missing; the record must describe a request");
  }
  record.host = std::string(findHeader(record.request_headers, "Host"));
}

}  // namespace webtrap::collector::decoder
