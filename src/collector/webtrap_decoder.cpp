// The `webtrap` object of probe records (docs/records.md): what the probe
// adds to the libmodsecurity v3 layout, and the `encoded` map that restores
// the exact bytes of strings that were not valid UTF-8.
#include <algorithm>
#include <charconv>
#include <cstdint>
#include <string>

#include <fmt/format.h>

#include "collector/audit_decoder_internal.h"
#include "common/encoding.h"
#include "common/ids.h"

namespace webtrap::collector::decoder {

namespace {

constexpr std::string_view kWebtrap = "webtrap";
constexpr std::int64_t kSchemaVersion = 1;

// Calls `handle(item, item_field)` for each element of the array at `value`,
// where `item_field` names the element, such as "webtrap.baits[2]". One
// string contains every element's name in turn, so a long array of headers
// allocates it once.
template <class Handler>
void forEachElement(ondemand::value value, std::string_view field, Handler&& handle) {
  ondemand::array items = readArray(value, field);
  std::size_t index = 0;
  std::string item_field;
  for (auto element : items) {
    ondemand::value item;
    check(std::move(element).get(item), field);
    setIndexField(item_field, field, index);
    handle(item, item_field);
    ++index;
  }
}

// Reads the string member `name` of the object named `object_field`. The
// member's field name is built only for the error message.
void readMemberString(ondemand::value member, std::string_view object_field,
                      std::string_view name, std::string& out) {
  if (!readPlainString(member, out)) {
    readStringInto(member, childField(object_field, name), out);
  }
}

void decodeRequest(ondemand::value value, AuditRecord& record, WebtrapExtras& extras) {
  constexpr std::string_view kField = "webtrap.request";
  forEachMember(value, kField, [&](std::string_view key, ondemand::value member) {
    if (key == "line") {
      readStringInto(member, "webtrap.request.line", record.request_line);
    } else if (key == "headers") {
      // [[name, value], ...]: every field in arrival order. Each pair is
      // read straight into its HeaderField, with no vector of its own.
      extras.headers.reserve(16);
      forEachElement(member, "webtrap.request.headers",
                     [&](ondemand::value pair_value, const std::string& pair_field) {
                       HeaderField& header = extras.headers.emplace_back();
                       std::string extra;  // an item past the second, read to be counted
                       std::size_t count = 0;
                       ondemand::array items = readArray(pair_value, pair_field);
                       for (auto element : items) {
                         ondemand::value item;
                         check(std::move(element).get(item), pair_field);
                         std::string* target = &extra;
                         if (count == 0) {
                           target = &header.name;
                         } else if (count == 1) {
                           target = &header.value;
                         }
                         if (!readPlainString(item, *target)) {
                           *target = readScalarText(item, indexField(pair_field, count));
                         }
                         ++count;
                       }
                       if (count != 2) {
                         fail(pair_field,
                              fmt::format("expected [name, value], got {} items", count));
                       }
                     });
      extras.has_headers = true;
    } else if (key == "body_size") {
      record.request_body_bytes = readCount(member, "webtrap.request.body_size");
    } else if (key == "body_sha256") {
      readStringInto(member, "webtrap.request.body_sha256", record.request_body_sha256);
    } else if (key == "body_truncated") {
      record.request_body_truncated = readBool(member, "webtrap.request.body_truncated");
    }
  });
}

void decodeBaits(ondemand::value value, AuditRecord& record) {
  forEachElement(value, "webtrap.baits", [&](ondemand::value item, const std::string& item_field) {
    std::string kind;
    std::string detail;
    forEachMember(item, item_field, [&](std::string_view key, ondemand::value member) {
      if (key == "kind") {
        readMemberString(member, item_field, "kind", kind);
      } else if (key == "detail") {
        readMemberString(member, item_field, "detail", detail);
      }
    });
    record.bait_hits.push_back(std::move(kind));
    record.bait_details.push_back(std::move(detail));
  });
}

// A confidence: a JSON number (or numeric string) from 0 to 1.
double readConfidence(ondemand::value value, std::string_view field) {
  std::string text = readScalarText(value, field);
  double confidence = 0.0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), confidence);
  if (text.empty() || error != std::errc() || end != text.data() + text.size() ||
      !(confidence >= 0.0 && confidence <= 1.0)) {
    fail(field, fmt::format("expected a number from 0 to 1, got '{}'", text.substr(0, 40)));
  }
  return confidence;
}

