// The collector's durable queue and embedded store, in one SQLite database
// in WAL mode. An insert returns only after its transaction is committed, so
// a sender is acknowledged only for records that survive a crash. Outputs read
// the queue through their own cursors, each at its own pace.
//
// Thread safety: one Store may be shared by every thread. It keeps one write
// connection behind a mutex, and a pool of read connections that grows to
// the number of threads reading at once.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "collector/stored_event.h"

namespace webtrap::collector {

// A failure of the store: the file cannot be opened or is not a SQLite
// database, or a write failed (disk full, I/O error). The message names the
// path and, where one exists, the fix. `retryable` is true for conditions
// that may clear on their own (disk full, database busy), so the ingest path
// can return 503 and let the sender retry.
class StoreError : public std::runtime_error {
 public:
  StoreError(const std::string& what, int sqlite_code, bool retryable)
      : std::runtime_error(what), sqlite_code_(sqlite_code), retryable_(retryable) {}
  int sqliteCode() const { return sqlite_code_; }
  bool retryable() const { return retryable_; }

 private:
  int sqlite_code_;
  bool retryable_;
};

struct StoreOptions {
  std::filesystem::path path = "var/collector/store.sqlite";
  // "full": fsync on every commit (survives power loss); "normal": WAL
  // default, survives a process crash, may lose the last commits on power loss.
  std::string synchronous = "full";
  // The age limit applies to the time an event was stored, not its event
  // time, so an old log read by the file input is kept as long as new ones.
  std::int64_t retention_max_age_ms = 30LL * 24 * 3600 * 1000;  // 0: no limit
  // The size limit counts document bytes, with an original record kept
  // outside its document counted at its length as received. The file is
  // smaller by the batches' compression and larger by the indexes
  // and SQLite's page overhead, and it does not shrink: SQLite reuses freed
  // pages for new events.
  std::uint64_t retention_max_bytes = 10ULL << 30;  // 0: no limit
  // WAL checkpoints run in a background thread, not in the committing one.
  // It starts a passive checkpoint once this many WAL pages are not yet in
  // the database file (1000: SQLite's default automatic checkpoint point,
  // 64 MiB with the store's 64 KiB pages). Past `checkpoint_blocking_pages`
  // of WAL it runs a RESTART checkpoint instead, which waits up to 1 s for
  // readers to leave the WAL while writers wait behind it. A reader that
  // holds an old snapshot longer still makes the WAL grow until it ends, and
  // the blocking checkpoint is retried 5 s later at the earliest. Not in the
  // configuration file: tests set them lower.
  int checkpoint_pages = 1000;
  int checkpoint_blocking_pages = 4000;
};

struct InsertSummary {
  std::size_t stored = 0;                 // new events
  std::size_t duplicates = 0;             // event ids already in the store
  std::size_t dead_letters = 0;           // new dead letters
  std::size_t repeated_dead_letters = 0;  // record keys already in the store
};

struct DeadLetter {
  std::int64_t id = 0;
  std::string output;    // output name, or "ingest" for records never stored
  std::string event_id;  // may be empty for undecodable input
  std::string reason;
  std::string payload;   // the document or the raw input
  std::int64_t at_ms = 0;
  // Set for an undecodable record that its sender may send again (after a
  // lost acknowledgement): a second letter with the same key is not stored.
  std::string record_key;
};

struct SensorInfo {
  std::string sensor_id;
  std::string group;
  std::string token_sha256;  // hex; the token itself is never stored
  std::int64_t enrolled_ms = 0;
  std::int64_t last_seen_ms = 0;   // 0: never
  std::uint64_t records = 0;
  std::int64_t revoked_ms = 0;  // 0: not revoked; else the time of `collector revoke`
  // Client certificate the sensor must present with its token, when set:
  // SHA-256 of the certificate's DER encoding (64 lowercase hex digits) and
  // the subject common name. Empty: any certificate, or none, is accepted.
  std::string certificate_sha256{};
  std::string certificate_cn{};
};

// Records received from a sensor in one insert.
struct SensorNote {
  std::string sensor_id;
  std::int64_t at_ms = 0;
  std::uint64_t records = 0;
};

// A file input's read position, written with the batch read up to it.
struct FileOffsetNote {
  std::string path;  // the input's key, as fileOffset() takes it
  std::uint64_t inode = 0;
  std::uint64_t offset = 0;
  std::string head;  // as Store::FileOffset::head
  std::int64_t empty_at_ns = 0;  // as Store::FileOffset::empty_at_ns
};

struct RetentionSummary {
  std::uint64_t removed = 0;
  // Dead letters removed because their payloads passed their share of
  // store.retention.max_size (a tenth), oldest first.
  std::uint64_t dead_letters_removed = 0;
  // Per output, events removed before that output delivered them.
  std::vector<std::pair<std::string, std::uint64_t>> removed_undelivered;
  // Per output, events removed during an earlier pass while the output had
  // them in flight, which it then left unfinished (Store::endInFlight).
  std::vector<std::pair<std::string, std::uint64_t>> late_undelivered;
};

class Store {
 public:
  explicit Store(StoreOptions options);  // creates the file and schema; throws on failure
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // Stores new events in one transaction and returns after the commit.
  // Events whose id is already stored are counted as duplicates, not stored.
  // Calls from several threads at once are grouped into one transaction
  // (group commit), so concurrent senders share one fsync. Under
  // synchronous=full that fsync of the WAL runs after the write lock is
  // released, so the next group commits meanwhile. Throws StoreError when
  // the commit fails; then none of the events is stored. When only the
  // fsync fails, the events are stored but may not survive a power loss:
  // the error is retryable, and a resend counts them as duplicates.
  InsertSummary insert(std::span<const NewEvent> events);
  // The same, and stores `dead_letters` in the same transaction, so a batch
  // with undecodable lines costs one commit. `note`, when given, adds to its
  // sensor's last_seen_ms and records in that transaction, so a failed
  // commit does not count the batch that its sender will send again.
  // `batch` must be given when an event has original_at set: its body is
  // stored with the events, in the same transaction, and readAfter() and
  // findEvent() put each original back into its document. `file_offset`,
  // when given, is written in that transaction too, so a crash cannot keep
  // the events of a file's lines without the offset past them.
  InsertSummary insert(std::span<const NewEvent> events, std::span<const DeadLetter> dead_letters,
                       const SensorNote* note = nullptr, const OriginalBatch* batch = nullptr,
                       const FileOffsetNote* file_offset = nullptr);

