// `webtrap collector`: runs the collector until SIGINT or SIGTERM, and its
// maintenance subcommands (enrol, revoke, sensors, setup-elasticsearch,
// dead-letters, count, tail).
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/rand.h>

#include <cctype>
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <optional>
#include <thread>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <fmt/format.h>
#include <simdjson.h>
#include <spdlog/spdlog.h>

#include "cli/commands.h"
#include "cli/logging.h"
#include "collector/collector_config.h"
#include "collector/collector_sections.h"
#include "collector/dashboard_service.h"
#include "collector/ingest.h"
#include "collector/retention.h"
#include "collector/sensor_token.h"
#include "collector/server.h"
#include "collector/store.h"
#include "common/config_environment.h"
#include "common/config_values.h"
#include "common/encoding.h"
#include "common/error.h"
#include "common/file_io.h"
#include "common/ids.h"
#include "common/json_writer.h"

namespace webtrap::cli {
namespace {

using namespace webtrap::collector;

struct CollectorOptions {
  std::string config_path;
  std::string log_level;  // empty: --log-level not given
  std::string ports_file;
  bool print_reference = false;

  std::string sensor_id;
  std::string group = "default";
  std::string collector_url;
  std::string token_file;
  std::string existing_token_file;  // "-": standard input
  std::string client_certificate_file;
  std::string client_certificate_sha256;
  std::string client_certificate_cn;
  std::size_t limit = 20;
  bool follow = false;
  bool documents = false;  // tail: whole ECS documents instead of summary lines
  std::int64_t after_seq = 0;  // tail: print first the events after this seq
  bool after_seq_given = false;

  std::string output_name;  // rewind: the output whose cursor moves
  std::string since;        // rewind: a duration, such as 2h
  std::int64_t from_seq = 0;  // rewind: the first seq to send again
  bool from_seq_given = false;
};

std::int64_t nowMilliseconds() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Sets up logging at --log-level, or at `default_level` when it was not
// given. The service and setup-elasticsearch default to info, where their
// progress lines are. The one-shot commands that print a result default to
// warn, which leaves out the store's open, checkpoint and close lines but
// keeps warnings and errors.
void setupLoggingOr(const CollectorOptions& options, const std::string& default_level) {
  setupLogging(options.log_level.empty() ? default_level : options.log_level);
}

CollectorConfig loadConfig(const CollectorOptions& options) {
  CollectorConfig config =
      loadCollectorConfig(options.config_path, config_environment::processEnvironment());
  logEnvironmentKeys("collector", config.environment_keys);
  return config;
}

// Creates the store's folder unless it exists.
void makeStoreFolder(const CollectorConfig& config) {
  auto parent = config.store.path.parent_path();
  if (!parent.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(parent, ec);
    if (ec) {
      throw ConfigError(fmt::format("store.path: cannot create the folder \"{}\": {}; create it "
                                    "or set state_dir",
                                    parent.string(), ec.message()));
    }
  }
}

// Returns the file that `path` names after following its symbolic links.
// A link whose target does not exist yet is followed too, because SQLite
// creates the store at the target, and weakly_canonical() stops at it.
std::filesystem::path resolveStorePath(const std::filesystem::path& path) {
  constexpr int kMaxLinks = 40;  // the kernel's limit (MAXSYMLINKS)
  std::filesystem::path resolved = path;
  std::error_code ec;
  for (int links = 0; links < kMaxLinks && std::filesystem::is_symlink(resolved, ec); ++links) {
    std::filesystem::path target = std::filesystem::read_symlink(resolved, ec);
    if (ec) {
      break;
    }
    resolved = target.is_absolute() ? target : resolved.parent_path() / target;
  }
  std::filesystem::path canonical = std::filesystem::weakly_canonical(resolved, ec);
  return ec ? resolved : canonical;
}

// Throws ConfigError when the store file `path` (resolved) is missing but
// its write-ahead log exists. Such a log belongs to a store that was moved
// or deleted, and a new store at the path would discard the log's commits.
// Every command checks this before it can create the store file.
void rejectOrphanWriteAheadLog(const std::filesystem::path& path) {
  std::filesystem::path wal = path;
  wal += "-wal";
  std::error_code ec;
  if (!std::filesystem::exists(std::filesystem::symlink_status(path, ec)) &&
      std::filesystem::exists(wal, ec)) {
    throw ConfigError(fmt::format(
        "store.path: \"{}\" does not exist, but its write-ahead log \"{}\" does, so the store "
        "file was moved or deleted; put it back, or move the write-ahead log away to start a "
        "new store",
        path.string(), wal.string()));
  }
}

// Opens the store, making its folder first. Throws ConfigError beside an
// orphan write-ahead log instead of creating a new store there.
std::unique_ptr<Store> openStore(const CollectorConfig& config) {
  rejectOrphanWriteAheadLog(resolveStorePath(config.store.path));
  makeStoreFolder(config);
  return std::make_unique<Store>(config.store);
}

// Takes an exclusive flock(2) on `fd` without waiting. Returns false when
// another process holds it, and throws when the file system cannot lock.
bool tryLock(int fd, const std::filesystem::path& path) {
  if (::flock(fd, LOCK_EX | LOCK_NB) == 0) {
    return true;
  }
  if (errno != EWOULDBLOCK) {
    throw ConfigError(fmt::format("store.path: cannot lock \"{}\": {}; put the store on a local "
                                  "file system that supports flock(2)",
                                  path.string(), std::strerror(errno)));
  }
  return false;
}

// Locks the store for the service, or for a rewind, which must not run
// beside it. The lock is a file next to the store, because SQLite takes its
// own POSIX locks on the store itself. The commands that only read the
// store, and enrol and revoke, run beside the service and take no lock.
std::unique_ptr<FileHandle> lockStore(const CollectorConfig& config, bool for_rewind) {
  const std::filesystem::path& store = config.store.path;
  makeStoreFolder(config);

  // The lock goes next to the file the path resolves to, so two paths to
  // one store (a symbolic link, "..") share it.
  std::filesystem::path lock_path = resolveStorePath(store);
  lock_path += ".lock";
  std::error_code ec;
  // Read-only is enough for flock(2), so a lock file that another user
  // created with mode 0644 still works.
  auto handle = std::make_unique<FileHandle>(
      ::open(lock_path.c_str(), O_RDONLY | O_CREAT | O_CLOEXEC, 0600));
  if (handle->fd < 0) {
    const int error = errno;
    std::string fix = "make the store's folder writable";
    if (error == EISDIR) {
      fix = "it is a folder: remove it";
    } else if (std::filesystem::exists(lock_path, ec)) {
      fix = "make it readable by this user, or remove it while no collector runs";
    }
    throw ConfigError(fmt::format("store.path: cannot open the lock file \"{}\": {}; {}",
                                  lock_path.string(), std::strerror(error), fix));
  }

  if (tryLock(handle->fd, lock_path)) {
    return handle;
  }
  if (for_rewind) {
    throw CommandError(fmt::format("the store \"{}\" is in use by a running collector (it has "
                                  "locked \"{}\"); stop the collector, then run rewind again",
                                  store.string(), lock_path.string()));
  }
  throw CommandError(fmt::format("the store \"{}\" is in use by another collector or a rewind (it "
                                "has locked \"{}\"); stop that process, or give this collector "
                                "its own state_dir",
                                store.string(), lock_path.string()));
}

// The lock on the store file, and whether taking it created the file.
struct StoreFileLock {
  std::unique_ptr<FileHandle> handle;
  std::filesystem::path path;  // the file the store path resolves to
  bool created = false;
};

// Locks the store file itself, which a hard link or a deleted lock file
// cannot bypass. On a local file system flock(2) does not touch SQLite's
// POSIX locks. Keep the handle until the store is closed, because closing
// any descriptor of the file drops the process's POSIX locks on it.
StoreFileLock lockStoreFile(const CollectorConfig& config, bool for_rewind) {
  StoreFileLock lock;
  lock.path = resolveStorePath(config.store.path);
  const std::filesystem::path& path = lock.path;
  rejectOrphanWriteAheadLog(path);
  // Creates a new store's file, private as Store would make it. O_NONBLOCK
  // keeps the open of a named pipe from waiting for a writer, and flock(2)
  // ignores it. With O_EXCL the first open fails on an existing file.
  constexpr int kFlags = O_RDONLY | O_NONBLOCK | O_CLOEXEC;
  auto handle = std::make_unique<FileHandle>(::open(path.c_str(), kFlags | O_CREAT | O_EXCL, 0600));
  lock.created = handle->fd >= 0;
  if (!lock.created && errno == EEXIST) {
    handle = std::make_unique<FileHandle>(::open(path.c_str(), kFlags | O_CREAT, 0600));
  }
  if (handle->fd < 0) {
    const int error = errno;
    throw ConfigError(fmt::format("store.path: cannot open \"{}\": {}; {}", path.string(),
                                  std::strerror(error),
                                  error == EISDIR ? "it is a folder: give the path of a file"
                                                  : "make it readable by this user"));
  }
  struct stat status {};
  if (::fstat(handle->fd, &status) != 0 || !S_ISREG(status.st_mode)) {
    throw ConfigError(fmt::format("store.path: \"{}\" is not a regular file; give the path of "
                                  "an SQLite file, or of one that does not exist yet",
                                  path.string()));
  }
  if (tryLock(handle->fd, path)) {
    lock.handle = std::move(handle);
    return lock;
  }
  throw CommandError(fmt::format(
      "the store \"{}\" is in use by another collector or a rewind that reached it by another "
      "path (a hard link, or after its lock file was deleted); stop that process{}",
      path.string(),
      for_rewind ? ", then run rewind again" : ", or give this collector its own state_dir"));
}

// Removes the store that this start created unless keep() was called, so
// that a start that fails after making the store leaves no empty store.
// The destructor runs while the store file is still locked.
class NewStoreRemoval {
 public:
  explicit NewStoreRemoval(const StoreFileLock& lock) : lock_(lock) {}
  NewStoreRemoval(const NewStoreRemoval&) = delete;
  NewStoreRemoval& operator=(const NewStoreRemoval&) = delete;
  ~NewStoreRemoval() {
    if (kept_ || !lock_.created) {
      return;
    }
    // The path is removed, not the locked file, so it must still name the
    // file that this start created: a store moved there meanwhile stays.
    struct stat created {};
    struct stat current {};
    if (::fstat(lock_.handle->fd, &created) != 0 || ::stat(lock_.path.c_str(), &current) != 0 ||
        created.st_dev != current.st_dev || created.st_ino != current.st_ino) {
      // SQLite skips the checkpoint and keeps the WAL when the database
      // file was moved (seen with SQLite 3.40), and the next open would read
      // this start's empty pages from that WAL over the store now there.
      removeOwnFile("-wal", wal_);
      removeOwnFile("-shm", shm_);
      spdlog::warn("store {}: kept, although the collector did not start, because the path no "
                   "longer names the store file that this start created",
                   lock_.path.string());
      return;
    }
    std::error_code ec;
    for (const char* suffix : {"-wal", "-shm", ""}) {
      std::filesystem::path file = lock_.path;
      file += suffix;
      std::filesystem::remove(file, ec);
    }
    spdlog::info("store {}: removed, because the collector created it and did not start",
                 lock_.path.string());
  }
  void keep() { kept_ = true; }

