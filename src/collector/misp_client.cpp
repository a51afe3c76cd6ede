// libcurl client of the MISP REST API. It handles the response shapes
// recorded from MISP 2.5.1, odd ones included. Ids are strings, and errors
// come as an object, a per-item object or a string. A list post returns
// "Attribute" as an object when it saved one item, as a list otherwise.
#include "collector/misp_client.h"

#include <charconv>
#include <unordered_map>

#include <fmt/format.h>
#include <simdjson.h>
#include <spdlog/spdlog.h>

#include "collector/connection_options.h"
#include "collector/curl_support.h"
#include "collector/stored_event.h"
#include "common/config_values.h"
#include "common/encoding.h"
#include "common/error.h"
#include "common/json_writer.h"

namespace webtrap::collector {
namespace {

using simdjson::dom::element;

// Event ids and uuids go into URL paths, so only letters, digits and '-'
// are allowed.
void checkPathSegment(std::string_view segment, std::string_view what) {
  bool valid = !segment.empty() && segment.size() <= 64;
  for (char c : segment) {
    bool allowed = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                   c == '-';
    valid = valid && allowed;
  }
  if (!valid) {
    throw std::invalid_argument(
        fmt::format("misp client: invalid {} \"{}\"; expected a numeric id or a uuid", what,
                    segment));
  }
}

// The text of a string or number member, empty when absent. MISP 2.5.1
// sends ids as strings, but numbers are accepted too.
std::string textAt(element object, std::string_view key) {
  element value;
  if (object.at_key(key).get(value) != simdjson::SUCCESS) {
    return {};
  }
  std::string_view text;
  if (value.get_string().get(text) == simdjson::SUCCESS) {
    return std::string(text);
  }
  std::int64_t number = 0;
  if (value.get_int64().get(number) == simdjson::SUCCESS) {
    return std::to_string(number);
  }
  return {};
}

std::int64_t integerAt(element object, std::string_view key) {
  std::string text = textAt(object, key);
  std::int64_t number = 0;
  std::from_chars(text.data(), text.data() + text.size(), number);
  return number;
}

// The boolean member `key`, or nullopt when absent or not a boolean.
std::optional<bool> booleanAt(element object, std::string_view key) {
  bool value = false;
  if (object.at_key(key).get_bool().get(value) != simdjson::SUCCESS) {
    return std::nullopt;
  }
  return value;
}

bool hasKey(element object, std::string_view key) {
  element value;
  return object.is_object() && object.at_key(key).get(value) == simdjson::SUCCESS;
}

// Flattens MISP's `errors` (a string, a list of strings, or an object of
// such keyed by field) into "field: message; field: message".
void appendErrors(std::string& out, element errors, std::string_view field) {
  std::string_view text;
  if (errors.get_string().get(text) == simdjson::SUCCESS) {
    if (!out.empty()) {
      out += "; ";
    }
    if (!field.empty()) {
      out += fmt::format("{}: ", field);
    }
    // Object errors arrive as one string with a line per problem.
    for (char c : text) {
      out += c == '\n' ? ' ' : c;
    }
  } else if (errors.is_array()) {
    for (element item : errors.get_array()) {
      appendErrors(out, item, field);
    }
  } else if (errors.is_object()) {
    for (auto [key, value] : errors.get_object()) {
      appendErrors(out, value, key);
    }
  }
}

// MISP's explanation of a failure: the `errors`, else `message` or `name`.
std::string errorText(element body) {
  std::string text;
  element errors;
  if (body.is_object() && body.at_key("errors").get(errors) == simdjson::SUCCESS) {
    appendErrors(text, errors, "");
  }
  if (text.empty() && body.is_object()) {
    text = textAt(body, "message");
    if (text.empty()) {
      text = textAt(body, "name");
    }
  }
  return text;
}

// True when every message in `errors` reports that the item is already
// there: a similar attribute in the event, or a uuid that is taken.
bool onlyDuplicateErrors(element errors) {
  bool any = false;
  bool only_duplicates = true;
  auto check = [&](std::string_view message) {
    any = true;
    bool duplicate = message.find("already exists") != std::string_view::npos ||
                     message.find("UUID provided is not unique") != std::string_view::npos;
    only_duplicates = only_duplicates && duplicate;
  };
  std::string_view text;
  if (errors.get_string().get(text) == simdjson::SUCCESS) {
    // objects/add: "Object could not be saved.\nuuid: The UUID provided is not unique"
    std::size_t start = 0;
    while (start <= text.size()) {
      std::size_t end = text.find('\n', start);
      std::string_view line = text.substr(start, end == std::string_view::npos ? text.npos
                                                                               : end - start);
      if (!line.empty() && line != "Object could not be saved.") {
        check(line);
      }
      if (end == std::string_view::npos) {
        break;
      }
      start = end + 1;
    }
  } else if (errors.is_object()) {
    for (auto [key, value] : errors.get_object()) {
      if (value.is_array()) {
        for (element item : value.get_array()) {
          std::string_view message;
          check(item.get_string().get(message) == simdjson::SUCCESS ? message : "");
        }
      } else {
        std::string_view message;
        check(value.get_string().get(message) == simdjson::SUCCESS ? message : "");
      }
    }
  }
  return any && only_duplicates;
}

MispEventInfo parseEventInfo(element event) {
  MispEventInfo info;
  info.id = textAt(event, "id");
  info.uuid = textAt(event, "uuid");
  info.info = textAt(event, "info");
  info.published = booleanAt(event, "published").value_or(false);
  info.timestamp = integerAt(event, "timestamp");
  info.publish_timestamp = integerAt(event, "publish_timestamp");
  info.attribute_count = integerAt(event, "attribute_count");
  simdjson::dom::array tags;
  if (event.at_key("Tag").get_array().get(tags) == simdjson::SUCCESS) {
    for (element tag : tags) {
      info.tags.push_back(textAt(tag, "name"));
    }
  }
  return info;
}

// The uuid a JSON document sends at `pointer`, empty when absent or invalid.
std::string sentUuid(simdjson::dom::parser& parser, std::string_view json,
                     std::string_view pointer) {
  element document;
  if (parser.parse(json.data(), json.size()).get(document) != simdjson::SUCCESS) {
    return {};
  }
  std::string_view uuid;
  if (document.at_pointer(pointer).get_string().get(uuid) != simdjson::SUCCESS) {
    return {};
  }
  return std::string(uuid);
}

}  // namespace

const char* const kMispClientKeys =
    "url, api_key, ca_file, tls_verify, proxy, timeout, connect_timeout";

bool parseMispClientKey(MispClientOptions& options, const std::string& key,
                        const YAML::Node& value, const std::string& path) {
  using namespace config_values;
  if (key == "url") {
    options.url = parseHttpUrl(scalarText(value, path), path, "https://misp.example");
  } else if (key == "api_key") {
    options.api_key = scalarText(value, path);
    if (options.api_key.empty() || options.api_key.find_first_of(" \t\r\n") != std::string::npos) {
      throw ConfigError(fmt::format("{}: the key is empty or contains white space; give the bare "
                                    "automation key of an API-enabled MISP user, without "
                                    "\"Bearer\"",
                                    path));
    }
  } else if (parseTlsProxyKey(key, value, path, options)) {
    // ca_file, tls_verify, proxy
  } else if (key == "timeout" || key == "connect_timeout") {
    std::chrono::milliseconds duration(parseMilliseconds(scalarText(value, path), path));
    // libcurl takes 0 as "no timeout", which would let a stalled MISP block the output.
    if (duration.count() == 0) {
      throw ConfigError(fmt::format("{}: 0 is not a valid timeout; give a duration such as 30s",
                                    path));
    }
    (key == "timeout" ? options.timeout : options.connect_timeout) = duration;
  } else {
    return false;
  }
  return true;
}

struct MispClient::Impl {
  CURL* curl = nullptr;
  std::string authorization;
  simdjson::dom::parser parser;

