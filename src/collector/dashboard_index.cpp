#include "collector/dashboard_index.h"

#include <chrono>
#include <optional>

#include <fmt/format.h>
#include <simdjson.h>
#include <spdlog/spdlog.h>

#include "collector/dashboard_sqlite.h"
#include "common/oat_ontology.h"

namespace webtrap::collector {
namespace {

using dashboard::Database;
using dashboard::Statement;

// Bump with a migration step in DashboardIndex's constructor when the
// schema changes. Older versions are dropped, and the output refills the
// index from the store: version 1 had no rollup tables, and version 2 kept
// an OAT dimension for every OAT id, including ids that no OAT version
// defines.
constexpr int kIndexSchemaVersion = 3;

// One row per event. `ts` is the event time in ms. The composite indexes
// lead with the time and carry the grouped column, so a count by source,
// path, user agent, country or location filtered by time alone reads only
// the index. A sensor, source or OAT filter reads the rows it selects.
constexpr const char* kIndexSchema = R"sql(
CREATE TABLE IF NOT EXISTS facts (
  seq INTEGER PRIMARY KEY,
  ts INTEGER NOT NULL,
  sensor TEXT NOT NULL,
  source TEXT NOT NULL,
  country TEXT NOT NULL,
  asn INTEGER NOT NULL,
  as_org TEXT NOT NULL,
  lat REAL,
  lon REAL,
  method TEXT NOT NULL,
  path TEXT NOT NULL,
  user_agent TEXT NOT NULL,
  status INTEGER NOT NULL,
  event_id TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS facts_ts ON facts(ts, sensor, source);
CREATE INDEX IF NOT EXISTS facts_sensor_ts ON facts(sensor, ts);
CREATE INDEX IF NOT EXISTS facts_source_ts ON facts(source, ts);
CREATE INDEX IF NOT EXISTS facts_path ON facts(ts, path);
CREATE INDEX IF NOT EXISTS facts_user_agent ON facts(ts, user_agent);
CREATE INDEX IF NOT EXISTS facts_country ON facts(ts, country);
CREATE INDEX IF NOT EXISTS facts_geo ON facts(ts, lat, lon);
CREATE TABLE IF NOT EXISTS tags (
  kind INTEGER NOT NULL,
  value TEXT NOT NULL,
  seq INTEGER NOT NULL,
  ts INTEGER NOT NULL,
  PRIMARY KEY (kind, value, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tags_kind_ts ON tags(kind, ts, value);
CREATE INDEX IF NOT EXISTS tags_seq ON tags(seq);
CREATE INDEX IF NOT EXISTS tags_value_ts ON tags(kind, value, ts);
CREATE TABLE IF NOT EXISTS hourly_counts (
  oat TEXT NOT NULL,
  hour INTEGER NOT NULL,
  sensor TEXT NOT NULL,
  events INTEGER NOT NULL,
  PRIMARY KEY (oat, hour, sensor)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS daily_values (
  field INTEGER NOT NULL,
  oat TEXT NOT NULL,
  day INTEGER NOT NULL,
  sensor TEXT NOT NULL,
  value TEXT NOT NULL,
  events INTEGER NOT NULL,
  PRIMARY KEY (field, oat, day, sensor, value)
) WITHOUT ROWID;
)sql";

// The tables of schema versions 1 and 2, dropped by the migration.
constexpr const char* kDropOlderVersions = R"sql(
DROP TABLE IF EXISTS facts;
DROP TABLE IF EXISTS tags;
DROP TABLE IF EXISTS hourly_counts;
DROP TABLE IF EXISTS daily_values;
)sql";

// The rows that one call of applyRollups() adds to or removes from the
// rollups: rollup_batch has their seqs, rollup_dims one row per seq and
// OAT dimension ('' for every event, and each of its OAT ids that
// rollup_oat_ids lists).
constexpr const char* kRollupTempTables = R"sql(
CREATE TEMP TABLE IF NOT EXISTS rollup_batch(seq INTEGER PRIMARY KEY);
CREATE TEMP TABLE IF NOT EXISTS rollup_dims(seq INTEGER NOT NULL, oat TEXT NOT NULL);
CREATE TEMP TABLE IF NOT EXISTS rollup_oat_ids(id TEXT PRIMARY KEY);
)sql";

// How often the output removes rows of events that the store's retention
// removed.
constexpr std::int64_t kRetentionCheckMs = 60'000;

// The SQL for the hour or day number of `column` (floor division, so that
// times before 1970 fall in the right unit too).
std::string unitOf(std::string_view column, std::int64_t unit_ms) {
  return fmt::format("(({0} - (({0} % {1}) + {1}) % {1}) / {1})", column, unit_ms);
}

// Adds (sign 1) or subtracts (sign -1) the facts and tags of the events in
// temp.rollup_batch to or from the rollup tables. Both directions count
// the same rows with the same expressions, so subtracting what was added
// leaves the rollups as they were.
void applyRollups(Database& db, int sign) {
  db.exec("DELETE FROM temp.rollup_dims");
  db.exec("INSERT INTO temp.rollup_dims(seq, oat) SELECT seq, '' FROM temp.rollup_batch");
  // Only the ontology's OAT ids get a dimension: an event's rows in
  // daily_values are its dimensions times its values, so a dimension per
  // id of a record with thousands of made-up ids would add millions of rows.
  db.exec("INSERT INTO temp.rollup_dims(seq, oat) SELECT t.seq, t.value FROM temp.rollup_batch b "
          "JOIN tags t ON t.seq = b.seq WHERE t.kind = 1 AND t.value IN "
          "(SELECT id FROM temp.rollup_oat_ids)");

  const std::string hour = unitOf("f.ts", kRollupHourMs);
  const std::string day = unitOf("f.ts", kRollupDayMs);
  db.exec(fmt::format(
              "INSERT INTO hourly_counts(oat, hour, sensor, events) "
              "SELECT d.oat, {0} AS h, f.sensor, {1} * count(*) FROM temp.rollup_dims d "
              "JOIN facts f ON f.seq = d.seq WHERE 1 GROUP BY d.oat, h, f.sensor "
              "ON CONFLICT(oat, hour, sensor) DO UPDATE SET events = events + excluded.events",
              hour, sign)
              .c_str());

  const std::pair<RollupField, std::string> values[] = {
      {RollupField::kSource, "f.source"},
      {RollupField::kPath, "f.path"},
      {RollupField::kUserAgent, "f.user_agent"},
      {RollupField::kCountry, "f.country"},
      {RollupField::kLocation, std::string(kLocationCell)},
  };
  for (const auto& [field, expression] : values) {
    db.exec(fmt::format(
                "INSERT INTO daily_values(field, oat, day, sensor, value, events) "
                "SELECT {0}, d.oat, {1} AS dd, f.sensor, {2} AS v, {3} * count(*) "
                "FROM temp.rollup_dims d JOIN facts f ON f.seq = d.seq WHERE {4} "
                "GROUP BY d.oat, dd, f.sensor, v "
                "ON CONFLICT(field, oat, day, sensor, value) DO UPDATE SET "
                "events = events + excluded.events",
                static_cast<int>(field), day, expression, sign,
                field == RollupField::kLocation ? "f.lat IS NOT NULL AND f.lon IS NOT NULL" : "1")
                .c_str());
  }

  db.exec(fmt::format(
              "INSERT INTO daily_values(field, oat, day, sensor, value, events) "
              "SELECT {0} + t.kind, d.oat, {1} AS dd, f.sensor, t.value, {2} * count(*) "
              "FROM temp.rollup_dims d JOIN facts f ON f.seq = d.seq JOIN tags t ON t.seq = d.seq "
              "WHERE 1 GROUP BY t.kind, d.oat, dd, f.sensor, t.value "
              "ON CONFLICT(field, oat, day, sensor, value) DO UPDATE SET "
              "events = events + excluded.events",
              kRollupTagFieldBase, day, sign)
              .c_str());

  if (sign < 0) {
    // Rows that reached 0 are deleted by their key prefix (field, oat,
    // day), so the cleanup reads only the days that lost events.
    db.exec(fmt::format("DELETE FROM hourly_counts WHERE oat IN (SELECT oat FROM temp.rollup_dims) "
                        "AND hour IN (SELECT {0} FROM temp.rollup_batch b JOIN facts f "
                        "ON f.seq = b.seq) AND events = 0",
                        hour)
                .c_str());
    db.exec(fmt::format("DELETE FROM daily_values WHERE field IN (1, 2, 3, 4, 5, 11, 12, 13) "
                        "AND oat IN (SELECT oat FROM temp.rollup_dims) "
                        "AND day IN (SELECT {0} FROM temp.rollup_batch b JOIN facts f "
                        "ON f.seq = b.seq) AND events = 0",
                        day)
                .c_str());
  }

  db.exec("DELETE FROM temp.rollup_dims");
  db.exec("DELETE FROM temp.rollup_batch");
}

std::int64_t nowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string_view stringAt(simdjson::dom::element root, std::string_view pointer) {
  std::string_view value;
  if (root.at_pointer(pointer).get_string().get(value) != simdjson::SUCCESS) {
    return {};
  }
  return value;
}

std::int64_t integerAt(simdjson::dom::element root, std::string_view pointer) {
  simdjson::dom::element element;
  if (root.at_pointer(pointer).get(element) != simdjson::SUCCESS) {
    return 0;
  }
  std::int64_t value = 0;
  if (element.get_int64().get(value) == simdjson::SUCCESS) {
    return value;
  }
  std::uint64_t unsigned_value = 0;
  if (element.get_uint64().get(unsigned_value) == simdjson::SUCCESS) {
    return static_cast<std::int64_t>(unsigned_value);
  }
  return 0;
}

std::optional<double> numberAt(simdjson::dom::element root, std::string_view pointer) {
  simdjson::dom::element element;
  if (root.at_pointer(pointer).get(element) != simdjson::SUCCESS) {
    return std::nullopt;
  }
  double value = 0;
  if (element.get_double().get(value) != simdjson::SUCCESS) {
    return std::nullopt;
  }
  return value;
}

// Calls `each` for a string or for every string of an array at `pointer`,
// because ECS fields such as rule.category hold one value or several.
template <typename Each>
void forEachString(simdjson::dom::element root, std::string_view pointer, Each&& each) {
  simdjson::dom::element element;
  if (root.at_pointer(pointer).get(element) != simdjson::SUCCESS) {
    return;
  }
  std::string_view value;
  if (element.get_string().get(value) == simdjson::SUCCESS) {
    each(value);
    return;
  }
  simdjson::dom::array array;
  if (element.get_array().get(array) != simdjson::SUCCESS) {
    return;
  }
  for (simdjson::dom::element item : array) {
    if (item.get_string().get(value) == simdjson::SUCCESS) {
      each(value);
    }
  }
}

}  // namespace

struct DashboardIndex::Impl {
  explicit Impl(std::filesystem::path file) : path(std::move(file)), db(path, false) {}

