#!/usr/bin/env python3
"""Replay the recorded MISP 2.5.1 exchanges against the MISP test double.

1. Sends every request of $WEBTRAP_SHARED_DIR/misp/fixtures, in order, to a
   fresh tests/tools/misp_double.py and compares each response with the
   recorded one: status, Content-Type, Location and X-* headers, and the
   body key by key. Values that differ by nature are compared by kind:
   - ids must be digit strings, "0" where MISP wrote "0", and map one to one
     onto the recorded ids of the same kind (event, attribute, object, tag,
     sighting, taxonomy) across the whole replay;
   - uuids that a request sent must come back unchanged, generated ones must
     be uuids that map one to one;
   - timestamps must be "0" where MISP wrote "0", the sent value where the
     request set it, and the double's clock otherwise;
   - ids inside messages, urls and the Location header follow the id maps.
   Every other value must be equal.
2. Checks the double's statistics after the replay. The totals must match
   the last recorded views, and no stored event may fail the lax event
   schema. The count of sent documents that fail the strict schema must
   match the jsonschema package's count, when that package is installed.
3. Checks the fault injection, object template checks and statistics.

Exit 77 (skipped) when the fixtures are not available.
"""

from __future__ import annotations

import http.client
import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import time

SOURCE_DIR = pathlib.Path(os.environ.get("WEBTRAP_SOURCE_DIR", pathlib.Path(__file__).resolve().parents[2]))
SHARED_DIR = pathlib.Path(os.environ.get("WEBTRAP_SHARED_DIR", SOURCE_DIR.parent / "shared"))
MISP_DIR = SHARED_DIR / "misp"
FIXTURES = MISP_DIR / "fixtures"
DOUBLE = SOURCE_DIR / "tests" / "tools" / "misp_double.py"
API_KEY = "0123456789abcdef0123456789abcdef01234567"
SITE_ADMIN_KEY = "fedcba9876543210fedcba9876543210fedcba98"
UUID_PATTERN = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
COLOUR_PATTERN = re.compile(r"^#[0-9a-fA-F]{6}$")
AUTH_FAILED = ("Authentication failed. Please make sure you pass the API key of an API enabled "
               "user along in the Authorization header.")

# Keys whose value is an id of the named kind.
ID_KEYS = {"event_id": "Event", "object_id": "Object", "attribute_id": "Attribute", "org_id": "Org",
           "orgc_id": "Org", "user_id": "User", "sharing_group_id": "SharingGroup"}
# Containers whose "id" is an id of the named kind.
ENTITY_KINDS = {"Event": "Event", "Attribute": "Attribute", "Object": "Object", "Sighting": "Sighting",
                "Tag": "Tag", "Org": "Org", "Orgc": "Org", "Organisation": "Org", "Taxonomy": "Taxonomy"}
UUID_KEYS = {"uuid", "attribute_uuid", "event_uuid", "template_uuid"}
TIMESTAMP_KEYS = {"timestamp", "publish_timestamp", "date_sighting"}
TEXT_KEYS = {"name", "message", "url"}
# Text right before an id inside a message, url or Location header, and the id's kind.
TEXT_ID_CONTEXT = [(re.compile(r"(Event\(|/events/(view/|publish/|add/)?)$"), "Event"),
                   (re.compile(r"(Attribute\(|/attributes/(edit|add)/)$"), "Attribute"),
                   (re.compile(r"/objects/add/$"), "Event"),
                   (re.compile(r"/taxonomies/(view|enable|disable)/$"), "Taxonomy"),
                   (re.compile(r"tag [^ ()]+\($"), "Tag")]
# A number on its own: not part of a uuid, a word or a longer number.
STANDALONE_NUMBER = re.compile(r"(?<![\w-])(\d+)(?![\w-])")

failures: list[str] = []
notes: list[str] = []


def check(condition: bool, message: str) -> bool:
    if not condition:
        failures.append(message)
        print(f"FAIL: {message}", file=sys.stderr)
    return condition


