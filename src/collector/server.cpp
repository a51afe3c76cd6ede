#include "collector/server.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <unordered_map>

#include <sys/resource.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "collector/card_masking.h"
#include "collector/gunzip.h"
#include "common/encoding.h"
#include "common/error.h"
#include "common/ids.h"
#include "common/json_writer.h"
#include "common/log_throttle.h"
#include "common/metrics.h"
#include "common/ndjson_lines.h"

namespace webtrap::collector {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

namespace {

using Request = http::request<http::string_body>;
using Response = http::response<http::string_body>;

constexpr std::uint32_t kMaxHeaderBytes = 64 * 1024;
constexpr std::uint64_t kMaxAdminBodyBytes = 64 * 1024;
constexpr auto kTlsHandshakeTimeout = std::chrono::seconds(10);
// How long and how much of a rejected body is read and discarded before the
// connection closes.
constexpr auto kLingerTimeout = std::chrono::seconds(5);
constexpr std::uint64_t kLingerMaxBytes = 64ULL << 20;
// Bytes of a record longer than limits.max_record_bytes kept in its dead
// letter, as the file input keeps of an over-long line.
constexpr std::size_t kOversizedKeepBytes = 64 * 1024;
// Maximum record lines in one probe batch. Each line costs memory and a
// store row beyond its own bytes: an undecodable "{}" line took about 190
// bytes of memory and a 100-byte dead letter. Without this cap, a gzip batch
// of a few kilobytes could hold millions of lines and use many times
// limits.max_decompressed_bytes of memory. A shipper sends 1,000 records per
// batch by default, and it halves its batches on 413.
constexpr std::size_t kMaxBatchRecords = 100000;
// Seconds a sender should wait before retrying when the store fails.
constexpr int kRetryAfterSeconds = 5;
// Requests admitted per ingest worker (being decoded, committed or waiting
// for a worker). Past this, senders get 503 and retry.
constexpr std::uint32_t kQueuedRequestsPerWorker = 8;
// Open connections allowed on the admin listener, so scrapers cannot use up
// the file descriptors of the ingest side. At the limit, a new connection
// replaces the connection idle longest (no byte of a request received). If
// none is idle, the new connection is closed at once.
constexpr std::uint32_t kMaxAdminConnections = 16;
// Time an admin connection gets for a request head, from its first byte (or
// from the accept). It is shorter than limits.read_timeout, so connections
// that send half a head free their slot within seconds.
constexpr auto kAdminHeadTimeout = std::chrono::seconds(5);
// Wait before retrying a failed accept (EMFILE, ENFILE, ENOBUFS and the
// like), doubled after each further failure up to the maximum. Retrying at
// once would spin, because the pending connection stays in the backlog.
constexpr auto kAcceptRetryInitial = std::chrono::milliseconds(100);
constexpr auto kAcceptRetryMax = std::chrono::milliseconds(2000);
// At most one log line per listener in this interval for failed accepts.
constexpr auto kAcceptErrorLogInterval = std::chrono::seconds(10);
// At most one log line in this interval for requests rejected with 403
// because their sensor is revoked or presented the wrong client certificate.
constexpr auto kSensorRejectionLogInterval = std::chrono::seconds(10);
// At most one log line in this interval for requests rejected with 503
// because their sensor was sending limits.max_slots_per_sensor bodies.
constexpr auto kSensorBusyLogInterval = std::chrono::seconds(10);
// The largest TLS record's plaintext (RFC 8446, section 5.1).
constexpr std::uint64_t kMaxTlsRecordBytes = 16384;
// At most one log line in this interval for request bodies cut because they
// arrived slower than limits.min_body_rate.
constexpr auto kSlowBodyLogInterval = std::chrono::seconds(10);
// At most one log line in this interval for connections closed because a
// request head was not complete within limits.header_timeout.
constexpr auto kHeaderTimeoutLogInterval = std::chrono::seconds(10);
// File descriptors kept free for the store, log files, outputs and file
// inputs when comparing limits.max_connections with RLIMIT_NOFILE (an
// estimate, with headroom).
constexpr std::uint64_t kReservedDescriptors = 64;
// Files of published folders read or sent at once, over all folders. Each
// takes up to its folder's max_file_size of memory until it is sent.
constexpr std::uint32_t kMaxPublishedReads = 8;

Response makeResponse(unsigned version, bool keep_alive, http::status status,
                      std::string content_type, std::string body) {
  Response response{status, version};
  response.set(http::field::server, "webtrap-collector");
  response.set(http::field::content_type, content_type);
  response.body() = std::move(body);
  response.keep_alive(keep_alive);
  response.prepare_payload();
  return response;
}

Response jsonError(const Request& request, http::status status, std::string_view message) {
  std::string body;
  JsonWriter json(body);
  json.beginObject();
  json.member("error", message);
  json.endObject();
  body += '\n';
  return makeResponse(request.version(), request.keep_alive(), status, "application/json",
                      std::move(body));
}

// Returns the credential of an `Authorization` header: the Bearer token, or
// the password of Basic credentials when `allow_basic` is set.
std::optional<std::string> credentialOf(std::string_view header, bool allow_basic) {
  auto space = header.find(' ');
  if (space == std::string_view::npos) {
    return std::nullopt;
  }
  std::string_view scheme = header.substr(0, space);
  std::string_view value = header.substr(space + 1);
  while (!value.empty() && value.front() == ' ') {
    value.remove_prefix(1);
  }
  if (equalsIgnoreCase(scheme, "Bearer") && !value.empty()) {
    return std::string(value);
  }
  if (allow_basic && equalsIgnoreCase(scheme, "Basic")) {
    auto decoded = base64Decode(value);
    if (!decoded) {
      return std::nullopt;
    }
    auto colon = decoded->find(':');
    if (colon == std::string::npos || colon + 1 == decoded->size()) {
      return std::nullopt;
    }
    return decoded->substr(colon + 1);
  }
  return std::nullopt;
}

// Compares two secrets in time that depends only on their lengths, so the
// response time does not reveal how many leading bytes of a guess match.
bool equalsInConstantTime(std::string_view given, std::string_view expected) {
  return given.size() == expected.size() &&
         CRYPTO_memcmp(given.data(), expected.data(), expected.size()) == 0;
}

struct X509Deleter {
  void operator()(X509* certificate) const { X509_free(certificate); }
};
using X509Ptr = std::unique_ptr<X509, X509Deleter>;

// Returns the SHA-256 of the certificate's DER encoding as lowercase hex.
std::string derSha256Hex(X509* certificate) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  if (X509_digest(certificate, EVP_sha256(), digest, &length) != 1) {
    throw std::runtime_error("X509_digest failed; cannot hash the client certificate");
  }
  return hexEncode(std::string_view(reinterpret_cast<const char*>(digest), length));
}

// Returns the subject common name, or an empty string when the subject has
// no CN or more than one (with two, which one a binding means is ambiguous).
std::string subjectCommonName(X509* certificate) {
  X509_NAME* subject = X509_get_subject_name(certificate);
  if (subject == nullptr) {
    return {};
  }
  int index = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
  if (index < 0 || X509_NAME_get_index_by_NID(subject, NID_commonName, index) >= 0) {
    return {};
  }
  ASN1_STRING* data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, index));
  unsigned char* utf8 = nullptr;
  int length = ASN1_STRING_to_UTF8(&utf8, data);
  if (length < 0) {
    return {};
  }
  std::string name(reinterpret_cast<const char*>(utf8), static_cast<std::size_t>(length));
  OPENSSL_free(utf8);
  return name;
}

bool hasLineLongerThan(std::string_view body, std::uint64_t max_bytes) {
  std::size_t start = 0;
  while (start < body.size()) {
    std::size_t end = body.find('\n', start);
    if (end == std::string_view::npos) {
      end = body.size();
    }
    if (end - start > max_bytes) {
      return true;
    }
    start = end + 1;
  }
  return false;
}

// Returns the length of a POST /v1/modsecurity body without its trailing
// line ends, so that it is measured against limits.max_record_bytes as an
// NDJSON line of /v1/records is.
std::size_t recordLength(std::string_view body) {
  std::size_t end = body.find_last_not_of("\r\n");
  return end == std::string_view::npos ? 0 : end + 1;
}

// Returns the number of lines of `body` that the ingest path decodes (see
// forEachRecordLine), so blank lines do not count.
std::size_t countRecordLines(std::string_view body) {
  std::size_t lines = 0;
  forEachRecordLine(body, [&](std::string_view) { ++lines; });
  return lines;
}

bool anyLineStartsWithObject(std::string_view body) {
  std::size_t start = 0;
  while (start < body.size()) {
    std::size_t first = body.find_first_not_of(" \t\r", start);
    // The decoder skips a UTF-8 byte order mark there too (trimRecord).
    if (first != std::string_view::npos && body.substr(first, 3) == "\xEF\xBB\xBF") {
      first += 3;
    }
    if (first < body.size() && body[first] == '{') {
      return true;
    }
    std::size_t end = body.find('\n', start);
    if (end == std::string_view::npos) {
      break;
    }
    start = end + 1;
  }
  return false;
}

}  // namespace

std::string certificateFileSha256(const std::filesystem::path& path) {
  std::unique_ptr<BIO, decltype(&BIO_free)> file(BIO_new_file(path.c_str(), "r"), &BIO_free);
  if (!file) {
    throw ConfigError(fmt::format("--client-certificate {}: cannot open the file; give a PEM "
                                  "certificate",
                                  path.string()));
  }
  X509Ptr certificate(PEM_read_bio_X509(file.get(), nullptr, nullptr, nullptr));
  if (!certificate) {
    throw ConfigError(fmt::format("--client-certificate {}: no PEM certificate found in the file",
                                  path.string()));
  }
  return derSha256Hex(certificate.get());
}

