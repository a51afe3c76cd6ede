#!/usr/bin/env python3
"""F8: a flood fills the inspection queue, and the probe sheds inspection, not records.

The probe runs with one inspection thread and `pipeline.queue_limit: 2`.
Eight client threads send a burst of POSTs whose 900 form fields each cost
libmodsecurity some milliseconds, with a login POST that flips the hidden
field `bags` to `true` after every four of them. The test checks that:

- every request gives exactly one record;
- some inspections were shed, and each shed record has `inspection.status`
  `shed` and no rule matches;
- `webtrap_inspections_shed_total` on /metrics equals the number of shed
  records, and the pipeline and spool counters equal the number of requests;
- a shed login POST with `bags=true` still has bait `form_field` and the OAT
  tags of its bait (OAT-014) and its route (OAT-007, OAT-008).

A burst that sheds no bait request is followed by another, at most
MAX_BURSTS in all.
"""

import concurrent.futures
import sys
import unittest

from probe_harness import Probe, record_marker, send_raw

CONFIG = """
sensor:
  id: shed-flood
pipeline:
  workers: 1
  queue_limit: 2
"""
HEAVY_PER_BURST = 32
BAIT_EVERY = 4
FIELDS = 900
CLIENTS = 8
MAX_BURSTS = 3


def post(target, body):
    return (f"POST {target} HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent: Mozilla/5.0\r\n"
            f"Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body



def burst_requests(burst):
    """The requests of one burst as (marker, bytes), bait POSTs among the heavy ones."""
    requests = []
    for i in range(HEAVY_PER_BURST):
        marker = f"heavy-{burst}-{i}"
        # Distinct bodies, so that no inspection result comes from the cache.
        body = "&".join(f"f{j}={marker}-{j}" for j in range(FIELDS)).encode()
        requests.append((marker, post(f"/blog/post.php?marker={marker}", body)))
        if i % BAIT_EVERY == BAIT_EVERY - 1:
            marker = f"bait-{burst}-{i}"
            body = f"user={marker}&pass=hunter2&bags=true".encode()
            requests.append((marker, post(f"/login.php?marker={marker}", body)))
    return requests


class InspectionShedTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.probe = Probe(CONFIG)

    @classmethod
    def tearDownClass(cls):
        code = cls.probe.stop()
        if code != 0:
            raise AssertionError(f"probe exited with {code}:\n{cls.probe.log_text()}")

    def test_flood_sheds_inspection_but_records_everything(self):
        sent = []
        for burst in range(MAX_BURSTS):
            requests = burst_requests(burst)
            with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
                responses = list(pool.map(lambda item: send_raw(self.probe.http_port, item[1]),
                                          requests))
            for (marker, _), response in zip(requests, responses):
                self.assertTrue(response.startswith(b"HTTP/1.1 "),
                                f"{marker}: {response[:60]!r}")
            sent += [marker for marker, _ in requests]
            records = self.probe.wait_records(len(sent), timeout=60)
            if any(record_marker(r).startswith("bait-") and r["webtrap"]["inspection"]["status"]
                   == "shed" for r in records):
                break

        # Every request is recorded once.
        self.assertEqual(sorted(record_marker(r) for r in records), sorted(sent))

        shed = [r for r in records if r["webtrap"]["inspection"]["status"] == "shed"]
        inspected = [r for r in records if r["webtrap"]["inspection"]["status"] != "shed"]
        self.assertTrue(shed, "the flood shed no inspection")
        self.assertTrue(inspected, "no request was inspected")
        for record in inspected:
            self.assertIn(record["webtrap"]["inspection"]["status"], ("complete", "cached"))
        for record in shed:
            self.assertFalse(record["webtrap"]["inspection"].get("rule_ids"), record_marker(record))
            self.assertFalse(record["transaction"].get("messages"), record_marker(record))

        metrics = self.probe.metrics()
        self.assertEqual(metrics.get("webtrap_inspections_shed_total"), len(shed))
        self.assertEqual(metrics.get("webtrap_pipeline_jobs_total"), len(sent))
        self.assertEqual(metrics.get("webtrap_records_written_total"), len(sent))
        self.assertEqual(metrics.get("webtrap_inspection_queue_depth"), 0)

        shed_baits = [r for r in shed if record_marker(r).startswith("bait-")]
        self.assertTrue(shed_baits, f"no bait request was shed in {MAX_BURSTS} bursts "
                                    f"({len(shed)} of {len(sent)} requests shed)")
        for record in shed_baits:
            baits = {bait["kind"]: bait["detail"] for bait in record["webtrap"]["baits"]}
            self.assertEqual(baits.get("form_field"), "bags=true", record_marker(record))
            tags = {tag["id"]: tag["reason"] for tag in record["webtrap"]["oat"]}
            self.assertEqual(tags.get("OAT-014"), "bait:form_field", record_marker(record))
            self.assertEqual(tags.get("OAT-007"), "route:login POST", record_marker(record))
            self.assertIn("OAT-008", tags, record_marker(record))

        # An inspected bait request also matches rule 77050, which shed ones skip.
        for record in inspected:
            if record_marker(record).startswith("bait-"):
                self.assertIn("77050", record["webtrap"]["inspection"]["rule_ids"])
        print(f"{len(shed)} of {len(sent)} requests shed, {len(shed_baits)} of them bait POSTs",
              file=sys.stderr)


STOP_CONFIG = """
sensor:
  id: shed-stop
pipeline:
  workers: 1
  queue_limit: 1000
  drain_timeout: 0s
"""
STOP_REQUESTS = 96


class StopDrainTest(unittest.TestCase):
    """A stop with inspections queued writes the rest uninspected at once."""

    def test_stop_records_queued_requests_uninspected(self):
        probe = Probe(STOP_CONFIG)
        try:
            requests = burst_requests(0)
            requests = (requests * (STOP_REQUESTS // len(requests) + 1))[:STOP_REQUESTS]
            with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
                responses = list(pool.map(lambda item: send_raw(probe.http_port, item[1]),
                                          requests))
            for (marker, _), response in zip(requests, responses):
                self.assertTrue(response.startswith(b"HTTP/1.1 "),
                                f"{marker}: {response[:60]!r}")
            queued = probe.metrics().get("webtrap_inspection_queue_depth")
        finally:
            code = probe.stop()
        self.assertEqual(code, 0, probe.log_text()[-3000:])
        self.assertGreater(queued, 0, "the requests were inspected before the stop")

        records = probe.records()
        self.assertEqual(len(records), STOP_REQUESTS)
        uninspected = [r for r in records
                       if "drain_timeout" in r["webtrap"]["inspection"].get("error", "")]
        self.assertTrue(uninspected, f"no record says it was left uninspected at the stop; "
                                     f"{queued:.0f} requests were queued")
        for record in uninspected:
            self.assertEqual(record["webtrap"]["inspection"]["status"], "shed")
        self.assertIn(f"recording {len(uninspected)} queued requests uninspected",
                      probe.log_text())


if __name__ == "__main__":
    unittest.main()
