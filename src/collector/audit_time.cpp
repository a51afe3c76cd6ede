#include "collector/audit_time.h"

#include <chrono>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>

#include <date/tz.h>
#include <spdlog/spdlog.h>

#include "collector/audit_record.h"

namespace webtrap::collector {

namespace {

constexpr std::string_view kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                        "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
constexpr std::string_view kWeekdays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};

constexpr std::int64_t kSecondsPerDay = 86400;

// Reads exactly `count` decimal digits at `pos`, advancing it.
bool readDigits(std::string_view text, std::size_t& pos, std::size_t count, unsigned& value) {
  if (pos + count > text.size()) {
    return false;
  }
  value = 0;
  for (std::size_t i = 0; i < count; ++i) {
    char c = text[pos + i];
    if (c < '0' || c > '9') {
      return false;
    }
    value = value * 10 + static_cast<unsigned>(c - '0');
  }
  pos += count;
  return true;
}

// Reads 1 to 9 fraction digits at `pos` as microseconds (digits past the
// sixth are dropped).
bool readFraction(std::string_view text, std::size_t& pos, std::int64_t& micros) {
  std::size_t start = pos;
  micros = 0;
  std::int64_t scale = 100000;
  while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') {
    if (pos - start >= 9) {
      return false;
    }
    micros += (text[pos] - '0') * scale;
    scale /= 10;
    ++pos;
  }
  return pos > start;
}

bool readChar(std::string_view text, std::size_t& pos, char expected) {
  if (pos < text.size() && text[pos] == expected) {
    ++pos;
    return true;
  }
  return false;
}

int monthIndex(std::string_view name) {
  for (int i = 0; i < 12; ++i) {
    if (kMonths[i] == name) {
      return i + 1;
    }
  }
  return 0;
}

unsigned daysInMonth(std::int64_t year, unsigned month) {
  static constexpr unsigned kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
  return month == 2 && leap ? 29 : kDays[month - 1];
}

// Returns wall-clock seconds for a checked calendar date and time, or
// nullopt when a field is out of range. A leap second (60) is accepted and
// counted as the next second, as POSIX time does.
std::optional<std::int64_t> wallSeconds(std::int64_t year, unsigned month, unsigned day,
                                        unsigned hour, unsigned minute, unsigned second) {
  if (month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month) || hour > 23 ||
      minute > 59 || second > 60) {
    return std::nullopt;
  }
  return daysFromCivil(year, month, day) * kSecondsPerDay + hour * 3600 + minute * 60 + second;
}

// Reads "+HH:MM", "+HHMM", "-..." or "Z" at `pos` as an offset in seconds.
bool readZoneOffset(std::string_view text, std::size_t& pos, std::int64_t& offset) {
  if (readChar(text, pos, 'Z') || readChar(text, pos, 'z')) {
    offset = 0;
    return true;
  }
  if (pos >= text.size() || (text[pos] != '+' && text[pos] != '-')) {
    return false;
  }
  int sign = text[pos] == '-' ? -1 : 1;
  ++pos;
  unsigned hours = 0;
  unsigned minutes = 0;
  if (!readDigits(text, pos, 2, hours)) {
    return false;
  }
  readChar(text, pos, ':');
  if (!readDigits(text, pos, 2, minutes) || hours > 23 || minutes > 59) {
    return false;
  }
  offset = sign * static_cast<std::int64_t>(hours * 3600 + minutes * 60);
  return true;
}

struct ZoneCache {
  std::mutex mutex;
  std::map<std::string, std::unique_ptr<TimeZone>, std::less<>> zones;
};

ZoneCache& zoneCache() {
  static ZoneCache cache;
  return cache;
}

const TimeZone* findOrAddZone(std::string_view name) {
  ZoneCache& cache = zoneCache();
  std::lock_guard lock(cache.mutex);
  auto found = cache.zones.find(name);
  if (found != cache.zones.end()) {
    return found->second.get();
  }
  const date::time_zone* zone = nullptr;
  try {
    zone = date::locate_zone(name);
  } catch (const std::exception&) {
    return nullptr;
  }
  auto inserted =
      cache.zones.emplace(std::string(name), std::make_unique<TimeZone>(zone)).first;
  return inserted->second.get();
}