ssl::context makeIngestTlsContext(const IngestTlsOptions& options) {
  ssl::context context(ssl::context::tls_server);
  context.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                      ssl::context::no_sslv3 | ssl::context::no_tlsv1 |
                      ssl::context::no_tlsv1_1 | ssl::context::single_dh_use);
  boost::system::error_code ec;
  context.use_certificate_chain_file(options.certificate.string(), ec);
  if (ec) {
    throw ConfigError(fmt::format("tls.certificate: cannot load \"{}\": {}; give a PEM "
                                  "certificate chain",
                                  options.certificate.string(), ec.message()));
  }
  context.use_private_key_file(options.private_key.string(), ssl::context::pem, ec);
  if (ec) {
    throw ConfigError(fmt::format("tls.private_key: cannot load \"{}\": {}; give the PEM key "
                                  "of tls.certificate",
                                  options.private_key.string(), ec.message()));
  }
  if (!options.client_ca.empty()) {
    context.load_verify_file(options.client_ca.string(), ec);
    if (ec) {
      throw ConfigError(fmt::format("tls.client_ca: cannot load \"{}\": {}; give a PEM CA "
                                    "bundle",
                                    options.client_ca.string(), ec.message()));
    }
    auto mode = ssl::verify_peer;
    if (options.require_client_certificate) {
      mode |= ssl::verify_fail_if_no_peer_cert;
    }
    context.set_verify_mode(mode);
  }
  return context;
}

// The client certificate of a TLS connection, taken after the handshake
// verified it against tls.client_ca.
struct ClientCertificate {
  std::string sha256;  // of the DER encoding, lowercase hex; empty: none presented
  std::string common_name;  // empty: none, or more than one CN in the subject
};

// Metrics of the network side.
struct ServerCounters {
  explicit ServerCounters(MetricsRegistry& registry)
      : registry(registry),
        connections_accepted(registry.counter("webtrap_collector_connections_accepted_total",
                                              "Connections accepted on the ingest listener")),
        connections_rejected(registry.counter(
            "webtrap_collector_connections_rejected_total",
            "Ingest connections closed at once because limits.max_connections was reached")),
        connections_open(registry.gauge("webtrap_collector_connections_open",
                                        "Open connections on the ingest listener")),
        tls_handshake_failures(registry.counter("webtrap_collector_tls_handshake_failures_total",
                                                "TLS handshakes on the ingest listener that "
                                                "failed (including rejected client "
                                                "certificates)")),
        timeouts(registry.counter("webtrap_collector_request_timeouts_total",
                                  "Connections closed by limits.read_timeout or "
                                  "limits.idle_timeout")),
        header_timeouts(registry.counter(
            "webtrap_collector_header_timeouts_total",
            "Ingest connections closed because a request head was not complete within "
            "limits.header_timeout (no sensor label: the token is in the head)")),
        in_flight(registry.gauge("webtrap_collector_requests_in_flight",
                                 "Ingest requests admitted and not yet answered (body being "
                                 "read, decoded or committed, or response being sent)")),
        busy(registry.counter("webtrap_collector_requests_busy_total",
                              "Ingest requests rejected with 503 because every ingest slot "
                              "was taken")),
        admin_connections_rejected(registry.counter(
            "webtrap_collector_admin_connections_rejected_total",
            "Admin connections closed at once because the admin connection limit was reached "
            "and no admin connection was idle")),
        admin_connections_evicted(registry.counter(
            "webtrap_collector_admin_connections_evicted_total",
            "Idle admin connections closed to make room for a new one at the admin connection "
            "limit")) {
    // Registered up front, so that /metrics shows them as 0 before the first event.
    for (std::string_view reason : {"revoked", "certificate"}) {
      sensorRejected(reason);
    }
    for (std::string_view input : {"probe", "modsecurity_http"}) {
      oversizedRecords(input);
    }
  }

  Counter& acceptFailures(std::string_view listener) {
    return registry.counter("webtrap_collector_accept_failures_total",
                            "Failed accepts (such as EMFILE), by listener",
                            fmt::format("listener=\"{}\"", listener));
  }

  // Ingest requests rejected with 503 because their sensor already sent
  // limits.max_slots_per_sensor request bodies. The label values are enrolled sensor
  // ids, because only a valid token reaches the slot check.
  Counter& sensorBusy(std::string_view sensor_id) {
    return registry.counter(
        "webtrap_collector_sensor_requests_busy_total",
        "Ingest requests rejected with 503 because their sensor was already sending "
        "limits.max_slots_per_sensor request bodies, by sensor",
        fmt::format("sensor=\"{}\"", escapeLabelValue(sensor_id)));
  }

  // Ingest request bodies cut because they arrived slower than
  // limits.min_body_rate. Only an admitted request (a valid token) has its
  // body read, so the label values are enrolled sensor ids.
  Counter& slowBodies(std::string_view sensor_id) {
    return registry.counter(
        "webtrap_collector_slow_bodies_total",
        "Ingest request bodies cut, and their connections closed, because they arrived slower "
        "than limits.min_body_rate after limits.min_body_rate_grace, by sensor",
        fmt::format("sensor=\"{}\"", escapeLabelValue(sensor_id)));
  }

  // Ingest requests rejected although their token belongs to an enrolled
  // sensor: reason "revoked" or "certificate".
  Counter& sensorRejected(std::string_view reason) {
    return registry.counter("webtrap_collector_sensor_requests_rejected_total",
                            "Ingest requests with the token of an enrolled sensor rejected with "
                            "403, by reason (revoked sensor, client certificate not the one "
                            "enrolled)",
                            fmt::format("reason=\"{}\"", reason));
  }

  Counter& oversizedRecords(std::string_view input) {
    return registry.counter("webtrap_collector_oversized_records_total",
                            "Records longer than limits.max_record_bytes, put in the dead-letter "
                            "store, by input",
                            fmt::format("input=\"{}\"", input));
  }

  Counter& response(std::string_view endpoint, unsigned status) {
    return registry.counter("webtrap_collector_http_responses_total",
                            "HTTP responses of the ingest listener, by endpoint and status",
                            fmt::format("endpoint=\"{}\",status=\"{}\"", endpoint, status));
  }

  // Metrics of a published folder, with the folder's output as the label.
  Counter& publishedRequests(std::string_view folder, unsigned status) {
    return registry.counter("webtrap_collector_published_requests_total",
                            "Requests for files of published folders, by folder and status",
                            fmt::format("folder=\"{}\",status=\"{}\"", folder, status));
  }
  Counter& publishedBytes(std::string_view folder) {
    return registry.counter("webtrap_collector_published_bytes_total",
                            "Body bytes of files sent from published folders, by folder",
                            fmt::format("folder=\"{}\"", folder));
  }
  Counter& publishedNotModified(std::string_view folder) {
    return registry.counter("webtrap_collector_published_not_modified_total",
                            "Requests for files of published folders answered with 304 Not "
                            "Modified, by folder",
                            fmt::format("folder=\"{}\"", folder));
  }
  Counter& publishedDenied(std::string_view folder, std::string_view reason) {
    return registry.counter("webtrap_collector_published_denied_total",
                            "Requests for files of published folders that were denied, by "
                            "folder and reason (token, method, name, symlink, not_regular, "
                            "too_large, hardlink, busy, read_error)",
                            fmt::format("folder=\"{}\",reason=\"{}\"", folder, reason));
  }

  MetricsRegistry& registry;
  Counter& connections_accepted;
  Counter& connections_rejected;
  Gauge& connections_open;
  Counter& tls_handshake_failures;
  Counter& timeouts;
  Counter& header_timeouts;
  Gauge& in_flight;
  Counter& busy;
  Counter& admin_connections_rejected;
  Counter& admin_connections_evicted;
};

// Admin connection state used by the admin listener's idle list. The fields
// are guarded by CollectorServer::Impl::admin_mutex.
struct AdminConnection {
  virtual ~AdminConnection() = default;
  // Closes the connection on its own strand. Called after `evicted` was set.
  virtual void evict() = 0;

  // Position of this connection in Impl::idle_admin while it waits for a
  // request with no byte of it received.
  std::optional<std::list<std::weak_ptr<AdminConnection>>::iterator> idle_position;
  // Chosen to make room: its slot now belongs to a new connection.
  bool evicted = false;
};

// Retry state of one accept loop. Only the loop's own completion handlers
// touch it, and they run one after another.
struct AcceptBackoff {
  std::chrono::milliseconds delay{0};
  LogThrottle log{kAcceptErrorLogInterval};
};

struct CollectorServer::Impl : std::enable_shared_from_this<CollectorServer::Impl> {
  Impl(asio::io_context& io_context, ServerOptions server_options, Store& store_ref,
       Ingest& ingest_ref, MetricsRegistry& registry, std::function<HealthReport()> health_fn)
      : io(io_context),
        options(std::move(server_options)),
        store(store_ref),
        ingest(ingest_ref),
        metrics(registry),
        health(std::move(health_fn)),
        counters(registry),
        workers(options.ingest_workers),
        ingest_acceptor(io_context),
        admin_acceptor(io_context),
        ingest_retry_timer(io_context),
        admin_retry_timer(io_context),
        published_slots(kMaxPublishedReads) {
    if (options.dashboard != nullptr &&
        (!options.admin_guard || &options.dashboard->tokenGuard() != options.admin_guard.get())) {
      throw std::invalid_argument(
          "ServerOptions: the dashboard must use admin_guard, or a client blocked on one admin "
          "route could go on guessing the admin token on another");
    }
    // Registered up front, so that /metrics shows them as 0 before the first request.
    for (const PublishedFolder& folder : options.published_folders) {
      counters.publishedBytes(folder.name);
      counters.publishedNotModified(folder.name);
      for (std::string_view reason : {"token", "method", "name", "symlink", "not_regular",
                                      "too_large", "hardlink", "busy", "read_error"}) {
        counters.publishedDenied(folder.name, reason);
      }
    }
  }

