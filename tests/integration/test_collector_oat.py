#!/usr/bin/env python3
"""The collector writes OAT tags into its documents (threat.*, webtrap.oat).

A collector on loopback reads an audit log file with three records: a
libmodsecurity v3 record from nginx (no tags of its own), a probe record
from before probes tagged, and a probe record that carries webtrap.oat. The
first two must be tagged by the collector from their rule ids; the third
must keep the probe's tags as written.
"""

import copy
import json
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile

from probe_harness import BIN, SOURCE_DIR, wait_for

FIXTURES = SOURCE_DIR / "tests" / "fixtures" / "modsecurity"
PROBE_EVENT_ID = "01938f5e-1c2a-7abc-8def-00000000a018"


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def tagged_probe_record():
    """The probe fixture with a new event id and a webtrap.oat the collector must keep."""
    record = json.loads((FIXTURES / "webtrap-probe-login.json").read_text())
    record = copy.deepcopy(record)
    record["webtrap"]["event_id"] = PROBE_EVENT_ID
    record["webtrap"]["oat"] = [{
        "id": "OAT-018", "name": "Footprinting", "basis": "rule", "confidence": 0.6,
        "reason": "bait:fake_port", "attack": ["T1595.001"], "version": "webtrap-oat-test"}]
    return json.dumps(record, separators=(",", ":"))


def main():
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="webtrap-oat-collector-"))
    try:
        return run(workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def run(workdir):
    audit_log = workdir / "audit.json"
    output = workdir / "out" / "events.ndjson"
    config = workdir / "collector.yaml"
    ports_file = workdir / "ports.json"
    config.write_text(f"""listen: 127.0.0.1:0
admin: {{listen: 127.0.0.1:0}}
state_dir: {workdir / "state"}
inputs:
  files:
    - {{path: {audit_log}, format: auto, sensor_id: oat-web, group: dmz, poll_interval: 100ms}}
outputs:
  ndjson: {{path: {output}, flush_interval: 100ms}}
""")
    lines = [
        (FIXTURES / "modsec3-nginx-sqli.json").read_text().strip(),
        (FIXTURES / "webtrap-probe-login.json").read_text().strip(),
        tagged_probe_record(),
    ]
    audit_log.write_text("".join(line + "\n" for line in lines))

    log_path = workdir / "collector.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [BIN, "collector", "--config", str(config), "--ports-file", str(ports_file)],
            stdout=log, stderr=subprocess.STDOUT)
    try:
        def documents():
            if not output.exists():
                return None
            data = output.read_bytes()
            parsed = [json.loads(line) for line in data[:data.rfind(b"\n") + 1].splitlines()]
            return parsed if len(parsed) >= len(lines) else None

        try:
            found = wait_for(documents, 60, f"{len(lines)} documents in {output}")
        except TimeoutError:
            print(log_path.read_text(errors="replace"))
            raise
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)

    by_format = {}
    for document in found:
        key = document["webtrap"]["format"]
        if document["event"]["id"] == PROBE_EVENT_ID:
            key = "webtrap-tagged"
        by_format[key] = document

    modsec = by_format["modsec3"]
    check(modsec["threat"]["framework"] == "OWASP OAT", f"threat: {modsec.get('threat')}")
    check("OAT-014" in modsec["threat"]["technique"]["id"],
          f"modsec3 record not tagged OAT-014: {modsec['threat']}")
    reasons = {tag["id"]: tag["reason"] for tag in modsec["webtrap"]["oat"]}
    check(reasons["OAT-014"].startswith("crs:942"), f"reason {reasons}")
    check(all(tag["basis"] == "rule" for tag in modsec["webtrap"]["oat"]
              if tag["id"] == "OAT-014"), "OAT-014 tag is not a rule tag")

    untagged = by_format["webtrap"]
    check("OAT-014" in untagged["threat"]["technique"]["id"],
          f"untagged probe record not tagged from its rule ids: {untagged.get('threat')}")

    tagged = by_format["webtrap-tagged"]
    oat = {tag["id"]: tag for tag in tagged["webtrap"]["oat"]}
    check("OAT-018" in oat and oat["OAT-018"]["reason"] == "bait:fake_port",
          f"the probe's own tag was not kept: {tagged['webtrap']['oat']}")
    check(oat["OAT-018"]["version"] == "webtrap-oat-test", "the tag's version was rewritten")
    check("OAT-014" not in oat,
          "the collector re-tagged a record that carried its own tags: "
          f"{tagged['webtrap']['oat']}")
    references = tagged["threat"]["technique"]["reference"]
    check(any("OAT-018_Footprinting" in reference for reference in references),
          f"references: {references}")
    print(f"collector OAT tags: {len(found)} documents checked")
    return 0


if __name__ == "__main__":
    sys.exit(main())