def json_type(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if value is None:
        return "null"
    return "array" if isinstance(value, list) else "object"


def scalars(value: object) -> set[str]:
    """Every scalar in a request body, as strings."""
    found: set[str] = set()
    if isinstance(value, dict):
        for item in value.values():
            found |= scalars(item)
    elif isinstance(value, list):
        for item in value:
            found |= scalars(item)
    elif value is not None and not isinstance(value, bool):
        found.add(str(value))
    return found


def text_kind(prefix: str) -> str | None:
    for pattern, kind in TEXT_ID_CONTEXT:
        if pattern.search(prefix):
            return kind
    return None


class Comparison:
    """Compares recorded and actual responses and keeps the id and uuid maps of the replay."""

    def __init__(self, sent_uuids: set[str], clock_start: int, sent_values: set[str] | None = None) -> None:
        self.sent_uuids = sent_uuids
        self.sent_values = sent_values or set()
        self.clock_start = clock_start
        self.maps: dict[str, dict[str, str]] = {}
        self.reverse: dict[str, dict[str, str]] = {}
        self.differences: list[str] = []

    def differ(self, where: str, message: str) -> None:
        self.differences.append(f"{where}: {message}")

    def same_id(self, kind: str, recorded: str, actual: str, where: str) -> None:
        """Check that an id (or generated uuid, kind "uuid") maps one to one onto the recorded one."""
        if recorded == "0" or actual == "0":
            if recorded != actual:
                self.differ(where, f"{kind} id {actual!r}, recorded {recorded!r}")
            return
        if kind != "uuid" and not actual.isdigit():
            self.differ(where, f"{kind} id {actual!r} is not a digit string")
            return
        forward = self.maps.setdefault(kind, {})
        backward = self.reverse.setdefault(kind, {})
        if recorded in forward:
            if forward[recorded] != actual:
                self.differ(where, f"{kind} id {actual!r}, but recorded {recorded!r} was {forward[recorded]!r} before")
        elif actual in backward:
            self.differ(where, f"{kind} id {actual!r} is already the double's id for recorded {backward[actual]!r}, "
                               f"not {recorded!r}")
        else:
            forward[recorded] = actual
            backward[actual] = recorded

    def translate_id(self, kind: str, recorded: str) -> str:
        return self.maps.get(kind, {}).get(recorded, recorded)

    def translate_text(self, text: str) -> str:
        """Replace recorded ids in a request path by the double's ids."""
        def replace(match: re.Match) -> str:
            kind = text_kind(text[:match.start()])
            return self.translate_id(kind, match.group(1)) if kind else match.group(1)
        return STANDALONE_NUMBER.sub(replace, text)

    def compare_text(self, recorded: str, actual: str, where: str) -> None:
        """Compare strings that may contain ids, such as messages, urls and Location."""
        pieces = []
        kinds = []
        position = 0
        for match in STANDALONE_NUMBER.finditer(recorded):
            kind = text_kind(recorded[:match.start()])
            if kind is None:
                continue
            pieces.append(re.escape(recorded[position:match.start()]))
            pieces.append(r"(\d+)")
            kinds.append((kind, match.group(1)))
            position = match.end()
        pieces.append(re.escape(recorded[position:]))
        found = re.fullmatch("".join(pieces), actual)
        if found is None:
            self.differ(where, f"{actual!r} does not match recorded {recorded!r}")
            return
        for (kind, recorded_id), actual_id in zip(kinds, found.groups()):
            self.same_id(kind, recorded_id, actual_id, where)

    def compare_uuid(self, recorded: str, actual: object, where: str) -> None:
        if recorded in self.sent_uuids:
            if actual != recorded:
                self.differ(where, f"uuid {actual!r}, the request sent {recorded!r}")
            return
        if not isinstance(actual, str) or not UUID_PATTERN.match(actual):
            self.differ(where, f"{actual!r} is not a lowercase uuid")
            return
        self.same_id("uuid", recorded, actual, where)

    def compare_timestamp(self, recorded: str, actual: object, request_values: set[str], where: str) -> None:
        if not isinstance(actual, str) or not actual.isdigit():
            self.differ(where, f"timestamp {actual!r} is not a digit string")
            return
        if recorded == "0" or recorded in request_values or recorded in self.sent_values:
            if actual != recorded:
                self.differ(where, f"timestamp {actual!r}, recorded {recorded!r}")
            return
        if not self.clock_start - 5 <= int(actual) <= int(time.time()) + 5:
            self.differ(where, f"timestamp {actual} is not from the double's clock")

    def compare(self, recorded: object, actual: object, where: str, context: str,
                request_values: set[str], key: str = "") -> None:
        if json_type(recorded) != json_type(actual):
            self.differ(where, f"{json_type(actual)} {json.dumps(actual)[:80]}, recorded "
                               f"{json_type(recorded)} {json.dumps(recorded)[:80]}")
            return
        if isinstance(recorded, dict):
            assert isinstance(actual, dict)
            missing = sorted(set(recorded) - set(actual))
            extra = sorted(set(actual) - set(recorded))
            if missing or extra:
                self.differ(where, f"keys missing {missing}, unexpected {extra}")
            for name in recorded:
                if name in actual:
                    inner = ENTITY_KINDS.get(name, context)
                    self.compare(recorded[name], actual[name], f"{where}.{name}", inner, request_values, name)
            return
        if isinstance(recorded, list):
            assert isinstance(actual, list)
            if len(recorded) != len(actual):
                self.differ(where, f"{len(actual)} items, recorded {len(recorded)}")
                return
            actual = self.align_by_sent_uuid(recorded, actual, where)
            for position, (left, right) in enumerate(zip(recorded, actual)):
                self.compare(left, right, f"{where}[{position}]", context, request_values)
            return
        if isinstance(recorded, str):
            if key == "id":
                self.same_id(context, recorded, str(actual), where)
            elif key in ID_KEYS:
                self.same_id(ID_KEYS[key], recorded, str(actual), where)
            elif key in UUID_KEYS and recorded:
                self.compare_uuid(recorded, actual, where)
            elif key in TIMESTAMP_KEYS:
                self.compare_timestamp(recorded, actual, request_values, where)
            elif key == "colour":
                if not COLOUR_PATTERN.match(str(actual)):
                    self.differ(where, f"colour {actual!r} is not #rrggbb")
            elif key in TEXT_KEYS:
                self.compare_text(recorded, str(actual), where)
            elif recorded != actual:
                self.differ(where, f"{json.dumps(actual)[:120]}, recorded {json.dumps(recorded)[:120]}")
            return
        if recorded != actual:
            self.differ(where, f"{json.dumps(actual)}, recorded {json.dumps(recorded)}")

    def align_by_sent_uuid(self, recorded: list, actual: list, where: str) -> list:
        """Reorder items by uuid when MISP returned them in another order than the request's.

        MISP 2.5.1 returns a 2,000-item attribute list in an order of its own
        while the double keeps the request order. A client must not rely on
        either, so when every recorded item has a uuid the request sent, items
        are paired by uuid and the order difference becomes a note.
        """
        if not recorded or not all(isinstance(item, dict) and item.get("uuid") in self.sent_uuids
                                   for item in recorded):
            return actual
        by_uuid = {item.get("uuid"): item for item in actual if isinstance(item, dict)}
        if [item["uuid"] for item in recorded] == [item.get("uuid") for item in actual]:
            return actual
        if set(by_uuid) != {item["uuid"] for item in recorded}:
            return actual
        notes.append(f"{where}: same items as recorded, in request order instead of MISP's order")
        return [by_uuid[item["uuid"]] for item in recorded]


class Double:
    def __init__(self, *arguments: str) -> None:
        self.folder = tempfile.TemporaryDirectory()
        port_file = pathlib.Path(self.folder.name) / "port"
        command = [sys.executable, str(DOUBLE), "--port-file", str(port_file), "--data-dir", str(MISP_DIR),
                   "--api-key", API_KEY, "--site-admin-key", SITE_ADMIN_KEY, *arguments]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        for _ in range(400):
            if port_file.exists() or self.process.poll() is not None:
                break
            time.sleep(0.025)
        if not port_file.exists():
            self.process.kill()
            raise SystemExit(f"misp_double did not start: {' '.join(command)}")
        self.port = int(port_file.read_text())

    def send(self, method: str, path: str, headers: dict, body: object = None,
             raw: bytes | None = None) -> tuple[int, dict, object]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        payload = raw
        if payload is None and body is not None:
            payload = json.dumps(body).encode()
        connection.request(method, path, body=payload, headers=headers)
        response = connection.getresponse()
        data = response.read()
        connection.close()
        response_headers = {name.lower(): value for name, value in response.getheaders()}
        if response_headers.get("content-type", "").startswith("application/json"):
            return response.status, response_headers, json.loads(data)
        return response.status, response_headers, data.decode("utf-8", "replace")

    def api(self, method: str, path: str, body: object = None, key: str = API_KEY) -> tuple[int, dict, object]:
        headers = {"Authorization": key, "Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        return self.send(method, path, headers, body)

    def stats(self) -> dict:
        return self.send("GET", "/_double/stats", {})[2]  # type: ignore[return-value]

    def faults(self, values: dict) -> dict:
        return self.send("POST", "/_double/faults", {"Content-Type": "application/json"}, values)[2]  # type: ignore[return-value]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)
        self.folder.cleanup()


def load_fixtures() -> list[tuple[str, dict]]:
    return [(path.name, json.loads(path.read_text())) for path in sorted(FIXTURES.glob("[0-9]*.json"))]


def request_key(name: str, fixture: dict) -> str:
    """Return the key a fixture was recorded with.

    Taxonomy calls were recorded with the site admin's key, except the one
    whose name marks it as the Org Admin's.
    """
    path = fixture["request"]["path"]
    if path.startswith("/taxonomies/") and "org-admin" not in name:
        return SITE_ADMIN_KEY
    return API_KEY


def sent_uuids(fixtures: list[tuple[str, dict]], org_uuid: str) -> set[str]:
    found = {org_uuid}
    for _, fixture in fixtures:
        request = fixture["request"]
        found |= {value for value in scalars(request["body"]) if UUID_PATTERN.match(value)}
        found |= set(re.findall(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", request["path"]))
    return found


def replay(fixtures: list[tuple[str, dict]]) -> tuple[Double, int]:
    """Replay every fixture against a fresh double; return it and the number of fixtures that matched."""
    first_event = fixtures[0][1]["response"]["body"]["Event"]
    org = first_event["Org"]
    double = Double("--quiet", "--base-url", "http://127.0.0.1:8080",
                    "--org-name", org["name"], "--org-uuid", org["uuid"],
                    "--creator-email", first_event["event_creator_email"])
    # A timestamp that any request set, such as a sighting's, must come back unchanged later too.
    sent_values = set().union(*(scalars(fixture["request"]["body"]) for _, fixture in fixtures))
    comparison = Comparison(sent_uuids(fixtures, org["uuid"]), int(time.time()), sent_values)
    matched = 0
    for name, fixture in fixtures:
        request = fixture["request"]
        recorded = fixture["response"]
        key = request_key(name, fixture)
        headers = {header: value.replace("<api-key>", key) for header, value in request["headers"].items()}
        path = comparison.translate_text(request["path"])
        body = request["body"]
        if isinstance(body, dict) and "eventid" in body:
            body = dict(body, eventid=comparison.translate_id("Event", str(body["eventid"])))
        status, actual_headers, actual_body = double.send(request["method"], path, headers, body)
        before = len(comparison.differences)
        where = f"{name}"
        if status != recorded["status"]:
            comparison.differ(where, f"HTTP {status}, recorded {recorded['status']}")
        for header, value in recorded["headers"].items():
            actual = actual_headers.get(header.lower())
            if actual is None:
                comparison.differ(where, f"header {header} is missing")
            elif header == "Location":
                comparison.compare_text(value, actual, f"{where} header Location")
            elif actual != value:
                comparison.differ(where, f"header {header}: {actual!r}, recorded {value!r}")
        if "location" in actual_headers and "Location" not in recorded["headers"]:
            comparison.differ(where, f"unexpected Location header {actual_headers['location']!r}")
        # A bare "id" at the top of a body (publish, taxonomy enable) is the id in the path.
        root_kind = "Taxonomy" if request["path"].startswith("/taxonomies/") else "Event"
        comparison.compare(recorded["body"], actual_body, f"{where} body", root_kind, scalars(request["body"]))
        if len(comparison.differences) == before:
            matched += 1
        else:
            for difference in comparison.differences[before:before + 15]:
                check(False, difference)
            if len(comparison.differences) - before > 15:
                check(False, f"{name}: {len(comparison.differences) - before - 15} more differences")
    print(f"{matched} of {len(fixtures)} fixtures reproduced")
    return double, matched


def expected_schema_violations(fixtures: list[tuple[str, dict]]) -> int | None:
    """Count sent documents that fail the strict event schema, with the jsonschema package."""
    try:
        import jsonschema
    except ImportError:
        notes.append("jsonschema is not installed, so the schema count is not cross-checked")
        return None
    schema = json.loads((MISP_DIR / "event-schema.json").read_text())
    event_validator = jsonschema.Draft4Validator(schema)
    attribute_validator = jsonschema.Draft4Validator(dict(schema, **{"$ref": "#/defs/attribute"}))
    count = 0
    for _, fixture in fixtures:
        request, status = fixture["request"], fixture["response"]["status"]
        if request["path"] == "/events/add":
            body = request["body"]
            count += bool(list(event_validator.iter_errors(body if "Event" in body else {"Event": body})))
        elif request["path"].startswith("/attributes/add/") and status != 404:
            for item in request["body"] if isinstance(request["body"], list) else [request["body"]]:
                count += bool(list(attribute_validator.iter_errors(item)))
    return count


def check_stats_after_replay(double: Double, fixtures: list[tuple[str, dict]]) -> None:
    by_name = dict(fixtures)
    main_event = by_name["47-event-view-after-add-to-published.json"]["response"]["body"]["Event"]
    bulk_event = by_name["57-bulk-events-restsearch-metadata.json"]["response"]["body"]["response"][0]["Event"]
    stats = double.stats()
    totals = stats["totals"]
    recorded_attributes = int(main_event["attribute_count"]) + int(bulk_event["attribute_count"])
    check(totals["events"] == 2, f"stats: {totals['events']} events, expected 2")
    check(totals["attributes"] + totals["object_attributes"] == recorded_attributes,
          f"stats: {totals['attributes']} + {totals['object_attributes']} attributes, recorded {recorded_attributes}")
    check(totals["objects"] == len(main_event["Object"]),
          f"stats: {totals['objects']} objects, recorded {len(main_event['Object'])}")
    recorded_sightings = sum(len(attribute.get("Sighting", [])) for attribute in main_event["Attribute"])
    recorded_sightings += sum(len(attribute.get("Sighting", [])) for misp_object in main_event["Object"]
                              for attribute in misp_object["Attribute"])
    check(totals["sightings"] == recorded_sightings,
          f"stats: {totals['sightings']} sightings, recorded {recorded_sightings}")
    check(stats["stored_event_schema_violations"] == 0,
          f"stored events fail the lax event schema: {stats['stored_event_schema_samples'][:5]}")
    check(len(stats["events"]) == 2, f"stats lists {len(stats['events'])} events")
    authenticated = [fixture for _, fixture in fixtures
                     if fixture["response"]["status"] != 302
                     and fixture["response"]["body"] != {"name": AUTH_FAILED, "message": AUTH_FAILED,
                                                         "url": fixture["request"]["path"]}]
    without_accept = sum(1 for fixture in authenticated
                         if fixture["request"]["headers"].get("Accept") != "application/json")
    check(stats["requests_without_json_accept"] == without_accept,
          f"stats: {stats['requests_without_json_accept']} requests without Accept: application/json, "
          f"the fixtures have {without_accept}")
    check(stats["bodies_without_json_content_type"] == 0,
          f"stats: {stats['bodies_without_json_content_type']} bodies without a JSON Content-Type")
    failed_objects = [str(fixture["response"]["body"].get("errors")) for fixture in authenticated
                      if fixture["request"]["path"].startswith("/objects/add")
                      and fixture["response"]["status"] == 403]
    duplicate_objects = sum(1 for errors in failed_objects if "The UUID provided is not unique" in errors)
    check(duplicate_objects > 0, "the fixtures re-send no object uuid")
    check(stats["object_duplicates"] == duplicate_objects,
          f"stats: {stats['object_duplicates']} object duplicates, the fixtures have {duplicate_objects}")
    check(stats["objects_rejected"] == len(failed_objects) - duplicate_objects,
          f"stats: {stats['objects_rejected']} objects rejected, the fixtures have "
          f"{len(failed_objects) - duplicate_objects}")
    expected = expected_schema_violations(fixtures)
    if expected is not None:
        check(stats["schema_violations"] == expected,
              f"the double counts {stats['schema_violations']} sent documents failing the strict schema, "
              f"jsonschema counts {expected}: {stats['schema_violation_samples'][:5]}")
        check(expected > 0, "the fixtures send integer threat_level_id, which the strict schema rejects")
        try:
            import jsonschema
            lax = jsonschema.Draft4Validator(json.loads((MISP_DIR / "event-schema-lax.json").read_text()))
            for view in stats["events"]:
                errors = [error.message for error in lax.iter_errors({"Event": view})]
                check(not errors, f"jsonschema: stored event {view['uuid']} fails the lax schema: {errors[:3]}")
        except ImportError:
            pass


def check_comparison_can_fail(fixtures: list[tuple[str, dict]]) -> None:
    """The comparison must report a changed flag, a changed message and a missing key."""
    by_name = dict(fixtures)
    recorded = by_name["04-attribute-add-duplicate.json"]["response"]["body"]
    cases = {
        "saved flipped": dict(recorded, saved=True),
        "error text changed": dict(recorded, errors={"value": ["something else"], "uuid": recorded["errors"]["uuid"]}),
        "key missing": {key: value for key, value in recorded.items() if key != "url"},
    }
    for label, mutated in cases.items():
        comparison = Comparison(set(), int(time.time()))
        comparison.compare(recorded, mutated, label, "", set())
        check(bool(comparison.differences), f"the comparison does not notice: {label}")
    comparison = Comparison(set(), int(time.time()))
    comparison.compare_text("attached to Event(12).", "attached to Event(1).", "text", )
    comparison.compare_text("/events/publish/12", "/events/publish/2", "url")
    check(bool(comparison.differences), "the comparison does not notice an event id that maps to two ids")


def check_faults_and_templates() -> None:
    double = Double("--fail-next", "1", "--fail-status", "503")
    try:
        event = {"Event": {"uuid": "2b0b7a8e-7f0e-4c39-9d7e-0e8f3f1f6a01", "info": "fault test", "date": "2026-12-04",
                           "distribution": "0", "threat_level_id": "4", "analysis": "0"}}
        status, headers, _ = double.api("POST", "/events/add", event)
        check(status == 503, f"--fail-next 1 --fail-status 503: HTTP {status}")
        status, _, body = double.api("GET", "/servers/getVersion")
        check(status == 200 and body.get("version") == "2.5.1", f"getVersion: HTTP {status} {body}")
        check(headers.get("content-type", "").startswith("text/html"), "an injected 503 is not an HTML page")
        check(double.stats()["totals"]["events"] == 0, "an injected failure before the write stored the event")

        double.faults({"fail_after_write_rate": 1.0})
        status, _, body = double.api("POST", "/events/add", event)
        check(status == 500, f"fail_after_write_rate 1: HTTP {status}")
        check(double.stats()["totals"]["events"] == 1, "a failure after the write did not store the event")
        double.faults({"fail_after_write_rate": 0.0})
        status, headers, body = double.api("POST", "/events/add", event)
        check(status == 404 and "location" in headers, f"retry after a lost answer: HTTP {status} {body}")
        event_id = headers.get("location", "").rsplit("/", 1)[-1]

        credential = {"Object": {"name": "credential", "template_uuid": "a27e98c9-9b0e-414c-8076-d201e039ca09",
                                 "template_version": "5", "Attribute": [
                                     {"object_relation": "text", "type": "text", "value": "form post"}]}}
        status, _, body = double.api("POST", f"/objects/add/{event_id}", credential)
        check(status == 403 and isinstance(body, dict) and "password" in str(body.get("errors")),
              f"credential object without username or password: HTTP {status} {body}")
        credential["Object"]["Attribute"] += [{"object_relation": "username", "type": "text", "value": "admin"},
                                              {"object_relation": "password", "type": "text", "value": "hunter2"}]
        status, _, body = double.api("POST", f"/objects/add/{event_id}", credential)
        check(status == 200 and len(body.get("Object", {}).get("Attribute", [])) == 3,
              f"valid credential object: HTTP {status} {body}")
        wrong_type = {"Object": {"name": "http-request", "template_uuid": "b4a8d163-8110-4239-bfcf-e08f3a9fdf7b",
                                 "template_version": "3", "Attribute": [
                                     {"object_relation": "uri", "type": "text", "value": "/"}]}}
        status, _, body = double.api("POST", f"/objects/add/{event_id}", wrong_type)
        check(status == 403 and "uri" in str(body.get("errors")), f"uri with type text: HTTP {status} {body}")

        double.faults({"soft_fail_next": 1})
        status, _, body = double.api("POST", "/tags/attachTagToObject",
                                     {"uuid": event["Event"]["uuid"], "tag": "tlp:clear"})
        check(status == 200 and body.get("saved") is False, f"soft_fail_next: HTTP {status} {body}")
        status, _, body = double.api("POST", "/tags/attachTagToObject",
                                     {"uuid": event["Event"]["uuid"], "tag": "tlp:clear"})
        check(status == 200 and body.get("saved") is True, f"tag attach after a soft failure: HTTP {status} {body}")

        double.faults({"slow_ms": 200})
        started = time.monotonic()
        double.api("GET", f"/events/view/{event_id}")
        check(time.monotonic() - started >= 0.2, "slow_ms 200 answered faster than 200 ms")
        double.faults({"slow_ms": 0})

        served = double.stats()["api_requests"]
        double.faults({"outage_mode": "503", "unavailable_after": served + 1, "down_for": 0.5})
        status, _, _ = double.api("GET", f"/events/view/{event_id}")
        check(status == 200, f"the request before the outage: HTTP {status}")
        status, _, _ = double.api("GET", f"/events/view/{event_id}")
        check(status == 503, f"a request during a 503 outage: HTTP {status}")
        time.sleep(0.6)
        status, _, _ = double.api("GET", f"/events/view/{event_id}")
        check(status == 200, f"a request after the outage: HTTP {status}")

        double.faults({"outage_mode": "close", "down_seconds": 0.5})
        try:
            double.api("GET", f"/events/view/{event_id}")
            check(False, "a request during a closing outage got an answer")
        except (ConnectionError, http.client.HTTPException):
            pass
        time.sleep(0.6)
        status, _, _ = double.api("GET", f"/events/view/{event_id}")
        check(status == 200, f"a request after the closing outage: HTTP {status}")

        stats = double.stats()
        check(stats["injected_failures"] == 1, f"stats: {stats['injected_failures']} injected failures")
        check(stats["failed_after_write"] == 1, f"stats: {stats['failed_after_write']} failures after the write")
        check(stats["object_template_violations"] == 2, f"stats: {stats['object_template_violations']} template violations")
        check(stats["soft_failures"] == 1, f"stats: {stats['soft_failures']} soft failures")
        check(stats["dropped_requests"] >= 1, "stats: no dropped request during the outages")
        stored = stats["events"][0]
        check([tag["name"] for tag in stored["Tag"]] == ["tlp:clear"], f"stored event tags {stored['Tag']}")
        check([misp_object["name"] for misp_object in stored["Object"]] == ["credential"],
              f"stored objects {[misp_object['name'] for misp_object in stored['Object']]}")
    finally:
        double.stop()


def main() -> int:
    if not FIXTURES.is_dir() or not DOUBLE.exists():
        print(f"skipped: {FIXTURES} or {DOUBLE} is missing")
        return 77
    fixtures = load_fixtures()
    check(len(fixtures) == 58, f"{len(fixtures)} fixtures in {FIXTURES}, expected 58")
    check_comparison_can_fail(fixtures)
    double, _ = replay(fixtures)
    try:
        check_stats_after_replay(double, fixtures)
    finally:
        double.stop()
    check_faults_and_templates()
    for note in notes:
        print(f"note: {note}")
    if failures:
        print(f"{len(failures)} failures", file=sys.stderr)
        return 1
    print("MISP double matches the recorded fixtures")
    return 0


if __name__ == "__main__":
    sys.exit(main())