  asio::io_context& io;
  ServerOptions options;
  Store& store;
  Ingest& ingest;
  MetricsRegistry& metrics;
  std::function<HealthReport()> health;
  ServerCounters counters;
  asio::thread_pool workers;
  tcp::acceptor ingest_acceptor;
  tcp::acceptor admin_acceptor;
  std::atomic<std::uint32_t> open_connections{0};
  std::atomic<std::uint32_t> open_admin_connections{0};
  std::mutex admin_mutex;
  // Idle admin connections, the one idle longest first. Guarded by admin_mutex.
  std::list<std::weak_ptr<AdminConnection>> idle_admin;

  // Takes the slot of the admin connection idle longest and closes it.
  // Returns false when no admin connection is idle.
  bool evictIdleAdmin() {
    std::shared_ptr<AdminConnection> victim;
    {
      std::lock_guard lock(admin_mutex);
      for (auto it = idle_admin.begin(); it != idle_admin.end(); ++it) {
        // An expired entry belongs to a connection being destroyed, and its
        // destructor removes it.
        if (auto connection = it->lock()) {
          idle_admin.erase(it);
          connection->idle_position.reset();
          connection->evicted = true;
          victim = std::move(connection);
          break;
        }
      }
    }
    if (!victim) {
      return false;
    }
    counters.admin_connections_evicted.inc();
    victim->evict();
    return true;
  }
  asio::steady_timer ingest_retry_timer;
  asio::steady_timer admin_retry_timer;
  AcceptBackoff ingest_backoff;
  AcceptBackoff admin_backoff;
  std::mutex rejection_log_mutex;
  LogThrottle rejection_log{kSensorRejectionLogInterval};
  LogThrottle sensor_busy_log{kSensorBusyLogInterval};
  LogThrottle slow_body_log{kSlowBodyLogInterval};
  LogThrottle header_timeout_log{kHeaderTimeoutLogInterval};

  PublishedReadSlots published_slots;

  std::mutex in_flight_mutex;
  std::condition_variable in_flight_done;
  std::uint32_t in_flight = 0;
  // Requests per sensor id whose bodies are being received, counted in
  // `in_flight` too. A sensor leaves the map when it has none, so the map
  // stays as small as the number of sensors sending a body. Guarded by
  // in_flight_mutex.
  std::unordered_map<std::string, std::uint32_t> slots_by_sensor;
  // Set under in_flight_mutex, read without it where a stale value is harmless.
  std::atomic<bool> stopping{false};

  enum class Admission { kAdmitted, kBusy, kSensorBusy, kStopping };

  // Reserves a slot for one request of `sensor_id` from the end of its
  // header until its response is written. Returns kSensorBusy when the
  // sensor already has limits.max_slots_per_sensor bodies being received,
  // and kBusy when every slot is taken, so the request gets 503 before its
  // body is read. The slot count bounds bodies in memory to the slot count
  // times limits.max_body_bytes plus limits.max_decompressed_bytes. The
  // per-sensor cap keeps one sensor (a stolen token sending bodies a byte
  // at a time) from holding every slot for limits.read_timeout. It counts
  // only the body's transfer, so a web server whose many workers post
  // records at once is not held to it while the workers decode. Returns
  // kStopping once stopAccepting() or drain() has run, so no work reaches
  // the workers after drain() saw no slot in use. Each kAdmitted needs one
  // endBodyRead() with the same sensor id and one endWork().
  Admission beginWork(const std::string& sensor_id) {
    std::lock_guard lock(in_flight_mutex);
    if (stopping.load()) {
      return Admission::kStopping;
    }
    auto sensor_slots = slots_by_sensor.find(sensor_id);
    if (sensor_slots != slots_by_sensor.end() &&
        sensor_slots->second >= options.limits.max_slots_per_sensor) {
      return Admission::kSensorBusy;
    }
    if (in_flight >= options.ingest_workers * kQueuedRequestsPerWorker) {
      return Admission::kBusy;
    }
    ++in_flight;
    ++slots_by_sensor[sensor_id];
    counters.in_flight.set(in_flight);
    return Admission::kAdmitted;
  }

  void beginStopping() {
    std::lock_guard lock(in_flight_mutex);
    stopping.store(true);
  }

  // Ends the body transfer of a request of `sensor_id` (received whole or
  // failed), which frees its share of the sensor's cap.
  void endBodyRead(const std::string& sensor_id) {
    std::lock_guard lock(in_flight_mutex);
    auto sensor_slots = slots_by_sensor.find(sensor_id);
    if (sensor_slots != slots_by_sensor.end() && --sensor_slots->second == 0) {
      slots_by_sensor.erase(sensor_slots);
    }
  }

  void endWork() {
    std::lock_guard lock(in_flight_mutex);
    --in_flight;
    counters.in_flight.set(in_flight);
    in_flight_done.notify_all();
  }

  // Counts and logs a request rejected because `sensor_id` held its share of
  // the ingest slots, and returns its 503. The log has at most one line per
  // kSensorBusyLogInterval for all sensors together.
  Response sensorBusy(const Request& request, const std::string& sensor_id) {
    counters.sensorBusy(sensor_id).inc();
    std::uint32_t max_slots = options.limits.max_slots_per_sensor;
    {
      std::lock_guard lock(rejection_log_mutex);
      if (sensor_busy_log.admit()) {
        spdlog::warn(
            "collector: sensor \"{}\" is sending limits.max_slots_per_sensor ({}) "
            "request bodies; rejected a further request with 503 (rejections since the last "
            "message: {}). Many slow requests with one token can mean the token was "
            "stolen",
            sensor_id, max_slots, sensor_busy_log.takeSuppressed() + 1);
      }
    }
    auto response =
        jsonError(request, http::status::service_unavailable,
                  fmt::format("sensor \"{}\" already has {} request {} in transfer "
                              "(limits.max_slots_per_sensor is {}); retry when one is received",
                              sensor_id, max_slots, max_slots == 1 ? "body" : "bodies", max_slots));
    response.set(http::field::retry_after, "1");
    return response;
  }

  // Counts and logs an ingest body of `sensor_id` from `peer` cut after
  // `bytes` in `elapsed` because it arrived slower than
  // limits.min_body_rate. The log has at most one line per
  // kSlowBodyLogInterval for all sensors together.
  void slowBodyCut(const std::string& sensor_id, const asio::ip::address& peer, std::uint64_t bytes,
                   std::chrono::milliseconds elapsed) {
    counters.slowBodies(sensor_id).inc();
    std::lock_guard lock(rejection_log_mutex);
    if (!slow_body_log.admit()) {
      return;
    }
    spdlog::warn(
        "collector: closed the connection of sensor \"{}\" from {}: its request body "
        "sent {} bytes in {} ms, slower than limits.min_body_rate ({} bytes/s) after "
        "limits.min_body_rate_grace ({} ms) (bodies cut since the last message: {}). "
        "Many slow bodies with one token can mean the token was stolen; a sensor on a "
        "slow link needs a lower limits.min_body_rate",
        sensor_id, peer.to_string(), bytes, elapsed.count(), options.limits.min_body_rate,
        options.limits.min_body_rate_grace_ms, slow_body_log.takeSuppressed() + 1);
  }

  // Counts and logs an ingest connection from `peer` closed because its
  // request head was not complete within limits.header_timeout. The log has
  // at most one line per kHeaderTimeoutLogInterval.
  void headerTimedOut(const asio::ip::address& peer) {
    counters.header_timeouts.inc();
    std::lock_guard lock(rejection_log_mutex);
    if (!header_timeout_log.admit()) {
      return;
    }
    spdlog::warn(
        "collector: closed a connection from {}: its request head was not complete within "
        "limits.header_timeout ({} ms) (connections closed since the last message: {}). Many "
        "of them can mean a client holding connections open by sending heads slowly; a sensor "
        "on a slow link needs a longer limits.header_timeout",
        peer.to_string(), options.limits.header_timeout_ms,
        header_timeout_log.takeSuppressed() + 1);
  }

  // Looks up a sensor by token in the store on every request (one indexed
  // read), so a new enrolment works at once and a replaced token stops
  // working at once, while the collector runs.
  std::optional<SensorInfo> sensorForToken(const std::string& token) {
    return store.findSensorByTokenHash(sha256Hex(token));
  }

  // Returns the reason to reject a request that carries `sensor`'s token
  // over a connection with `certificate`, or nullopt to accept it.
  static std::optional<std::string> sensorRejection(const SensorInfo& sensor,
                                                    const ClientCertificate& certificate,
                                                    std::string_view& reason) {
    if (sensor.revoked_ms != 0) {
      reason = "revoked";
      return fmt::format("sensor \"{}\" was revoked at {}; enrol it again with `webtrap "
                         "collector enrol` to get a new token",
                         sensor.sensor_id, isoTimestampFromUnixMs(sensor.revoked_ms));
    }
    bool bound = !sensor.certificate_sha256.empty() || !sensor.certificate_cn.empty();
    if (!bound) {
      return std::nullopt;
    }
    reason = "certificate";
    if (certificate.sha256.empty()) {
      return fmt::format("sensor \"{}\" is enrolled with a client certificate; connect over "
                         "TLS and present that certificate",
                         sensor.sensor_id);
    }
    if (!sensor.certificate_sha256.empty() &&
        !equalsInConstantTime(certificate.sha256, sensor.certificate_sha256)) {
      return fmt::format("the client certificate (SHA-256 {}) is not the one enrolled for "
                         "sensor \"{}\"",
                         certificate.sha256, sensor.sensor_id);
    }
    if (!sensor.certificate_cn.empty() && certificate.common_name != sensor.certificate_cn) {
      return fmt::format("the client certificate subject CN \"{}\" is not the one enrolled for "
                         "sensor \"{}\"",
                         certificate.common_name, sensor.sensor_id);
    }
    return std::nullopt;
  }

  // Logs a rejected sensor request, at most once per kSensorRejectionLogInterval
  // for all sensors together, with the number left out since the last line.
  void logSensorRejection(const std::string& message) {
    std::lock_guard lock(rejection_log_mutex);
    if (!rejection_log.admit()) {
      return;
    }
    spdlog::warn("collector: rejected an ingest request with 403: {} ({} rejections since the "
                 "last message)",
                 message, rejection_log.takeSuppressed() + 1);
  }