  // Notes the WAL and shared-memory files of the new store, once SQLite
  // has made them.
  void noteStoreFiles() {
    wal_ = fileIdentity("-wal");
    shm_ = fileIdentity("-shm");
  }

  // Keeps the new store when a sensor was enrolled in it during this start:
  // `enrol` runs beside the service and takes no lock. Only the service
  // itself stores events and dead letters. NOTE: an enrolment that commits
  // between this check and the removal is still lost.
  void keepIfWritten(const Store& store) noexcept {
    if (kept_ || !lock_.created) {
      return;
    }
    try {
      if (store.sensors().empty()) {
        return;
      }
      spdlog::warn("store {}: kept, although the collector did not start, because a sensor "
                   "was enrolled in it meanwhile",
                   lock_.path.string());
    } catch (const std::exception& error) {
      spdlog::warn("store {}: kept, although the collector did not start, because reading it "
                   "failed: {}",
                   lock_.path.string(), error.what());
    }
    kept_ = true;
  }

 private:
  // A file's device and inode numbers, or nothing when it does not exist.
  using FileIdentity = std::optional<std::pair<dev_t, ino_t>>;

  FileIdentity fileIdentity(const char* suffix) const {
    std::filesystem::path file = lock_.path;
    file += suffix;
    struct stat info {};
    if (::stat(file.c_str(), &info) != 0) {
      return std::nullopt;
    }
    return std::make_pair(info.st_dev, info.st_ino);
  }

  // Removes the store's file with `suffix` if it is still the one noted.
  void removeOwnFile(const char* suffix, const FileIdentity& noted) const {
    if (noted && fileIdentity(suffix) == noted) {
      std::filesystem::path file = lock_.path;
      file += suffix;
      std::error_code ec;
      std::filesystem::remove(file, ec);
    }
  }

  const StoreFileLock& lock_;
  bool kept_ = false;
  FileIdentity wal_;
  FileIdentity shm_;
};

// Notes the new store's WAL files once the store is open, and calls
// NewStoreRemoval::keepIfWritten() when the start fails, while the store is
// still open: declared after the store, it is destroyed first.
class NewStoreWriteCheck {
 public:
  NewStoreWriteCheck(NewStoreRemoval& removal, const Store& store)
      : removal_(removal), store_(store) {
    removal_.noteStoreFiles();
  }
  NewStoreWriteCheck(const NewStoreWriteCheck&) = delete;
  NewStoreWriteCheck& operator=(const NewStoreWriteCheck&) = delete;
  ~NewStoreWriteCheck() { removal_.keepIfWritten(store_); }