  ~Impl() {
    if (curl != nullptr) {
      curl_easy_cleanup(curl);
    }
  }
};

MispClient::MispClient(MispClientOptions options)
    : options_(std::move(options)), impl_(std::make_unique<Impl>()) {
  initCurlOnce();
  while (!options_.url.empty() && options_.url.back() == '/') {
    options_.url.pop_back();
  }
  if (options_.url.empty()) {
    throw std::invalid_argument(fmt::format("{}.url is missing; set it to MISP's base URL, such "
                                            "as https://misp.example",
                                            options_.section));
  }
  if (options_.api_key.empty()) {
    throw std::invalid_argument(fmt::format("{}.api_key is missing; set it to the automation key "
                                            "of an API-enabled MISP user",
                                            options_.section));
  }
  impl_->curl = curl_easy_init();
  if (impl_->curl == nullptr) {
    throw std::runtime_error("misp client: curl_easy_init failed");
  }
  CURL* curl = impl_->curl;
  setCommonCurlOptions(curl, {options_.timeout, options_.connect_timeout, options_.tls_verify,
                              options_.ca_file, options_.proxy});
  curl_easy_setopt(curl, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, curlCaptureHeader);
  // Redirects are not followed: MISP's 302 to /users/login means the
  // request was not taken as an API request, and is reported as such.
  curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
  // MISP wants the bare key: "Bearer <key>" gets 403.
  impl_->authorization = "Authorization: " + options_.api_key;
  if (!options_.tls_verify) {
    spdlog::warn("misp: {}.tls_verify is off, so the server certificate is not checked",
                 options_.section);
  }
}

MispClient::~MispClient() = default;

MispResponse MispClient::request(std::string_view method, std::string_view path,
                                 std::string_view body) {
  CURL* curl = impl_->curl;
  curl_slist* headers = nullptr;
  headers = curl_slist_append(headers, impl_->authorization.c_str());
  headers = curl_slist_append(headers, "Accept: application/json");
  headers = curl_slist_append(headers, "Content-Type: application/json");
  // Without this libcurl waits for "100 Continue" before sending large bodies.
  headers = curl_slist_append(headers, "Expect:");
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  if (method == "GET") {
    curl_easy_setopt(curl, CURLOPT_HTTPGET, 1L);
  } else {
    curl_easy_setopt(curl, CURLOPT_POST, 1L);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.data());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
  }
  std::string url = options_.url + std::string(path);
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());

  MispResponse response;
  CurlBodyCapture body_capture{&response.body};
  CurlHeaderCapture header_capture;
  char error_buffer[CURL_ERROR_SIZE] = {};
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body_capture);
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, &header_capture);
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, error_buffer);
  CURLcode code = curl_easy_perform(curl);
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, nullptr);
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, nullptr);
  curl_slist_free_all(headers);
  std::string detail = error_buffer[0] != '\0' ? error_buffer : curl_easy_strerror(code);

  if (code != CURLE_OK) {
    if (body_capture.too_large) {
      throw TransientError(fmt::format("misp: {} {} returned a response larger than {} MiB; check "
                                       "that {}.url points at MISP",
                                       method, url, kMaxResponseBytes >> 20, options_.section));
    }
    if (code == CURLE_OPERATION_TIMEDOUT) {
      throw TransientError(fmt::format("misp: {} {} timed out after {} ms ({}); raise {}.timeout "
                                       "if MISP is slow",
                                       method, url, options_.timeout.count(), detail,
                                       options_.section));
    }
    if (code == CURLE_PEER_FAILED_VERIFICATION || code == CURLE_SSL_CACERT_BADFILE ||
        code == CURLE_SSL_CERTPROBLEM) {
      throw MispConfigError(fmt::format("misp: {} {} failed the TLS certificate check: {}; check "
                                        "{}.ca_file (the CA bundle that signed MISP's "
                                        "certificate) and the host name in {}.url",
                                        method, url, detail, options_.section, options_.section));
    }
    throw TransientError(fmt::format("misp: {} {} failed: {}", method, url, detail));
  }

  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &response.status);
  const char* content_type = nullptr;
  curl_easy_getinfo(curl, CURLINFO_CONTENT_TYPE, &content_type);
  response.content_type = content_type != nullptr ? content_type : "";
  response.location = std::move(header_capture.location);
  response.retry_after_ms = header_capture.retry_after_ms;

  // Reverse proxies send 502-504 responses as HTML, so the status is checked first.
  if (response.status == 429 || response.status >= 500) {
    std::string text;
    element document;
    if (impl_->parser.parse(response.body).get(document) == simdjson::SUCCESS) {
      text = errorText(document);
    }
    throw TransientError(fmt::format("misp: {} {} returned HTTP {}{}{}", method, url,
                                     response.status, text.empty() ? "" : ": ", text),
                         response.retry_after_ms);
  }
  if (response.status == 401) {
    throw MispAuthError(fmt::format("misp: {} {} returned HTTP 401; set {}.api_key to the "
                                    "automation key of an API-enabled MISP user",
                                    method, url, options_.section));
  }
  if ((response.status >= 300 && response.status < 400) ||
      startsWithIgnoreCase(response.content_type, "text/html")) {
    std::string redirect =
        response.location.empty() ? "" : fmt::format(" to {}", response.location);
    throw MispConfigError(fmt::format(
        "misp: {} {} returned HTTP {}{} with HTML instead of JSON. MISP does this when it does "
        "not take a request as an API request: check that {}.url is MISP's base URL, that no "
        "proxy strips the \"Accept: application/json\" header, and that {}.api_key is the "
        "automation key of an API-enabled user",
        method, url, response.status, redirect, options_.section, options_.section));
  }
  return response;
}

