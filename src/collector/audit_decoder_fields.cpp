// Typed readers over simdjson On-Demand values. Each takes the dotted name of
// the field it reads, so a rejected record names the field at fault.
#include <charconv>

#include <fmt/format.h>

#include "collector/audit_decoder_internal.h"
#include "common/encoding.h"

namespace webtrap::collector::decoder {

namespace {

// Maximum length of a value quoted in an error message.
constexpr std::size_t kMaxQuotedValue = 40;

std::string_view trimSpace(std::string_view text) {
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t' || text.back() == '\n' ||
                           text.back() == '\r')) {
    text.remove_suffix(1);
  }
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) {
    text.remove_prefix(1);
  }
  return text;
}

// Quotes a value for an error message, shortened and with control bytes
// escaped, so the message stays one readable line.
std::string quote(std::string_view value) {
  std::string shown = "'";
  std::size_t limit = std::min(value.size(), kMaxQuotedValue);
  for (std::size_t i = 0; i < limit; ++i) {
    unsigned char c = static_cast<unsigned char>(value[i]);
    if (c < 0x20 || c == 0x7f) {
      shown += fmt::format("\\x{:02x}", c);
    } else {
      shown += static_cast<char>(c);
    }
  }
  shown += value.size() > limit ? "...'" : "'";
  return shown;
}

std::string_view typeName(ondemand::json_type type) {
  switch (type) {
    case ondemand::json_type::array:
      return "an array";
    case ondemand::json_type::object:
      return "an object";
    case ondemand::json_type::number:
      return "a number";
    case ondemand::json_type::string:
      return "a string";
    case ondemand::json_type::boolean:
      return "a boolean";
    case ondemand::json_type::null:
      return "null";
  }
  return "an unknown type";
}

ondemand::json_type typeOf(ondemand::value& value, std::string_view field) {
  ondemand::json_type type = ondemand::json_type::null;
  check(value.type().get(type), field);
  return type;
}

// Returns the text of a number or of a string that should hold one.
std::string_view numericText(ondemand::value& value, std::string_view field,
                             std::string_view expected) {
  ondemand::json_type type = typeOf(value, field);
  std::string_view text;
  if (type == ondemand::json_type::number) {
    return trimSpace(value.raw_json_token());
  }
  if (type == ondemand::json_type::string) {
    check(value.get_string().get(text), field);
    return trimSpace(text);
  }
  fail(field, fmt::format("expected {}, got {}", expected, typeName(type)));
}

std::uint64_t parseUnsignedText(std::string_view text, std::string_view field,
                                std::string_view expected, std::uint64_t max) {
  std::uint64_t number = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), number);
  if (text.empty() || error != std::errc() || end != text.data() + text.size() || number > max) {
    fail(field, fmt::format("expected {}, got {}", expected, quote(text)));
  }
  return number;
}

}  // namespace

bool readPlainString(ondemand::value& value, std::string& out) {
  ondemand::json_type type = ondemand::json_type::null;
  if (value.type().get(type) != simdjson::SUCCESS || type != ondemand::json_type::string) {
    return false;
  }
  std::string_view text;
  if (value.get_string().get(text) != simdjson::SUCCESS) {
    return false;
  }
  out.assign(text);
  return true;
}

void fail(std::string_view field, std::string_view problem) {
  throw DecodeFailure{fmt::format("{}: {}", field, problem)};
}

void check(simdjson::error_code code, std::string_view field) {
  if (code == simdjson::SUCCESS) {
    return;
  }
  // Type errors are reported by the readers with the type found; these are
  // the parser's own errors (bad syntax, bad escapes, truncated text).
  fail(field, fmt::format("invalid JSON: {}", simdjson::error_message(code)));
}

std::string childField(std::string_view parent, std::string_view name) {
  std::string field;
  field.reserve(parent.size() + name.size() + 1);
  field.append(parent);
  if (!field.empty()) {
    field.push_back('.');
  }
  field.append(name);
  return field;
}

void setIndexField(std::string& out, std::string_view parent, std::size_t index) {
  char digits[24];
  auto end = std::to_chars(digits, digits + sizeof digits, index).ptr;
  out.assign(parent);
  out.push_back('[');
  out.append(digits, end);
  out.push_back(']');
}

std::string indexField(std::string_view parent, std::size_t index) {
  std::string field;
  setIndexField(field, parent, index);
  return field;
}

ondemand::object readObject(ondemand::value value, std::string_view field) {
  ondemand::json_type type = typeOf(value, field);
  if (type != ondemand::json_type::object) {
    fail(field, fmt::format("expected an object, got {}", typeName(type)));
  }
  ondemand::object object;
  check(value.get_object().get(object), field);
  return object;
}