// webtrap.oat: the probe's per-request OAT tags.
void decodeOat(ondemand::value value, AuditRecord& record) {
  forEachElement(value, "webtrap.oat", [&](ondemand::value item, const std::string& item_field) {
    OatTag tag;
    forEachMember(item, item_field, [&](std::string_view key, ondemand::value member) {
      if (key == "id") {
        readMemberString(member, item_field, "id", tag.id);
      } else if (key == "name") {
        readMemberString(member, item_field, "name", tag.name);
      } else if (key == "basis") {
        readMemberString(member, item_field, "basis", tag.basis);
      } else if (key == "confidence") {
        tag.confidence = readConfidence(member, childField(item_field, "confidence"));
      } else if (key == "reason") {
        readMemberString(member, item_field, "reason", tag.reason);
      } else if (key == "attack") {
        readStringArray(member, childField(item_field, "attack"), tag.attack);
      } else if (key == "version") {
        readMemberString(member, item_field, "version", tag.version);
      }
    });
    if (tag.id.empty()) {
      fail(childField(item_field, "id"), "missing; every OAT tag names its OAT id");
    }
    record.oat_tags.push_back(std::move(tag));
  });
}

void decodeCards(ondemand::value value, std::string_view field, FormFacts& form) {
  forEachElement(value, field, [&](ondemand::value item, const std::string& item_field) {
    CardFacts card;
    forEachMember(item, item_field, [&](std::string_view key, ondemand::value member) {
      if (key == "bin") {
        readMemberString(member, item_field, "bin", card.bin);
      } else if (key == "last4") {
        readMemberString(member, item_field, "last4", card.last4);
      } else if (key == "luhn_valid") {
        card.luhn_valid = readBool(member, childField(item_field, "luhn_valid"));
      } else if (key == "fingerprint") {
        readMemberString(member, item_field, "fingerprint", card.fingerprint);
      }
    });
    form.cards.push_back(std::move(card));
  });
}

// A count that fits FormFacts' 32-bit fields; larger values are capped.
std::uint32_t readCount32(ondemand::value value, std::string_view field) {
  return static_cast<std::uint32_t>(
      std::min<std::uint64_t>(readCount(value, field), UINT32_MAX));
}

// webtrap.form: what the probe read from a form POST.
void decodeForm(ondemand::value value, AuditRecord& record) {
  constexpr std::string_view kField = "webtrap.form";
  FormFacts& form = record.form;
  forEachMember(value, kField, [&](std::string_view key, ondemand::value member) {
    if (key == "kind") {
      readStringInto(member, "webtrap.form.kind", form.kind);
    } else if (key == "username") {
      readStringInto(member, "webtrap.form.username", form.username);
    } else if (key == "password_sha256") {
      readStringInto(member, "webtrap.form.password_sha256", form.password_sha256);
    } else if (key == "email") {
      readStringInto(member, "webtrap.form.email", form.email);
    } else if (key == "coupon") {
      readStringInto(member, "webtrap.form.coupon", form.coupon);
    } else if (key == "cards") {
      decodeCards(member, "webtrap.form.cards", form);
    } else if (key == "links") {
      form.links = readCount32(member, "webtrap.form.links");
    } else if (key == "text_bytes") {
      form.text_bytes = readCount32(member, "webtrap.form.text_bytes");
    }
  });
}

