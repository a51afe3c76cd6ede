#!/usr/bin/env python3
"""End-to-end test of the STIX 2.1 bundle output (outputs.stix).

A real collector tails two probe spool files (one per sensor group) of
probe records from 120 sources over two UTC days, with both outputs.misp_feed
and outputs.stix configured alike. Then the test checks:

- one bundle per MISP event of the feed, bundle--<event uuid>, listed in
  index.json;
- every ip-src attribute of the feed has its STIX counterpart: an indicator
  with the address pattern when to_ids is set, observed-data of the address
  otherwise, with number_observed = 1 + its sightings; every http-request
  object a network-traffic SCO with its method, path and source; every
  credential object a user-account SCO;
- every bundle passes tests/tools/validate_stix.py, and a broken copy of
  one bundle fails it, so the checker can fail;
- a second collector with an empty state, fed the same records, writes the
  same ids (run 1 and 2 with to_ids off); a third run with to_ids on turns
  every address into an indicator and nothing into observed-data.
"""
import copy
import ipaddress
import json
import os
import pathlib
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from group_spools import GROUPS, load_json, query_read_only, write_group_spools  # noqa: E402
from probe_harness import BIN, SOURCE_DIR, wait_for  # noqa: E402

VALIDATOR = SOURCE_DIR / "tests" / "tools" / "validate_stix.py"

RECORDS = 2000
SOURCES = 120
SCO_NAMESPACE = uuid.UUID("00abedb4-aa42-466c-9c01-fed23315a9b7")

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
    """Write one spool file per group from generated probe records."""
    write_group_spools(workdir, RECORDS, SOURCES, make_records_seed=23, seed=9, canary_every=53,
                       canary_passwords=4)


def run_collector(workdir, spools, name, to_ids):
    """Run a collector until both outputs have every record, and return its folders."""
    run = workdir / name
    run.mkdir()
    admin = free_port()
    inputs = "\n".join(
        f"    - {{path: {spools / (g + '.ndjson')}, format: webtrap, sensor_id: sensor-{g}, "
        f"group: {g}}}" for g in GROUPS)
    model = f"to_ids: {'true' if to_ids else 'false'}\n    credentials: clear"
    config = run / "collector.yaml"
    config.write_text(f"""listen: 127.0.0.1:{free_port()}
admin:
  listen: 127.0.0.1:{admin}
state_dir: {run / "state"}
inputs:
  files:
{inputs}
outputs:
  misp_feed:
    path: {run / "feed"}
    {model}
    flush_interval: 100ms
  stix:
    path: {run / "stix"}
    {model}
    flush_interval: 100ms
""")
    store = run / "state" / "store.sqlite"

    def caught_up():
        last = query_read_only(store, "SELECT count(*), max(seq) FROM events")
        cursors = query_read_only(store, "SELECT output, seq FROM cursors")
        if not last or not cursors or last[0][0] < RECORDS:
            return False
        done = {output: seq for output, seq in cursors}
        return done.get("misp_feed") == last[0][1] and done.get("stix") == last[0][1]

    with open(run / "collector.log", "wb") as log:
        process = subprocess.Popen([BIN, "collector", "--config", str(config)],
                                   stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: caught_up() or process.poll() is not None, 120, f"{name} to catch up")
        check(process.poll() is None, f"{name}: the collector exited:\n" +
              (run / "collector.log").read_text()[-3000:])
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=60)
    return run / "feed", run / "stix"