const TimeZone* detectLocalZone() {
  const char* tz = std::getenv("TZ");
  if (tz != nullptr && *tz != '\0') {
    std::string_view name(tz);
    // POSIX allows a leading colon before a zone file name.
    if (name.front() == ':') {
      name.remove_prefix(1);
    }
    if (const TimeZone* zone = findOrAddZone(name)) {
      return zone;
    }
    spdlog::warn("TZ='{}' is not a zone of the time zone database; using /etc/localtime", tz);
  }
  try {
    const date::time_zone* current = date::current_zone();
    if (const TimeZone* zone = findOrAddZone(current->name())) {
      return zone;
    }
  } catch (const std::exception& error) {
    spdlog::warn("cannot read the local time zone ({}); reading zoneless time stamps as UTC",
                 error.what());
  }
  if (const TimeZone* zone = findOrAddZone("Etc/UTC")) {
    return zone;
  }
  spdlog::warn("the time zone database has no Etc/UTC zone, so the tzdata package is missing; "
               "reading zoneless time stamps as UTC, and the timezone setting cannot work");
  return &TimeZone::utc();
}

}  // namespace

const TimeZone& TimeZone::utc() {
  static const TimeZone zone(nullptr);
  return zone;
}

const std::string& TimeZone::name() const {
  static const std::string kUtc = "UTC";
  return zone_ != nullptr ? zone_->name() : kUtc;
}

std::int64_t TimeZone::toUtcSeconds(std::int64_t local_seconds) const {
  if (zone_ == nullptr) {
    return local_seconds;
  }
  // Records of one log mostly share the minute, so each thread keeps the
  // offset of the last wall-clock minute it converted. Zone transitions fall
  // on whole minutes, so one minute has one offset.
  struct LastOffset {
    const TimeZone* zone = nullptr;
    std::int64_t minute = 0;
    std::int64_t offset = 0;
  };
  thread_local LastOffset last;
  std::int64_t minute = local_seconds >= 0 ? local_seconds / 60 : (local_seconds - 59) / 60;
  if (last.zone == this && last.minute == minute) {
    return local_seconds - last.offset;
  }
  using namespace std::chrono;
  date::local_seconds local{seconds(local_seconds)};
  std::int64_t utc =
      zone_->to_sys(local, date::choose::earliest).time_since_epoch().count();
  last = {this, minute, local_seconds - utc};
  return utc;
}

std::int64_t daysFromCivil(std::int64_t year, unsigned month, unsigned day) {
  // Howard Hinnant's days_from_civil algorithm: count from 0000-03-01 so the
  // leap day ends each 400-year era.
  year -= month <= 2 ? 1 : 0;
  const std::int64_t era = (year >= 0 ? year : year - 399) / 400;
  const std::int64_t year_of_era = year - era * 400;
  const std::int64_t day_of_year = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1;
  const std::int64_t day_of_era =
      year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
  return era * 146097 + day_of_era - 719468;
}

