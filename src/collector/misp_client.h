// A libcurl client of the MISP REST API, with typed calls that follow the
// behaviour recorded from MISP 2.5.1:
//   - every request sends `Authorization: <key>` (the bare key),
//     `Accept: application/json` and `Content-Type: application/json`.
//     Without the Accept header MISP responds to a GET with a 302 to
//     /users/login, so an HTML response throws MispConfigError, and so
//     does any other body that is not JSON;
//   - an event uuid that already exists gets 404 "Event already exists" with
//     a Location header, which addEvent returns as kExists, not as an error;
//   - a duplicate attribute or object uuid gets 403 with `saved: false`,
//     which is a per-item kDuplicate, not an error;
//   - tag and sighting calls can fail with HTTP 200 and `saved: false`, or
//     with a 200 that contains only a `message`, so the body decides;
//   - 401 and a 403 without `saved` (wrong key, or a role without the
//     permission) throw MispAuthError, which retrying does not fix;
//   - 429, 5xx, timeouts and connection failures throw TransientError, with
//     the Retry-After delay when the server sent one;
//   - the sighting, tag and publish calls return any other 4xx as a
//     failure with MISP's text. The other calls throw MispRequestError.
//
// The MISP REST output (misp_rest_output.h) sends through it.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <yaml-cpp/yaml.h>

namespace webtrap::collector {

struct MispClientOptions {
  // MISP's base URL, such as https://misp.example, without a trailing slash.
  std::string url;
  // An automation key of an API-enabled MISP user, sent bare in Authorization.
  std::string api_key;
  // PEM CA bundle for the server certificate. Empty: the system bundle.
  std::string ca_file;
  bool tls_verify = true;
  // Such as http://proxy:3128. Empty: libcurl reads http_proxy, https_proxy
  // and no_proxy from the environment.
  std::string proxy;
  std::chrono::milliseconds timeout{30000};
  std::chrono::milliseconds connect_timeout{10000};
  // The configuration section named in error messages.
  std::string section = "outputs.misp";
};

// Parses one connection key of a MISP output section into `options`: url,
// api_key, ca_file, tls_verify, proxy, timeout or connect_timeout. Returns
// false when `key` is not one of them. `path` is the key path used in
// errors. Throws ConfigError.
bool parseMispClientKey(MispClientOptions& options, const std::string& key,
                        const YAML::Node& value, const std::string& path);
// The connection keys, for error messages.
extern const char* const kMispClientKeys;

// A setting is wrong (URL, key, proxy in front of MISP): retrying does not help.
struct MispConfigError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// MISP rejected the API key, or the key's role lacks the permission.
struct MispAuthError : MispConfigError {
  using MispConfigError::MispConfigError;
};

// MISP rejected a request for good (validation error, unknown event, an
// response that is not JSON). `status` is the HTTP status.
struct MispRequestError : std::runtime_error {
  MispRequestError(const std::string& what, long http_status)
      : std::runtime_error(what), status(http_status) {}
  long status;
};

// One HTTP exchange with MISP.
struct MispResponse {
  long status = 0;
  std::string body;
  std::string content_type;
  std::string location;
  std::int64_t retry_after_ms = 0;
};

struct MispAddEventResult {
  enum class Status { kCreated, kExists };
  Status status = Status::kCreated;
  std::string id;    // MISP's numeric event id, as text
  std::string uuid;  // the event uuid (the one sent, for kExists)
};

// The outcome of one attribute or object add.
struct MispItemResult {
  enum class Status {
    kSaved,
    kDuplicate,  // already in the event: the same value, or the same uuid
    kRejected,   // invalid for good: `reason` contains MISP's errors
  };
  Status status = Status::kSaved;
  std::string id;    // MISP's id when saved
  std::string uuid;  // the saved uuid, or the uuid sent
  std::string reason;
};

// The outcome of a sighting, tag or publish call.
struct MispSaveResult {
  bool saved = false;
  std::string id;       // the sighting id, or the published event id
  std::string message;  // MISP's message, the reason when not saved
};

// Event fields read back from events/view or events/restSearch.
struct MispEventInfo {
  std::string id;
  std::string uuid;
  std::string info;
  bool published = false;
  std::int64_t timestamp = 0;
  std::int64_t publish_timestamp = 0;
  std::int64_t attribute_count = 0;
  std::vector<std::string> tags;
};

// Not thread safe: each output owns its own client, which keeps one easy
// handle so the connection is reused.
class MispClient {
 public:
  // Throws std::invalid_argument when url or api_key is empty.
  explicit MispClient(MispClientOptions options);
  ~MispClient();
  MispClient(const MispClient&) = delete;
  MispClient& operator=(const MispClient&) = delete;

  // Adds `event_json` (`{"Event": {...}}` with a uuid). Returns kExists with
  // the existing id when the uuid is taken. Throws MispRequestError when
  // MISP rejects the event.
  MispAddEventResult addEvent(std::string_view event_json);

  // Adds attribute objects (each a JSON object) to the event `event` (id or
  // uuid) in one list request. Returns one result per attribute, in order.
  // Throws MispRequestError when the event does not exist.
  std::vector<MispItemResult> addAttributes(std::string_view event,
                                            std::span<const std::string> attributes);

  // Adds `object_json` (`{"Object": {...}}`) to the event `event`. Throws
  // MispRequestError when the event does not exist.
  MispItemResult addObject(std::string_view event, std::string_view object_json);

  // Adds a sighting on the attribute `attribute_uuid`, scoped to it by uuid.
  // `timestamp` is in seconds since the epoch.
  MispSaveResult addSighting(std::string_view attribute_uuid, std::string_view source,
                             std::int64_t timestamp);

  // Attaches the tag `tag` (created when unknown) to the event or attribute
  // `uuid`. An unknown uuid or an object uuid is a failure, not an exception.
  MispSaveResult attachTag(std::string_view uuid, std::string_view tag);

  // Publishes the event `event` (id or uuid) without e-mail alerts.
  MispSaveResult publishEvent(std::string_view event);

  // Reads the event `event` (id or uuid). Returns nullopt when not found.
  std::optional<MispEventInfo> viewEvent(std::string_view event);

  // Reads the event `uuid` by events/restSearch with metadata only (no
  // attributes). Returns nullopt when nothing matches.
  std::optional<MispEventInfo> searchEventMetadata(std::string_view uuid);

  // Sends one request and returns the response, after the checks every
  // call shares: throws TransientError for transport failures, 429 and 5xx,
  // MispAuthError for 401 and MispConfigError for an HTML response or a
  // certificate that fails verification.
  MispResponse request(std::string_view method, std::string_view path, std::string_view body);

  const MispClientOptions& options() const { return options_; }

 private:
  struct Impl;
  MispClientOptions options_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace webtrap::collector
