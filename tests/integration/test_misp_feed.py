#!/usr/bin/env python3
"""End-to-end test of the static MISP feed output (outputs.misp_feed).

A real collector tails two probe spool files, one per sensor group, holding
10,000 probe records from 300 sources over two UTC days. It is killed with
SIGKILL while the feed output is behind, and started again. Then the test
reads the feed folder the way a MISP instance pulling it does (manifest.json,
each <uuid>.json it lists, hashes.csv) and checks:

- 4 events (2 groups x 2 days), with the uuids the documented rule gives;
- one ip-src per source per event, one http-request object per request
  signature, and one sighting per further hit, counted from the ECS documents
  in the collector's store (nothing lost, nothing twice across the kill);
- every event file against the MISP event JSON Schemas, every object
  against its object template, every attribute type and category against
  describeTypes.json, every value against the MISP test double's copy of
  MISP's value validation, and every tag against its taxonomy;
- manifest.json, the event files and hashes.csv agree with each other.

Exit status 77 (skip) when python3-jsonschema or the MISP reference data is
missing.
"""
import copy
import hashlib
import ipaddress
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from group_spools import GROUPS, load_json, query_read_only, write_group_spools  # noqa: E402
from probe_harness import BIN, SHARED_DIR, SOURCE_DIR, wait_for  # noqa: E402

sys.path.insert(0, str(SOURCE_DIR / "tests" / "tools"))
# The MISP test double's copy of MISP's attribute value validation.
from misp_double import value_error  # noqa: E402

MISP_DIR = SHARED_DIR / "misp"
VALIDATOR = SOURCE_DIR / "tests" / "tools" / "validate_json_schema.py"
OAT_TAXONOMY = SOURCE_DIR / "data" / "misp" / "owasp-oat" / "machinetag.json"

RECORDS = 10000
SOURCES = 300
# The namespace of the model's uuids: uuid5(NAMESPACE_URL, "urn:webtrap:misp:v1").
NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:webtrap:misp:v1")
MAX_VALUE_BYTES = 1024

failures = []


def check(condition, message):
    if not condition:
        failures.append(message)
        print("FAIL: " + message, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_spools(workdir):
    """Write one spool file per group, a tenth of the records in the other group, and return the canary hits."""
    return write_group_spools(workdir, RECORDS, SOURCES, make_records_seed=11, seed=5,
                              canary_every=97, canary_passwords=5, mixed_group_share=0.1)


class Collector:
    def __init__(self, workdir):
        self.dir = workdir
        self.admin = f"http://127.0.0.1:{free_port()}"
        self.feed = workdir / "feed"
        self.state = workdir / "feed.state.sqlite"
        self.store = workdir / "state" / "store.sqlite"
        self.config = workdir / "collector.yaml"
        inputs = "\n".join(
            f"    - {{path: {workdir / (g + '.ndjson')}, format: webtrap, sensor_id: sensor-{g}, "
            f"group: {g}}}" for g in GROUPS)
        self.config.write_text(f"""listen: 127.0.0.1:{free_port()}
admin:
  listen: {self.admin.removeprefix("http://")}
state_dir: {workdir / "state"}
inputs:
  files:
{inputs}
outputs:
  misp_feed:
    path: {self.feed}
    batch_max_events: 500
    flush_interval: 100ms
""")
        self.log = workdir / "collector.log"
        self.process = None

    def start(self):
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen([BIN, "collector", "--config", str(self.config)],
                                            stdout=log, stderr=subprocess.STDOUT)
        wait_for(lambda: self.healthy() or self.process.poll() is not None, 60, "/healthz")
        if self.process.poll() is not None:
            raise RuntimeError("collector exited at start:\n" + self.log.read_text()[-3000:])

    def healthy(self):
        try:
            with urllib.request.urlopen(self.admin + "/healthz", timeout=2):
                return True
        except urllib.error.HTTPError:
            return True
        except OSError:
            return False

    def queue_depth(self):
        with urllib.request.urlopen(self.admin + "/metrics", timeout=10) as response:
            for line in response.read().decode().splitlines():
                if line.startswith("webtrap_collector_output_queue_depth") and \
                        'output="misp_feed"' in line:
                    return float(line.rsplit(" ", 1)[1])
        return None

    # test_misp_rest.py and test_misp_feed_serving.py call it through this class.
    query = staticmethod(query_read_only)

    def sightings(self):
        rows = self.query(self.state, "SELECT count(*) FROM sightings")
        return rows[0][0] if rows else 0

    def caught_up(self):
        """Return True when every record is stored and the feed's cursor is at the last one.

        The cursor is read from the store, because the queue depth gauge reads 0
        after a restart until the runner's first batch."""
        last = self.query(self.store, "SELECT count(*), max(seq) FROM events")
        cursor = self.query(self.store, "SELECT seq FROM cursors WHERE output = 'misp_feed'")
        return bool(last and cursor) and last[0][0] >= RECORDS and cursor[0][0] == last[0][1]

    def stored(self):
        rows = self.query(self.store, "SELECT count(*) FROM events")
        return rows[0][0] if rows else 0

    def kill(self):
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=60)