 private:
  NewStoreRemoval& removal_;
  const Store& store_;
};

// Throws unless the store exists. For a command that works on an existing
// store, a missing one is an error, not a new empty one: a relative
// state_dir read from another folder would otherwise report no events.
void requireExistingStore(const CollectorConfig& config) {
  rejectOrphanWriteAheadLog(resolveStorePath(config.store.path));
  std::error_code ec;
  if (!std::filesystem::exists(config.store.path, ec)) {
    throw ConfigError(fmt::format(
        "store.path: the store \"{}\" does not exist; run this command from the folder the "
        "collector runs in, or set state_dir (or store.path) to an absolute path",
        std::filesystem::absolute(config.store.path, ec).string()));
  }
}

// Opens the store for a command that works on an existing one.
std::unique_ptr<Store> openExistingStore(const CollectorConfig& config) {
  requireExistingStore(config);
  return openStore(config);
}

// Writes the "file_inputs" member of the /healthz response.
void writeFileInputs(JsonWriter& writer, const std::vector<FileInput::Status>& inputs) {
  writer.key("file_inputs");
  writer.beginArray();
  for (const FileInput::Status& input : inputs) {
    writer.beginObject();
    writer.member("path", input.path);
    writer.member("open_failing", input.open_failing);
    if (input.open_failing) {
      writer.member("error", input.open_error);
    }
    writer.member("offset", static_cast<std::int64_t>(input.offset));
    writer.endObject();
  }
  writer.endArray();
}

// Builds the /healthz response: the store, each output's depth and lag, each
// sensor's last record, each file input's state. A store that cannot take
// records fails the check (503). A file input that cannot open its file
// only marks it degraded (200), because every other input still works and
// a restart would not bring the file back.
HealthReport healthReport(const CollectorConfig& config, Store& store, const Ingest& ingest,
                          const FileInputSet& files) {
  HealthReport report;
  std::int64_t now_ms = nowMilliseconds();
  std::string json;
  JsonWriter writer(json);
  writer.beginObject();

  bool store_ok = true;
  std::string store_error;
  std::int64_t last_seq = 0;
  std::vector<std::pair<std::string, std::int64_t>> cursors;
  std::vector<SensorInfo> sensors;
  try {
    last_seq = store.lastSeq();
    for (const auto& name : store.outputs()) {
      cursors.emplace_back(name, store.cursor(name));
    }
    sensors = store.sensors();
  } catch (const std::exception& error) {
    store_ok = false;
    store_error = error.what();
  }
  // The store must be able to take new records: its folder writable.
  auto folder = config.store.path.parent_path();
  if (store_ok && ::access(folder.empty() ? "." : folder.c_str(), W_OK) != 0) {
    store_ok = false;
    store_error = fmt::format("the folder {} is not writable", folder.string());
  }
  if (store_ok && ingest.storeFailing()) {
    store_ok = false;
    store_error = "the last commit failed: " + ingest.lastStoreError();
  }
  report.healthy = store_ok;

  std::vector<FileInput::Status> file_inputs = files.status();
  bool files_open = std::ranges::none_of(file_inputs, &FileInput::Status::open_failing);
  std::string_view status = "ok";
  if (!store_ok) {
    status = "failing";
  } else if (!files_open) {
    status = "degraded";
  }
  writer.member("status", status);
  writer.key("store");
  writer.beginObject();
  writer.member("ok", store_ok);
  writer.member("path", config.store.path.string());
  writer.member("last_seq", last_seq);
  if (!store_ok) {
    writer.member("error", store_error);
  }
  writer.endObject();

  writer.key("outputs");
  writer.beginArray();
  for (const auto& [name, cursor] : cursors) {
    writer.beginObject();
    writer.member("name", name);
    writer.member("cursor", cursor);
    writer.member("depth", std::max<std::int64_t>(0, last_seq - cursor));
    std::optional<std::int64_t> oldest;
    try {
      oldest = store.timestampAfter(cursor);
    } catch (const std::exception&) {
    }
    writer.key("lag_seconds");
    if (oldest) {
      writer.integer(std::max<std::int64_t>(0, (now_ms - *oldest) / 1000));
    } else {
      writer.integer(0);
    }
    writer.endObject();
  }
  writer.endArray();

  writer.key("sensors");
  writer.beginArray();
  for (const auto& sensor : sensors) {
    writer.beginObject();
    writer.member("sensor_id", sensor.sensor_id);
    writer.member("group", sensor.group);
    writer.key("last_seen");
    if (sensor.last_seen_ms > 0) {
      writer.string(isoTimestampFromUnixMs(sensor.last_seen_ms));
      writer.member("silent_seconds", (now_ms - sensor.last_seen_ms) / 1000);
    } else {
      writer.null();
    }
    writer.member("records", static_cast<std::int64_t>(sensor.records));
    writer.key("revoked");
    if (sensor.revoked_ms != 0) {
      writer.string(isoTimestampFromUnixMs(sensor.revoked_ms));
    } else {
      writer.null();
    }
    writer.endObject();
  }
  writer.endArray();
  writeFileInputs(writer, file_inputs);
  writer.endObject();
  report.json = std::move(json);
  return report;
}

// Warns about sensors enrolled with a client certificate while the ingest
// listener requests none, because every request of theirs gets 403.
void warnAboutCertificateBindings(const CollectorConfig& config, Store& store) {
  if (!config.tls.client_ca.empty()) {
    return;
  }
  for (const SensorInfo& sensor : store.sensors()) {
    bool bound = !sensor.certificate_sha256.empty() || !sensor.certificate_cn.empty();
    if (bound && sensor.revoked_ms == 0) {
      spdlog::warn("collector: sensor {} is enrolled with a client certificate, but tls.client_ca "
                   "is not set, so the collector requests no certificate and rejects its "
                   "records with 403; set tls.client_ca or enrol the sensor again without one",
                   sensor.sensor_id);
    }
  }
}

void writePortsFile(const std::string& path, std::uint16_t ingest, std::uint16_t admin) {
  std::string temporary = path + ".tmp";
  std::ofstream(temporary) << fmt::format("{{\"ingest\": {}, \"admin\": {}}}\n", ingest, admin);
  std::filesystem::rename(temporary, path);
}

int runCollector(const CollectorOptions& options) {
  setupLoggingOr(options, "info");
  if (options.print_reference) {
    fmt::print("{}", collectorConfigurationReference());
    return 0;
  }
  CollectorConfig config = loadConfig(options);
  ListenAddress ingest_address = parseListenAddress(config.listen, "listen");
  std::optional<ListenAddress> admin_address;
  if (!config.admin_listen.empty()) {
    admin_address = parseListenAddress(config.admin_listen, "admin.listen");
  }

  MetricsRegistry metrics;
  // Opened before the store, so that a missing GeoIP database leaves no
  // new empty store behind.
  Enricher enricher(enrichOptions(config));
  std::unique_ptr<FileHandle> store_lock = lockStore(config, false);
  // Checked after the lock, which names a running collector on this store,
  // and before the store is created, so that a port in use leaves no empty
  // store behind. The server binds them again below.
  std::vector<ListenCheck> listen_checks{{ingest_address, "listen"}};
  if (admin_address) {
    listen_checks.push_back({*admin_address, "admin.listen"});
  }
  checkCanListen(listen_checks);
  StoreFileLock store_file_lock = lockStoreFile(config, false);
  // Declared before the store, so it runs after the store is closed.
  NewStoreRemoval new_store_removal(store_file_lock);
  auto store = openStore(config);
  NewStoreWriteCheck new_store_write_check(new_store_removal, *store);
  OutputSet outputs(config, *store, metrics);
  BehaviourTagger behaviour(behaviourOptions(config), metrics);
  // Set below, before the server starts and ingest can commit. Each commit
  // wakes the dashboard's index output like the other outputs.
  std::unique_ptr<DashboardService> dashboard;
  Ingest ingest(
      *store, enricher, metrics,
      [&outputs, &dashboard] {
        outputs.notify();
        if (dashboard) {
          dashboard->notify();
        }
      },
      &behaviour);
  ingest.loadSensors();
  FileInputSet files(config, *store, ingest, metrics);
  warnAboutCertificateBindings(config, *store);

  std::optional<boost::asio::ssl::context> tls;
  if (!config.tls.certificate.empty()) {
    tls.emplace(makeIngestTlsContext(config.tls));
  }

  ServerOptions server_options;
  server_options.ingest = ingest_address;
  server_options.admin = admin_address;
  // The dashboard.login_* limits cover every admin route, so they apply
  // with the dashboard off too.
  const DashboardOptions dashboard_options = parseDashboardOptions(config.dashboard);
  if (!config.admin_token.empty()) {
    server_options.admin_guard = std::make_shared<AdminTokenGuard>(
        config.admin_token, dashboard_options.login_limits, &metrics);
  }
  server_options.admin_trusted_proxies = config.admin_trusted_proxies;
  server_options.limits = config.limits;
  server_options.probe_input = config.probe_input;
  server_options.modsecurity_http_input = config.modsecurity_http_input;
  server_options.tls = tls ? &*tls : nullptr;
  server_options.published_folders = publishedFolders(config);
  if (dashboard_options.enabled) {
    dashboard = std::make_unique<DashboardService>(dashboard_options, config.state_dir,
                                                   server_options.admin_guard, *store, metrics);
    server_options.dashboard = &dashboard->http();
  }

  boost::asio::io_context io;
  CollectorServer server(io, server_options, *store, ingest, metrics,
                         [&] { return healthReport(config, *store, ingest, files); });
  server.start();
  new_store_removal.keep();
  if (!options.ports_file.empty()) {
    writePortsFile(options.ports_file, server.ingestPort(), server.adminPort());
  }

  outputs.start();
  if (dashboard) {
    dashboard->start();
  }
  files.start();
  RetentionTask retention(*store, metrics,
                          std::chrono::milliseconds(config.retention_interval_ms));
  retention.start();

  auto output_names = outputs.names();
  spdlog::info("collector: started version={} listen={}:{} tls={} mtls={} admin={} store={} "
               "outputs=[{}] dashboard={} file_inputs={}",
               WEBTRAP_VERSION, ingest_address.host, server.ingestPort(), tls.has_value(),
               !config.tls.client_ca.empty(),
               server_options.admin
                   ? fmt::format("{}:{}", server_options.admin->host, server.adminPort())
                   : std::string("off"),
               config.store.path.string(), fmt::join(output_names, ","),
               dashboard ? "on" : "off", files.size());

  const IngestLimits& limits = config.limits;
  if (limits.min_body_rate != 0 && limits.min_body_rate_grace_ms >= limits.read_timeout_ms) {
    spdlog::warn(
        "collector: limits.min_body_rate_grace ({} ms) is not below limits.read_timeout "
        "({} ms), so the read timeout ends every slow body first and "
        "limits.min_body_rate never applies; lower the grace period to turn the rate "
        "check on",
        limits.min_body_rate_grace_ms, limits.read_timeout_ms);
  }
  if (limits.header_timeout_ms >= limits.read_timeout_ms) {
    spdlog::warn(
        "collector: limits.header_timeout ({} ms) is not below limits.read_timeout ({} ms), "
        "so on a new connection the read timeout ends a slow request head first; lower "
        "limits.header_timeout to close such connections sooner",
        limits.header_timeout_ms, limits.read_timeout_ms);
  }

  boost::asio::signal_set signals(io, SIGINT, SIGTERM);
  std::thread stopper;
  signals.async_wait([&](const boost::system::error_code& ec, int signal) {
    if (ec) {
      return;
    }
    spdlog::info("collector: stopping signal={}", signal);
    server.stopAccepting();
    // Requests already read are committed and their responses sent before
    // the I/O threads stop. drain() blocks, so it runs off the I/O threads.
    stopper = std::thread([&] {
      server.drain();
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      io.stop();
    });
  });

  std::vector<std::thread> threads;
  for (std::uint32_t i = 1; i < config.io_threads; ++i) {
    threads.emplace_back([&io] { io.run(); });
  }
  io.run();
  for (auto& thread : threads) {
    thread.join();
  }
  if (stopper.joinable()) {
    stopper.join();
  }

  files.stop();
  retention.stop();
  outputs.stop();
  if (dashboard) {
    dashboard->stop();
  }
  // This run's counts, summed over the inputs, as /metrics shows them.
  auto inputTotal = [&metrics](const char* name) {
    std::uint64_t total = 0;
    for (const char* input : {"input=\"probe\"", "input=\"modsecurity_http\"", "input=\"file\""}) {
      total += metrics.counter(name, "", input).value();
    }
    return total;
  };
  spdlog::info("collector: stopped received={} stored={} duplicates={} rejected={}",
               inputTotal("webtrap_collector_input_received_total"),
               inputTotal("webtrap_collector_input_stored_total"),
               inputTotal("webtrap_collector_input_duplicates_total"),
               inputTotal("webtrap_collector_input_rejected_total"));
  return 0;
}

// Makes a random 32-byte token, printed as 64 hex digits.
std::string newToken() {
  unsigned char bytes[32];
  if (RAND_bytes(bytes, sizeof(bytes)) != 1) {
    throw std::runtime_error("OpenSSL RAND_bytes failed; cannot make a token");
  }
  return hexEncode(std::string_view(reinterpret_cast<const char*>(bytes), sizeof(bytes)));
}

// Writes the token with mode 0600, replacing the file, so a script can hand
// it to a probe without the token passing through a terminal.
void writeTokenFile(const std::string& path, const std::string& token) {
  std::string temporary = path + ".tmp";
  int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    throw CommandError(fmt::format("--token-file {}: cannot create {}: {}; choose a writable folder",
                                  path, temporary, std::strerror(errno)));
  }
  std::string text = token + "\n";
  bool written = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) &&
                 ::fsync(fd) == 0;
  ::close(fd);
  if (!written || std::rename(temporary.c_str(), path.c_str()) != 0) {
    ::unlink(temporary.c_str());
    throw std::runtime_error(fmt::format("--token-file {}: write failed: {}", path,
                                         std::strerror(errno)));
  }
}

