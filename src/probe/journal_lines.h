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
std::string makeLine(char kind, std::string_view first, std::string_view second);

struct ParsedLine {
  char kind = 0;
  std::string_view payload;
};

// Parses one line without its newline. Returns std::nullopt, with the
// reason in `reason`, when the line is damaged.
std::optional<ParsedLine> parseLine(std::string_view line, const char*& reason);

// Returns the numbers of the journal files in `dir`, in write order.
// Throws ConfigError when the folder cannot be listed.
std::vector<std::uint64_t> listJournalFiles(const std::filesystem::path& dir);

Counter& recoveredCounter(MetricsRegistry& metrics);
Counter& damagedCounter(MetricsRegistry& metrics);

}  // namespace webtrap::probe::journal_lines
