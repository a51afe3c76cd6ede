// A persona builds each response from the table that loadPersonaData() built. Apache 2.4
// behaviour imitated here was checked against Debian 12's apache2 package
// (tests/fixtures/apache contains the captured responses).
#include "probe/persona.h"

#include <openssl/rand.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <chrono>
#include <ctime>
#include <optional>

#include <fmt/format.h>

#include "common/encoding.h"
#include "probe/baits.h"
#include "probe/form_data.h"
#include "probe/form_facts.h"
#include "probe/persona_data.h"
#include "probe/persona_forms.h"

namespace webtrap::probe {
namespace {

// Methods Apache 2.4 registers by default. Any other method, including a
// lowercase "get", gets 501 before routing.
constexpr std::array<std::string_view, 27> kKnownMethods = {"GET",
                                                            "PUT",
                                                            "POST",
                                                            "DELETE",
                                                            "CONNECT",
                                                            "OPTIONS",
                                                            "TRACE",
                                                            "PATCH",
                                                            "PROPFIND",
                                                            "PROPPATCH",
                                                            "MKCOL",
                                                            "COPY",
                                                            "MOVE",
                                                            "LOCK",
                                                            "UNLOCK",
                                                            "VERSION-CONTROL",
                                                            "CHECKOUT",
                                                            "UNCHECKOUT",
                                                            "CHECKIN",
                                                            "UPDATE",
                                                            "LABEL",
                                                            "REPORT",
                                                            "MKWORKSPACE",
                                                            "MKACTIVITY",
                                                            "BASELINE-CONTROL",
                                                            "MERGE",
                                                            "HEAD"};

// Allow values as Apache sends them: for a file, and for a path with no file.
// Apache's order comes from a hash table and changes between server starts.
constexpr std::string_view kAllow = "GET,POST,OPTIONS,HEAD";
constexpr std::string_view kAllowNoFile = "OPTIONS,HEAD,GET,POST";
// Apache's LimitRequestLine and LimitRequestFieldSize defaults. The probe's
// own limits may be larger, so the persona applies Apache's.
constexpr std::size_t kLimitRequestLine = 8190;
constexpr std::size_t kLimitRequestFieldSize = 8190;

std::string_view reasonPhrase(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 301:
      return "Moved Permanently";
    case 302:
      return "Found";
    case 304:
      return "Not Modified";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 413:
      return "Request Entity Too Large";
    case 414:
      return "Request-URI Too Long";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 503:
      return "Service Unavailable";
    default:
      return "Unknown";
  }
}

// Apache closes the connection after these statuses (ap_status_drops_connection).
bool dropsConnection(int status) {
  return status == 400 || status == 408 || status == 411 || status == 413 || status == 414 ||
         status == 500 || status == 501 || status == 503;
}

std::string httpDate(std::time_t time) {
  static constexpr std::array<const char*, 7> kDays = {"Sun", "Mon", "Tue", "Wed",
                                                       "Thu", "Fri", "Sat"};
  static constexpr std::array<const char*, 12> kMonths = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                          "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  std::tm tm{};
  gmtime_r(&time, &tm);
  return fmt::format("{}, {:02} {} {} {:02}:{:02}:{:02} GMT", kDays[tm.tm_wday], tm.tm_mday,
                     kMonths[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

bool hasToken(const std::vector<HeaderField>& headers, std::string_view name,
              std::string_view token) {
  for (const auto& field : headers) {
    if (!equalsIgnoreCase(field.name, name)) {
      continue;
    }
    std::string_view rest = field.value;
    while (!rest.empty()) {
      std::size_t comma = rest.find(',');
      std::string_view item = rest.substr(0, comma);
      while (!item.empty() && item.front() == ' ')
        item.remove_prefix(1);
      while (!item.empty() && item.back() == ' ')
        item.remove_suffix(1);
      if (equalsIgnoreCase(item, token)) {
        return true;
      }
      if (comma == std::string_view::npos) {
        break;
      }
      rest.remove_prefix(comma + 1);
    }
  }
  return false;
}

int hexDigit(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

// Host and port as Apache takes them from the Host header or an
// absolute-form target: the host lowercased, the port as given.
struct Authority {
  bool valid = true;
  std::string host;
  std::string port;
};

Authority parseAuthority(std::string_view text) {
  Authority result;
  std::string_view host = text;
  std::string_view port;
  if (!text.empty() && text.front() == '[') {
    std::size_t close = text.find(']');
    if (close == std::string_view::npos) {
      return {false, {}, {}};
    }
    host = text.substr(0, close + 1);
    std::string_view rest = text.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') {
        return {false, {}, {}};
      }
      port = rest.substr(1);
    }
    if (host.substr(1, host.size() - 2).find_first_not_of("0123456789abcdefABCDEF:.") !=
        std::string_view::npos) {
      return {false, {}, {}};
    }
  } else {
    std::size_t colon = text.rfind(':');
    if (colon != std::string_view::npos) {
      host = text.substr(0, colon);
      port = text.substr(colon + 1);
    }
    constexpr std::string_view kHostChars =
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_";
    if (host.empty() || host.find_first_not_of(kHostChars) != std::string_view::npos) {
      return {false, {}, {}};
    }
  }
  if (port.size() > 5 || port.find_first_not_of("0123456789") != std::string_view::npos) {
    return {false, {}, {}};
  }
  result.host = asciiLowercase(host);
  result.port = std::string(port);
  return result;
}

// Outcome of reading the request-target.
struct Target {
  int error_status = 0;                // 400 or 404 when the target cannot be served
  std::optional<Authority> authority;  // from an absolute-form target
  std::string path;                    // percent-decoded, dot segments removed, slashes merged
  std::string query;                   // without '?'
};

// Decodes and normalises the path like Apache's ap_unescape_url and
// ap_getparents: a bad %-escape is 400, an encoded NUL or '/' is 404, and
// ".." above the root is 400.
Target parseTarget(std::string_view target) {
  Target result;
  std::string_view rest = target;
  if (rest.size() > 7 && (equalsIgnoreCase(rest.substr(0, 7), "http://") ||
                          (rest.size() > 8 && equalsIgnoreCase(rest.substr(0, 8), "https://")))) {
    rest.remove_prefix(rest[4] == ':' ? 7 : 8);
    std::size_t end = rest.find_first_of("/?");
    Authority authority = parseAuthority(rest.substr(0, end));
    if (!authority.valid) {
      result.error_status = 400;
      return result;
    }
    result.authority = authority;
    rest = end == std::string_view::npos ? std::string_view("/") : rest.substr(end);
    if (rest.front() == '?') {
      result.query = std::string(rest.substr(1));
      rest = "/";
    }
  }
  if (rest.empty() || rest.front() != '/') {
    result.error_status = 400;
    return result;
  }
  std::size_t question = rest.find('?');
  if (question != std::string_view::npos) {
    result.query = std::string(rest.substr(question + 1));
    rest = rest.substr(0, question);
  }

  std::string decoded;
  decoded.reserve(rest.size());
  bool bad_byte = false;
  for (std::size_t i = 0; i < rest.size(); ++i) {
    if (rest[i] != '%') {
      decoded += rest[i];
      continue;
    }
    if (i + 2 >= rest.size() || hexDigit(rest[i + 1]) < 0 || hexDigit(rest[i + 2]) < 0) {
      result.error_status = 400;
      return result;
    }
    char byte = static_cast<char>(hexDigit(rest[i + 1]) * 16 + hexDigit(rest[i + 2]));
    bad_byte = bad_byte || byte == '\0' || byte == '/';
    decoded += byte;
    i += 2;
  }
  if (bad_byte) {
    result.error_status = 404;
    return result;
  }

  std::vector<std::string_view> parts;
  std::string_view view = decoded;
  bool trailing_slash = view.size() > 1 && view.back() == '/';
  std::size_t pos = 1;
  while (pos <= view.size()) {
    std::size_t end = view.find('/', pos);
    if (end == std::string_view::npos) {
      end = view.size();
    }
    std::string_view part = view.substr(pos, end - pos);
    if (part == "..") {
      if (parts.empty()) {
        result.error_status = 400;
        return result;
      }
      parts.pop_back();
    } else if (!part.empty() && part != ".") {
      parts.push_back(part);
    }
    pos = end + 1;
  }
  result.path = "/";
  for (std::size_t i = 0; i < parts.size(); ++i) {
    result.path += parts[i];
    if (i + 1 < parts.size()) {
      result.path += '/';
    }
  }
  if (trailing_slash && !parts.empty()) {
    result.path += '/';
  }
  return result;
}

// Percent-encodes bytes that may not appear in a Location header.
std::string encodeUrlPath(std::string_view path) {
  std::string out;
  for (unsigned char c : path) {
    if (std::isalnum(c) || std::string_view("/-._~!$&'()*+,;=:@").find(static_cast<char>(c)) !=
                               std::string_view::npos) {
      out += static_cast<char>(c);
    } else {
      out += fmt::format("%{:02X}", c);
    }
  }
  return out;
}

// mod_deflate (Apache 2.4.71) leaves bodies of 68 bytes or less alone and
// then sends no Vary either. Measured with text files of 40 to 79 bytes.
constexpr std::size_t kDeflateMaxSkipped = 68;

bool acceptsGzip(const std::vector<HeaderField>& headers) {
  for (const auto& field : headers) {
    if (!equalsIgnoreCase(field.name, "Accept-Encoding")) {
      continue;
    }
    std::string_view rest = field.value;
    while (!rest.empty()) {
      std::size_t comma = rest.find(',');
      std::string_view item = rest.substr(0, comma);
      item = item.substr(0, item.find(';'));
      while (!item.empty() && item.front() == ' ')
        item.remove_prefix(1);
      while (!item.empty() && item.back() == ' ')
        item.remove_suffix(1);
      if (equalsIgnoreCase(item, "gzip") || equalsIgnoreCase(item, "x-gzip")) {
        return true;
      }
      if (comma == std::string_view::npos) {
        break;
      }
      rest.remove_prefix(comma + 1);
    }
  }
  return false;
}

// Compresses like mod_deflate with its defaults (zlib level 6, 15-bit
// window, memLevel 9): a 10-byte gzip header with mtime 0 and OS 3 (Unix),
// raw deflate data, then CRC-32 and length. Returns nullopt if zlib fails.
std::optional<std::string> gzipLikeApache(std::string_view body) {
  z_stream stream{};
  if (deflateInit2(&stream, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -MAX_WBITS, 9, Z_DEFAULT_STRATEGY) !=
      Z_OK) {
    return std::nullopt;
  }
  std::string out("\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03", 10);
  std::size_t header = out.size();
  out.resize(header + deflateBound(&stream, body.size()));
  stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(body.data()));
  stream.avail_in = static_cast<uInt>(body.size());
  stream.next_out = reinterpret_cast<Bytef*>(out.data() + header);
  stream.avail_out = static_cast<uInt>(out.size() - header);
  int result = deflate(&stream, Z_FINISH);
  std::size_t produced = stream.total_out;
  deflateEnd(&stream);
  if (result != Z_STREAM_END) {
    return std::nullopt;
  }
  out.resize(header + produced);
  uLong crc =
      crc32(0L, reinterpret_cast<const Bytef*>(body.data()), static_cast<uInt>(body.size()));
  std::uint32_t length = static_cast<std::uint32_t>(body.size());
  for (std::uint32_t value : {static_cast<std::uint32_t>(crc), length}) {
    for (int shift = 0; shift < 32; shift += 8) {
      out += static_cast<char>((value >> shift) & 0xff);
    }
  }
  return out;
}

// Parses an HTTP date in the IMF-fixdate form that Apache and browsers send.
std::optional<std::time_t> parseHttpDate(const std::string& text) {
  std::tm tm{};
  const char* end = strptime(text.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &tm);
  if (end == nullptr || *end != '\0') {
    return std::nullopt;
  }
  return timegm(&tm);
}

std::string newSessionId() {
  // PHP 8.2 defaults: 26 characters, 5 bits each ([0-9a-v]).
  static constexpr std::string_view kChars = "0123456789abcdefghijklmnopqrstuv";
  unsigned char bytes[26];
  if (RAND_bytes(bytes, sizeof(bytes)) != 1) {
    for (auto& byte : bytes) {
      byte = 0;
    }
  }
  std::string id;
  for (unsigned char byte : bytes) {
    id += kChars[byte % kChars.size()];
  }
  return id;
}

// Values the templates and header builders read for one request.
struct RequestView {
  const CapturedRequest* request = nullptr;
  std::string method;
  std::string host;
  std::string port;
  std::string path;
  std::string query;  // without '?', as received
  std::string location;
  std::string detail;
  std::string notice;                // HTML from the route's answers
  const Product* product = nullptr;  // the product that {{product.*}} names
  bool head = false;
};

class DataPersona : public Persona {
 public:
  explicit DataPersona(PersonaData data) : data_(std::move(data)) {}

  const std::string& name() const override { return data_.name; }
  const std::string& product() const override { return data_.product; }

  PersonaResponse respond(const CapturedRequest& request, Baits& baits,
                          RouteOutcome& outcome) const override;
  PersonaResponse respondToParseError(const CapturedRequest& request,
                                      RouteOutcome& outcome) const override;

 private:
  const PersonaRoute* findRoute(const std::string& path, bool& directory_redirect) const;
  RequestView viewOf(const CapturedRequest& request) const;
  std::string render(const PersonaTemplate& page, const RequestView& view, Baits* baits,
                     RouteOutcome& outcome) const;
  PersonaResponse errorResponse(int status, const RequestView& view, RouteOutcome& outcome,
                                std::vector<HeaderField> extra = {}) const;
  PersonaResponse routeResponse(const PersonaRoute& route, const RequestView& view, Baits& baits,
                                RouteOutcome& outcome) const;
  // Returns Apache's 304 when the request's If-None-Match or
  // If-Modified-Since matches the static route, else nullopt.
  std::optional<PersonaResponse> notModified(const PersonaRoute& route, const RequestView& view,
                                             RouteOutcome& outcome) const;
  bool compressible(const PersonaRoute& route, std::size_t body_size) const;
  // `allow` empty: the response to OPTIONS *, which has no Allow header.
  PersonaResponse optionsResponse(const RequestView& view, std::string_view allow,
                                  std::string_view content_type) const;
  void finish(PersonaResponse& response, HeaderProfile profile, const RequestView& view,
              const std::map<std::string, std::string>& values,
              const std::vector<HeaderField>& route_headers) const;

  PersonaData data_;
};

RequestView DataPersona::viewOf(const CapturedRequest& request) const {
  RequestView view;
  view.request = &request;
  view.method = request.method;
  view.head = request.method == "HEAD";
  view.host = data_.server_name.empty() ? request.server.address : data_.server_name;
  if (view.host.find(':') != std::string::npos && view.host.front() != '[') {
    view.host = "[" + view.host + "]";
  }
  view.port = std::to_string(request.server.port);
  return view;
}

std::string DataPersona::render(const PersonaTemplate& page, const RequestView& view, Baits* baits,
                                RouteOutcome& outcome) const {
  std::string out;
  for (const auto& segment : page.segments) {
    if (!segment.is_variable) {
      out += segment.text;
      continue;
    }
    const std::string& name = segment.text;
    if (name == "host") {
      out += htmlEscape(view.host);
    } else if (name == "port") {
      out += htmlEscape(view.port);
    } else if (name == "path") {
      out += htmlEscape(view.path);
    } else if (name == "method") {
      out += htmlEscape(view.method);
    } else if (name == "client_ip") {
      out += htmlEscape(view.request->client.address);
    } else if (name == "user_agent") {
      const std::string* agent = findHeader(view.request->headers, "User-Agent");
      out += agent ? htmlEscape(*agent) : std::string();
    } else if (name == "server") {
      out += htmlEscape(data_.server_header);
    } else if (name == "date") {
      out += httpDate(std::time(nullptr));
    } else if (name == "location") {
      out += htmlEscape(view.location);
    } else if (name == "detail") {
      out += view.detail;  // fixed texts chosen by the persona, never request bytes
    } else if (name == "notice") {
      out += view.notice;  // persona data, never request bytes
    } else if (name == "products") {
      RequestView item = view;
      for (const Product& product : data_.products) {
        item.product = &product;
        out += render(data_.product_list_item, item, baits, outcome);
      }
    } else if (name.starts_with("product.")) {
      if (view.product != nullptr) {
        std::string_view field = std::string_view(name).substr(8);
        const Product& product = *view.product;
        out += htmlEscape(field == "id"      ? product.id
                          : field == "name"  ? product.name
                          : field == "price" ? product.price
                                             : product.description);
      }
    } else if (name == "bait_field_name") {
      out += htmlEscape(data_.bait_field.name);
    } else if (name == "bait_field_value") {
      out += htmlEscape(data_.bait_field.value);
    } else if (name.starts_with("honeytoken.") && baits != nullptr) {
      TokenKind kind;
      if (tokenKindFromName(std::string_view(name).substr(11), kind)) {
        std::string token = baits->issueToken(kind, view.request->client.address);
        outcome.issued_tokens.push_back(token);
        out += token;
      }
    }
  }
  return out;
}

void DataPersona::finish(PersonaResponse& response, HeaderProfile profile, const RequestView& view,
                         const std::map<std::string, std::string>& values,
                         const std::vector<HeaderField>& route_headers) const {
  if (auto phrase = data_.reason_phrases.find(response.status);
      phrase != data_.reason_phrases.end()) {
    response.reason = phrase->second;
  } else {
    response.reason = std::string(reasonPhrase(response.status));
  }
  const CapturedRequest& request = *view.request;

  // Keep-alive as Apache's ap_set_keepalive decides it, with the countdown
  // of MaxKeepAliveRequests in `max`.
  std::string keep_alive;
  std::string connection;
  int left = data_.keep_alive_max - static_cast<int>(request.request_index);
  bool http10 = request.http_version == "1.0" || request.http_version.empty();
  bool client_keep_alive = hasToken(request.headers, "Connection", "keep-alive");
  bool client_close = hasToken(request.headers, "Connection", "close");
  if (dropsConnection(response.status) || client_close || left <= 0 ||
      (http10 && !client_keep_alive) || response.close_connection) {
    connection = "close";
    response.close_connection = true;
  } else if (client_keep_alive) {
    keep_alive = fmt::format("timeout={}, max={}", data_.keep_alive_timeout, left);
    connection = "Keep-Alive";
  }

  for (const auto& name : data_.header_order.at(profile)) {
    if (name == "*") {
      response.headers.insert(response.headers.end(), route_headers.begin(), route_headers.end());
      continue;
    }
    std::string value;
    if (name == "Date") {
      value = httpDate(std::time(nullptr));
    } else if (name == "Server") {
      value = data_.server_header;
    } else if (name == "Keep-Alive") {
      value = keep_alive;
    } else if (name == "Connection") {
      value = connection;
    } else if (auto it = values.find(name); it != values.end()) {
      value = it->second;
      if (value.empty() && name == "Allow") {
        // Apache sends "Allow: " with no methods for TRACE with TraceEnable Off.
        response.headers.push_back({name, value});
        continue;
      }
    }
    if (!value.empty()) {
      response.headers.push_back({name, value});
    }
  }
  response.omit_body = view.head;
}

PersonaResponse DataPersona::errorResponse(int status, const RequestView& view,
                                           RouteOutcome& outcome,
                                           std::vector<HeaderField> extra) const {
  PersonaResponse response;
  response.status = status;
  auto page = data_.error_pages.find(status);
  if (page == data_.error_pages.end()) {
    page = data_.error_pages.find(500);
    response.status = 500;
  }
  response.body = render(page->second, view, nullptr, outcome);

  std::map<std::string, std::string> values;
  // Apache sends no Content-Length on 413, and none on HEAD for an error.
  if (response.status != 413 && !view.head) {
    values["Content-Length"] = std::to_string(response.body.size());
  }
  values["Content-Type"] = data_.error_content_type;
  for (auto& field : extra) {
    values[field.name] = field.value;
  }
  finish(response, HeaderProfile::kError, view, values, {});
  return response;
}

PersonaResponse DataPersona::optionsResponse(const RequestView& view, std::string_view allow,
                                             std::string_view content_type) const {
  PersonaResponse response;
  response.status = 200;
  std::map<std::string, std::string> values = {{"Content-Length", "0"}};
  if (!allow.empty()) {
    values["Allow"] = std::string(allow);
  }
  if (!content_type.empty()) {
    values["Content-Type"] = std::string(content_type);
  }
  finish(response, HeaderProfile::kOptions, view, values, {});
  return response;
}

// Apache's FileETag MTime Size: hex size, then hex mtime in microseconds.
std::string staticEtag(const PersonaRoute& route, std::size_t size) {
  return fmt::format("\"{:x}-{:x}\"", size,
                     static_cast<std::uint64_t>(route.last_modified) * 1000000);
}

bool DataPersona::compressible(const PersonaRoute& route, std::size_t body_size) const {
  std::string_view media = route.content_type;
  media = media.substr(0, media.find(';'));
  bool listed = std::find(data_.deflate_types.begin(), data_.deflate_types.end(), media) !=
                data_.deflate_types.end();
  return listed && body_size > kDeflateMaxSkipped;
}

std::optional<PersonaResponse> DataPersona::notModified(const PersonaRoute& route,
                                                        const RequestView& view,
                                                        RouteOutcome& outcome) const {
  if (view.method != "GET" && view.method != "HEAD") {
    return std::nullopt;
  }
  const CapturedRequest& request = *view.request;
  // Only a body without template variables has a size, and so an ETag, known
  // before rendering. Templated routes such as /.env always get 200.
  if (route.body.segments.size() != 1 || route.body.segments[0].is_variable) {
    return std::nullopt;
  }
  std::string etag = staticEtag(route, route.body.segments[0].text.size());
  bool matched = false;
  if (const std::string* none_match = findHeader(request.headers, "If-None-Match")) {
    matched = *none_match == "*" || none_match->find(etag) != std::string::npos;
  } else if (const std::string* since = findHeader(request.headers, "If-Modified-Since")) {
    std::optional<std::time_t> time = parseHttpDate(*since);
    matched = time && *time >= route.last_modified;
  }
  if (!matched) {
    return std::nullopt;
  }
  PersonaResponse response;
  response.status = 304;
  std::map<std::string, std::string> values = {
      {"Last-Modified", httpDate(route.last_modified)}, {"ETag", etag}, {"Accept-Ranges", "bytes"}};
  finish(response, HeaderProfile::kStatic, view, values, {});
  return response;
}

const PersonaRoute* DataPersona::findRoute(const std::string& path,
                                           bool& directory_redirect) const {
  directory_redirect = false;
  for (const auto& route : data_.routes) {
    for (const auto& route_path : route.paths) {
      switch (route.match) {
        case RouteMatch::kExact:
          if (path == route_path) {
            return &route;
          }
          // A folder's index page: mod_dir redirects the path without the
          // slash with a 301, as for a directory route.
          if (route_path.size() > 1 && route_path.back() == '/' && path + "/" == route_path) {
            directory_redirect = true;
            return &route;
          }
          break;
        case RouteMatch::kPrefix:
          if (path.starts_with(route_path)) {
            return &route;
          }
          break;
        case RouteMatch::kDirectory:
          if (path.starts_with(route_path)) {
            return &route;
          }
          if (path + "/" == route_path) {
            directory_redirect = true;
            return &route;
          }
          break;
      }
    }
  }
  return nullptr;
}

PersonaResponse DataPersona::routeResponse(const PersonaRoute& route, const RequestView& view,
                                           Baits& baits, RouteOutcome& outcome) const {
  const CapturedRequest& request = *view.request;
  if (!route.realm.empty()) {
    return errorResponse(401, view, outcome,
                         {{"WWW-Authenticate", fmt::format("Basic realm=\"{}\"", route.realm)}});
  }
  if (route.profile == HeaderProfile::kError) {
    return errorResponse(route.status, view, outcome);
  }

  bool is_php = route.profile == HeaderProfile::kPhp;
  if (!is_php && view.method != "GET" && view.method != "HEAD" && view.method != "POST") {
    // Apache's default handler serves files to GET, HEAD and POST only.
    return errorResponse(405, view, outcome, {{"Allow", std::string(kAllow)}});
  }

  if (!is_php) {
    if (auto not_modified = notModified(route, view, outcome)) {
      return *not_modified;
    }
  }

  PersonaResponse response;
  response.status = route.status;
  FormChoice choice = chooseFormAnswer(data_, route, request, view.path, view.query);
  std::string location;
  RequestView page_view = view;
  page_view.product = choice.product;
  const PersonaTemplate* page =
      (view.method == "POST" && route.has_post_body) ? &route.post_body : &route.body;
  if (!choice.answer.empty()) {
    const FormAnswer& answer = route.answers.at(choice.answer);
    if (!answer.redirect.empty() && view.method == "POST") {
      // header("Location: ...") in PHP: 302 with an empty body.
      response.status = 302;
      location = answer.redirect;
    } else {
      response.status = answer.status;
      page_view.notice = answer.notice;
      if (answer.has_body) {
        page = &answer.body;
      }
    }
  }
  if (location.empty()) {
    response.body = render(*page, page_view, &baits, outcome);
  }

  std::map<std::string, std::string> values;
  values["Content-Type"] = route.content_type;
  std::string etag = staticEtag(route, response.body.size());
  HeaderProfile profile = route.profile;
  if (compressible(route, response.body.size())) {
    values["Vary"] = "Accept-Encoding";
    std::optional<std::string> compressed;
    if (acceptsGzip(request.headers)) {
      compressed = gzipLikeApache(response.body);
    }
    if (compressed) {
      response.body = std::move(*compressed);
      values["Content-Encoding"] = "gzip";
      // mod_deflate's DeflateAlterETag default marks the compressed variant.
      etag.insert(etag.size() - 1, "-gzip");
      profile = is_php ? HeaderProfile::kPhpGzip : HeaderProfile::kStaticGzip;
    }
  }
  values["Content-Length"] = std::to_string(response.body.size());

  std::vector<HeaderField> route_headers;
  if (is_php) {
    values["X-Powered-By"] = data_.x_powered_by;
    if (route.session) {
      if (cookieValues(request.headers, data_.session_cookie).empty()) {
        route_headers.push_back(
            {"Set-Cookie", fmt::format("{}={}; path=/", data_.session_cookie, newSessionId())});
      }
      route_headers.push_back({"Expires", "Thu, 19 Nov 1981 08:52:00 GMT"});
      route_headers.push_back({"Cache-Control", "no-store, no-cache, must-revalidate"});
      route_headers.push_back({"Pragma", "no-cache"});
    }
    if (route.set_bait_cookie) {
      route_headers.push_back({"Set-Cookie", fmt::format("{}={}; path=/", data_.bait_cookie.name,
                                                         data_.bait_cookie.value)});
    }
    if (!location.empty()) {
      route_headers.push_back({"Location", location});
    }
  } else {
    values["Last-Modified"] = httpDate(route.last_modified);
    values["ETag"] = etag;
    values["Accept-Ranges"] = "bytes";
  }
  route_headers.insert(route_headers.end(), route.headers.begin(), route.headers.end());
  finish(response, profile, view, values, route_headers);
  return response;
}

PersonaResponse DataPersona::respond(const CapturedRequest& request, Baits& baits,
                                     RouteOutcome& outcome) const {
  outcome.route = "not_found";
  outcome.route_kind = "error";

  // Baits that any request can touch, whatever its target.
  baits.checkListener(request, outcome);
  baits.checkCookie(request, data_.bait_cookie, outcome);
  baits.checkFormField(request, data_.bait_field, outcome);
  baits.scanHoneytokens(request, outcome);

  RequestView view = viewOf(request);
  if (request.request_line.size() > kLimitRequestLine) {
    return errorResponse(414, view, outcome);
  }
  for (const auto& field : request.headers) {
    if (field.name.size() + 2 + field.value.size() > kLimitRequestFieldSize) {
      view.detail = "Size of a request header field exceeds server limit.";
      return errorResponse(400, view, outcome);
    }
  }

  // Apache checks, in this order: the method, the Host, then the target.
  bool known = false;
  for (auto method : kKnownMethods) {
    known = known || request.method == method;
  }
  if (!known) {
    return errorResponse(501, view, outcome, {{"Allow", std::string(kAllow)}});
  }

  int host_headers = 0;
  for (const auto& field : request.headers) {
    host_headers += equalsIgnoreCase(field.name, "Host") ? 1 : 0;
  }
  const std::string* host = findHeader(request.headers, "Host");
  Target target = parseTarget(request.target);
  bool bad_host = host_headers > 1;
  std::optional<Authority> authority = target.authority;
  if (!authority && host != nullptr && !host->empty()) {
    Authority parsed = parseAuthority(*host);
    bad_host = bad_host || !parsed.valid;
    authority = parsed;
  }
  if (bad_host || (!authority && request.http_version == "1.1")) {
    return errorResponse(400, view, outcome);
  }
  if (authority) {
    view.host = authority->host;
    if (!authority->port.empty()) {
      view.port = authority->port;
    }
  }

  if (request.method == "CONNECT") {
    // Without mod_proxy, Apache treats the authority-form target as a path
    // with no file behind it.
    return errorResponse(405, view, outcome, {{"Allow", std::string(kAllowNoFile)}});
  }
  if (request.method == "OPTIONS" && request.target == "*") {
    return optionsResponse(view, "", "");
  }
  if (target.error_status != 0) {
    return errorResponse(target.error_status, view, outcome);
  }
  view.path = target.path;
  view.query = target.query;
  if (request.method == "TRACE") {
    return errorResponse(405, view, outcome, {{"Allow", ""}});
  }

  bool directory_redirect = false;
  const PersonaRoute* route = findRoute(target.path, directory_redirect);
  if (route == nullptr) {
    if (request.method == "OPTIONS") {
      return optionsResponse(view, kAllowNoFile, "");
    }
    if (request.method != "GET" && request.method != "HEAD" && request.method != "POST") {
      return errorResponse(405, view, outcome, {{"Allow", std::string(kAllowNoFile)}});
    }
    return errorResponse(404, view, outcome);
  }
  outcome.route = route->name;
  outcome.route_kind = route->kind;

  if (!route->trap.empty()) {
    baits.recordTrap(route->trap, target.path, outcome);
  }
  if (route->canary) {
    baits.recordCredentials(request, outcome);
  }
  if (request.method == "POST" && isFormKind(route->kind)) {
    outcome.form = extractFormFacts(request, route->kind, baits.cardKey());
  }
  if (request.method == "OPTIONS" && route->profile != HeaderProfile::kError &&
      route->realm.empty()) {
    return optionsResponse(view, kAllow, route->content_type);
  }
  if (directory_redirect && route->realm.empty()) {
    // mod_dir adds the slash; authentication on the folder comes first.
    std::string port = view.port == "80" ? "" : ":" + view.port;
    view.location = fmt::format("http://{}{}{}/", view.host, port, encodeUrlPath(target.path));
    if (!target.query.empty()) {
      view.location += "?" + encodeUrlPath(target.query);
    }
    return errorResponse(301, view, outcome, {{"Location", view.location}});
  }
  return routeResponse(*route, view, baits, outcome);
}

PersonaResponse DataPersona::respondToParseError(const CapturedRequest& request,
                                                 RouteOutcome& outcome) const {
  if (outcome.route.empty()) {
    outcome.route = "parse_error";
    outcome.route_kind = "error";
  }
  RequestView view = viewOf(request);
  if (view.method.empty()) {
    view.method = "GET";
  }
  const std::string& error = request.parse_error;
  int status = 400;
  if (error.find("header limit") != std::string::npos) {
    // Apache reports a request line over LimitRequestLine as 414, and a
    // header field over LimitRequestFieldSize as 400 with its own text.
    bool line_complete = request.raw_head.find('\n') != std::string::npos;
    if (!line_complete) {
      status = 414;
    } else {
      view.detail = "Size of a request header field exceeds server limit.";
    }
  } else if (error.find("too many header fields") != std::string::npos) {
    view.detail = "The number of request header fields exceeds this server's limit.";
  } else if (error.find("body limit") != std::string::npos) {
    status = 413;
    if (view.method == "GET" && !request.method.empty()) {
      view.method = request.method;
    }
  } else if (error.find("plain HTTP") != std::string::npos) {
    view.detail =
        "Reason: You're speaking plain HTTP to an SSL-enabled server port.<br />\n Instead use "
        "the HTTPS scheme to access this URL, please.<br />\n";
  }
  view.head = false;
  PersonaResponse response = errorResponse(status, view, outcome);
  response.close_connection = true;
  return response;
}

}  // namespace

std::unique_ptr<Persona> Persona::load(const std::filesystem::path& dir) {
  return std::make_unique<DataPersona>(loadPersonaData(dir));
}

}  // namespace webtrap::probe