namespace {

// A 403 without `saved` is an authentication or permission failure. A 403
// with `saved: false` is a validation failure and is left to the caller.
void throwIfAuthFailure(const MispResponse& response, element document, std::string_view what,
                        const std::string& section) {
  if (response.status != 403 || hasKey(document, "saved")) {
    return;
  }
  throw MispAuthError(fmt::format("misp: {} returned HTTP 403: {}; set {}.api_key to the "
                                  "automation key of an API-enabled MISP user whose role may "
                                  "add and publish events and tags",
                                  what, errorText(document), section));
}

// Parses a response body, which must be JSON after request()'s checks, and
// throws MispAuthError when the response is an authentication failure.
element parseBody(simdjson::dom::parser& parser, const MispResponse& response,
                  std::string_view what, const std::string& section) {
  element document;
  // MISP returns JSON for every API call, so another body comes from
  // something else at the URL (a proxy, another application). It is a
  // setting to fix, not a verdict on the item: rejecting the item for good
  // would drop data that a fixed setting would deliver.
  if (parser.parse(response.body).get(document) != simdjson::SUCCESS) {
    throw MispConfigError(fmt::format("misp: {} returned HTTP {} with a body that is not JSON: "
                                      "\"{}\"; check that {}.url is MISP's base URL and that "
                                      "no proxy in between responds in MISP's place",
                                      what, response.status, response.body.substr(0, 200),
                                      section));
  }
  throwIfAuthFailure(response, document, what, section);
  return document;
}

[[noreturn]] void throwRequestError(const MispResponse& response, element document,
                                    std::string_view what) {
  throw MispRequestError(fmt::format("misp: {} returned HTTP {}: {}", what, response.status,
                                     errorText(document)),
                         response.status);
}

// The last path segment of a Location such as http://misp/events/12.
std::string lastPathSegment(std::string_view location) {
  auto slash = location.rfind('/');
  return std::string(slash == std::string_view::npos ? location : location.substr(slash + 1));
}

}  // namespace

