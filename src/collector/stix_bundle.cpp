#include "collector/stix_bundle.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cctype>
#include <ctime>
#include <map>
#include <optional>
#include <set>
#include <stdexcept>
#include <utility>

#include <fmt/format.h>
#include <simdjson.h>

#include "collector/misp_event.h"
#include "common/json_writer.h"
#include "common/oat_ontology.h"

namespace webtrap::collector {

// RFC 9562 NAMESPACE_URL.
const std::string kStixNamespace =
    uuidV5("6ba7b811-9dad-11d1-80b4-00c04fd430c8", "urn:webtrap:stix:v1");

namespace {

// The upper bound of number_observed and of a sighting's count.
constexpr std::int64_t kMaxStixCount = 999999999;

// ---------------------------------------------------------------- RFC 8785

// A JSON value made of strings, arrays and objects only, which is all the
// ID Contributing Properties used here need. Object members are kept sorted
// by std::map, whose byte order equals RFC 8785's UTF-16 order for the
// ASCII keys STIX property names and the header names used here have.
struct Canonical {
  enum class Kind { kString, kArray, kObject };
  Kind kind = Kind::kObject;
  std::string text;
  std::vector<Canonical> items;
  std::map<std::string, Canonical> members;

  static Canonical string(std::string value) {
    Canonical c;
    c.kind = Kind::kString;
    c.text = std::move(value);
    return c;
  }
  static Canonical array(std::vector<std::string> values) {
    Canonical c;
    c.kind = Kind::kArray;
    for (auto& value : values) {
      c.items.push_back(string(std::move(value)));
    }
    return c;
  }
};

void writeCanonical(std::string& out, const Canonical& value) {
  switch (value.kind) {
    case Canonical::Kind::kString:
      appendJcsString(out, value.text);
      break;
    case Canonical::Kind::kArray: {
      out += '[';
      bool first = true;
      for (const auto& item : value.items) {
        if (!first) {
          out += ',';
        }
        first = false;
        writeCanonical(out, item);
      }
      out += ']';
      break;
    }
    case Canonical::Kind::kObject: {
      out += '{';
      bool first = true;
      for (const auto& [key, member] : value.members) {
        if (!first) {
          out += ',';
        }
        first = false;
        appendJcsString(out, key);
        out += ':';
        writeCanonical(out, member);
      }
      out += '}';
      break;
    }
  }
}

std::string canonicalText(const Canonical& value) {
  std::string out;
  writeCanonical(out, value);
  return out;
}

// The members of a canonical object without its braces, which is the
// property text of an SCO whose properties all contribute to its id.
std::string canonicalMembers(const Canonical& value) {
  std::string text = canonicalText(value);
  return text.size() > 2 ? text.substr(1, text.size() - 2) : std::string();
}

// ---------------------------------------------------------------- writing

// Returns the members that `fill` writes, without the braces.
template <typename Fill>
std::string membersOf(Fill fill) {
  std::string out;
  JsonWriter w(out);
  w.beginObject();
  fill(w);
  w.endObject();
  return out.size() > 2 ? out.substr(1, out.size() - 2) : std::string();
}

void writeStrings(JsonWriter& w, std::string_view key, const std::vector<std::string>& values) {
  if (values.empty()) {
    return;  // STIX forbids empty lists.
  }
  w.key(key);
  w.beginArray();
  for (const auto& value : values) {
    w.string(value);
  }
  w.endArray();
}

struct ExternalReference {
  std::string source_name;
  std::string external_id;
  std::string url;
  std::string description;
};

void writeExternalReferences(JsonWriter& w, const std::vector<ExternalReference>& references) {
  if (references.empty()) {
    return;
  }
  w.key("external_references");
  w.beginArray();
  for (const auto& reference : references) {
    w.beginObject();
    w.member("source_name", reference.source_name);
    if (!reference.description.empty()) {
      w.member("description", reference.description);
    }
    if (!reference.url.empty()) {
      w.member("url", reference.url);
    }
    if (!reference.external_id.empty()) {
      w.member("external_id", reference.external_id);
    }
    w.endObject();
  }
  w.endArray();
}

// ---------------------------------------------------------------- markings

struct TlpMarking {
  std::string_view tag_color;  // the TLP 1.0 colour of the predefined marking
  std::string_view id;
  std::string_view name;
};

// The four TLP marking definitions of STIX 2.1 section 7.2.1.4, the only TLP
// marking definitions the spec permits.
constexpr TlpMarking kTlpWhite{"white", "marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9",
                               "TLP:WHITE"};
constexpr TlpMarking kTlpGreen{"green", "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da",
                               "TLP:GREEN"};
constexpr TlpMarking kTlpAmber{"amber", "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82",
                               "TLP:AMBER"};
constexpr TlpMarking kTlpRed{"red", "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed",
                             "TLP:RED"};

const TlpMarking& tlpMarking(std::string_view tag) {
  if (tag == "tlp:clear" || tag == "tlp:white") {
    return kTlpWhite;
  }
  if (tag == "tlp:green") {
    return kTlpGreen;
  }
  if (tag == "tlp:red") {
    return kTlpRed;
  }
  // tlp:amber, and tlp:amber+strict, whose TLP 2.0 meaning (the recipient's
  // organisation only) is what TLP 1.0 AMBER meant. STIX 2.1 has no
  // predefined marking for TLP 2.0, so a statement marking states it in words.
  return kTlpAmber;
}

StixObject tlpMarkingObject(const TlpMarking& marking) {
  StixObject object;
  object.type = "marking-definition";
  object.id = std::string(marking.id);
  object.properties = membersOf([&](JsonWriter& w) {
    w.member("created", "2017-01-20T00:00:00.000Z");
    w.member("definition_type", "tlp");
    w.member("name", marking.name);
    w.key("definition");
    w.beginObject();
    w.member("tlp", marking.tag_color);
    w.endObject();
  });
  return object;
}

// The statement marking that accompanies TLP:AMBER for tlp:amber+strict.
// Marking definitions cannot be versioned, so its text and created time
// must never change; new wording needs a new id.
StixObject amberStrictStatement() {
  StixObject object;
  object.type = "marking-definition";
  object.id = "marking-definition--" + uuidV5(kStixNamespace, "statement|tlp:amber+strict|v1");
  object.properties = membersOf([](JsonWriter& w) {
    w.member("created", "2026-12-05T00:00:00.000Z");
    w.member("definition_type", "statement");
    w.member("name", "TLP:AMBER+STRICT");
    w.key("definition");
    w.beginObject();
    w.member("statement",
             "TLP:AMBER+STRICT (FIRST TLP 2.0): recipients may share this information only "
             "within their own organisation, on a need-to-know basis, and not with its clients.");
    w.endObject();
  });
  return object;
}

// ---------------------------------------------------------------- reading MISP

std::string_view stringAt(simdjson::dom::element element, std::string_view key) {
  std::string_view value;
  if (element[key].get_string().get(value) != simdjson::SUCCESS) {
    return {};
  }
  return value;
}

std::vector<std::string> tagNames(simdjson::dom::element element) {
  std::vector<std::string> names;
  simdjson::dom::array tags;
  if (element["Tag"].get_array().get(tags) != simdjson::SUCCESS) {
    return names;
  }
  for (simdjson::dom::element tag : tags) {
    std::string_view name = stringAt(tag, "name");
    if (!name.empty()) {
      names.emplace_back(name);
    }
  }
  return names;
}

// Converts MISP's first_seen form (2026-12-04T10:00:00.123000+00:00, as the
// model writes it) to a STIX timestamp. Returns std::nullopt for any other
// form.
std::optional<std::string> stixTimeFromMisp(std::string_view text) {
  if (text.size() < 20 || text[4] != '-' || text[7] != '-' || text[10] != 'T' ||
      text[13] != ':' || text[16] != ':') {
    return std::nullopt;
  }
  std::string out(text.substr(0, 19));
  std::size_t pos = 19;
  std::string fraction;
  if (pos < text.size() && text[pos] == '.') {
    ++pos;
    while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') {
      fraction += text[pos++];
    }
  }
  std::string_view zone = text.substr(pos);
  if (zone != "Z" && zone != "+00:00") {
    return std::nullopt;
  }
  fraction.resize(3, '0');
  return out + "." + fraction + "Z";
}

std::string seenOrDay(std::string_view misp_time, std::string_view day) {
  if (auto time = stixTimeFromMisp(misp_time)) {
    return *time;
  }
  return std::string(day) + "T00:00:00.000Z";
}

// ---------------------------------------------------------------- tags

// Returns the technique id of misp-galaxy:mitre-attack-pattern="<name> - <id>".
std::pair<std::string, std::string> attackTechnique(std::string_view tag) {
  constexpr std::string_view kPrefix = "misp-galaxy:mitre-attack-pattern=\"";
  if (!tag.starts_with(kPrefix) || !tag.ends_with('"')) {
    return {};
  }
  std::string_view inner = tag.substr(kPrefix.size(), tag.size() - kPrefix.size() - 1);
  std::size_t split = inner.rfind(" - ");
  if (split == std::string_view::npos) {
    return {};
  }
  return {std::string(inner.substr(split + 3)), std::string(inner.substr(0, split))};
}

// The references a list of MISP tags gives: each OAT id to its OWASP page
// and each ATT&CK technique to its MITRE page.
std::vector<ExternalReference> tagReferences(const std::vector<std::string>& tags) {
  std::vector<ExternalReference> references;
  const oat::Ontology& ontology = oat::Ontology::embedded();
  for (const auto& tag : tags) {
    constexpr std::string_view kOat = "owasp-oat:";
    if (std::string_view(tag).starts_with(kOat)) {
      ExternalReference reference;
      reference.source_name = "owasp-oat";
      reference.external_id = tag.substr(kOat.size());
      if (const oat::Threat* threat = ontology.find(reference.external_id)) {
        reference.description = threat->name;
        reference.url = threat->reference;
      }
      references.push_back(std::move(reference));
      continue;
    }
    auto [technique, name] = attackTechnique(tag);
    if (technique.empty()) {
      continue;
    }
    ExternalReference reference;
    reference.source_name = "mitre-attack";
    reference.external_id = technique;
    reference.description = name;
    std::string path = technique;
    std::replace(path.begin(), path.end(), '.', '/');
    reference.url = "https://attack.mitre.org/techniques/" + path + "/";
    references.push_back(std::move(reference));
  }
  return references;
}

// ---------------------------------------------------------------- the converter

bool isIpv4(const std::string& address) {
  unsigned char buffer[4];
  return inet_pton(AF_INET, address.c_str(), buffer) == 1;
}

class Converter {
 public:
  Converter(const StixConvertOptions& options, const SightingCounter& sighting_count)
      : options_(options), sighting_count_(sighting_count) {
    identity_id_ = "identity--" + options_.org_uuid;
    const TlpMarking& tlp = tlpMarking(options_.tlp);
    marking_refs_.emplace_back(tlp.id);
    markings_.push_back(tlpMarkingObject(tlp));
    if (options_.tlp == "tlp:amber+strict") {
      StixObject statement = amberStrictStatement();
      marking_refs_.push_back(statement.id);
      markings_.push_back(std::move(statement));
    }
  }

