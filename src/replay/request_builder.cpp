#include "replay/request_builder.h"

#include <algorithm>
#include <cctype>
#include <cstdint>

#include <fmt/format.h>

#include "common/encoding.h"

namespace webtrap::replay {
namespace {

constexpr std::string_view kCrlf = "\r\n";
constexpr std::string_view kFormType = "application/x-www-form-urlencoded";

const std::string* findHeader(const std::vector<std::pair<std::string, std::string>>& headers,
                              std::string_view name) {
  for (const auto& [key, value] : headers) {
    if (equalsIgnoreCase(key, name)) {
      return &value;
    }
  }
  return nullptr;
}

// True when `data` contains a %XX sequence. Python's unquote() changes such
// data, and ftw then sends the body unchanged.
bool hasPercentEscape(std::string_view data) {
  for (std::size_t i = 0; i + 2 < data.size(); ++i) {
    if (data[i] == '%' && hexDigitValue(data[i + 1]) >= 0 && hexDigitValue(data[i + 2]) >= 0) {
      return true;
    }
  }
  return false;
}

// Python's quote_plus with its default safe set: letters, digits and "_.-~"
// stay, space becomes '+', every other byte becomes %XX.
void appendQuotePlus(std::string& out, std::string_view text) {
  for (char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (std::isalnum(byte) != 0 || c == '_' || c == '.' || c == '-' || c == '~') {
      out += c;
    } else if (c == ' ') {
      out += '+';
    } else {
      out += fmt::format("%{:02X}", byte);
    }
  }
}

std::string plusToSpace(std::string_view text) {
  std::string out(text);
  std::replace(out.begin(), out.end(), '+', ' ');
  return out;
}

std::string buildFromFields(const FtwInput& input) {
  auto headers = input.headers;
  std::string data = input.data;
  const bool magic = !input.stop_magic && input.autocomplete_headers;

  if (magic && !data.empty()) {
    if (findHeader(headers, "Content-Type") == nullptr) {
      headers.emplace_back("Content-Type", std::string(kFormType));
    }
    const std::string* type = findHeader(headers, "Content-Type");
    if (*type == kFormType && !hasPercentEscape(data)) {
      data = reencodeForm(data);
    }
    if (findHeader(headers, "Content-Length") == nullptr) {
      headers.emplace_back("Content-Length", std::to_string(data.size()));
    }
  }

  std::string bytes;
  bytes.reserve(256 + data.size());
  bytes.append(input.method).append(" ").append(input.uri).append(" ").append(input.version);
  bytes.append(kCrlf);
  for (const auto& [name, value] : headers) {
    bytes.append(name).append(": ").append(value).append(kCrlf);
  }
  bytes.append(kCrlf);
  bytes.append(data);
  return bytes;
}

}  // namespace

std::optional<std::string> decodePythonEscapes(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '\\' || i + 1 >= text.size()) {
      out += text[i];
      continue;
    }
    const char next = text[i + 1];
    switch (next) {
      case '\n':
        ++i;
        continue;
      case '\\':
      case '\'':
      case '"':
        out += next;
        ++i;
        continue;
      case 'a':
        out += '\a';
        ++i;
        continue;
      case 'b':
        out += '\b';
        ++i;
        continue;
      case 'f':
        out += '\f';
        ++i;
        continue;
      case 'n':
        out += '\n';
        ++i;
        continue;
      case 'r':
        out += '\r';
        ++i;
        continue;
      case 't':
        out += '\t';
        ++i;
        continue;
      case 'v':
        out += '\v';
        ++i;
        continue;
      case 'x': {
        const int high = i + 2 < text.size() ? hexDigitValue(text[i + 2]) : -1;
        const int low = i + 3 < text.size() ? hexDigitValue(text[i + 3]) : -1;
        if (high < 0 || low < 0) {
          return std::nullopt;
        }
        out += static_cast<char>(high * 16 + low);
        i += 3;
        continue;
      }
      default:
        break;
    }
    if (next >= '0' && next <= '7') {
      int value = 0;
      std::size_t j = i + 1;
      for (; j < text.size() && j < i + 4 && text[j] >= '0' && text[j] <= '7'; ++j) {
        value = value * 8 + (text[j] - '0');
      }
      out += static_cast<char>(value & 0xFF);
      i = j - 1;
      continue;
    }
    out += '\\';
  }
  return out;
}

std::string reencodeForm(std::string_view data) {
  std::string out;
  std::size_t start = 0;
  while (start <= data.size()) {
    std::size_t end = data.find('&', start);
    if (end == std::string_view::npos) {
      end = data.size();
    }
    const std::string_view pair = data.substr(start, end - start);
    start = end + 1;
    const std::size_t equals = pair.find('=');
    if (equals == std::string_view::npos || equals + 1 == pair.size()) {
      continue;  // parse_qsl drops these unless keep_blank_values is set
    }
    if (!out.empty()) {
      out += '&';
    }
    appendQuotePlus(out, plusToSpace(pair.substr(0, equals)));
    out += '=';
    appendQuotePlus(out, plusToSpace(pair.substr(equals + 1)));
  }
  return out.empty() ? std::string(data) : out;
}

BuiltRequest buildRequest(const FtwInput& input) {
  BuiltRequest built;
  if (input.raw_request && input.encoded_request) {
    built.error = "stage has both raw_request and encoded_request; keep one";
    return built;
  }
  if (input.encoded_request) {
    std::string text;
    for (char c : *input.encoded_request) {
      if (std::isspace(static_cast<unsigned char>(c)) == 0) {
        text += c;
      }
    }
    text.append((4 - text.size() % 4) % 4, '=');  // YAML authors often drop the padding
    auto decoded = base64Decode(text);
    if (!decoded) {
      built.error = "encoded_request is not valid base64";
      return built;
    }
    auto unescaped = decodePythonEscapes(*decoded);
    if (!unescaped) {
      built.error = "encoded_request holds an invalid \\x escape";
      return built;
    }
    built.bytes = std::move(*unescaped);
    return built;
  }
  if (input.raw_request) {
    built.bytes = *input.raw_request;
    return built;
  }
  built.bytes = buildFromFields(input);
  return built;
}

}  // namespace webtrap::replay
