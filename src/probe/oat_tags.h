// The probe's per-request OAT tags (webtrap.oat in its records), from the
// ModSecurity rules that matched, the baits the request touched and the
// persona route that served it.
#pragma once

#include <string_view>
#include <vector>

#include "common/oat_ontology.h"
#include "common/request_facts.h"
#include "probe/inspection.h"
#include "probe/response.h"

namespace webtrap::probe {

// Returns the request's OAT tags, one per OAT id, in order of id. A shed
// inspection has no rule matches, so its tags come from baits and the route
// alone. `host` is the request's Host header: a CRS attack match on a label
// of it, the site's own name, gives no tag (common/own_name.h).
std::vector<OatTag> tagProbeRequest(std::string_view method, std::string_view host,
                                    const RouteOutcome& outcome,
                                    const InspectionResult& inspection,
                                    const oat::Ontology& ontology = oat::Ontology::embedded());

// The same for a request without a Host header.
std::vector<OatTag> tagProbeRequest(std::string_view method, const RouteOutcome& outcome,
                                    const InspectionResult& inspection,
                                    const oat::Ontology& ontology = oat::Ontology::embedded());

}  // namespace webtrap::probe