  StixEvent convert(std::string_view json);

 private:
  // The common members of an SDO or SRO after its own ones.
  void writeCommon(JsonWriter& w, const std::vector<std::string>& labels,
                   const std::vector<ExternalReference>& references) const {
    writeStrings(w, "labels", labels);
    writeExternalReferences(w, references);
    writeStrings(w, "object_marking_refs", marking_refs_);
  }

  // Adds an SCO once per bundle and returns its id.
  std::string addSco(std::string type, const Canonical& contributing,
                     std::string properties = {}, std::string id = {}) {
    if (id.empty()) {
      id = stixScoId(type, canonicalText(contributing));
    }
    if (sco_ids_.insert(id).second) {
      StixObject object;
      object.type = std::move(type);
      object.id = id;
      object.properties = properties.empty() ? canonicalMembers(contributing) : properties;
      items_.push_back(std::move(object));
    }
    return id;
  }

  std::string addAddress(const std::string& address) {
    Canonical value;
    value.members["value"] = Canonical::string(address);
    return addSco(isIpv4(address) ? "ipv4-addr" : "ipv6-addr", value);
  }

  void addSdo(std::string type, std::string id, std::string properties) {
    StixObject object;
    object.type = std::move(type);
    object.id = std::move(id);
    object.versioned = true;
    object.properties = std::move(properties);
    items_.push_back(std::move(object));
  }

