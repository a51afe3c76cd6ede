#!/usr/bin/env python3
"""Check STIX 2.1 bundles against the rules of the OASIS specification.

This is webtrap's own checker, written from the STIX Version 2.1 text
(OASIS Standard with Errata 01), because neither the OASIS stix2-validator
nor the cti-stix2-json-schemas can be installed on the build machines. It
is not the official validator. It checks:

- the bundle: type "bundle", an id bundle--<UUID>, a non-empty objects list
  and no spec_version;
- every object: a type name of 3 to 250 lowercase letters, digits and
  hyphens, an id <type>--<RFC 4122 UUID>, property names other than id of
  3 to 250 characters (a-z, 0-9, _), spec_version "2.1", no empty list or
  dictionary, dictionary keys in [a-zA-Z0-9_-] of at most 250 characters;
- timestamps: YYYY-MM-DDTHH:MM:SS[.s+]Z, a real date, and at least
  millisecond precision for created and modified; modified not before
  created; created and modified on SDOs and SROs, only created on marking
  definitions, neither on SCOs;
- references: *_ref and *_refs hold identifiers, resolve to an object in
  the same bundle, and point to the types the spec allows for
  created_by_ref, object_marking_refs, sighting_of_ref, where_sighted_refs,
  observed_data_refs, src_ref and dst_ref;
- the required properties and value ranges of identity, report, indicator,
  observed-data, sighting, marking-definition, ipv4-addr, ipv6-addr,
  domain-name, network-traffic (with http-request-ext) and user-account,
  and external references with a source_name and one of description, url
  or external_id;
- TLP marking definitions: exactly the four predefined objects of section
  7.2.1.4;
- deterministic SCO ids: the UUIDv5 in namespace
  00abedb4-aa42-466c-9c01-fed23315a9b7 of the ID Contributing Properties in
  RFC 8785 form, recomputed here for ipv4-addr, ipv6-addr, domain-name,
  network-traffic and user-account (unless it carries a credential, which
  does not contribute and so may take an id of another namespace);
- indicator patterns: balanced brackets and quotes, and for the one form
  webtrap writes, [ipv4-addr:value = '...'] or [ipv6-addr:value = '...'],
  a valid address. It does not parse the full STIX patterning grammar.

RFC 8785 is computed with json.dumps(sort_keys=True, ensure_ascii=False,
separators=(",", ":")), which gives the same text for objects of strings,
lists and objects whose keys are in the Basic Multilingual Plane.

Usage: validate_stix.py FILE...   (exit status 1 when any file fails)
"""
import datetime
import ipaddress
import json
import re
import sys
import uuid

SCO_NAMESPACE = uuid.UUID("00abedb4-aa42-466c-9c01-fed23315a9b7")
MAX_COUNT = 999999999

SDO_TYPES = {"attack-pattern", "campaign", "course-of-action", "grouping", "identity",
             "incident", "indicator", "infrastructure", "intrusion-set", "location", "malware",
             "malware-analysis", "note", "observed-data", "opinion", "report", "threat-actor",
             "tool", "vulnerability"}
SRO_TYPES = {"relationship", "sighting"}
SCO_TYPES = {"artifact", "autonomous-system", "directory", "domain-name", "email-addr",
             "email-message", "file", "ipv4-addr", "ipv6-addr", "mac-addr", "mutex",
             "network-traffic", "process", "software", "url", "user-account",
             "windows-registry-key", "x509-certificate"}
META_TYPES = {"marking-definition", "language-content", "extension-definition"}

TLP_MARKINGS = {
    f"marking-definition--{uid}": {
        "type": "marking-definition", "spec_version": "2.1",
        "id": f"marking-definition--{uid}", "created": "2017-01-20T00:00:00.000Z",
        "definition_type": "tlp", "name": f"TLP:{color.upper()}",
        "definition": {"tlp": color}}
    for color, uid in (("white", "613f2e26-407d-48c7-9eca-b8e91df99dc9"),
                       ("green", "34098fce-860f-48ae-8e50-ebd3cc5e41da"),
                       ("amber", "f88d31f6-486f-44da-b317-01333bde0b82"),
                       ("red", "5e57c739-391a-4eb3-b6be-7d15ca92d5ed"))}

