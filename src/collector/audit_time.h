// Time stamp parsing for the audit record decoders: the asctime(3) layout of
// libmodsecurity v3 (local time, no zone), ISO 8601 (webtrap) and Apache's
// common log layout (mod_security2), all to UTC microseconds.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace date {
class time_zone;
}

namespace webtrap::collector {

class TimeZone {
 public:
  // `zone` nullptr means UTC without the time zone database.
  explicit TimeZone(const date::time_zone* zone) : zone_(zone) {}

  // UTC that works without the time zone database (no tzdata package).
  static const TimeZone& utc();

  const std::string& name() const;

  // Converts a wall-clock time in this zone, given as seconds since
  // 1970-01-01T00:00:00 of that wall clock, to seconds since the Unix epoch.
  // NOTE: a wall-clock time that occurs twice (when daylight saving time
  // ends) is taken as the earlier instant, and one that never occurs (when it
  // starts) as the instant the clocks change.
  std::int64_t toUtcSeconds(std::int64_t local_seconds) const;

 private:
  const date::time_zone* zone_;
};

// Returns the number of days from 1970-01-01 to the given date of the
// proleptic Gregorian calendar (negative before it).
std::int64_t daysFromCivil(std::int64_t year, unsigned month, unsigned day);

// Parses "Fri Dec  4 15:41:52 2026" (the day of the month may be padded with
// a space or a zero) to wall-clock seconds since 1970-01-01T00:00:00, without
// a zone. The weekday name is checked for form, not against the date.
std::optional<std::int64_t> parseCtimeWallSeconds(std::string_view text);

// Parses ISO 8601 with a zone, "2026-12-04T12:00:00.123456Z" or
// "2026-12-04T13:00:00+01:00", with 0 to 9 fraction digits, to UTC
// microseconds since the Unix epoch.
std::optional<std::int64_t> parseIsoMicros(std::string_view text);

// Parses Apache's "04/Dec/2026:15:48:57.030246 +0000" (fraction optional),
// as mod_security2 writes transaction.time, to UTC microseconds.
std::optional<std::int64_t> parseApacheMicros(std::string_view text);

}  // namespace webtrap::collector