  void convertAttribute(simdjson::dom::element attribute);
  void convertHttpRequest(simdjson::dom::element object);
  void convertCredential(simdjson::dom::element object);
  void addObservedData(const std::string& misp_uuid, std::string_view first, std::string_view last,
                       std::int64_t number, const std::vector<std::string>& refs,
                       const std::vector<std::string>& labels,
                       const std::vector<ExternalReference>& references);

  const StixConvertOptions& options_;
  const SightingCounter& sighting_count_;
  std::string identity_id_;
  std::vector<std::string> marking_refs_;
  std::vector<StixObject> markings_;
  std::vector<StixObject> items_;
  std::set<std::string> sco_ids_;
  std::string day_;
  bool any_indicator_ = false;
};

void Converter::addObservedData(const std::string& misp_uuid, std::string_view first,
                                std::string_view last, std::int64_t number,
                                const std::vector<std::string>& refs,
                                const std::vector<std::string>& labels,
                                const std::vector<ExternalReference>& references) {
  std::string first_time = seenOrDay(first, day_);
  std::string last_time = seenOrDay(last, day_);
  if (last_time < first_time) {
    last_time = first_time;
  }
  addSdo("observed-data", "observed-data--" + uuidV5(misp_uuid, "stix|observed-data"),
         membersOf([&](JsonWriter& w) {
           w.member("created_by_ref", identity_id_);
           w.member("first_observed", first_time);
           w.member("last_observed", last_time);
           w.member("number_observed", std::clamp<std::int64_t>(number, 1, kMaxStixCount));
           writeStrings(w, "object_refs", refs);
           writeCommon(w, labels, references);
         }));
}

void Converter::convertAttribute(simdjson::dom::element attribute) {
  std::string_view type = stringAt(attribute, "type");
  if (type != "ip-src" && type != "ip-dst") {
    return;  // The model writes no other top-level attributes.
  }
  const std::string uuid(stringAt(attribute, "uuid"));
  const std::string value(stringAt(attribute, "value"));
  if (uuid.empty() || value.empty()) {
    return;
  }
  bool to_ids = false;
  if (attribute["to_ids"].get_bool().get(to_ids) != simdjson::SUCCESS) {
    to_ids = false;
  }
  const std::vector<std::string> labels = tagNames(attribute);
  const std::vector<ExternalReference> references = tagReferences(labels);
  std::string_view first = stringAt(attribute, "first_seen");
  std::string_view last = stringAt(attribute, "last_seen");
  const std::int64_t hits = 1 + (sighting_count_ ? sighting_count_(uuid) : 0);

  if (!to_ids) {
    std::string address_id = addAddress(value);
    addObservedData(uuid, first, last, hits, {address_id}, labels, references);
    return;
  }
  any_indicator_ = true;
  const std::string indicator_id = "indicator--" + uuidV5(uuid, "stix|indicator");
  const std::string valid_from = seenOrDay(first, day_);
  std::string_view comment = stringAt(attribute, "comment");
  addSdo("indicator", indicator_id, membersOf([&](JsonWriter& w) {
           w.member("created_by_ref", identity_id_);
           w.member("name", fmt::format("Source of requests to a webtrap honeypot: {}", value));
           if (!comment.empty()) {
             w.member("description", comment);
           }
           w.key("indicator_types");
           w.beginArray();
           w.string("anomalous-activity");
           w.endArray();
           // An IP address literal contains no quote or backslash, so it needs
           // no escaping inside the pattern's string constant.
           w.member("pattern", fmt::format("[{}:value = '{}']",
                                           isIpv4(value) ? "ipv4-addr" : "ipv6-addr", value));
           w.member("pattern_type", "stix");
           w.member("pattern_version", "2.1");
           w.member("valid_from", valid_from);
           writeCommon(w, labels, references);
         }));
  if (!options_.sightings) {
    return;
  }
  std::string last_time = seenOrDay(last, day_);
  addSdo("sighting", "sighting--" + uuidV5(uuid, "stix|sighting"), membersOf([&](JsonWriter& w) {
           w.member("created_by_ref", identity_id_);
           w.member("first_seen", valid_from);
           w.member("last_seen", std::max(last_time, valid_from));
           w.member("count", std::min(hits, kMaxStixCount));
           w.member("sighting_of_ref", indicator_id);
           writeStrings(w, "where_sighted_refs", {identity_id_});
           writeStrings(w, "object_marking_refs", marking_refs_);
         }));
}

// Reads each relation of a MISP object's attributes (the first of each) and
// the tags of its `uri` attribute.
struct ObjectValues {
  std::map<std::string, std::string> values;
  std::vector<std::string> uri_tags;
};

ObjectValues objectValues(simdjson::dom::element object) {
  ObjectValues out;
  simdjson::dom::array attributes;
  if (object["Attribute"].get_array().get(attributes) != simdjson::SUCCESS) {
    return out;
  }
  for (simdjson::dom::element attribute : attributes) {
    std::string relation(stringAt(attribute, "object_relation"));
    out.values.emplace(relation, std::string(stringAt(attribute, "value")));
    if (relation == "uri") {
      out.uri_tags = tagNames(attribute);
    }
  }
  return out;
}

std::string valueOf(const ObjectValues& object, const std::string& relation) {
  auto found = object.values.find(relation);
  return found == object.values.end() ? std::string() : found->second;
}

void Converter::convertHttpRequest(simdjson::dom::element object) {
  const std::string uuid(stringAt(object, "uuid"));
  ObjectValues values = objectValues(object);
  const std::string source = valueOf(values, "ip-src");
  const std::string method = valueOf(values, "method");
  const std::string uri = valueOf(values, "uri");
  if (uuid.empty() || source.empty()) {
    return;  // network-traffic needs src_ref or dst_ref.
  }
  std::vector<std::string> refs;
  Canonical traffic;
  const std::string source_id = addAddress(source);
  traffic.members["src_ref"] = Canonical::string(source_id);

  // The Host header: an address, a host name, or a value MISP rejects as a
  // host name, which only goes into the header dictionary.
  std::string host;
  std::string destination_id;
  if (std::string address = valueOf(values, "ip-dst"); !address.empty()) {
    host = address;
    destination_id = addAddress(address);
  } else if (std::string name = valueOf(values, "host"); !name.empty()) {
    host = name;
    Canonical domain;
    domain.members["value"] = Canonical::string(name);
    destination_id = addSco("domain-name", domain);
  } else if (std::string header = valueOf(values, "header"); header.starts_with("Host: ")) {
    host = header.substr(6);
  }
  if (!destination_id.empty()) {
    traffic.members["dst_ref"] = Canonical::string(destination_id);
  }
  traffic.members["protocols"] =
      Canonical::array({isIpv4(source) ? "ipv4" : "ipv6", "tcp", "http"});
  if (!method.empty() && !uri.empty()) {
    Canonical request;
    std::string lower = method;
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    request.members["request_method"] = Canonical::string(lower);
    request.members["request_value"] = Canonical::string(uri);
    Canonical headers;
    if (!host.empty()) {
      headers.members["Host"] = Canonical::array({host});
    }
    if (std::string agent = valueOf(values, "user-agent"); !agent.empty()) {
      headers.members["User-Agent"] = Canonical::array({agent});
    }
    if (!headers.members.empty()) {
      request.members["request_header"] = std::move(headers);
    }
    Canonical extensions;
    extensions.members["http-request-ext"] = std::move(request);
    traffic.members["extensions"] = std::move(extensions);
  }
  refs.push_back(addSco("network-traffic", traffic));
  refs.push_back(source_id);
  if (!destination_id.empty()) {
    refs.push_back(destination_id);
  }

  std::vector<ExternalReference> references = tagReferences(values.uri_tags);
  // The text attribute lists the rule ids: "ModSecurity rule ids: 942100, 949110".
  std::string rules = valueOf(values, "text");
  if (std::size_t colon = rules.find(": "); colon != std::string::npos) {
    std::string_view list = std::string_view(rules).substr(colon + 2);
    while (!list.empty()) {
      std::size_t comma = list.find(", ");
      std::string_view id = list.substr(0, comma);
      if (!id.empty()) {
        references.push_back({"modsecurity", std::string(id), {}, "ModSecurity rule id"});
      }
      list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 2);
    }
  }
  // NOTE: the model keeps no hit count per request signature, only its time
  // range, so number_observed is 1 however often the request came.
  addObservedData(uuid, stringAt(object, "first_seen"), stringAt(object, "last_seen"), 1, refs,
                  values.uri_tags, references);
}

