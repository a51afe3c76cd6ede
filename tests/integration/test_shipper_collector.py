#!/usr/bin/env python3
"""A probe's shipper sends its spool to a real collector on loopback.

One collector (SQLite store) and one probe (libmodsecurity with CRS and the
webtrap rules) with a `shipper:` section that points at it. The collector's
body limits are small, so that one record with a large body is too large
for it even alone.

- O10: a POST of the login form with the hidden field `bags` flipped to
  `true` gives bait `form_field`, rule 77050 and the tag OAT-014 in the
  probe's record. The document stored by the collector keeps OAT-014 in
  `webtrap.oat` and `threat.technique.id`.
- S3: the record that is too large alone is written to
  `shipper-rejected.ndjson` in the spool folder, counted in
  `webtrap_shipper_records_rejected_total`, and the shipper goes on with the
  records after it.
"""

import json
import os
import random
import signal
import sqlite3
import string
import sys
import unittest
import urllib.parse

from probe_harness import (CollectorRun, Probe, collector_ports, enrol_sensor, send_raw,
                           wait_for)

SENSOR = "shipper-collector"
# The collector takes at most 16 KiB on the wire and 64 KiB after gzip. The
# large record has a body of 96 KiB of random letters, which gzip cannot
# shrink below 16 KiB.
LARGE_BODY_LETTERS = 96 * 1024


def post(path, body, content_type="application/x-www-form-urlencoded"):
    head = (f"POST {path} HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent: Mozilla/5.0\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
            f"Connection: close\r\n\r\n").encode()
    return head + body


def get(path):
    return (f"GET {path} HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent: Mozilla/5.0\r\n"
            f"Connection: close\r\n\r\n").encode()


def marker_of(record):
    """The `marker` query argument of the record's request line, or None."""
    target = record["webtrap"]["request"]["line"].split(" ")[1]
    values = urllib.parse.parse_qs(urllib.parse.urlsplit(target).query).get("marker")
    return values[0] if values else None


class ShipperCollectorTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.collector_run = CollectorRun("webtrap-shipper-collector-")
        cls.collector_run.__enter__()
        os.chmod(cls.collector_run.folder, 0o755)
        try:
            cls.start()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def start(cls):
        folder = cls.collector_run.folder
        cls.store = folder / "state" / "store.sqlite"
        config = folder / "collector.yaml"
        config.write_text(f"""listen: 127.0.0.1:0
admin: {{listen: 127.0.0.1:0}}
state_dir: {folder / "state"}
limits: {{max_body_bytes: 16KiB, max_decompressed_bytes: 64KiB}}
""")
        token, _ = enrol_sensor(config, SENSOR, "--group", "lab")
        collector = cls.collector_run.start(config)
        ports = collector_ports(collector, folder)
        cls.probe = Probe(f"""sensor:
  id: {SENSOR}
shipper:
  url: http://127.0.0.1:{ports["ingest"]}
  token: {token}
  batch_max_records: 4
  interval: 100ms
  retry_initial: 100ms
  retry_max: 500ms
  timeout: 10s
""")
        letters = "".join(random.Random(7).choices(string.ascii_letters, k=LARGE_BODY_LETTERS))
        # In spool order: the bags POST, small pages, the large record, small pages.
        cls.requests = [("bags", post("/login.php?marker=bags",
                                      b"user=admin&pass=hunter2&bags=true"))]
        cls.requests += [(f"before-{i}", get(f"/about.php?marker=before-{i}")) for i in range(3)]
        cls.requests += [("large", post("/blog/post.php?marker=large",
                                        f"name=a&comment={letters}".encode()))]
        cls.requests += [(f"after-{i}", get(f"/about.php?marker=after-{i}")) for i in range(6)]
        for _, data in cls.requests:
            send_raw(cls.probe.http_port, data)
        records = cls.probe.wait_records(len(cls.requests))
        cls.records = {marker_of(record): record for record in records}
        cls.ids = {marker: record["webtrap"]["event_id"] for marker, record in cls.records.items()}

    @classmethod
    def tearDownClass(cls):
        probe = getattr(cls, "probe", None)
        if probe is not None and probe.process.poll() is None:
            probe.process.send_signal(signal.SIGTERM)
            probe.process.wait(timeout=30)
        cls.collector_run.__exit__(None, None, None)

    def stored(self):
        """Maps event id to the parsed document for every event in the store."""
        if not self.store.exists():
            return {}
        connection = sqlite3.connect(f"file:{self.store}?mode=ro", uri=True, timeout=5)
        try:
            rows = connection.execute("SELECT event_id, document FROM events").fetchall()
        except sqlite3.OperationalError:
            return {}  # the schema is not there yet
        finally:
            connection.close()
        return {event_id: json.loads(document) for event_id, document in rows}

    def wait_stored(self, markers):
        def arrived():
            documents = self.stored()
            return documents if all(self.ids[m] in documents for m in markers) else None

        try:
            return wait_for(arrived, 30, f"the records {markers} in the collector's store")
        except TimeoutError:
            raise AssertionError("probe log:\n" + self.probe.log_text()[-4000:] +
                                 "\ncollector log:\n" +
                                 (self.collector_run.folder / "collector.log").read_text()[-4000:])

    def test_records_match_requests(self):
        self.assertEqual(sorted(self.records), sorted(marker for marker, _ in self.requests))

    def test_bags_field_gives_oat_014_in_record_and_store(self):
        record = self.records["bags"]
        baits = {bait["kind"]: bait["detail"] for bait in record["webtrap"]["baits"]}
        self.assertEqual(baits.get("form_field"), "bags=true", record["webtrap"]["baits"])
        self.assertIn("77050", record["webtrap"]["inspection"]["rule_ids"])
        probe_tags = {tag["id"]: tag for tag in record["webtrap"]["oat"]}
        self.assertIn("OAT-014", probe_tags)
        self.assertEqual(probe_tags["OAT-014"]["reason"], "bait:form_field")
        self.assertEqual(probe_tags["OAT-014"]["confidence"], 0.6)

        document = self.wait_stored(["bags"])[self.ids["bags"]]
        self.assertEqual(document["observer"]["name"], SENSOR)
        self.assertEqual(document["webtrap"]["sensor"]["id"], SENSOR)
        stored_tags = {tag["id"]: tag for tag in document["webtrap"]["oat"]}
        self.assertIn("OAT-014", stored_tags, document["webtrap"]["oat"])
        self.assertEqual(stored_tags["OAT-014"]["reason"], "bait:form_field")
        self.assertEqual(stored_tags["OAT-014"]["basis"], "rule")
        self.assertEqual(set(stored_tags), set(probe_tags))
        self.assertIn("OAT-014", document["threat"]["technique"]["id"])

    def test_record_too_large_alone_is_set_aside(self):
        after = [f"after-{i}" for i in range(6)]
        documents = self.wait_stored(["bags", "before-0", "before-1", "before-2", *after])
        self.assertNotIn(self.ids["large"], documents)

        rejected_file = self.probe.spool / "shipper-rejected.ndjson"
        lines = wait_for(lambda: rejected_file.exists() and rejected_file.read_bytes(), 10,
                         "shipper-rejected.ndjson").splitlines()
        self.assertEqual(len(lines), 1, "one record set aside")
        rejected = json.loads(lines[0])
        self.assertEqual(rejected["webtrap"]["event_id"], self.ids["large"])
        self.assertGreater(len(lines[0]), LARGE_BODY_LETTERS)

        metrics = wait_for(lambda: (lambda m: m if m.get("webtrap_shipper_records_sent_total")
                                    == len(self.requests) - 1 else None)(self.probe.metrics()),
                           10, "the shipper's counters")
        self.assertEqual(metrics.get("webtrap_shipper_records_rejected_total"), 1)
        self.assertGreaterEqual(metrics.get('webtrap_shipper_errors_total{kind="too_large"}', 0), 1)
        self.assertEqual(metrics.get("webtrap_shipper_backlog_bytes"), 0)
        self.assertIn("rejects a single record of bytes=", self.probe.log_text())


if __name__ == "__main__":
    unittest.main()
