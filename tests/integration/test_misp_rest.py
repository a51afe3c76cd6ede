#!/usr/bin/env python3
"""End-to-end test of the MISP REST output (outputs.misp) next to Elasticsearch.

A real collector tails two probe spool files (one per sensor group) and has
two outputs: outputs.misp against the MISP test double
(tests/tools/misp_double.py, not MISP) and outputs.elasticsearch against the
Elasticsearch test double (tests/tools/es_double.py). The probe records
(10,000 by default, WEBTRAP_MISP_REST_RECORDS to change) come from 300
sources over two UTC days, as in test_misp_feed.py.

1. Half of the records are written; the test waits until MISP has received
   part of them.
2. MISP becomes unreachable (the double closes every API connection). The
   other half is written, and Elasticsearch must receive every record while
   MISP is down, with MISP's content unchanged meanwhile.
3. The collector is killed with SIGKILL while MISP is still down, and
   started again. MISP comes back. The collector is killed once more while
   it catches up, and started again.
4. Then MISP must hold 4 events (2 groups x 2 days), one ip-src per source
   per event, one http-request object per request signature and one
   sighting per further hit, counted from the ECS documents in the
   collector's store, with no duplicate and no dead letter. The double
   validates every event and attribute sent against MISP's event JSON
   Schema and every object against its template, and the stored events
   against the lax schema; all those counts must be zero.

Exit status 77 (skip) when python3-jsonschema or the MISP reference data is
missing.
"""
import calendar
import json
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from probe_harness import BIN, SOURCE_DIR, wait_for  # noqa: E402
import test_misp_feed as feed  # noqa: E402

MISP_DOUBLE = SOURCE_DIR / "tests" / "tools" / "misp_double.py"
ES_DOUBLE = SOURCE_DIR / "tests" / "tools" / "es_double.py"
API_KEY = "webtrapintegrationkey00000000000000000000"
check = feed.check
# The same 300 sources over two days and 10,000 records as the feed test.
# The output sends one request per sighting, per object and per
# tag of an object attribute. The 10,000-record run took 36 to 44 s on the
# 2-CPU build machine (see docs/misp.md).
feed.RECORDS = int(os.environ.get("WEBTRAP_MISP_REST_RECORDS", "10000"))


class Double:
    """A test double process on 127.0.0.1, stopped by its pid."""

    def __init__(self, workdir, name, script, *args):
        port_file = workdir / f"{name}.port"
        self.log = open(workdir / f"{name}.log", "wb")
        self.process = subprocess.Popen([sys.executable, str(script), "--port-file",
                                         str(port_file), *args],
                                        stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(port_file.exists, 20, f"the {name} double's port file")
        time.sleep(0.1)
        self.url = f"http://127.0.0.1:{int(port_file.read_text())}"

    def call(self, method, path, body=None):
        request = urllib.request.Request(self.url + path, method=method,
                                         data=json.dumps(body).encode() if body is not None
                                         else None)
        request.add_header("Accept", "application/json")
        request.add_header("Content-Type", "application/json")
        request.add_header("Authorization", API_KEY)
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)
        self.log.close()


class Collector(feed.Collector):
    """The feed test's collector, with outputs.misp and outputs.elasticsearch."""

    def __init__(self, workdir, misp_url, es_url):
        super().__init__(workdir)
        self.misp_state = workdir / "misp.state.sqlite"
        key_file = workdir / "misp.key"
        key_file.write_text(API_KEY + "\n")
        key_file.chmod(0o600)
        text = self.config.read_text()
        text = text[:text.index("outputs:")] + f"""outputs:
  misp:
    url: {misp_url}
    api_key_file: {key_file}
    state_path: {self.misp_state}
    publish: when_day_closes
    publish_delay: 1s
    timeout: 5s
    connect_timeout: 2s
    batch_max_events: 500
    flush_interval: 100ms
    retry_initial: 100ms
    retry_max: 1s
  elasticsearch:
    url: [{es_url}]
    batch_max_events: 500
    flush_interval: 100ms
    retry_initial: 100ms
    retry_max: 1s
"""
        self.config.write_text(text)

    def cursor(self, output):
        rows = self.query(self.store, f"SELECT seq FROM cursors WHERE output = '{output}'")
        return rows[0][0] if rows else 0

    def sightings_sent(self):
        """Sightings that the output has marked as received by MISP (cheaper than the
        double's statistics, which validate every stored event)."""
        rows = self.query(self.misp_state, "SELECT count(*) FROM pushed p JOIN sightings s "
                                           "ON s.uuid = p.key WHERE p.state = 2")
        return rows[0][0] if rows else 0

    def misp_caught_up(self):
        last = self.query(self.store, "SELECT count(*), max(seq) FROM events")
        return bool(last) and last[0][0] >= feed.RECORDS and self.cursor("misp") == last[0][1]


