#include "collector/store.h"

#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <optional>
#include <utility>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "collector/ecs.h"
#include "collector/gunzip.h"
#include "common/file_io.h"

namespace webtrap::collector {
namespace {

// Bump when the schema changes, and teach openSchema() to migrate.
constexpr int kSchemaVersion = 7;
// Dead letters may take this fraction (1/kDeadLetterShare) of
// store.retention.max_size, so that a sender of undecodable records cannot
// fill the disk while they are younger than max_age.
constexpr std::uint64_t kDeadLetterShare = 10;

// Retention deletes at most this many events per transaction, so inserts
// wait for the write lock at most one chunk's time.
constexpr int kRetentionChunk = 5000;

// A passive checkpoint also runs this often while the WAL has frames not
// yet copied, so an idle store gets its last commits into the database file.
constexpr auto kCheckpointIdleInterval = std::chrono::seconds(5);
// How long a RESTART checkpoint waits for readers to leave the WAL. Writers
// wait behind it, so this is well under their 5 s busy timeout, and a
// reader that stays longer costs a retry later, not a failed insert.
constexpr int kCheckpointBusyTimeoutMs = 1000;
// Minimum wait before another blocking checkpoint after one that timed out.
constexpr auto kBlockingCheckpointRetry = std::chrono::seconds(5);

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS events (
  seq INTEGER PRIMARY KEY,
  event_id TEXT NOT NULL UNIQUE,
  timestamp_ms INTEGER NOT NULL,
  received_ms INTEGER NOT NULL,
  sensor_id TEXT NOT NULL,
  source_ip TEXT NOT NULL,
  size INTEGER NOT NULL,
  document TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS cursors (
  output TEXT PRIMARY KEY,
  seq INTEGER NOT NULL,
  updated_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS dead_letters (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  output TEXT NOT NULL,
  event_id TEXT NOT NULL,
  reason TEXT NOT NULL,
  payload BLOB NOT NULL,
  at_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS dead_letters_at ON dead_letters(at_ms);
CREATE TABLE IF NOT EXISTS sensors (
  sensor_id TEXT PRIMARY KEY,
  group_name TEXT NOT NULL,
  token_sha256 TEXT NOT NULL UNIQUE,
  enrolled_ms INTEGER NOT NULL,
  last_seen_ms INTEGER NOT NULL,
  records INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS file_offsets (
  path TEXT PRIMARY KEY,
  inode INTEGER NOT NULL,
  offset INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (
  name TEXT PRIMARY KEY,
  value INTEGER NOT NULL
);
)sql";

// Version 2: sensor revocation and client certificate binding. A version 1
// store gets the columns with values that mean "not revoked, no binding".
constexpr const char* kSchemaVersion2 = R"sql(
ALTER TABLE sensors ADD COLUMN revoked_ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sensors ADD COLUMN certificate_sha256 TEXT NOT NULL DEFAULT '';
ALTER TABLE sensors ADD COLUMN certificate_cn TEXT NOT NULL DEFAULT '';
)sql";

// Version 3: the hashes of revoked tokens, kept after the sensor gets a new
// token, so that `enrol --existing-token-file` never accepts one again. A
// version 2 store adds the tokens of the sensors revoked at the upgrade,
// but not those already replaced by an earlier enrol.
constexpr const char* kSchemaVersion3 = R"sql(
CREATE TABLE IF NOT EXISTS retired_tokens (
  token_sha256 TEXT PRIMARY KEY,
  sensor_id TEXT NOT NULL,
  retired_ms INTEGER NOT NULL
);
INSERT OR IGNORE INTO retired_tokens(token_sha256, sensor_id, retired_ms)
  SELECT token_sha256, sensor_id, revoked_ms FROM sensors WHERE revoked_ms != 0;
)sql";

// Version 4: probe batches kept once, as received (gzip), keyed by the seq
// of their first stored event. An event with original_batch set has a
// document without event.original, which goes back in at original_at from
// bytes [original_offset, original_offset + original_length) of the
// inflated batch. Events of older versions keep whole documents (NULL).
// The upgrade adds only the columns that are missing, so a store whose
// version number was set back still opens.
constexpr std::pair<const char*, const char*> kVersion4Columns[] = {
    {"original_batch", "INTEGER"},
    {"original_offset", "INTEGER NOT NULL DEFAULT 0"},
    {"original_length", "INTEGER NOT NULL DEFAULT 0"},
    {"original_at", "INTEGER NOT NULL DEFAULT 0"},
};
constexpr const char* kSchemaVersion4 = R"sql(
CREATE TABLE IF NOT EXISTS batches (
  first_seq INTEGER PRIMARY KEY,
  inflated_size INTEGER NOT NULL,
  body BLOB NOT NULL
);
)sql";

// `,"original":""` around an original put back into its document.
constexpr std::size_t kOriginalMemberBytes = 14;

// Names in the counters table. Per-output retention counts use the prefix
// followed by the output name.
constexpr std::string_view kLastSeq = "last_seq";
constexpr std::string_view kEventCount = "event_count";
constexpr std::string_view kEventBytes = "event_bytes";
constexpr std::string_view kDuplicates = "duplicates";
constexpr std::string_view kRetentionRemoved = "retention_removed";
constexpr std::string_view kUndeliveredPrefix = "retention_removed_undelivered:";
constexpr std::string_view kDeadLettersRemoved = "retention_dead_letters_removed";

std::int64_t nowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

bool isRetryableCode(int code) {
  int primary = code & 0xff;
  return primary == SQLITE_BUSY || primary == SQLITE_LOCKED || primary == SQLITE_FULL ||
         primary == SQLITE_IOERR;
}

bool isCorruptionCode(int code) {
  int primary = code & 0xff;
  return primary == SQLITE_NOTADB || primary == SQLITE_CORRUPT;
}

[[noreturn]] void throwCorrupt(const std::filesystem::path& path, sqlite3* db, int code) {
  std::string p = path.string();
  throw StoreError(
      fmt::format("store {}: the file is not a SQLite database or is corrupt ({}). Move it aside "
                  "(mv {} {}.corrupt) and restart to begin with an empty store, or restore it "
                  "from a backup; `sqlite3 {}.corrupt .recover` may save the rows it still has",
                  p, db ? sqlite3_errmsg(db) : sqlite3_errstr(code), p, p, p),
      code, false);
}

[[noreturn]] void throwSqlite(const std::filesystem::path& path, sqlite3* db, int code,
                              std::string_view action) {
  if (isCorruptionCode(code)) {
    throwCorrupt(path, db, code);
  }
  std::string detail = db ? sqlite3_errmsg(db) : sqlite3_errstr(code);
  std::string hint;
  switch (code & 0xff) {
    case SQLITE_FULL:
      hint = "; free disk space or lower store.retention.max_size";
      break;
    case SQLITE_READONLY:
    case SQLITE_CANTOPEN:
    case SQLITE_PERM:
      hint = "; check that the collector's user can write the file and its folder";
      break;
    case SQLITE_BUSY:
      hint = "; another process holds the database, stop it or use another store.path";
      break;
    default:
      break;
  }
  throw StoreError(fmt::format("store {}: {} failed: {}{}", path.string(), action, detail, hint),
                   code, isRetryableCode(code));
}

// One SQLite connection with its prepared statements, which are compiled on
// first use and kept for the life of the connection.
class Connection {
 public:
  Connection(const std::filesystem::path& path, bool create) : path_(path) {
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX;
    if (create) {
      flags |= SQLITE_OPEN_CREATE;
    }
    int rc = sqlite3_open_v2(path.c_str(), &db_, flags, nullptr);
    if (rc != SQLITE_OK) {
      sqlite3* db = db_;
      std::string detail = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
      sqlite3_close_v2(db_);
      db_ = nullptr;
      throw StoreError(fmt::format("store {}: cannot open the database: {}; check that the path "
                                   "exists and the collector's user can write it",
                                   path.string(), detail),
                       rc, false);
    }
    sqlite3_extended_result_codes(db_, 1);
    // Writers wait up to 5 s for a lock held by another connection (a reader
    // checkpointing, or the sqlite3 shell) before failing with SQLITE_BUSY.
    sqlite3_busy_timeout(db_, 5000);
  }

  ~Connection() {
    for (auto& [sql, stmt] : statements_) {
      sqlite3_finalize(stmt);
    }
    sqlite3_close_v2(db_);
  }

  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  sqlite3* db() const { return db_; }
  const std::filesystem::path& path() const { return path_; }

  void exec(const char* sql, std::string_view action) {
    char* error = nullptr;
    int rc = sqlite3_exec(db_, sql, nullptr, nullptr, &error);
    sqlite3_free(error);
    if (rc != SQLITE_OK) {
      throwSqlite(path_, db_, rc, action);
    }
  }

  // Returns the cached statement for `sql`, reset and with bindings cleared.
  sqlite3_stmt* prepare(const char* sql) {
    auto it = statements_.find(sql);
    if (it != statements_.end()) {
      sqlite3_reset(it->second);
      sqlite3_clear_bindings(it->second);
      return it->second;
    }
    sqlite3_stmt* stmt = nullptr;
    int rc = sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
    if (rc != SQLITE_OK) {
      throwSqlite(path_, db_, rc, fmt::format("preparing \"{}\"", sql));
    }
    statements_.emplace(sql, stmt);
    return stmt;
  }

  // Steps a statement and throws on anything but a row or the end.
  bool step(sqlite3_stmt* stmt, std::string_view action) {
    int rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW) {
      return true;
    }
    if (rc == SQLITE_DONE) {
      return false;
    }
    throwSqlite(path_, db_, rc, action);
  }

 private:
  std::filesystem::path path_;
  sqlite3* db_ = nullptr;
  // Keyed by the address of the SQL text: every statement is a literal.
  std::unordered_map<const char*, sqlite3_stmt*> statements_;
};

// Resets a statement when a scope ends, so it holds no read snapshot and
// no lock between calls.
class ResetGuard {
 public:
  explicit ResetGuard(sqlite3_stmt* stmt) : stmt_(stmt) {}
  ~ResetGuard() { sqlite3_reset(stmt_); }
  ResetGuard(const ResetGuard&) = delete;
  ResetGuard& operator=(const ResetGuard&) = delete;

