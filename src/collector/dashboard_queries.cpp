#include "collector/dashboard_queries.h"

#include <algorithm>
#include <map>
#include <vector>

#include <fmt/format.h>

#include "collector/dashboard_sqlite.h"
#include "common/json_writer.h"

namespace webtrap::collector {
namespace {

using dashboard::Database;
using dashboard::Statement;

// The conditions on the facts table (alias f) for a filter. Values are
// bound as named parameters, never spliced into the SQL.
std::string factsCondition(const DashboardFilter& filter) {
  std::string sql = "f.ts >= :from AND f.ts < :to";
  if (!filter.sensor.empty()) {
    sql += " AND f.sensor = :sensor";
  }
  if (!filter.source.empty()) {
    sql += " AND f.source = :source";
  }
  if (!filter.oat.empty()) {
    sql += " AND f.seq IN (SELECT seq FROM tags WHERE kind = 1 AND value = :oat)";
  }
  return sql;
}

bool hasFactsFilter(const DashboardFilter& filter) {
  return !filter.sensor.empty() || !filter.source.empty() || !filter.oat.empty();
}

void bindFilter(Statement& statement, const DashboardFilter& filter) {
  auto bindIfPresent = [&](const char* name, std::string_view value) {
    if (int index = statement.parameter(name); index > 0) {
      statement.bind(index, value);
    }
  };
  if (int index = statement.parameter(":from"); index > 0) {
    statement.bind(index, filter.from_ms);
  }
  if (int index = statement.parameter(":to"); index > 0) {
    statement.bind(index, filter.to_ms);
  }
  bindIfPresent(":sensor", filter.sensor);
  bindIfPresent(":source", filter.source);
  bindIfPresent(":oat", filter.oat);
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

void writeCountItems(JsonWriter& json, Statement& rows) {
  json.key("items");
  json.beginArray();
  while (rows.step()) {
    json.beginObject();
    json.member("value", rows.text(0));
    json.member("count", rows.integer(1));
    json.endObject();
  }
  json.endArray();
}

}  // namespace

DashboardQueries::DashboardQueries(std::filesystem::path index_path, Store& store)
    : index_path_(std::move(index_path)), store_(store) {}

std::string DashboardQueries::summary(const DashboardFilter& filter) const {
  Database db(index_path_, true);
  Statement rows(db, "SELECT count(*), count(DISTINCT f.source), min(f.ts), max(f.ts) "
                     "FROM facts f WHERE " + factsCondition(filter));
  bindFilter(rows, filter);
  rows.step();
  std::string out;
  JsonWriter json(out);
  json.beginObject();
  json.member("events", rows.integer(0));
  json.member("sources", rows.integer(1));
  json.member("first_ms", rows.integer(2));
  json.member("last_ms", rows.integer(3));
  json.endObject();
  return out;
}

std::string DashboardQueries::timeline(const DashboardFilter& filter, int buckets) const {
  Database db(index_path_, true);
  std::int64_t from = filter.from_ms;
  std::int64_t to = filter.to_ms;
  if (from == 0 || to == std::numeric_limits<std::int64_t>::max()) {
    Statement range(db, "SELECT min(f.ts), max(f.ts) FROM facts f WHERE " +
                            factsCondition(filter));
    bindFilter(range, filter);
    range.step();
    if (from == 0) {
      from = range.integer(0);
    }
    if (to == std::numeric_limits<std::int64_t>::max()) {
      to = range.integer(1) + 1;
    }
  }
  buckets = std::clamp(buckets, 1, 1000);
  // Buckets are whole minutes, so the chart's labels are round times.
  std::int64_t bucket_ms = std::max<std::int64_t>(60'000, (to - from + buckets - 1) / buckets);
  bucket_ms = (bucket_ms + 59'999) / 60'000 * 60'000;
  from = from / bucket_ms * bucket_ms;
  Statement rows(db, "SELECT (f.ts - :start) / :bucket AS b, count(*) FROM facts f WHERE " +
                         factsCondition(filter) + " GROUP BY b ORDER BY b");
  bindFilter(rows, filter);
  rows.bind(rows.parameter(":start"), from);
  rows.bind(rows.parameter(":bucket"), bucket_ms);
  std::string out;
  JsonWriter json(out);
  json.beginObject();
  json.member("bucket_ms", bucket_ms);
  json.member("from_ms", from);
  json.key("points");
  json.beginArray();
  while (rows.step()) {
    json.beginObject();
    json.member("t", from + rows.integer(0) * bucket_ms);
    json.member("count", rows.integer(1));
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
  Statement rows(db, fmt::format("SELECT f.{0}, count(*) AS n FROM facts f WHERE {1} AND "
                                 "f.{0} != '' GROUP BY f.{0} ORDER BY n DESC, f.{0} LIMIT :limit",
                                 column, factsCondition(filter)));
  bindFilter(rows, filter);
  rows.bind(rows.parameter(":limit"), static_cast<std::int64_t>(std::clamp(limit, 1, 1000)));
  std::string out;
  JsonWriter json(out);
  json.beginObject();
  json.member("field", column);
  if (field != TopField::kSource) {
    writeCountItems(json, rows);
    json.endObject();
    return out;
  }
  // GeoIP facts of each listed source come from its newest event, one
  // indexed read per source instead of a lookup for every counted row.
  Statement geo(db, "SELECT country, asn, as_org FROM facts WHERE source = ?1 "
                    "ORDER BY ts DESC LIMIT 1");
  json.key("items");
  json.beginArray();
  while (rows.step()) {
    json.beginObject();
    json.member("value", rows.text(0));
    json.member("count", rows.integer(1));
    geo.reset();
    geo.bind(1, rows.text(0));
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

std::string DashboardQueries::tags(const DashboardFilter& filter, TagKind kind,
                                   int limit) const {
  Database db(index_path_, true);
  // Without a filter on the facts, the tags table alone gives the counts
  // (index tags_kind_ts covers it).
  std::string sql =
      hasFactsFilter(filter)
          ? "SELECT t.value, count(*) AS n FROM tags t JOIN facts f ON f.seq = t.seq "
            "WHERE t.kind = :kind AND " + factsCondition(filter) +
                " GROUP BY t.value ORDER BY n DESC, t.value LIMIT :limit"
          : "SELECT t.value, count(*) AS n FROM tags t WHERE t.kind = :kind AND t.ts >= :from "
            "AND t.ts < :to GROUP BY t.value ORDER BY n DESC, t.value LIMIT :limit";
  Statement rows(db, sql);
  bindFilter(rows, filter);
  rows.bind(rows.parameter(":kind"), static_cast<std::int64_t>(kind));
  rows.bind(rows.parameter(":limit"), static_cast<std::int64_t>(std::clamp(limit, 1, 1000)));
  std::string out;
  JsonWriter json(out);
  json.beginObject();
  json.member("kind", tagKindName(kind));
  writeCountItems(json, rows);
  json.endObject();
  return out;
}

std::string DashboardQueries::geo(const DashboardFilter& filter, int limit) const {
  Database db(index_path_, true);
  Statement rows(db, "SELECT round(f.lat, 1) AS la, round(f.lon, 1) AS lo, count(*) AS n "
                     "FROM facts f WHERE " + factsCondition(filter) +
                     " AND f.lat IS NOT NULL GROUP BY la, lo ORDER BY n DESC LIMIT :limit");
  bindFilter(rows, filter);
  rows.bind(rows.parameter(":limit"), static_cast<std::int64_t>(std::clamp(limit, 1, 10000)));
  std::string out;
  JsonWriter json(out);
  json.beginObject();
  json.key("points");
  json.beginArray();
  while (rows.step()) {
    json.beginObject();
    json.key("lat");
    json.raw(fmt::format("{:.1f}", rows.real(0)));
    json.key("lon");
    json.raw(fmt::format("{:.1f}", rows.real(1)));
    json.member("count", rows.integer(2));
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
    std::int64_t last_seen_ms = 0;
    std::uint64_t records = 0;
    bool enrolled = false;
    bool revoked = false;
  };
  std::map<std::string, SensorRow, std::less<>> sensors;
  {
    Database db(index_path_, true);
    Statement rows(db, "SELECT f.sensor, count(*), max(f.ts) FROM facts f WHERE " +
                           factsCondition(filter) + " GROUP BY f.sensor");
    bindFilter(rows, filter);
    while (rows.step()) {
      SensorRow& row = sensors[std::string(rows.text(0))];
      row.events = rows.integer(1);
      row.newest_ms = rows.integer(2);
    }
  }
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
    json.member("enrolled", row.enrolled);
    json.member("revoked", row.revoked);
    json.member("last_seen_ms", row.last_seen_ms);
    json.member("records", static_cast<std::int64_t>(row.records));
    json.key("shipping_lag_ms");
    if (row.last_seen_ms > 0 && row.newest_ms > 0) {
      json.integer(std::max<std::int64_t>(0, row.last_seen_ms - row.newest_ms));
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