MispAddEventResult MispClient::addEvent(std::string_view event_json) {
  MispAddEventResult result;
  result.uuid = sentUuid(impl_->parser, event_json, "/Event/uuid");
  const std::string what = fmt::format("adding event {}", result.uuid);
  MispResponse response = request("POST", "/events/add", event_json);
  element document = parseBody(impl_->parser, response, what, options_.section);
  if (response.status == 200) {
    element event;
    if (document.at_key("Event").get(event) != simdjson::SUCCESS) {
      throwRequestError(response, document, what);
    }
    result.status = MispAddEventResult::Status::kCreated;
    result.id = textAt(event, "id");
    result.uuid = textAt(event, "uuid");
    return result;
  }
  if (response.status == 404 && errorText(document).find("already exists") != std::string::npos) {
    result.status = MispAddEventResult::Status::kExists;
    if (!response.location.empty()) {
      result.id = lastPathSegment(response.location);
    } else if (!result.uuid.empty()) {
      // NOTE: MISP 2.5.1 sends Location with this 404, and this lookup is
      // for a proxy or a version that drops it.
      auto existing = searchEventMetadata(result.uuid);
      result.id = existing ? existing->id : "";
    }
    return result;
  }
  throwRequestError(response, document, what);
}

std::vector<MispItemResult> MispClient::addAttributes(std::string_view event,
                                                      std::span<const std::string> attributes) {
  checkPathSegment(event, "event");
  std::vector<MispItemResult> results(attributes.size());
  if (attributes.empty()) {
    return results;
  }
  std::string body = "[";
  for (std::size_t i = 0; i < attributes.size(); ++i) {
    results[i].uuid = sentUuid(impl_->parser, attributes[i], "/uuid");
    body += i == 0 ? "" : ",";
    body += attributes[i];
  }
  body += "]";

  const std::string what = fmt::format("adding {} attributes to event {}", attributes.size(), event);
  MispResponse response = request("POST", fmt::format("/attributes/add/{}", event), body);
  element document = parseBody(impl_->parser, response, what, options_.section);
  // A list where every item failed gets 403 with the per-item errors.
  if (response.status != 200 && response.status != 403) {
    throwRequestError(response, document, what);
  }

  // Saved attributes: one object, or a list when two or more were saved.
  std::vector<element> saved;
  element saved_element;
  if (document.at_key("Attribute").get(saved_element) == simdjson::SUCCESS) {
    if (saved_element.is_array()) {
      for (element item : saved_element.get_array()) {
        saved.push_back(item);
      }
    } else {
      saved.push_back(saved_element);
    }
  }
  std::unordered_map<std::string, std::size_t> saved_by_uuid;
  for (std::size_t i = 0; i < saved.size(); ++i) {
    saved_by_uuid.emplace(textAt(saved[i], "uuid"), i);
  }
  std::vector<bool> saved_used(saved.size(), false);

  element errors;
  bool has_errors = document.at_key("errors").get(errors) == simdjson::SUCCESS;
  std::vector<std::size_t> unmatched;
  for (std::size_t i = 0; i < attributes.size(); ++i) {
    element item_errors;
    bool failed = has_errors && errors.is_object() &&
                  errors.at_key(fmt::format("attribute_{}", i)).get(item_errors) ==
                      simdjson::SUCCESS;
    // NOTE: MISP 2.5.1 keys list errors by position even for one item, and
    // this fallback covers errors keyed by field for a one-item list.
    if (!failed && has_errors && attributes.size() == 1 && saved.empty()) {
      item_errors = errors;
      failed = true;
    }
    if (failed) {
      if (onlyDuplicateErrors(item_errors)) {
        results[i].status = MispItemResult::Status::kDuplicate;
      } else {
        results[i].status = MispItemResult::Status::kRejected;
        appendErrors(results[i].reason, item_errors, "");
      }
      continue;
    }
    auto found = results[i].uuid.empty() ? saved_by_uuid.end() : saved_by_uuid.find(results[i].uuid);
    if (found != saved_by_uuid.end() && !saved_used[found->second]) {
      saved_used[found->second] = true;
      results[i].id = textAt(saved[found->second], "id");
    } else {
      unmatched.push_back(i);
    }
  }
  // Items sent without a uuid take the remaining saved attributes in order.
  // NOTE: MISP 2.5.1 returned a 2,000-item list in an order of its own, so
  // ids matched by position can be wrong: send a uuid with every attribute.
  // An item sent with a uuid that is not among the saved ones has no result.
  std::size_t next = 0;
  for (std::size_t i : unmatched) {
    while (next < saved.size() && saved_used[next]) {
      ++next;
    }
    bool has_result = results[i].uuid.empty() && next < saved.size();
    if (has_result) {
      saved_used[next] = true;
      results[i].id = textAt(saved[next], "id");
      results[i].uuid = textAt(saved[next], "uuid");
    } else if (response.status == 403) {
      // Nothing was saved, and MISP gave no error for this item: the
      // whole list was rejected, so each item is.
      results[i].status = MispItemResult::Status::kRejected;
      results[i].reason = errorText(document);
    } else {
      throw TransientError(fmt::format("misp: {} returned HTTP {} with {} saved attributes and "
                                       "errors that do not account for attribute {}",
                                       what, response.status, saved.size(), i));
    }
  }
  return results;
}