void Converter::convertCredential(simdjson::dom::element object) {
  const std::string uuid(stringAt(object, "uuid"));
  ObjectValues values = objectValues(object);
  const std::string username = valueOf(values, "username");
  const std::string password = valueOf(values, "password");
  const bool clear = valueOf(values, "format") == "clear-text";
  Canonical account;
  if (!username.empty()) {
    account.members["account_login"] = Canonical::string(username);
  }
  std::string id;
  if (clear && !password.empty()) {
    // credential is no ID Contributing Property, so the spec's id would give
    // two accounts that differ only in the password one id. The id comes
    // from webtrap's namespace instead, which the spec allows for ids made
    // another way.
    account.members["credential"] = Canonical::string(password);
    id = "user-account--" + uuidV5(kStixNamespace, "user-account|" + canonicalText(account));
  } else if (username.empty()) {
    return;  // A hashed password alone fits no user-account property.
  }
  std::string account_id = addSco("user-account", account, {}, id);
  addObservedData(uuid, stringAt(object, "first_seen"), stringAt(object, "last_seen"), 1,
                  {account_id}, {}, {});
}

StixEvent Converter::convert(std::string_view json) {
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  simdjson::dom::element event;
  if (parser.parse(json.data(), json.size()).get(root) != simdjson::SUCCESS ||
      root["Event"].get(event) != simdjson::SUCCESS || !event.is_object()) {
    throw std::runtime_error("STIX: the MISP event is not a JSON object with an Event");
  }
  StixEvent out;
  out.event_uuid = std::string(stringAt(event, "uuid"));
  out.info = std::string(stringAt(event, "info"));
  out.date = std::string(stringAt(event, "date"));
  if (out.event_uuid.empty()) {
    throw std::runtime_error("STIX: the MISP event has no uuid");
  }
  day_ = out.date.size() == 10 ? out.date : "1970-01-01";

  simdjson::dom::array attributes;
  if (event["Attribute"].get_array().get(attributes) == simdjson::SUCCESS) {
    for (simdjson::dom::element attribute : attributes) {
      convertAttribute(attribute);
    }
  }
  simdjson::dom::array objects;
  if (event["Object"].get_array().get(objects) == simdjson::SUCCESS) {
    for (simdjson::dom::element object : objects) {
      std::string_view name = stringAt(object, "name");
      if (name == "http-request") {
        convertHttpRequest(object);
      } else if (name == "credential") {
        convertCredential(object);
      }
    }
  }

  StixObject identity;
  identity.type = "identity";
  identity.id = identity_id_;
  identity.versioned = true;
  identity.properties = membersOf([&](JsonWriter& w) {
    w.member("name", options_.org_name);
    w.member("identity_class", "organization");
    writeStrings(w, "object_marking_refs", marking_refs_);
  });

  std::vector<std::string> refs{identity_id_};
  for (const auto& item : items_) {
    refs.push_back(item.id);
  }
  StixObject report;
  report.type = "report";
  report.id = "report--" + uuidV5(out.event_uuid, "stix|report");
  report.versioned = true;
  report.published_at_created = true;
  report.properties = membersOf([&](JsonWriter& w) {
    w.member("created_by_ref", identity_id_);
    w.member("name", out.info.empty() ? "webtrap honeypot activity" : out.info);
    w.member("description",
             fmt::format("Requests that webtrap honeypot sensors received, from MISP event {}.",
                         out.event_uuid));
    std::vector<std::string> types{"observed-data"};
    if (any_indicator_) {
      types.emplace_back("indicator");
    }
    writeStrings(w, "report_types", types);
    writeStrings(w, "object_refs", refs);
    writeCommon(w, tagNames(event),
                {{"misp", out.event_uuid, {}, "the uuid of the MISP event in the webtrap feed"}});
  });

  out.objects = std::move(markings_);
  out.objects.push_back(std::move(identity));
  out.objects.push_back(std::move(report));
  for (auto& item : items_) {
    out.objects.push_back(std::move(item));
  }
  return out;
}

}  // namespace

