// Splitting of NDJSON text into lines, so that the ingest paths and the
// Kibana saved-objects reader cut a body at the same places.
#pragma once

#include <cstddef>
#include <string_view>

namespace webtrap {

// Calls `visit(line)` for each line of `text`, without its '\n'. A last line
// with no '\n' after it is visited too, and an empty `text` has no lines:
// "a\n" has one line, "a\n\n" has two ("a" and ""). Each line is a view
// into `text`.
template <class Visit>
void forEachLine(std::string_view text, Visit&& visit) {
  std::size_t start = 0;
  while (start < text.size()) {
    std::size_t end = text.find('\n', start);
    if (end == std::string_view::npos) {
      end = text.size();
    }
    visit(text.substr(start, end - start));
    start = end + 1;
  }
}

// Calls `visit(record)` for each record line of an NDJSON ingest body: each
// line of forEachLine() with one trailing '\r' removed. A line that is then
// empty or only spaces and tabs contains no record and is skipped.
template <class Visit>
void forEachRecordLine(std::string_view text, Visit&& visit) {
  forEachLine(text, [&](std::string_view line) {
    if (!line.empty() && line.back() == '\r') {
      line.remove_suffix(1);
    }
    if (line.find_first_not_of(" \t") != std::string_view::npos) {
      visit(line);
    }
  });
}

}  // namespace webtrap