ondemand::array readArray(ondemand::value value, std::string_view field) {
  ondemand::json_type type = typeOf(value, field);
  if (type != ondemand::json_type::array) {
    fail(field, fmt::format("expected an array, got {}", typeName(type)));
  }
  ondemand::array array;
  check(value.get_array().get(array), field);
  return array;
}

void readStringInto(ondemand::value value, std::string_view field, std::string& out) {
  ondemand::json_type type = typeOf(value, field);
  if (type != ondemand::json_type::string) {
    fail(field, fmt::format("expected a string, got {}", typeName(type)));
  }
  std::string_view text;
  check(value.get_string().get(text), field);
  out.assign(text);
}

std::string readString(ondemand::value value, std::string_view field) {
  std::string out;
  readStringInto(value, field, out);
  return out;
}

std::string readScalarText(ondemand::value value, std::string_view field) {
  ondemand::json_type type = typeOf(value, field);
  std::string_view text;
  switch (type) {
    case ondemand::json_type::string:
      check(value.get_string().get(text), field);
      return std::string(text);
    case ondemand::json_type::number:
    case ondemand::json_type::boolean:
      return std::string(trimSpace(value.raw_json_token()));
    case ondemand::json_type::null:
      return {};
    default:
      fail(field, fmt::format("expected a string, got {}", typeName(type)));
  }
}

std::uint16_t readPort(ondemand::value value, std::string_view field) {
  constexpr std::string_view kExpected = "a port number 0-65535 (a number or a string of digits)";
  std::string_view text = numericText(value, field, kExpected);
  return static_cast<std::uint16_t>(parseUnsignedText(text, field, kExpected, 65535));
}

int readStatus(ondemand::value value, std::string_view field) {
  constexpr std::string_view kExpected = "an HTTP status 0-999 (a number or a string of digits)";
  std::string_view text = numericText(value, field, kExpected);
  return static_cast<int>(parseUnsignedText(text, field, kExpected, 999));
}

std::uint64_t readCount(ondemand::value value, std::string_view field) {
  constexpr std::string_view kExpected = "a whole number (a number or a string of digits)";
  std::string_view text = numericText(value, field, kExpected);
  return parseUnsignedText(text, field, kExpected, UINT64_MAX);
}

bool readBool(ondemand::value value, std::string_view field) {
  ondemand::json_type type = typeOf(value, field);
  if (type != ondemand::json_type::boolean) {
    fail(field, fmt::format("expected true or false, got {}", typeName(type)));
  }
  bool flag = false;
  check(value.get_bool().get(flag), field);
  return flag;
}

std::string readHttpVersion(ondemand::value value, std::string_view field) {
  ondemand::json_type type = typeOf(value, field);
  std::string_view text;
  if (type == ondemand::json_type::null) {
    return {};
  }
  if (type == ondemand::json_type::number) {
    return std::string(trimSpace(value.raw_json_token()));
  }
  if (type != ondemand::json_type::string) {
    fail(field, fmt::format("expected a version number such as 1.1, got {}", typeName(type)));
  }
  check(value.get_string().get(text), field);
  if (text.substr(0, 5) == "HTTP/") {
    text.remove_prefix(5);
  }
  return std::string(text);
}

void readHeaderObject(ondemand::value value, std::string_view field,
                      std::vector<HeaderField>& out) {
  ondemand::object object = readObject(value, field);
  // Room for 16 headers at once: growing from empty to 16 would move
  // every HeaderField four times.
  out.reserve(out.size() + 16);
  // Iterating (rather than looking keys up) visits every field in document
  // order, so a name that the producer repeated yields every value.
  for (auto entry : object) {
    ondemand::field header;
    check(std::move(entry).get(header), field);
    std::string_view name;
    check(header.unescaped_key().get(name), field);
    HeaderField& added = out.emplace_back();
    added.name.assign(name);
    if (!readPlainString(header.value(), added.value)) {
      added.value = readScalarText(header.value(), childField(field, name));
    }
  }
}

void readStringArray(ondemand::value value, std::string_view field,
                     std::vector<std::string>& out) {
  ondemand::array array = readArray(value, field);
  std::size_t index = 0;
  for (auto element : array) {
    ondemand::value item;
    check(std::move(element).get(item), field);
    std::string& added = out.emplace_back();
    if (!readPlainString(item, added)) {
      added = readScalarText(item, indexField(field, index));
    }
    ++index;
  }
}

std::string_view findHeader(const std::vector<HeaderField>& headers, std::string_view name) {
  for (const HeaderField& header : headers) {
    if (equalsIgnoreCase(header.name, name)) {
      return header.value;
    }
  }
  return {};
}

}  // namespace webtrap::collector::decoder