def split_spools(workdir):
    """Move the spool files aside and return their lines, to be written in two halves."""
    halves = {}
    for group in feed.GROUPS:
        path = workdir / f"{group}.ndjson"
        lines = path.read_text().splitlines(keepends=True)
        halves[group] = (lines[:len(lines) // 2], lines[len(lines) // 2:])
        path.write_text("")
    return halves


def append(workdir, halves, index):
    for group, parts in halves.items():
        with open(workdir / f"{group}.ndjson", "a") as f:
            f.write("".join(parts[index]))


def misp_totals(misp):
    return misp.call("GET", "/_double/stats?summary")["totals"]


def closed_days_published(misp):
    """True when every event whose UTC day ended over a second ago is published."""
    now = time.time()
    for view in misp.call("GET", "/_double/stats")["events"]:
        event = view.get("Event", view)
        day_end = calendar.timegm(time.strptime(event["date"], "%Y-%m-%d")) + 86400
        if now >= day_end + 1 and not event["published"]:
            return False
    return True


def es_count(es):
    return es.call("GET", "/_double/stats")["distinct_ids"]


def run(workdir):
    feed.write_spools(workdir)
    halves = split_spools(workdir)
    misp = Double(workdir, "misp", MISP_DOUBLE, "--api-key", API_KEY, "--quiet",
                  "--data-dir", str(feed.MISP_DIR))
    es = Double(workdir, "es", ES_DOUBLE, "--fast")
    collector = Collector(workdir, misp.url, es.url)
    try:
        append(workdir, halves, 0)
        collector.start()
        wait_for(lambda: collector.sightings_sent() > 100, 60, "the first sightings in MISP")

        # MISP goes away; Elasticsearch must keep receiving.
        misp.call("POST", "/_double/faults", {"down_seconds": 600})
        time.sleep(0.5)
        before = misp_totals(misp)
        es_before = es_count(es)
        append(workdir, halves, 1)
        wait_for(lambda: es_count(es) >= feed.RECORDS, 60, "every record in Elasticsearch")
        check(misp_totals(misp) == before, "MISP changed while it was down")
        print(f"MISP down: Elasticsearch went from {es_before} to {es_count(es)} documents, "
              f"MISP stayed at {before['sightings']} sightings", flush=True)
        check(not collector.misp_caught_up(), "the MISP output caught up while MISP was down")

        collector.kill()
        collector.start()
        misp.call("POST", "/_double/faults", {"down_seconds": 0})
        # A second kill while the output catches up, in the middle of its pushes.
        wait_for(lambda: collector.sightings_sent() > before["sightings"] + 100, 60,
                 "MISP receiving again")
        collector.kill()
        collector.start()
        wait_for(collector.misp_caught_up, 600, "the MISP output to catch up")
        # With publish_delay 1s an event of a closed day is published once its
        # timestamp is 1 s old. The model raises the timestamp by at least one
        # second per change, so after a burst of batches it can run some
        # seconds ahead of the clock: wait for that instead of a fixed time.
        wait_for(lambda: closed_days_published(misp), 60, "the events of closed days published")
        stats = misp.call("GET", "/_double/stats")
    finally:
        collector.stop()
        misp.stop()
        es.stop()
    return collector, stats


def verify(collector, stats):
    check(collector.stored() == feed.RECORDS,
          f"{collector.stored()} events stored, expected {feed.RECORDS}")
    dead = collector.query(collector.store, "SELECT count(*) FROM dead_letters")[0][0]
    check(dead == 0, f"{dead} dead letters")
    documents = [row[0] for row in collector.query(collector.store,
                                                    "SELECT document FROM events")]
    expected = feed.expected_from_documents(documents)
    check(len(expected) == 4, f"{len(expected)} groups x days in the documents, expected 4")

    events = {e["uuid"]: e for e in stats["events"]}
    check(sorted(events) == sorted(expected),
          f"MISP events {sorted(events)} != expected {sorted(expected)}")
    for key in ("schema_violations", "stored_event_schema_violations",
                "object_template_violations", "attributes_rejected", "objects_rejected",
                "sightings_unmatched"):
        check(stats[key] == 0, f"{key}: {stats[key]} {stats.get('schema_violation_samples')}")
    check(stats["schema_checked"] > 0, "the double checked no document against the schema")
    now = time.time()
    for event_uuid, event in events.items():
        want = expected.get(event_uuid, {"sources": set(), "signatures": set(), "hits": 0})
        ip_src = [a["value"] for a in event["Attribute"] if a["type"] == "ip-src"]
        check(len(ip_src) == len(set(ip_src)), f"{event_uuid}: duplicate ip-src")
        check(set(ip_src) == want["sources"],
              f"{event_uuid}: {len(set(ip_src))} ip-src, expected {len(want['sources'])}")
        http = [o for o in event["Object"] if o["name"] == "http-request"]
        check(len(http) == len(want["signatures"]),
              f"{event_uuid}: {len(http)} http-request objects, expected "
              f"{len(want['signatures'])}")
        uuids = [o["uuid"] for o in event["Object"]]
        check(len(uuids) == len(set(uuids)), f"{event_uuid}: duplicate object uuid")
        sightings = [s for a in event["Attribute"] for s in a.get("Sighting", [])]
        check(len(sightings) == want["hits"] - len(want["sources"]),
              f"{event_uuid}: {len(sightings)} sightings, expected "
              f"{want['hits'] - len(want['sources'])}")
        check(all(s["source"].startswith("sensor-") for s in sightings),
              f"{event_uuid}: a sighting without the sensor id as source")
        tags = {t["name"] for t in event["Tag"]}
        check("cssa:origin=\"honeypot\"" in tags and any(t.startswith("tlp:") for t in tags),
              f"{event_uuid}: event tags {sorted(tags)}")
        # publish: when_day_closes with publish_delay 1s.
        day_end = calendar.timegm(time.strptime(event["date"], "%Y-%m-%d")) + 86400
        check(event["published"] == (now >= day_end + 1) or abs(now - day_end) < 10,
              f"{event_uuid} ({event['date']}): published is {event['published']}")
        print(f"{event['info']}: {len(ip_src)} ip-src, {len(http)} http-request, "
              f"{len(event['Object']) - len(http)} credential, {len(sightings)} sightings, "
              f"published {event['published']}", flush=True)
    describe = feed.load_json(feed.MISP_DIR / "describeTypes.json")
    describe = describe.get("result", describe)
    credential_objects = feed.check_objects(list({"Event": e} for e in events.values()),
                                            describe)
    check(credential_objects > 0, "no credential object")


def main():
    if not feed.MISP_DIR.is_dir():
        print(f"skip: {feed.MISP_DIR} is missing")
        return 77
    try:
        import jsonschema  # noqa: F401
    except ImportError:
        print("skip: python3-jsonschema is missing")
        return 77
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="webtrap-misp-rest-") as tmp:
        collector, stats = run(pathlib.Path(tmp))
        verify(collector, stats)
    print(f"took {time.monotonic() - started:.1f} s", flush=True)
    if feed.failures:
        print(f"{len(feed.failures)} checks failed")
        return 1
    print("MISP REST output: every check passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