// Returns the certificate fingerprint given to enrol, as 64 lowercase hex
// digits: from --client-certificate, or --client-certificate-sha256 written
// as hex with or without colons (the form `openssl x509 -fingerprint
// -sha256` prints). Empty when neither is given.
std::string enrolFingerprint(const CollectorOptions& options) {
  if (!options.client_certificate_file.empty() && !options.client_certificate_sha256.empty()) {
    throw CommandError("--client-certificate and --client-certificate-sha256 both given; give "
                      "one of them");
  }
  if (!options.client_certificate_file.empty()) {
    return certificateFileSha256(options.client_certificate_file);
  }
  std::string hex;
  for (char c : options.client_certificate_sha256) {
    if (c == ':') {
      continue;
    }
    if (!std::isxdigit(static_cast<unsigned char>(c))) {
      hex.clear();
      break;
    }
    hex += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  if (!options.client_certificate_sha256.empty() && hex.size() != 64) {
    throw CommandError(fmt::format("--client-certificate-sha256 \"{}\": invalid; give the 64 "
                                  "hex digits of the SHA-256 of the certificate's DER encoding, "
                                  "such as `openssl x509 -in cert.pem -noout -fingerprint "
                                  "-sha256` prints",
                                  options.client_certificate_sha256));
  }
  return hex;
}

int runEnrol(const CollectorOptions& options) {
  setupLoggingOr(options, "warn");
  if (options.sensor_id.empty()) {
    throw CommandError("--sensor-id: missing; name the sensor, such as --sensor-id web1");
  }
  CollectorConfig config = loadConfig(options);
  std::string fingerprint = enrolFingerprint(options);
  bool bound = !fingerprint.empty() || !options.client_certificate_cn.empty();
  if (bound && config.tls.client_ca.empty()) {
    throw ConfigError(fmt::format("{}: tls.client_ca is not set, so the collector never requests "
                                  "a client certificate and would reject every record of this "
                                  "sensor; set tls.certificate, tls.private_key and "
                                  "tls.client_ca first",
                                  config.source.empty() ? "the built-in configuration"
                                                        : config.source.string()));
  }
  bool reuse_token = !options.existing_token_file.empty();
  if (reuse_token && !options.token_file.empty()) {
    throw CommandError("--token-file and --existing-token-file both given; the token already "
                      "exists, so leave out --token-file");
  }
  std::string token = reuse_token ? readSensorToken(options.existing_token_file, std::cin)
                                  : newToken();
  auto store = openStore(config);

  SensorInfo sensor;
  sensor.sensor_id = options.sensor_id;
  sensor.group = options.group;
  sensor.token_sha256 = sha256Hex(token);
  sensor.enrolled_ms = nowMilliseconds();
  sensor.certificate_sha256 = fingerprint;
  sensor.certificate_cn = options.client_certificate_cn;
  bool replaced = false;
  bool was_revoked = false;
  bool same_token = false;
  for (const auto& existing : store->sensors()) {
    if (existing.sensor_id == options.sensor_id) {
      // The store keeps a known sensor's last_seen and record count.
      replaced = true;
      was_revoked = existing.revoked_ms != 0;
      same_token = existing.token_sha256 == sensor.token_sha256;
    } else if (existing.token_sha256 == sensor.token_sha256) {
      throw CommandError(fmt::format("--existing-token-file {}: this token is already enrolled "
                                    "for sensor \"{}\" in {}; every sensor needs its own "
                                    "token, so give the token of sensor \"{}\"",
                                    options.existing_token_file, existing.sensor_id,
                                    config.store.path.string(), options.sensor_id));
    }
  }
  if (was_revoked && same_token) {
    // Revocation must hold: the token of a revoked sensor is never accepted again.
    throw CommandError(fmt::format("--existing-token-file {}: sensor \"{}\" was revoked with this "
                                  "token, which stays rejected; enrol it without "
                                  "--existing-token-file to make a new token, then enrol that "
                                  "token on the other collectors",
                                  options.existing_token_file, options.sensor_id));
  }
  if (reuse_token) {
    std::optional<std::string> revoked_sensor = store->retiredTokenSensor(sensor.token_sha256);
    if (revoked_sensor.has_value()) {
      // Revocation must hold even after the sensor got a new token.
      throw CommandError(fmt::format("--existing-token-file {}: this token was revoked for "
                                    "sensor \"{}\" in {} and stays rejected; enrol sensor "
                                    "\"{}\" without --existing-token-file to make a new token",
                                    options.existing_token_file, *revoked_sensor,
                                    config.store.path.string(), options.sensor_id));
    }
  }
  store->enrolSensor(sensor);

  std::string url = options.collector_url;
  if (url.empty()) {
    ListenAddress address = parseListenAddress(config.listen, "listen");
    std::string host = address.host;
    if (host == "0.0.0.0" || host == "::") {
      host = "COLLECTOR-HOST";
    } else if (host.find(':') != std::string::npos) {
      host = "[" + host + "]";
    }
    url = fmt::format("{}://{}:{}", config.tls.certificate.empty() ? "http" : "https", host,
                      address.port);
  }

  std::string token_origin;
  if (reuse_token) {
    token_origin = options.existing_token_file == "-"
                       ? " with the token read from standard input"
                       : fmt::format(" with the token in {}", options.existing_token_file);
  }
  fmt::print("Enrolled sensor \"{}\" (group \"{}\"){}{}.\n", sensor.sensor_id, sensor.group,
             token_origin,
             was_revoked  ? ", lifting its revocation; its old token stays rejected"
             : same_token ? ", keeping its token"
             : replaced   ? ", replacing its previous token"
                          : "");
  if (!fingerprint.empty()) {
    fmt::print("Records are accepted only with the client certificate of SHA-256 {}.\n",
               fingerprint);
  }
  if (!sensor.certificate_cn.empty()) {
    fmt::print("Records are accepted only with a client certificate whose subject CN is "
               "\"{}\".\n",
               sensor.certificate_cn);
  }
  // The token file the probe reads, for the lines below. A token given with
  // --existing-token-file is not printed, because its owner has it already.
  std::string token_path = options.token_file;
  if (reuse_token) {
    token_path = options.existing_token_file == "-" ? "/path/to/the/sensor/token"
                                                     : options.existing_token_file;
    fmt::print("The collector keeps only the token's SHA-256.\n\n");
    fmt::print("Paste into the probe's configuration file:\n\n");
    fmt::print("shipper:\n  url: {}\n  token_file: {}\n", url, token_path);
  } else if (!options.token_file.empty()) {
    writeTokenFile(options.token_file, token);
    fmt::print("Token written to {} (mode 0600; the collector keeps only its SHA-256).\n\n",
               options.token_file);
    fmt::print("Paste into the probe's configuration file:\n\n");
    fmt::print("shipper:\n  url: {}\n  token_file: {}\n", url, options.token_file);
  } else {
    fmt::print("Token (shown once; the collector keeps only its SHA-256):\n  {}\n\n", token);
    fmt::print("Paste into the probe's configuration file:\n\n");
    fmt::print("shipper:\n  url: {}\n  token: \"{}\"\n", url, token);
  }
  if (!config.tls.certificate.empty()) {
    fmt::print("  ca_file: /path/to/collector-ca.pem   # the CA that signed {}\n",
               config.tls.certificate.string());
  }
  if (bound) {
    fmt::print("  # and the probe's client certificate and key:\n"
               "  client_certificate: {}\n  client_key: /path/to/sensor-key.pem\n",
               options.client_certificate_file.empty() ? "/path/to/sensor-certificate.pem"
                                                       : options.client_certificate_file);
  }
  // libmodsecurity 3.0.9 sends no credentials and its SecAuditLog URL
  // cannot hold `user:token@`, so the token is the last path segment.
  fmt::print("\nFor nginx or Apache with ModSecurity v3 reporting directly (the token is part "
             "of the URL, so keep this file readable by the web server only):\n\n");
  // With --token-file or --existing-token-file the token stays out of the
  // terminal, so the line names the file to take it from.
  std::string token_text =
      token_path.empty() ? token : fmt::format("TOKEN-FROM-{}", token_path);
  fmt::print("SecAuditEngine RelevantOnly\nSecAuditLogFormat JSON\nSecAuditLogType HTTPS\n"
             "SecAuditLog {}/v1/modsecurity/{}\n",
             url, token_text);
  if (!token_path.empty()) {
    fmt::print("\nReplace {} with the content of {}: libmodsecurity reads no token file.\n",
               token_text, token_path);
  }
  return 0;
}

int runRevoke(const CollectorOptions& options) {
  setupLoggingOr(options, "warn");
  CollectorConfig config = loadConfig(options);
  auto store = openStore(config);
  std::optional<SensorInfo> before;
  for (auto& sensor : store->sensors()) {
    if (sensor.sensor_id == options.sensor_id) {
      before = std::move(sensor);
    }
  }
  if (!before || !store->revokeSensor(options.sensor_id, nowMilliseconds())) {
    throw CommandError(fmt::format("--sensor-id {}: no such sensor in {}; list the enrolled "
                                  "sensors with `webtrap collector sensors`",
                                  options.sensor_id, config.store.path.string()));
  }
  if (before->revoked_ms != 0) {
    fmt::print("Sensor \"{}\" was already revoked at {}.\n", options.sensor_id,
               isoTimestampFromUnixMs(before->revoked_ms));
    return 0;
  }
  fmt::print("Revoked sensor \"{}\". A running collector rejects its token from the next "
             "request on, with 403. Its {} stored records stay. `webtrap collector enrol "
             "--sensor-id {}` gives it a new token.\n",
             options.sensor_id, before->records, options.sensor_id);
  return 0;
}

// One JSON line per enrolled sensor, including revoked ones.
int runSensors(const CollectorOptions& options) {
  setupLoggingOr(options, "warn");
  CollectorConfig config = loadConfig(options);
  auto store = openExistingStore(config);
  for (const auto& sensor : store->sensors()) {
    std::string line;
    JsonWriter writer(line);
    writer.beginObject();
    writer.member("sensor_id", sensor.sensor_id);
    writer.member("group", sensor.group);
    writer.member("enrolled", isoTimestampFromUnixMs(sensor.enrolled_ms));
    writer.key("last_seen");
    if (sensor.last_seen_ms > 0) {
      writer.string(isoTimestampFromUnixMs(sensor.last_seen_ms));
    } else {
      writer.null();
    }
    writer.member("records", static_cast<std::int64_t>(sensor.records));
    writer.key("revoked");
    if (sensor.revoked_ms != 0) {
      writer.string(isoTimestampFromUnixMs(sensor.revoked_ms));
    } else {
      writer.null();
    }
    writer.member("certificate_sha256", sensor.certificate_sha256);
    writer.member("certificate_cn", sensor.certificate_cn);
    writer.endObject();
    fmt::print("{}\n", line);
  }
  return 0;
}

int runSetupElasticsearch(const CollectorOptions& options) {
  setupLoggingOr(options, "info");
  CollectorConfig config = loadConfig(options);
  setupElasticsearchFromConfig(config);
  return 0;
}

int runDeadLetters(const CollectorOptions& options) {
  setupLoggingOr(options, "warn");
  CollectorConfig config = loadConfig(options);
  auto store = openExistingStore(config);
  auto letters = store->deadLetters(options.limit);
  fmt::print(stderr, "dead letters: {} in the store, showing {}\n", store->deadLetterCount(),
             letters.size());
  for (const auto& letter : letters) {
    std::string line;
    JsonWriter writer(line);
    writer.beginObject();
    writer.member("id", letter.id);
    writer.member("at", isoTimestampFromUnixMs(letter.at_ms));
    writer.member("output", letter.output);
    writer.member("event_id", letter.event_id);
    writer.member("reason", letter.reason);
    writer.member("payload", letter.payload);
    writer.endObject();
    fmt::print("{}\n", line);
  }
  return 0;
}

// Returns false when `name` is an output whose section `config` leaves out,
// so that a rewind of its cursor sends nothing until the section is back.
bool outputConfigured(const CollectorConfig& config, const std::string& name) {
  const std::pair<const char*, const YAML::Node*> sections[] = {
      {"elasticsearch", &config.elasticsearch},
      {"ndjson", &config.ndjson},
      {"misp_feed", &config.misp_feed},
      {"misp", &config.misp},
      {"stix", &config.stix},
  };
  for (const auto& [section, node] : sections) {
    if (name == section) {
      return node->IsDefined() && !node->IsNull();
    }
  }
  // The dashboard's index, which --dashboard turns on without a section.
  return true;
}

// Moves an output's cursor back, so that the output sends the stored events
// after it again when the collector next starts. A running output keeps its
// cursor in memory and would write over the rewind, so the command takes
// the store's lock and fails while a collector runs.
int runRewind(const CollectorOptions& options) {
  setupLoggingOr(options, "warn");
  CollectorConfig config = loadConfig(options);
  if (options.since.empty() != options.from_seq_given) {
    throw CommandError("rewind: give either --since DURATION (such as 2h) or --from-seq SEQ");
  }
  std::uint64_t since_ms = 0;
  if (!options.since.empty()) {
    try {
      since_ms = config_values::parseMilliseconds(options.since, "--since");
    } catch (const ConfigError& error) {
      throw CommandError(error.what());  // an option, not the configuration
    }
  }
  // Checked first, so that a wrong folder gets no lock file.
  requireExistingStore(config);
  std::unique_ptr<FileHandle> store_lock = lockStore(config, true);
  StoreFileLock store_file_lock = lockStoreFile(config, true);
  auto store = openStore(config);

  std::vector<std::string> outputs = store->outputs();
  if (std::find(outputs.begin(), outputs.end(), options.output_name) == outputs.end()) {
    std::string names;
    for (const std::string& name : outputs) {
      names += names.empty() ? name : ", " + name;
    }
    throw CommandError(fmt::format("--output: the store has no cursor for an output named \"{}\"; "
                                  "its outputs are: {}",
                                  options.output_name, names.empty() ? "none yet" : names));
  }

  const std::int64_t before = store->cursor(options.output_name);
  std::int64_t from_seq = options.from_seq;
  if (!options.since.empty()) {
    const std::int64_t now_ms = nowMilliseconds();
    std::uint64_t back_ms = std::min<std::uint64_t>(since_ms, now_ms);
    from_seq = store->firstSeqStoredFrom(now_ms - static_cast<std::int64_t>(back_ms));
    if (from_seq == 0) {
      fmt::print(stderr, "rewind: the store contains no event stored in the last {} (retention may "
                         "have removed them); the cursor of {} stays at {}\n",
                 options.since, options.output_name, before);
      from_seq = before + 1;
    } else if (from_seq - 1 >= before) {
      fmt::print(stderr, "rewind: {} has not sent the events stored in the last {} yet; its "
                         "cursor stays at {}\n",
                 options.output_name, options.since, before);
      from_seq = before + 1;
    }
  } else if (from_seq < 1) {
    throw CommandError(fmt::format("--from-seq: {} is not a seq; seqs start at 1", from_seq));
  }

  const std::int64_t after = from_seq - 1;
  if (after > before) {
    throw CommandError(fmt::format("--from-seq: the output {} has sent the events up to seq {} "
                                  "only, so seq {} is not sent yet; rewind moves a cursor back, "
                                  "never forward",
                                  options.output_name, before, from_seq));
  }
  store->setCursor(options.output_name, after);
  if (!outputConfigured(config, options.output_name)) {
    fmt::print(stderr, "rewind: {} has no outputs.{} section, so the output sends nothing "
                       "again until that section is added back\n",
               options.config_path, options.output_name);
  }
  spdlog::info("collector: rewound output={} cursor_before={} cursor_after={}",
               options.output_name, before, after);

  std::string line;
  JsonWriter writer(line);
  writer.beginObject();
  writer.member("output", options.output_name);
  writer.member("cursor_before", before);
  writer.member("cursor_after", after);
  writer.member("last_seq", store->lastSeq());
  writer.endObject();
  fmt::print("{}\n", line);
  return 0;
}

int runCount(const CollectorOptions& options) {
  setupLoggingOr(options, "warn");
  CollectorConfig config = loadConfig(options);
  auto store = openExistingStore(config);
  std::string line;
  JsonWriter writer(line);
  writer.beginObject();
  writer.member("events", static_cast<std::int64_t>(store->eventCount()));
  writer.member("last_seq", store->lastSeq());
  writer.member("duplicates", static_cast<std::int64_t>(store->duplicateCount()));
  writer.member("dead_letters", static_cast<std::int64_t>(store->deadLetterCount()));
  writer.member("document_bytes", static_cast<std::int64_t>(store->sizeBytes()));
  writer.endObject();
  fmt::print("{}\n", line);
  return 0;
}

// One line per stored event: time, sensor, source, request, status and the
// rules that matched. Reads the store, so it works beside a running collector.
std::string tailLine(simdjson::ondemand::parser& parser, const StoredEvent& event) {
  simdjson::padded_string json(event.document);
  simdjson::ondemand::document doc;
  if (parser.iterate(json).get(doc) != simdjson::SUCCESS) {
    return fmt::format("{} (document not readable)", event.event_id);
  }
  auto text = [&doc](const char* pointer) -> std::string {
    std::string_view value;
    doc.rewind();
    if (doc.at_pointer(pointer).get_string().get(value) == simdjson::SUCCESS) {
      return std::string(value);
    }
    return "-";
  };
  std::string timestamp = text("/@timestamp");
  std::string sensor = text("/observer/name");
  std::string source = text("/source/ip");
  std::string country = text("/source/geo/country_iso_code");
  std::string method = text("/http/request/method");
  std::string url = text("/url/original");
  std::int64_t status = 0;
  doc.rewind();
  if (doc.at_pointer("/http/response/status_code").get_int64().get(status) != simdjson::SUCCESS) {
    status = 0;
  }
  std::string rules;
  doc.rewind();
  simdjson::ondemand::value rule_ids;
  if (doc.at_pointer("/rule/id").get(rule_ids) == simdjson::SUCCESS) {
    simdjson::ondemand::json_type type;
    if (rule_ids.type().get(type) == simdjson::SUCCESS &&
        type == simdjson::ondemand::json_type::array) {
      for (auto item : rule_ids.get_array()) {
        std::string_view id;
        if (item.get_string().get(id) == simdjson::SUCCESS) {
          rules += rules.empty() ? "" : ",";
          rules += id;
        }
      }
    } else {
      std::string_view id;
      if (rule_ids.get_string().get(id) == simdjson::SUCCESS) {
        rules = std::string(id);
      }
    }
  }
  if (url.size() > 100) {
    url = url.substr(0, 97) + "...";
  }
  std::string from = country == "-" ? source : fmt::format("{} ({})", source, country);
  // The probe listener, so that a request to a bait port does not read
  // like the same request to the web port.
  std::string listener = text("/webtrap/listener/name");
  bool bait = false;
  doc.rewind();
  if (doc.at_pointer("/webtrap/listener/bait").get_bool().get(bait) != simdjson::SUCCESS) {
    bait = false;
  }
  std::string via = listener == "-" ? "" : fmt::format("  via {}{}", listener, bait ? " (bait)" : "");
  // A request the probe did not inspect has no rule matches, which must not
  // read like a clean request.
  std::string inspection = text("/webtrap/inspection/status");
  if (inspection != "-" && inspection != "complete" && inspection != "cached") {
    rules += fmt::format("{}({} inspection)", rules.empty() ? "none " : " ", inspection);
  }
  // Rule messages cut to bound the record (docs/records.md) are marked, so
  // that a short message list does not read as everything that matched.
  doc.rewind();
  std::uint64_t omitted = 0;
  if (doc.at_pointer("/webtrap/inspection/details_cut/omitted_matches").get_uint64().get(omitted) ==
      simdjson::SUCCESS) {
    rules += omitted > 0 ? fmt::format(" (messages cut, {} left out)", omitted)
                         : std::string(" (messages cut)");
  }
  return fmt::format("{}  {}  {}  {} {}  {}  rules: {}{}", timestamp, sensor, from, method, url,
                     status, rules.empty() ? "none" : rules, via);
}

// Set by SIGTERM or SIGINT while `tail --follow` runs.
std::atomic<bool> g_tail_stop{false};

void onTailStop(int) { g_tail_stop.store(true); }

int runTail(const CollectorOptions& options) {
  setupLoggingOr(options, "warn");
  if (options.follow) {
    // A stop prints the events stored by then before exiting, so that
    // the events stored just before the stop (the probe's last records,
    // when run.sh stops everything) are not left unprinted.
    struct sigaction action {};
    action.sa_handler = onTailStop;
    sigemptyset(&action.sa_mask);
    sigaction(SIGTERM, &action, nullptr);
    sigaction(SIGINT, &action, nullptr);
  }
  CollectorConfig config = loadConfig(options);
  auto store = openExistingStore(config);
  const std::int64_t last = store->lastSeq();
  std::int64_t after = std::max<std::int64_t>(0, last - static_cast<std::int64_t>(options.limit));
  if (options.after_seq_given) {
    after = options.after_seq;
    // Sequence numbers only grow, so a number past the last one most
    // likely came from another store (or state_dir) than this one.
    if (after > last) {
      fmt::print(stderr,
                 "webtrap: --after-seq {} is past the last seq of the store \"{}\" ({}), so "
                 "only events stored after seq {} are printed; check that the number came from "
                 "count on the same store\n",
                 after, config.store.path.string(), last, after);
    }
  }
  simdjson::ondemand::parser parser;
  std::optional<std::int64_t> stop_at;
  while (true) {
    auto events = store->readAfter(after, 500, 4 << 20);
    for (const auto& event : events) {
      if (!event.damage.empty()) {
        fmt::print(stderr, "webtrap: event {} (seq {}) is printed without event.original: {}\n",
                   event.event_id, event.seq, event.damage);
      }
      if (options.documents) {
        fmt::print("{}\n", terminalSafe(event.document));
      } else {
        fmt::print("{}\n", terminalSafe(tailLine(parser, event)));
      }
      after = event.seq;
    }
    std::fflush(stdout);
    // One read returns at most 500 events or 4 MiB, so --last may need more.
    if (!options.follow && (events.empty() || after >= last)) {
      return 0;
    }
    if (g_tail_stop.load()) {
      // Prints up to the newest event stored when the stop was seen, not
      // on and on while a busy collector keeps storing.
      if (!stop_at) {
        stop_at = store->lastSeq();
      }
      if (events.empty() || after >= *stop_at) {
        return 0;
      }
      continue;
    }
    if (events.empty()) {
      // Waits 500 ms in steps, so that a stop is seen within 50 ms.
      for (int step = 0; step < 10 && !g_tail_stop.load(); ++step) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
    }
  }
}

}  // namespace