void appendJcsString(std::string& out, std::string_view value) {
  static constexpr char kDigits[] = "0123456789abcdef";
  out += '"';
  for (char c : value) {
    auto byte = static_cast<unsigned char>(c);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\f':
        out += "\\f";
        break;
      case '\r':
        out += "\\r";
        break;
      default:
        if (byte < 0x20) {
          out += "\\u00";
          out += kDigits[byte >> 4];
          out += kDigits[byte & 0x0f];
        } else {
          out += c;
        }
    }
  }
  out += '"';
}

std::string stixScoId(std::string_view type, std::string_view canonical_json) {
  return std::string(type) + "--" + uuidV5(kStixScoNamespace, canonical_json);
}

std::string stixBundleId(std::string_view event_uuid) {
  return "bundle--" + std::string(event_uuid);
}

std::string stixTimestamp(std::int64_t unix_ms) {
  std::time_t seconds = static_cast<std::time_t>(unix_ms / 1000);
  std::int64_t millis = unix_ms % 1000;
  if (millis < 0) {
    millis += 1000;
    --seconds;
  }
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, millis);
}

StixEvent convertMispEvent(std::string_view misp_event_json, const StixConvertOptions& options,
                           const SightingCounter& sighting_count) {
  if (options.org_uuid.empty()) {
    throw std::invalid_argument("STIX: org_uuid is empty");
  }
  Converter converter(options, sighting_count);
  return converter.convert(misp_event_json);
}

}  // namespace webtrap::collector
