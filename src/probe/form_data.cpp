#include "probe/form_data.h"

#include <simdjson.h>

#include "common/encoding.h"

namespace webtrap::probe {
namespace {

std::string_view trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) {
    text.remove_prefix(1);
  }
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) {
    text.remove_suffix(1);
  }
  return text;
}

// Appends the fields named `name`, or every field when `name` is nullopt.
void urlencodedFields(std::string_view text, std::optional<std::string_view> name,
                      std::vector<FormField>& fields) {
  std::size_t pos = 0;
  while (pos <= text.size()) {
    std::size_t end = text.find('&', pos);
    if (end == std::string_view::npos) {
      end = text.size();
    }
    std::string_view pair = text.substr(pos, end - pos);
    std::size_t equals = pair.find('=');
    if (!pair.empty()) {
      std::string key = formDecode(pair.substr(0, equals));
      if (!name || key == *name) {
        fields.push_back({std::move(key), equals == std::string_view::npos
                                              ? std::string()
                                              : formDecode(pair.substr(equals + 1))});
      }
    }
    pos = end + 1;
  }
}

// Returns the value of `parameter` in a header value such as
// `multipart/form-data; boundary=xyz`, without quotes.
std::string headerParameter(std::string_view value, std::string_view parameter) {
  std::size_t pos = 0;
  while ((pos = value.find(';', pos)) != std::string_view::npos) {
    ++pos;
    std::string_view rest = trim(value.substr(pos));
    std::size_t equals = rest.find('=');
    if (equals == std::string_view::npos ||
        !equalsIgnoreCase(trim(rest.substr(0, equals)), parameter)) {
      continue;
    }
    std::string_view result = trim(rest.substr(equals + 1));
    result = result.substr(0, result.find(';'));
    if (result.size() >= 2 && result.front() == '"' && result.back() == '"') {
      result = result.substr(1, result.size() - 2);
    }
    return std::string(result);
  }
  return {};
}

// Reads the parts of a multipart/form-data body whose Content-Disposition
// names `name`. A part cut off by the capture limit is read up to the cut.
void multipartFields(std::string_view body, const std::string& boundary,
                     std::optional<std::string_view> name, std::vector<FormField>& fields) {
  if (boundary.empty()) {
    return;
  }
  std::string delimiter = "--" + boundary;
  std::size_t pos = body.find(delimiter);
  while (pos != std::string_view::npos) {
    std::size_t head_start = pos + delimiter.size();
    if (body.substr(head_start, 2) == "--") {
      return;
    }
    std::size_t head_end = body.find("\r\n\r\n", head_start);
    if (head_end == std::string_view::npos) {
      return;
    }
    std::size_t next = body.find("\r\n" + delimiter, head_end + 4);
    std::string_view head = body.substr(head_start, head_end - head_start);
    std::string_view content =
        body.substr(head_end + 4,
                    next == std::string_view::npos ? std::string_view::npos : next - head_end - 4);
    std::size_t line_start = 0;
    while (line_start < head.size()) {
      std::size_t line_end = head.find("\r\n", line_start);
      std::string_view line = head.substr(line_start, line_end - line_start);
      std::size_t colon = line.find(':');
      if (colon != std::string_view::npos &&
          equalsIgnoreCase(trim(line.substr(0, colon)), "Content-Disposition")) {
        std::string part_name = headerParameter(line.substr(colon + 1), "name");
        if (!name || part_name == *name) {
          fields.push_back({std::move(part_name), std::string(content)});
        }
      }
      if (line_end == std::string_view::npos) {
        break;
      }
      line_start = line_end + 2;
    }
    if (next == std::string_view::npos) {
      return;
    }
    pos = next + 2;
  }
}

