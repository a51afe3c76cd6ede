// Results of inspecting one request with ModSecurity.
#pragma once

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
  // probe was killed (SIGKILL, a crash) while the request was queued.
  kInterrupted,
};

const char* toString(InspectionStatus status);

struct InspectionResult {
  InspectionStatus status = InspectionStatus::kShed;
  std::vector<RuleMatch> matches;
  std::string error;
  std::int64_t duration_us = 0;
  int anomaly_score = 0;  // TX:ANOMALY_SCORE after the request phases
};

}  // namespace webtrap::probe