  // Sets webtrap_collector_sensor_revoked for every enrolled sensor from the
  // store, so a sensor revoked by another process shows at the next scrape.
  void refreshSensorGauges() {
    std::vector<SensorInfo> sensors;
    try {
      sensors = store.sensors();
    } catch (const std::exception& error) {
      spdlog::error("collector: listing sensors for /metrics failed: {}", error.what());
      return;
    }
    for (const SensorInfo& sensor : sensors) {
      metrics
          .gauge("webtrap_collector_sensor_revoked",
                 "1 when the sensor is revoked (its token is rejected), 0 when it is enrolled",
                 fmt::format("sensor=\"{}\"", escapeLabelValue(sensor.sensor_id)))
          .set(sensor.revoked_ms != 0 ? 1 : 0);
    }
  }

  // The behavioural tagger's verdicts per key (docs/oat.md, "Verdicts").
  Response oatVerdicts(const Request& request) {
    const BehaviourTagger* tagger = ingest.behaviour();
    if (tagger == nullptr) {
      return jsonError(request, http::status::not_found,
                       "this collector has no behavioural tagger");
    }
    constexpr std::size_t kMaxKeys = 1000;
    std::int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                              std::chrono::system_clock::now().time_since_epoch())
                              .count();
    std::vector<KeyVerdicts> table = tagger->verdicts(now_ms, kMaxKeys);
    return makeResponse(request.version(), request.keep_alive(), http::status::ok,
                        "application/json", keyVerdictsJson(table) + "\n");
  }

  // Returns the client address of an admin request from `peer`: the peer,
  // or the address that a trusted proxy put in X-Forwarded-For.
  asio::ip::address adminClient(const Request& request, const asio::ip::address& peer) const {
    if (options.admin_trusted_proxies.empty()) {
      return peer;
    }
    std::vector<std::string_view> forwarded_for;
    for (auto [it, end] = request.equal_range("X-Forwarded-For"); it != end; ++it) {
      forwarded_for.emplace_back(it->value().data(), it->value().size());
    }
    return options.admin_trusted_proxies.clientAddress(peer, forwarded_for);
  }

  // Checks the admin token of a request to `route` from `client` with
  // admin_guard. Returns 401 or 429 to send, or nullopt when the request
  // may go on. Without a token the request gets 401 and counts as no
  // failure, because it guessed nothing.
  std::optional<Response> checkAdminToken(const Request& request, AdminRoute route,
                                          const asio::ip::address& client) {
    AdminTokenGuard& guard = *options.admin_guard;
    auto credential = credentialOf(request[http::field::authorization], false);
    if (request.count(http::field::authorization) > 1) {
      credential.reset();
    }
    if (credential) {
      if (auto retry_after = guard.blockedFor(client, route);
          retry_after > AdminTokenGuard::Clock::duration::zero()) {
        auto response = jsonError(request, http::status::too_many_requests,
                                  AdminTokenGuard::blockedMessage(retry_after));
        response.set(http::field::retry_after,
                     std::to_string(AdminTokenGuard::retryAfterSeconds(retry_after)));
        return response;
      }
      if (guard.check(*credential, client, route)) {
        return std::nullopt;
      }
    }
    auto response = jsonError(request, http::status::unauthorized,
                              "missing or wrong admin token; send Authorization: Bearer "
                              "<admin.token>");
    response.set(http::field::www_authenticate, "Bearer");
    return response;
  }

  // Handles an admin request from `client` at once (no store writes).
  // Dashboard requests go to DashboardHttp::handleAsync() before this; the
  // dashboard checks the admin token itself, with the same guard, because
  // it also accepts its session cookie.
  Response handleAdmin(const Request& request, const asio::ip::address& client) {
    std::string_view target = request.target();
    if (options.admin_guard) {
      AdminRoute route = AdminRoute::kOther;
      if (target == "/metrics") {
        route = AdminRoute::kMetrics;
      } else if (target == "/healthz") {
        route = AdminRoute::kHealthz;
      } else if (target == "/v1/oat/verdicts") {
        route = AdminRoute::kOatVerdicts;
      }
      if (auto rejection = checkAdminToken(request, route, client)) {
        return std::move(*rejection);
      }
    }
    if (request.method() != http::verb::get && request.method() != http::verb::head) {
      return jsonError(request, http::status::method_not_allowed, "use GET");
    }
    if (target == "/metrics") {
      refreshSensorGauges();
      return makeResponse(request.version(), request.keep_alive(), http::status::ok,
                          "text/plain; version=0.0.4; charset=utf-8", metrics.render());
    }
    if (target == "/healthz") {
      HealthReport report = health();
      return makeResponse(request.version(), request.keep_alive(),
                          report.healthy ? http::status::ok : http::status::service_unavailable,
                          "application/json", report.json + "\n");
    }
    if (target == "/v1/oat/verdicts") {
      return oatVerdicts(request);
    }
    // Enabled dashboards never reach this handler (see above).
    if (target.starts_with("/dashboard")) {
      return jsonError(request, http::status::not_found,
                       "the dashboard is off; set dashboard.enabled: true and admin.token in "
                       "the collector's configuration (docs/dashboard.md)");
    }
    return jsonError(request, http::status::not_found,
                     "not found; use /metrics, /healthz or /v1/oat/verdicts");
  }

  const PublishedFolder* publishedFolderFor(std::string_view target) const {
    for (const PublishedFolder& folder : options.published_folders) {
      if (isUnderPrefix(folder, target)) {
        return &folder;
      }
    }
    return nullptr;
  }

  // Serves a file of a published folder and counts the request. The
  // returned slot must be kept until the response is written.
  Response servePublished(const PublishedFolder& folder, const Request& request,
                          std::shared_ptr<void>& read_slot) {
    PublishedFileResponse result = servePublishedFile(folder, request, published_slots);
    counters.publishedRequests(folder.name, result.response.result_int()).inc();
    if (!result.denied.empty()) {
      counters.publishedDenied(folder.name, result.denied).inc();
    }
    if (result.response.result() == http::status::not_modified) {
      counters.publishedNotModified(folder.name).inc();
    }
    counters.publishedBytes(folder.name).inc(result.body_bytes);
    read_slot = std::move(result.read_slot);
    return std::move(result.response);
  }

  // Checks the header of an ingest request (path, method, token and
  // Content-Length) before any of its body is read, so a client without a
  // valid token cannot make the collector buffer a body. Returns a response
  // when the request is rejected, or fills `source`.
  std::optional<Response> checkIngestHeader(const Request& request,
                                            std::optional<std::uint64_t> content_length,
                                            const ClientCertificate& certificate,
                                            IngestSource& source, std::string_view& endpoint) {
    std::string_view target = request.target();
    bool is_records = target == "/v1/records";
    // libmodsecurity 3.0.9 sends no credentials, and its SecAuditLog URL
    // accepts only [0-9A-Za-z_/.*:-], so `user:token@` cannot be written
    // there. The token may therefore be the last path segment instead.
    constexpr std::string_view kModsecurityPath = "/v1/modsecurity";
    std::string_view path_token;
    bool is_modsecurity = target == kModsecurityPath;
    if (target.starts_with(kModsecurityPath) && target.size() > kModsecurityPath.size() + 1 &&
        target[kModsecurityPath.size()] == '/') {
      is_modsecurity = true;
      path_token = target.substr(kModsecurityPath.size() + 1);
    }
    endpoint = is_records ? "records" : (is_modsecurity ? "modsecurity" : "other");
    if (!is_records && !is_modsecurity) {
      return jsonError(request, http::status::not_found,
                       "not found; POST probe batches to /v1/records and ModSecurity audit "
                       "records to /v1/modsecurity");
    }
    if ((is_records && !options.probe_input) ||
        (is_modsecurity && !options.modsecurity_http_input)) {
      return jsonError(request, http::status::not_found,
                       "this input is turned off in the collector configuration (inputs.*)");
    }
    if (request.method() != http::verb::post) {
      auto response = jsonError(request, http::status::method_not_allowed, "use POST");
      response.set(http::field::allow, "POST");
      return response;
    }

    // With two Authorization headers, a proxy or a log could see one token
    // while the collector checks the other.
    if (request.count(http::field::authorization) > 1) {
      return jsonError(request, http::status::bad_request,
                       "more than one Authorization header; send exactly one");
    }
    auto credential = credentialOf(request[http::field::authorization], is_modsecurity);
    if (!credential && !path_token.empty()) {
      credential = std::string(path_token);
    }
    std::optional<SensorInfo> sensor;
    if (credential) {
      try {
        sensor = sensorForToken(*credential);
      } catch (const std::exception& error) {
        spdlog::error("collector: token lookup in the store failed: {}", error.what());
        auto response = jsonError(request, http::status::service_unavailable,
                                  "the store cannot be read now; retry later");
        response.set(http::field::retry_after, std::to_string(kRetryAfterSeconds));
        return response;
      }
    }
    if (!sensor) {
      auto response = jsonError(request, http::status::unauthorized,
                                credential ? "unknown token; enrol the sensor with `webtrap "
                                             "collector enrol`"
                                           : "missing token; send Authorization: Bearer <token>");
      response.set(http::field::www_authenticate,
                   is_modsecurity ? "Basic realm=\"webtrap\", Bearer" : "Bearer");
      return response;
    }
    std::string_view rejection_reason;
    if (auto message = sensorRejection(*sensor, certificate, rejection_reason)) {
      counters.sensorRejected(rejection_reason).inc();
      logSensorRejection(*message);
      return jsonError(request, http::status::forbidden, *message);
    }

    if (content_length && *content_length > options.limits.max_body_bytes) {
      return bodyTooLarge(request);
    }

    source.input = is_records ? InputKind::kProbe : InputKind::kModsecurityHttp;
    source.format = is_records ? RecordFormat::kWebtrap : RecordFormat::kAuto;
    source.sensor_id = sensor->sensor_id;
    source.group = sensor->group;
    return std::nullopt;
  }

  Response bodyTooLarge(const Request& request) const {
    return jsonError(request, http::status::payload_too_large,
                     fmt::format("body larger than limits.max_body_bytes ({} bytes); send "
                                 "smaller batches",
                                 options.limits.max_body_bytes));
  }

  // Decompresses and checks the body of an admitted ingest request. Returns
  // a response when the body is rejected, or fills `body`. `keep_gzip` is
  // set when the request's gzip body may be stored in place of the
  // documents' originals: its member headers carry nothing that inflates
  // to nothing (see Ingest::ingestLines for the other conditions).
  std::optional<Response> decodeIngestBody(Request& request, const IngestSource& source,
                                           std::string& body, bool& keep_gzip) {
    keep_gzip = false;
    bool is_records = source.input == InputKind::kProbe;
    bool is_modsecurity = !is_records;
    ingest.countBytes(source.input, request.body().size());

    std::string_view encoding = request[http::field::content_encoding];
    if (encoding.empty() || equalsIgnoreCase(encoding, "identity")) {
      body = std::move(request.body());
    } else if (equalsIgnoreCase(encoding, "gzip")) {
      std::optional<std::string> inflated;
      try {
        inflated =
            gunzip(request.body(), options.limits.max_decompressed_bytes, &keep_gzip);
      } catch (const std::invalid_argument& error) {
        return jsonError(request, http::status::bad_request,
                         fmt::format("body is not valid gzip: {}", error.what()));
      }
      if (!inflated) {
        return jsonError(request, http::status::payload_too_large,
                         fmt::format("body inflates past limits.max_decompressed_bytes ({} "
                                     "bytes); send smaller batches",
                                     options.limits.max_decompressed_bytes));
      }
      body = std::move(*inflated);
    } else {
      return jsonError(request, http::status::bad_request,
                       fmt::format("unsupported Content-Encoding \"{}\"; use gzip or none",
                                   encoding));
    }

    // A body in which no line starts like a JSON object is not NDJSON at all
    // (wrong endpoint, binary data): it is rejected whole, not dead-lettered
    // line by line. A batch with some good lines goes through.
    if (body.find_first_not_of(" \t\r\n") == std::string::npos) {
      if (is_modsecurity) {
        return jsonError(request, http::status::bad_request,
                         "empty body; expected one JSON audit record");
      }
    } else if (!anyLineStartsWithObject(body)) {
      return jsonError(request, http::status::bad_request,
                       is_records ? "body is not NDJSON: expected one JSON object per line"
                                  : "body is not a JSON audit record");
    }
    if (is_records && countRecordLines(body) > kMaxBatchRecords) {
      return jsonError(request, http::status::payload_too_large,
                       fmt::format("batch has more than {} records; send smaller batches",
                                   kMaxBatchRecords));
    }
    return std::nullopt;
  }

  // Makes the dead letter of a record longer than limits.max_record_bytes.
  // It keeps the first kOversizedKeepBytes of the record, card numbers
  // masked before the cut, so that no cut-off number escapes the mask. The
  // caller counts it once its commit succeeds, so a batch sent again after
  // a 503 is counted once.
  DeadLetter oversizedLetter(std::string_view record, const IngestSource& source) {
    std::optional<std::string> masked = maskCardNumbersInJson(record);
    std::string_view text = masked ? std::string_view(*masked) : record;
    DeadLetter letter;
    // A limit below kOversizedKeepBytes keeps the whole record.
    std::string kept = record.size() > kOversizedKeepBytes
                           ? fmt::format("only its first {} bytes are kept here", kOversizedKeepBytes)
                           : std::string("it is kept here whole");
    letter.reason = fmt::format("input={} sensor={}: the record is {} bytes, longer than "
                                "limits.max_record_bytes ({} bytes); {}. Raise "
                                "limits.max_record_bytes if such records are expected",
                                inputLabel(source.input), source.sensor_id, record.size(),
                                options.limits.max_record_bytes, kept);
    letter.payload = std::string(text.substr(0, kOversizedKeepBytes));
    return letter;
  }

  // Ingests an NDJSON batch. A batch with a line longer than
  // limits.max_record_bytes is decoded here, line by line, so that its
  // records and the dead letters of its long lines share one commit. Every
  // other batch takes Ingest::ingestLines(), which parses lines in place.
  IngestResult ingestBatch(const std::shared_ptr<const std::string>& shared_body,
                           const IngestSource& source, std::string_view gzip) {
    std::string_view body = *shared_body;
    std::uint64_t max_record = options.limits.max_record_bytes;
    if (body.size() <= max_record || !hasLineLongerThan(body, max_record)) {
      return ingest.ingestLines(body, source, gzip, shared_body);
    }
    DecodeOptions decode = decodeOptionsFor(source);
    std::vector<AuditRecord> records;
    std::vector<DeadLetter> rejected;
    std::uint64_t oversized = 0;
    // The same lines as Ingest::ingestLines() takes from the body.
    forEachRecordLine(body, [&](std::string_view line) {
      if (line.size() > max_record) {
        rejected.push_back(oversizedLetter(line, source));
        ++oversized;
        return;
      }
      DecodeResult decoded = decodeAuditRecord(line, decode);
      if (decoded.ok) {
        records.push_back(std::move(decoded.record));
        return;
      }
      // The same reason and payload as Ingest::ingestLines() gives an
      // undecodable line; ingestDecoded() masks and cuts the payload.
      DeadLetter letter;
      letter.reason = fmt::format("input={} sensor={}: {}", inputLabel(source.input),
                                  source.sensor_id, decoded.error);
      letter.payload = std::string(line);
      rejected.push_back(std::move(letter));
    });
    IngestResult result = ingest.ingestDecoded(records, std::move(rejected), source);
    counters.oversizedRecords(inputLabel(source.input)).inc(oversized);
    return result;
  }

  // Decodes and commits on a worker thread; returns the response.
  Response runIngest(const Request& request, const std::shared_ptr<const std::string>& shared_body,
                     const IngestSource& source) {
    const std::string& body = *shared_body;
    IngestResult result;
    try {
      if (source.input == InputKind::kProbe) {
        // A gzip body is still in the request (see onIngestBody).
        result = ingestBatch(shared_body, source, request.body());
      } else if (recordLength(body) > options.limits.max_record_bytes) {
        std::vector<DeadLetter> rejected;
        rejected.push_back(oversizedLetter(body, source));
        result = ingest.ingestDecoded({}, std::move(rejected), source);
        counters.oversizedRecords(inputLabel(source.input)).inc();
      } else {
        result = ingest.ingestRecord(body, source);
      }
    } catch (const StoreUnavailable&) {
      auto response = jsonError(request, http::status::service_unavailable,
                                "the store cannot take records now; retry later");
      response.set(http::field::retry_after, std::to_string(kRetryAfterSeconds));
      return response;
    } catch (const std::exception& error) {
      // An exception must not leave the worker thread, which would end the
      // process. Nothing was committed, so the sender may retry.
      spdlog::error("collector: ingest failed sensor={}: {}", source.sensor_id, error.what());
      return jsonError(request, http::status::internal_server_error,
                       "ingest failed; nothing of the batch was stored");
    }
    std::string ack;
    JsonWriter json(ack);
    json.beginObject();
    json.member("received", static_cast<std::int64_t>(result.received));
    json.member("stored", static_cast<std::int64_t>(result.stored));
    json.member("duplicates", static_cast<std::int64_t>(result.duplicates));
    json.member("rejected", static_cast<std::int64_t>(result.rejected));
    json.endObject();
    ack += '\n';
    return makeResponse(request.version(), request.keep_alive(), http::status::ok,
                        "application/json", std::move(ack));
  }
};