void decodeEncoded(ondemand::value value, WebtrapExtras& extras) {
  constexpr std::string_view kField = "webtrap.encoded";
  forEachMember(value, kField, [&](std::string_view key, ondemand::value member) {
    std::string pointer(key);
    std::string base64 = readString(member, childField(kField, pointer));
    extras.encoded.emplace_back(std::move(pointer), std::move(base64));
  });
}

// Splits a JSON pointer (RFC 6901) into its unescaped tokens.
std::vector<std::string> pointerTokens(std::string_view pointer) {
  std::vector<std::string> tokens;
  if (pointer.empty() || pointer.front() != '/') {
    return tokens;
  }
  std::size_t pos = 1;
  while (true) {
    std::size_t end = pointer.find('/', pos);
    std::string_view raw = pointer.substr(pos, end == std::string_view::npos ? end : end - pos);
    std::string& token = tokens.emplace_back();
    for (std::size_t i = 0; i < raw.size(); ++i) {
      if (raw[i] == '~' && i + 1 < raw.size() && (raw[i + 1] == '0' || raw[i + 1] == '1')) {
        token.push_back(raw[i + 1] == '0' ? '~' : '/');
        ++i;
      } else {
        token.push_back(raw[i]);
      }
    }
    if (end == std::string_view::npos) {
      break;
    }
    pos = end + 1;
  }
  return tokens;
}

std::optional<std::size_t> parseIndex(std::string_view token) {
  std::size_t index = 0;
  auto [end, error] = std::from_chars(token.data(), token.data() + token.size(), index);
  if (token.empty() || error != std::errc() || end != token.data() + token.size()) {
    return std::nullopt;
  }
  return index;
}

template <class T>
T* elementAt(std::vector<T>& items, std::string_view token) {
  auto index = parseIndex(token);
  return index && *index < items.size() ? &items[*index] : nullptr;
}

std::string* messageField(RuleMessage& message, const std::vector<std::string>& tokens) {
  // tokens: transaction, messages, i, then "message" or details/...
  if (tokens.size() == 4 && tokens[3] == "message") {
    return &message.message;
  }
  if (tokens.size() == 5 && tokens[3] == "details") {
    const std::string& key = tokens[4];
    if (key == "ruleId") {
      return &message.rule_id;
    }
    if (key == "match") {
      return &message.match;
    }
    if (key == "data") {
      return &message.data;
    }
    if (key == "file") {
      return &message.file;
    }
    if (key == "ver") {
      return &message.version;
    }
  }
  if (tokens.size() == 6 && tokens[3] == "details" && tokens[4] == "tags") {
    return elementAt(message.tags, tokens[5]);
  }
  return nullptr;
}

std::string* transactionField(AuditRecord& record, const std::vector<std::string>& tokens,
                              bool exact_headers) {
  const std::string& part = tokens[1];
  if (tokens.size() == 2) {
    if (part == "client_ip") {
      return &record.client_ip;
    }
    if (part == "host_ip") {
      return &record.server_ip;
    }
    if (part == "server_id") {
      return &record.server_id;
    }
    if (part == "unique_id") {
      return &record.transaction_id;
    }
    return nullptr;
  }
  if (part == "request" && tokens.size() == 3) {
    if (tokens[2] == "method") {
      return &record.method;
    }
    if (tokens[2] == "uri") {
      return &record.uri;
    }
    if (tokens[2] == "body") {
      return &record.request_body;
    }
    return nullptr;
  }
  // Joined header values: the response's are the only copy, the request's
  // are superseded by webtrap.request.headers when that list is present.
  if ((part == "response" || (part == "request" && !exact_headers)) && tokens.size() == 4 &&
      tokens[2] == "headers") {
    auto& headers = part == "response" ? record.response_headers : record.request_headers;
    for (HeaderField& header : headers) {
      if (header.name == tokens[3]) {
        return &header.value;
      }
    }
    return nullptr;
  }
  if (part == "messages" && tokens.size() >= 4) {
    RuleMessage* message = elementAt(record.messages, tokens[2]);
    return message != nullptr ? messageField(*message, tokens) : nullptr;
  }
  return nullptr;
}

