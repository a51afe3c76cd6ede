#!/usr/bin/env python3
"""A request whose many fields each match a rule gives a record of bounded size.

libmodsecurity 3.0.9 reports some rules (CRS 942100) once per matched
field, and each copy carries the reference text of every field that rule
matched before. So n matching fields give about n^2 / 2 reference entries,
and the 65 KB form of this test gives a 5.3 MB record without the limits.
This test sends the form to a probe with the default limits and to one
with limits too large to cut anything. It checks that the bounded record
stays small, names every rule id that fired, keeps the anomaly score and
the OAT tags, flags the cut, matches the record schema and counts the cut
in the metrics.
"""

import json
import pathlib
import re
import sys
import unittest
import urllib.parse

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from probe_harness import SOURCE_DIR, Probe, send_raw  # noqa: E402

try:
    import jsonschema
except ImportError:  # python3-jsonschema comes with scripts/install-deps.sh --with-tests
    jsonschema = None

# libinjection finds the SQL injection in each field, so libmodsecurity
# reports CRS rule 942100 once per field. The probe inspects at most 1000
# fields.
FIELDS = 1000
PAYLOAD = "1' OR 1=1-- <script>alert(1)</script>"
# modsecurity.match_details_max_bytes at its default.
MAX_DETAILS_BYTES = 64 * 1024
UNBOUNDED = ("sensor:\n  id: match-details-unbounded\nmodsecurity:\n"
             "  match_string_max_bytes: 1GiB\n  match_details_max_bytes: 1GiB\n")


def flood_request():
    body = "&".join(f"f{i}=" + urllib.parse.quote(PAYLOAD) for i in range(FIELDS)).encode()
    head = (f"POST /blog/post.php HTTP/1.1\r\nHost: www.example.com\r\n"
            f"Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    return head + body


def record_line(probe):
    """The one record's line as written to the spool, and the record parsed."""
    records = probe.wait_records(1, timeout=300)
    line = b"".join(segment.read_bytes() for segment in sorted(probe.spool.glob("*.ndjson")))
    return line.rstrip(b"\n"), records[0]


def send_flood(config_text):
    probe = Probe(config_text)
    try:
        request = flood_request()
        response = send_raw(probe.http_port, request, timeout=120)
        if not response.startswith(b"HTTP/1.1 "):
            raise AssertionError(f"no HTTP response: {response[:80]!r}")
        line, record = record_line(probe)
        return len(request), line, record, probe.metrics()
    finally:
        probe.stop()


class MatchDetailsBoundTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.request_size, cls.line, cls.record, cls.metrics = send_flood(
            "sensor:\n  id: match-details\n")
        _, cls.full_line, cls.full_record, _ = send_flood(UNBOUNDED)

    def messages_bytes(self, record):
        return len(json.dumps(record["transaction"]["messages"], separators=(",", ":")))

    def test_unbounded_record_amplifies(self):
        # Shows that the request still amplifies without the limits, so the
        # bound below is what keeps the record small.
        self.assertGreater(len(self.full_line), 50 * self.request_size)
        self.assertNotIn("details_cut", self.full_record["webtrap"]["inspection"])

    def test_record_stays_under_bound(self):
        inspection = self.record["webtrap"]["inspection"]
        cut = inspection["details_cut"]
        reduced_bytes = cut["reduced_matches"] * 1536
        self.assertLessEqual(self.messages_bytes(self.record), MAX_DETAILS_BYTES + reduced_bytes)
        self.assertLess(len(self.line), 3 * self.request_size + MAX_DETAILS_BYTES)

    def test_rule_ids_and_score_stay_exact(self):
        bounded = self.record["webtrap"]["inspection"]
        full = self.full_record["webtrap"]["inspection"]
        self.assertEqual(bounded["status"], "complete")
        self.assertEqual(set(bounded["rule_ids"]), set(full["rule_ids"]))
        self.assertEqual(bounded["anomaly_score"], full["anomaly_score"])
        self.assertGreater(bounded["anomaly_score"], 0)
        message_ids = {m["details"]["ruleId"] for m in self.record["transaction"]["messages"]}
        self.assertEqual(message_ids, set(full["rule_ids"]))
        self.assertEqual([tag["id"] for tag in self.record["webtrap"]["oat"]],
                         [tag["id"] for tag in self.full_record["webtrap"]["oat"]])

    def test_cut_is_flagged(self):
        cut = self.record["webtrap"]["inspection"]["details_cut"]
        self.assertGreater(cut["truncated_strings"], 0)
        self.assertGreater(cut["omitted_matches"], 0)
        kept = len(self.record["transaction"]["messages"])
        reported = len(self.full_record["transaction"]["messages"])
        self.assertEqual(kept + cut["omitted_matches"], reported)
        texts = [text for m in self.record["transaction"]["messages"]
                 for text in (m["message"], m["details"]["data"], m["details"]["match"],
                              m["details"]["reference"])]
        marked = [text for text in texts if re.search(r" \[truncated by webtrap from \d+ bytes\]$", text)]
        self.assertEqual(len(marked), cut["truncated_strings"])

    @unittest.skipIf(jsonschema is None, "python3-jsonschema is not installed")
    def test_record_matches_schema(self):
        schema = json.loads((SOURCE_DIR / "docs" / "record-schema.json").read_text())
        jsonschema.Draft202012Validator(schema).validate(self.record)

    def test_cut_is_counted(self):
        cut = self.record["webtrap"]["inspection"]["details_cut"]
        self.assertEqual(self.metrics.get("webtrap_match_details_cut_records_total"), 1)
        self.assertEqual(
            self.metrics.get('webtrap_match_details_cut_total{kind="omitted_match"}'),
            cut["omitted_matches"])
        self.assertEqual(
            self.metrics.get('webtrap_match_details_cut_total{kind="truncated_string"}'),
            cut["truncated_strings"])


if __name__ == "__main__":
    unittest.main()