ID_CONTRIBUTING = {
    "ipv4-addr": ("value",),
    "ipv6-addr": ("value",),
    "domain-name": ("value",),
    "network-traffic": ("start", "end", "src_ref", "dst_ref", "src_port", "dst_port",
                        "protocols", "extensions"),
    "user-account": ("account_type", "user_id", "account_login"),
}

# Which object types each reference property may point to.
REF_TARGETS = {
    "created_by_ref": {"identity"},
    "object_marking_refs": {"marking-definition"},
    "sighting_of_ref": SDO_TYPES,
    "where_sighted_refs": {"identity", "location"},
    "observed_data_refs": {"observed-data"},
    "src_ref": {"ipv4-addr", "ipv6-addr", "mac-addr", "domain-name"},
    "dst_ref": {"ipv4-addr", "ipv6-addr", "mac-addr", "domain-name"},
}

TYPE_NAME = re.compile(r"^[a-z][a-z0-9-]{1,248}[a-z0-9]$")
PROPERTY_NAME = re.compile(r"^[a-z][a-z0-9_]{2,249}$")
DICTIONARY_KEY = re.compile(r"^[a-zA-Z0-9_-]{1,250}$")
IDENTIFIER = re.compile(r"^([a-z][a-z0-9-]+[a-z0-9])--([0-9a-f]{8}-[0-9a-f]{4}-([1-8])[0-9a-f]{3}-"
                        r"[89ab][0-9a-f]{3}-[0-9a-f]{12})$")
TIMESTAMP = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.(\d+))?Z$")
SIMPLE_PATTERN = re.compile(r"^\[(ipv4-addr|ipv6-addr):value = '([^'\\]*)'\]$")


def canonical(value):
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def parse_timestamp(text, millis=False):
    """Return a sortable key for a STIX timestamp, or None when it is not one."""
    if not isinstance(text, str):
        return None
    match = TIMESTAMP.match(text)
    if not match:
        return None
    fraction = match.group(8) or ""
    if millis and len(fraction) < 3:
        return None
    try:
        moment = datetime.datetime(*(int(match.group(i)) for i in range(1, 7)))
    except ValueError:
        return None
    return (moment, fraction.ljust(9, "0"))