def cut(text, limit):
    data = text.encode()
    if len(data) <= limit:
        return text
    return data[:limit].decode(errors="ignore")


def expected_from_documents(documents):
    """Compute what the feed must contain from the ECS documents."""
    events = {}
    for text in documents:
        doc = json.loads(text)
        ip = doc.get("source", {}).get("ip")
        if not ip:
            continue
        # MISP stores addresses in inet_ntop form, such as 2001:db8:: for 2001:db8::0.
        ip = str(ipaddress.ip_address(ip))
        group = doc["webtrap"]["sensor"].get("group") or "default"
        day = doc["@timestamp"][:10]
        key = str(uuid.uuid5(NAMESPACE, f"group|{group}|{day}"))
        event = events.setdefault(key, {"sources": set(), "signatures": set(), "hits": 0,
                                        "ids": set()})
        check(doc["event"]["id"] not in event["ids"], f"document {doc['event']['id']} twice")
        event["ids"].add(doc["event"]["id"])
        event["hits"] += 1
        event["sources"].add(ip)
        url = doc.get("url", {})
        path_value = url.get("path") or url.get("original", "").split("?")[0].split("#")[0]
        if path_value:
            event["signatures"].add((cut(doc["http"]["request"]["method"], 32),
                                     cut(url.get("domain", ""), 255),
                                     cut(path_value, MAX_VALUE_BYTES),
                                     cut(doc.get("user_agent", {}).get("original", ""),
                                         MAX_VALUE_BYTES), ip))
    return events


def strip_newer_fields(event):
    """Return the event without the fields MISP added after the 2.4 format.

    That schema predates MISP objects, first_seen/last_seen and sightings in
    the event export, and forbids any other key, so those are taken out and
    checked separately (object templates, describeTypes)."""
    event = copy.deepcopy(event)
    event["Event"].pop("Object", None)
    for attribute in event["Event"].get("Attribute", []):
        for key in ("first_seen", "last_seen", "Sighting", "object_relation"):
            attribute.pop(key, None)
    return event


def validate(schema, documents, workdir, name):
    path = workdir / f"{name}.ndjson"
    path.write_text("".join(json.dumps(d) + "\n" for d in documents))
    result = subprocess.run([sys.executable, str(VALIDATOR), str(schema), str(path)],
                            capture_output=True, text=True, timeout=300)
    check(result.returncode == 0, f"{name}: schema validation failed:\n{result.stdout[-3000:]}"
                                  f"{result.stderr[-2000:]}")
    print(f"{name}: {result.stdout.strip()}", flush=True)


def taxonomy_tags(path):
    data = load_json(path)
    namespace = data["namespace"]
    tags = set()
    with_values = {v["predicate"] for v in data.get("values", [])}
    for predicate in data["predicates"]:
        if predicate["value"] not in with_values:
            tags.add(f"{namespace}:{predicate['value']}")
    for value in data.get("values", []):
        for entry in value["entry"]:
            tags.add(f'{namespace}:{value["predicate"]}="{entry["value"]}"')
    return tags