 private:
  sqlite3_stmt* stmt_;
};

void bindText(sqlite3_stmt* stmt, int index, std::string_view text) {
  sqlite3_bind_text64(stmt, index, text.data(), text.size(), SQLITE_STATIC, SQLITE_UTF8);
}

void bindBlob(sqlite3_stmt* stmt, int index, std::string_view bytes) {
  sqlite3_bind_blob64(stmt, index, bytes.data(), bytes.size(), SQLITE_STATIC);
}

std::string columnText(sqlite3_stmt* stmt, int index) {
  const auto* text = static_cast<const char*>(sqlite3_column_blob(stmt, index));
  int size = sqlite3_column_bytes(stmt, index);
  return text ? std::string(text, static_cast<std::size_t>(size)) : std::string();
}

// Copies a text or blob column into `out`, reusing its capacity.
void assignColumnText(sqlite3_stmt* stmt, int index, std::string& out) {
  const auto* text = static_cast<const char*>(sqlite3_column_blob(stmt, index));
  int size = sqlite3_column_bytes(stmt, index);
  if (text) {
    out.assign(text, static_cast<std::size_t>(size));
  } else {
    out.clear();
  }
}

SensorInfo readSensor(sqlite3_stmt* stmt) {
  SensorInfo info;
  info.sensor_id = columnText(stmt, 0);
  info.group = columnText(stmt, 1);
  info.token_sha256 = columnText(stmt, 2);
  info.enrolled_ms = sqlite3_column_int64(stmt, 3);
  info.last_seen_ms = sqlite3_column_int64(stmt, 4);
  info.records = static_cast<std::uint64_t>(sqlite3_column_int64(stmt, 5));
  info.revoked_ms = sqlite3_column_int64(stmt, 6);
  info.certificate_sha256 = columnText(stmt, 7);
  info.certificate_cn = columnText(stmt, 8);
  return info;
}

constexpr const char* kSensorColumns =
    "SELECT sensor_id, group_name, token_sha256, enrolled_ms, last_seen_ms, records, revoked_ms, "
    "certificate_sha256, certificate_cn FROM sensors";

// Adds `column` to `table` unless the table has it, so that a store whose
// version number was set back still opens.
void addMissingColumn(Connection& connection, const char* table, const char* column,
                      const char* type) {
  // Prepared here, not through Connection::prepare(), whose cache is keyed
  // by the address of the SQL text and would return another table's query.
  const std::string sql = fmt::format("PRAGMA table_info({})", table);
  sqlite3_stmt* info = nullptr;
  int rc = sqlite3_prepare_v2(connection.db(), sql.c_str(), -1, &info, nullptr);
  std::unique_ptr<sqlite3_stmt, int (*)(sqlite3_stmt*)> finalize(info, sqlite3_finalize);
  if (rc != SQLITE_OK) {
    throwSqlite(connection.path(), connection.db(), rc, "reading a table's columns");
  }
  while (connection.step(info, "reading a table's columns")) {
    if (columnText(info, 1) == column) {
      return;
    }
  }
  connection.exec(fmt::format("ALTER TABLE {} ADD COLUMN {} {}", table, column, type).c_str(),
                  "adding a column");
}

}  // namespace

struct Store::Impl {
  struct InsertRequest {
    std::span<const NewEvent> events;
    std::span<const DeadLetter> dead_letters;
    const SensorNote* note = nullptr;
    const OriginalBatch* batch = nullptr;
    const FileOffsetNote* file_offset = nullptr;
    InsertSummary summary;
    std::exception_ptr error;
    bool done = false;
  };

  struct SensorSeen {
    std::int64_t last_seen_ms = 0;
    std::uint64_t records = 0;
  };

  StoreOptions options;
  // The batches inflated or inserted last, newest first, shared by every
  // reader. An insert that has its batch's text in memory puts it here, so
  // an output that keeps up with the inserts reads batches without inflating
  // them. Batches never change and their keys are never reused, so an entry
  // cannot go stale. At most kCachedBatches entries and, beyond the newest
  // one, kCachedBatchBytes of memory. The strings' capacity counts, not
  // their size, because an inflated text can hold up to twice its size.
  struct CachedBatch {
    std::int64_t first_seq = 0;  // 0: none, since seqs start at 1
    std::shared_ptr<const std::string> text;
    std::string damage;  // why `text` is null, when the batch is missing or damaged
  };
  static constexpr std::size_t kCachedBatches = 16;
  static constexpr std::size_t kCachedBatchBytes = 32u << 20;
  mutable std::mutex batch_cache_mutex;
  mutable std::vector<CachedBatch> batch_cache;
  std::unique_ptr<Connection> writer;
  std::mutex write_mutex;  // guards `writer`

  // Output cursors noted without waiting for the write lock
  // (Store::noteCursor). The next write under the lock stores them: an
  // insert's group commit, retention, or flushCursors().
  using Cursors = std::map<std::string, std::int64_t, std::less<>>;
  mutable std::mutex cursor_mutex;
  Cursors pending_cursors;

  // Per output, the seqs read for a send that has not finished
  // (Store::beginInFlight), and those of them that retention removed
  // meanwhile: they count as removed undelivered only if the send leaves
  // them unfinished. `late_undelivered` keeps such counts until the next
  // retention pass reports them.
  struct InFlight {
    std::int64_t first = 0;
    std::int64_t last = -1;
    std::vector<std::int64_t> removed;
  };
  std::mutex in_flight_mutex;
  std::map<std::string, InFlight, std::less<>> in_flight;
  std::map<std::string, std::uint64_t, std::less<>> late_undelivered;

  mutable std::mutex pool_mutex;
  mutable std::vector<std::unique_ptr<Connection>> idle_readers;

  std::atomic<std::int64_t> last_seq{0};
  std::atomic<std::uint64_t> event_count{0};
  std::atomic<std::uint64_t> event_bytes{0};
  std::atomic<std::uint64_t> duplicates{0};

  // Group commit: callers queue their request, and whichever finds no leader
  // commits everything queued so far in one transaction.
  std::mutex group_mutex;
  std::condition_variable group_cv;
  std::vector<InsertRequest*> group_pending;
  bool group_leader = false;

  mutable std::mutex seen_mutex;
  std::map<std::string, SensorSeen, std::less<>> pending_seen;

  // WAL checkpoints run on `checkpointer`, a connection of their own, in
  // `checkpoint_thread`. The writer's WAL hook stores the WAL size in pages
  // after each commit and wakes the thread past options.checkpoint_pages.
  std::unique_ptr<Connection> checkpointer;
  std::thread checkpoint_thread;
  std::mutex checkpoint_mutex;
  std::condition_variable checkpoint_cv;
  bool checkpoint_stopping = false;
  std::atomic<int> wal_pages{0};

  // With synchronous=full, event inserts commit under synchronous=NORMAL
  // and the leader of each group syncs the WAL through this descriptor
  // after it releases the write lock, so the next group's insert runs
  // during the sync. -1 until the first sync opens it.
  std::mutex wal_fd_mutex;
  int wal_fd = -1;
  // Used by the checkpoint thread alone: the WAL frames copied into the
  // database file as of the last checkpoint, the checkpoints that failed,
  // and the earliest time for the next blocking checkpoint.
  int checkpointed_frames = 0;
  std::uint64_t checkpoint_failures = 0;
  std::chrono::steady_clock::time_point next_blocking_checkpoint{};

  // A read connection borrowed from the pool for the length of one call.
  class Reader {
   public:
    explicit Reader(const Impl& impl) : impl_(impl) {
      {
        std::lock_guard lock(impl.pool_mutex);
        if (!impl.idle_readers.empty()) {
          connection_ = std::move(impl.idle_readers.back());
          impl.idle_readers.pop_back();
        }
      }
      if (!connection_) {
        connection_ = std::make_unique<Connection>(impl.options.path, false);
      }
    }
    ~Reader() {
      std::lock_guard lock(impl_.pool_mutex);
      impl_.idle_readers.push_back(std::move(connection_));
    }
    Reader(const Reader&) = delete;
    Reader& operator=(const Reader&) = delete;
    Connection* operator->() const { return connection_.get(); }
    Connection& operator*() const { return *connection_; }

   private:
    const Impl& impl_;
    std::unique_ptr<Connection> connection_;
  };