void jsonFields(std::string_view body, std::optional<std::string_view> name,
                std::vector<FormField>& fields) {
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  if (parser.parse(body.data(), body.size()).get(root) != simdjson::SUCCESS) {
    return;
  }
  simdjson::dom::object object;
  if (root.get(object) != simdjson::SUCCESS) {
    return;
  }
  for (auto member : object) {
    if (name && member.key != *name) {
      continue;
    }
    std::string_view text;
    if (member.value.get(text) == simdjson::SUCCESS) {
      fields.push_back({std::string(member.key), std::string(text)});
    } else {
      fields.push_back({std::string(member.key), simdjson::minify(member.value)});
    }
  }
}

}  // namespace

std::string formDecode(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '+') {
      out += ' ';
    } else if (c == '%' && i + 2 < text.size() && hexDigitValue(text[i + 1]) >= 0 &&
               hexDigitValue(text[i + 2]) >= 0) {
      out += static_cast<char>(hexDigitValue(text[i + 1]) * 16 + hexDigitValue(text[i + 2]));
      i += 2;
    } else {
      out += c;
    }
  }
  return out;
}

namespace {

void collectFields(const CapturedRequest& request, std::optional<std::string_view> name,
                   std::vector<FormField>& fields) {
  std::size_t question = request.target.find('?');
  if (question != std::string::npos) {
    std::string_view query = std::string_view(request.target).substr(question + 1);
    urlencodedFields(query.substr(0, query.find('#')), name, fields);
  }
  if (request.body.empty()) {
    return;
  }

  const std::string* content_type = findHeader(request.headers, "Content-Type");
  std::string_view type = content_type ? std::string_view(*content_type) : std::string_view();
  std::string_view media = trim(type.substr(0, type.find(';')));
  if (equalsIgnoreCase(media, "multipart/form-data")) {
    multipartFields(request.body, headerParameter(type, "boundary"), name, fields);
  } else if (equalsIgnoreCase(media, "application/json") ||
             (media.size() > 5 && equalsIgnoreCase(media.substr(media.size() - 5), "+json"))) {
    jsonFields(request.body, name, fields);
  } else {
    // libmodsecurity also reads a body without Content-Type as urlencoded.
    urlencodedFields(request.body, name, fields);
  }
}

}  // namespace

std::vector<std::string> formFieldValues(const CapturedRequest& request, std::string_view name) {
  std::vector<FormField> fields;
  collectFields(request, name, fields);
  std::vector<std::string> values;
  values.reserve(fields.size());
  for (auto& field : fields) {
    values.push_back(std::move(field.value));
  }
  return values;
}

std::vector<FormField> formFields(const CapturedRequest& request) {
  std::vector<FormField> fields;
  collectFields(request, std::nullopt, fields);
  return fields;
}

std::vector<std::string> cookieValues(const std::vector<HeaderField>& headers,
                                      std::string_view name) {
  std::vector<std::string> values;
  for (const auto& field : headers) {
    if (!equalsIgnoreCase(field.name, "Cookie")) {
      continue;
    }
    std::string_view rest = field.value;
    while (!rest.empty()) {
      std::size_t end = rest.find(';');
      std::string_view pair = trim(rest.substr(0, end));
      std::size_t equals = pair.find('=');
      if (equals != std::string_view::npos && trim(pair.substr(0, equals)) == name) {
        values.emplace_back(trim(pair.substr(equals + 1)));
      }
      if (end == std::string_view::npos) {
        break;
      }
      rest.remove_prefix(end + 1);
    }
  }
  return values;
}

std::optional<std::pair<std::string, std::string>> decodeBasicCredentials(std::string_view value) {
  value = trim(value);
  if (value.size() < 6 || !equalsIgnoreCase(value.substr(0, 6), "Basic ")) {
    return std::nullopt;
  }
  // Some clients leave out the base64 padding.
  std::string encoded(trim(value.substr(6)));
  while (encoded.size() % 4 != 0) {
    encoded += '=';
  }
  auto decoded = base64Decode(encoded);
  if (!decoded) {
    return std::nullopt;
  }
  std::size_t colon = decoded->find(':');
  if (colon == std::string::npos) {
    return std::make_pair(*decoded, std::string());
  }
  return std::make_pair(decoded->substr(0, colon), decoded->substr(colon + 1));
}

std::string htmlEscape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

}  // namespace webtrap::probe
