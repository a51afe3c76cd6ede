// The OWASP Automated Threats (OAT) ontology as webtrap ships it: one data
// file (data/oat/ontology.yaml), compiled into the binary, from which the
// probe's per-request tags, the collector's behavioural tags, the ECS fields,
// the MISP taxonomy and the docs all come.
#pragma once

#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/request_facts.h"

namespace webtrap::oat {

struct Threat {
  std::string id;       // "OAT-001" to "OAT-021"
  std::string name;     // handbook v1.3 name
  std::string summary;  // one sentence, in webtrap's own words
  std::vector<std::string> capec;   // "CAPEC-112"
  std::vector<std::string> wasc;    // "WASC-11"
  std::vector<std::string> attack;  // MITRE ATT&CK technique ids
  bool observable = true;  // false when a honeypot cannot see it (OAT-012)
  std::string unobservable_reason;  // why not, when observable is false
  std::string reference;            // URL of the threat's page at OWASP
};

// One per-request rule of the ontology: what a CRS rule family, a bait kind or
// a persona route maps to.
struct RequestRule {
  std::string source;   // "crs", "bait" or "route"
  std::string match;    // CRS rule id or id prefix ("942"), bait kind, or "login POST"
  std::string oat;      // "OAT-014"
  double confidence = 0.0;
  std::vector<std::string> attack;
  // Route rules only: "links" applies the rule only when the submitted form
  // contains at least one URL; empty applies it always.
  std::string condition;
  // CRS rules only: when not empty, the rule applies only when the rule
  // message's matched data contains one of these (ASCII case-insensitive),
  // such as a scanner name that CRS 913100 found in the User-Agent.
  std::vector<std::string> data;
  std::string note;  // what the evidence means, for docs and tables
};

class Ontology {
 public:
  // The ontology compiled into this binary. Throws std::logic_error only if
  // the embedded data is broken, which a unit test rules out.
  static const Ontology& embedded();

  // Parses ontology YAML in the layout of data/oat/ontology.yaml. Throws
  // std::invalid_argument naming the entry and the problem for data that is
  // not well-formed, lacks a field, or names an unknown OAT id.
  static Ontology fromYaml(std::string_view text);

  // The YAML text compiled into this binary.
  static std::string_view embeddedYaml();

  const std::string& version() const;           // stamped on every tag
  const std::string& handbookVersion() const;   // "1.3"
  const std::string& handbookName() const;
  const std::string& handbookUrl() const;       // the OWASP project page
  std::span<const Threat> threats() const;      // OAT-001 .. OAT-021, in order
  const Threat* find(std::string_view id) const;
  std::span<const RequestRule> requestRules() const;

  // Builds a tag for `id` with the threat's name, ATT&CK ids and this
  // ontology's version. Throws std::invalid_argument for an unknown id.
  OatTag tag(std::string_view id, std::string_view basis, double confidence,
             std::string reason) const;

  struct Impl;
  explicit Ontology(std::unique_ptr<Impl> impl);
  Ontology(Ontology&&) noexcept;
  Ontology& operator=(Ontology&&) noexcept;
  ~Ontology();

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace webtrap::oat