  void open();
  void startCheckpointer();
  void stopCheckpointer();
  void runCheckpointer();
  int framesToCheckpoint() const;
  // Returns false when the checkpoint failed or gave up (SQLITE_BUSY).
  bool checkpoint(int mode);
  // Returns false when a letter with the same record_key is already stored.
  bool writeDeadLetter(const DeadLetter& letter);
  // Removes the oldest dead letters until their payloads take at most
  // `limit` bytes, and returns how many it removed.
  std::uint64_t removeDeadLettersOver(std::uint64_t limit);
  // Sets `event.document` to the whole document of an event read with the columns
  // original_batch, original_offset, original_length and original_at at
  // `column` to column + 3 and the stored document at `document_column`.
  // `batch` keeps the batch last used by this read, so that consecutive
  // events of one batch look it up once. When the batch is missing or
  // damaged, `damage` gets the reason and `document` the stored document,
  // which lacks event.original; otherwise `damage` is cleared.
  // With OriginalForm::kApart, `event.document` gets the stored document
  // and the original stays apart in `event` (StoredEvent::original_at).
  void readDocument(Connection& reader, sqlite3_stmt* stmt, int document_column, int column,
                    StoredEvent& event, CachedBatch& batch,
                    OriginalForm form = OriginalForm::kWhole) const;
  // Returns the inflated text of the batch whose first event is `first_seq`,
  // or nullptr with the reason in `damage` when the batch is missing or
  // does not inflate to its size.
  std::shared_ptr<const std::string> originalBatchText(Connection& reader, std::int64_t first_seq,
                                                       std::int64_t seq,
                                                       std::string& damage) const;
  // Puts a batch's inflated text at the front of the cache.
  void cacheBatch(std::int64_t first_seq, std::shared_ptr<const std::string> text) const;
  // Runs `write` without an fsync of its own (see setCursor in store.h).
  template <typename Write>
  void writeWithoutFsync(Write&& write);
  // Returns true when the group's commit still needs syncWal() to be
  // durable.
  bool commitGroup(std::vector<InsertRequest*>& group);
  void syncWal(std::vector<InsertRequest*>& group);
  void writeCounter(std::string_view name, std::int64_t value);
  // Writes a file input's offset on the writer connection. The caller holds
  // the write lock.
  void writeFileOffset(const FileOffsetNote& note);
  void addToCounter(std::string_view name, std::int64_t delta);
  std::int64_t readCounter(Connection& connection, std::string_view name) const;
  void writePendingSeen(std::map<std::string, SensorSeen, std::less<>>& seen);
  // A copy of the noted cursors. They stay noted until a write of them
  // commits, so that cursor() never returns less meanwhile.
  Cursors notedCursors() const;
  // Drops the notes that a committed write stored; a newer note stays.
  void forgetWrittenCursors(const Cursors& written);
  // Writes `cursors` with the writer; the caller holds write_mutex. A
  // cursor never moves back, because retention may have moved it on.
  void writeCursors(const Cursors& cursors);
  // Writes the noted cursors in a transaction of their own; the caller
  // holds write_mutex.
  void flushCursorsLocked();
  void flushPendingSeen();
  void applyPendingSeen(SensorInfo& info) const;
  bool removeChunk(std::int64_t now_ms, RetentionSummary& summary);
};

void Store::Impl::open() {
  const auto& path = options.path;
  if (options.synchronous != "full" && options.synchronous != "normal") {
    throw StoreError(fmt::format("store {}: synchronous \"{}\" is invalid; use full or normal",
                                 path.string(), options.synchronous),
                     SQLITE_MISUSE, false);
  }
  if (options.checkpoint_pages < 1 || options.checkpoint_blocking_pages < options.checkpoint_pages) {
    throw StoreError(fmt::format("store {}: checkpoint_pages {} must be at least 1 and at most "
                                 "checkpoint_blocking_pages {}",
                                 path.string(), options.checkpoint_pages,
                                 options.checkpoint_blocking_pages),
                     SQLITE_MISUSE, false);
  }
  if (path.has_parent_path()) {
    std::error_code ec;
    std::filesystem::create_directories(path.parent_path(), ec);
    if (ec) {
      throw StoreError(fmt::format("store {}: cannot create the folder {}: {}; create it or "
                                   "choose another store.path",
                                   path.string(), path.parent_path().string(), ec.message()),
                       SQLITE_CANTOPEN, false);
    }
  }

  // The store keeps attackers' requests and the honeytokens they took, so
  // a new store is private to the collector's user.
  createPrivateFile(path);
  writer = std::make_unique<Connection>(path, true);
  // 64 KiB pages (the SQLite maximum), applied only when the file is new.
  // ECS documents of ModSecurity records are 3 to 10 KB, because
  // event.original keeps the whole record. A 16 KiB page holds only one
  // document of 8.5 KB, so the file was 1.56 times the documents, and every
  // byte of that went through the WAL, the checkpoint and the output's
  // reads. Measured with bench/collector/run.sh --systems webtrap --count
  // 60000 (8.5 KB documents on average), on top of 1,000,000 stored events
  // with short documents: 57 instead of 67 us of collector CPU per record
  // (16 KiB pages), and a fresh store was 0.70 times the size. Larger pages
  // cost more when keys land at random places in the event_id index, which
  // is why derived ids start with the record's time. Earlier, with 3.25 KB
  // documents (bench/collector/store_bench.cpp), 16 KiB pages had beaten the
  // 4 KiB default: an insert took 7.6 instead of 10.7 us of CPU.
  writer->exec("PRAGMA page_size=65536", "setting the page size");
  // The first statement that reads the file header: a file that is not a
  // SQLite database fails here with SQLITE_NOTADB. No integrity check runs,
  // so opening a large store costs the same as opening an empty one.
  sqlite3_stmt* mode = writer->prepare("PRAGMA journal_mode=WAL");
  {
    ResetGuard reset(mode);
    if (!writer->step(mode, "switching to WAL mode")) {
      throw StoreError(fmt::format("store {}: switching to WAL mode returned nothing", path.string()),
                       SQLITE_ERROR, false);
    }
    std::string journal = columnText(mode, 0);
    if (journal != "wal") {
      throw StoreError(fmt::format("store {}: SQLite kept journal mode \"{}\" instead of WAL; the "
                                   "file system may not support shared memory, so put the store "
                                   "on a local disk",
                                   path.string(), journal),
                       SQLITE_ERROR, false);
    }
  }
  writer->exec(options.synchronous == "full" ? "PRAGMA synchronous=FULL"
                                             : "PRAGMA synchronous=NORMAL",
               "setting synchronous");
  // Truncate the WAL file back to 64 MiB after checkpoints, and give the
  // writer a 32 MiB page cache.
  writer->exec("PRAGMA journal_size_limit=67108864; PRAGMA cache_size=-32768",
               "setting the cache");
  // This hook replaces SQLite's automatic checkpoint, which is itself a WAL
  // hook, and hands the work to runCheckpointer(). So the thread holding the
  // write lock no longer copies pages into the database file.
  sqlite3_wal_hook(
      writer->db(),
      [](void* context, sqlite3*, const char*, int pages) -> int {
        auto* impl = static_cast<Impl*>(context);
        impl->wal_pages.store(pages, std::memory_order_relaxed);
        if (pages >= impl->options.checkpoint_pages) {
          impl->checkpoint_cv.notify_one();
        }
        return SQLITE_OK;
      },
      this);

  sqlite3_stmt* version = writer->prepare("PRAGMA user_version");
  int schema_version = 0;
  {
    ResetGuard reset(version);
    if (writer->step(version, "reading the schema version")) {
      schema_version = sqlite3_column_int(version, 0);
    }
  }
  if (schema_version > kSchemaVersion) {
    throw StoreError(fmt::format("store {}: schema version {} was written by a newer webtrap "
                                 "(this one knows {}); upgrade webtrap or use another store.path",
                                 path.string(), schema_version, kSchemaVersion),
                     SQLITE_ERROR, false);
  }
  if (schema_version < kSchemaVersion) {
    writer->exec("BEGIN IMMEDIATE", "creating the schema");
    try {
      writer->exec(kSchema, "creating the schema");
      if (schema_version < 2) {
        writer->exec(kSchemaVersion2, "adding the sensor revocation columns");
      }
      if (schema_version < 3) {
        writer->exec(kSchemaVersion3, "adding the retired token list");
      }
      if (schema_version < 4) {
        std::set<std::string, std::less<>> columns;
        sqlite3_stmt* info = writer->prepare("PRAGMA table_info(events)");
        {
          ResetGuard reset(info);
          while (writer->step(info, "reading the event columns")) {
            columns.insert(columnText(info, 1));
          }
        }
        for (const auto& [name, type] : kVersion4Columns) {
          if (!columns.contains(name)) {
            writer->exec(fmt::format("ALTER TABLE events ADD COLUMN {} {}", name, type).c_str(),
                         "adding the original batch columns");
          }
        }
        writer->exec(kSchemaVersion4, "adding the original batch table");
      }
      if (schema_version < 5) {
        // Version 5: the first bytes of each file input's file, which
        // differ between a new file with a reused inode number and the old.
        addMissingColumn(*writer, "file_offsets", "head", "BLOB NOT NULL DEFAULT x''");
      }
      if (schema_version < 6) {
        // Version 6: a key for dead letters of records that a sender may
        // send again. Older letters get NULL, which the unique index allows
        // any number of times.
        addMissingColumn(*writer, "dead_letters", "record_key", "TEXT");
        writer->exec("CREATE UNIQUE INDEX IF NOT EXISTS dead_letters_record_key ON "
                     "dead_letters(record_key)",
                     "adding the dead-letter key index");
      }
      if (schema_version < 7) {
        // Version 7: when each file input last saw its file without a
        // line. Older offsets get 0, which means not known.
        addMissingColumn(*writer, "file_offsets", "empty_at_ns", "INTEGER NOT NULL DEFAULT 0");
      }
      writer->exec(fmt::format("PRAGMA user_version={}", kSchemaVersion).c_str(),
                   "creating the schema");
      writer->exec("COMMIT", "creating the schema");
      if (schema_version > 0) {
        spdlog::info("store {}: upgraded the schema from version {} to {}", path.string(),
                     schema_version, kSchemaVersion);
      }
    } catch (...) {
      sqlite3_exec(writer->db(), "ROLLBACK", nullptr, nullptr, nullptr);
      throw;
    }
  }

  // Seqs are assigned here, never reused: the counter keeps the last one
  // even when retention has removed every event.
  std::int64_t max_seq = 0;
  sqlite3_stmt* max_stmt = writer->prepare("SELECT max(seq) FROM events");
  {
    ResetGuard reset(max_stmt);
    if (writer->step(max_stmt, "reading the last seq")) {
      max_seq = sqlite3_column_int64(max_stmt, 0);
    }
  }
  last_seq = std::max(max_seq, readCounter(*writer, kLastSeq));
  event_count = static_cast<std::uint64_t>(readCounter(*writer, kEventCount));
  event_bytes = static_cast<std::uint64_t>(readCounter(*writer, kEventBytes));
  duplicates = static_cast<std::uint64_t>(readCounter(*writer, kDuplicates));
}

void Store::Impl::startCheckpointer() {
  checkpointer = std::make_unique<Connection>(options.path, false);
  // The checkpoint syncs the WAL before copying it and the database file
  // after, under both settings, because SQLite does that in WAL mode for
  // synchronous FULL and NORMAL alike.
  checkpointer->exec(options.synchronous == "full" ? "PRAGMA synchronous=FULL"
                                                   : "PRAGMA synchronous=NORMAL",
                     "setting synchronous for checkpoints");
  sqlite3_busy_timeout(checkpointer->db(), kCheckpointBusyTimeoutMs);
  checkpoint_thread = std::thread([this] { runCheckpointer(); });
}

void Store::Impl::stopCheckpointer() {
  if (!checkpoint_thread.joinable()) {
    return;
  }
  {
    std::lock_guard lock(checkpoint_mutex);
    checkpoint_stopping = true;
  }
  checkpoint_cv.notify_all();
  checkpoint_thread.join();
  checkpointer.reset();
}

int Store::Impl::framesToCheckpoint() const {
  const int pages = wal_pages.load(std::memory_order_relaxed);
  // A WAL smaller than what the last checkpoint copied has been restarted
  // from its beginning by a writer, so every frame in it is new.
  return pages < checkpointed_frames ? pages : pages - checkpointed_frames;
}

void Store::Impl::runCheckpointer() {
  // Named for top -H and perf; Linux allows 15 characters.
  pthread_setname_np(pthread_self(), "store-checkpt");
  spdlog::info("store {}: checkpoint thread started (passive at {} WAL pages, blocking at {})",
               options.path.string(), options.checkpoint_pages, options.checkpoint_blocking_pages);
  std::unique_lock lock(checkpoint_mutex);
  while (!checkpoint_stopping) {
    checkpoint_cv.wait_for(lock, kCheckpointIdleInterval, [this] {
      return checkpoint_stopping || framesToCheckpoint() >= options.checkpoint_pages;
    });
    if (checkpoint_stopping) {
      break;
    }
    if (framesToCheckpoint() == 0) {
      continue;
    }
    // Writers wait behind a blocking checkpoint, so after one that timed out
    // because a reader stayed in the WAL, the next waits kBlockingCheckpointRetry.
    const auto now = std::chrono::steady_clock::now();
    const bool blocking =
        wal_pages.load(std::memory_order_relaxed) >= options.checkpoint_blocking_pages &&
        now >= next_blocking_checkpoint;
    lock.unlock();
    const bool done = checkpoint(blocking ? SQLITE_CHECKPOINT_RESTART : SQLITE_CHECKPOINT_PASSIVE);
    if (blocking && !done) {
      next_blocking_checkpoint = now + kBlockingCheckpointRetry;
    }
    if (done && !blocking) {
      // Commits go on during the copy and append frames that this
      // checkpoint did not see. A writer starts the WAL over only after a
      // checkpoint that left no frame, so without this second pass the WAL
      // grew to the blocking limit under steady load (measured with
      // bench/collector/store_bench.cpp). Copying the appended frames while
      // holding the write lock completes the checkpoint, so the next commit
      // reuses the WAL from its start.
      std::lock_guard write_lock(write_mutex);
      checkpoint(SQLITE_CHECKPOINT_PASSIVE);
    }
    lock.lock();
  }
  spdlog::info("store {}: checkpoint thread stopped", options.path.string());
}

bool Store::Impl::checkpoint(int mode) {
  const char* mode_name = mode == SQLITE_CHECKPOINT_RESTART ? "restart" : "passive";
  int log_frames = 0;
  int copied_frames = 0;
  int rc = sqlite3_wal_checkpoint_v2(checkpointer->db(), nullptr, mode, &log_frames,
                                     &copied_frames);
  if (rc == SQLITE_OK || rc == SQLITE_BUSY) {
    // `copied_frames` counts every frame copied so far, by this or earlier
    // checkpoints, so the next run starts where this one stopped.
    checkpointed_frames = copied_frames;
  }
  if (rc == SQLITE_OK) {
    return true;
  }
  ++checkpoint_failures;
  // NOTE: a failed or partial checkpoint loses nothing, because readers
  // find the frames in the WAL, but the WAL grows until one succeeds.
  if (checkpoint_failures == 1 || checkpoint_failures % 100 == 0) {
    spdlog::warn("store {}: {} WAL checkpoint failed ({} times so far) after copying {} of {} "
                 "frames: {}; retrying after the next commits",
                 options.path.string(), mode_name, checkpoint_failures, copied_frames, log_frames,
                 sqlite3_errmsg(checkpointer->db()));
  }
  return false;
}

std::int64_t Store::Impl::readCounter(Connection& connection, std::string_view name) const {
  sqlite3_stmt* stmt = connection.prepare("SELECT value FROM counters WHERE name = ?1");
  ResetGuard reset(stmt);
  bindText(stmt, 1, name);
  if (connection.step(stmt, "reading a counter")) {
    return sqlite3_column_int64(stmt, 0);
  }
  return 0;
}

void Store::Impl::writeCounter(std::string_view name, std::int64_t value) {
  sqlite3_stmt* stmt = writer->prepare(
      "INSERT INTO counters(name, value) VALUES(?1, ?2) "
      "ON CONFLICT(name) DO UPDATE SET value = excluded.value");
  ResetGuard reset(stmt);
  bindText(stmt, 1, name);
  sqlite3_bind_int64(stmt, 2, value);
  writer->step(stmt, "writing a counter");
}

void Store::Impl::addToCounter(std::string_view name, std::int64_t delta) {
  sqlite3_stmt* stmt = writer->prepare(
      "INSERT INTO counters(name, value) VALUES(?1, ?2) "
      "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value");
  ResetGuard reset(stmt);
  bindText(stmt, 1, name);
  sqlite3_bind_int64(stmt, 2, delta);
  writer->step(stmt, "writing a counter");
}

Store::Impl::Cursors Store::Impl::notedCursors() const {
  std::lock_guard lock(cursor_mutex);
  return pending_cursors;
}

void Store::Impl::forgetWrittenCursors(const Cursors& written) {
  std::lock_guard lock(cursor_mutex);
  for (const auto& [output, seq] : written) {
    auto it = pending_cursors.find(output);
    if (it != pending_cursors.end() && it->second <= seq) {
      pending_cursors.erase(it);
    }
  }
}

void Store::Impl::writeCursors(const Cursors& cursors) {
  if (cursors.empty()) {
    return;
  }
  sqlite3_stmt* stmt = writer->prepare(
      "INSERT INTO cursors(output, seq, updated_ms) VALUES(?1, ?2, ?3) "
      "ON CONFLICT(output) DO UPDATE SET seq = max(seq, excluded.seq), "
      "updated_ms = excluded.updated_ms");
  for (const auto& [output, seq] : cursors) {
    ResetGuard reset(stmt);
    bindText(stmt, 1, output);
    sqlite3_bind_int64(stmt, 2, seq);
    sqlite3_bind_int64(stmt, 3, nowMs());
    writer->step(stmt, "writing a cursor");
  }
}

void Store::Impl::flushCursorsLocked() {
  const Cursors cursors = notedCursors();
  if (cursors.empty()) {
    return;
  }
  writeWithoutFsync([&] {
    writer->exec("BEGIN IMMEDIATE", "writing cursors");
    try {
      writeCursors(cursors);
      writer->exec("COMMIT", "writing cursors");
    } catch (...) {
      sqlite3_exec(writer->db(), "ROLLBACK", nullptr, nullptr, nullptr);
      throw;
    }
  });
  forgetWrittenCursors(cursors);
}

void Store::Impl::writePendingSeen(std::map<std::string, SensorSeen, std::less<>>& seen) {
  sqlite3_stmt* stmt = writer->prepare(
      "UPDATE sensors SET last_seen_ms = max(last_seen_ms, ?1), records = records + ?2 "
      "WHERE sensor_id = ?3");
  for (const auto& [sensor_id, update] : seen) {
    ResetGuard reset(stmt);
    sqlite3_bind_int64(stmt, 1, update.last_seen_ms);
    sqlite3_bind_int64(stmt, 2, static_cast<std::int64_t>(update.records));
    bindText(stmt, 3, sensor_id);
    writer->step(stmt, "updating a sensor");
  }
}

void Store::Impl::flushPendingSeen() {
  std::map<std::string, SensorSeen, std::less<>> seen;
  {
    std::lock_guard lock(seen_mutex);
    seen.swap(pending_seen);
  }
  if (seen.empty()) {
    return;
  }
  std::lock_guard lock(write_mutex);
  writer->exec("BEGIN IMMEDIATE", "updating sensors");
  try {
    writePendingSeen(seen);
    writer->exec("COMMIT", "updating sensors");
  } catch (...) {
    sqlite3_exec(writer->db(), "ROLLBACK", nullptr, nullptr, nullptr);
    throw;
  }
}

void Store::Impl::applyPendingSeen(SensorInfo& info) const {
  std::lock_guard lock(seen_mutex);
  auto it = pending_seen.find(info.sensor_id);
  if (it != pending_seen.end()) {
    info.last_seen_ms = std::max(info.last_seen_ms, it->second.last_seen_ms);
    info.records += it->second.records;
  }
}

bool Store::Impl::writeDeadLetter(const DeadLetter& letter) {
  sqlite3_stmt* stmt = writer->prepare(
      "INSERT OR IGNORE INTO dead_letters(output, event_id, reason, payload, at_ms, record_key) "
      "VALUES(?1, ?2, ?3, ?4, ?5, ?6)");
  ResetGuard reset(stmt);
  bindText(stmt, 1, letter.output);
  bindText(stmt, 2, letter.event_id);
  bindText(stmt, 3, letter.reason);
  // A blob, because raw input that failed to decode may not be UTF-8.
  bindBlob(stmt, 4, letter.payload);
  sqlite3_bind_int64(stmt, 5, letter.at_ms != 0 ? letter.at_ms : nowMs());
  if (letter.record_key.empty()) {
    sqlite3_bind_null(stmt, 6);
  } else {
    bindText(stmt, 6, letter.record_key);
  }
  writer->step(stmt, "adding a dead letter");
  return sqlite3_changes(writer->db()) > 0;
}

template <typename Write>
void Store::Impl::writeWithoutFsync(Write&& write) {
  // In WAL mode, synchronous=NORMAL commits without an fsync, and the next
  // commit under FULL fsyncs the WAL with this commit's frames in it.
  if (options.synchronous != "full") {
    write();
    return;
  }
  sqlite3_stmt* relax = writer->prepare("PRAGMA synchronous=NORMAL");
  sqlite3_stmt* restore = writer->prepare("PRAGMA synchronous=FULL");
  writer->step(relax, "setting synchronous");
  try {
    write();
  } catch (...) {
    sqlite3_reset(restore);
    sqlite3_step(restore);
    throw;
  }
  sqlite3_reset(restore);
  writer->step(restore, "setting synchronous");
}

bool Store::Impl::commitGroup(std::vector<InsertRequest*>& group) {
  std::map<std::string, SensorSeen, std::less<>> seen;
  {
    std::lock_guard lock(seen_mutex);
    seen.swap(pending_seen);
  }

  std::lock_guard lock(write_mutex);
  const Cursors cursors = notedCursors();
  // The texts of the batches kept by this commit, cached once it succeeds.
  std::vector<std::pair<std::int64_t, std::shared_ptr<const std::string>>> texts;
  std::int64_t seq = last_seq.load();
  std::uint64_t stored = 0;
  std::uint64_t bytes = 0;
  std::uint64_t duplicate_count = 0;
  std::int64_t received_ms = nowMs();
  // Under synchronous=full the commit itself skips the fsync, which the
  // caller then runs outside the write lock (syncWal).
  const bool sync_after = options.synchronous == "full";
  try {
    if (sync_after) {
      sqlite3_stmt* relax = writer->prepare("PRAGMA synchronous=NORMAL");
      writer->step(relax, "setting synchronous");
    }
    writer->exec("BEGIN IMMEDIATE", "starting an insert");
    sqlite3_stmt* insert = writer->prepare(
        "INSERT OR IGNORE INTO events(seq, event_id, timestamp_ms, received_ms, sensor_id, "
        "source_ip, size, document, original_batch, original_offset, original_length, "
        "original_at) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)");
    for (InsertRequest* request : group) {
      request->summary = {};
      for (const DeadLetter& letter : request->dead_letters) {
        if (writeDeadLetter(letter)) {
          ++request->summary.dead_letters;
        } else {
          ++request->summary.repeated_dead_letters;
        }
      }
      // The batch's key is the seq of its first stored event. The events of
      // one request get consecutive seqs, which retention relies on.
      const std::int64_t batch_seq = seq + 1;
      for (const NewEvent& event : request->events) {
        const bool by_reference = event.original_at != std::string::npos;
        const std::uint64_t size =
            event.document.size() +
            (by_reference ? kOriginalMemberBytes + event.original_length : 0);
        ResetGuard reset(insert);
        sqlite3_bind_int64(insert, 1, seq + 1);
        bindText(insert, 2, event.event_id);
        sqlite3_bind_int64(insert, 3, event.timestamp_ms);
        sqlite3_bind_int64(insert, 4, received_ms);
        bindText(insert, 5, event.sensor_id);
        bindText(insert, 6, event.source_ip);
        sqlite3_bind_int64(insert, 7, static_cast<std::int64_t>(size));
        bindText(insert, 8, event.document);
        if (by_reference) {
          sqlite3_bind_int64(insert, 9, batch_seq);
          sqlite3_bind_int64(insert, 10, static_cast<std::int64_t>(event.original_offset));
          sqlite3_bind_int64(insert, 11, static_cast<std::int64_t>(event.original_length));
          sqlite3_bind_int64(insert, 12, static_cast<std::int64_t>(event.original_at));
        } else {
          sqlite3_bind_null(insert, 9);
          sqlite3_bind_int64(insert, 10, 0);
          sqlite3_bind_int64(insert, 11, 0);
          sqlite3_bind_int64(insert, 12, 0);
        }
        writer->step(insert, "inserting an event");
        if (sqlite3_changes(writer->db()) == 1) {
          ++seq;
          ++stored;
          bytes += size;
          ++request->summary.stored;
        } else {
          ++duplicate_count;
          ++request->summary.duplicates;
        }
      }
      if (request->batch != nullptr && request->summary.stored > 0) {
        sqlite3_stmt* keep = writer->prepare(
            "INSERT INTO batches(first_seq, inflated_size, body) VALUES(?1, ?2, ?3)");
        ResetGuard reset(keep);
        sqlite3_bind_int64(keep, 1, batch_seq);
        sqlite3_bind_int64(keep, 2, static_cast<std::int64_t>(request->batch->inflated_size));
        bindBlob(keep, 3, request->batch->gzip);
        writer->step(keep, "storing a batch");
        if (request->batch->text != nullptr &&
            request->batch->text->size() == request->batch->inflated_size) {
          texts.emplace_back(batch_seq, request->batch->text);
        }
      }
    }
    if (stored > 0) {
      writeCounter(kLastSeq, seq);
      addToCounter(kEventCount, static_cast<std::int64_t>(stored));
      addToCounter(kEventBytes, static_cast<std::int64_t>(bytes));
    }
    if (duplicate_count > 0) {
      addToCounter(kDuplicates, static_cast<std::int64_t>(duplicate_count));
    }
    // The group's own notes are written with it but, unlike the pending
    // ones, not kept when the commit fails.
    std::map<std::string, SensorSeen, std::less<>> written = seen;
    for (InsertRequest* request : group) {
      if (request->note != nullptr) {
        SensorSeen& update = written[request->note->sensor_id];
        update.last_seen_ms = std::max(update.last_seen_ms, request->note->at_ms);
        update.records += request->note->records;
      }
    }
    writePendingSeen(written);
    writeCursors(cursors);
    for (InsertRequest* request : group) {
      if (request->file_offset != nullptr) {
        writeFileOffset(*request->file_offset);
      }
    }
    writer->exec("COMMIT", "committing an insert");
    forgetWrittenCursors(cursors);
    if (sync_after) {
      sqlite3_stmt* restore = writer->prepare("PRAGMA synchronous=FULL");
      writer->step(restore, "setting synchronous");
    }
  } catch (...) {
    sqlite3_exec(writer->db(), "ROLLBACK", nullptr, nullptr, nullptr);
    if (sync_after) {
      sqlite3_exec(writer->db(), "PRAGMA synchronous=FULL", nullptr, nullptr, nullptr);
    }
    // The sensor updates were not written: keep them for the next commit.
    // The cursors are still noted.
    std::lock_guard seen_lock(seen_mutex);
    for (const auto& [sensor_id, update] : seen) {
      auto& pending = pending_seen[sensor_id];
      pending.last_seen_ms = std::max(pending.last_seen_ms, update.last_seen_ms);
      pending.records += update.records;
    }
    std::exception_ptr error = std::current_exception();
    for (InsertRequest* request : group) {
      request->summary = {};
      request->error = error;
    }
    return false;
  }
  for (auto& [first_seq, text] : texts) {
    cacheBatch(first_seq, std::move(text));
  }
  last_seq = seq;
  event_count += stored;
  event_bytes += bytes;
  duplicates += duplicate_count;
  return sync_after;
}

void Store::Impl::syncWal(std::vector<InsertRequest*>& group) {
  std::string failure;
  {
    std::lock_guard lock(wal_fd_mutex);
    if (wal_fd < 0) {
      // The WAL exists while the writer connection is open, because SQLite
      // deletes it only when the last connection closes.
      const char* wal_path = sqlite3_filename_wal(sqlite3_db_filename(writer->db(), "main"));
      wal_fd = ::open(wal_path, O_RDONLY | O_CLOEXEC);
      if (wal_fd < 0) {
        failure = fmt::format("opening the WAL {} failed: {}", wal_path, std::strerror(errno));
      }
    }
  }
  // fdatasync covers every write to the file before it started, whichever
  // descriptor made them, so this makes the group's commit durable, and
  // any commit before it.
  if (failure.empty() && ::fdatasync(wal_fd) != 0) {
    failure = fmt::format("syncing the WAL failed: {}", std::strerror(errno));
  }
  if (failure.empty()) {
    return;
  }
  // The events are committed and may already be read by outputs, but they
  // are not durable, so the senders get a retryable error and send them
  // again. The store counts the resent events as duplicates.
  spdlog::error("store {}: {}; failing {} inserts with a retryable error",
                options.path.string(), failure, group.size());
  std::exception_ptr error = std::make_exception_ptr(StoreError(
      fmt::format("store {}: {}; check the disk", options.path.string(), failure), SQLITE_IOERR,
      true));
  for (InsertRequest* request : group) {
    request->summary = {};
    request->error = error;
  }
}

Store::Store(StoreOptions options) : impl_(std::make_unique<Impl>()) {
  impl_->options = std::move(options);
  impl_->open();
  impl_->startCheckpointer();
  spdlog::info("store {}: opened, {} events ({} document bytes), last seq {}, synchronous={}",
               impl_->options.path.string(), impl_->event_count.load(),
               impl_->event_bytes.load(), impl_->last_seq.load(), impl_->options.synchronous);
}

Store::~Store() {
  try {
    impl_->flushPendingSeen();
  } catch (const std::exception& e) {
    spdlog::error("store {}: cannot write the last sensor updates at close: {}",
                  impl_->options.path.string(), e.what());
  }
  try {
    flushCursors();
  } catch (const std::exception& e) {
    spdlog::error("store {}: cannot write the last output cursors at close: {}",
                  impl_->options.path.string(), e.what());
  }
  impl_->stopCheckpointer();
  if (impl_->wal_fd >= 0) {
    ::close(impl_->wal_fd);
  }
  impl_->idle_readers.clear();
  impl_->writer.reset();
  spdlog::info("store {}: closed", impl_->options.path.string());
}

std::shared_ptr<const std::string> Store::Impl::originalBatchText(Connection& reader,
                                                                  std::int64_t first_seq,
                                                                  std::int64_t seq,
                                                                  std::string& damage) const {
  {
    std::lock_guard lock(batch_cache_mutex);
    for (const CachedBatch& entry : batch_cache) {
      if (entry.first_seq == first_seq) {
        return entry.text;
      }
    }
  }
  sqlite3_stmt* read =
      reader.prepare("SELECT inflated_size, body FROM batches WHERE first_seq = ?1");
  ResetGuard reset(read);
  sqlite3_bind_int64(read, 1, first_seq);
  const std::string where = options.path.string();
  if (!reader.step(read, "reading a batch")) {
    damage = fmt::format("store {}: event {} refers to batch {}, which is missing; the store is "
                         "damaged, restore it from a backup",
                         where, seq, first_seq);
    return nullptr;
  }
  auto inflated_size = static_cast<std::uint64_t>(sqlite3_column_int64(read, 0));
  const auto* body = static_cast<const char*>(sqlite3_column_blob(read, 1));
  std::string_view gzip(body ? body : "", static_cast<std::size_t>(sqlite3_column_bytes(read, 1)));
  std::optional<std::string> text;
  try {
    text = gunzip(gzip, inflated_size);
  } catch (const std::invalid_argument&) {
  }
  if (!text || text->size() != inflated_size) {
    damage = fmt::format("store {}: batch {} (of event {}) does not inflate to its {} bytes; the "
                         "store is damaged, restore it from a backup",
                         where, first_seq, seq, inflated_size);
    return nullptr;
  }
  auto shared = std::make_shared<const std::string>(std::move(*text));
  cacheBatch(first_seq, shared);
  return shared;
}

void Store::Impl::cacheBatch(std::int64_t first_seq, std::shared_ptr<const std::string> text) const {
  // A batch larger than the cache's budget is not cached, so it stays in
  // memory only while one read uses it.
  if (text->capacity() > kCachedBatchBytes) {
    return;
  }
  std::lock_guard lock(batch_cache_mutex);
  batch_cache.insert(batch_cache.begin(), CachedBatch{first_seq, std::move(text), {}});
  std::size_t bytes = 0;
  std::size_t keep = 0;
  while (keep < batch_cache.size() && keep < kCachedBatches &&
         (keep == 0 || bytes + batch_cache[keep].text->capacity() <= kCachedBatchBytes)) {
    bytes += batch_cache[keep].text->capacity();
    ++keep;
  }
  batch_cache.resize(keep);
}

void Store::Impl::readDocument(Connection& reader, sqlite3_stmt* stmt, int document_column,
                               int column, StoredEvent& event, CachedBatch& batch,
                               OriginalForm form) const {
  std::string& document = event.document;
  std::string& damage = event.damage;
  const std::int64_t seq = event.seq;
  damage.clear();
  event.original_at = std::string::npos;
  event.original = {};
  event.original_text.reset();
  if (sqlite3_column_type(stmt, column) == SQLITE_NULL) {
    assignColumnText(stmt, document_column, document);
    return;
  }
  const std::int64_t first_seq = sqlite3_column_int64(stmt, column);
  auto offset = static_cast<std::uint64_t>(sqlite3_column_int64(stmt, column + 1));
  auto length = static_cast<std::uint64_t>(sqlite3_column_int64(stmt, column + 2));
  auto at = static_cast<std::size_t>(sqlite3_column_int64(stmt, column + 3));
  // The batch is read first, on another statement, and the document after
  // it, so nothing runs on the connection while the document's bytes are
  // in use.
  // A batch that failed for an earlier event of this read is not read again.
  if (batch.first_seq != first_seq) {
    batch.damage.clear();
    batch.text = originalBatchText(reader, first_seq, seq, batch.damage);
    batch.first_seq = first_seq;
  }
  const auto* stored = static_cast<const char*>(sqlite3_column_blob(stmt, document_column));
  std::string_view stripped(stored ? stored : "",
                            static_cast<std::size_t>(sqlite3_column_bytes(stmt, document_column)));
  if (!batch.text) {
    damage = batch.damage;
    document.assign(stripped);
    return;
  }
  const std::string& text = *batch.text;
  if (offset > text.size() || length > text.size() - offset || at > stripped.size()) {
    damage = fmt::format("store {}: event {} points outside its batch {}; the store is damaged, "
                         "restore it from a backup",
                         options.path.string(), seq, first_seq);
    document.assign(stripped);
    return;
  }
  std::string_view original = std::string_view(text).substr(offset, length);
  if (form == OriginalForm::kApart) {
    document.assign(stripped);
    event.original_at = at;
    event.original = original;
    event.original_text = batch.text;
    return;
  }
  document.clear();
  spliceOriginal(document, stripped, at, original);
}

InsertSummary Store::insert(std::span<const NewEvent> events) {
  return insert(events, {});
}

InsertSummary Store::insert(std::span<const NewEvent> events,
                            std::span<const DeadLetter> dead_letters, const SensorNote* note,
                            const OriginalBatch* batch, const FileOffsetNote* file_offset) {
  if (events.empty() && dead_letters.empty() && note == nullptr && file_offset == nullptr) {
    return {};
  }
  // Checked before the request joins a group, so that it fails alone.
  if (batch == nullptr) {
    for (const NewEvent& event : events) {
      if (event.original_at != std::string::npos) {
        throw std::invalid_argument(
            "invalid insert: an event has original_at set but no batch was given");
      }
    }
  }
  Impl& impl = *impl_;
  Impl::InsertRequest request;
  request.events = events;
  request.dead_letters = dead_letters;
  request.note = note;
  request.batch = batch;
  request.file_offset = file_offset;
  std::unique_lock lock(impl.group_mutex);
  impl.group_pending.push_back(&request);
  while (!request.done) {
    // With nothing pending, this request is in a group whose leader is
    // still syncing the WAL.
    if (impl.group_leader || impl.group_pending.empty()) {
      impl.group_cv.wait(lock);
      continue;
    }
    impl.group_leader = true;
    std::vector<Impl::InsertRequest*> group;
    group.swap(impl.group_pending);
    lock.unlock();
    const bool needs_sync = impl.commitGroup(group);
    lock.lock();
    // The next group may commit while this one's WAL sync runs.
    impl.group_leader = false;
    impl.group_cv.notify_all();
    if (needs_sync) {
      lock.unlock();
      impl.syncWal(group);
      lock.lock();
    }
    for (Impl::InsertRequest* member : group) {
      member->done = true;
    }
    impl.group_cv.notify_all();
  }
  if (request.error) {
    std::rethrow_exception(request.error);
  }
  return request.summary;
}

std::vector<StoredEvent> Store::readAfter(std::int64_t after_seq, std::size_t max_count,
                                          std::size_t max_bytes) const {
  std::vector<StoredEvent> events;
  readAfter(after_seq, max_count, max_bytes, events);
  return events;
}

void Store::readAfter(std::int64_t after_seq, std::size_t max_count, std::size_t max_bytes,
                      std::vector<StoredEvent>& events, OriginalForm form) const {
  std::size_t count = 0;
  if (max_count == 0) {
    events.clear();
    return;
  }
  Impl::Reader reader(*impl_);
  sqlite3_stmt* stmt = reader->prepare(
      "SELECT seq, event_id, timestamp_ms, sensor_id, size, document, original_batch, "
      "original_offset, original_length, original_at FROM events "
      "WHERE seq > ?1 ORDER BY seq LIMIT ?2");
  ResetGuard reset(stmt);
  sqlite3_bind_int64(stmt, 1, after_seq);
  sqlite3_bind_int64(stmt, 2, static_cast<std::int64_t>(std::min<std::size_t>(max_count, INT32_MAX)));
  std::size_t bytes = 0;
  Impl::CachedBatch batch;
  while (reader->step(stmt, "reading events")) {
    // The size column is read before the document, so the event that
    // would overflow the byte budget is mostly never copied. It counts an
    // original kept in a batch unescaped, so the document may be larger,
    // which the check after the read catches.
    auto size = static_cast<std::size_t>(sqlite3_column_int64(stmt, 4));
    if (count > 0 && bytes + size > max_bytes) {
      break;
    }
    if (count == events.size()) {
      events.emplace_back();
    }
    StoredEvent& event = events[count++];
    event.seq = sqlite3_column_int64(stmt, 0);
    assignColumnText(stmt, 1, event.event_id);
    event.timestamp_ms = sqlite3_column_int64(stmt, 2);
    assignColumnText(stmt, 3, event.sensor_id);
    impl_->readDocument(*reader, stmt, 5, 6, event, batch, form);
    const std::size_t document_bytes = wholeDocumentBytes(event);
    if (count > 1 && bytes + document_bytes > max_bytes) {
      --count;
      break;
    }
    bytes += document_bytes;
  }
  // Entries past `count` are destroyed, so only the entries in use keep
  // their capacity for the next call.
  events.resize(count);
}

std::int64_t Store::lastSeq() const { return impl_->last_seq.load(); }

std::int64_t Store::firstSeqStoredFrom(std::int64_t stored_ms) const {
  Impl::Reader reader(*impl_);
  sqlite3_stmt* stmt = reader->prepare(
      "SELECT seq, received_ms FROM events WHERE seq >= ?1 ORDER BY seq LIMIT 1");
  ResetGuard reset(stmt);

  // Returns the seq and store time of the first stored event at or after `from`.
  auto firstFrom = [&](std::int64_t from) -> std::optional<std::pair<std::int64_t, std::int64_t>> {
    sqlite3_reset(stmt);
    sqlite3_bind_int64(stmt, 1, from);
    if (!reader->step(stmt, "finding an event by its store time")) {
      return std::nullopt;
    }
    return std::pair{sqlite3_column_int64(stmt, 0), sqlite3_column_int64(stmt, 1)};
  };

  // Invariant: every event before `low` was stored before stored_ms, and
  // the first event stored at or after it, if any, has a seq up to `high`.
  std::int64_t low = 0;
  std::int64_t high = lastSeq();
  std::int64_t found = 0;
  while (low <= high) {
    std::int64_t middle = low + (high - low) / 2;
    auto event = firstFrom(middle);
    if (!event) {
      high = middle - 1;
    } else if (event->second >= stored_ms) {
      found = event->first;
      high = middle - 1;
    } else {
      low = event->first + 1;
    }
  }

  return found;
}

std::optional<StoredEvent> Store::findEvent(std::string_view event_id) const {
  Impl::Reader reader(*impl_);
  sqlite3_stmt* stmt = reader->prepare(
      "SELECT seq, event_id, timestamp_ms, sensor_id, document, original_batch, original_offset, "
      "original_length, original_at FROM events WHERE event_id = ?1");
  ResetGuard reset(stmt);
  bindText(stmt, 1, event_id);
  if (!reader->step(stmt, "reading an event by id")) {
    return std::nullopt;
  }
  StoredEvent event;
  event.seq = sqlite3_column_int64(stmt, 0);
  event.event_id = columnText(stmt, 1);
  event.timestamp_ms = sqlite3_column_int64(stmt, 2);
  event.sensor_id = columnText(stmt, 3);
  Impl::CachedBatch batch;
  impl_->readDocument(*reader, stmt, 4, 5, event, batch);
  return event;
}

void Store::registerOutput(std::string_view output) {
  std::lock_guard lock(impl_->write_mutex);
  Connection& writer = *impl_->writer;
  sqlite3_stmt* stmt = writer.prepare(
      "INSERT OR IGNORE INTO cursors(output, seq, updated_ms) VALUES(?1, 0, ?2)");
  ResetGuard reset(stmt);
  bindText(stmt, 1, output);
  sqlite3_bind_int64(stmt, 2, nowMs());
  writer.step(stmt, "registering an output");
}

std::int64_t Store::cursor(std::string_view output) const {
  std::int64_t noted = 0;
  {
    std::lock_guard lock(impl_->cursor_mutex);
    auto it = impl_->pending_cursors.find(output);
    if (it != impl_->pending_cursors.end()) {
      noted = it->second;
    }
  }
  Impl::Reader reader(*impl_);
  sqlite3_stmt* stmt = reader->prepare("SELECT seq FROM cursors WHERE output = ?1");
  ResetGuard reset(stmt);
  bindText(stmt, 1, output);
  if (reader->step(stmt, "reading a cursor")) {
    return std::max<std::int64_t>(noted, sqlite3_column_int64(stmt, 0));
  }
  return noted;
}

void Store::setCursor(std::string_view output, std::int64_t seq) {
  std::lock_guard lock(impl_->write_mutex);
  {
    // This write sets the cursor, so an older note must not move it later.
    std::lock_guard cursor_lock(impl_->cursor_mutex);
    auto it = impl_->pending_cursors.find(output);
    if (it != impl_->pending_cursors.end()) {
      impl_->pending_cursors.erase(it);
    }
  }
  Connection& writer = *impl_->writer;
  sqlite3_stmt* stmt = writer.prepare(
      "INSERT INTO cursors(output, seq, updated_ms) VALUES(?1, ?2, ?3) "
      "ON CONFLICT(output) DO UPDATE SET seq = excluded.seq, updated_ms = excluded.updated_ms");
  ResetGuard reset(stmt);
  bindText(stmt, 1, output);
  sqlite3_bind_int64(stmt, 2, seq);
  sqlite3_bind_int64(stmt, 3, nowMs());
  impl_->writeWithoutFsync([&] { writer.step(stmt, "writing a cursor"); });
}

void Store::noteCursor(std::string_view output, std::int64_t seq) {
  {
    std::lock_guard lock(impl_->cursor_mutex);
    auto [it, added] = impl_->pending_cursors.try_emplace(std::string(output), seq);
    it->second = std::max(it->second, seq);
  }
  std::unique_lock lock(impl_->write_mutex, std::try_to_lock);
  if (lock.owns_lock()) {
    impl_->flushCursorsLocked();
  }
}

void Store::flushCursors() {
  {
    std::lock_guard lock(impl_->cursor_mutex);
    if (impl_->pending_cursors.empty()) {
      return;
    }
  }
  std::lock_guard lock(impl_->write_mutex);
  impl_->flushCursorsLocked();
}

std::vector<std::string> Store::outputs() const {
  Impl::Reader reader(*impl_);
  sqlite3_stmt* stmt = reader->prepare("SELECT output FROM cursors ORDER BY output");
  ResetGuard reset(stmt);
  std::vector<std::string> names;
  while (reader->step(stmt, "listing outputs")) {
    names.push_back(columnText(stmt, 0));
  }
  return names;
}

void Store::addDeadLetter(const DeadLetter& letter) {
  addDeadLetters(std::span<const DeadLetter>(&letter, 1));
}

void Store::addDeadLetters(std::span<const DeadLetter> letters) {
  if (letters.empty()) {
    return;
  }
  std::lock_guard lock(impl_->write_mutex);
  Connection& writer = *impl_->writer;
  writer.exec("BEGIN IMMEDIATE", "adding dead letters");
  try {
    for (const DeadLetter& letter : letters) {
      impl_->writeDeadLetter(letter);
    }
    writer.exec("COMMIT", "adding dead letters");
  } catch (...) {
    sqlite3_exec(writer.db(), "ROLLBACK", nullptr, nullptr, nullptr);
    throw;
  }
}

std::vector<DeadLetter> Store::deadLetters(std::size_t limit) const {
  Impl::Reader reader(*impl_);
  sqlite3_stmt* stmt = reader->prepare(
      "SELECT id, output, event_id, reason, payload, at_ms FROM dead_letters "
      "ORDER BY id DESC LIMIT ?1");
  ResetGuard reset(stmt);
  sqlite3_bind_int64(stmt, 1, static_cast<std::int64_t>(std::min<std::size_t>(limit, INT32_MAX)));
  std::vector<DeadLetter> letters;
  while (reader->step(stmt, "reading dead letters")) {
    DeadLetter& letter = letters.emplace_back();
    letter.id = sqlite3_column_int64(stmt, 0);
    letter.output = columnText(stmt, 1);
    letter.event_id = columnText(stmt, 2);
    letter.reason = columnText(stmt, 3);
    letter.payload = columnText(stmt, 4);
    letter.at_ms = sqlite3_column_int64(stmt, 5);
  }
  return letters;
}

std::uint64_t Store::deadLetterCount() const {
  Impl::Reader reader(*impl_);
  sqlite3_stmt* stmt = reader->prepare("SELECT count(*) FROM dead_letters");
  ResetGuard reset(stmt);
  reader->step(stmt, "counting dead letters");
  return static_cast<std::uint64_t>(sqlite3_column_int64(stmt, 0));
}

// Removes one chunk of events past the limits in one transaction. Returns
// false when nothing was past them.
bool Store::Impl::removeChunk(std::int64_t now_ms, RetentionSummary& summary) {
  std::lock_guard lock(write_mutex);
  const std::int64_t age_cutoff =
      options.retention_max_age_ms > 0 ? now_ms - options.retention_max_age_ms : INT64_MIN;
  std::uint64_t over_bytes = 0;
  if (options.retention_max_bytes > 0 && event_bytes.load() > options.retention_max_bytes) {
    over_bytes = event_bytes.load() - options.retention_max_bytes;
  }
  if (age_cutoff == INT64_MIN && over_bytes == 0) {
    return false;
  }

  // Noted cursors are written first, so that events an output has finished
  // are not counted as removed undelivered.
  const Cursors cursors = notedCursors();
  Cursors noted_during_pass;
  writer->exec("BEGIN IMMEDIATE", "starting retention");
  try {
    writeCursors(cursors);
    // Oldest first: walk from the lowest seq and stop at the first event
    // that is within both limits.
    std::vector<std::int64_t> removed;
    std::uint64_t removed_bytes = 0;
    {
      sqlite3_stmt* scan =
          writer->prepare("SELECT seq, received_ms, size FROM events ORDER BY seq LIMIT ?1");
      ResetGuard reset(scan);
      sqlite3_bind_int64(scan, 1, kRetentionChunk);
      while (writer->step(scan, "scanning for retention")) {
        std::int64_t received = sqlite3_column_int64(scan, 1);
        auto size = static_cast<std::uint64_t>(sqlite3_column_int64(scan, 2));
        bool too_old = received < age_cutoff;
        bool too_big = removed_bytes < over_bytes;
        if (!too_old && !too_big) {
          break;
        }
        removed.push_back(sqlite3_column_int64(scan, 0));
        removed_bytes += size;
      }
    }
    if (removed.empty()) {
      writer->exec("COMMIT", "ending retention");
      forgetWrittenCursors(cursors);
      return false;
    }
    const std::int64_t last_removed = removed.back();
    {
      sqlite3_stmt* remove = writer->prepare("DELETE FROM events WHERE seq <= ?1");
      ResetGuard reset(remove);
      sqlite3_bind_int64(remove, 1, last_removed);
      writer->step(remove, "removing events");
    }
    {
      // A batch's events have consecutive seqs, so only the batch of the
      // first remaining event can still be in use among those that start
      // at or before the last removed seq.
      sqlite3_stmt* remove = writer->prepare(
          "DELETE FROM batches WHERE first_seq <= ?1 AND first_seq IS NOT "
          "(SELECT original_batch FROM events WHERE seq > ?1 ORDER BY seq LIMIT 1)");
      ResetGuard reset(remove);
      sqlite3_bind_int64(remove, 1, last_removed);
      writer->step(remove, "removing batches");
    }

    // Count, per output, the removed events after its cursor, then move the
    // cursors past the gap so the queue depth stays true.
    // Removed events that an output has in flight are not counted yet: the
    // output finishes them from memory, and endInFlight() counts those it
    // leaves unfinished.
    std::vector<std::pair<std::string, std::uint64_t>> undelivered;
    std::vector<std::pair<std::string, std::vector<std::int64_t>>> removed_in_flight;
    // Held from the count through the COMMIT and the hand-over below: a
    // send that ended in between would leave these removals uncounted, and
    // one that began would read, from a snapshot before the COMMIT, events
    // counted here as undelivered. endInFlight() takes the write lock only
    // after releasing this one, so the order write, then in-flight, is safe.
    std::unique_lock flight_lock(in_flight_mutex);
    {
      // An output that finished a send since this pass began noted its
      // cursor before it ended the send, so that note is pending now.
      // Written here, it keeps the events of that send from being counted.
      noted_during_pass = notedCursors();
      writeCursors(noted_during_pass);
      sqlite3_stmt* cursors = writer->prepare("SELECT output, seq FROM cursors");
      ResetGuard reset(cursors);
      while (writer->step(cursors, "reading cursors")) {
        std::string output = columnText(cursors, 0);
        std::int64_t cursor = sqlite3_column_int64(cursors, 1);
        auto first_after = std::upper_bound(removed.begin(), removed.end(), cursor);
        auto flight = in_flight.find(output);
        std::vector<std::int64_t> removed_sends;
        if (flight != in_flight.end()) {
          for (auto it = first_after; it != removed.end(); ++it) {
            if (*it >= flight->second.first && *it <= flight->second.last) {
              removed_sends.push_back(*it);
            }
          }
        }
        auto count = static_cast<std::uint64_t>(removed.end() - first_after) - removed_sends.size();
        if (count > 0) {
          undelivered.emplace_back(output, count);
        }
        if (!removed_sends.empty()) {
          removed_in_flight.emplace_back(std::move(output), std::move(removed_sends));
        }
      }
    }
    {
      sqlite3_stmt* advance =
          writer->prepare("UPDATE cursors SET seq = ?1, updated_ms = ?2 WHERE seq < ?1");
      ResetGuard reset(advance);
      sqlite3_bind_int64(advance, 1, last_removed);
      sqlite3_bind_int64(advance, 2, nowMs());
      writer->step(advance, "advancing cursors");
    }
    for (const auto& [output, count] : undelivered) {
      addToCounter(std::string(kUndeliveredPrefix) + output, static_cast<std::int64_t>(count));
    }
    addToCounter(kRetentionRemoved, static_cast<std::int64_t>(removed.size()));
    addToCounter(kEventCount, -static_cast<std::int64_t>(removed.size()));
    addToCounter(kEventBytes, -static_cast<std::int64_t>(removed_bytes));
    writer->exec("COMMIT", "committing retention");
    forgetWrittenCursors(noted_during_pass);

    for (auto& [output, seqs] : removed_in_flight) {
      auto flight = in_flight.find(output);
      if (flight != in_flight.end()) {
        flight->second.removed.insert(flight->second.removed.end(), seqs.begin(), seqs.end());
      }
    }
    flight_lock.unlock();
    event_count -= removed.size();
    event_bytes -= removed_bytes;
    summary.removed += removed.size();
    // A named pair, not a structured binding, because clang 14 cannot
    // capture a structured binding in a lambda.
    for (const auto& output_count : undelivered) {
      auto it = std::find_if(summary.removed_undelivered.begin(), summary.removed_undelivered.end(),
                             [&](const auto& entry) { return entry.first == output_count.first; });
      if (it == summary.removed_undelivered.end()) {
        summary.removed_undelivered.emplace_back(output_count.first, output_count.second);
      } else {
        it->second += output_count.second;
      }
    }
    return removed.size() == static_cast<std::size_t>(kRetentionChunk) ||
           removed_bytes < over_bytes;
  } catch (...) {
    sqlite3_exec(writer->db(), "ROLLBACK", nullptr, nullptr, nullptr);
    throw;
  }
}

RetentionSummary Store::enforceRetention(std::int64_t now_ms) {
  RetentionSummary summary;
  while (impl_->removeChunk(now_ms, summary)) {
  }
  {
    // Counted by endInFlight() since the last pass, and already stored.
    std::lock_guard flight_lock(impl_->in_flight_mutex);
    for (const auto& [output, count] : impl_->late_undelivered) {
      summary.late_undelivered.emplace_back(output, count);
    }
    impl_->late_undelivered.clear();
  }
  if (impl_->options.retention_max_age_ms > 0) {
    std::lock_guard lock(impl_->write_mutex);
    Connection& writer = *impl_->writer;
    sqlite3_stmt* stmt = writer.prepare("DELETE FROM dead_letters WHERE at_ms < ?1");
    ResetGuard reset(stmt);
    sqlite3_bind_int64(stmt, 1, now_ms - impl_->options.retention_max_age_ms);
    writer.step(stmt, "removing old dead letters");
  }
  if (impl_->options.retention_max_bytes > 0) {
    summary.dead_letters_removed =
        impl_->removeDeadLettersOver(impl_->options.retention_max_bytes / kDeadLetterShare);
  }
  return summary;
}

std::uint64_t Store::Impl::removeDeadLettersOver(std::uint64_t limit) {
  std::lock_guard lock(write_mutex);
  // length() of a blob does not read its pages: summing 1,000 blobs of
  // 1 MiB took 43 ms, against 730 ms for a query that read them.
  sqlite3_stmt* total =
      writer->prepare("SELECT coalesce(sum(length(payload)), 0) FROM dead_letters");
  std::uint64_t bytes = 0;
  {
    ResetGuard reset(total);
    writer->step(total, "measuring the dead letters");
    bytes = static_cast<std::uint64_t>(sqlite3_column_int64(total, 0));
  }
  if (bytes <= limit) {
    return 0;
  }

  // The newest id whose removal, with every older letter, brings the rest
  // under the limit.
  sqlite3_stmt* scan = writer->prepare("SELECT id, length(payload) FROM dead_letters ORDER BY id");
  std::int64_t last_id = 0;
  std::uint64_t count = 0;
  {
    ResetGuard reset(scan);
    while (bytes > limit && writer->step(scan, "scanning the dead letters")) {
      last_id = sqlite3_column_int64(scan, 0);
      bytes -= static_cast<std::uint64_t>(sqlite3_column_int64(scan, 1));
      ++count;
    }
  }

  // The count shares the removal's transaction, so its total survives a
  // restart as the removed events' does.
  writer->exec("BEGIN IMMEDIATE", "removing dead letters");
  try {
    sqlite3_stmt* remove = writer->prepare("DELETE FROM dead_letters WHERE id <= ?1");
    {
      ResetGuard reset(remove);
      sqlite3_bind_int64(remove, 1, last_id);
      writer->step(remove, "removing dead letters past their share of the size limit");
    }
    addToCounter(kDeadLettersRemoved, static_cast<std::int64_t>(count));
    writer->exec("COMMIT", "removing dead letters");
  } catch (...) {
    sqlite3_exec(writer->db(), "ROLLBACK", nullptr, nullptr, nullptr);
    throw;
  }
  return count;
}

void Store::beginInFlight(std::string_view output, std::int64_t after_seq) {
  std::lock_guard flight_lock(impl_->in_flight_mutex);
  Impl::InFlight& flight = impl_->in_flight[std::string(output)];
  flight.first = after_seq + 1;
  flight.last = INT64_MAX;
  flight.removed.clear();
}

void Store::endInFlight(std::string_view output, std::span<const std::int64_t> finished) {
  std::uint64_t lost = 0;
  {
    std::lock_guard flight_lock(impl_->in_flight_mutex);
    auto flight = impl_->in_flight.find(output);
    if (flight == impl_->in_flight.end()) {
      return;
    }
    std::vector<std::int64_t> removed = std::move(flight->second.removed);
    impl_->in_flight.erase(flight);
    for (std::int64_t seq : removed) {
      lost += std::binary_search(finished.begin(), finished.end(), seq) ? 0 : 1;
    }
    if (lost == 0) {
      return;
    }
    impl_->late_undelivered[std::string(output)] += lost;
  }
  spdlog::warn("output {}: retention removed {} events while the output had them in flight, "
               "before it finished them; counted as removed undelivered",
               output, lost);
  try {
    std::lock_guard lock(impl_->write_mutex);
    impl_->addToCounter(std::string(kUndeliveredPrefix) + std::string(output),
                        static_cast<std::int64_t>(lost));
  } catch (const std::exception& e) {
    spdlog::error("store {}: saving the count of {} events removed undelivered for output {} "
                  "failed: {}",
                  impl_->options.path.string(), lost, output, e.what());
  }
}

RetentionSummary Store::retentionTotals() const {
  Impl::Reader reader(*impl_);
  RetentionSummary totals;
  totals.removed = static_cast<std::uint64_t>(impl_->readCounter(*reader,
                                                                 kRetentionRemoved));
  totals.dead_letters_removed =
      static_cast<std::uint64_t>(impl_->readCounter(*reader, kDeadLettersRemoved));
  sqlite3_stmt* stmt = reader->prepare(
      "SELECT name, value FROM counters WHERE substr(name, 1, ?2) = ?1 ORDER BY name");
  ResetGuard reset(stmt);
  bindText(stmt, 1, kUndeliveredPrefix);
  sqlite3_bind_int(stmt, 2, static_cast<int>(kUndeliveredPrefix.size()));
  while (reader->step(stmt, "reading retention counters")) {
    std::string name = columnText(stmt, 0);
    totals.removed_undelivered.emplace_back(name.substr(kUndeliveredPrefix.size()),
                                            static_cast<std::uint64_t>(sqlite3_column_int64(stmt, 1)));
  }
  return totals;
}

void Store::enrolSensor(const SensorInfo& sensor) {
  std::lock_guard lock(impl_->write_mutex);
  Connection& writer = *impl_->writer;
  sqlite3_stmt* stmt = writer.prepare(
      "INSERT INTO sensors(sensor_id, group_name, token_sha256, enrolled_ms, last_seen_ms, "
      "records, revoked_ms, certificate_sha256, certificate_cn) "
      "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) "
      // A running collector may have written the sensor's count since the
      // caller read it, so an existing row keeps its own count.
      "ON CONFLICT(sensor_id) DO UPDATE SET group_name = excluded.group_name, "
      "token_sha256 = excluded.token_sha256, enrolled_ms = excluded.enrolled_ms, "
      "revoked_ms = excluded.revoked_ms, certificate_sha256 = excluded.certificate_sha256, "
      "certificate_cn = excluded.certificate_cn");
  ResetGuard reset(stmt);
  bindText(stmt, 1, sensor.sensor_id);
  bindText(stmt, 2, sensor.group);
  bindText(stmt, 3, sensor.token_sha256);
  sqlite3_bind_int64(stmt, 4, sensor.enrolled_ms != 0 ? sensor.enrolled_ms : nowMs());
  sqlite3_bind_int64(stmt, 5, sensor.last_seen_ms);
  sqlite3_bind_int64(stmt, 6, static_cast<std::int64_t>(sensor.records));
  sqlite3_bind_int64(stmt, 7, sensor.revoked_ms);
  bindText(stmt, 8, sensor.certificate_sha256);
  bindText(stmt, 9, sensor.certificate_cn);
  writer.step(stmt, "enrolling a sensor");
}

bool Store::revokeSensor(std::string_view sensor_id, std::int64_t at_ms) {
  std::lock_guard lock(impl_->write_mutex);
  Connection& writer = *impl_->writer;
  // The token is retired first, so a failure between the two statements
  // leaves it rejected by enrol rather than forgotten.
  sqlite3_stmt* retire = writer.prepare(
      "INSERT OR IGNORE INTO retired_tokens(token_sha256, sensor_id, retired_ms) "
      "SELECT token_sha256, sensor_id, ?1 FROM sensors WHERE sensor_id = ?2");
  {
    ResetGuard reset_retire(retire);
    sqlite3_bind_int64(retire, 1, at_ms);
    bindText(retire, 2, sensor_id);
    writer.step(retire, "retiring a revoked sensor's token");
  }
  sqlite3_stmt* stmt = writer.prepare(
      "UPDATE sensors SET revoked_ms = CASE WHEN revoked_ms = 0 THEN ?1 ELSE revoked_ms END "
      "WHERE sensor_id = ?2");
  ResetGuard reset(stmt);
  sqlite3_bind_int64(stmt, 1, at_ms);
  bindText(stmt, 2, sensor_id);
  writer.step(stmt, "revoking a sensor");
  return sqlite3_changes(writer.db()) > 0;
}

std::optional<std::string> Store::retiredTokenSensor(std::string_view token_sha256) const {
  Impl::Reader reader(*impl_);
  sqlite3_stmt* stmt =
      reader->prepare("SELECT sensor_id FROM retired_tokens WHERE token_sha256 = ?1");
  ResetGuard reset(stmt);
  bindText(stmt, 1, token_sha256);
  if (!reader->step(stmt, "looking up a retired token")) {
    return std::nullopt;
  }
  return columnText(stmt, 0);
}

std::optional<SensorInfo> Store::findSensorByTokenHash(std::string_view token_sha256) const {
  Impl::Reader reader(*impl_);
  static const std::string sql = std::string(kSensorColumns) + " WHERE token_sha256 = ?1";
  sqlite3_stmt* stmt = reader->prepare(sql.c_str());
  ResetGuard reset(stmt);
  bindText(stmt, 1, token_sha256);
  if (!reader->step(stmt, "looking up a sensor token")) {
    return std::nullopt;
  }
  SensorInfo info = readSensor(stmt);
  impl_->applyPendingSeen(info);
  return info;
}

std::vector<SensorInfo> Store::sensors() const {
  Impl::Reader reader(*impl_);
  static const std::string sql = std::string(kSensorColumns) + " ORDER BY sensor_id";
  sqlite3_stmt* stmt = reader->prepare(sql.c_str());
  ResetGuard reset(stmt);
  std::vector<SensorInfo> list;
  while (reader->step(stmt, "listing sensors")) {
    list.push_back(readSensor(stmt));
    impl_->applyPendingSeen(list.back());
  }
  return list;
}

void Store::noteSensorSeen(std::string_view sensor_id, std::int64_t at_ms, std::uint64_t records) {
  std::lock_guard lock(impl_->seen_mutex);
  auto it = impl_->pending_seen.find(sensor_id);
  if (it == impl_->pending_seen.end()) {
    it = impl_->pending_seen.emplace(std::string(sensor_id), Impl::SensorSeen{}).first;
  }
  it->second.last_seen_ms = std::max(it->second.last_seen_ms, at_ms);
  it->second.records += records;
}

std::optional<Store::FileOffset> Store::fileOffset(std::string_view path) const {
  Impl::Reader reader(*impl_);
  sqlite3_stmt* stmt =
      reader->prepare("SELECT inode, offset, head, empty_at_ns FROM file_offsets WHERE path = ?1");
  ResetGuard reset(stmt);
  bindText(stmt, 1, path);
  if (!reader->step(stmt, "reading a file offset")) {
    return std::nullopt;
  }
  FileOffset offset;
  offset.inode = static_cast<std::uint64_t>(sqlite3_column_int64(stmt, 0));
  offset.offset = static_cast<std::uint64_t>(sqlite3_column_int64(stmt, 1));
  const auto* head = static_cast<const char*>(sqlite3_column_blob(stmt, 2));
  offset.head.assign(head != nullptr ? head : "",
                     static_cast<std::size_t>(sqlite3_column_bytes(stmt, 2)));
  offset.empty_at_ns = sqlite3_column_int64(stmt, 3);
  return offset;
}

void Store::Impl::writeFileOffset(const FileOffsetNote& note) {
  sqlite3_stmt* stmt = writer->prepare(
      "INSERT INTO file_offsets(path, inode, offset, head, empty_at_ns) "
      "VALUES(?1, ?2, ?3, ?4, ?5) "
      "ON CONFLICT(path) DO UPDATE SET inode = excluded.inode, offset = excluded.offset, "
      "head = excluded.head, empty_at_ns = excluded.empty_at_ns");
  ResetGuard reset(stmt);
  bindText(stmt, 1, note.path);
  sqlite3_bind_int64(stmt, 2, static_cast<std::int64_t>(note.inode));
  sqlite3_bind_int64(stmt, 3, static_cast<std::int64_t>(note.offset));
  sqlite3_bind_blob(stmt, 4, note.head.data(), static_cast<int>(note.head.size()),
                    SQLITE_TRANSIENT);
  sqlite3_bind_int64(stmt, 5, note.empty_at_ns);
  writer->step(stmt, "writing a file offset");
}

void Store::setFileOffset(std::string_view path, FileOffset offset) {
  std::lock_guard lock(impl_->write_mutex);
  FileOffsetNote note{std::string(path), offset.inode, offset.offset, offset.head,
                      offset.empty_at_ns};
  impl_->writeWithoutFsync([&] { impl_->writeFileOffset(note); });
}

std::uint64_t Store::eventCount() const { return impl_->event_count.load(); }

std::uint64_t Store::sizeBytes() const { return impl_->event_bytes.load(); }

std::uint64_t Store::duplicateCount() const { return impl_->duplicates.load(); }

const std::filesystem::path& Store::path() const { return impl_->options.path; }

std::optional<std::int64_t> Store::timestampAfter(std::int64_t seq) const {
  Impl::Reader reader(*impl_);
  sqlite3_stmt* stmt =
      reader->prepare("SELECT timestamp_ms FROM events WHERE seq > ?1 ORDER BY seq LIMIT 1");
  ResetGuard reset(stmt);
  sqlite3_bind_int64(stmt, 1, seq);
  if (!reader->step(stmt, "reading an event time")) {
    return std::nullopt;
  }
  return sqlite3_column_int64(stmt, 0);
}

std::optional<std::int64_t> Store::firstReceivedMs() const {
  Impl::Reader reader(*impl_);
  sqlite3_stmt* stmt = reader->prepare("SELECT received_ms FROM events ORDER BY seq LIMIT 1");
  ResetGuard reset(stmt);
  if (!reader->step(stmt, "reading the first receive time")) {
    return std::nullopt;
  }
  return sqlite3_column_int64(stmt, 0);
}

}  // namespace webtrap::collector