namespace {

using ImplPtr = std::shared_ptr<CollectorServer::Impl>;

// One HTTP/1.1 connection on either listener, over plain TCP or TLS.
template <class Stream>
class Session : public std::enable_shared_from_this<Session<Stream>>, public AdminConnection {
 public:
  using Clock = std::chrono::steady_clock;

  Session(ImplPtr impl, Stream stream, bool admin)
      : impl_(std::move(impl)), stream_(std::move(stream)), admin_(admin) {}

  ~Session() override {
    releaseSlot();
    if (admin_) {
      bool slot_taken_over = false;
      {
        std::lock_guard lock(impl_->admin_mutex);
        if (idle_position) {
          impl_->idle_admin.erase(*idle_position);
          idle_position.reset();
        }
        slot_taken_over = evicted;
      }
      // An evicted connection's slot was handed to the connection that
      // evicted it.
      if (!slot_taken_over) {
        impl_->open_admin_connections.fetch_sub(1);
      }
    } else {
      impl_->open_connections.fetch_sub(1);
      impl_->counters.connections_open.add(-1);
    }
  }

  void start() {
    beast::error_code peer_ec;
    peer_ = beast::get_lowest_layer(stream_).socket().remote_endpoint(peer_ec).address();
    if constexpr (std::is_same_v<Stream, beast::ssl_stream<beast::tcp_stream>>) {
      beast::get_lowest_layer(stream_).expires_after(kTlsHandshakeTimeout);
      stream_.async_handshake(ssl::stream_base::server,
                              [self = this->shared_from_this()](beast::error_code ec) {
                                if (ec) {
                                  self->impl_->counters.tls_handshake_failures.inc();
                                  spdlog::debug("collector: TLS handshake failed: {}",
                                                ec.message());
                                  return;
                                }
                                self->readClientCertificate();
                                self->doRead();
                              });
    } else {
      doRead();
    }
  }

 private:
  const IngestLimits& limits() const { return impl_->options.limits; }

