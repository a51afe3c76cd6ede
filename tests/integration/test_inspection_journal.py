#!/usr/bin/env python3
"""F13: a probe killed with SIGKILL while requests wait for inspection loses none.

The probe runs with one inspection thread. Eight client threads send POSTs
whose 900 form fields each cost libmodsecurity some milliseconds, so most
of them are still queued when every response has arrived. Once 8 records
are in the spool and a done line is in the journal, the test kills the
probe with SIGKILL, checks that the spool lacks some requests and
that the inspection journal contains files, and starts a probe on the same
spool. The test checks that:

- the second probe's spool has a record for every answered request, and at
  most two per request (an inspected record whose done id was not yet
  written is recovered again, as a duplicate), with fewer duplicates than
  records spooled before the kill;
- the recovered records are valid against docs/record-schema.json, carry
  `inspection.recovered` true, were inspected at the restart (status
  `complete` or `cached`, no `inspection.error`), and
  `webtrap_journal_records_recovered_total` and
  `webtrap_journal_records_inspected_total` count them;
- the first probe journaled every request (`webtrap_journal_entries_total`);
- the second probe records the requests it takes after the restart, and its
  clean stop leaves the journal folder empty;
- the recovery line counts the entries skipped for a done id, and the stop
  line gives the recovered records next to this run's records.

A fidelity case sends requests with odd features. They carry invalid
UTF-8, NUL bytes, duplicate and long headers, a chunked body or a GET
body, and one is unparsed. They reach TLS, the bait and IPv6 listeners,
baits, an issued token, login and checkout forms. Every one is inspected
and spooled. The test
kills the probe before any done id is committed, so the restart recovers
each request again. Each recovered record must equal the inspected record
of the same event id in every field but the inspection status, time and
recovered mark: the same rule matches, anomaly score and OAT tags.

An attack case sends a burst of sqlmap-like requests with curl behind a
queue of slow POSTs, kills the probe once curl has every response, puts an
oversized file in the journal folder and restarts. Each attack request
that the killed probe did not spool comes back inspected, with CRS SQL
injection rule ids and the recovered mark. The oversized file is skipped,
counted and kept.

A last case checks that an invalid `pipeline.journal` value stops the start
with an error that names the key.
"""

import concurrent.futures
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import unittest
import urllib.parse

import jsonschema

from probe_harness import (BIN, SOURCE_DIR, Probe, form_post, record_marker, send_raw,
                           wait_for)

# A short fsync interval makes the journal commit its done ids often, so
# that the records spooled before the kill are mostly not recovered again.
# The tests check that every recovered request is inspected and measure no
# time. A POST of 900 fields took about 45 ms to inspect on an idle 2-CPU
# machine and 430 ms on one busy with parallel builds, so the 10 s default of
# pipeline.recovery_timeout left some of the 87 recovered ones uninspected.
CONFIG = """
sensor:
  id: journal-kill
pipeline:
  workers: 1
  queue_limit: 1000
  recovery_timeout: 600s
spool:
  fsync_interval: 100ms
"""
REQUESTS = 96
FIELDS = 900
CLIENTS = 8
AFTER_RESTART = 4
SPOOLED_BEFORE_KILL = 8
# Seconds a restarted probe may take to recover and inspect the journal
# before it writes its ports file.
RESTART_TIMEOUT = 600

# An fsync interval longer than the test keeps every done id in memory, so
# that a SIGKILL leaves the entry of every request in the journal.
FIDELITY_CONFIG = """
sensor:
  id: journal-fidelity
pipeline:
  workers: 1
  recovery_timeout: 600s
spool:
  fsync_interval: 600s
"""
# Record fields that differ between the live inspection and the one at
# recovery: the status ("cached" live for a repeated request), the time,
# the mark, and the response time that only the live record has (the entry
# is written before the response).
INSPECTION_FIELDS = ("/webtrap/inspection/status", "/webtrap/inspection/duration_us",
                     "/webtrap/inspection/recovered", "/webtrap/timings/inspection_us",
                     "/webtrap/timings/response_us")

