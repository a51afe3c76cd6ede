// Event ids and the timestamps written into records.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace webtrap {

// Returns a UUIDv7 (RFC 9562) in the 36-character lowercase form. The first
// 48 bits are the Unix time in milliseconds, and the other 74 free bits come
// from a per-thread buffer of OpenSSL RAND_bytes output. Ids from one thread
// strictly increase, even when the clock steps back or many ids share one
// millisecond.
std::string newUuidV7();
std::string newUuidV7(std::chrono::system_clock::time_point now);

// Returns true for the 36-character UUID text form (8-4-4-4-12 hex digits),
// of any version and in either case.
bool isUuidText(std::string_view text);

// Returns the ISO 8601 UTC form with microseconds, such as
// "2026-12-04T12:00:00.123456Z".
std::string isoTimestamp(std::chrono::system_clock::time_point time);

// Returns isoTimestamp of `unix_ms`, milliseconds since the Unix epoch.
std::string isoTimestampFromUnixMs(std::int64_t unix_ms);

// Returns the asctime(3) form that libmodsecurity 3.0.9 writes into
// transaction.time_stamp, such as "Fri Dec  4 12:00:00 2026", but in UTC and
// computed with gmtime_r so it is safe from any thread.
std::string ctimeTimestamp(std::chrono::system_clock::time_point time);

}  // namespace webtrap