  // Keeps the facts of the client certificate that the handshake verified.
  // A certificate is only requested when tls.client_ca is set.
  void readClientCertificate() {
    if constexpr (std::is_same_v<Stream, beast::ssl_stream<beast::tcp_stream>>) {
      SSL* ssl = stream_.native_handle();
      X509Ptr certificate(SSL_get1_peer_certificate(ssl));
      if (!certificate || SSL_get_verify_result(ssl) != X509_V_OK) {
        return;
      }
      try {
        certificate_.sha256 = derSha256Hex(certificate.get());
        certificate_.common_name = subjectCommonName(certificate.get());
      } catch (const std::exception& error) {
        spdlog::error("collector: reading the client certificate failed: {}", error.what());
        certificate_ = {};
      }
    }
  }

  void doRead() {
    parser_.emplace();
    parser_->header_limit(kMaxHeaderBytes);
    // Beast compares Content-Length with the body limit when the header
    // ends. An ingest request gets its limit only after checkIngestHeader(),
    // so that a client without a valid token gets 401, not 413.
    if (admin_) {
      parser_->body_limit(kMaxAdminBodyBytes);
    } else {
      parser_->body_limit(boost::none);
    }
    if (admin_) {
      if (buffer_.size() == 0) {
        waitForAdminRequest();
      } else {
        // The next request was sent with the last one (pipelined).
        beast::get_lowest_layer(stream_).expires_after(adminHeadTimeout());
        readHeader();
      }
      return;
    }
    // One deadline covers the header and the body of a request. The head
    // may get an earlier one from limits.header_timeout (see
    // startHeadDeadline), and the body from limits.min_body_rate (see
    // setBodyDeadline).
    auto timeout = requests_ == 0 ? limits().read_timeout_ms
                                  : limits().idle_timeout_ms + limits().read_timeout_ms;
    request_deadline_ = Clock::now() + std::chrono::milliseconds(timeout);
    if (requests_ > 0 && buffer_.size() == 0) {
      waitForIngestRequest();
      return;
    }
    startHeadDeadline();
    readHeader();
  }

  // Waits on a kept-alive ingest connection for the first byte of the next
  // request, within limits.idle_timeout. The idle time does not count
  // towards limits.header_timeout, which starts with that byte.
  void waitForIngestRequest() {
    beast::get_lowest_layer(stream_).expires_after(
        std::chrono::milliseconds(limits().idle_timeout_ms));
    stream_.async_read_some(buffer_.prepare(4096), [self = this->shared_from_this()](
                                                       beast::error_code ec, std::size_t bytes) {
      self->buffer_.commit(bytes);
      if (self->handleReadError(ec)) {
        return;
      }
      self->startHeadDeadline();
      self->readHeader();
    });
  }

  // Sets the deadline for an ingest request head: limits.header_timeout
  // from now, or the request's deadline when that comes first.
  void startHeadDeadline() {
    Clock::time_point deadline =
        Clock::now() + std::chrono::milliseconds(limits().header_timeout_ms);
    head_deadline_in_force_ = deadline < request_deadline_;
    beast::get_lowest_layer(stream_).expires_at(head_deadline_in_force_ ? deadline
                                                                        : request_deadline_);
  }

  std::chrono::milliseconds adminHeadTimeout() const {
    return std::min<std::chrono::milliseconds>(
        kAdminHeadTimeout, std::chrono::milliseconds(limits().read_timeout_ms));
  }

  // Waits for the first byte of an admin request. Meanwhile the connection
  // is idle: the admin listener may close it to make room for a new one.
  void waitForAdminRequest() {
    beast::get_lowest_layer(stream_).expires_after(
        requests_ == 0 ? adminHeadTimeout()
                       : std::chrono::milliseconds(limits().idle_timeout_ms));
    {
      std::lock_guard lock(impl_->admin_mutex);
      idle_position = impl_->idle_admin.insert(
          impl_->idle_admin.end(), std::weak_ptr<AdminConnection>(this->shared_from_this()));
    }
    stream_.async_read_some(buffer_.prepare(4096), [self = this->shared_from_this()](
                                                       beast::error_code ec, std::size_t bytes) {
      self->onAdminRequestStart(ec, bytes);
    });
  }

  void onAdminRequestStart(beast::error_code ec, std::size_t bytes) {
    {
      std::lock_guard lock(impl_->admin_mutex);
      if (evicted) {
        // evict() closes the connection. Bytes that arrived meanwhile are
        // dropped, as with any keep-alive connection closed by the server.
        return;
      }
      if (idle_position) {
        impl_->idle_admin.erase(*idle_position);
        idle_position.reset();
      }
    }
    buffer_.commit(bytes);
    if (handleReadError(ec)) {
      return;
    }
    beast::get_lowest_layer(stream_).expires_after(adminHeadTimeout());
    readHeader();
  }

  void evict() override {
    asio::post(stream_.get_executor(), [self = this->shared_from_this()] {
      // Nothing is being written: the connection was waiting for a request.
      beast::get_lowest_layer(self->stream_).close();
    });
  }

  void readHeader() {
    http::async_read_header(stream_, buffer_, *parser_,
                            [self = this->shared_from_this()](beast::error_code ec, std::size_t) {
                              self->onHeader(ec);
                            });
  }

  // Handles a failed read. Returns true when the connection is done with.
  bool handleReadError(beast::error_code ec) {
    if (!ec) {
      return false;
    }
    if (ec == http::error::end_of_stream || ec == asio::error::eof ||
        ec == asio::error::connection_reset) {
      close();
      return true;
    }
    if (ec == beast::error::timeout) {
      impl_->counters.timeouts.inc();
      close();
      return true;
    }
    if (ec == http::error::body_limit) {
      Request head;
      head.version(11);
      impl_->counters.response(admin_ ? "admin" : endpoint_, 413).inc();
      if (admin_) {
        reject(jsonError(head, http::status::payload_too_large,
                         fmt::format("admin request body larger than {} bytes; the admin "
                                     "endpoints take no body",
                                     kMaxAdminBodyBytes)));
      } else {
        reject(impl_->bodyTooLarge(head));
      }
      return true;
    }
    if (ec.category() == http::make_error_code(http::error::bad_method).category()) {
      // A malformed request head or chunk. The client learns why, and the
      // response counter shows how often it happens.
      const bool too_large = ec == http::error::header_limit;
      const http::status status =
          too_large ? http::status::request_header_fields_too_large : http::status::bad_request;
      const std::string message =
          too_large ? fmt::format("request head larger than {} bytes; send fewer or shorter "
                                  "header fields",
                                  kMaxHeaderBytes)
                    : fmt::format("malformed HTTP request: {}; check the client's framing and "
                                  "header fields",
                                  ec.message());
      spdlog::debug("collector: rejected a request: {}", message);
      Request head;
      head.version(11);
      impl_->counters.response(admin_ ? "admin" : endpoint_, static_cast<unsigned>(status)).inc();
      reject(jsonError(head, status, message));
      return true;
    }
    spdlog::debug("collector: read failed: {}", ec.message());
    close();
    return true;
  }

  void onHeader(beast::error_code ec) {
    if (!admin_ && head_deadline_in_force_) {
      head_deadline_in_force_ = false;
      if (ec == beast::error::timeout) {
        impl_->headerTimedOut(peer_);
        close();
        return;
      }
      if (!ec) {
        // The rest of the request has the request's deadline.
        beast::get_lowest_layer(stream_).expires_at(request_deadline_);
      }
    }
    if (handleReadError(ec)) {
      return;
    }
    ++requests_;

    if (admin_) {
      // The head arrived in time. A body (the admin endpoints take none)
      // gets limits.read_timeout.
      beast::get_lowest_layer(stream_).expires_after(
          std::chrono::milliseconds(limits().read_timeout_ms));
      readBody([self = this->shared_from_this()](beast::error_code body_ec) {
        if (self->handleReadError(body_ec)) {
          return;
        }
        Request request = self->parser_->release();
        // The client that wrong admin tokens are counted by. A socket that
        // failed already gives the unspecified address.
        beast::error_code peer_ec;
        auto peer = beast::get_lowest_layer(self->stream_).socket().remote_endpoint(peer_ec);
        const asio::ip::address client = self->impl_->adminClient(request, peer.address());
        DashboardHttp* dashboard = self->impl_->options.dashboard;
        if (dashboard && DashboardHttp::handles(request.target())) {
          // Dashboard queries run on the dashboard's workers, so a slow one
          // does not hold up this I/O thread. The response is posted back
          // to this connection's executor. The work guard (shared, because
          // std::function copies its target) keeps io_context::run() going
          // until the response is sent.
          beast::get_lowest_layer(self->stream_).expires_never();
          using WorkGuard = decltype(asio::make_work_guard(self->stream_.get_executor()));
          auto work = std::make_shared<WorkGuard>(self->stream_.get_executor());
          dashboard->handleAsync(
              std::move(request), client, [self, work](Response response) mutable {
                asio::post(self->stream_.get_executor(),
                           [self, response = std::move(response)]() mutable {
                             self->send(std::move(response), false);
                           });
              });
          return;
        }
        Response response = self->impl_->handleAdmin(request, client);
        if (request.method() == http::verb::head) {
          // The headers of the GET response without its body (RFC 9110,
          // 9.3.2); a body would be read as the client's next response.
          const std::size_t size = response.body().size();
          response.body().clear();
          response.content_length(size);
        }
        self->send(std::move(response), false);
      });
      return;
    }

    const Request& head = parser_->get();
    if (const PublishedFolder* folder = impl_->publishedFolderFor(head.target())) {
      // A request for a published file takes no ingest slot. Its body, if
      // any, is read and ignored, within the admin requests' body limit.
      endpoint_ = "published";
      parser_->body_limit(kMaxAdminBodyBytes);
      readBody([self = this->shared_from_this(), folder](beast::error_code body_ec) {
        if (self->handleReadError(body_ec)) {
          return;
        }
        Request request = self->parser_->release();
        self->send(self->impl_->servePublished(*folder, request, self->published_slot_), false);
      });
      return;
    }
    std::optional<std::uint64_t> content_length;
    if (auto length = parser_->content_length()) {
      content_length = *length;
    }
    if (auto rejection =
            impl_->checkIngestHeader(head, content_length, certificate_, source_, endpoint_)) {
      impl_->counters.response(endpoint_, rejection->result_int()).inc();
      reject(std::move(*rejection));
      return;
    }
    auto admission = impl_->beginWork(source_.sensor_id);
    if (admission == CollectorServer::Impl::Admission::kSensorBusy) {
      auto response = impl_->sensorBusy(head, source_.sensor_id);
      impl_->counters.response(endpoint_, 503).inc();
      reject(std::move(response));
      return;
    }
    if (admission == CollectorServer::Impl::Admission::kBusy) {
      auto response = jsonError(head, http::status::service_unavailable,
                                "the collector is busy; retry later");
      response.set(http::field::retry_after, "1");
      impl_->counters.busy.inc();
      impl_->counters.response(endpoint_, 503).inc();
      reject(std::move(response));
      return;
    }
    if (admission == CollectorServer::Impl::Admission::kStopping) {
      auto response = jsonError(head, http::status::service_unavailable,
                                "the collector is stopping; retry later");
      response.set(http::field::retry_after, std::to_string(kRetryAfterSeconds));
      impl_->counters.response(endpoint_, 503).inc();
      reject(std::move(response));
      return;
    }
    holds_slot_ = true;
    reads_body_ = true;
    slot_sensor_ = source_.sensor_id;
    // checkIngestHeader() rejected a longer Content-Length. This limit
    // covers chunked bodies, which Beast checks chunk by chunk.
    parser_->body_limit(limits().max_body_bytes);

    if (head.version() >= 11 && equalsIgnoreCase(head[http::field::expect], "100-continue")) {
      // The client waits for this interim response before it sends the body.
      auto interim = std::make_shared<http::response<http::empty_body>>(http::status::continue_,
                                                                       head.version());
      http::async_write(
          stream_, *interim,
          [self = this->shared_from_this(), interim](beast::error_code write_ec, std::size_t) {
            if (write_ec) {
              self->releaseSlot();
              self->close();
              return;
            }
            self->startIngestBody();
          });
      return;
    }
    startIngestBody();
  }

