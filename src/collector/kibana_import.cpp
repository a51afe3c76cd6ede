#include "collector/kibana_import.h"

#include <curl/curl.h>

#include <fstream>
#include <memory>
#include <sstream>
#include <stdexcept>

#include <fmt/format.h>
#include <simdjson.h>
#include <spdlog/spdlog.h>

#include "collector/connection_options.h"
#include "collector/curl_support.h"
#include "common/config_table.h"
#include "common/config_values.h"
#include "common/encoding.h"
#include "common/error.h"
#include "common/json_writer.h"
#include "common/ndjson_lines.h"
#include "probe/config.h"

namespace webtrap::collector {
namespace {

constexpr const char* kSection = "outputs.elasticsearch.kibana";

std::string keyPath(const std::string& key) { return std::string(kSection) + "." + key; }

// Kibana space ids: lowercase letters, digits, '_' and '-' (Kibana 8 spaces API).
bool validSpaceId(const std::string& space) {
  if (space.empty()) {
    return false;
  }
  for (char c : space) {
    bool allowed = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
    if (!allowed) {
      return false;
    }
  }
  return true;
}

std::filesystem::path dashboardPath(const KibanaOptions& options) {
  return options.dashboard_file.empty()
             ? probe::dataDirectory() / "data" / "kibana" / "webtrap-dashboard.ndjson"
             : std::filesystem::path(options.dashboard_file);
}

std::string readDashboard(const KibanaOptions& options) {
  std::filesystem::path path = dashboardPath(options);
  std::error_code error;
  // A folder opens as a stream that reads nothing, which would import nothing.
  std::ifstream stream(path, std::ios::binary);
  if (!stream || !std::filesystem::is_regular_file(path, error)) {
    throw std::runtime_error(fmt::format(
        "setup-elasticsearch: cannot read the Kibana dashboard {}; it ships in data/kibana/ of the "
        "source tree, or set {} to another saved objects file",
        path.string(), keyPath("dashboard_file")));
  }
  std::ostringstream text;
  text << stream.rdbuf();
  return text.str();
}

std::string stringOr(simdjson::dom::element element, std::string_view pointer) {
  std::string_view value;
  if (element.at_pointer(pointer).get_string().get(value)) {
    return {};
  }
  return std::string(value);
}

// The "message" of a Kibana error body, or the start of the body when it has none.
std::string errorMessage(const std::string& body) {
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  if (!parser.parse(body).get(root)) {
    std::string message = stringOr(root, "/message");
    if (!message.empty()) {
      return message;
    }
  }
  return std::string(std::string_view(body).substr(0, 300));
}

struct KibanaResponse {
  long status = 0;
  std::string body;
};

// Sends the multipart import request. Throws std::runtime_error with the fix
// when the request does not reach Kibana.
KibanaResponse postImport(const KibanaOptions& options, const std::string& url,
                          const std::string& ndjson) {
  initCurlOnce();
  std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> curl(curl_easy_init(), curl_easy_cleanup);
  if (!curl) {
    throw std::runtime_error("setup-elasticsearch: curl_easy_init failed");
  }
  CURL* handle = curl.get();
  std::unique_ptr<curl_mime, decltype(&curl_mime_free)> mime(curl_mime_init(handle), curl_mime_free);
  curl_mimepart* part = curl_mime_addpart(mime.get());
  curl_mime_name(part, "file");
  // Kibana accepts only files named *.ndjson.
  curl_mime_filename(part, "webtrap-dashboard.ndjson");
  curl_mime_type(part, "application/ndjson");
  curl_mime_data(part, ndjson.data(), ndjson.size());

  curl_slist* headers = nullptr;
  // Kibana rejects state-changing API requests without kbn-xsrf (any value).
  headers = curl_slist_append(headers, "kbn-xsrf: webtrap");
  headers = curl_slist_append(headers, "Accept: application/json");
  headers = curl_slist_append(headers, "Expect:");
  if (!options.api_key.empty()) {
    std::string encoded = options.api_key.find(':') != std::string::npos
                              ? base64Encode(options.api_key)
                              : options.api_key;
    headers = curl_slist_append(headers, ("Authorization: ApiKey " + encoded).c_str());
  }
  std::unique_ptr<curl_slist, decltype(&curl_slist_free_all)> header_list(headers,
                                                                          curl_slist_free_all);

  KibanaResponse response;
  CurlBodyCapture capture{&response.body};
  curl_easy_setopt(handle, CURLOPT_URL, url.c_str());
  curl_easy_setopt(handle, CURLOPT_MIMEPOST, mime.get());
  curl_easy_setopt(handle, CURLOPT_HTTPHEADER, header_list.get());
  setCommonCurlOptions(handle, {options.timeout, options.connect_timeout, options.tls_verify,
                                options.ca_file, options.proxy});
  curl_easy_setopt(handle, CURLOPT_WRITEDATA, &capture);
  if (!options.username.empty()) {
    curl_easy_setopt(handle, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
    curl_easy_setopt(handle, CURLOPT_USERNAME, options.username.c_str());
    curl_easy_setopt(handle, CURLOPT_PASSWORD, options.password.c_str());
  }
  if (!options.tls_verify) {
    spdlog::warn("setup-elasticsearch: {}.tls_verify is off, so Kibana's certificate is not "
                 "checked",
                 kSection);
  }

  CURLcode code = curl_easy_perform(handle);
  if (code != CURLE_OK) {
    if (isCurlTlsError(code)) {
      throw std::runtime_error(fmt::format(
          "setup-elasticsearch: TLS with Kibana at {} failed ({}); set {} to the CA bundle that "
          "signed Kibana's certificate",
          options.url, curl_easy_strerror(code), keyPath("ca_file")));
    }
    if (capture.too_large) {
      throw std::runtime_error(fmt::format("setup-elasticsearch: Kibana at {} sent a response "
                                           "larger than {} bytes; is {} Kibana's URL?",
                                           options.url, kMaxResponseBytes, keyPath("url")));
    }
    throw std::runtime_error(fmt::format(
        "setup-elasticsearch: cannot reach Kibana at {} ({}); check {} and that Kibana is running",
        options.url, curl_easy_strerror(code), keyPath("url")));
  }
  curl_easy_getinfo(handle, CURLINFO_RESPONSE_CODE, &response.status);
  return response;
}

std::string credentialKeys(const KibanaOptions& options) {
  if (options.credentials_from_elasticsearch) {
    return fmt::format("{0}.username and {0}.password, or {0}.api_key (the Elasticsearch "
                       "output's credentials were used because the kibana section sets none)",
                       kSection);
  }
  return fmt::format("{0}.username and {0}.password, or {0}.api_key", kSection);
}

// Throws the error for a non-200 import response, naming the setting to fix.
[[noreturn]] void failImport(const KibanaOptions& options, const std::string& url,
                             const KibanaResponse& response) {
  const std::string message = errorMessage(response.body);
  switch (response.status) {
    case 401:
      throw std::runtime_error(fmt::format(
          "setup-elasticsearch: Kibana at {} rejected the credentials (HTTP 401: {}); set {}",
          options.url, message, credentialKeys(options)));
    case 403:
      throw std::runtime_error(fmt::format(
          "setup-elasticsearch: the Kibana user may not import saved objects (HTTP 403: {}); give "
          "its role the Kibana privilege \"all\" on Dashboard, Visualize, Discover and Maps in "
          "space \"{}\", or set {}",
          message, options.space.empty() ? "default" : options.space, credentialKeys(options)));
    case 404:
      throw std::runtime_error(fmt::format(
          "setup-elasticsearch: Kibana returned HTTP 404 for {}; check that {} is Kibana's URL "
          "(with its server.basePath, if set) and that the space in {} exists",
          url, keyPath("url"), keyPath("space")));
    default:
      throw std::runtime_error(fmt::format(
          "setup-elasticsearch: Kibana saved objects import at {} failed with HTTP {}: {}; check "
          "that {} is Kibana's URL, not Elasticsearch's",
          url, response.status, message, keyPath("url")));
  }
}

// Reads the dashboard file with its data view retitled to `index_pattern`.
// Throws std::runtime_error that names dashboard_file when the file cannot
// be read or a line is not a JSON object.
std::string readRetitledDashboard(const KibanaOptions& options, const std::string& index_pattern) {
  try {
    return setDataViewTitle(readDashboard(options), index_pattern);
  } catch (const std::runtime_error& error) {
    if (std::string_view(error.what()).starts_with("setup-elasticsearch:")) {
      throw;
    }
    throw std::runtime_error(fmt::format(
        "setup-elasticsearch: {} ({}); set {} to a saved objects export, one JSON object a line",
        error.what(), dashboardPath(options).string(), keyPath("dashboard_file")));
  }
}

}  // namespace

KibanaOptions parseKibanaOptions(const YAML::Node& node, const std::string& es_username,
                                 const std::string& es_password, const std::string& es_api_key) {
  using namespace config_values;
  if (!node || !node.IsMap()) {
    throw ConfigError(fmt::format("{}: expected a map such as `kibana: {{url: "
                                  "https://kibana.example:5601}}`",
                                  kSection));
  }
  KibanaOptions options;
  for (const auto& entry : node) {
    const std::string key = config_table::keyText(entry.first, std::string(kSection));
    const std::string path = keyPath(key);
    const YAML::Node& value = entry.second;
    if (key == "url") {
      options.url = parseHttpUrl(scalarText(value, path), path, "https://kibana.example:5601");
    } else if (key == "space") {
      options.space = scalarText(value, path);
      if (!validSpaceId(options.space)) {
        throw ConfigError(fmt::format("{}: \"{}\" is not a space id; use the id from the space's "
                                      "URL (/s/ID/app/...): lowercase letters, digits, '_' and "
                                      "'-'",
                                      path, options.space));
      }
      if (options.space == "default") {
        options.space.clear();
      }
    } else if (parseConnectionKey(key, value, path, options)) {
      // username, password, api_key, ca_file, tls_verify, proxy, timeout,
      // connect_timeout
    } else if (key == "dashboard_file") {
      options.dashboard_file = scalarText(value, path);
    } else {
      throw ConfigError(fmt::format("{}: unknown key; the keys are url, space, username, password, "
                                    "api_key, ca_file, tls_verify, proxy, timeout, "
                                    "connect_timeout, dashboard_file",
                                    path));
    }
  }
  if (options.url.empty()) {
    throw ConfigError(fmt::format("{}: missing; set it to Kibana's base URL, such as "
                                  "https://kibana.example:5601",
                                  keyPath("url")));
  }
  if (!options.username.empty() && options.password.empty()) {
    throw ConfigError(fmt::format("{}: missing; username \"{}\" needs a password",
                                  keyPath("password"), options.username));
  }
  if (options.username.empty() && !options.password.empty()) {
    throw ConfigError(fmt::format("{}: missing; {} is set and needs a username",
                                  keyPath("username"), keyPath("password")));
  }
  if (!options.username.empty() && !options.api_key.empty()) {
    throw ConfigError(fmt::format("{}: both username and api_key are set; keep one of them",
                                  kSection));
  }
  if (options.username.empty() && options.api_key.empty()) {
    options.username = es_username;
    options.password = es_password;
    options.api_key = es_api_key;
    options.credentials_from_elasticsearch = !es_username.empty() || !es_api_key.empty();
  }
  if (options.timeout.count() == 0) {
    throw ConfigError(fmt::format("{}: 0 would wait forever; use a duration such as 60s",
                                  keyPath("timeout")));
  }
  return options;
}

KibanaImportResult parseKibanaImportResponse(std::string_view body) {
  simdjson::dom::parser parser;
  simdjson::dom::object root;
  if (parser.parse(body.data(), body.size()).get_object().get(root)) {
    throw std::runtime_error("the response is not a JSON object");
  }

  KibanaImportResult result;
  if (root["success"].get_bool().get(result.success)) {
    throw std::runtime_error("the response has no boolean \"success\"");
  }
  std::uint64_t count = 0;
  if (root["successCount"].get_uint64().get(count)) {
    throw std::runtime_error("the response has no number \"successCount\"");
  }
  result.success_count = count;

  simdjson::dom::array errors;
  if (root["errors"].get_array().get(errors)) {
    return result;  // Kibana leaves "errors" out when every object was imported.
  }
  for (simdjson::dom::element item : errors) {
    KibanaImportError error;
    error.type = stringOr(item, "/type");
    error.id = stringOr(item, "/id");
    error.title = stringOr(item, "/meta/title");
    if (error.title.empty()) {
      error.title = stringOr(item, "/title");
    }
    error.error_type = stringOr(item, "/error/type");
    error.detail = stringOr(item, "/error/message");

    // missing_references lists the references in place of a message.
    simdjson::dom::array references;
    if (!item.at_pointer("/error/references").get_array().get(references)) {
      std::string missing;
      for (simdjson::dom::element reference : references) {
        missing += missing.empty() ? "" : ", ";
        missing += stringOr(reference, "/type") + "/" + stringOr(reference, "/id");
      }
      error.detail = "(" + missing + ")";
    }
    result.errors.push_back(std::move(error));
  }
  return result;
}

std::string describeKibanaImportError(const KibanaImportError& error) {
  std::string text = fmt::format("{} {}", error.type, error.id);
  if (!error.title.empty() && error.title != error.id) {
    std::string_view title = utf8Prefix(error.title, kMaxPrintedTitleBytes);
    std::string_view cut_marker = title.size() < error.title.size() ? "..." : "";
    text += fmt::format(" (\"{}{}\")", title, cut_marker);
  }
  text += ": " + error.error_type;
  if (!error.detail.empty()) {
    text += " " + error.detail;
  }
  return text;
}

std::string setDataViewTitle(std::string_view ndjson, const std::string& title) {
  simdjson::dom::parser parser;
  std::string output;
  std::size_t line_number = 0;
  // Unlike an ingest body, a line keeps its '\r', which is copied out with it.
  forEachLine(ndjson, [&](std::string_view line) {
    ++line_number;
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) {
      return;
    }
    simdjson::dom::object object;
    if (parser.parse(line.data(), line.size()).get_object().get(object)) {
      throw std::runtime_error(fmt::format("line {} of the Kibana dashboard is not a JSON object",
                                           line_number));
    }
    std::string_view type;
    if (object["type"].get_string().get(type) || type != "index-pattern") {
      output.append(line);
      output += '\n';
      return;
    }
    JsonWriter writer(output);
    writer.beginObject();
    for (auto [key, value] : object) {
      writer.key(key);
      simdjson::dom::object attributes;
      if (key != "attributes" || value.get_object().get(attributes)) {
        writer.raw(simdjson::minify(value));
        continue;
      }
      writer.beginObject();
      for (auto [name, attribute] : attributes) {
        writer.key(name);
        if (name == "title") {
          writer.string(title);
        } else {
          writer.raw(simdjson::minify(attribute));
        }
      }
      writer.endObject();
    }
    writer.endObject();
    output += '\n';
  });
  return output;
}

void importKibanaDashboard(const KibanaOptions& options, const std::string& index_pattern) {
  std::string ndjson = readRetitledDashboard(options, index_pattern);
  std::size_t object_count = 0;
  for (char c : ndjson) {
    object_count += c == '\n' ? 1 : 0;
  }
  // An empty file would be "imported" with nothing in Kibana.
  if (object_count == 0) {
    throw std::runtime_error(fmt::format(
        "setup-elasticsearch: the Kibana dashboard {} contains no saved objects; set {} to a "
        "saved objects export, one JSON object a line",
        dashboardPath(options).string(), keyPath("dashboard_file")));
  }

  const std::string url = fmt::format("{}{}/api/saved_objects/_import?overwrite=true", options.url,
                                      options.space.empty() ? "" : "/s/" + options.space);
  KibanaResponse response = postImport(options, url, ndjson);
  if (response.status != 200) {
    failImport(options, url, response);
  }

  KibanaImportResult result;
  try {
    result = parseKibanaImportResponse(response.body);
  } catch (const std::runtime_error& error) {
    throw std::runtime_error(fmt::format("setup-elasticsearch: {} did not return a saved objects "
                                         "import result ({}); check that {} is Kibana's URL",
                                         url, error.what(), keyPath("url")));
  }
  if (!result.success || !result.errors.empty()) {
    std::string lines;
    for (const auto& error : result.errors) {
      lines += "\n  " + describeKibanaImportError(error);
    }
    throw std::runtime_error(fmt::format(
        "setup-elasticsearch: Kibana imported {} of {} saved objects; these failed:{}",
        result.success_count, object_count, lines));
  }
  if (result.success_count != object_count) {
    spdlog::warn("setup-elasticsearch: Kibana reports {} saved objects imported, but the file has "
                 "{}",
                 result.success_count, object_count);
  }

  spdlog::info("setup-elasticsearch: imported {} Kibana saved objects (data view {}) into space "
               "{} at {}",
               result.success_count, index_pattern,
               options.space.empty() ? "default" : options.space, options.url);
}

}  // namespace webtrap::collector
