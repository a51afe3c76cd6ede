#include "common/oat_ontology.h"

#include <algorithm>
#include <stdexcept>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif
#include <unordered_map>
#include <utility>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

namespace webtrap::oat {

namespace detail {
// Defined in the source that the build generates from data/oat/ontology.yaml
// (cmake/embed_text.cmake).
extern const char kOntologyYaml[];
extern const std::size_t kOntologyYaml_size;
}  // namespace detail

struct Ontology::Impl {
  std::string version;
  std::string handbook_name;
  std::string handbook_version;
  std::string handbook_url;
  std::vector<Threat> threats;
  std::unordered_map<std::string, std::size_t> index;  // id -> position in threats
  std::vector<RequestRule> rules;
  std::vector<Tool> tools;
};

namespace {

[[noreturn]] void invalid(std::string_view where, std::string_view problem) {
  throw std::invalid_argument(fmt::format("OAT ontology: {}: {}", where, problem));
}

bool allDigits(std::string_view text) {
  return !text.empty() &&
         std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// "OAT-" and three digits.
bool isOatId(std::string_view id) {
  return id.size() == 7 && id.substr(0, 4) == "OAT-" && allDigits(id.substr(4));
}

// "<prefix>-<digits>", as in CAPEC-112 and WASC-11.
bool isPrefixedNumber(std::string_view text, std::string_view prefix) {
  return text.size() > prefix.size() + 1 && text.substr(0, prefix.size()) == prefix &&
         text[prefix.size()] == '-' && allDigits(text.substr(prefix.size() + 1));
}

// An ATT&CK technique or sub-technique id: T1110 or T1110.004.
bool isAttackId(std::string_view id) {
  if (id.size() < 5 || id[0] != 'T' || !allDigits(id.substr(1, 4))) {
    return false;
  }
  if (id.size() == 5) {
    return true;
  }
  return id.size() == 9 && id[5] == '.' && allDigits(id.substr(6));
}

void checkKeys(const YAML::Node& node, std::string_view where,
               std::initializer_list<std::string_view> allowed) {
  if (!node.IsMap()) {
    invalid(where, "expected a mapping");
  }
  for (const auto& entry : node) {
    std::string key = entry.first.as<std::string>();
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
      invalid(where, fmt::format("unknown key '{}'; allowed keys: {}", key,
                                 fmt::join(allowed, ", ")));
    }
  }
}

std::string requiredString(const YAML::Node& node, std::string_view key, std::string_view where) {
  YAML::Node value = node[std::string(key)];
  if (!value || !value.IsScalar() || value.Scalar().empty()) {
    invalid(where, fmt::format("'{}' is missing or empty", key));
  }
  return value.Scalar();
}

std::string optionalString(const YAML::Node& node, std::string_view key, std::string_view where) {
  YAML::Node value = node[std::string(key)];
  if (!value) {
    return {};
  }
  if (!value.IsScalar()) {
    invalid(where, fmt::format("'{}' must be a string", key));
  }
  return value.Scalar();
}

// A list of strings, each accepted by `valid`; `example` shows the form.
template <class Check>
std::vector<std::string> stringList(const YAML::Node& node, std::string_view key,
                                    std::string_view where, Check valid,
                                    std::string_view example) {
  std::vector<std::string> items;
  YAML::Node value = node[std::string(key)];
  if (!value) {
    return items;
  }
  if (!value.IsSequence()) {
    invalid(where, fmt::format("'{}' must be a list such as [{}]", key, example));
  }
  for (const auto& item : value) {
    if (!item.IsScalar() || !valid(item.Scalar())) {
      invalid(where, fmt::format("'{}' holds '{}', which is not an id such as {}", key,
                                 item.IsScalar() ? item.Scalar() : std::string("(not a string)"),
                                 example));
    }
    items.push_back(item.Scalar());
  }
  return items;
}

Threat parseThreat(const YAML::Node& node, std::size_t position) {
  std::string where = fmt::format("threats[{}]", position);
  checkKeys(node, where,
            {"id", "name", "summary", "capec", "wasc", "attack", "reference", "observable",
             "unobservable_reason"});
  Threat threat;
  threat.id = requiredString(node, "id", where);
  if (!isOatId(threat.id)) {
    invalid(where, fmt::format("id '{}' is not of the form OAT-001", threat.id));
  }
  where = threat.id;
  threat.name = requiredString(node, "name", where);
  threat.summary = requiredString(node, "summary", where);
  threat.reference = requiredString(node, "reference", where);
  threat.capec = stringList(
      node, "capec", where, [](std::string_view s) { return isPrefixedNumber(s, "CAPEC"); },
      "CAPEC-112");
  threat.wasc = stringList(
      node, "wasc", where, [](std::string_view s) { return isPrefixedNumber(s, "WASC"); },
      "WASC-21");
  threat.attack = stringList(node, "attack", where, isAttackId, "T1110.004");
  if (YAML::Node observable = node["observable"]) {
    try {
      threat.observable = observable.as<bool>();
    } catch (const YAML::Exception&) {
      invalid(where, "'observable' must be true or false");
    }
  }
  threat.unobservable_reason = optionalString(node, "unobservable_reason", where);
  if (!threat.observable && threat.unobservable_reason.empty()) {
    invalid(where, "'observable: false' needs an 'unobservable_reason'");
  }
  return threat;
}

// Checks the `match` text of a rule for its source.
void checkMatch(const RequestRule& rule, std::string_view where) {
  if (rule.source == "crs") {
    if (!allDigits(rule.match)) {
      invalid(where, fmt::format("crs match '{}' must be a rule id or id prefix such as 942",
                                 rule.match));
    }
  } else if (rule.source == "route") {
    std::size_t space = rule.match.find(' ');
    if (space == std::string::npos || space == 0 || space + 1 == rule.match.size() ||
        rule.match.find(' ', space + 1) != std::string::npos) {
      invalid(where, fmt::format("route match '{}' must be '<route kind> <METHOD>' or "
                                 "'<route kind> *', such as 'login POST'",
                                 rule.match));
    }
  }
  if (!rule.condition.empty() && (rule.source != "route" || rule.condition != "links")) {
    invalid(where, fmt::format("condition '{}' is not supported; only route rules take "
                               "'condition: links'",
                               rule.condition));
  }
}

RequestRule parseRule(const YAML::Node& node, std::size_t position, const Ontology::Impl& impl) {
  std::string where = fmt::format("request_rules[{}]", position);
  checkKeys(node, where,
            {"source", "match", "oat", "confidence", "attack", "condition", "data", "note"});
  RequestRule rule;
  rule.source = requiredString(node, "source", where);
  if (rule.source != "crs" && rule.source != "bait" && rule.source != "route") {
    invalid(where, fmt::format("source '{}' must be crs, bait or route", rule.source));
  }
  rule.match = requiredString(node, "match", where);
  rule.oat = requiredString(node, "oat", where);
  if (impl.index.find(rule.oat) == impl.index.end()) {
    invalid(where, fmt::format("oat '{}' is not one of the threats listed above", rule.oat));
  }
  std::string confidence = requiredString(node, "confidence", where);
  try {
    rule.confidence = node["confidence"].as<double>();
  } catch (const YAML::Exception&) {
    invalid(where, fmt::format("confidence '{}' is not a number", confidence));
  }
  if (!(rule.confidence > 0.0 && rule.confidence <= 1.0)) {
    invalid(where, fmt::format("confidence {} must be above 0 and at most 1", confidence));
  }
  rule.attack = stringList(node, "attack", where, isAttackId, "T1190");
  rule.condition = optionalString(node, "condition", where);
  rule.data = stringList(
      node, "data", where, [](std::string_view text) { return !text.empty(); }, "whatweb");
  if (!rule.data.empty() && rule.source != "crs") {
    invalid(where, "only crs rules take 'data'");
  }
  rule.note = optionalString(node, "note", where);
  checkMatch(rule, where);
  return rule;
}

Tool parseTool(const YAML::Node& node, std::size_t position, const Ontology::Impl& impl) {
  std::string where = fmt::format("tools[{}]", position);
  checkKeys(node, where, {"name", "user_agent", "oats", "checks", "footprint_paths", "note"});
  Tool tool;
  tool.name = requiredString(node, "name", where);
  where = fmt::format("tools[{}] ({})", position, tool.name);
  tool.user_agent = stringList(
      node, "user_agent", where, [](std::string_view text) { return !text.empty(); }, "nmap");
  if (tool.user_agent.empty()) {
    invalid(where, "'user_agent' must list at least one token");
  }
  tool.oats = stringList(
      node, "oats", where,
      [&](std::string_view id) { return impl.index.count(std::string(id)) > 0; }, "OAT-018");
  if (tool.oats.empty()) {
    invalid(where, "'oats' must list at least one OAT id of the threats above");
  }
  tool.checks = stringList(node, "checks", where, allDigits, "930");
  if (YAML::Node paths = node["footprint_paths"]) {
    try {
      tool.footprint_paths = paths.as<std::uint32_t>();
    } catch (const YAML::Exception&) {
      invalid(where, "'footprint_paths' must be a whole number");
    }
    if (tool.footprint_paths == 0 || !tool.isFor("OAT-018")) {
      invalid(where, "'footprint_paths' must be 1 or more, on a tool whose oats list OAT-018");
    }
  }
  tool.note = requiredString(node, "note", where);
  return tool;
}

std::unique_ptr<Ontology::Impl> parseOntology(std::string_view text) {
  YAML::Node root;
  try {
    root = YAML::Load(std::string(text));
  } catch (const YAML::Exception& error) {
    invalid("YAML", error.what());
  }
  checkKeys(root, "top level", {"version", "handbook", "threats", "request_rules", "tools"});

  auto impl = std::make_unique<Ontology::Impl>();
  impl->version = requiredString(root, "version", "top level");
  YAML::Node handbook = root["handbook"];
  checkKeys(handbook, "handbook", {"name", "version", "url"});
  impl->handbook_name = requiredString(handbook, "name", "handbook");
  impl->handbook_version = requiredString(handbook, "version", "handbook");
  impl->handbook_url = requiredString(handbook, "url", "handbook");

  YAML::Node threats = root["threats"];
  if (!threats || !threats.IsSequence() || threats.size() == 0) {
    invalid("threats", "missing or not a list");
  }
  for (std::size_t i = 0; i < threats.size(); ++i) {
    Threat threat = parseThreat(threats[i], i);
    if (!impl->threats.empty() && threat.id <= impl->threats.back().id) {
      invalid(threat.id, fmt::format("listed after {}; list each id once, in increasing order",
                                     impl->threats.back().id));
    }
    impl->index.emplace(threat.id, impl->threats.size());
    impl->threats.push_back(std::move(threat));
  }

  YAML::Node rules = root["request_rules"];
  if (rules && !rules.IsSequence()) {
    invalid("request_rules", "must be a list");
  }
  if (rules) {
    for (std::size_t i = 0; i < rules.size(); ++i) {
      impl->rules.push_back(parseRule(rules[i], i, *impl));
    }
  }

  YAML::Node tools = root["tools"];
  if (tools && !tools.IsSequence()) {
    invalid("tools", "must be a list");
  }
  if (tools) {
    for (std::size_t i = 0; i < tools.size(); ++i) {
      impl->tools.push_back(parseTool(tools[i], i, *impl));
    }
  }
  return impl;
}

}  // namespace

Ontology::Ontology(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Ontology::Ontology(Ontology&&) noexcept = default;
Ontology& Ontology::operator=(Ontology&&) noexcept = default;
Ontology::~Ontology() = default;

Ontology Ontology::fromYaml(std::string_view text) { return Ontology(parseOntology(text)); }

std::string_view Ontology::embeddedYaml() {
  return std::string_view(detail::kOntologyYaml, detail::kOntologyYaml_size);
}

const Ontology& Ontology::embedded() {
  static const Ontology ontology = [] {
    try {
      return fromYaml(embeddedYaml());
    } catch (const std::invalid_argument& error) {
      throw std::logic_error(
          fmt::format("the ontology compiled into this binary is invalid: {}", error.what()));
    }
  }();
  return ontology;
}

const std::string& Ontology::version() const { return impl_->version; }
const std::string& Ontology::handbookVersion() const { return impl_->handbook_version; }
const std::string& Ontology::handbookName() const { return impl_->handbook_name; }
const std::string& Ontology::handbookUrl() const { return impl_->handbook_url; }
std::span<const Threat> Ontology::threats() const { return impl_->threats; }
std::span<const RequestRule> Ontology::requestRules() const { return impl_->rules; }
std::span<const Tool> Ontology::tools() const { return impl_->tools; }

const Tool* Ontology::findTool(std::string_view text) const {
  if (text.empty()) {
    return nullptr;
  }
  for (const Tool& tool : impl_->tools) {
    for (const std::string& token : tool.user_agent) {
      if (containsIgnoreCase(text, token)) {
        return &tool;
      }
    }
  }
  return nullptr;
}

bool Tool::isFor(std::string_view oat_id) const {
  return std::find(oats.begin(), oats.end(), oat_id) != oats.end();
}

bool Tool::checkTriggers(std::string_view rule_id) const {
  return std::any_of(checks.begin(), checks.end(),
                     [&](const std::string& prefix) { return rule_id.starts_with(prefix); });
}

const Threat* Ontology::find(std::string_view id) const {
  auto found = impl_->index.find(std::string(id));
  return found == impl_->index.end() ? nullptr : &impl_->threats[found->second];
}

OatTag Ontology::tag(std::string_view id, std::string_view basis, double confidence,
                     std::string reason) const {
  const Threat* threat = find(id);
  if (threat == nullptr) {
    throw std::invalid_argument(fmt::format("'{}' is not an OAT id of ontology {}", id,
                                            impl_->version));
  }
  OatTag tag;
  tag.id = threat->id;
  tag.name = threat->name;
  tag.basis = std::string(basis);
  tag.confidence = confidence;
  tag.reason = std::move(reason);
  tag.attack = threat->attack;
  tag.version = impl_->version;
  return tag;
}

namespace {

char asciiLower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c;
}

// True when `needle` starts at `at` in `text`, ASCII letters compared
// without case. The caller checks that it fits.
bool matchesAt(std::string_view text, std::size_t at, std::string_view needle) {
  for (std::size_t i = 0; i < needle.size(); ++i) {
    if (asciiLower(text[at + i]) != asciiLower(needle[i])) {
      return false;
    }
  }
  return true;
}

}  // namespace

// The collector calls this for every record, with each user agent token of
// every tool and the matched data of rule messages. The scan looks for the
// needle's first byte in both cases, 16 bytes at a time where SSE2 is
// there, and compares the rest only where it is found.
bool containsIgnoreCase(std::string_view text, std::string_view needle) {
  if (needle.empty()) {
    return true;
  }
  if (needle.size() > text.size()) {
    return false;
  }
  const char lower_first = asciiLower(needle[0]);
  const char upper_first =
      lower_first >= 'a' && lower_first <= 'z' ? static_cast<char>(lower_first - 32) : lower_first;
  const std::size_t last = text.size() - needle.size();  // the last possible start
  std::size_t pos = 0;
#if defined(__SSE2__)
  const __m128i lower_block = _mm_set1_epi8(lower_first);
  const __m128i upper_block = _mm_set1_epi8(upper_first);
  for (; pos + 16 <= last + 1; pos += 16) {
    __m128i block = _mm_loadu_si128(reinterpret_cast<const __m128i*>(text.data() + pos));
    auto starts = static_cast<unsigned>(_mm_movemask_epi8(
        _mm_or_si128(_mm_cmpeq_epi8(block, lower_block), _mm_cmpeq_epi8(block, upper_block))));
    while (starts != 0) {
      std::size_t at = pos + static_cast<std::size_t>(__builtin_ctz(starts));
      starts &= starts - 1;
      if (matchesAt(text, at, needle)) {
        return true;
      }
    }
  }
#endif
  for (; pos <= last; ++pos) {
    char c = text[pos];
    if ((c == lower_first || c == upper_first) && matchesAt(text, pos, needle)) {
      return true;
    }
  }
  return false;
}

}  // namespace webtrap::oat
