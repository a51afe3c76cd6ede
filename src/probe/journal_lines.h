// The line format and file names of the inspection journal, shared by the
// journal writer (journal.cpp) and its recovery (journal_recovery.cpp).
// The layout is described in probe/journal.h.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/metrics.h"

namespace webtrap::probe::journal_lines {

// Returns the number in a journal file name, or 0 when the name is not one.
std::uint64_t parseJournalFileName(std::string_view name);

// Returns one journal line: kind, CRC of the payload, payload, newline. The
// payload is `first`, then a space and `second` unless `second` is empty.
// Neither may contain a newline.
std::string makeLine(char kind, std::string_view first, std::string_view second);

// Returns the entry line of `entry`: "R <crc> <event id> <escaped entry>"
// and a newline. Escaping writes each backslash as two backslashes and each
// newline byte as a backslash and 'n', so that any bytes fit on one line.
std::string makeEntryLine(std::string_view event_id, std::string_view entry);

// Reverses the escaping of makeEntryLine() into `entry`. Returns false when
// a backslash is followed by anything but 'n' or a backslash.
bool unescapeEntry(std::string_view escaped, std::string& entry);

// Line kinds. kLegacyEntry lines were written by probes before the compact
// entry. Recovery still reads them.
inline constexpr char kEntry = 'R';
inline constexpr char kLegacyEntry = 'E';
inline constexpr char kDone = 'D';

struct ParsedLine {
  char kind = 0;
  std::string_view payload;
};

// Parses one line without its newline. Returns std::nullopt, with the
// reason in `reason`, when the line is damaged.
std::optional<ParsedLine> parseLine(std::string_view line, const char*& reason);

// Returns the numbers of the names in `dir` that are journal file names, in
// write order, whatever the file type (symbolic links too).
// Throws ConfigError when the folder cannot be listed.
std::vector<std::uint64_t> listJournalFiles(const std::filesystem::path& dir);

// The reason recovery recorded an entry uninspected, the reason label of
// webtrap_journal_records_uninspected_total: no inspection was given
// ("no_inspector"), an E line has no inputs to inspect ("legacy_entry"),
// RecoveryOptions::max_inspections was reached ("limit"), or the
// inspection failed ("failed").
enum class Uninspected { kNoInspector, kLegacyEntry, kLimit, kFailed };
inline constexpr Uninspected kUninspectedReasons[] = {
    Uninspected::kNoInspector, Uninspected::kLegacyEntry, Uninspected::kLimit,
    Uninspected::kFailed};

Counter& recoveredCounter(MetricsRegistry& metrics);
Counter& inspectedCounter(MetricsRegistry& metrics);
Counter& uninspectedCounter(MetricsRegistry& metrics, Uninspected reason);
Counter& damagedCounter(MetricsRegistry& metrics);
Counter& rejectedCounter(MetricsRegistry& metrics);
Counter& skippedFilesCounter(MetricsRegistry& metrics);
Counter& oversizedFilesCounter(MetricsRegistry& metrics);

}  // namespace webtrap::probe::journal_lines