  std::filesystem::path path;
  Database db;
  std::mutex mutex;  // guards db and the parser
  simdjson::dom::parser parser;
};

DashboardIndex::DashboardIndex(std::filesystem::path path) {
  if (path.has_parent_path()) {
    std::filesystem::create_directories(path.parent_path());
  }
  impl_ = std::make_unique<Impl>(std::move(path));
  Database& db = impl_->db;
  db.exec("PRAGMA journal_mode=WAL");
  // The index is rebuilt from the store after a loss, so commits skip the
  // fsync.
  db.exec("PRAGMA synchronous=NORMAL");
  Statement version(db, "PRAGMA user_version");
  int schema_version = version.step() ? static_cast<int>(version.integer(0)) : 0;
  version.reset();
  if (schema_version > kIndexSchemaVersion) {
    throw dashboard::SqliteError(
        "dashboard index " + impl_->path.string() + ": schema version " +
        std::to_string(schema_version) +
        " was written by a newer webtrap; delete the file, and the collector rebuilds it "
        "from the store");
  }
  db.exec("PRAGMA temp_store=MEMORY");
  if (schema_version < kIndexSchemaVersion) {
    db.exec("BEGIN IMMEDIATE");
    if (schema_version > 0) {
      spdlog::info("dashboard index {}: dropping the rows of schema version {}; the output "
                   "indexes the stored events again",
                   impl_->path.string(), schema_version);
      db.exec(kDropOlderVersions);
    }
    db.exec(kIndexSchema);
    db.exec(("PRAGMA user_version=" + std::to_string(kIndexSchemaVersion)).c_str());
    db.exec("COMMIT");
  }
  db.exec(kRollupTempTables);
  Statement oat_id(db, "INSERT OR IGNORE INTO temp.rollup_oat_ids(id) VALUES(?1)");
  for (const oat::Threat& threat : oat::Ontology::embedded().threats()) {
    oat_id.reset();
    oat_id.bind(1, std::string_view(threat.id));
    oat_id.step();
  }
}

bool hasOatRollups(std::string_view oat_id) {
  return oat::Ontology::embedded().find(oat_id) != nullptr;
}

DashboardIndex::~DashboardIndex() = default;

const std::filesystem::path& DashboardIndex::path() const { return impl_->path; }

void DashboardIndex::add(std::span<const StoredEvent> events) {
  std::lock_guard lock(impl_->mutex);
  Database& db = impl_->db;
  db.exec("BEGIN IMMEDIATE");
  try {
    Statement fact(db,
                   "INSERT OR IGNORE INTO facts(seq, ts, sensor, source, country, asn, as_org, "
                   "lat, lon, method, path, user_agent, status, event_id) "
                   "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)");
    Statement tag(db, "INSERT OR IGNORE INTO tags(kind, value, seq, ts) VALUES(?1, ?2, ?3, ?4)");
    Statement added(db, "INSERT INTO temp.rollup_batch(seq) VALUES(?1)");
    auto noteAdded = [&](std::int64_t seq) {
      added.reset();
      added.bind(1, seq);
      added.step();
    };
    auto addTag = [&](TagKind kind, std::string_view value, const StoredEvent& event) {
      tag.reset();
      tag.bind(1, static_cast<std::int64_t>(kind))
          .bind(2, value)
          .bind(3, event.seq)
          .bind(4, event.timestamp_ms);
      tag.step();
    };
    for (const StoredEvent& event : events) {
      fact.reset();
      fact.bind(1, event.seq).bind(2, event.timestamp_ms).bind(3, event.sensor_id);
      fact.bind(14, event.event_id);
      simdjson::dom::element root;
      if (impl_->parser.parse(event.document).get(root) != simdjson::SUCCESS) {
        spdlog::warn("dashboard index: event {} (seq {}) is not valid JSON; indexed without its "
                     "fields",
                     event.event_id, event.seq);
        fact.bind(4, std::string_view()).bind(5, std::string_view()).bind(6, std::int64_t{0});
        fact.bind(7, std::string_view()).bindNull(8).bindNull(9);
        fact.bind(10, std::string_view()).bind(11, std::string_view());
        fact.bind(12, std::string_view()).bind(13, std::int64_t{0});
        fact.step();
        if (sqlite3_changes(db.handle()) != 0) {
          noteAdded(event.seq);
        }
        continue;
      }
      std::string_view source = stringAt(root, "/source/ip");
      if (source.empty()) {
        source = stringAt(root, "/source/address");
      }
      fact.bind(4, source);
      fact.bind(5, stringAt(root, "/source/geo/country_iso_code"));
      fact.bind(6, integerAt(root, "/source/as/number"));
      fact.bind(7, stringAt(root, "/source/as/organization/name"));
      auto lat = numberAt(root, "/source/geo/location/lat");
      auto lon = numberAt(root, "/source/geo/location/lon");
      if (lat && lon) {
        fact.bind(8, *lat).bind(9, *lon);
      } else {
        fact.bindNull(8).bindNull(9);
      }
      fact.bind(10, stringAt(root, "/http/request/method"));
      fact.bind(11, stringAt(root, "/url/path"));
      fact.bind(12, stringAt(root, "/user_agent/original"));
      fact.bind(13, integerAt(root, "/http/response/status_code"));
      fact.step();
      if (sqlite3_changes(db.handle()) == 0) {
        continue;  // indexed before this batch was sent again
      }
      noteAdded(event.seq);
      forEachString(root, "/threat/technique/id",
                    [&](std::string_view id) { addTag(TagKind::kOat, id, event); });
      forEachString(root, "/rule/category",
                    [&](std::string_view category) { addTag(TagKind::kCrsCategory, category, event); });
      forEachString(root, "/webtrap/bait_hits",
                    [&](std::string_view bait) { addTag(TagKind::kBait, bait, event); });
    }
    applyRollups(db, 1);
    db.exec("COMMIT");
  } catch (...) {
    // The temp tables are rolled back with the rest.
    sqlite3_exec(db.handle(), "ROLLBACK", nullptr, nullptr, nullptr);
    throw;
  }
}

void DashboardIndex::removeBefore(std::int64_t seq) {
  std::lock_guard lock(impl_->mutex);
  Database& db = impl_->db;
  db.exec("BEGIN IMMEDIATE");
  try {
    Statement removed(db, "INSERT INTO temp.rollup_batch(seq) SELECT seq FROM facts WHERE seq < ?1");
    removed.bind(1, seq).step();
    applyRollups(db, -1);
    Statement facts(db, "DELETE FROM facts WHERE seq < ?1");
    facts.bind(1, seq).step();
    Statement tags(db, "DELETE FROM tags WHERE seq < ?1");
    tags.bind(1, seq).step();
    db.exec("COMMIT");
  } catch (...) {
    // The temp tables are rolled back with the rest.
    sqlite3_exec(db.handle(), "ROLLBACK", nullptr, nullptr, nullptr);
    throw;
  }
}

std::int64_t DashboardIndex::lastSeq() const {
  std::lock_guard lock(impl_->mutex);
  Statement last(impl_->db, "SELECT coalesce(max(seq), 0) FROM facts");
  return last.step() ? last.integer(0) : 0;
}

DashboardIndexOutput::DashboardIndexOutput(DashboardIndex& index, Store& store)
    : index_(index), store_(store) {
  std::int64_t cursor = store_.cursor(name());
  std::int64_t indexed = index_.lastSeq();
  if (cursor > indexed) {
    // NOTE: events between `indexed` and the cursor were finished without
    // their rows (the index file was deleted or restored from a backup), so
    // the output starts over; rows already there are ignored by seq.
    spdlog::info("dashboard index {}: the output cursor {} is past the last indexed seq {}; "
                 "indexing the stored events again",
                 index_.path().string(), cursor, indexed);
    store_.registerOutput(name());
    store_.setCursor(name(), indexed);
  }
}

std::vector<ItemResult> DashboardIndexOutput::send(std::span<const StoredEvent> batch) {
  try {
    index_.add(batch);
  } catch (const std::exception& error) {
    throw TransientError(error.what());
  }
  std::int64_t now = nowMs();
  if (now - last_retention_check_ms_ >= kRetentionCheckMs && !batch.empty()) {
    last_retention_check_ms_ = now;
    auto first = store_.readAfter(0, 1, 0);
    if (!first.empty()) {
      index_.removeBefore(first.front().seq);
    }
  }
  return std::vector<ItemResult>(batch.size());
}

}  // namespace webtrap::collector