std::string* webtrapField(AuditRecord& record, const std::vector<std::string>& tokens,
                          bool exact_headers) {
  const std::string& part = tokens[1];
  if (part == "request" && tokens.size() == 3 && tokens[2] == "line") {
    return &record.request_line;
  }
  if (part == "request" && tokens.size() == 5 && tokens[2] == "headers" && exact_headers) {
    HeaderField* header = elementAt(record.request_headers, tokens[3]);
    if (header == nullptr) {
      return nullptr;
    }
    return tokens[4] == "0" ? &header->name : tokens[4] == "1" ? &header->value : nullptr;
  }
  if (tokens.size() == 3 && part == "sensor") {
    return tokens[2] == "id" ? &record.sensor_id
           : tokens[2] == "group" ? &record.sensor_group
                                  : nullptr;
  }
  if (tokens.size() == 3 && part == "persona") {
    return tokens[2] == "name" ? &record.persona
           : tokens[2] == "product" ? &record.persona_product
                                    : nullptr;
  }
  if (tokens.size() == 3 && part == "listener" && tokens[2] == "name") {
    return &record.listener;
  }
  if (tokens.size() == 4 && part == "baits") {
    if (tokens[3] == "kind") {
      return elementAt(record.bait_hits, tokens[2]);
    }
    if (tokens[3] == "detail") {
      return elementAt(record.bait_details, tokens[2]);
    }
  }
  if (tokens.size() == 3 && part == "issued_tokens") {
    return elementAt(record.issued_tokens, tokens[2]);
  }
  if (tokens.size() == 3 && part == "form") {
    return tokens[2] == "username" ? &record.form.username
           : tokens[2] == "email"  ? &record.form.email
           : tokens[2] == "coupon" ? &record.form.coupon
                                   : nullptr;
  }
  if (tokens.size() == 4 && part == "oat" && tokens[3] == "reason") {
    OatTag* tag = elementAt(record.oat_tags, tokens[2]);
    return tag != nullptr ? &tag->reason : nullptr;
  }
  return nullptr;
}

// Returns the record field that the JSON pointer names, or nullptr for a
// string the record does not keep (it stays in `original`).
std::string* fieldForPointer(AuditRecord& record, std::string_view pointer, bool exact_headers) {
  std::vector<std::string> tokens = pointerTokens(pointer);
  if (tokens.size() < 2) {
    return nullptr;
  }
  if (tokens[0] == "transaction") {
    return transactionField(record, tokens, exact_headers);
  }
  if (tokens[0] == "webtrap") {
    return webtrapField(record, tokens, exact_headers);
  }
  return nullptr;
}

}  // namespace

