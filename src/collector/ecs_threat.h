// The OWASP Automated Threat (OAT) part of the collector's ECS document:
// threat.framework and threat.technique.* for searching and charting, and
// webtrap.oat[] with every tag whole.
#pragma once

#include <span>
#include <vector>

#include "collector/audit_record.h"
#include "common/json_writer.h"
#include "common/request_facts.h"

namespace webtrap::collector {

// ECS threat.framework of every tag webtrap writes.
inline constexpr std::string_view kOatFramework = "OWASP OAT";

// Returns the record's per-request tags: the probe's own (webtrap.oat), or,
// when the record carries none (ModSecurity records, probe records from
// before probes tagged), the ontology's request rules applied to its rule
// ids, rule tags and bait hits. Route rules never apply here, because the
// decoded record carries no persona route kind.
std::vector<OatTag> recordOatTags(const AuditRecord& record);

// Returns the record's tags merged with `behaviour_tags`: one tag per OAT id,
// the highest confidence kept, in order of OAT id.
std::vector<OatTag> documentOatTags(const AuditRecord& record,
                                    std::span<const OatTag> behaviour_tags);

// Writes the top-level `threat` object for `tags`; nothing when empty.
void writeEcsThreat(JsonWriter& writer, std::span<const OatTag> tags);

// Writes the `oat` member of the document's webtrap object; nothing when
// `tags` is empty.
void writeWebtrapOat(JsonWriter& writer, std::span<const OatTag> tags);

}  // namespace webtrap::collector
