// The read-only queries behind the built-in dashboard. Each returns one JSON
// document (RFC 8259, built with JsonWriter) for one panel, counted from the
// dashboard index (dashboard_index.h) and, for health and the detail view,
// from the store.
#pragma once

#include <cstdint>
#include <filesystem>
#include <limits>
#include <optional>
#include <string>
#include <string_view>

#include "collector/dashboard_index.h"
#include "collector/store.h"

namespace webtrap::collector {

// Filters shared by every panel. Empty strings match everything. Times are
// event times in ms since the epoch, `from_ms` included, `to_ms` excluded.
// Event times come from the records, so they may lie before 1970: the
// default range is open at both ends, and negative times are valid.
struct DashboardFilter {
  std::int64_t from_ms = std::numeric_limits<std::int64_t>::min();
  std::int64_t to_ms = std::numeric_limits<std::int64_t>::max();
  std::string sensor;
  std::string oat;     // an OAT id such as OAT-014
  std::string source;  // a client address as stored in source.ip
};

// How far past the current time an open timeline range reaches, because
// sensor clocks may run a little ahead of the collector's.
inline constexpr std::int64_t kTimelineFutureSlackMs = 3'600'000;

// How far before the collector received its oldest stored event an open
// timeline range starts. Record times are what the sensors claim, so one
// record dated 1970 would otherwise stretch the buckets over decades.
// Receive times come from the collector's own clock. The slack keeps
// records on the timeline that a sensor's spool held for up to 7 days
// while the collector was out of reach.
inline constexpr std::int64_t kTimelinePastSlackMs = 7 * 86'400'000LL;

// Columns the top-N panel can count by.
enum class TopField { kSource, kPath, kUserAgent, kCountry };

// Counts come from the index's rollups (hours and days) and, for the parts
// of the range at its edges and for a source filter, from the raw rows, so
// they are exact. The work per query grows with the days in the range and
// the events in its edge days, not with all events in range.
class DashboardQueries {
 public:
  // `index_path` is the file of a DashboardIndex; it is opened read-only on
  // each call, so one DashboardQueries serves any number of threads.
  DashboardQueries(std::filesystem::path index_path, Store& store);

  // {"events", "sources", "first_ms", "last_ms"}
  std::string summary(const DashboardFilter& filter) const;
  // {"bucket_ms", "from_ms", "to_ms", "open_from_ms", "earlier_events",
  // "later_events", "points": [{"t", "count"}]}: events per time bucket,
  // about `buckets` buckets over the filter's range, or over the events' own
  // range where the filter has no end. An open end stops at `now_ms` plus
  // kTimelineFutureSlackMs, and an open start (`from_ms` at the int64
  // minimum) at the store's oldest receive time minus kTimelinePastSlackMs
  // ("open_from_ms", null for an explicit start or an empty store). So one
  // record dated far ahead or far back does not stretch the buckets.
  // "later_events" and "earlier_events" count the events left out past
  // those ends (0 for an explicit end).
  std::string timeline(const DashboardFilter& filter, int buckets, std::int64_t now_ms) const;
  // {"field", "items": [{"value", "count"}]}, most frequent first. Sources
  // also carry "country", "asn" and "as_org" from their latest event.
  std::string top(const DashboardFilter& filter, TopField field, int limit) const;
  // {"kind", "items": [{"value", "count"}]}: events per OAT id, CRS
  // category or bait.
  std::string tags(const DashboardFilter& filter, TagKind kind, int limit) const;
  // {"points": [{"lat", "lon", "count"}]}: events per location rounded to
  // 0.1 degree, only for events with GeoIP coordinates.
  std::string geo(const DashboardFilter& filter, int limit) const;
  // {"sensors": [...], "outputs": [...]}: per sensor the events in range,
  // the time of its newest event, how far that lies after the collector's
  // clock (newest_event_ahead_ms: after the last receipt from the sensor,
  // or after `now_ms` without one), when the collector last received from
  // it, and the shipping lag: the last receipt minus the newest event dated
  // no later than it. Per output, its queue depth and lag.
  std::string health(const DashboardFilter& filter, std::int64_t now_ms) const;
  // {"events": [...]}: the newest events, newest first, with their tags.
  std::string feed(const DashboardFilter& filter, int limit) const;
  // The whole stored ECS document of one event, nullopt when not found.
  std::optional<std::string> event(std::string_view event_id) const;

 private:
  std::filesystem::path index_path_;
  Store& store_;
};

}  // namespace webtrap::collector
