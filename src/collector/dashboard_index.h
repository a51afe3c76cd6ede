// The dashboard's index: a second SQLite file next to the store with one
// narrow row per event (time, sensor, source, GeoIP facts, method, path,
// user agent, status) and one row per tag (OAT id, CRS category, bait). The
// dashboard's queries count these rows through their indexes instead of
// parsing stored documents, so they stay fast on a million events.
//
// Rollups keep the counts that the panels read most, so a query over a long
// range reads a few rows per hour or day instead of every event:
//   hourly_counts(oat, hour, sensor, events): events per hour and sensor;
//   daily_values(field, oat, day, sensor, value, events): events per day,
//     sensor and value of one field (RollupField).
// `oat` is '' for the counts of every event; an event with OAT ids is
// counted once more under each id of the OAT ontology (OAT-001 to OAT-021),
// so an OAT filter on those ids reads the rollups too. Hours and days are UTC, counted from the epoch. The rollups change
// in the transaction that adds or removes the rows they count, so they
// always match the facts and tags tables.
//
// The index is filled by an output ("dashboard") that reads the store
// through its own cursor, like every other output, so the insert path of
// the store is unchanged and ingest pays nothing for the dashboard. Rows are
// keyed by the store's seq, so a batch sent again after a crash is ignored.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>

#include "collector/store.h"
#include "collector/stored_event.h"

namespace webtrap::collector {

// Tag kinds in the index's tags table.
enum class TagKind : int { kOat = 1, kCrsCategory = 2, kBait = 3 };

// The units of the rollup tables, in ms.
inline constexpr std::int64_t kRollupHourMs = 3'600'000;
inline constexpr std::int64_t kRollupDayMs = 86'400'000;

// The `field` of a daily_values row. Tags are kRollupTagFieldBase plus
// their TagKind.
enum class RollupField : int {
  kSource = 1,
  kPath = 2,
  kUserAgent = 3,
  kCountry = 4,
  kLocation = 5,  // value is kLocationCell of the event's coordinates
};
inline constexpr int kRollupTagFieldBase = 10;

// The SQL expression (over the facts table as `f`) of an event's map cell:
// its latitude and longitude rounded to 0.1 degree, as "lat,lon".
inline constexpr std::string_view kLocationCell = "printf('%.1f,%.1f', f.lat, f.lon)";

// Returns true when the rollups keep counts for the OAT id `oat_id`: the
// ids of the embedded OAT ontology. Other ids, which a record may carry by
// the thousand, are counted from the raw rows.
bool hasOatRollups(std::string_view oat_id);

class DashboardIndex {
 public:
  // Opens or creates the index file and its schema. Throws
  // dashboard::SqliteError when the file cannot be opened.
  explicit DashboardIndex(std::filesystem::path path);
  ~DashboardIndex();
  DashboardIndex(const DashboardIndex&) = delete;
  DashboardIndex& operator=(const DashboardIndex&) = delete;

  // Indexes `events` in one transaction. A document that is not valid JSON
  // still gets its row, with the fields the store gave it.
  void add(std::span<const StoredEvent> events);
  // Removes the rows of events before `seq`, after the store's retention
  // removed them.
  void removeBefore(std::int64_t seq);
  // The highest seq indexed, 0 when the index is empty.
  std::int64_t lastSeq() const;
  const std::filesystem::path& path() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The output that fills a DashboardIndex from the store. Its cursor is the
// "dashboard" output's, so /healthz and the output metrics show how far
// behind the index is.
class DashboardIndexOutput : public Output {
 public:
  // When the index file is new but the store already has a cursor for this
  // output (the index was deleted), the cursor goes back to 0 so that the
  // index is rebuilt from the events still stored.
  DashboardIndexOutput(DashboardIndex& index, Store& store);
  std::string_view name() const override { return "dashboard"; }
  std::vector<ItemResult> send(std::span<const StoredEvent> batch) override;

 private:
  DashboardIndex& index_;
  Store& store_;
  std::int64_t last_retention_check_ms_ = 0;
};

}  // namespace webtrap::collector
