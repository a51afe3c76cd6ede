#include "shipper/shipper.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <mutex>
#include <random>
#include <thread>

#include <fmt/format.h>
#include <simdjson.h>
#include <spdlog/spdlog.h>

#include "common/error.h"
#include "common/gzip.h"
#include "common/log_throttle.h"
#include "common/metrics.h"
#include "shipper/spool_reader.h"

namespace webtrap::shipper {
namespace {

using Clock = std::chrono::steady_clock;

// Upper bound on a Retry-After delay, against a collector that sends a
// nonsensical value.
constexpr std::int64_t kMaxRetryAfterMs = 3600 * 1000;
// Repeated retry warnings are logged at most this often.
constexpr auto kRetryLogPeriod = std::chrono::seconds(30);
constexpr std::size_t kMaxResponseBytes = 64 * 1024;
// After a 413, the batch limits stay halved this long before they double.
constexpr auto kKeepHalvedBatch = std::chrono::seconds(30);

struct HttpResult {
  long status = 0;         // 0: no HTTP response
  std::string body;
  std::string error;       // libcurl's message when status is 0
  bool timed_out = false;  // status 0 because shipper.timeout passed
  bool invalid_acknowledgement = false;  // a 200 whose body is not the acknowledgement
  std::int64_t retry_after_ms = -1;
  bool aborted = false;    // stopped by the stop flag
};

struct Acknowledgement {
  std::uint64_t received = 0;
  std::uint64_t stored = 0;
  std::uint64_t duplicates = 0;
  std::uint64_t rejected = 0;
};

// Parses {"received":N,"stored":S,"duplicates":D,"rejected":R}. Returns
// false when the body is not that object.
bool parseAcknowledgement(const std::string& body, Acknowledgement& ack) {
  simdjson::ondemand::parser parser;
  simdjson::padded_string padded(body);
  simdjson::ondemand::document document;
  if (parser.iterate(padded).get(document) != simdjson::SUCCESS) {
    return false;
  }
  simdjson::ondemand::object object;
  if (document.get_object().get(object) != simdjson::SUCCESS) {
    return false;
  }
  bool has_received = false;
  for (auto field : object) {
    std::string_view key;
    if (field.unescaped_key().get(key) != simdjson::SUCCESS) {
      return false;
    }
    std::uint64_t* target = key == "received"     ? &ack.received
                            : key == "stored"     ? &ack.stored
                            : key == "duplicates" ? &ack.duplicates
                            : key == "rejected"   ? &ack.rejected
                                                  : nullptr;
    if (target == nullptr) {
      continue;
    }
    if (field.value().get_uint64().get(*target) != simdjson::SUCCESS) {
      return false;
    }
    has_received |= key == "received";
  }
  return has_received;
}

std::string shorten(std::string_view text) {
  std::string out(text.substr(0, 200));
  std::replace(out.begin(), out.end(), '\n', ' ');
  return out;
}

// One libcurl easy handle, reused so that the connection stays open between
// batches.
class HttpClient {
 public:
  HttpClient(const ShipperConfig& config, const std::atomic<bool>& stop)
      : config_(config), stop_(&stop), url_(recordsUrl(config.url)), handle_(curl_easy_init()) {
    if (handle_ == nullptr) {
      throw ConfigError("shipper: libcurl could not create a handle");
    }
    if (!config.token.empty()) {
      headers_ = curl_slist_append(headers_, ("Authorization: Bearer " + config.token).c_str());
    }
    headers_ = curl_slist_append(headers_, "Content-Type: application/x-ndjson");
    if (config.gzip) {
      headers_ = curl_slist_append(headers_, "Content-Encoding: gzip");
    }
    // libcurl would otherwise wait for "100 Continue" before large bodies.
    headers_ = curl_slist_append(headers_, "Expect:");

    curl_easy_setopt(handle_, CURLOPT_URL, url_.c_str());
    curl_easy_setopt(handle_, CURLOPT_HTTPHEADER, headers_);
    curl_easy_setopt(handle_, CURLOPT_POST, 1L);
    curl_easy_setopt(handle_, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(handle_, CURLOPT_USERAGENT, "webtrap-shipper/" WEBTRAP_VERSION);
    curl_easy_setopt(handle_, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(handle_, CURLOPT_TIMEOUT_MS, static_cast<long>(config.timeout_ms));
    curl_easy_setopt(handle_, CURLOPT_CONNECTTIMEOUT_MS,
                     static_cast<long>(std::min<std::uint32_t>(config.timeout_ms, 10000)));
    curl_easy_setopt(handle_, CURLOPT_WRITEFUNCTION, &HttpClient::onBody);
    curl_easy_setopt(handle_, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(handle_, CURLOPT_XFERINFOFUNCTION, &HttpClient::onProgress);
    curl_easy_setopt(handle_, CURLOPT_XFERINFODATA, this);
    // Both options are always set, so that http_proxy, https_proxy,
    // all_proxy and no_proxy in the environment have no effect: an empty
    // CURLOPT_PROXY disables proxies, and an explicit CURLOPT_NOPROXY
    // replaces no_proxy. Without a proxy, "*" also exempts every host.
    curl_easy_setopt(handle_, CURLOPT_PROXY, config.proxy.c_str());
    curl_easy_setopt(handle_, CURLOPT_NOPROXY, config.proxy.empty() ? "*" : "");
    if (!config.ca_file.empty()) {
      curl_easy_setopt(handle_, CURLOPT_CAINFO, config.ca_file.c_str());
    }
    if (!config.client_certificate.empty()) {
      curl_easy_setopt(handle_, CURLOPT_SSLCERT, config.client_certificate.c_str());
      curl_easy_setopt(handle_, CURLOPT_SSLKEY, (config.client_key.empty()
                                                     ? config.client_certificate
                                                     : config.client_key)
                                                    .c_str());
    }
  }

  ~HttpClient() {
    curl_slist_free_all(headers_);
    curl_easy_cleanup(handle_);
  }

  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  HttpResult post(const std::string& body) {
    HttpResult result;
    curl_easy_setopt(handle_, CURLOPT_POSTFIELDS, body.data());
    curl_easy_setopt(handle_, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
    curl_easy_setopt(handle_, CURLOPT_WRITEDATA, &result.body);
    CURLcode code = curl_easy_perform(handle_);
    if (code == CURLE_ABORTED_BY_CALLBACK) {
      result.aborted = true;
      return result;
    }
    if (code != CURLE_OK) {
      result.error = curl_easy_strerror(code);
      result.timed_out = code == CURLE_OPERATION_TIMEDOUT;
      return result;
    }
    curl_easy_getinfo(handle_, CURLINFO_RESPONSE_CODE, &result.status);
    curl_off_t retry_after = -1;
    if (curl_easy_getinfo(handle_, CURLINFO_RETRY_AFTER, &retry_after) == CURLE_OK &&
        retry_after > 0) {
      result.retry_after_ms = std::min<std::int64_t>(retry_after * 1000, kMaxRetryAfterMs);
    }
    return result;
  }

  const std::string& url() const { return url_; }

  // From now on, a request is cut off when `stop` is set or `deadline`
  // passes, in place of the stop flag given to the constructor.
  void abortWhen(const std::atomic<bool>& stop, Clock::time_point deadline) {
    stop_ = &stop;
    deadline_ = deadline;
  }

 private:
  static std::size_t onBody(char* data, std::size_t size, std::size_t count, void* user) {
    auto* body = static_cast<std::string*>(user);
    std::size_t length = size * count;
    if (body->size() < kMaxResponseBytes) {
      body->append(data, std::min(length, kMaxResponseBytes - body->size()));
    }
    return length;
  }

  static int onProgress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
    auto* client = static_cast<HttpClient*>(user);
    return client->stop_->load() || Clock::now() >= client->deadline_ ? 1 : 0;
  }

  const ShipperConfig& config_;
  const std::atomic<bool>* stop_;
  Clock::time_point deadline_ = Clock::time_point::max();
  std::string url_;
  CURL* handle_;
  curl_slist* headers_ = nullptr;
};

ShipperError errorKindOf(const HttpResult& result) {
  if (result.invalid_acknowledgement) {
    return ShipperError::kInvalidAcknowledgement;
  }
  if (result.status == 0) {
    return result.timed_out ? ShipperError::kTimeout : ShipperError::kConnection;
  }
  if (result.status == 401 || result.status == 403) {
    return ShipperError::kUnauthorized;
  }
  if (result.status == 413) {
    return ShipperError::kTooLarge;
  }
  if (result.status == 429) {
    return ShipperError::kThrottled;
  }
  if (result.status >= 500 && result.status < 600) {
    return ShipperError::kServerError;
  }
  return ShipperError::kOtherStatus;
}

void acquireOnce() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

}  // namespace

const char* shipperErrorLabel(ShipperError kind) {
  switch (kind) {
    case ShipperError::kConnection:
      return "connection";
    case ShipperError::kTimeout:
      return "timeout";
    case ShipperError::kUnauthorized:
      return "unauthorized";
    case ShipperError::kTooLarge:
      return "too_large";
    case ShipperError::kThrottled:
      return "throttled";
    case ShipperError::kServerError:
      return "server_error";
    case ShipperError::kOtherStatus:
      return "other_status";
    case ShipperError::kInvalidAcknowledgement:
      return "invalid_acknowledgement";
    case ShipperError::kOffsetWrite:
      return "offset_write";
    case ShipperError::kSpoolRead:
      return "spool_read";
    case ShipperError::kSpoolTruncated:
      return "spool_truncated";
  }
  return "unknown";
}

struct ShipperMetrics::Impl {
  explicit Impl(MetricsRegistry& registry)
      : records_read(registry.counter("webtrap_shipper_records_read_total",
                                      "Records read from the spool; a record read again for "
                                      "a retry counts once.")),
        records_sent(registry.counter("webtrap_shipper_records_sent_total",
                                      "Records acknowledged by the collector.")),
        batches_sent(registry.counter("webtrap_shipper_batches_sent_total",
                                      "Batches acknowledged by the collector.")),
        bytes_sent(registry.counter("webtrap_shipper_bytes_sent_total",
                                    "Request body bytes of acknowledged batches, after gzip.")),
        retries(registry.counter("webtrap_shipper_retries_total",
                                 "Batches sent again after a failed attempt.")),
        failures(registry.counter("webtrap_shipper_failures_total",
                                  "Failed attempts: connection errors and non-200 responses.")),
        dropped(registry.counter("webtrap_shipper_dropped_total",
                                 "Records the spool deleted at its disk cap before shipping.")),
        rejected(registry.counter("webtrap_shipper_records_rejected_total",
                                  "Records the collector rejected as too large even alone (413), "
                                  "saved to shipper-rejected.ndjson and skipped.")),
        backlog(registry.gauge("webtrap_shipper_backlog_bytes", "Unshipped bytes in the spool.")),
        last_success(registry.gauge("webtrap_shipper_last_success_timestamp_seconds",
                                    "Unix time of the last acknowledged batch.")) {
    for (std::size_t i = 0; i < kShipperErrorKinds; ++i) {
      errors[i] = &registry.counter(
          "webtrap_shipper_errors_total",
          "Errors by kind: failed attempts by cause, and spool and offset file errors.",
          fmt::format("kind=\"{}\"", shipperErrorLabel(static_cast<ShipperError>(i))));
    }
  }

  Counter& records_read;
  Counter& records_sent;
  Counter& batches_sent;
  Counter& bytes_sent;
  Counter& retries;
  Counter& failures;
  Counter& dropped;
  Counter& rejected;
  Gauge& backlog;
  Gauge& last_success;
  Counter* errors[kShipperErrorKinds] = {};
  std::mutex mutex;
};

ShipperMetrics::ShipperMetrics(MetricsRegistry& registry)
    : impl_(std::make_unique<Impl>(registry)) {}

ShipperMetrics::~ShipperMetrics() = default;

void ShipperMetrics::update(const ShipperCounters& counters) {
  std::lock_guard lock(impl_->mutex);
  auto raise = [](Counter& counter, const std::atomic<std::uint64_t>& source) {
    std::uint64_t value = source.load(std::memory_order_relaxed);
    if (value > counter.value()) {
      counter.inc(value - counter.value());
    }
  };
  raise(impl_->records_read, counters.records_read);
  raise(impl_->records_sent, counters.records_sent);
  raise(impl_->batches_sent, counters.batches_sent);
  raise(impl_->bytes_sent, counters.bytes_sent);
  raise(impl_->retries, counters.retries);
  raise(impl_->failures, counters.failures);
  raise(impl_->dropped, counters.dropped);
  raise(impl_->rejected, counters.rejected);
  for (std::size_t i = 0; i < kShipperErrorKinds; ++i) {
    raise(*impl_->errors[i], counters.errors[i]);
  }
  impl_->backlog.set(counters.backlog_bytes.load(std::memory_order_relaxed));
  impl_->last_success.set(counters.last_success_seconds.load(std::memory_order_relaxed));
}

struct Shipper::Impl {
  Impl(const ShipperConfig& shipper_config, std::filesystem::path dir, bool count_ahead,
       ShipperCounters& shared_counters, const std::atomic<bool>& stop_flag);
  ~Impl();

  void run(bool until_idle);
  HttpResult send(const SpoolBatch& batch);
  void finalPass(std::chrono::milliseconds budget);
  void lockSpool();
  bool sleepFor(std::int64_t milliseconds);
  std::int64_t backoffDelay();
  void publishReaderState();
  bool commitBatch(const SpoolBatch& batch);
  void onSuccess(const SpoolBatch& batch, std::size_t payload_bytes, const Acknowledgement& ack);
  void onFailure(const SpoolBatch& batch, const HttpResult& result);
  void rejectOversizedRecord(const SpoolBatch& batch);

  ShipperConfig config;
  std::filesystem::path spool_dir;
  ShipperCounters& counters;
  const std::atomic<bool>& stop;
  SpoolReader reader;
  std::unique_ptr<HttpClient> http;
  int lock_fd = -1;

  std::uint64_t limit_records;
  std::uint64_t limit_bytes;
  Clock::time_point keep_limits_until{};
  std::uint32_t attempt = 0;  // consecutive failed attempts
  bool resend_pending = false;  // the next post sends a failed batch again
  // Failed sends since the last success, and the limit on their warnings.
  std::uint64_t failed_attempts = 0;
  LogThrottle failure_log{kRetryLogPeriod};
  std::uint64_t dropped_published = 0;
  std::uint64_t read_published = 0;
  std::uint64_t truncations_published = 0;
  std::uint64_t read_errors_published = 0;
  SpoolPosition persisted;
  std::mt19937_64 random{std::random_device{}()};
};

Shipper::Impl::Impl(const ShipperConfig& shipper_config, std::filesystem::path dir,
                    bool count_ahead, ShipperCounters& shared_counters,
                    const std::atomic<bool>& stop_flag)
    : config(shipper_config),
      spool_dir(std::move(dir)),
      counters(shared_counters),
      stop(stop_flag),
      reader(spool_dir, count_ahead),
      limit_records(config.batch_max_records),
      limit_bytes(config.batch_max_bytes) {
  acquireOnce();
  lockSpool();
  http = std::make_unique<HttpClient>(config, stop);
}

Shipper::Impl::~Impl() {
  if (lock_fd >= 0) {
    ::close(lock_fd);
  }
}

// Two shippers on one spool would both move the offset, so the first one
// holds an exclusive lock on DIR/shipper.lock for its lifetime.
void Shipper::Impl::lockSpool() {
  std::error_code error;
  std::filesystem::create_directories(spool_dir, error);
  std::filesystem::path lock_path = spool_dir / "shipper.lock";
  // Read-only and world-readable, so that a lock file left by a shipper
  // that ran as another user does not stop this one.
  lock_fd = ::open(lock_path.c_str(), O_RDONLY | O_CREAT | O_CLOEXEC, 0644);
  if (lock_fd < 0) {
    throw ConfigError(fmt::format("shipper: cannot open {}: {}; make spool.dir writable for the "
                                  "shipper's user",
                                  lock_path.string(), std::strerror(errno)));
  }
  if (::flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
    throw ConfigError(fmt::format("shipper: another shipper is already running on {} (it has "
                                  "locked {}); stop it first, or disable the probe's shipper section",
                                  spool_dir.string(), lock_path.string()));
  }
}

// Sleeps in short steps so that a stop request ends the wait. Returns false
// when stopped.
bool Shipper::Impl::sleepFor(std::int64_t milliseconds) {
  auto until = Clock::now() + std::chrono::milliseconds(milliseconds);
  while (!stop.load()) {
    auto left = until - Clock::now();
    if (left <= Clock::duration::zero()) {
      return true;
    }
    std::this_thread::sleep_for(std::min<Clock::duration>(left, std::chrono::milliseconds(50)));
  }
  return false;
}

// Full jitter: a uniform wait between 0 and the exponential bound.
std::int64_t Shipper::Impl::backoffDelay() {
  std::uint32_t exponent = std::min<std::uint32_t>(attempt, 30);
  std::uint64_t bound = std::min<std::uint64_t>(
      config.retry_max_ms, static_cast<std::uint64_t>(config.retry_initial_ms) << exponent);
  std::uniform_int_distribution<std::uint64_t> pick(0, bound);
  return static_cast<std::int64_t>(pick(random));
}

// Adds what the reader counted since the last call to the shared counters.
void Shipper::Impl::publishReaderState() {
  counters.backlog_bytes.store(static_cast<std::int64_t>(reader.backlogBytes()));
  auto publish = [](std::atomic<std::uint64_t>& target, std::uint64_t total,
                    std::uint64_t& published) {
    if (total > published) {
      target.fetch_add(total - published);
      published = total;
    }
  };
  publish(counters.dropped, reader.droppedRecords(), dropped_published);
  publish(counters.records_read, reader.recordsRead(), read_published);
  publish(counters.errors[static_cast<std::size_t>(ShipperError::kSpoolTruncated)],
          reader.truncations(), truncations_published);
  publish(counters.errors[static_cast<std::size_t>(ShipperError::kSpoolRead)],
          reader.readErrors(), read_errors_published);
}

// Commits `batch` and counts a failed write of the offset file. Returns
// whether the offset file was written.
bool Shipper::Impl::commitBatch(const SpoolBatch& batch) {
  if (!reader.commit(batch)) {
    counters.countError(ShipperError::kOffsetWrite);
    return false;
  }
  return true;
}

void Shipper::Impl::onSuccess(const SpoolBatch& batch, std::size_t payload_bytes,
                              const Acknowledgement& ack) {
  if (ack.received != batch.records) {
    spdlog::warn("shipper: the collector acknowledged received={} for a batch of records={}",
                 ack.received, batch.records);
  }
  if (ack.rejected > 0) {
    spdlog::warn("shipper: the collector rejected records={} of batch_records={}; it keeps them "
                 "as dead letters",
                 ack.rejected, batch.records);
  }
  commitBatch(batch);
  persisted = reader.position();
  counters.records_sent.fetch_add(batch.records);
  counters.batches_sent.fetch_add(1);
  counters.bytes_sent.fetch_add(payload_bytes);
  counters.backlog_bytes.store(static_cast<std::int64_t>(reader.backlogBytes()));
  counters.last_success_seconds.store(
      std::chrono::duration_cast<std::chrono::seconds>(
          std::chrono::system_clock::now().time_since_epoch())
          .count());
  if (failed_attempts > 0) {
    spdlog::info("shipper: the collector accepts batches again after failed_attempts={}",
                 failed_attempts);
    failed_attempts = 0;
    failure_log.reset();
  }
  attempt = 0;
  // Grow back slowly after a 413 halved the batch, so that the size does not
  // swing between accepted and rejected on every batch.
  if (Clock::now() >= keep_limits_until) {
    limit_records = std::min<std::uint64_t>(config.batch_max_records, limit_records * 2);
    limit_bytes = std::min<std::uint64_t>(config.batch_max_bytes, limit_bytes * 2);
    keep_limits_until = Clock::now() + kKeepHalvedBatch;
  }
}

// Writes a record that the collector rejects as too large even alone to
// DIR/shipper-rejected.ndjson and moves past it, so it does not block the
// spool. When that write fails, the record stays and is sent again.
void Shipper::Impl::rejectOversizedRecord(const SpoolBatch& batch) {
  std::filesystem::path path = spool_dir / "shipper-rejected.ndjson";
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  bool saved = fd >= 0 &&
               ::write(fd, batch.body.data(), batch.body.size()) ==
                   static_cast<ssize_t>(batch.body.size()) &&
               ::fsync(fd) == 0;
  int error = errno;
  if (fd >= 0) {
    ::close(fd);
  }
  if (!saved) {
    spdlog::error("shipper: the collector rejects a record of bytes={} as too large (413) and "
                  "saving it to {} failed: {}; retrying it; raise the collector's "
                  "limits.max_body_bytes",
                  batch.body.size(), path.string(), std::strerror(error));
    return;
  }
  spdlog::error("shipper: the collector rejects a single record of bytes={} as too large (413); "
                "saved it to {} and moved on; raise the collector's limits.max_body_bytes to "
                "ship such records",
                batch.body.size(), path.string());
  commitBatch(batch);
  persisted = reader.position();
  counters.rejected.fetch_add(batch.records);
}

void Shipper::Impl::onFailure(const SpoolBatch& batch, const HttpResult& result) {
  counters.failures.fetch_add(1);
  const long status = result.status;
  counters.countError(errorKindOf(result));

  if (status == 413) {
    if (batch.records > 1) {
      limit_records = std::max<std::uint64_t>(1, batch.records / 2);
      limit_bytes = std::max<std::uint64_t>(1, batch.body.size() / 2);
      keep_limits_until = Clock::now() + kKeepHalvedBatch;
      spdlog::warn("shipper: the collector rejects a batch of records={} bytes={} as too large "
                   "(413); sending at most records={} bytes={} per batch",
                   batch.records, batch.body.size(), limit_records, limit_bytes);
      resend_pending = true;
    } else {
      rejectOversizedRecord(batch);
    }
    return;
  }

  std::int64_t delay = 0;
  if (status == 401 || status == 403) {
    // A wrong token does not fix itself quickly: retry slowly, keep every
    // record.
    delay = config.retry_max_ms;
    // The collector's message distinguishes a wrong token from a revoked sensor or
    // a certificate bound to another sensor.
    spdlog::error("shipper: the collector rejects the credentials (HTTP {}) url={}: {}; check "
                  "shipper.token or shipper.token_file (or the client certificate) against "
                  "the token the collector enrolled for this sensor; retrying in {}ms, no "
                  "record is dropped",
                  status, http->url(), shorten(result.body), delay);
  } else {
    delay = result.retry_after_ms >= 0 ? result.retry_after_ms : backoffDelay();
    std::string reason = status == 0 ? fmt::format("connection error: {}", result.error)
                                     : fmt::format("HTTP {}: {}", status, shorten(result.body));
    ++failed_attempts;
    if (failure_log.admit()) {
      bool client_error = status >= 400 && status < 500 && status != 429 && status != 408;
      auto level = client_error ? spdlog::level::err : spdlog::level::warn;
      spdlog::log(level,
                  "shipper: sending a batch failed url={} {}; retry in {}ms (attempt {}, "
                  "similar messages suppressed since the last: {})",
                  http->url(), reason, delay, attempt + 1, failure_log.takeSuppressed());
    }
    ++attempt;
  }
  resend_pending = true;
  sleepFor(delay);
}

// Sends `batch` once. A 200 whose acknowledgement can be read counts as
// delivered (onSuccess); any other 200 comes back as a 502.
HttpResult Shipper::Impl::send(const SpoolBatch& batch) {
  std::string compressed;
  if (config.gzip) {
    compressed = gzipCompress(batch.body, Z_DEFAULT_COMPRESSION);
  }
  const std::string& payload = config.gzip ? compressed : batch.body;
  if (resend_pending) {
    // Counted here, when the batch goes out again, so a shipper stopped
    // during its backoff wait does not count a resend it never made.
    counters.retries.fetch_add(1);
    resend_pending = false;
  }
  HttpResult result = http->post(payload);
  if (result.aborted) {
    return result;
  }
  Acknowledgement ack;
  if (result.status == 200 && parseAcknowledgement(result.body, ack)) {
    onSuccess(batch, payload.size(), ack);
    return result;
  }
  if (result.status == 200) {
    result.status = 502;  // an acknowledgement that cannot be read confirms nothing
    result.body = "invalid acknowledgement: " + shorten(result.body);
    result.invalid_acknowledgement = true;
  }
  return result;
}

// Sends the records left in the spool once more after a stop, so that the
// records the probe spooled while it stopped reach the collector now rather
// than at the next start. Bounded by `budget` and without retries: the
// first failure ends it, and what is left stays in the spool.
void Shipper::Impl::finalPass(std::chrono::milliseconds budget) {
  const std::atomic<bool> no_stop{false};
  Clock::time_point deadline = Clock::now() + budget;
  http->abortWhen(no_stop, deadline);
  std::uint64_t records = 0;
  std::string outcome = "spool_empty";
  while (true) {
    if (Clock::now() >= deadline) {
      outcome = "time_limit";
      break;
    }
    SpoolBatch batch = reader.next(limit_records, limit_bytes);
    publishReaderState();
    if (batch.records == 0) {
      if (!(reader.position() == persisted) && commitBatch(batch)) {
        persisted = reader.position();
      }
      break;
    }
    HttpResult result = send(batch);
    if (result.aborted) {
      outcome = "time_limit";
      break;
    }
    if (result.status != 200) {
      counters.failures.fetch_add(1);
      counters.countError(errorKindOf(result));
      outcome = result.status == 0 ? fmt::format("connection_error ({})", result.error)
                                   : fmt::format("http_{}", result.status);
      break;
    }
    records += batch.records;
  }
  http->abortWhen(stop, Clock::time_point::max());
  spdlog::info("shipper: final pass after the probe's stop records_sent={} outcome={} "
               "limit_ms={}",
               records, outcome, budget.count());
}

void Shipper::Impl::run(bool until_idle) {
  spdlog::info("shipper: starting url={} proxy={} spool={} batch_max_records={} "
               "batch_max_bytes={} gzip={} tls_ca={} client_certificate={}",
               http->url(), proxyForLog(config.proxy), spool_dir.string(),
               config.batch_max_records, config.batch_max_bytes, config.gzip,
               config.ca_file.empty() ? "system" : config.ca_file.string(),
               config.client_certificate.empty() ? "none" : config.client_certificate.string());
  reader.loadOffset();
  persisted = reader.position();

  while (!stop.load()) {
    SpoolBatch batch = reader.next(limit_records, limit_bytes);
    publishReaderState();
    if (batch.records == 0) {
      // Persist a position that moved past deleted or finished segments, so
      // that the spool may delete them.
      if (!(reader.position() == persisted) && commitBatch(batch)) {
        persisted = reader.position();
      }
      if (until_idle) {
        break;
      }
      sleepFor(config.interval_ms);
      continue;
    }

    HttpResult result = send(batch);
    if (result.aborted) {
      // The final pass sends this batch again, and the collector may have
      // stored it already, so that send counts as a retry.
      resend_pending = true;
      spdlog::info("shipper: the stop interrupted the send of a batch records={}; the final "
                   "pass sends it again, and where the collector had stored it, it counts "
                   "the records as duplicates and keeps one copy",
                   batch.records);
      break;
    }
    if (result.status != 200) {
      onFailure(batch, result);
    }
  }
  std::uint32_t final_pass_ms = counters.final_pass_ms.load();
  if (final_pass_ms > 0) {
    finalPass(std::chrono::milliseconds(final_pass_ms));
  }

  // Listed again, because the probe may have spooled records since the last
  // read, for example during an interval wait.
  std::uint64_t backlog = reader.currentBacklogBytes();
  counters.backlog_bytes.store(static_cast<std::int64_t>(backlog));
  spdlog::info("shipper: stopped records_read={} records_sent={} batches_sent={} retries={} "
               "failures={} dropped={} rejected={} backlog_bytes={} offset={} {}",
               counters.records_read.load(), counters.records_sent.load(),
               counters.batches_sent.load(),
               counters.retries.load(), counters.failures.load(), counters.dropped.load(),
               counters.rejected.load(),
               backlog, segmentFileName(reader.position().segment),
               reader.position().offset);
}

Shipper::Shipper(const ShipperConfig& config, std::filesystem::path spool_dir, bool count_ahead,
                 ShipperCounters& counters, const std::atomic<bool>& stop)
    : impl_(std::make_unique<Impl>(config, std::move(spool_dir), count_ahead, counters, stop)) {}

Shipper::~Shipper() = default;

void Shipper::run(bool until_idle) {
  impl_->run(until_idle);
}

}  // namespace webtrap::shipper
