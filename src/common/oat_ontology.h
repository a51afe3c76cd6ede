// The OWASP Automated Threats (OAT) ontology as webtrap ships it: one data
// file (data/oat/ontology.yaml), compiled into the binary, from which the
// probe's per-request tags, the collector's behavioural tags, the ECS fields,
// the MISP taxonomy and the docs all come.
#pragma once

#include <cstdint>
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

// A tool that names itself in its User-Agent, and the threats it is made for.
// Its identity shows the purpose of traffic whose shape fits several threats:
// a long list of missing paths is directory scanning from gobuster but
// product enumeration from nmap's http-enum.
struct Tool {
  std::string name;  // short id used in reasons: "nmap", "whatweb"
  // Tokens, any of which in the User-Agent (ASCII case-insensitive) names the
  // tool. The probe reads them in the data of CRS 913100, which quotes the
  // User-Agent, and the behaviour tagger in the User-Agent header.
  std::vector<std::string> user_agent;
  std::vector<std::string> oats;  // the threats the tool is made for, "OAT-004"
  // CRS rule id prefixes that checks in the tool's own fixed probe list
  // trigger (nmap's http-enum sends a few path traversal checks). On the
  // tool's requests those rules give OATs outside `oats` at most
  // kToolCheckConfidence, and the behaviour tagger does not count them as
  // attack payloads. Rules outside these prefixes are unaffected.
  std::vector<std::string> checks;
  // Distinct paths in one window from which the tool's traffic is
  // footprinting (OAT-018), because its default run requests fewer. 0 when
  // the tool has no such threshold.
  std::uint32_t footprint_paths = 0;
  std::string note;  // why the tool has these OATs, for docs and tables

  bool isFor(std::string_view oat_id) const;
  // Returns true when `rule_id` starts with one of `checks`.
  bool checkTriggers(std::string_view rule_id) const;
};

// The highest confidence a tool's own checks (Tool::checks) give an OAT the
// tool is not made for: below 0.5, so that they stay visible but are not
// acted on, like other evidence that fits several threats.
inline constexpr double kToolCheckConfidence = 0.4;

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
  std::span<const Tool> tools() const;

  // Returns the first listed tool with a user_agent token in `text` (ASCII
  // case-insensitive), or nullptr. `text` is a User-Agent or the matched data
  // of CRS 913100.
  const Tool* findTool(std::string_view text) const;

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

// Returns true when `needle` occurs in `text`, comparing ASCII letters
// without regard to case.
bool containsIgnoreCase(std::string_view text, std::string_view needle);

}  // namespace webtrap::oat
