#include "probe/oat_tags.h"

#include "common/oat_tagging.h"
#include "common/own_name.h"

namespace webtrap::probe {

std::vector<OatTag> tagProbeRequest(std::string_view method, std::string_view host,
                                    const RouteOutcome& outcome,
                                    const InspectionResult& inspection,
                                    const oat::Ontology& ontology) {
  oat::RequestEvidence evidence;
  // A failed inspection may still have returned some matches. They are real
  // matches, so they count. A shed request has none.
  for (const RuleMatch& match : inspection.matches) {
    if (oat::isOwnNameMatch(match.id, match.data, host)) {
      continue;
    }
    evidence.rule_ids.push_back(match.id);
    evidence.rule_data.push_back(match.data);
    for (const std::string& tag : match.tags) {
      evidence.rule_tags.push_back(tag);
    }
  }
  for (const BaitHit& hit : outcome.baits) {
    evidence.bait_kinds.push_back(hit.kind);
  }
  evidence.route_kind = outcome.route_kind;
  evidence.method = method;
  if (!outcome.form.kind.empty()) {
    evidence.form = &outcome.form;
  }
  return oat::tagRequest(evidence, ontology);
}

std::vector<OatTag> tagProbeRequest(std::string_view method, const RouteOutcome& outcome,
                                    const InspectionResult& inspection,
                                    const oat::Ontology& ontology) {
  return tagProbeRequest(method, {}, outcome, inspection, ontology);
}

}  // namespace webtrap::probe