MispItemResult MispClient::addObject(std::string_view event, std::string_view object_json) {
  checkPathSegment(event, "event");
  MispItemResult result;
  result.uuid = sentUuid(impl_->parser, object_json, "/Object/uuid");
  const std::string what = fmt::format("adding object {} to event {}", result.uuid, event);
  MispResponse response = request("POST", fmt::format("/objects/add/{}", event), object_json);
  element document = parseBody(impl_->parser, response, what, options_.section);
  if (response.status == 200) {
    element object;
    if (document.at_key("Object").get(object) != simdjson::SUCCESS) {
      throwRequestError(response, document, what);
    }
    result.id = textAt(object, "id");
    result.uuid = textAt(object, "uuid");
    return result;
  }
  element errors;
  if (response.status == 403 && document.at_key("errors").get(errors) == simdjson::SUCCESS) {
    if (onlyDuplicateErrors(errors)) {
      result.status = MispItemResult::Status::kDuplicate;
    } else {
      result.status = MispItemResult::Status::kRejected;
      result.reason = errorText(document);
    }
    return result;
  }
  throwRequestError(response, document, what);
}

namespace {

// Reads the response of a call that reports failure in the body: `saved`
// false, or a 200 with only a `message`. Any 4xx other than an
// authentication failure is a failure with MISP's text.
MispSaveResult saveResultOf(const MispResponse& response, element document,
                            std::string_view success_key) {
  MispSaveResult result;
  result.message = errorText(document);
  if (response.status != 200) {
    return result;
  }
  element item;
  if (!success_key.empty() && document.at_key(success_key).get(item) == simdjson::SUCCESS) {
    result.saved = true;
    result.id = textAt(item, "id");
    return result;
  }
  result.saved = booleanAt(document, "saved").value_or(false);
  result.id = textAt(document, "id");
  return result;
}

}  // namespace