std::optional<std::int64_t> parseCtimeWallSeconds(std::string_view text) {
  // "Www Mmm dd hh:mm:ss yyyy"; the day is "%2d" (space-padded), but some
  // writers pad with a zero or not at all.
  if (text.size() < 20 || text[3] != ' ' || text[7] != ' ') {
    return std::nullopt;
  }
  bool weekday_known = false;
  for (std::string_view name : kWeekdays) {
    weekday_known = weekday_known || text.substr(0, 3) == name;
  }
  int month = monthIndex(text.substr(4, 3));
  if (!weekday_known || month == 0) {
    return std::nullopt;
  }
  std::size_t pos = 8;
  if (text[pos] == ' ') {
    ++pos;
  }
  unsigned day = 0;
  unsigned digit = 0;
  if (!readDigits(text, pos, 1, day)) {
    return std::nullopt;
  }
  if (readDigits(text, pos, 1, digit)) {
    day = day * 10 + digit;
  }
  unsigned hour = 0;
  unsigned minute = 0;
  unsigned second = 0;
  if (!readChar(text, pos, ' ') || !readDigits(text, pos, 2, hour) || !readChar(text, pos, ':') ||
      !readDigits(text, pos, 2, minute) || !readChar(text, pos, ':') ||
      !readDigits(text, pos, 2, second) || !readChar(text, pos, ' ')) {
    return std::nullopt;
  }
  unsigned year = 0;
  if (!readDigits(text, pos, 4, year) || pos != text.size()) {
    return std::nullopt;
  }
  return wallSeconds(year, static_cast<unsigned>(month), day, hour, minute, second);
}

std::optional<std::int64_t> parseIsoMicros(std::string_view text) {
  std::size_t pos = 0;
  unsigned year = 0;
  unsigned month = 0;
  unsigned day = 0;
  unsigned hour = 0;
  unsigned minute = 0;
  unsigned second = 0;
  if (!readDigits(text, pos, 4, year) || !readChar(text, pos, '-') ||
      !readDigits(text, pos, 2, month) || !readChar(text, pos, '-') ||
      !readDigits(text, pos, 2, day)) {
    return std::nullopt;
  }
  if (!readChar(text, pos, 'T') && !readChar(text, pos, 't') && !readChar(text, pos, ' ')) {
    return std::nullopt;
  }
  if (!readDigits(text, pos, 2, hour) || !readChar(text, pos, ':') ||
      !readDigits(text, pos, 2, minute) || !readChar(text, pos, ':') ||
      !readDigits(text, pos, 2, second)) {
    return std::nullopt;
  }
  std::int64_t micros = 0;
  if (readChar(text, pos, '.') && !readFraction(text, pos, micros)) {
    return std::nullopt;
  }
  std::int64_t offset = 0;
  if (!readZoneOffset(text, pos, offset) || pos != text.size()) {
    return std::nullopt;
  }
  auto wall = wallSeconds(year, month, day, hour, minute, second);
  if (!wall) {
    return std::nullopt;
  }
  return (*wall - offset) * 1000000 + micros;
}

std::optional<std::int64_t> parseApacheMicros(std::string_view text) {
  std::size_t pos = 0;
  unsigned day = 0;
  unsigned year = 0;
  unsigned hour = 0;
  unsigned minute = 0;
  unsigned second = 0;
  if (!readDigits(text, pos, 2, day) || !readChar(text, pos, '/') || pos + 4 > text.size()) {
    return std::nullopt;
  }
  int month = monthIndex(text.substr(pos, 3));
  pos += 3;
  if (month == 0 || !readChar(text, pos, '/') || !readDigits(text, pos, 4, year) ||
      !readChar(text, pos, ':') || !readDigits(text, pos, 2, hour) || !readChar(text, pos, ':') ||
      !readDigits(text, pos, 2, minute) || !readChar(text, pos, ':') ||
      !readDigits(text, pos, 2, second)) {
    return std::nullopt;
  }
  std::int64_t micros = 0;
  if (readChar(text, pos, '.') && !readFraction(text, pos, micros)) {
    return std::nullopt;
  }
  std::int64_t offset = 0;
  if (!readChar(text, pos, ' ') || !readZoneOffset(text, pos, offset) || pos != text.size()) {
    return std::nullopt;
  }
  auto wall = wallSeconds(year, static_cast<unsigned>(month), day, hour, minute, second);
  if (!wall) {
    return std::nullopt;
  }
  return (*wall - offset) * 1000000 + micros;
}

const TimeZone* findTimeZone(std::string_view name) {
  if (name.empty()) {
    return nullptr;
  }
  return findOrAddZone(name);
}

const TimeZone* localTimeZone() {
  static const TimeZone* zone = detectLocalZone();
  return zone;
}

}  // namespace webtrap::collector