  // Reads an admitted ingest body part by part, so that its deadline can
  // follow the bytes received (see setBodyDeadline).
  void startIngestBody() {
    body_started_ = Clock::now();
    body_bytes_ = 0;
    beast::error_code peer_ec;
    body_peer_ = beast::get_lowest_layer(stream_).socket().remote_endpoint(peer_ec).address();
    readIngestBodyPart();
  }

  void readIngestBodyPart() {
    if (parser_->is_done()) {
      onIngestBody({});
      return;
    }
    setBodyDeadline();
    http::async_read_some(
        stream_, buffer_, *parser_,
        [self = this->shared_from_this()](beast::error_code ec, std::size_t bytes) {
          self->body_bytes_ += bytes;
          if (ec == beast::error::timeout && self->rate_deadline_in_force_) {
            self->cutSlowBody();
            return;
          }
          if (ec) {
            self->onIngestBody(ec);
            return;
          }
          self->readIngestBodyPart();
        });
  }

  // Sets the deadline for the next part of an ingest body: the request's
  // limits.read_timeout deadline, or the rate deadline when that comes
  // first. The rate deadline is limits.min_body_rate_grace after the body
  // started, plus 1/min_body_rate seconds for each byte received. A body
  // that averaged at least the rate since the grace period ended never
  // reaches it, and one that sent faster before a stall keeps the time it
  // gained.
  void setBodyDeadline() {
    Clock::time_point deadline = request_deadline_;
    rate_deadline_in_force_ = false;
    const std::uint64_t rate = limits().min_body_rate;
    if (rate != 0) {
      // No overflow: body_bytes_ stays near limits.max_body_bytes (at most
      // 4 GiB), and times 1000 that is far below 2^63.
      // Over TLS the parser gets no byte of a record until all of it
      // arrived, so a TLS body is credited one whole record ahead.
      std::uint64_t credited = body_bytes_;
      if constexpr (std::is_same_v<Stream, beast::ssl_stream<beast::tcp_stream>>) {
        credited += kMaxTlsRecordBytes;
      }
      const auto earned = std::chrono::milliseconds(credited * 1000 / rate);
      const Clock::time_point rate_deadline =
          body_started_ + std::chrono::milliseconds(limits().min_body_rate_grace_ms) + earned;
      if (rate_deadline < deadline) {
        deadline = rate_deadline;
        rate_deadline_in_force_ = true;
      }
    }
    beast::get_lowest_layer(stream_).expires_at(deadline);
  }

  // Ends an ingest body that missed its rate deadline. The stream closed
  // the socket when the deadline passed, so no 408 can be sent: the client
  // sees the connection close, as with limits.read_timeout.
  void cutSlowBody() {
    const auto elapsed =
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - body_started_);
    releaseSlot();
    impl_->slowBodyCut(slot_sensor_, body_peer_, body_bytes_, elapsed);
    close();
  }

  template <class Handler>
  void readBody(Handler handler) {
    http::async_read(stream_, buffer_, *parser_,
                     [handler = std::move(handler)](beast::error_code ec, std::size_t) mutable {
                       handler(ec);
                     });
  }

  void onIngestBody(beast::error_code ec) {
    endBodyRead();
    if (ec) {
      releaseSlot();
      handleReadError(ec);
      return;
    }
    Request request = parser_->release();
    std::string body;
    bool keep_gzip = false;
    if (auto rejection = impl_->decodeIngestBody(request, source_, body, keep_gzip)) {
      impl_->counters.response(endpoint_, rejection->result_int()).inc();
      send(std::move(*rejection), false);
      return;
    }

    // Decoding and the commit run on a worker, so a commit waiting for fsync
    // never holds up the I/O threads. The response is posted back to this
    // connection's executor. The work guard keeps io_context::run() from
    // returning while the connection has no pending operation, which would
    // leave a committed batch unanswered at shutdown.
    beast::get_lowest_layer(stream_).expires_never();
    // A gzip body stays in the request: the store may keep it whole in
    // place of each document's event.original. Any other body was moved.
    auto shared_request = std::make_shared<Request>(std::move(request));
    if (source_.input != InputKind::kProbe || !keep_gzip) {
      shared_request->body().clear();
    }
    auto shared_body = std::make_shared<const std::string>(std::move(body));
    std::string endpoint_name(endpoint_);
    asio::post(impl_->workers, [self = this->shared_from_this(), shared_request, shared_body,
                                source = source_, endpoint_name,
                                work = asio::make_work_guard(stream_.get_executor())] {
      Response response = self->impl_->runIngest(*shared_request, shared_body, source);
      self->impl_->counters.response(endpoint_name, response.result_int()).inc();
      asio::post(self->stream_.get_executor(),
                 [self, response = std::move(response)]() mutable {
                   self->send(std::move(response), false);
                 });
    });
  }

  // Sends a rejection and closes the connection. A body that may still be
  // arriving is read and discarded for a while first (see lingerAndClose).
  void reject(Response response) {
    response.keep_alive(false);
    linger_ = !parser_->is_done();
    send(std::move(response), true);
  }

  // Frees this connection's ingest slot, if it has one, and its sensor's
  // share. Every path that ends an admitted request comes here: the written
  // response, a failed body read (timeout, reset, limit), a failed
  // 100-continue write, and the destructor.
  void releaseSlot() {
    endBodyRead();
    if (holds_slot_) {
      holds_slot_ = false;
      impl_->endWork();
    }
  }

  // Frees the sensor's share of the slot once the body is in, or failed.
  void endBodyRead() {
    if (reads_body_) {
      reads_body_ = false;
      impl_->endBodyRead(slot_sensor_);
    }
  }

  void send(Response response, bool close_after) {
    if (impl_->stopping.load()) {
      response.keep_alive(false);
    }
    response_ = std::make_shared<Response>(std::move(response));
    close_after_ = close_after || !response_->keep_alive();
    beast::get_lowest_layer(stream_).expires_after(
        std::chrono::milliseconds(limits().read_timeout_ms));
    http::async_write(stream_, *response_,
                      [self = this->shared_from_this()](beast::error_code ec, std::size_t) {
                        // drain() waits for this, so a committed batch is
                        // answered before the process stops.
                        self->releaseSlot();
                        self->published_slot_.reset();
                        if (!ec && self->linger_) {
                          self->lingerAndClose();
                          return;
                        }
                        if (ec || self->close_after_) {
                          self->close();
                          return;
                        }
                        self->doRead();
                      });
  }

  // After rejecting a body that is still arriving, reads and discards the
  // rest for a while before closing. Closing at once would make the kernel
  // reset the connection, and most clients would then report a broken pipe
  // instead of the 413.
  void lingerAndClose() {
    linger_ = false;
    if constexpr (std::is_same_v<Stream, beast::tcp_stream>) {
      beast::error_code ignored;
      stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    }
    beast::get_lowest_layer(stream_).expires_after(kLingerTimeout);
    discard_.resize(64 * 1024);
    readAndDiscard();
  }

  void readAndDiscard() {
    stream_.async_read_some(asio::buffer(discard_),
                            [self = this->shared_from_this()](beast::error_code ec,
                                                              std::size_t bytes) {
                              self->discarded_ += bytes;
                              if (ec || self->discarded_ > kLingerMaxBytes) {
                                self->close();
                                return;
                              }
                              self->readAndDiscard();
                            });
  }

  void close() {
    beast::error_code ignored;
    if constexpr (std::is_same_v<Stream, beast::ssl_stream<beast::tcp_stream>>) {
      beast::get_lowest_layer(stream_).expires_after(std::chrono::seconds(2));
      stream_.async_shutdown([self = this->shared_from_this()](beast::error_code) {
        beast::error_code ignored_inner;
        beast::get_lowest_layer(self->stream_).socket().shutdown(tcp::socket::shutdown_both,
                                                                 ignored_inner);
      });
    } else {
      stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    }
  }

