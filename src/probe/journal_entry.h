// The compact journal entry: what the I/O thread writes to the inspection
// journal for one request before its response, and how recovery rebuilds
// the audit record from it. See probe/journal.h for the file layout.
//
// An entry contains the inputs of serializeRecord() as length-prefixed
// binary fields: the captured request, the response, the route outcome and
// the record metadata. Writing it costs copies of the request's bytes
// instead of a JSON serialization with escaping and card number masking.
// Recovery inspects the decoded inputs with the probe's Inspector and runs
// serializeRecord() on them, which gives the record a pipeline worker would
// have written, marked recovered. When the inspection fails, it uses the
// inspection status "interrupted" instead.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "probe/capture.h"
#include "probe/inspection.h"
#include "probe/record.h"
#include "probe/response.h"

namespace webtrap::probe {

// The first byte of every encoded entry. Recovery rejects an entry with
// another value, so a change of the field layout must change it.
inline constexpr unsigned char kJournalEntryFormat = 1;

// Appends the encoded entry of one request to `out`. The event id of
// `meta` is not encoded: the journal line carries it.
void encodeJournalEntry(std::string& out, const CapturedRequest& request,
                        const PersonaResponse& response, const RouteOutcome& outcome,
                        const RecordMeta& meta);

// The inputs of serializeRecord() decoded from an entry.
struct JournalEntry {
  CapturedRequest request;
  PersonaResponse response;
  RouteOutcome outcome;
  RecordMeta meta;
};

// Decodes an entry written by encodeJournalEntry(), with `event_id` as its
// meta.event_id. Returns std::nullopt, with the reason in `reason`, when
// the entry has another format byte, ends early or has bytes left over.
std::optional<JournalEntry> decodeJournalEntry(std::string_view encoded,
                                               std::string_view event_id, std::string& reason);

// Returns the inspection result of a request recovered from the journal
// without inspection: status "interrupted", marked recovered, no matches,
// and an error that names the journal.
InspectionResult interruptedInspection();

// Returns the record of a request recovered from the journal:
// serializeRecord() of the decoded entry with interruptedInspection().
std::string serializeInterruptedRecord(const JournalEntry& entry);

}  // namespace webtrap::probe
