#include "collector/dashboard_queries.h"

#include <algorithm>
#include <map>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <fmt/format.h>

#include "collector/dashboard_sqlite.h"
#include "common/json_writer.h"

namespace webtrap::collector {
namespace {

using dashboard::Database;
using dashboard::Statement;

// The conditions on the facts table (alias f) for a filter. Values are
// bound as named parameters, never spliced into the SQL. The time range is
// :from and :to, bound by bindFilter() or bindRange().
std::string factsCondition(const DashboardFilter& filter) {
  std::string sql = "f.ts >= :from AND f.ts < :to";
  if (!filter.sensor.empty()) {
    sql += " AND f.sensor = :sensor";
  }
  if (!filter.source.empty()) {
    sql += " AND f.source = :source";
  }
  if (!filter.oat.empty()) {
    sql += " AND EXISTS (SELECT 1 FROM tags o WHERE o.kind = 1 AND o.value = :oat AND "
           "o.seq = f.seq)";
  }
  return sql;
}

void bindText(Statement& statement, const char* name, std::string_view value) {
  if (int index = statement.parameter(name); index > 0) {
    statement.bind(index, value);
  }
}

void bindInteger(Statement& statement, const char* name, std::int64_t value) {
  if (int index = statement.parameter(name); index > 0) {
    statement.bind(index, value);
  }
}

void bindFilter(Statement& statement, const DashboardFilter& filter) {
  bindInteger(statement, ":from", filter.from_ms);
  bindInteger(statement, ":to", filter.to_ms);
  bindText(statement, ":sensor", filter.sensor);
  bindText(statement, ":source", filter.source);
  bindText(statement, ":oat", filter.oat);
}

// A time range in ms, `from` included, `to` excluded.
struct TimeSpan {
  std::int64_t from = 0;
  std::int64_t to = 0;
};

std::int64_t floorDiv(std::int64_t value, std::int64_t unit) {
  std::int64_t quotient = value / unit;
  return (value % unit != 0 && value < 0) ? quotient - 1 : quotient;
}

// A filter's time range split for the rollups: whole units [first_unit,
// end_unit) are read from a rollup table, and the parts of units at the
// edges of the range (`edges`) from the raw rows.
struct RangePlan {
  std::int64_t first_unit = 0;
  std::int64_t end_unit = 0;  // first_unit == end_unit: no rollup rows
  std::vector<TimeSpan> edges;
};

RangePlan planRange(const DashboardFilter& filter, std::int64_t unit_ms) {
  RangePlan plan;
  const std::int64_t from = filter.from_ms;
  const std::int64_t to = filter.to_ms;
  if (to <= from) {
    return plan;
  }
  // Rollups only keep counts per sensor and known OAT id, so a source
  // filter (through the index on source) and a filter on an OAT id outside
  // the ontology are counted from the raw rows.
  if (!filter.source.empty() || (!filter.oat.empty() && !hasOatRollups(filter.oat))) {
    plan.edges.push_back({from, to});
    return plan;
  }
  // The first whole unit, rounded up without multiplying back, which
  // could overflow for a `from` near the int64 minimum.
  const std::int64_t first = from / unit_ms + (from % unit_ms > 0 ? 1 : 0);
  const std::int64_t end = floorDiv(to, unit_ms);
  if (first >= end) {
    plan.edges.push_back({from, to});
    return plan;
  }
  plan.first_unit = first;
  plan.end_unit = end;
  if (from < first * unit_ms) {
    plan.edges.push_back({from, first * unit_ms});
  }
  if (end * unit_ms < to) {
    plan.edges.push_back({end * unit_ms, to});
  }
  return plan;
}

// The conditions on a rollup table (hourly_counts or daily_values) for a
// filter, with the unit range as :first and :end.
std::string rollupCondition(const DashboardFilter& filter, std::string_view unit_column) {
  std::string sql = fmt::format("oat = :oat_dim AND {0} >= :first AND {0} < :end", unit_column);
  if (!filter.sensor.empty()) {
    sql += " AND sensor = :sensor";
  }
  return sql;
}

void bindRollup(Statement& statement, const DashboardFilter& filter, const RangePlan& plan) {
  bindText(statement, ":oat_dim", filter.oat);
  bindText(statement, ":sensor", filter.sensor);
  bindInteger(statement, ":first", plan.first_unit);
  bindInteger(statement, ":end", plan.end_unit);
}

// Binds the filter with the time range replaced by `span`.
void bindRange(Statement& statement, const DashboardFilter& filter, TimeSpan span) {
  bindFilter(statement, filter);
  bindInteger(statement, ":from", span.from);
  bindInteger(statement, ":to", span.to);
}

using ValueCounts = std::unordered_map<std::string, std::int64_t>;

// Counts events per value of `field` over the filter's range: whole days
// from daily_values, the edges from the raw rows through `raw_sql`, which
// selects (value, count) with the facts conditions for :from and :to.
ValueCounts countValues(Database& db, const DashboardFilter& filter, int field,
                        const std::string& raw_sql) {
  ValueCounts counts;
  RangePlan plan = planRange(filter, kRollupDayMs);
  if (plan.first_unit < plan.end_unit) {
    Statement rows(db, "SELECT value, sum(events) FROM daily_values WHERE field = :field AND " +
                           rollupCondition(filter, "day") + " GROUP BY value");
    bindRollup(rows, filter, plan);
    bindInteger(rows, ":field", field);
    while (rows.step()) {
      counts[std::string(rows.text(0))] += rows.integer(1);
    }
  }
  if (!plan.edges.empty()) {
    Statement rows(db, raw_sql);
    for (TimeSpan span : plan.edges) {
      rows.reset();
      bindRange(rows, filter, span);
      bindInteger(rows, ":kind", field - kRollupTagFieldBase);
      while (rows.step()) {
        counts[std::string(rows.text(0))] += rows.integer(1);
      }
    }
  }
  return counts;
}

// Returns the non-empty values with a count above 0, most frequent first,
// then by value in byte order as SQLite's BINARY collation sorts, at most
// `limit` of them.
std::vector<std::pair<std::string, std::int64_t>> topCounts(ValueCounts counts, int limit) {
  std::vector<std::pair<std::string, std::int64_t>> items;
  items.reserve(counts.size());
  for (auto& [value, count] : counts) {
    if (count > 0 && !value.empty()) {
      items.emplace_back(value, count);
    }
  }
  auto order = [](const auto& a, const auto& b) {
    return a.second != b.second ? a.second > b.second : a.first < b.first;
  };
  const std::size_t keep = std::min<std::size_t>(items.size(), static_cast<std::size_t>(limit));
  std::partial_sort(items.begin(), items.begin() + static_cast<std::ptrdiff_t>(keep), items.end(),
                    order);
  items.resize(keep);
  return items;
}

// Counts events per sensor over the filter's range: whole hours from
// hourly_counts, the edges from the raw rows.
std::map<std::string, std::int64_t, std::less<>> countBySensor(Database& db,
                                                               const DashboardFilter& filter) {
  std::map<std::string, std::int64_t, std::less<>> counts;
  RangePlan plan = planRange(filter, kRollupHourMs);
  if (plan.first_unit < plan.end_unit) {
    Statement rows(db, "SELECT sensor, sum(events) FROM hourly_counts WHERE " +
                           rollupCondition(filter, "hour") + " GROUP BY sensor");
    bindRollup(rows, filter, plan);
    while (rows.step()) {
      counts[std::string(rows.text(0))] += rows.integer(1);
    }
  }
  if (!plan.edges.empty()) {
    Statement rows(db, "SELECT f.sensor, count(*) FROM facts f WHERE " + factsCondition(filter) +
                           " GROUP BY f.sensor");
    for (TimeSpan span : plan.edges) {
      rows.reset();
      bindRange(rows, filter, span);
      while (rows.step()) {
        counts[std::string(rows.text(0))] += rows.integer(1);
      }
    }
  }
  std::erase_if(counts, [](const auto& entry) { return entry.second <= 0; });
  return counts;
}

// Returns the time of the oldest (or the newest) event that matches the
// filter, 0 when none does. Each form walks one index in time order and
// stops at the first match.
std::int64_t edgeTime(Database& db, const DashboardFilter& filter, bool newest) {
  const char* order = newest ? "DESC" : "ASC";
  std::string sql;
  if (!filter.source.empty()) {
    sql = fmt::format("SELECT f.ts FROM facts f INDEXED BY facts_source_ts WHERE {} "
                      "ORDER BY f.ts {} LIMIT 1",
                      factsCondition(filter), order);
  } else if (!filter.oat.empty()) {
    std::string sensor = filter.sensor.empty() ? "" : " AND f.sensor = :sensor";
    sql = fmt::format("SELECT t.ts FROM tags t INDEXED BY tags_value_ts JOIN facts f "
                      "ON f.seq = t.seq WHERE t.kind = 1 AND t.value = :oat AND t.ts >= :from "
                      "AND t.ts < :to{} ORDER BY t.ts {} LIMIT 1",
                      sensor, order);
  } else if (!filter.sensor.empty()) {
    sql = fmt::format("SELECT f.ts FROM facts f INDEXED BY facts_sensor_ts WHERE {} "
                      "ORDER BY f.ts {} LIMIT 1",
                      factsCondition(filter), order);
  } else {
    sql = fmt::format("SELECT f.ts FROM facts f INDEXED BY facts_ts WHERE {} "
                      "ORDER BY f.ts {} LIMIT 1",
                      factsCondition(filter), order);
  }
  Statement rows(db, sql);
  bindFilter(rows, filter);
  return rows.step() ? rows.integer(0) : 0;
}

std::string_view columnFor(TopField field) {
  switch (field) {
    case TopField::kSource:
      return "source";
    case TopField::kPath:
      return "path";
    case TopField::kUserAgent:
      return "user_agent";
    case TopField::kCountry:
      return "country";
  }
  return "source";
}

std::string_view tagKindName(TagKind kind) {
  switch (kind) {
    case TagKind::kOat:
      return "oat";
    case TagKind::kCrsCategory:
      return "crs";
    case TagKind::kBait:
      return "bait";
  }
  return "oat";
}

void writeCountItems(JsonWriter& json,
                     const std::vector<std::pair<std::string, std::int64_t>>& items) {
  json.key("items");
  json.beginArray();
  for (const auto& [value, count] : items) {
    json.beginObject();
    json.member("value", value);
    json.member("count", count);
    json.endObject();
  }
  json.endArray();
}

RollupField rollupFieldFor(TopField field) {
  switch (field) {
    case TopField::kSource:
      return RollupField::kSource;
    case TopField::kPath:
      return RollupField::kPath;
    case TopField::kUserAgent:
      return RollupField::kUserAgent;
    case TopField::kCountry:
      return RollupField::kCountry;
  }
  return RollupField::kSource;
}

}  // namespace

DashboardQueries::DashboardQueries(std::filesystem::path index_path, Store& store)
    : index_path_(std::move(index_path)), store_(store) {}

std::string DashboardQueries::summary(const DashboardFilter& filter) const {
  Database db(index_path_, true);
  std::int64_t events = 0;
  for (const auto& [sensor, count] : countBySensor(db, filter)) {
    events += count;
  }
  // Distinct sources cannot be summed, so the values of whole days and of
  // the edges go through one set. The empty address (an event whose
  // document had none) counts as a source, as count(DISTINCT source) does.
  ValueCounts sources =
      countValues(db, filter, static_cast<int>(RollupField::kSource),
                  "SELECT f.source, count(*) FROM facts f WHERE " + factsCondition(filter) +
                      " GROUP BY f.source");
  std::int64_t distinct = 0;
  for (const auto& [source, count] : sources) {
    distinct += count > 0 ? 1 : 0;
  }
  std::string out;
  JsonWriter json(out);
  json.beginObject();
  json.member("events", events);
  json.member("sources", distinct);
  json.member("first_ms", events > 0 ? edgeTime(db, filter, false) : 0);
  json.member("last_ms", events > 0 ? edgeTime(db, filter, true) : 0);
  json.endObject();
  return out;
}

namespace {

// Returns the width of a timeline bucket for about `buckets` buckets over
// `span_ms`: whole hours, or, for ranges up to a day, a whole number of
// minutes that divides an hour. Hour buckets start on the hour, so each
// covers whole hourly_counts rows.
std::int64_t timelineBucketMs(std::int64_t span_ms, int buckets) {
  constexpr std::int64_t kMinuteMs = 60'000;
  std::int64_t bucket_ms = std::max<std::int64_t>(kMinuteMs, (span_ms + buckets - 1) / buckets);
  if (span_ms > kRollupDayMs) {
    bucket_ms = std::max(bucket_ms, kRollupHourMs);
  }
  if (bucket_ms >= kRollupHourMs) {
    return (bucket_ms + kRollupHourMs - 1) / kRollupHourMs * kRollupHourMs;
  }
  for (std::int64_t minutes : {1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30}) {
    if (minutes * kMinuteMs >= bucket_ms) {
      return minutes * kMinuteMs;
    }
  }
  return kRollupHourMs;
}

}  // namespace

std::string DashboardQueries::timeline(const DashboardFilter& input, int buckets,
                                       std::int64_t now_ms) const {
  Database db(index_path_, true);
  // Record times come from the records, so a wrong sensor clock or a
  // forged record may be dated decades ahead or back. An open end stops at
  // now plus the future slack, and an open start at the oldest receive
  // time minus the past slack. The events outside are left out of the
  // buckets and counted in later_events and earlier_events, and the
  // summary, the other panels and the feed still count them.
  constexpr std::int64_t kInt64Max = std::numeric_limits<std::int64_t>::max();
  constexpr std::int64_t kInt64Min = std::numeric_limits<std::int64_t>::min();
  const bool open_end = input.to_ms == kInt64Max;
  DashboardFilter filter = input;
  std::int64_t later_events = 0;
  if (open_end) {
    filter.to_ms = now_ms > kInt64Max - kTimelineFutureSlackMs ? kInt64Max
                                                                : now_ms + kTimelineFutureSlackMs;
    DashboardFilter later = input;
    later.from_ms = std::max(input.from_ms, filter.to_ms);
    for (const auto& [sensor, count] : countBySensor(db, later)) {
      later_events += count;
    }
  }
  const bool open_start = input.from_ms == kInt64Min;
  std::optional<std::int64_t> open_from_ms;
  std::int64_t earlier_events = 0;
  if (open_start) {
    if (std::optional<std::int64_t> received = store_.firstReceivedMs()) {
      open_from_ms = *received < kInt64Min + kTimelinePastSlackMs
                         ? kInt64Min
                         : *received - kTimelinePastSlackMs;
      filter.from_ms = *open_from_ms;
      DashboardFilter earlier = filter;
      earlier.from_ms = kInt64Min;
      earlier.to_ms = std::min(filter.to_ms, *open_from_ms);
      for (const auto& [sensor, count] : countBySensor(db, earlier)) {
        earlier_events += count;
      }
    }
  }
  // Bucket arithmetic runs on the range clamped to +-kTimelineLimitMs, so
  // that no ends sent by a client overflow (ISO 8601 record times lie
  // well inside it). Counting still uses the filter's own range.
  constexpr std::int64_t kTimelineLimitMs = 1'000'000'000'000'000'000;  // about 31.7 million years
  std::int64_t from = filter.from_ms;
  std::int64_t to = filter.to_ms;
  if (open_start) {
    from = edgeTime(db, filter, false);
  }
  if (open_end) {
    to = std::min(edgeTime(db, filter, true), kTimelineLimitMs) + 1;
  }
  from = std::clamp(from, -kTimelineLimitMs, kTimelineLimitMs);
  to = std::clamp(to, -kTimelineLimitMs, kTimelineLimitMs + 1);
  buckets = std::clamp(buckets, 1, 1000);
  const std::int64_t bucket_ms = timelineBucketMs(std::max<std::int64_t>(0, to - from), buckets);
  from = floorDiv(from, bucket_ms) * bucket_ms;

  std::map<std::int64_t, std::int64_t> points;  // bucket number to events
  // Sub-hour buckets are counted from the raw rows (a range of a day at
  // most, see timelineBucketMs); hour buckets from the rollups.
  RangePlan plan = bucket_ms >= kRollupHourMs ? planRange(filter, kRollupHourMs)
                                              : RangePlan{0, 0, {{filter.from_ms, filter.to_ms}}};
  if (plan.first_unit < plan.end_unit) {
    Statement rows(db, "SELECT (hour * :hour_ms - :start) / :bucket AS b, sum(events) "
                       "FROM hourly_counts WHERE " + rollupCondition(filter, "hour") +
                       " GROUP BY b");
    bindRollup(rows, filter, plan);
    bindInteger(rows, ":hour_ms", kRollupHourMs);
    bindInteger(rows, ":start", from);
    bindInteger(rows, ":bucket", bucket_ms);
    while (rows.step()) {
      points[rows.integer(0)] += rows.integer(1);
    }
  }
  Statement raw(db, "SELECT (f.ts - :start) / :bucket AS b, count(*) FROM facts f WHERE " +
                        factsCondition(filter) + " GROUP BY b");
  for (TimeSpan span : plan.edges) {
    if (span.to <= span.from) {
      continue;
    }
    raw.reset();
    bindRange(raw, filter, span);
    bindInteger(raw, ":start", from);
    bindInteger(raw, ":bucket", bucket_ms);
    while (raw.step()) {
      points[raw.integer(0)] += raw.integer(1);
    }
  }

  std::string out;
  JsonWriter json(out);
  json.beginObject();
  json.member("bucket_ms", bucket_ms);
  json.member("from_ms", from);
  json.member("to_ms", filter.to_ms);
  json.key("open_from_ms");
  if (open_from_ms) {
    json.integer(*open_from_ms);
  } else {
    json.null();
  }
  json.member("earlier_events", earlier_events);
  json.member("later_events", later_events);
  json.key("points");
  json.beginArray();
  for (const auto& [bucket, count] : points) {
    if (count <= 0) {
      continue;
    }
    json.beginObject();
    json.member("t", from + bucket * bucket_ms);
    json.member("count", count);
    json.endObject();
  }
  json.endArray();
  json.endObject();
  return out;
}

std::string DashboardQueries::top(const DashboardFilter& filter, TopField field,
                                  int limit) const {
  Database db(index_path_, true);
  std::string_view column = columnFor(field);
  auto items = topCounts(
      countValues(db, filter, static_cast<int>(rollupFieldFor(field)),
                  fmt::format("SELECT f.{0}, count(*) FROM facts f WHERE {1} GROUP BY f.{0}",
                              column, factsCondition(filter))),
      std::clamp(limit, 1, 1000));
  std::string out;
  JsonWriter json(out);
  json.beginObject();
  json.member("field", column);
  if (field != TopField::kSource) {
    writeCountItems(json, items);
    json.endObject();
    return out;
  }
  // GeoIP facts of each listed source come from its newest event, one
  // indexed read per source instead of a lookup for every counted row.
  Statement geo(db, "SELECT country, asn, as_org FROM facts WHERE source = ?1 "
                    "ORDER BY ts DESC LIMIT 1");
  json.key("items");
  json.beginArray();
  for (const auto& [value, count] : items) {
    json.beginObject();
    json.member("value", value);
    json.member("count", count);
    geo.reset();
    geo.bind(1, value);
    if (geo.step()) {
      json.member("country", geo.text(0));
      json.member("asn", geo.integer(1));
      json.member("as_org", geo.text(2));
    }
    json.endObject();
  }
  json.endArray();
  json.endObject();
  return out;
}

namespace {

// The raw count of one tag kind for countValues(). INDEXED BY and CROSS
// JOIN fix which table leads: the tags of the time range (index
// tags_kind_ts), unless a source filter selects fewer rows through the
// facts' source index.
std::string rawTagsSql(const DashboardFilter& filter) {
  if (!filter.source.empty()) {
    return "SELECT t.value, count(*) FROM facts f CROSS JOIN tags t ON t.seq = f.seq "
           "WHERE t.kind = :kind AND " + factsCondition(filter) + " GROUP BY t.value";
  }
  return "SELECT t.value, count(*) FROM tags t INDEXED BY tags_kind_ts CROSS JOIN facts f "
         "ON f.seq = t.seq WHERE t.kind = :kind AND t.ts >= :from AND t.ts < :to AND " +
         factsCondition(filter) + " GROUP BY t.value";
}

}  // namespace

std::string DashboardQueries::tags(const DashboardFilter& filter, TagKind kind,
                                   int limit) const {
  Database db(index_path_, true);
  auto items = topCounts(
      countValues(db, filter, kRollupTagFieldBase + static_cast<int>(kind), rawTagsSql(filter)),
      std::clamp(limit, 1, 1000));
  std::string out;
  JsonWriter json(out);
  json.beginObject();
  json.member("kind", tagKindName(kind));
  writeCountItems(json, items);
  json.endObject();
  return out;
}

std::string DashboardQueries::geo(const DashboardFilter& filter, int limit) const {
  Database db(index_path_, true);
  auto cells = topCounts(
      countValues(db, filter, static_cast<int>(RollupField::kLocation),
                  fmt::format("SELECT {0} AS v, count(*) FROM facts f WHERE {1} AND f.lat IS NOT "
                              "NULL AND f.lon IS NOT NULL GROUP BY v",
                              kLocationCell, factsCondition(filter))),
      std::clamp(limit, 1, 10000));
  std::string out;
  JsonWriter json(out);
  json.beginObject();
  json.key("points");
  json.beginArray();
  for (const auto& [cell, count] : cells) {
    // The cell is "lat,lon", each written by printf("%.1f"), so each part
    // is a JSON number.
    const auto comma = cell.find(',');
    json.beginObject();
    json.key("lat");
    json.raw(std::string_view(cell).substr(0, comma));
    json.key("lon");
    json.raw(std::string_view(cell).substr(comma + 1));
    json.member("count", count);
    json.endObject();
  }
  json.endArray();
  json.endObject();
  return out;
}

std::string DashboardQueries::health(const DashboardFilter& filter, std::int64_t now_ms) const {
  struct SensorRow {
    std::int64_t events = 0;
    std::int64_t newest_ms = 0;
    // How far newest_ms lies after the collector's clock, 0 when it does not.
    std::int64_t ahead_ms = 0;
    // The newest event dated no later than the collector's clock, 0 for none.
    std::int64_t newest_in_time_ms = 0;
    std::int64_t last_seen_ms = 0;
    std::uint64_t records = 0;
    bool enrolled = false;
    bool revoked = false;
  };
  std::map<std::string, SensorRow, std::less<>> sensors;
  for (const SensorInfo& info : store_.sensors()) {
    if (!filter.sensor.empty() && info.sensor_id != filter.sensor) {
      continue;
    }
    SensorRow& row = sensors[info.sensor_id];
    row.enrolled = true;
    row.revoked = info.revoked_ms != 0;
    row.last_seen_ms = info.last_seen_ms;
    row.records = info.records;
  }
  {
    Database db(index_path_, true);
    for (const auto& [sensor, count] : countBySensor(db, filter)) {
      SensorRow& row = sensors[sensor];
      row.events = count;
      DashboardFilter of_sensor = filter;
      of_sensor.sensor = sensor;
      row.newest_ms = edgeTime(db, of_sensor, true);
      // No event can have happened after the collector received it. So an
      // event dated after the last receipt from its sensor comes from a
      // clock that runs ahead, or is forged. A sensor without receipts,
      // such as a ModSecurity input, is compared with now. The shipping lag
      // is measured to the newest event dated before that point.
      const std::int64_t clock_ms = row.last_seen_ms > 0 ? row.last_seen_ms : now_ms;
      row.newest_in_time_ms = row.newest_ms;
      if (row.newest_ms > clock_ms) {
        row.ahead_ms = row.newest_ms - clock_ms;
        of_sensor.to_ms = std::min(of_sensor.to_ms, clock_ms + 1);
        row.newest_in_time_ms = edgeTime(db, of_sensor, true);
      }
    }
  }

  std::string out;
  JsonWriter json(out);
  json.beginObject();
  json.member("now_ms", now_ms);
  json.key("sensors");
  json.beginArray();
  for (const auto& [id, row] : sensors) {
    json.beginObject();
    json.member("sensor", id);
    json.member("events", row.events);
    json.member("newest_event_ms", row.newest_ms);
    json.member("newest_event_ahead_ms", row.ahead_ms);
    json.member("enrolled", row.enrolled);
    json.member("revoked", row.revoked);
    json.member("last_seen_ms", row.last_seen_ms);
    json.member("records", static_cast<std::int64_t>(row.records));
    json.key("shipping_lag_ms");
    if (row.last_seen_ms > 0 && row.newest_in_time_ms > 0) {
      json.integer(row.last_seen_ms - row.newest_in_time_ms);
    } else {
      json.null();
    }
    json.key("silent_ms");
    if (row.last_seen_ms > 0) {
      json.integer(std::max<std::int64_t>(0, now_ms - row.last_seen_ms));
    } else {
      json.null();
    }
    json.endObject();
  }
  json.endArray();
  json.key("outputs");
  json.beginArray();
  const std::int64_t last_seq = store_.lastSeq();
  for (const std::string& output : store_.outputs()) {
    std::int64_t cursor = store_.cursor(output);
    json.beginObject();
    json.member("output", output);
    json.member("cursor", cursor);
    json.member("queue_depth", std::max<std::int64_t>(0, last_seq - cursor));
    json.key("lag_ms");
    auto oldest = cursor < last_seq ? store_.timestampAfter(cursor) : std::nullopt;
    if (oldest) {
      json.integer(std::max<std::int64_t>(0, now_ms - *oldest));
    } else {
      json.integer(0);
    }
    json.endObject();
  }
  json.endArray();
  json.endObject();
  return out;
}

std::string DashboardQueries::feed(const DashboardFilter& filter, int limit) const {
  Database db(index_path_, true);
  // The unary + keeps SQLite off the ts index, so it walks the events
  // newest first and stops after `limit` matches instead of sorting every
  // event in the time range.
  std::string condition = factsCondition(filter);
  condition.replace(0, std::string_view("f.ts >= :from AND f.ts < :to").size(),
                    "+f.ts >= :from AND +f.ts < :to");
  // The same for a sensor filter: otherwise SQLite reads every event of the
  // sensor through facts_sensor_ts and sorts them.
  if (const auto at = condition.find("f.sensor = :sensor"); at != std::string::npos) {
    condition.insert(at, "+");
  }
  Statement rows(db, "SELECT f.seq, f.ts, f.sensor, f.source, f.country, f.method, f.path, "
                     "f.user_agent, f.status, f.event_id FROM facts f WHERE " +
                     condition + " ORDER BY f.seq DESC LIMIT :limit");
  bindFilter(rows, filter);
  rows.bind(rows.parameter(":limit"), static_cast<std::int64_t>(std::clamp(limit, 1, 500)));
  Statement tag_rows(db, "SELECT kind, value FROM tags WHERE seq = ?1 ORDER BY kind, value");
  std::string out;
  JsonWriter json(out);
  json.beginObject();
  json.key("events");
  json.beginArray();
  while (rows.step()) {
    json.beginObject();
    json.member("seq", rows.integer(0));
    json.member("ts_ms", rows.integer(1));
    json.member("sensor", rows.text(2));
    json.member("source", rows.text(3));
    json.member("country", rows.text(4));
    json.member("method", rows.text(5));
    json.member("path", rows.text(6));
    json.member("user_agent", rows.text(7));
    json.member("status", rows.integer(8));
    json.member("event_id", rows.text(9));
    std::vector<std::string> oat;
    std::vector<std::string> crs;
    std::vector<std::string> baits;
    tag_rows.reset();
    tag_rows.bind(1, rows.integer(0));
    while (tag_rows.step()) {
      auto kind = static_cast<TagKind>(tag_rows.integer(0));
      auto& list = kind == TagKind::kOat ? oat : kind == TagKind::kCrsCategory ? crs : baits;
      list.emplace_back(tag_rows.text(1));
    }
    for (auto [name, list] : {std::pair{"oat", &oat}, {"crs", &crs}, {"baits", &baits}}) {
      json.key(name);
      json.beginArray();
      for (const std::string& value : *list) {
        json.string(value);
      }
      json.endArray();
    }
    json.endObject();
  }
  json.endArray();
  json.endObject();
  return out;
}

std::optional<std::string> DashboardQueries::event(std::string_view event_id) const {
  auto event = store_.findEvent(event_id);
  if (!event) {
    return std::nullopt;
  }
  return std::move(event->document);
}

}  // namespace webtrap::collector
