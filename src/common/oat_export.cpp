#include "common/oat_export.h"

#include <openssl/evp.h>

#include <array>
#include <stdexcept>
#include <vector>

#include <fmt/format.h>

#include "common/json_writer.h"

namespace webtrap::oat {

namespace {

// Namespace of the taxonomy's name-based UUIDs, and the taxonomy's own uuid.
// A random UUID chosen once; changing it would make MISP see a new taxonomy.
constexpr std::string_view kMispTaxonomyUuid = "19296131-01f6-4662-9c71-87b38bdef918";

// Writes JSON with one member or element per line, indented by two spaces
// per level, as MISP's own taxonomy files are laid out.
class IndentedJson {
 public:
  void beginObject() { open('{'); }
  void endObject() { close('}'); }
  void beginArray() { open('['); }
  void endArray() { close(']'); }

  void key(std::string_view name) {
    startValue();
    appendString(name);
    out_.append(": ");
    after_key_ = true;
  }
  void string(std::string_view value) {
    startValue();
    appendString(value);
  }
  void integer(long long value) {
    startValue();
    out_.append(std::to_string(value));
  }
  void boolean(bool value) {
    startValue();
    out_.append(value ? "true" : "false");
  }
  void number(double value) {
    startValue();
    out_.append(fmt::format("{}", value));
  }
  void member(std::string_view name, std::string_view value) {
    key(name);
    string(value);
  }
  void stringArray(std::string_view name, const std::vector<std::string>& values) {
    key(name);
    beginArray();
    for (const std::string& value : values) {
      string(value);
    }
    endArray();
  }

  std::string take() {
    out_.push_back('\n');
    return std::move(out_);
  }

 private:
  void startValue() {
    if (after_key_) {
      after_key_ = false;
      return;
    }
    if (!first_.empty()) {
      if (!first_.back()) {
        out_.push_back(',');
      }
      first_.back() = false;
      newline();
    }
  }
  void open(char bracket) {
    startValue();
    out_.push_back(bracket);
    first_.push_back(true);
  }
  void close(char bracket) {
    bool empty = first_.back();
    first_.pop_back();
    if (!empty) {
      newline();
    }
    out_.push_back(bracket);
  }
  void newline() {
    out_.push_back('\n');
    out_.append(2 * first_.size(), ' ');
  }
  void appendString(std::string_view text) {
    out_.push_back('"');
    appendJsonEscaped(out_, text);
    out_.push_back('"');
  }