  // Events after `after_seq`, in order, at most `max_count` events and
  // about `max_bytes` of documents (always at least one event if any).
  std::vector<StoredEvent> readAfter(std::int64_t after_seq, std::size_t max_count,
                                     std::size_t max_bytes) const;
  // The same, into `events`, whose strings keep their capacity from the
  // last call, so a reader that passes the same vector each time allocates
  // nothing once the documents stop growing.
  // With OriginalForm::kApart, originals kept in probe batches stay apart
  // from their documents (StoredEvent::original_at), and the byte budget
  // counts them at wholeDocumentBytes().
  void readAfter(std::int64_t after_seq, std::size_t max_count, std::size_t max_bytes,
                 std::vector<StoredEvent>& events,
                 OriginalForm form = OriginalForm::kWhole) const;

  std::int64_t lastSeq() const;
  // The seq of the first stored event that was stored at or after
  // `stored_ms` (Unix milliseconds), or 0 when none was. Events get their
  // seq and time at the same commit, so the times rise with the seqs, and
  // this is a binary search over them. A clock set back breaks that order,
  // and the search may then return a later event.
  std::int64_t firstSeqStoredFrom(std::int64_t stored_ms) const;

  // The stored event with this id, or nullopt when there is none (never
  // stored, or removed by retention). One read of the event_id index.
  std::optional<StoredEvent> findEvent(std::string_view event_id) const;

  // Output cursors: the seq of the last event the output finished with.
  // Cursor and file offset writes skip the fsync under synchronous=full: the
  // next insert's fsync makes them durable. A power loss may therefore take
  // them back a little, which costs resends, never lost events.
  void registerOutput(std::string_view output);  // starts at 0 if new
  std::int64_t cursor(std::string_view output) const;  // 0 for an unknown output
  void setCursor(std::string_view output, std::int64_t seq);
  // Moves the cursor on without waiting for another write. While another
  // write has the store's write lock, the cursor is written with the next
  // insert, retention pass or flushCursors(). cursor() returns it meanwhile. A noted cursor never
  // moves back. Output runners use it after each send, so that a send does
  // not wait behind an insert's commit.
  void noteCursor(std::string_view output, std::int64_t seq);
  // Writes the noted cursors now, waiting for the write lock.
  void flushCursors();
  std::vector<std::string> outputs() const;  // registered output names