  ImplPtr impl_;
  Stream stream_;
  bool admin_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::shared_ptr<Response> response_;
  bool close_after_ = false;
  bool linger_ = false;
  std::vector<char> discard_;
  std::uint64_t discarded_ = 0;
  std::uint32_t requests_ = 0;
  bool holds_slot_ = false;
  bool reads_body_ = false;  // counted in the sensor's share of the slots
  // The deadline of the current request from limits.read_timeout (and
  // limits.idle_timeout on a kept-alive connection).
  Clock::time_point request_deadline_;
  // The admitted ingest body being read: its start, the bytes the parser
  // took since then (chunk framing included) and the client's address.
  Clock::time_point body_started_;
  std::uint64_t body_bytes_ = 0;
  asio::ip::address body_peer_;
  // Whether the stream's deadline is the rate deadline of setBodyDeadline,
  // so that a timeout is a slow body and not limits.read_timeout.
  bool rate_deadline_in_force_ = false;
  // Whether the stream's deadline is the head deadline of
  // startHeadDeadline, so that a timeout is a slow head.
  bool head_deadline_in_force_ = false;
  // The client's address, taken at the accept, because a socket closed by
  // a timeout no longer has one.
  asio::ip::address peer_;
  // The sensor whose share the slot counts against, kept apart from source_,
  // which the next request on this connection overwrites.
  std::string slot_sensor_;
  std::shared_ptr<void> published_slot_;  // held while a published file is sent
  IngestSource source_;
  std::string_view endpoint_ = "other";
  ClientCertificate certificate_;
};

void openAcceptor(tcp::acceptor& acceptor, const ListenAddress& address, const char* key) {
  boost::system::error_code ec;
  tcp::endpoint endpoint(asio::ip::make_address(address.host), address.port);
  acceptor.open(endpoint.protocol(), ec);
  if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor.bind(endpoint, ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    throw ConfigError(fmt::format("{}: cannot listen on {}:{}: {}; pick a free port or address",
                                  key, address.host, address.port, ec.message()));
  }
}

}  // namespace

void checkCanListen(const std::vector<ListenCheck>& checks) {
  asio::io_context io;
  // Each acceptor stays open until the last is bound, as the server's do.
  std::vector<std::unique_ptr<tcp::acceptor>> acceptors;
  for (const ListenCheck& check : checks) {
    acceptors.push_back(std::make_unique<tcp::acceptor>(io));
    openAcceptor(*acceptors.back(), check.address, check.key);
  }
}

namespace {

// Logs a failed accept (at most once per kAcceptErrorLogInterval) and calls
// `rearm` after a growing delay instead of at once.
void retryAcceptLater(const ImplPtr& impl, beast::error_code ec, const char* listener,
                      AcceptBackoff& backoff, asio::steady_timer& timer,
                      void (*rearm)(ImplPtr)) {
  backoff.delay = backoff.delay.count() == 0 ? kAcceptRetryInitial
                                             : std::min(backoff.delay * 2, kAcceptRetryMax);
  impl->counters.acceptFailures(listener).inc();
  if (backoff.log.admit()) {
    spdlog::warn("collector: accept on the {} listener failed: {} ({} failures since the last "
                 "message); retrying in {} ms. EMFILE or ENFILE means no file descriptor is "
                 "free: raise RLIMIT_NOFILE or lower limits.max_connections",
                 listener, ec.message(), backoff.log.takeSuppressed() + 1,
                 backoff.delay.count());
  }
  timer.expires_after(backoff.delay);
  timer.async_wait([impl, rearm](beast::error_code timer_ec) {
    if (!timer_ec) {
      rearm(impl);
    }
  });
}

void acceptIngest(ImplPtr impl) {
  impl->ingest_acceptor.async_accept(
      asio::make_strand(impl->io), [impl](beast::error_code ec, tcp::socket socket) {
        if (ec == asio::error::operation_aborted || !impl->ingest_acceptor.is_open()) {
          return;
        }
        if (ec) {
          retryAcceptLater(impl, ec, "ingest", impl->ingest_backoff, impl->ingest_retry_timer,
                           acceptIngest);
          return;
        }
        impl->ingest_backoff.delay = std::chrono::milliseconds(0);
        if (impl->open_connections.load() >= impl->options.limits.max_connections) {
          impl->counters.connections_rejected.inc();
          beast::error_code ignored;
          socket.close(ignored);
        } else {
          impl->open_connections.fetch_add(1);
          impl->counters.connections_open.add(1);
          impl->counters.connections_accepted.inc();
          socket.set_option(tcp::no_delay(true), ec);
          if (impl->options.tls != nullptr) {
            using TlsStream = beast::ssl_stream<beast::tcp_stream>;
            std::make_shared<Session<TlsStream>>(
                impl, TlsStream(beast::tcp_stream(std::move(socket)), *impl->options.tls), false)
                ->start();
          } else {
            std::make_shared<Session<beast::tcp_stream>>(
                impl, beast::tcp_stream(std::move(socket)), false)
                ->start();
          }
        }
        acceptIngest(impl);
      });
}

void acceptAdmin(ImplPtr impl) {
  impl->admin_acceptor.async_accept(
      asio::make_strand(impl->io), [impl](beast::error_code ec, tcp::socket socket) {
        if (ec == asio::error::operation_aborted || !impl->admin_acceptor.is_open()) {
          return;
        }
        if (ec) {
          retryAcceptLater(impl, ec, "admin", impl->admin_backoff, impl->admin_retry_timer,
                           acceptAdmin);
          return;
        }
        impl->admin_backoff.delay = std::chrono::milliseconds(0);
        // Only this loop adds to open_admin_connections, so the count
        // cannot grow between the check and the increment. An evicted
        // connection hands its slot to the new one.
        bool admitted = true;
        if (impl->open_admin_connections.load() < kMaxAdminConnections) {
          impl->open_admin_connections.fetch_add(1);
        } else if (!impl->evictIdleAdmin()) {
          admitted = false;
        }
        if (!admitted) {
          impl->counters.admin_connections_rejected.inc();
          beast::error_code ignored;
          socket.close(ignored);
        } else {
          std::make_shared<Session<beast::tcp_stream>>(impl, beast::tcp_stream(std::move(socket)),
                                                       true)
              ->start();
        }
        acceptAdmin(impl);
      });
}

// Warns when limits.max_connections leaves too few file descriptors under
// RLIMIT_NOFILE, because accepts then fail with EMFILE.
void warnAboutDescriptorLimit(const ServerOptions& options) {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY) {
    return;
  }
  std::uint64_t needed = std::uint64_t{options.limits.max_connections} + kMaxAdminConnections +
                         kReservedDescriptors;
  if (needed > limit.rlim_cur) {
    spdlog::warn("collector: limits.max_connections {} plus {} admin connections and about {} "
                 "other file descriptors exceed RLIMIT_NOFILE {}; raise the limit (ulimit -n, "
                 "LimitNOFILE=) to at least {} or lower limits.max_connections",
                 options.limits.max_connections, kMaxAdminConnections, kReservedDescriptors,
                 static_cast<std::uint64_t>(limit.rlim_cur), needed);
  }
}

}  // namespace

CollectorServer::CollectorServer(asio::io_context& io, ServerOptions options, Store& store,
                                 Ingest& ingest, MetricsRegistry& metrics,
                                 std::function<HealthReport()> health)
    : impl_(std::make_shared<Impl>(io, std::move(options), store, ingest, metrics,
                                   std::move(health))) {}

CollectorServer::~CollectorServer() {
  stopAccepting();
  drain();
}

void CollectorServer::start() {
  openAcceptor(impl_->ingest_acceptor, impl_->options.ingest, "listen");
  if (impl_->options.admin) {
    openAcceptor(impl_->admin_acceptor, *impl_->options.admin, "admin.listen");
    acceptAdmin(impl_);
  }
  acceptIngest(impl_);
  warnAboutDescriptorLimit(impl_->options);
  if (impl_->options.admin) {
    const ServerOptions& options = impl_->options;
    if (options.admin_guard) {
      const LoginLimitOptions& limits = options.admin_guard->limits();
      spdlog::info("collector: admin listener requires admin.token; wrong tokens limited to {} "
                   "per client address within {} s (0: no limit); trusted proxies: {}",
                   limits.max_failures, limits.window.count(),
                   options.admin_trusted_proxies.empty()
                       ? std::string("none")
                       : options.admin_trusted_proxies.describe());
    } else {
      spdlog::info("collector: admin listener is open, because admin.token is not set");
    }
  }
  for (const PublishedFolder& folder : impl_->options.published_folders) {
    spdlog::info("collector: serving {} read-only at {}/ on the ingest listener ({})",
                 folder.folder.string(), folder.prefix,
                 folder.allow_anonymous ? "without a token" : "token required");
  }
}

void CollectorServer::stopAccepting() {
  impl_->beginStopping();
  // Closing from the I/O threads avoids racing a pending async_accept.
  asio::post(impl_->io, [impl = impl_] {
    beast::error_code ec;
    impl->ingest_acceptor.close(ec);
    impl->admin_acceptor.close(ec);
    impl->ingest_retry_timer.cancel();
    impl->admin_retry_timer.cancel();
  });
}

void CollectorServer::drain() {
  impl_->beginStopping();
  {
    std::unique_lock lock(impl_->in_flight_mutex);
    impl_->in_flight_done.wait_for(lock, std::chrono::seconds(60),
                                   [&] { return impl_->in_flight == 0; });
  }
  impl_->workers.join();
}

std::uint16_t CollectorServer::ingestPort() const {
  beast::error_code ec;
  return impl_->ingest_acceptor.local_endpoint(ec).port();
}

std::uint16_t CollectorServer::adminPort() const {
  if (!impl_->admin_acceptor.is_open()) {
    return 0;
  }
  beast::error_code ec;
  return impl_->admin_acceptor.local_endpoint(ec).port();
}

}  // namespace webtrap::collector