def sco_id(kind, properties):
    text = json.dumps(properties, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return f"{kind}--{uuid.uuid5(SCO_NAMESPACE, text)}"


def address_id(value):
    kind = "ipv4-addr" if ipaddress.ip_address(value).version == 4 else "ipv6-addr"
    return sco_id(kind, {"value": value})


def read_bundles(stix):
    """Return {event uuid: {id: object}} of every bundle the index lists."""
    index = load_json(stix / "index.json")
    bundles = {}
    for entry in index["bundles"]:
        bundle = load_json(stix / entry["file"])
        check(bundle["id"] == entry["id"] == f"bundle--{entry['event_uuid']}",
              f"{entry['file']}: bundle id {bundle['id']} does not match the index")
        objects = {o["id"]: o for o in bundle["objects"]}
        modified = max(o.get("modified", "") for o in bundle["objects"])
        check(entry["modified"] == modified,
              f"{entry['file']}: index modified {entry['modified']} != latest {modified}")
        bundles[entry["event_uuid"]] = objects
    files = {p.name for p in stix.iterdir()}
    check(files == {"index.json"} | {f"{u}.json" for u in bundles},
          f"files in the STIX folder besides the bundles: {sorted(files)}")
    return bundles


def check_counterparts(feed, bundles, to_ids):
    """Check every MISP attribute and object of the feed against its bundle."""
    manifest = load_json(feed / "manifest.json")
    check(sorted(manifest) == sorted(bundles),
          f"feed events {sorted(manifest)} != bundles {sorted(bundles)}")
    counts = {"indicator": 0, "observed": 0, "http": 0, "credential": 0}
    for event_uuid in manifest:
        event = load_json(feed / f"{event_uuid}.json")["Event"]
        objects = bundles.get(event_uuid, {})
        by_type = {}
        for obj in objects.values():
            by_type.setdefault(obj["type"], []).append(obj)
        patterns = {i["pattern"]: i for i in by_type.get("indicator", [])}
        observed = {tuple(o["object_refs"]): o for o in by_type.get("observed-data", [])}
        reports = by_type.get("report", [])
        check(len(reports) == 1, f"{event_uuid}: {len(reports)} reports")
        if reports:
            listed = set(reports[0]["object_refs"])
            expected = {i for i, o in objects.items()
                        if o["type"] not in ("report", "marking-definition")}
            check(listed == expected, f"{event_uuid}: report object_refs miss "
                                      f"{sorted(expected - listed)[:3]}")
        for attribute in event["Attribute"]:
            if attribute["type"] != "ip-src":
                continue
            check(attribute["to_ids"] == to_ids, f"{attribute['uuid']}: to_ids in the feed")
            value = attribute["value"]
            kind = "ipv4-addr" if ipaddress.ip_address(value).version == 4 else "ipv6-addr"
            pattern = f"[{kind}:value = '{value}']"
            hits = 1 + len(attribute.get("Sighting", []))
            if attribute["to_ids"]:
                counts["indicator"] += 1
                check(pattern in patterns, f"{event_uuid}: no indicator for {value}")
                check((address_id(value),) not in observed,
                      f"{event_uuid}: observed-data for {value}, which has to_ids")
                sighting = [s for s in by_type.get("sighting", [])
                            if pattern in patterns and
                            s["sighting_of_ref"] == patterns[pattern]["id"]]
                check(len(sighting) == 1 and sighting[0]["count"] == hits,
                      f"{event_uuid}: sighting of {value} is not {hits} hits")
            else:
                counts["observed"] += 1
                check(pattern not in patterns, f"{event_uuid}: indicator for {value} without "
                                               "to_ids")
                found = observed.get((address_id(value),))
                check(found is not None, f"{event_uuid}: no observed-data for {value}")
                if found:
                    check(found["number_observed"] == hits,
                          f"{event_uuid}: {value} number_observed {found['number_observed']}, "
                          f"expected {hits}")
                    check(found["first_observed"][:19] == attribute["first_seen"][:19],
                          f"{event_uuid}: {value} first_observed")
        traffic = {o["id"]: o for o in by_type.get("network-traffic", [])}
        accounts = {o["id"]: o for o in by_type.get("user-account", [])}
        for obj in event["Object"]:
            values = {a["object_relation"]: a["value"] for a in obj["Attribute"]}
            if obj["name"] == "http-request":
                counts["http"] += 1
                agent = [values["user-agent"]] if "user-agent" in values else None
                matches = []
                for t in traffic.values():
                    request = t.get("extensions", {}).get("http-request-ext", {})
                    if t["src_ref"] == address_id(values["ip-src"]) and \
                            request.get("request_value") == values.get("uri") and \
                            request.get("request_method") == values.get("method", "").lower() and \
                            request.get("request_header", {}).get("User-Agent") == agent:
                        matches.append(t)
                check(len(matches) >= 1, f"{event_uuid}: no network-traffic for object "
                                         f"{obj['uuid']} {values.get('method')} "
                                         f"{values.get('uri')}")
            elif obj["name"] == "credential":
                counts["credential"] += 1
                login = values.get("username")
                if values.get("format") == "hashed":
                    # A password hash is no clear credential, so only the login shows.
                    found = [a for a in accounts.values()
                             if a.get("account_login") == login and "credential" not in a]
                    check(login is None or len(found) == 1,
                          f"{event_uuid}: no user-account for credential {obj['uuid']}")
                    continue
                found = [a for a in accounts.values() if a.get("account_login") == login and
                         a.get("credential") == values.get("password")]
                check(len(found) == 1, f"{event_uuid}: no user-account for credential "
                                       f"{obj['uuid']}")
        check(len(traffic) == len([o for o in event["Object"] if o["name"] == "http-request"]),
              f"{event_uuid}: {len(traffic)} network-traffic SCOs for the http-request objects")
    return counts


def validate(paths, expect_ok, label):
    result = subprocess.run([sys.executable, str(VALIDATOR)] + [str(p) for p in paths],
                            capture_output=True, text=True, timeout=300)
    print(f"{label}: {result.stdout.strip().splitlines()[-1] if result.stdout else ''}",
          flush=True)
    if expect_ok:
        check(result.returncode == 0, f"{label}: validation failed:\n{result.stdout[-3000:]}"
                                      f"{result.stderr[-2000:]}")
    else:
        check(result.returncode == 1, f"{label}: a broken bundle passed validation")


def check_validator_fails(bundle_path, workdir):
    """Break a copy of one bundle in several ways; each must fail validation."""
    bundle = load_json(bundle_path)

    def first(b, kind):
        return next(o for o in b["objects"] if o["type"] == kind)

    def first_address(b):
        return next(o for o in b["objects"] if o["type"] in ("ipv4-addr", "ipv6-addr"))

    breakers = {
        "sco-id": lambda b: first_address(b).update(
            value="192.0.2.250" if first_address(b)["type"] == "ipv4-addr" else "2001:db8::fff"),
        "created-precision": lambda b: first(b, "report").update(created="2026-12-04T00:00:00Z"),
        "dangling-ref": lambda b: first(b, "report")["object_refs"].append(
            "indicator--00000000-0000-4000-8000-000000000000"),
        "tlp-content": lambda b: first(b, "marking-definition").update(name="TLP:PINK"),
        "number-observed": lambda b: first(b, "observed-data").update(number_observed=0),
        "uppercase-method": lambda b: first(b, "network-traffic")["extensions"][
            "http-request-ext"].update(request_method="GET"),
    }
    for name, breaker in breakers.items():
        broken = copy.deepcopy(bundle)
        breaker(broken)
        path = workdir / f"broken-{name}.json"
        path.write_text(json.dumps(broken))
        validate([path], False, f"broken bundle ({name})")


def main():
    with tempfile.TemporaryDirectory(prefix="webtrap-stix-") as tmp:
        workdir = pathlib.Path(tmp)
        spools = workdir / "spools"
        spools.mkdir()
        write_spools(spools)
        runs = {}
        for name, to_ids in (("first", False), ("rerun", False), ("to-ids", True)):
            started = time.monotonic()
            feed, stix = run_collector(workdir, spools, name, to_ids)
            bundles = read_bundles(stix)
            counts = check_counterparts(feed, bundles, to_ids)
            print(f"{name}: {len(bundles)} bundles, {sum(len(b) for b in bundles.values())} "
                  f"objects; {counts} in {time.monotonic() - started:.1f} s", flush=True)
            validate(sorted(stix.glob("*-*.json")), True, f"{name}: validate_stix")
            runs[name] = (stix, bundles)

        ids = {name: {e: set(objects) for e, objects in bundles.items()}
               for name, (_, bundles) in runs.items()}
        check(ids["first"] == ids["rerun"], "a rerun from an empty state wrote other ids")
        first_counts = runs["first"][1]
        check(len(first_counts) == 4, f"{len(first_counts)} bundles, expected 2 groups x 2 days")
        to_ids_types = {o["type"] for b in runs["to-ids"][1].values() for o in b.values()}
        check("indicator" in to_ids_types and "sighting" in to_ids_types,
              "to_ids: true gave no indicators or sightings")
        first_types = {o["type"] for b in runs["first"][1].values() for o in b.values()}
        check("indicator" not in first_types, "to_ids: false gave indicators")
        check({"report", "identity", "marking-definition", "observed-data", "network-traffic",
               "user-account", "domain-name"} <= first_types,
              f"object types missing from the bundles: {sorted(first_types)}")
        some_bundle = sorted(runs["first"][0].glob("*-*.json"))[0]
        check_validator_fails(some_bundle, workdir)

    if failures:
        print(f"0 passed, {len(failures)} failed")
        return 1
    print("STIX output: 1 passed, 0 failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
