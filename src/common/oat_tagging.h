// Per-request OAT tagging, shared by the probe (which tags its own records)
// and the collector (which tags ModSecurity records and probe records
// written before probes tagged them): the same ontology rules give the same
// tags wherever they run.
#pragma once

#include <span>
#include <string_view>
#include <vector>

#include "common/oat_ontology.h"
#include "common/request_facts.h"

namespace webtrap::oat {

// The evidence one request gives the tagger.
struct RequestEvidence {
  std::vector<std::string_view> rule_ids;    // ModSecurity rule ids that matched
  std::vector<std::string_view> rule_data;   // each rule's matched data, same order (may be shorter)
  std::vector<std::string_view> rule_tags;   // tags of those rules ('webtrap/bait/<kind>' counts)
  std::vector<std::string_view> bait_kinds;  // probe bait hits: robots_trap, cookie, ...
  std::string_view route_kind;               // persona route kind, empty when unknown
  std::string_view method;                   // request method as sent
  const FormFacts* form = nullptr;           // the submitted form, when there was one
};

// Returns the tags that the ontology's request rules give `evidence`, basis
// "rule", one per OAT id (highest confidence kept), in order of OAT id.
std::vector<OatTag> tagRequest(const RequestEvidence& evidence,
                               const Ontology& ontology = Ontology::embedded());

// Adds `more` to `tags`, keeping one tag per OAT id: the one with the highest
// confidence, the earlier one on a tie. Leaves `tags` sorted by OAT id.
void mergeOatTags(std::vector<OatTag>& tags, std::span<const OatTag> more);

}  // namespace webtrap::oat