class Checker:
    def __init__(self, name):
        self.name = name
        self.errors = []

    def error(self, where, message):
        self.errors.append(f"{self.name}: {where}: {message}")

    # ------------------------------------------------------------ generic

    def check_value(self, where, key, value):
        if isinstance(value, list):
            if not value:
                self.error(where, f"{key} is an empty list")
            for item in value:
                self.check_value(where, key, item)
        elif isinstance(value, dict):
            if not value:
                self.error(where, f"{key} is an empty dictionary")

    def check_dictionary_keys(self, where, key, value):
        for name in value:
            if not DICTIONARY_KEY.match(name):
                self.error(where, f"{key} has an invalid dictionary key {name!r}")

    def check_timestamp(self, where, obj, key, millis=False, required=False):
        if key not in obj:
            if required:
                self.error(where, f"{key} is missing")
            return None
        parsed = parse_timestamp(obj[key], millis)
        if parsed is None:
            precision = " with millisecond precision" if millis else ""
            self.error(where, f"{key} {obj[key]!r} is not a STIX timestamp{precision}")
        return parsed

    def require(self, where, obj, *keys):
        for key in keys:
            if key not in obj:
                self.error(where, f"required property {key} is missing")

    def check_int(self, where, obj, key, low, high, required=False):
        if key not in obj:
            if required:
                self.error(where, f"required property {key} is missing")
            return
        value = obj[key]
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            self.error(where, f"{key} {value!r} is not an integer from {low} to {high}")

    def check_external_references(self, where, obj):
        for reference in obj.get("external_references", []):
            if not isinstance(reference, dict) or "source_name" not in reference:
                self.error(where, f"external reference {reference!r} has no source_name")
            elif not any(k in reference for k in ("description", "url", "external_id")):
                self.error(where, f"external reference {reference!r} has none of "
                                  "description, url and external_id")

    # ------------------------------------------------------------ objects

    def check_object(self, obj, index):
        if not isinstance(obj, dict):
            self.error(f"objects[{index}]", "is not a JSON object")
            return
        kind = obj.get("type")
        where = f"{obj.get('id', f'objects[{index}]')}"
        if not isinstance(kind, str) or not TYPE_NAME.match(kind):
            self.error(where, f"type {kind!r} is not a valid type name")
            return
        match = IDENTIFIER.match(obj.get("id", "")) if isinstance(obj.get("id"), str) else None
        if not match or match.group(1) != kind:
            self.error(where, f"id {obj.get('id')!r} is not {kind}--<RFC 4122 UUID>")
        for key, value in obj.items():
            # The spec's own "id" is the one name shorter than three characters.
            if not PROPERTY_NAME.match(key) and key != "id":
                self.error(where, f"property name {key!r} is invalid")
            self.check_value(where, key, value)
        is_sco = kind in SCO_TYPES
        if "spec_version" in obj and obj["spec_version"] != "2.1":
            self.error(where, f"spec_version {obj['spec_version']!r} is not 2.1")
        if not is_sco and "spec_version" not in obj:
            self.error(where, "spec_version is missing")
        if kind in SDO_TYPES or kind in SRO_TYPES:
            created = self.check_timestamp(where, obj, "created", millis=True, required=True)
            modified = self.check_timestamp(where, obj, "modified", millis=True, required=True)
            if created and modified and modified < created:
                self.error(where, "modified is before created")
        elif kind == "marking-definition":
            self.check_timestamp(where, obj, "created", millis=True, required=True)
            if "modified" in obj:
                self.error(where, "a marking definition has no modified")
        elif is_sco:
            for key in ("created", "modified", "created_by_ref"):
                if key in obj:
                    self.error(where, f"an SCO has no {key}")
        for key in ("labels",):
            if key in obj and not all(isinstance(v, str) for v in obj[key]):
                self.error(where, f"{key} is not a list of strings")
        self.check_external_references(where, obj)
        check = getattr(self, "check_" + kind.replace("-", "_"), None)
        if check:
            check(where, obj)
        if kind in ID_CONTRIBUTING and match:
            self.check_deterministic_id(where, obj, kind, match.group(2))

    def check_deterministic_id(self, where, obj, kind, uid):
        if kind == "user-account" and "credential" in obj:
            return  # credential does not contribute; webtrap uses its own namespace then
        contributing = {k: obj[k] for k in ID_CONTRIBUTING[kind] if k in obj}
        if not contributing:
            return
        expected = str(uuid.uuid5(SCO_NAMESPACE, canonical(contributing)))
        if uid != expected:
            self.error(where, f"id is not the deterministic UUIDv5 {expected} of "
                              f"{canonical(contributing)}")

    def check_identity(self, where, obj):
        self.require(where, obj, "name")

    def check_report(self, where, obj):
        self.require(where, obj, "name", "published", "object_refs")
        self.check_timestamp(where, obj, "published")

    def check_indicator(self, where, obj):
        self.require(where, obj, "pattern", "pattern_type", "valid_from")
        valid_from = self.check_timestamp(where, obj, "valid_from")
        valid_until = self.check_timestamp(where, obj, "valid_until")
        if valid_from and valid_until and valid_until <= valid_from:
            self.error(where, "valid_until is not after valid_from")
        pattern = obj.get("pattern", "")
        if obj.get("pattern_type") == "stix":
            self.check_pattern(where, pattern)

    def check_pattern(self, where, pattern):
        depth = 0
        quoted = False
        escaped = False
        for char in pattern:
            if quoted:
                if escaped:
                    escaped = False
                elif char == "\\":
                    escaped = True
                elif char == "'":
                    quoted = False
                continue
            if char == "'":
                quoted = True
            elif char == "[":
                depth += 1
            elif char == "]":
                depth -= 1
                if depth < 0:
                    break
        if depth != 0 or quoted or not pattern.startswith("["):
            self.error(where, f"pattern {pattern!r} has unbalanced brackets or quotes")
            return
        match = SIMPLE_PATTERN.match(pattern)
        if match:
            version = 4 if match.group(1) == "ipv4-addr" else 6
            try:
                address = ipaddress.ip_address(match.group(2))
            except ValueError:
                address = None
            if address is None or address.version != version:
                self.error(where, f"pattern {pattern!r} holds no valid IPv{version} address")

    def check_observed_data(self, where, obj):
        self.require(where, obj, "first_observed", "last_observed", "number_observed")
        first = self.check_timestamp(where, obj, "first_observed")
        last = self.check_timestamp(where, obj, "last_observed")
        if first and last and last < first:
            self.error(where, "last_observed is before first_observed")
        self.check_int(where, obj, "number_observed", 1, MAX_COUNT)
        if ("objects" in obj) == ("object_refs" in obj):
            self.error(where, "exactly one of objects and object_refs must be present")

    def check_sighting(self, where, obj):
        self.require(where, obj, "sighting_of_ref")
        first = self.check_timestamp(where, obj, "first_seen")
        last = self.check_timestamp(where, obj, "last_seen")
        if first and last and last < first:
            self.error(where, "last_seen is before first_seen")
        self.check_int(where, obj, "count", 0, MAX_COUNT)

    def check_marking_definition(self, where, obj):
        kind = obj.get("definition_type")
        if kind is None and "extensions" not in obj:
            self.error(where, "neither definition_type nor extensions is present")
        if kind == "tlp":
            expected = TLP_MARKINGS.get(obj.get("id"))
            if expected is None:
                self.error(where, "a TLP marking definition that is not one of the four "
                                  "predefined ones")
            elif obj != expected:
                self.error(where, "differs from the predefined TLP marking definition")
        elif kind == "statement":
            statement = obj.get("definition", {}).get("statement")
            if not isinstance(statement, str) or not statement:
                self.error(where, "a statement marking without definition.statement")

    def check_address(self, where, obj, version):
        self.require(where, obj, "value")
        try:
            network = ipaddress.ip_network(obj.get("value", ""), strict=False)
        except ValueError:
            network = None
        if network is None or network.version != version:
            self.error(where, f"value {obj.get('value')!r} is not an IPv{version} address")

    def check_ipv4_addr(self, where, obj):
        self.check_address(where, obj, 4)

    def check_ipv6_addr(self, where, obj):
        self.check_address(where, obj, 6)

    def check_domain_name(self, where, obj):
        self.require(where, obj, "value")

    def check_network_traffic(self, where, obj):
        self.require(where, obj, "protocols")
        if "src_ref" not in obj and "dst_ref" not in obj:
            self.error(where, "neither src_ref nor dst_ref is present")
        for protocol in obj.get("protocols", []):
            if not isinstance(protocol, str) or protocol != protocol.lower():
                self.error(where, f"protocol {protocol!r} is not a lowercase string")
        extensions = obj.get("extensions", {})
        request = extensions.get("http-request-ext")
        if request is not None:
            self.require(where + " http-request-ext", request, "request_method", "request_value")
            method = request.get("request_method", "")
            if not isinstance(method, str) or method != method.lower():
                self.error(where, f"request_method {method!r} is not lowercase")
            headers = request.get("request_header", {})
            self.check_dictionary_keys(where, "request_header", headers)
            for name, values in headers.items():
                if not isinstance(values, list) or not values or \
                        not all(isinstance(v, str) for v in values):
                    self.error(where, f"request_header {name!r} is not a list of strings")
            if "http" not in obj.get("protocols", []):
                self.error(where, "http-request-ext without http in protocols")

    def check_user_account(self, where, obj):
        if not set(obj) - {"type", "id", "spec_version", "object_marking_refs",
                           "granular_markings", "defanged", "extensions"}:
            self.error(where, "a user-account with no property of its own")

    # ------------------------------------------------------------ bundle

    def check_references(self, objects):
        by_id = {}
        for obj in objects:
            if isinstance(obj, dict) and isinstance(obj.get("id"), str):
                previous = by_id.get(obj["id"])
                if previous is not None and previous != obj:
                    self.error(obj["id"], "two different objects with this id in the bundle")
                by_id[obj["id"]] = obj
        for obj in objects:
            if not isinstance(obj, dict):
                continue
            where = obj.get("id", "?")
            for key, value in obj.items():
                self.check_reference_values(where, key, value, by_id)
            for name, extension in obj.get("extensions", {}).items():
                if isinstance(extension, dict):
                    for key, value in extension.items():
                        self.check_reference_values(f"{where} {name}", key, value, by_id)

    def check_reference_values(self, where, key, value, by_id):
        if key.endswith("_ref"):
            values = [value]
        elif key.endswith("_refs"):
            values = value if isinstance(value, list) else [value]
        else:
            return
        allowed = REF_TARGETS.get(key)
        for ref in values:
            match = IDENTIFIER.match(ref) if isinstance(ref, str) else None
            if not match:
                self.error(where, f"{key} value {ref!r} is not an identifier")
                continue
            target = by_id.get(ref)
            if target is None:
                self.error(where, f"{key} value {ref} resolves to no object in the bundle")
            elif allowed is not None and target.get("type") not in allowed:
                self.error(where, f"{key} points to a {target.get('type')}, expected one of "
                                  f"{sorted(allowed)}")
            if key == "object_refs" and where.startswith("observed-data--") and target and \
                    target.get("type") not in SCO_TYPES | {"relationship"}:
                self.error(where, f"object_refs of observed-data points to a "
                                  f"{target.get('type')}")

    def check_bundle(self, bundle):
        if not isinstance(bundle, dict):
            self.error("bundle", "is not a JSON object")
            return
        if bundle.get("type") != "bundle":
            self.error("bundle", f"type {bundle.get('type')!r} is not bundle")
        match = IDENTIFIER.match(bundle.get("id", "")) if isinstance(bundle.get("id"), str) \
            else None
        if not match or match.group(1) != "bundle":
            self.error("bundle", f"id {bundle.get('id')!r} is not bundle--<UUID>")
        if "spec_version" in bundle:
            self.error("bundle", "a STIX 2.1 bundle has no spec_version")
        objects = bundle.get("objects")
        if not isinstance(objects, list) or not objects:
            self.error("bundle", "objects is missing or empty")
            return
        for index, obj in enumerate(objects):
            self.check_object(obj, index)
        self.check_references(objects)


def validate_file(path):
    checker = Checker(path)
    try:
        with open(path, encoding="utf-8") as f:
            bundle = json.load(f)
    except (OSError, ValueError) as e:
        checker.error("file", f"not readable as JSON: {e}")
        return checker.errors
    checker.check_bundle(bundle)
    return checker.errors


def main(paths):
    if not paths:
        print(__doc__.split("\n\n")[-1].strip(), file=sys.stderr)
        return 2
    failed = 0
    for path in paths:
        errors = validate_file(path)
        if errors:
            failed += 1
            for error in errors[:50]:
                print(error)
            if len(errors) > 50:
                print(f"{path}: {len(errors) - 50} more errors")
    print(f"validate_stix: {len(paths) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