def check_objects(events, describe):
    templates = {}
    for name in ("http-request", "credential"):
        templates[name] = load_json(MISP_DIR / "objects" / name / "definition.json")
    mapping = describe["category_type_mappings"]
    credential_objects = 0
    for event in events:
        every = event["Event"]["Attribute"] + \
            [a for o in event["Event"]["Object"] for a in o["Attribute"]]
        for attribute in every:
            error = value_error(attribute["type"], attribute["value"])
            check(error is None, f"{attribute['type']} {attribute['value']!r}: {error}")
        for attribute in event["Event"]["Attribute"]:
            check(attribute["type"] in describe["types"], f"unknown type {attribute['type']}")
            check(attribute["type"] in mapping.get(attribute["category"], []),
                  f"type {attribute['type']} not allowed in category {attribute['category']}")
        for obj in event["Event"]["Object"]:
            template = templates.get(obj["name"])
            check(template is not None, f"object {obj['name']} has no template")
            if template is None:
                continue
            credential_objects += obj["name"] == "credential"
            check(obj["template_uuid"] == template["uuid"], f"{obj['name']}: template uuid")
            check(obj["template_version"] == str(template["version"]),
                  f"{obj['name']}: template version")
            relations = [a["object_relation"] for a in obj["Attribute"]]
            for attribute in obj["Attribute"]:
                definition = template["attributes"].get(attribute["object_relation"])
                check(definition is not None,
                      f"{obj['name']}: relation {attribute['object_relation']} not in template")
                if definition is None:
                    continue
                check(attribute["type"] == definition["misp-attribute"],
                      f"{obj['name']}.{attribute['object_relation']}: type {attribute['type']}")
                allowed = definition.get("categories") or \
                    [describe["sane_defaults"][attribute["type"]]["default_category"]]
                check(attribute["category"] in allowed,
                      f"{obj['name']}.{attribute['object_relation']}: category "
                      f"{attribute['category']}")
                check(attribute["type"] in mapping.get(attribute["category"], []),
                      f"type {attribute['type']} not allowed in category {attribute['category']}")
                if "values_list" in definition:
                    check(attribute["value"] in definition["values_list"],
                          f"{obj['name']}.{attribute['object_relation']}: {attribute['value']}")
                if not definition.get("multiple"):
                    check(relations.count(attribute["object_relation"]) == 1,
                          f"{obj['name']}: {attribute['object_relation']} more than once")
            required = template.get("requiredOneOf", [])
            check(not required or any(r in relations for r in required),
                  f"{obj['name']}: none of {required}")
    return credential_objects