void decodeWebtrapObject(ondemand::value value, AuditRecord& record, WebtrapExtras& extras) {
  extras.present = true;
  bool has_event_id = false;
  forEachMember(value, kWebtrap, [&](std::string_view key, ondemand::value member) {
    if (key == "schema_version") {
      std::uint64_t version = readCount(member, "webtrap.schema_version");
      if (version != kSchemaVersion) {
        fail("webtrap.schema_version",
             fmt::format("version {} is not supported; this collector reads version {}, so "
                         "upgrade the collector",
                         version, kSchemaVersion));
      }
    } else if (key == "event_id") {
      readStringInto(member, "webtrap.event_id", record.event_id);
      if (!isUuidText(record.event_id)) {
        fail("webtrap.event_id",
             fmt::format("'{}' is not a UUID such as 01938f5e-1c2a-7abc-8def-0123456789ab",
                         record.event_id.substr(0, 40)));
      }
      has_event_id = true;
    } else if (key == "@timestamp") {
      std::string text = readString(member, "webtrap.@timestamp");
      auto micros = parseIsoMicros(text);
      if (!micros) {
        fail("webtrap.@timestamp",
             fmt::format("'{}' is not an ISO 8601 time such as 2026-12-04T12:00:00.123456Z",
                         text.substr(0, 40)));
      }
      record.timestamp_us = *micros;
      extras.has_timestamp = true;
    } else if (key == "sensor") {
      forEachMember(member, "webtrap.sensor", [&](std::string_view name, ondemand::value v) {
        if (name == "id") {
          readStringInto(v, "webtrap.sensor.id", record.sensor_id);
        } else if (name == "group") {
          readStringInto(v, "webtrap.sensor.group", record.sensor_group);
        }
      });
    } else if (key == "persona") {
      forEachMember(member, "webtrap.persona", [&](std::string_view name, ondemand::value v) {
        if (name == "name") {
          readStringInto(v, "webtrap.persona.name", record.persona);
        } else if (name == "product") {
          readStringInto(v, "webtrap.persona.product", record.persona_product);
        }
      });
    } else if (key == "listener") {
      forEachMember(member, "webtrap.listener", [&](std::string_view name, ondemand::value v) {
        if (name == "name") {
          readStringInto(v, "webtrap.listener.name", record.listener);
        } else if (name == "bait") {
          record.bait_listener = readBool(v, "webtrap.listener.bait");
        }
      });
    } else if (key == "request") {
      decodeRequest(member, record, extras);
    } else if (key == "baits") {
      decodeBaits(member, record);
    } else if (key == "issued_tokens") {
      readStringArray(member, "webtrap.issued_tokens", record.issued_tokens);
    } else if (key == "oat") {
      record.oat_tagged = true;
      decodeOat(member, record);
    } else if (key == "form") {
      decodeForm(member, record);
    } else if (key == "inspection") {
      forEachMember(member, "webtrap.inspection", [&](std::string_view name, ondemand::value v) {
        if (name == "status") {
          readStringInto(v, "webtrap.inspection.status", record.inspection_status);
        } else if (name == "recovered") {
          record.inspection_recovered = readBool(v, "webtrap.inspection.recovered");
        } else if (name == "anomaly_score") {
          std::string text = readScalarText(v, "webtrap.inspection.anomaly_score");
          std::int64_t score = 0;
          auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), score);
          if (text.empty() || error != std::errc() || end != text.data() + text.size()) {
            fail("webtrap.inspection.anomaly_score",
                 fmt::format("expected a whole number, got '{}'", text.substr(0, 40)));
          }
          record.anomaly_score = score;
        } else if (name == "details_cut") {
          AuditRecord::DetailsCut cut;
          forEachMember(v, "webtrap.inspection.details_cut",
                        [&](std::string_view part, ondemand::value count) {
            if (part == "truncated_strings") {
              cut.truncated_strings = readCount(count, "webtrap.inspection.details_cut");
            } else if (part == "reduced_matches") {
              cut.reduced_matches = readCount(count, "webtrap.inspection.details_cut");
            } else if (part == "omitted_matches") {
              cut.omitted_matches = readCount(count, "webtrap.inspection.details_cut");
            }
          });
          record.details_cut = cut;
        }
      });
    } else if (key == "encoded") {
      decodeEncoded(member, extras);
    }
  });
  if (!has_event_id) {
    fail("webtrap.event_id", "missing; every probe record has one");
  }
  if (!extras.has_timestamp) {
    fail("webtrap.@timestamp", "missing; every probe record has one");
  }
}

void applyWebtrapExtras(WebtrapExtras& extras, AuditRecord& record) {
  if (extras.has_headers) {
    record.request_headers = std::move(extras.headers);
  }
  for (const auto& [pointer, base64] : extras.encoded) {
    auto bytes = base64Decode(base64);
    if (!bytes) {
      fail("webtrap.encoded",
           fmt::format("the value of '{}' is not standard padded base64", pointer.substr(0, 80)));
    }
    if (std::string* target = fieldForPointer(record, pointer, extras.has_headers)) {
      *target = std::move(*bytes);
    }
  }
  record.host = std::string(findHeader(record.request_headers, "Host"));
}

}  // namespace webtrap::collector::decoder
