// Renderings of the OAT ontology for people and other tools: a terminal
// table, JSON, the Markdown tables of docs/oat.md and a MISP taxonomy
// (machinetag.json). `webtrap oat` prints them; the MISP taxonomy shipped in
// data/misp/owasp-oat/ is this output, checked by a test.
#pragma once

#include <string>
#include <string_view>

#include "common/oat_ontology.h"

namespace webtrap::oat {

// MISP taxonomy namespace: tags read "owasp-oat:OAT-014".
inline constexpr std::string_view kMispNamespace = "owasp-oat";

// Returns the MISP tag for an OAT id: "owasp-oat:OAT-014".
std::string mispTagName(std::string_view oat_id);

// Returns a fixed-width table, one line per threat, for a terminal.
std::string renderTable(const Ontology& ontology);

// Returns the whole ontology as indented JSON: version, handbook, threats,
// request_rules, with the keys of data/oat/ontology.yaml.
std::string renderJson(const Ontology& ontology);

// Returns the Markdown tables that docs/oat.md embeds: the threats, the
// threats a honeypot cannot observe with the reason, and the request rules.
std::string renderMarkdown(const Ontology& ontology);

// Returns the MISP taxonomy (machinetag.json layout, indented): one predicate
// per OAT id with the handbook name as `expanded` and the summary plus CAPEC,
// WASC and ATT&CK references as `description`. The taxonomy version is the
// digits of the ontology version ("webtrap-oat-2026.12" gives 202612), so it
// grows with every ontology release. Throws std::invalid_argument when the
// ontology version contains no digits.
std::string renderMispTaxonomy(const Ontology& ontology);

// Returns the name-based UUID (RFC 9562 version 5, SHA-1) of `name` in
// `namespace_uuid`, both as text: MISP wants a stable uuid per predicate.
std::string uuidV5(std::string_view namespace_uuid, std::string_view name);

}  // namespace webtrap::oat
