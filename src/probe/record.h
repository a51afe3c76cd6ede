// Serializes one audit record: the libmodsecurity v3 JSON audit layout plus a
// top-level "webtrap" object with what ModSecurity does not know.
#pragma once

#include <string>
#include <vector>

#include "probe/capture.h"
#include "probe/inspection.h"
#include "probe/response.h"

namespace webtrap::probe {

struct RecordMeta {
  std::string event_id;   // UUIDv7, also the transaction unique_id
  std::string sensor_id;
  std::string sensor_group;
  std::string persona;
  std::string product;    // server software the persona imitates
  std::string engine_version;           // "ModSecurity v3.0.9 (Linux)"
  std::vector<std::string> components;  // rule set components
  std::string secrules_engine = "DetectionOnly";
};

// Returns one JSON object on one line, without the trailing newline. Strings
// that are not valid UTF-8 are written with U+FFFD in place of each invalid
// byte, and their exact bytes go base64-encoded under webtrap.encoded, keyed
// by the JSON pointer of the string.
std::string serializeRecord(const CapturedRequest& request, const PersonaResponse& response,
                            const RouteOutcome& outcome, const InspectionResult& inspection,
                            const RecordMeta& meta);

}  // namespace webtrap::probe
