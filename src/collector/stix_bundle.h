// Converts a MISP event, as MispModel::renderEvent writes it, into STIX 2.1
// objects (OASIS STIX Version 2.1, 2021, with Errata 01 of 2025).
//
// What each MISP item becomes:
//   - the event: a report SDO whose object_refs list every other object of
//     the bundle except the marking definitions, and whose labels are the
//     event tags;
//   - the creating organisation (org_name, org_uuid): an identity SDO,
//     identity--<org_uuid>, the created_by_ref of every SDO and SRO;
//   - the tlp tag: the predefined TLP marking definition (section 7.2.1.4)
//     in object_marking_refs of every SDO and SRO;
//   - an ip-src attribute with to_ids: an indicator with the pattern
//     [ipv4-addr:value = '...'] (or ipv6-addr), and, unless sightings are
//     off, a sighting SRO of it with the hit count;
//   - an ip-src attribute without to_ids: observed-data of an ipv4-addr or
//     ipv6-addr SCO, number_observed = 1 + its MISP sightings;
//   - an http-request object: observed-data of a network-traffic SCO with
//     the http-request-ext extension, src_ref the source address SCO and
//     dst_ref the Host (an address SCO, or a domain-name SCO);
//   - a credential object: observed-data of a user-account SCO.
// OAT tags and ATT&CK galaxy tags become labels and external_references.
//
// Ids are deterministic. SDO and SRO ids are UUIDv5 of the MISP item's uuid
// and the object type (the identity takes the organisation uuid as it is),
// so that a rerun or another collector names the same objects. SCO ids
// follow the spec's deterministic rule (section 2.9): UUIDv5 in namespace
// 00abedb4-aa42-466c-9c01-fed23315a9b7 of the ID Contributing Properties in
// RFC 8785 (JCS) form. A user-account that carries a clear-text credential
// is the exception (see stix_bundle.cpp).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace webtrap::collector {

// The namespace of deterministic SCO ids, fixed by STIX 2.1 section 2.9.
inline constexpr std::string_view kStixScoNamespace = "00abedb4-aa42-466c-9c01-fed23315a9b7";

// The namespace of the few ids webtrap derives from names rather than from a
// MISP uuid: uuid5(NAMESPACE_URL, "urn:webtrap:stix:v1").
extern const std::string kStixNamespace;

struct StixConvertOptions {
  std::string tlp = "tlp:amber";  // a tlp taxonomy tag, as MispModelOptions::tlp
  std::string org_name = "webtrap";
  std::string org_uuid;  // required
  bool sightings = true;  // a sighting SRO for each indicator
};

// One STIX object before the version timestamps are known.
struct StixObject {
  std::string type;
  std::string id;
  // SDOs and SROs carry created and modified; SCOs and marking definitions
  // do not (a marking definition has a fixed created in `properties`).
  bool versioned = false;
  // The report's `published`, written as its created time.
  bool published_at_created = false;
  // Every other property, as JSON object members without the braces
  // (empty when there are none). Deterministic for the same input.
  std::string properties;
};

struct StixEvent {
  std::string event_uuid;
  std::string info;
  std::string date;
  std::vector<StixObject> objects;  // markings, identity, report, then the rest
};

// Returns the number of MISP sightings of a top-level attribute, by uuid.
using SightingCounter = std::function<std::int64_t(const std::string& attribute_uuid)>;

// Converts {"Event": {...}}. Throws std::runtime_error when the text is not
// such an event.
StixEvent convertMispEvent(std::string_view misp_event_json, const StixConvertOptions& options,
                           const SightingCounter& sighting_count);

// The bundle id of a MISP event: bundle--<event uuid>.
std::string stixBundleId(std::string_view event_uuid);

// A STIX timestamp with millisecond precision: 2026-12-04T10:00:00.123Z.
std::string stixTimestamp(std::int64_t unix_ms);

// The deterministic id of an SCO of `type` whose ID Contributing Properties
// are `canonical_json`, an RFC 8785 serialized JSON object.
std::string stixScoId(std::string_view type, std::string_view canonical_json);

// Appends `value` as an RFC 8785 string: quote, backslash and control
// characters escaped (\b \t \n \f \r in short form), everything else as is.
void appendJcsString(std::string& out, std::string_view value);

}  // namespace webtrap::collector