# The attack case: one inspection thread behind slow POSTs, and done ids
# kept in memory, so that the attack requests are queued at the kill.
ATTACK_CONFIG = """
sensor:
  id: journal-attack
pipeline:
  workers: 1
  queue_limit: 1000
  recovery_timeout: 600s
spool:
  fsync_interval: 600s
"""
SLOW_POSTS = 48
SQLMAP_AGENT = "sqlmap/1.7.2#stable (https://sqlmap.org)"
# sqlmap-like payloads of the id parameter: boolean, UNION, error-based,
# time-based and stacked queries.
SQLMAP_PAYLOADS = (
    "1 AND 8712=8712",
    "1' AND 5193=5193 AND 'uYtq'='uYtq",
    "1 UNION ALL SELECT NULL,CONCAT(0x7178787671,0x4a6d,0x7170717071),NULL-- -",
    "1' AND EXTRACTVALUE(4217,CONCAT(0x5c,0x71787a7a71,(SELECT (ELT(4217=4217,1))),0x71))-- -",
    "1' AND (SELECT 3520 FROM (SELECT(SLEEP(5)))wXyZ)-- -",
    "1;SELECT PG_SLEEP(5)--",
)
ATTACKS = 30


def odd_requests(marker):
    """(listener, raw request) pairs whose records exercise every entry field."""
    def get(path, headers="", version="1.1", method="GET"):
        return (f"{method} {path} HTTP/{version}\r\nHost: shop.example\r\n{headers}"
                f"Connection: close\r\n\r\n").encode("latin-1")

    def form(path, body, headers=""):
        return (f"POST {path} HTTP/1.1\r\nHost: shop.example\r\n{headers}"
                f"Content-Type: application/x-www-form-urlencoded\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body

    chunk = b"a=1&b=\x00\xff\\n\n\\\\"
    chunked = (f"POST /blog/post.php?marker={marker}-chunked HTTP/1.1\r\nHost: a\r\n"
               f"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n").encode()
    chunked += b"%x\r\n" % len(chunk) + chunk + b"\r\n0\r\n\r\n"
    return [
        ("http", get(f"/?marker={marker}-utf8&x=\xff\xfe", "X-Bad: \xc3\x28\x00nul\r\n")),
        ("http", get(f"/?marker={marker}-headers",
                     "X-Dup: 1\r\nx-dup: 2\r\nX-Dup: 3\r\nX-Long: " + "A" * 20000 + "\r\n")),
        ("http", chunked),
        ("http", f"\x16\x03 {marker}-unparsed \xff\r\n\r\n".encode("latin-1")),
        ("http", get(f"/robots.txt?marker={marker}-robots")),
        ("http", get(f"/.env?marker={marker}-token")),
        ("http", get(f"/admin/?marker={marker}-canary", "Authorization: Basic YWRtaW46c2VjcmV0\r\n")),
        ("http", form(f"/login.php?marker={marker}-login", b"user=admin%00x&pass=pw&bags=true",
                      "Cookie: user_role=admin\r\n")),
        ("http", form(f"/shop/checkout.php?marker={marker}-card",
                      b"card_name=A&card_number=4111+1111+1111+1111&cvv=123&expiry=12%2F30")),
        ("http", get(f"/?marker={marker}-getbody", "Content-Length: 5\r\n")[:-2] + b"\r\n\x00\x01\n\\x"),
        ("tls", get(f"/?marker={marker}-tls")),
        ("bait", get(f"/?marker={marker}-bait")),
        ("ipv6", get(f"/?marker={marker}-ipv6", version="1.0", method="HEAD")),
    ]


def send_tls(port, data):
    """Sends bytes over TLS with SNI shop.example and returns the response."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=10) as plain:
        with context.wrap_socket(plain, server_hostname="shop.example") as sock:
            sock.sendall(data)
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
            return b"".join(chunks)


def journal_has_done_line(spool):
    """Whether a journal file of `spool` contains a done line, which a commit writes."""
    for path in (spool / "inspection-journal").glob("*.journal"):
        try:
            data = path.read_bytes()
        except FileNotFoundError:  # deleted by a commit once all its entries were done
            continue
        if any(line.startswith(b"D ") for line in data.splitlines()):
            return True
    return False


def flatten(value, pointer=""):
    """Maps the JSON pointer of every scalar in `value` to the scalar."""
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return {pointer: value}
    flat = {}
    for key, item in items:
        flat.update(flatten(item, f"{pointer}/{key}"))
    return flat




class InspectionJournalTest(unittest.TestCase):
    def test_sigkill_loses_no_queued_request(self):
        markers = [f"kill-{i}" for i in range(REQUESTS)]
        first = Probe(CONFIG)
        try:
            with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
                responses = list(pool.map(lambda m: send_raw(first.http_port, form_post(m, FIELDS)),
                                          markers))
            for marker, response in zip(markers, responses):
                self.assertTrue(response.startswith(b"HTTP/1.1 "),
                                f"{marker}: {response[:60]!r}")
            # Kill once some records are in the spool and a commit has
            # written their done ids, so that the journal has done ids as
            # well as pending entries. The commit runs every fsync_interval
            # after an fsync of the spool, which can take seconds under load.
            wait_for(lambda: first.metrics().get("webtrap_records_written_total", 0)
                     >= SPOOLED_BEFORE_KILL, 60, f"{SPOOLED_BEFORE_KILL} records")
            wait_for(lambda: journal_has_done_line(first.spool), 60,
                     "a done line in the journal")
            metrics = first.metrics()
        finally:
            # SIGKILL to the probe this test started, by its PID.
            first.process.kill()
            first.process.wait()
            first.stop()

        queued = metrics.get("webtrap_inspection_queue_depth", 0)
        self.assertGreater(queued, 0, "the requests were inspected before the kill")
        self.assertEqual(metrics.get("webtrap_journal_entries_total"), REQUESTS)
        self.assertGreater(metrics.get("webtrap_journal_pending", 0), 0)
        before = {record_marker(r) for r in first.records()}
        self.assertGreaterEqual(len(before), SPOOLED_BEFORE_KILL)
        self.assertLess(len(before), REQUESTS, "the kill lost no request from the spool")
        journal_files = list((first.spool / "inspection-journal").glob("*.journal"))
        self.assertTrue(journal_files, "the killed probe left no journal file")

        # The second probe recovers before it binds its ports, so the records
        # are in the spool once it is ready. It then takes a few requests, so
        # that its stop has journal files to remove.
        second = Probe(CONFIG, spool=first.spool, start_timeout=RESTART_TIMEOUT)
        later = [f"later-{i}" for i in range(AFTER_RESTART)]
        try:
            records = second.records()
            metrics = second.metrics()
            for marker in later:
                response = send_raw(second.http_port, form_post(marker, FIELDS))
                self.assertTrue(response.startswith(b"HTTP/1.1 "))
        finally:
            code = second.stop()
        self.assertEqual(code, 0, second.log_text()[-3000:])
        later_records = [r for r in second.records() if record_marker(r).startswith("later-")]
        self.assertEqual(sorted(record_marker(r) for r in later_records), sorted(later))

        by_marker = {}
        for record in records:
            by_marker.setdefault(record_marker(record), []).append(record)
        self.assertEqual(sorted(by_marker), sorted(markers))
        for marker, copies in by_marker.items():
            self.assertLessEqual(len(copies), 2, marker)
        # Done ids committed before the kill keep those records from coming twice.
        self.assertLess(len(records) - REQUESTS, len(before), "every spooled record came twice")

        recovered = [r for r in records if r["webtrap"]["inspection"].get("recovered")]
        self.assertTrue(recovered, "no record was recovered from the journal")
        self.assertEqual(metrics.get("webtrap_journal_records_recovered_total"), len(recovered))
        self.assertEqual(metrics.get("webtrap_journal_records_inspected_total"), len(recovered))
        self.assertEqual(
            metrics.get('webtrap_journal_records_uninspected_total{reason="failed"}'), 0)
        self.assertEqual(metrics.get("webtrap_journal_lines_damaged_total"), 0)
        schema = json.loads((SOURCE_DIR / "docs" / "record-schema.json").read_text())
        validator = jsonschema.Draft202012Validator(schema)
        for record in recovered:
            errors = [error.message for error in validator.iter_errors(record)]
            self.assertEqual(errors, [], record_marker(record))
            inspection = record["webtrap"]["inspection"]
            self.assertIn(inspection["status"], ("complete", "cached"), record_marker(record))
            self.assertNotIn("error", inspection, record_marker(record))
            self.assertGreaterEqual(record["webtrap"]["timings"]["inspection_us"], 0)
        # Every request that the first probe did not spool was recovered.
        recovered_markers = {record_marker(r) for r in recovered}
        self.assertEqual(set(markers) - before - recovered_markers, set())
        for record in records:
            self.assertIn(record["webtrap"]["inspection"]["status"],
                          ("complete", "cached"), record_marker(record))

        # The recovery line and the stop line count the recovered records as
        # the metric does. The recovery line counts the entries that a done
        # line names, not the spooled records whose done id was lost.
        log = second.log_text()
        counts = re.search(r"journal: recovery done .* entries=(\d+) recovered=(\d+) "
                           r"skipped_done=(\d+) damaged_lines=0 dropped_by_spool=0 .* "
                           r"inspected=(\d+) uninspected=0 inspection_failures=0 "
                           r"duration_ms=(\d+)", log)
        self.assertIsNotNone(counts, log[-3000:])
        entries, recovered_count, skipped_done, inspected, _ = (int(g) for g in counts.groups())
        self.assertEqual(recovered_count, len(recovered))
        self.assertEqual(inspected, len(recovered))
        self.assertRegex(log, r"journal: recovering queued requests .* inspection=on")
        self.assertEqual(skipped_done, entries - recovered_count)
        self.assertGreater(skipped_done, 0, "no entry had a done id at the kill")
        self.assertNotIn("already_spooled", log)
        self.assertRegex(log, rf"probe: stopped requests={AFTER_RESTART} "
                              rf"records_written={AFTER_RESTART} "
                              rf"journal_records_recovered={len(recovered)} ")
        self.assertEqual(list((first.spool / "inspection-journal").iterdir()), [],
                         "a clean stop left journal files")
        print(f"{queued:.0f} of {REQUESTS} requests queued at the kill, {len(before)} spooled, "
              f"{len(recovered)} recovered, {len(records) - REQUESTS} duplicates",
              file=sys.stderr)

    def test_recovered_record_matches_inspected_record(self):
        first = Probe(FIDELITY_CONFIG)
        answered = 0
        try:
            for round_number in range(2):
                for listener, data in odd_requests(f"odd{round_number}"):
                    if listener == "tls":
                        response = send_tls(first.tls_port, data)
                    elif listener == "bait":
                        response = send_raw(first.bait_port, data)
                    elif listener == "ipv6":
                        response = send_raw(first.http6_port, data, host="::1")
                    else:
                        response = send_raw(first.http_port, data)
                    self.assertTrue(response.startswith(b"HTTP/1."), data[:60])
                    answered += 1
            wait_for(lambda: first.metrics().get("webtrap_records_written_total", 0) >= answered,
                     60, f"{answered} inspected records")
            metrics = first.metrics()
        finally:
            # SIGKILL to the probe this test started, by its PID.
            first.process.kill()
            first.process.wait()
            first.stop()
        self.assertEqual(metrics.get("webtrap_journal_entries_total"), answered)

        second = Probe(FIDELITY_CONFIG, spool=first.spool, start_timeout=RESTART_TIMEOUT)
        try:
            records = second.records()
            metrics = second.metrics()
        finally:
            code = second.stop()
        self.assertEqual(code, 0, second.log_text()[-3000:])
        self.assertEqual(metrics.get("webtrap_journal_records_recovered_total"), answered)
        self.assertEqual(metrics.get("webtrap_journal_records_inspected_total"), answered)
        self.assertEqual(metrics.get("webtrap_journal_entries_rejected_total"), 0)

        # Each event has its live record and its recovered one, both
        # inspected.
        by_event = {}
        for record in records:
            inspection = record["webtrap"]["inspection"]
            self.assertIn(inspection["status"], ("complete", "cached"))
            kind = "recovered" if inspection.get("recovered") else "inspected"
            by_event.setdefault(record["webtrap"]["event_id"], {})[kind] = record
        self.assertEqual(len(by_event), answered)
        for event_id, copies in by_event.items():
            self.assertEqual(sorted(copies), ["inspected", "recovered"], event_id)
            inspected = flatten(copies["inspected"])
            recovered = flatten(copies["recovered"])
            line = copies["inspected"]["webtrap"]["request"].get("line", event_id)
            for pointer in sorted(set(inspected) | set(recovered)):
                if pointer.startswith(INSPECTION_FIELDS):
                    continue
                self.assertEqual(recovered.get(pointer, "<missing>"),
                                 inspected.get(pointer, "<missing>"), f"{line[:60]!r} {pointer}")

    def test_sigkill_under_attack_burst_recovers_rule_matches(self):
        curl = shutil.which("curl")
        if curl is None:
            print("curl not found; install it with scripts/install-deps.sh --with-tests",
                  file=sys.stderr)
            sys.exit(77)
        first = Probe(ATTACK_CONFIG)
        attacks = [f"atk-{i}" for i in range(ATTACKS)]
        try:
            with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
                list(pool.map(lambda m: send_raw(first.http_port, form_post(m, FIELDS)),
                              [f"slow-{i}" for i in range(SLOW_POSTS)]))
            # One curl run sends the burst, ten transfers at a time.
            command = [curl, "--silent", "--show-error", "--parallel", "--parallel-max", "10",
                       "--user-agent", SQLMAP_AGENT, "--write-out", "%{http_code}\n"]
            for i, marker in enumerate(attacks):
                payload = urllib.parse.quote(SQLMAP_PAYLOADS[i % len(SQLMAP_PAYLOADS)], safe="")
                command += ["--output", os.devnull,
                            f"http://127.0.0.1:{first.http_port}/item.php?id={payload}"
                            f"&marker={marker}"]
            burst = subprocess.run(command, capture_output=True, text=True, timeout=60)
            metrics = first.metrics()
        finally:
            # SIGKILL to the probe this test started, by its PID.
            first.process.kill()
            first.process.wait()
            first.stop()
        self.assertEqual(burst.returncode, 0, burst.stderr)
        self.assertEqual(len(burst.stdout.split()), ATTACKS, burst.stdout)
        self.assertGreater(metrics.get("webtrap_inspection_queue_depth", 0), 0,
                           "the requests were inspected before the kill")
        spooled = {record_marker(r) for r in first.records()}
        missing = [m for m in attacks if m not in spooled]
        self.assertTrue(missing, "every attack request was spooled before the kill")

        # A file far past the size the writer makes, named like a journal
        # file: sparse, so it takes no disk space.
        journal = first.spool / "inspection-journal"
        oversized = journal / "000000500000.journal"
        with open(oversized, "wb") as out:
            out.truncate(1 << 30)

        second = Probe(ATTACK_CONFIG, spool=first.spool, start_timeout=RESTART_TIMEOUT)
        try:
            records = second.records()
            metrics = second.metrics()
        finally:
            code = second.stop()
        self.assertEqual(code, 0, second.log_text()[-3000:])
        log = second.log_text()

        recovered = {record_marker(r): r for r in records
                     if r["webtrap"]["inspection"].get("recovered")}
        schema = json.loads((SOURCE_DIR / "docs" / "record-schema.json").read_text())
        validator = jsonschema.Draft202012Validator(schema)
        for marker in missing:
            self.assertIn(marker, recovered, "an attack request was lost at the kill")
            record = recovered[marker]
            inspection = record["webtrap"]["inspection"]
            self.assertEqual([e.message for e in validator.iter_errors(record)], [], marker)
            self.assertIn(inspection["status"], ("complete", "cached"), marker)
            self.assertIn("913100", inspection["rule_ids"], f"{marker}: sqlmap's User-Agent")
            self.assertTrue([i for i in inspection["rule_ids"] if i.startswith("942")],
                            f"{marker}: no SQL injection rule in {inspection['rule_ids']}")
            self.assertGreater(inspection["anomaly_score"], 0, marker)
            self.assertTrue(record["transaction"]["messages"], marker)
        self.assertEqual(metrics.get("webtrap_journal_records_inspected_total"), len(recovered))
        self.assertEqual(
            metrics.get('webtrap_journal_records_uninspected_total{reason="failed"}'), 0)

        self.assertEqual(metrics.get("webtrap_journal_files_oversized_total"), 1)
        self.assertIn(f"journal: skipping {oversized}: its size {1 << 30} bytes", log)
        self.assertRegex(log, r"journal: recovery done .* oversized_files=1 ")
        self.assertTrue(oversized.exists(), "recovery removed the oversized file")
        print(f"{len(missing)} of {ATTACKS} attack requests recovered and inspected",
              file=sys.stderr)

    def test_invalid_journal_value_is_rejected(self):
        with tempfile.TemporaryDirectory(prefix="webtrap-test-") as folder:
            config = f"{folder}/probe.yaml"
            with open(config, "w") as out:
                out.write("sensor:\n  id: journal-config\npipeline:\n  journal: maybe\n")
            result = subprocess.run(
                [BIN, "probe", "--config", config, "--listen", "127.0.0.1:0",
                 "--spool", f"{folder}/spool", "--state-dir", f"{folder}/state",
                 "--admin-listen", "off"],
                capture_output=True, text=True, timeout=60)
        self.assertNotEqual(result.returncode, 0)
        self.assertIn('pipeline.journal: invalid boolean "maybe"', result.stdout + result.stderr)


if __name__ == "__main__":
    unittest.main()