MispSaveResult MispClient::addSighting(std::string_view attribute_uuid, std::string_view source,
                                       std::int64_t timestamp) {
  std::string body;
  JsonWriter writer(body);
  writer.beginObject();
  writer.member("uuid", attribute_uuid);
  writer.member("source", source);
  // Sent as a string, as in the recorded MISP 2.5.1 exchange.
  writer.member("timestamp", std::to_string(timestamp));
  writer.endObject();
  const std::string what = fmt::format("adding a sighting on attribute {}", attribute_uuid);
  MispResponse response = request("POST", "/sightings/add", body);
  element document = parseBody(impl_->parser, response, what, options_.section);
  return saveResultOf(response, document, "Sighting");
}

MispSaveResult MispClient::attachTag(std::string_view uuid, std::string_view tag) {
  std::string body;
  JsonWriter writer(body);
  writer.beginObject();
  writer.member("uuid", uuid);
  writer.member("tag", tag);
  writer.endObject();
  const std::string what = fmt::format("attaching tag {} to {}", tag, uuid);
  MispResponse response = request("POST", "/tags/attachTagToObject", body);
  element document = parseBody(impl_->parser, response, what, options_.section);
  return saveResultOf(response, document, "");
}

MispSaveResult MispClient::publishEvent(std::string_view event) {
  checkPathSegment(event, "event");
  const std::string what = fmt::format("publishing event {}", event);
  MispResponse response = request("POST", fmt::format("/events/publish/{}", event), "");
  element document = parseBody(impl_->parser, response, what, options_.section);
  return saveResultOf(response, document, "");
}

std::optional<MispEventInfo> MispClient::viewEvent(std::string_view event) {
  checkPathSegment(event, "event");
  const std::string what = fmt::format("reading event {}", event);
  MispResponse response = request("GET", fmt::format("/events/view/{}", event), "");
  element document = parseBody(impl_->parser, response, what, options_.section);
  if (response.status == 404) {
    return std::nullopt;
  }
  element found;
  if (response.status != 200 || document.at_key("Event").get(found) != simdjson::SUCCESS) {
    throwRequestError(response, document, what);
  }
  return parseEventInfo(found);
}

std::optional<MispEventInfo> MispClient::searchEventMetadata(std::string_view uuid) {
  std::string body;
  JsonWriter writer(body);
  writer.beginObject();
  writer.member("returnFormat", "json");
  writer.member("uuid", uuid);
  writer.member("metadata", true);
  writer.endObject();
  const std::string what = fmt::format("searching event {}", uuid);
  MispResponse response = request("POST", "/events/restSearch", body);
  element document = parseBody(impl_->parser, response, what, options_.section);
  simdjson::dom::array matches;
  if (response.status != 200 ||
      document.at_key("response").get_array().get(matches) != simdjson::SUCCESS) {
    throwRequestError(response, document, what);
  }
  for (element match : matches) {
    element event;
    if (match.at_key("Event").get(event) == simdjson::SUCCESS && textAt(event, "uuid") == uuid) {
      return parseEventInfo(event);
    }
  }
  return std::nullopt;
}

}  // namespace webtrap::collector