  // Marks the events after `after_seq` as in flight for `output`: it is
  // about to read them for a send. Retention may remove them meanwhile but
  // does not count them as removed undelivered, because the output may
  // still finish them from memory. Call it before the read.
  void beginInFlight(std::string_view output, std::int64_t after_seq);
  // Ends the send. Events in flight that retention removed meanwhile and
  // that are not in `finished` (sorted seqs the output delivered or
  // dead-lettered) are counted as removed undelivered now.
  void endInFlight(std::string_view output, std::span<const std::int64_t> finished);

  void addDeadLetter(const DeadLetter& letter);
  void addDeadLetters(std::span<const DeadLetter> letters);  // in one transaction
  std::vector<DeadLetter> deadLetters(std::size_t limit) const;
  std::uint64_t deadLetterCount() const;

  // Removes events older than the age limit and, oldest first, events past
  // the size limit. Events an output has not delivered are removed only when
  // the limits require it, and counted per output.
  // Dead letters older than the age limit are removed too. A removal moves
  // the cursors it passes to the last removed seq.
  RetentionSummary enforceRetention(std::int64_t now_ms);
  // Totals of every enforceRetention() since the store was created; they are
  // kept in the file, so they survive restarts.
  RetentionSummary retentionTotals() const;

  // Sensors and their ingest tokens.
  // Enrols a sensor. An enrolled id gets the new token, group and
  // certificate binding and loses its revocation. It keeps its stored
  // last_seen_ms and records, so those of `sensor` apply to a new id only.
  void enrolSensor(const SensorInfo& sensor);
  // Marks a sensor as revoked at `at_ms`. Its row, token hash and events
  // stay, so a request with its token is rejected as revoked rather than as
  // unknown. Revoking a sensor again keeps the first time. Returns false
  // when no sensor has this id. enrolSensor() on the same id lifts it.
  bool revokeSensor(std::string_view sensor_id, std::int64_t at_ms);
  // Returns the id of the sensor that was revoked with this token, which
  // stays retired after the sensor is enrolled with a new one.
  std::optional<std::string> retiredTokenSensor(std::string_view token_sha256) const;
  std::optional<SensorInfo> findSensorByTokenHash(std::string_view token_sha256) const;
  std::vector<SensorInfo> sensors() const;
  // Notes records from a sensor. The update is kept in memory and written
  // with the next insert (or at close), so it costs no transaction of its
  // own. sensors() and findSensorByTokenHash() include pending updates.
  void noteSensorSeen(std::string_view sensor_id, std::int64_t at_ms, std::uint64_t records);

  // File input offsets, keyed by path, with the inode to notice rotation.
  struct FileOffset {
    std::uint64_t inode = 0;
    std::uint64_t offset = 0;
    // The file's first bytes (at most 256) when the offset was saved. A new
    // file with a reused inode number differs in them. Empty when not known.
    std::string head;
    // While `head` is empty: the real time in nanoseconds when the file was
    // seen without a line, so that a copy that copytruncate made after it
    // can be found at the next start. 0 when not known, as in offsets saved
    // before store schema version 7.
    std::int64_t empty_at_ns = 0;
  };
  std::optional<FileOffset> fileOffset(std::string_view path) const;
  void setFileOffset(std::string_view path, FileOffset offset);

  std::uint64_t eventCount() const;
  std::uint64_t sizeBytes() const;  // document bytes of the stored events
  std::uint64_t duplicateCount() const;  // duplicates seen since the store was created
  const std::filesystem::path& path() const;
  // Event time of the first event after `seq`, or nullopt when none.
  std::optional<std::int64_t> timestampAfter(std::int64_t seq) const;
  // Receive time (the collector's clock) of the oldest stored event, the
  // first by seq, or nullopt when the store is empty.
  std::optional<std::int64_t> firstReceivedMs() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace webtrap::collector