  std::string out_;
  std::vector<bool> first_;  // per open bracket: nothing written inside yet
  bool after_key_ = false;
};

std::string joined(const std::vector<std::string>& items, std::string_view empty = "-") {
  return items.empty() ? std::string(empty) : fmt::format("{}", fmt::join(items, ", "));
}

std::string confidenceText(double confidence) { return fmt::format("{}", confidence); }

// Escapes the characters that would end or split a Markdown table cell.
std::string markdownCell(std::string_view text) {
  std::string cell;
  for (char c : text) {
    if (c == '|') {
      cell.append("\\|");
    } else if (c == '\n') {
      cell.push_back(' ');
    } else {
      cell.push_back(c);
    }
  }
  return cell;
}

// The MISP taxonomy version: the ontology version's digits as one number.
long long mispVersion(const Ontology& ontology) {
  std::string digits;
  for (char c : ontology.version()) {
    if (c >= '0' && c <= '9') {
      digits.push_back(c);
    }
  }
  if (digits.empty() || digits.size() > 12) {
    throw std::invalid_argument(fmt::format(
        "ontology version '{}' must contain 1 to 12 digits, such as webtrap-oat-2026.12, "
        "because the MISP taxonomy version is made of them",
        ontology.version()));
  }
  return std::stoll(digits);
}

std::string mispDescription(const Threat& threat) {
  std::string text = threat.summary;
  text += fmt::format(" CAPEC: {}. WASC: {}.", joined(threat.capec, "none"),
                      joined(threat.wasc, "none"));
  if (!threat.attack.empty()) {
    text += fmt::format(" MITRE ATT&CK: {}.", joined(threat.attack));
  }
  text += " " + threat.reference;
  return text;
}

}  // namespace

std::string mispTagName(std::string_view oat_id) {
  return fmt::format("{}:{}", kMispNamespace, oat_id);
}

std::string renderTable(const Ontology& ontology) {
  std::string out = fmt::format("OWASP Automated Threats, handbook v{}, ontology {}\n\n",
                                ontology.handbookVersion(), ontology.version());
  out += fmt::format("{:<8} {:<23} {:<10} {:<40} {:<26} {}\n", "ID", "NAME", "OBSERVABLE",
                     "CAPEC", "WASC", "ATT&CK");
  for (const Threat& threat : ontology.threats()) {
    out += fmt::format("{:<8} {:<23} {:<10} {:<40} {:<26} {}\n", threat.id, threat.name,
                       threat.observable ? "yes" : "no", joined(threat.capec),
                       joined(threat.wasc), joined(threat.attack));
  }
  return out;
}

std::string renderJson(const Ontology& ontology) {
  IndentedJson json;
  json.beginObject();
  json.member("version", ontology.version());
  json.key("handbook");
  json.beginObject();
  json.member("name", ontology.handbookName());
  json.member("version", ontology.handbookVersion());
  json.member("url", ontology.handbookUrl());
  json.endObject();

  json.key("threats");
  json.beginArray();
  for (const Threat& threat : ontology.threats()) {
    json.beginObject();
    json.member("id", threat.id);
    json.member("name", threat.name);
    json.member("summary", threat.summary);
    json.stringArray("capec", threat.capec);
    json.stringArray("wasc", threat.wasc);
    json.stringArray("attack", threat.attack);
    json.member("reference", threat.reference);
    json.key("observable");
    json.boolean(threat.observable);
    if (!threat.observable) {
      json.member("unobservable_reason", threat.unobservable_reason);
    }
    json.endObject();
  }
  json.endArray();

  json.key("request_rules");
  json.beginArray();
  for (const RequestRule& rule : ontology.requestRules()) {
    json.beginObject();
    json.member("source", rule.source);
    json.member("match", rule.match);
    if (!rule.condition.empty()) {
      json.member("condition", rule.condition);
    }
    if (!rule.data.empty()) {
      json.stringArray("data", rule.data);
    }
    json.member("oat", rule.oat);
    json.key("confidence");
    json.number(rule.confidence);
    json.stringArray("attack", rule.attack);
    json.member("note", rule.note);
    json.endObject();
  }
  json.endArray();

  json.key("tools");
  json.beginArray();
  for (const Tool& tool : ontology.tools()) {
    json.beginObject();
    json.member("name", tool.name);
    json.stringArray("user_agent", tool.user_agent);
    json.stringArray("oats", tool.oats);
    if (!tool.checks.empty()) {
      json.stringArray("checks", tool.checks);
    }
    if (tool.footprint_paths > 0) {
      json.key("footprint_paths");
      json.number(tool.footprint_paths);
    }
    json.member("note", tool.note);
    json.endObject();
  }
  json.endArray();
  json.endObject();
  return json.take();
}

std::string renderMarkdown(const Ontology& ontology) {
  std::string out = fmt::format(
      "Ontology {}, from the {} v{}.\n\n", ontology.version(), ontology.handbookName(),
      ontology.handbookVersion());
  out += "| ID | Name | Summary | CAPEC | WASC | ATT&CK | Observable |\n";
  out += "|---|---|---|---|---|---|---|\n";
  for (const Threat& threat : ontology.threats()) {
    out += fmt::format("| [{}]({}) | {} | {} | {} | {} | {} | {} |\n", threat.id,
                       threat.reference, markdownCell(threat.name), markdownCell(threat.summary),
                       joined(threat.capec), joined(threat.wasc), joined(threat.attack),
                       threat.observable ? "yes" : "no");
  }

  out += "\nThreats a honeypot cannot observe:\n\n";
  for (const Threat& threat : ontology.threats()) {
    if (!threat.observable) {
      out += fmt::format("- {} {}: {}\n", threat.id, threat.name,
                         markdownCell(threat.unobservable_reason));
    }
  }

  out += "\nPer-request rules:\n\n";
  out += "| Source | Match | OAT | Confidence | ATT&CK | Meaning |\n";
  out += "|---|---|---|---|---|---|\n";
  for (const RequestRule& rule : ontology.requestRules()) {
    std::string match = rule.match;
    if (!rule.condition.empty()) {
      match += fmt::format(" ({})", rule.condition);
    }
    if (!rule.data.empty()) {
      match += fmt::format(" with {}", fmt::join(rule.data, ", "));
    }
    const Threat* threat = ontology.find(rule.oat);
    out += fmt::format("| {} | `{}` | {} {} | {} | {} | {} |\n", rule.source, match, rule.oat,
                       threat != nullptr ? threat->name : "", confidenceText(rule.confidence),
                       joined(rule.attack), markdownCell(rule.note));
  }

  out += "\nTools named by their User-Agent:\n\n";
  out += "| Tool | User-Agent contains | OATs | Checks | Footprinting from | Meaning |\n";
  out += "|---|---|---|---|---|---|\n";
  for (const Tool& tool : ontology.tools()) {
    std::vector<std::string> tokens;
    for (const std::string& token : tool.user_agent) {
      tokens.push_back(fmt::format("`{}`", token));
    }
    std::string paths =
        tool.footprint_paths > 0 ? fmt::format("{} paths", tool.footprint_paths) : "-";
    out += fmt::format("| {} | {} | {} | {} | {} | {} |\n", tool.name, fmt::join(tokens, ", "),
                       joined(tool.oats), joined(tool.checks), paths, markdownCell(tool.note));
  }
  return out;
}

std::string renderMispTaxonomy(const Ontology& ontology) {
  IndentedJson json;
  json.beginObject();
  json.member("namespace", kMispNamespace);
  json.member("expanded", "OWASP Automated Threats to Web Applications");
  json.member(
      "description",
      fmt::format("The OWASP Automated Threats (OAT) ontology: 21 kinds of automated abuse "
                  "of web applications, from the {} v{}. Descriptions are webtrap's own "
                  "wording (ontology {}); each names the CAPEC and WASC cross-references of "
                  "the handbook and MITRE ATT&CK techniques where one fits.",
                  ontology.handbookName(), ontology.handbookVersion(), ontology.version()));
  json.key("version");
  json.integer(mispVersion(ontology));
  json.member("uuid", kMispTaxonomyUuid);
  json.key("exclusive");
  json.boolean(false);
  json.stringArray("type", {"event", "attribute"});
  json.stringArray("refs", {ontology.handbookUrl()});

  json.key("predicates");
  json.beginArray();
  for (const Threat& threat : ontology.threats()) {
    json.beginObject();
    json.member("value", threat.id);
    json.member("expanded", threat.name);
    json.member("description", mispDescription(threat));
    json.member("uuid", uuidV5(kMispTaxonomyUuid, threat.id));
    json.endObject();
  }
  json.endArray();
  json.endObject();
  return json.take();
}

std::string uuidV5(std::string_view namespace_uuid, std::string_view name) {
  std::string input;
  int high = -1;
  for (char c : namespace_uuid) {
    if (c == '-') {
      continue;
    }
    int value = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
    if (value < 0) {
      throw std::invalid_argument(fmt::format("'{}' is not a UUID", namespace_uuid));
    }
    if (high < 0) {
      high = value;
    } else {
      input.push_back(static_cast<char>(high * 16 + value));
      high = -1;
    }
  }
  if (input.size() != 16 || high >= 0) {
    throw std::invalid_argument(fmt::format("'{}' is not a UUID", namespace_uuid));
  }
  input.append(name);

  std::array<unsigned char, EVP_MAX_MD_SIZE> digest;
  unsigned int digest_size = 0;
  if (EVP_Digest(input.data(), input.size(), digest.data(), &digest_size, EVP_sha1(), nullptr) !=
          1 ||
      digest_size < 16) {
    throw std::runtime_error("SHA-1 digest failed in OpenSSL");
  }
  digest[6] = static_cast<unsigned char>((digest[6] & 0x0F) | 0x50);  // version 5
  digest[8] = static_cast<unsigned char>((digest[8] & 0x3F) | 0x80);  // RFC 9562 variant

  std::string text;
  for (int i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) {
      text.push_back('-');
    }
    text += fmt::format("{:02x}", digest[i]);
  }
  return text;
}

}  // namespace webtrap::oat
