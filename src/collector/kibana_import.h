// Import of webtrap's Kibana dashboard (saved objects in NDJSON) through
// Kibana's saved objects import API, run by `webtrap collector
// setup-elasticsearch` when outputs.elasticsearch.kibana is set.
#pragma once

#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include <yaml-cpp/yaml.h>

namespace webtrap::collector {

struct KibanaOptions {
  // Kibana's base URL, with its server.basePath when one is set, such as
  // https://kibana.example:5601.
  std::string url;
  // The space to import into; empty means the default space.
  std::string space;
  // Basic auth or an API key ("encoded" base64 of id:key, or id:key). When
  // none is set, the parser copies the Elasticsearch output's credentials.
  std::string username;
  std::string password;
  std::string api_key;
  bool credentials_from_elasticsearch = false;
  std::string ca_file;
  bool tls_verify = true;
  std::string proxy;
  std::chrono::milliseconds timeout{60000};
  std::chrono::milliseconds connect_timeout{10000};
  // The NDJSON to import; empty means data/kibana/webtrap-dashboard.ndjson
  // in the data directory.
  std::string dashboard_file;
};

// Parses outputs.elasticsearch.kibana: url (required), space, username,
// password, api_key, ca_file, tls_verify, proxy, timeout, connect_timeout,
// dashboard_file. `es_username`, `es_password` and `es_api_key` are used
// when the section sets no credentials. Throws ConfigError naming the key.
KibanaOptions parseKibanaOptions(const YAML::Node& node, const std::string& es_username,
                                 const std::string& es_password, const std::string& es_api_key);

// One saved object that Kibana did not import, from the `errors` array of
// the import response.
struct KibanaImportError {
  std::string type;
  std::string id;
  std::string title;
  std::string error_type;  // conflict, missing_references, unsupported_type, unknown, ...
  std::string detail;      // the message, or the missing references as TYPE/ID
};

struct KibanaImportResult {
  bool success = false;
  std::size_t success_count = 0;
  std::vector<KibanaImportError> errors;
};

// Parses the body of a 200 response of POST /api/saved_objects/_import.
// Throws std::runtime_error when it is not an import result.
KibanaImportResult parseKibanaImportResponse(std::string_view body);

// Maximum length, in bytes, of an object title that describeKibanaImportError
// prints. Titles are free text and may run to kilobytes. The start is enough
// to recognise the object, and the id names it exactly.
inline constexpr std::size_t kMaxPrintedTitleBytes = 80;

// Returns one line for `error`: type, id, title and error type with its
// detail. A title longer than kMaxPrintedTitleBytes is cut at a UTF-8
// character boundary and ends in "...".
std::string describeKibanaImportError(const KibanaImportError& error);

// Returns `ndjson` with attributes.title of every index-pattern object (data
// view) set to `title`. Other lines are kept as they are, blank lines
// dropped. Throws std::runtime_error naming the line that is not a JSON
// object.
std::string setDataViewTitle(std::string_view ndjson, const std::string& title);

// Imports the dashboard file into Kibana with overwrite=true, so a rerun
// replaces the objects instead of failing with conflicts. The data view is
// retitled to `index_pattern`, the pattern of the configured data stream or
// indices. Throws std::runtime_error naming the setting to fix, or listing
// the objects that failed with their error types.
void importKibanaDashboard(const KibanaOptions& options, const std::string& index_pattern);

}  // namespace webtrap::collector