def main():
    if not MISP_DIR.is_dir():
        print(f"skip: {MISP_DIR} is missing")
        return 77
    try:
        import jsonschema  # noqa: F401
    except ImportError:
        print("skip: python3-jsonschema is missing")
        return 77

    with tempfile.TemporaryDirectory(prefix="webtrap-misp-feed-") as tmp:
        workdir = pathlib.Path(tmp)
        canaries = write_spools(workdir)
        collector = Collector(workdir)
        collector.start()
        try:
            # Kill the collector while the feed output is behind.
            wait_for(lambda: collector.sightings() > 1000 or collector.process.poll() is not None,
                     120, "the first sightings in the feed state")
            depth = collector.queue_depth()
            print(f"killing the collector at {collector.sightings()} sightings, feed queue depth "
                  f"{depth}", flush=True)
            check(depth is None or depth > 0, "the feed caught up before the kill; no kill test")
            collector.kill()
            collector.start()
            wait_for(collector.caught_up, 300, "the feed output to catch up")
        finally:
            collector.stop()

        check(collector.stored() == RECORDS,
              f"{collector.stored()} events stored, expected {RECORDS}")
        dead = Collector.query(collector.store, "SELECT count(*) FROM dead_letters")[0][0]
        check(dead == 0, f"{dead} dead letters")
        documents = [row[0] for row in Collector.query(collector.store,
                                                        "SELECT document FROM events")]
        expected = expected_from_documents(documents)
        check(len(expected) == 4, f"{len(expected)} groups x days in the documents, expected 4")
        total_sources = set().union(*(e["sources"] for e in expected.values()))
        check(len(total_sources) == SOURCES, f"{len(total_sources)} sources in the documents")

        # Read the feed as a MISP pulling it would.
        feed = collector.feed
        manifest = load_json(feed / "manifest.json")
        check(sorted(manifest) == sorted(expected),
              f"manifest events {sorted(manifest)} != expected {sorted(expected)}")
        check(not [p for p in feed.iterdir() if p.name.startswith(".")],
              "a temporary file is left in the feed folder")
        events = []
        hashes = {}
        for event_uuid, summary in manifest.items():
            event = load_json(feed / f"{event_uuid}.json")
            events.append(event)
            body = event["Event"]
            check(body["uuid"] == event_uuid, f"{event_uuid}: uuid inside the file")
            for key in ("info", "date", "timestamp", "threat_level_id", "analysis"):
                check(body[key] == summary[key], f"{event_uuid}: manifest {key} differs")
            check(body["Orgc"] == summary["Orgc"], f"{event_uuid}: manifest Orgc differs")
            check(body["Tag"] == summary["Tag"], f"{event_uuid}: manifest Tag differs")
            want = expected.get(event_uuid, {"sources": set(), "signatures": set(), "hits": 0})
            ip_src = [a["value"] for a in body["Attribute"] if a["type"] == "ip-src"]
            check(len(ip_src) == len(set(ip_src)), f"{event_uuid}: duplicate ip-src")
            check(set(ip_src) == want["sources"],
                  f"{event_uuid}: {len(set(ip_src))} ip-src, expected {len(want['sources'])}")
            http = [o for o in body["Object"] if o["name"] == "http-request"]
            check(len(http) == len(want["signatures"]),
                  f"{event_uuid}: {len(http)} http-request objects, expected "
                  f"{len(want['signatures'])}")
            sightings = [s for a in body["Attribute"] for s in a.get("Sighting", [])]
            check(len(sightings) == want["hits"] - len(want["sources"]),
                  f"{event_uuid}: {len(sightings)} sightings, expected "
                  f"{want['hits'] - len(want['sources'])}")
            check(len({s["uuid"] for s in sightings}) == len(sightings),
                  f"{event_uuid}: duplicate sighting uuids")
            check(all(s["source"].startswith("sensor-") for s in sightings),
                  f"{event_uuid}: a sighting without the sensor id as source")
            values = [a["value"] for a in body["Attribute"]] + \
                [a["value"] for o in body["Object"] for a in o["Attribute"]]
            hashes[event_uuid] = sorted(hashlib.md5(v.encode()).hexdigest() for v in values)
            print(f"{body['info']}: {len(ip_src)} ip-src, {len(http)} http-request, "
                  f"{len(body['Object']) - len(http)} credential, {len(sightings)} sightings",
                  flush=True)

        csv = {}
        for line in (feed / "hashes.csv").read_text().splitlines():
            md5, event_uuid = line.split(",")
            csv.setdefault(event_uuid, []).append(md5)
        check({k: sorted(v) for k, v in csv.items()} == hashes,
              "hashes.csv does not match the attribute values of the event files")

        validate(MISP_DIR / "event-schema-lax.json", events, workdir, "event-schema-lax")
        validate(MISP_DIR / "event-schema.json", [strip_newer_fields(e) for e in events],
                 workdir, "event-schema")
        describe = load_json(MISP_DIR / "describeTypes.json")
        describe = describe.get("result", describe)
        credential_objects = check_objects(events, describe)
        check(credential_objects > 0, f"no credential object from {canaries} canary hits")

        known = taxonomy_tags(OAT_TAXONOMY)
        for name in ("tlp", "cssa", "honeypot-basic"):
            known |= taxonomy_tags(MISP_DIR / "taxonomies" / name / "machinetag.json")
        used = {t["name"] for e in events for t in e["Event"]["Tag"]}
        used |= {t["name"] for e in events for a in e["Event"]["Attribute"]
                 for t in a.get("Tag", [])}
        used |= {t["name"] for e in events for o in e["Event"]["Object"]
                 for a in o["Attribute"] for t in a.get("Tag", [])}
        unknown = {t for t in used if t not in known and
                   not t.startswith('misp-galaxy:mitre-attack-pattern="')}
        check(not unknown, f"tags outside the taxonomies: {sorted(unknown)}")
        check(any(t.startswith("owasp-oat:OAT-") for t in used), "no OAT tag in the feed")

    if failures:
        print(f"{len(failures)} checks failed")
        return 1
    print("MISP feed: every check passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
