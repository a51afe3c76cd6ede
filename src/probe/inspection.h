// Results of inspecting one request with ModSecurity.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace webtrap::probe {

// One rule message read back from the transaction after processLogging().
struct RuleMatch {
  std::string id;
  std::string message;
  std::string data;
  std::string match;       // libmodsecurity's description of the match
  std::string reference;
  std::string file;
  int line = 0;
  int phase = 0;
  int severity = -1;       // syslog level 0-7, -1 when the rule sets none
  std::string version;     // rule `ver`, such as "OWASP_CRS/3.3.4"
  std::string revision;
  int maturity = 0;
  int accuracy = 0;
  std::vector<std::string> tags;
};

enum class InspectionStatus {
  kComplete,  // every phase ran
  kCached,    // the same inspected bytes were seen before; matches copied
  kShed,      // the queue was full, so the request was recorded uninspected
  kFailed,    // libmodsecurity returned an error, named in `error`
  // Recorded uninspected from the inspection journal at the start after the
  // probe was killed (SIGKILL, a crash) while the request was queued,
  // because its inspection at the start failed or was not possible.
  kInterrupted,
};

const char* toString(InspectionStatus status);

// Limits on the rule match text kept for one request. libmodsecurity 3.0.9
// reports some rules (CRS 942100) once per matched variable, and each copy
// carries the `reference` text of every variable that rule matched before
// it. So n matching fields give about n^2 / 2 reference entries: a 65 KB
// form of 1000 such fields gave a 5.3 MB record without these limits.
struct MatchDetailLimits {
  // Bytes of each of message, data, match and reference, marker included.
  std::size_t max_string_bytes = 2048;
  // Estimated JSON bytes of all matches of one request (see
  // boundMatchDetails). Past it, repeats of a rule id are dropped and the
  // first match of each further rule id keeps kReducedStringBytes per string.
  std::size_t max_total_bytes = 64 * 1024;
};

// Strings of a match past the total budget keep at most this many bytes.
inline constexpr std::size_t kReducedStringBytes = 256;

// Counts of what boundMatchDetails cut from one request's matches.
struct MatchDetailCuts {
  std::uint64_t truncated_strings = 0;  // kept strings that end in the marker
  // Kept past the budget, with at least one text cut to kReducedStringBytes.
  std::uint64_t reduced_matches = 0;
  std::uint64_t omitted_matches = 0;    // repeats of a rule id dropped past the budget

  bool any() const { return truncated_strings + reduced_matches + omitted_matches > 0; }
};

struct InspectionResult {
  InspectionStatus status = InspectionStatus::kShed;
  std::vector<RuleMatch> matches;
  std::string error;
  std::int64_t duration_us = 0;
  int anomaly_score = 0;  // TX:ANOMALY_SCORE after the request phases
  MatchDetailCuts details_cut;
  // Whether the record is rebuilt from the inspection journal at the start
  // after an unclean stop (webtrap.inspection.recovered). Such a record is
  // inspected then, or has status kInterrupted.
  bool recovered = false;
};

// Cuts `text` to at most `max_bytes` bytes (at least kMinTruncatedBytes),
// ending in " [truncated by webtrap from N bytes]" with N the length before
// the cut. Cuts at a UTF-8 character boundary, and masks card numbers in the
// kept part first, so that a number cut in half shows no more digits than
// the record writer would show of the whole one. Returns true when it cut.
bool truncateMatchText(std::string& text, std::size_t max_bytes);

// Smallest useful max_bytes for truncateMatchText: the marker and some text.
inline constexpr std::size_t kMinTruncatedBytes = 128;

// Bounds the rule match text of one request in place. Message, data, match
// and reference are cut to limits.max_string_bytes. Then matches are charged against
// limits.max_total_bytes: first the first match of each rule id in order,
// then the repeats. A repeat that does not fit is dropped, and a first match
// that does not fit keeps only kReducedStringBytes per string, so every rule
// id that fired keeps one match with its severity, tags and phase. Matches
// keep their order. The size is bounded by max_total_bytes plus about
// 1.5 KB per distinct rule id past the budget.
MatchDetailCuts boundMatchDetails(std::vector<RuleMatch>& matches, const MatchDetailLimits& limits);

}  // namespace webtrap::probe