void addCollectorCommand(CLI::App& app, CommandRunner& runner) {
  auto options = std::make_shared<CollectorOptions>();
  CLI::App* command =
      app.add_subcommand("collector", "Run the collector: ingest, store and deliver records");
  command->fallthrough();
  command->require_subcommand(0, 1);
  command->add_option("--config", options->config_path, "YAML configuration file")
      ->check(CLI::ExistingFile);
  command->add_option("--log-level", options->log_level,
                      "trace, debug, info, warn or error (default: info for the service and "
                      "setup-elasticsearch, warn for the other subcommands)");
  command->add_option("--ports-file", options->ports_file,
                      "Write the bound ingest and admin ports to this JSON file once ready");
  command->add_flag("--config-reference", options->print_reference,
                    "Print every configuration key as a Markdown table and exit");

  CLI::App* enrol =
      command->add_subcommand("enrol", "Enrol a sensor: make its token and print the probe "
                                       "configuration lines");
  enrol->add_option("--sensor-id", options->sensor_id, "Sensor id, such as web1")->required();
  enrol->add_option("--group", options->group, "Sensor group (default: \"default\")");
  enrol->add_option("--url", options->collector_url,
                    "Collector URL the sensor reaches, such as https://collector.example:7380 "
                    "(default: from `listen`)");
  enrol->add_option("--token-file", options->token_file,
                    "Write the token to this file (mode 0600) and print token_file instead");
  enrol->add_option("--existing-token-file", options->existing_token_file,
                    "Enrol the token in this file (- reads standard input) instead of making a "
                    "new one, such as the token another collector made for this sensor, so one "
                    "probe can ship to several collectors");
  // An empty value (such as an unset shell variable) would otherwise enrol
  // the sensor without the certificate binding that the option requests.
  CLI::Validator non_empty(
      [](std::string& value) {
        return value.empty() ? std::string("empty value; give a value, or leave the option "
                                           "out to enrol without a certificate binding")
                             : std::string();
      },
      "", "NON_EMPTY");
  enrol
      ->add_option("--client-certificate", options->client_certificate_file,
                   "PEM certificate of the sensor: its records are accepted only over TLS "
                   "with this certificate (needs tls.client_ca)")
      ->check(non_empty);
  enrol
      ->add_option("--client-certificate-sha256", options->client_certificate_sha256,
                   "The same, given as the SHA-256 fingerprint of the certificate's DER "
                   "encoding (hex, colons allowed)")
      ->check(non_empty);
  enrol
      ->add_option("--client-certificate-cn", options->client_certificate_cn,
                   "Accept the sensor's records only with a client certificate whose subject "
                   "CN is this (needs tls.client_ca)")
      ->check(non_empty);
  enrol->callback([options, &runner] { runner = [options] { return runEnrol(*options); }; });

  CLI::App* revoke = command->add_subcommand(
      "revoke", "Revoke a sensor: a running collector rejects its token at once; its records "
                "stay");
  revoke->add_option("--sensor-id", options->sensor_id, "Sensor id, such as web1")->required();
  revoke->callback([options, &runner] { runner = [options] { return runRevoke(*options); }; });

  CLI::App* sensors = command->add_subcommand(
      "sensors", "Print the enrolled sensors as NDJSON, revoked ones included");
  sensors->callback([options, &runner] { runner = [options] { return runSensors(*options); }; });

  CLI::App* setup = command->add_subcommand(
      "setup-elasticsearch",
      "Install the index template and ILM policy in Elasticsearch, and the Kibana dashboard "
      "when outputs.elasticsearch.kibana is set");
  setup->callback(
      [options, &runner] { runner = [options] { return runSetupElasticsearch(*options); }; });

  CLI::App* letters =
      command->add_subcommand("dead-letters", "Print dead letters, newest first, as NDJSON");
  letters->add_option("--limit", options->limit, "Number of dead letters to print");
  letters->callback(
      [options, &runner] { runner = [options] { return runDeadLetters(*options); }; });

  CLI::App* rewind = command->add_subcommand(
      "rewind",
      "Move an output's cursor back, so that it sends the stored events after it again; run it "
      "while the collector is stopped");
  rewind->add_option("--output", options->output_name,
                     "Output whose cursor moves: elasticsearch, ndjson or another output name")
      ->required();
  rewind->add_option("--since", options->since,
                     "Send again the events stored in this last span of time, such as 2h or 1d");
  CLI::Option* from_seq =
      rewind->add_option("--from-seq", options->from_seq, "Send again the events from this seq on");
  rewind->callback([options, from_seq, &runner] {
    options->from_seq_given = from_seq->count() > 0;
    runner = [options] { return runRewind(*options); };
  });

  CLI::App* count = command->add_subcommand(
      "count", "Print the number of stored events, duplicates and dead letters as JSON");
  count->callback([options, &runner] { runner = [options] { return runCount(*options); }; });

  CLI::App* tail = command->add_subcommand(
      "tail", "Print the newest stored events, one line each; --follow keeps printing new ones");
  // CLI11's own checks would convert "-1" for an unsigned count, or print
  // its double range, so both counts are checked as text first.
  auto whole_number = [](const char* what) {
    return CLI::Validator(
        [what](std::string& value) {
          bool digits = !value.empty() && value.size() <= 18 &&
                        value.find_first_not_of("0123456789") == std::string::npos;
          return digits ? std::string()
                        : fmt::format("invalid value {}; give {} as a whole number of 0 or more",
                                      value, what);
        },
        "", "WHOLE_NUMBER");
  };
  CLI::Option* last_option =
      tail->add_option("--last", options->limit, "Number of stored events to print first")
          ->check(whole_number("the number of events"));
  tail->add_option_function<std::int64_t>(
          "--after-seq",
          [options](std::int64_t seq) {
            options->after_seq = seq;
            options->after_seq_given = true;
          },
          "Print first every event stored after this sequence number, such as the last_seq "
          "that count printed before a start (in place of --last)")
      ->check(whole_number("a sequence number"))
      ->excludes(last_option);
  tail->add_flag("--follow,-f", options->follow, "Keep printing events as they are stored");
  tail->add_flag("--documents", options->documents,
                 "Print each event's whole ECS document as one JSON line (NDJSON)");
  tail->callback([options, &runner] { runner = [options] { return runTail(*options); }; });

  command->callback([command, options, &runner] {
    if (command->get_subcommands().empty()) {
      runner = [options] { return runCollector(*options); };
    }
  });
}

}  // namespace webtrap::cli
