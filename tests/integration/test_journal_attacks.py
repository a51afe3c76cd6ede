#!/usr/bin/env python3
"""The inspection journal under a kill right after a response, a shared spool and a bad folder.

- A probe killed with SIGKILL as soon as the client has read a response
  still records that request at its next start, also when the full queue
  shed it.
- A second probe started on the spool of a running one starts without the
  journal (error log, `webtrap_journal_enabled` 0). It neither recovers nor
  deletes the first probe's journal, so a SIGKILL of the first probe then
  loses none of the first probe's queued requests.
- A second probe with a shipper and another run_as user, refused on the
  spool of a running probe, leaves the spool to the running probe's user,
  which goes on creating segments.
- A file in place of the journal folder does not stop the start: the probe
  logs the path, runs without the journal and records its requests.
- On a full disk (a small tmpfs, so root only) the probe keeps running and
  counts each request that it could not journal once.
"""

import atexit
import concurrent.futures
import os
import pathlib
import pwd
import shutil
import socket
import subprocess
import tempfile
import unittest

from probe_harness import Probe, form_post, record_marker, send_raw

CONFIG = """
sensor:
  id: journal-attacks
pipeline:
  workers: 1
  queue_limit: 1000
spool:
  fsync_interval: 100ms
"""
# Every request is shed: none fits in the queue.
SHED_CONFIG = CONFIG.replace("queue_limit: 1000", "queue_limit: 0")
FIELDS = 900




def kill(probe):
    """Sends SIGKILL to the probe this test started, by its PID."""
    probe.process.kill()
    probe.process.wait()
    probe.stop()


def new_spool_folder():
    folder = pathlib.Path(tempfile.mkdtemp(prefix="webtrap-test-"))
    # The probe drops root for "nobody", which must reach the spool.
    os.chmod(folder, 0o755)
    if not os.environ.get("WEBTRAP_KEEP_TEST_DIRS"):
        atexit.register(shutil.rmtree, folder, True)
    return folder / "spool"


class JournalAttackTest(unittest.TestCase):
    def test_sigkill_after_response_keeps_request(self):
        self.check_sigkill_after_response(CONFIG, "queued")

    def test_sigkill_after_shed_response_keeps_request(self):
        self.check_sigkill_after_response(SHED_CONFIG, "shed")

    def check_sigkill_after_response(self, config, case):
        for attempt in range(3):
            marker = f"answered-{case}-{attempt}"
            first = Probe(config)
            request = (f"GET /index.php?marker={marker} HTTP/1.1\r\n"
                       f"Host: www.example.com\r\n\r\n").encode()
            # A keep-alive request: the probe does not close the connection,
            # so the kill follows the response by the time of one recv().
            with socket.create_connection(("127.0.0.1", first.http_port), timeout=10) as sock:
                sock.sendall(request)
                response = sock.recv(65536)
                kill(first)
            self.assertTrue(response.startswith(b"HTTP/1.1 "), response[:60])

            second = Probe(config, spool=first.spool)
            try:
                markers = [record_marker(r) for r in second.records()]
            finally:
                second.stop()
            self.assertIn(marker, markers,
                          f"attempt {attempt}: an answered request has no record after SIGKILL")

    def test_second_probe_keeps_first_journal(self):
        markers = [f"first-{i}" for i in range(24)]
        first = Probe(CONFIG)
        second = None
        try:
            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                responses = list(pool.map(lambda m: send_raw(first.http_port, form_post(m, FIELDS)),
                                          markers))
            for marker, response in zip(markers, responses):
                self.assertTrue(response.startswith(b"HTTP/1.1 "), marker)
            self.assertGreater(first.metrics().get("webtrap_journal_pending", 0), 0,
                               "the requests were inspected before the second probe started")
            journal = first.spool / "inspection-journal"

            # A second probe on the same spool stops at its start, before it
            # opens the spool or the journal.
            with self.assertRaises(RuntimeError) as started:
                second = Probe(CONFIG, spool=first.spool)
            log = str(started.exception)
            self.assertIn("is locked by another process", log)
            self.assertIn(f"spool folder '{first.spool}'", log)
            self.assertIn("give each probe its own spool.dir", log)
            self.assertEqual(first.metrics().get("webtrap_journal_enabled"), 1)
            self.assertTrue(list(journal.glob("*.journal")),
                            "the second probe deleted the running probe's journal")
        finally:
            kill(first)
            if second is not None:
                second.stop()

        third = Probe(CONFIG, spool=first.spool)
        try:
            recorded = {record_marker(r) for r in third.records()}
        finally:
            third.stop()
        self.assertEqual(set(markers) - recorded, set(), "answered requests lost")

    @unittest.skipUnless(os.geteuid() == 0, "run_as needs root")
    def test_refused_probe_leaves_spool_owner(self):
        # The first probe runs as "daemon" with small segments. The second
        # would run as "nobody" and has a shipper, which hands the spool to
        # that user when it starts.
        first = Probe(CONFIG.replace("spool:\n", "spool:\n  segment_bytes: 4KiB\n") +
                      "run_as: daemon\n")
        try:
            with self.assertRaises(RuntimeError) as started:
                Probe(CONFIG + "shipper:\n  url: http://127.0.0.1:9/\n"
                      "  token: 0123456789abcdef0123456789abcdef\n", spool=first.spool)
            self.assertIn("is locked by another process", str(started.exception))
            self.assertEqual(pwd.getpwuid(first.spool.stat().st_uid).pw_name, "daemon")
            self.assertFalse((first.spool / "shipper.lock").exists(),
                             "the refused probe's shipper ran on the spool")
            # Requests past several segments: each new segment is created by "daemon".
            markers = [f"after-refusal-{i}" for i in range(12)]
            for marker in markers:
                response = send_raw(first.http_port, form_post(marker, 40))
                self.assertTrue(response.startswith(b"HTTP/1.1 "), marker)
            first.wait_records(len(markers))
            recorded = {record_marker(r) for r in first.records()}
            self.assertEqual(set(markers) - recorded, set(), "requests lost after the refusal")
            self.assertGreater(len(list(first.spool.glob("segment-*.ndjson"))), 1)
        finally:
            first.stop()

    def test_journal_folder_file_does_not_stop_start(self):
        spool = new_spool_folder()
        spool.mkdir()
        in_the_way = spool / "inspection-journal"
        in_the_way.write_text("not a folder\n")
        probe = Probe(CONFIG, spool=spool)
        try:
            response = send_raw(probe.http_port, form_post("no-journal", FIELDS))
            self.assertTrue(response.startswith(b"HTTP/1.1 "), response[:60])
            records = probe.wait_records(1)
            metrics = probe.metrics()
        finally:
            code = probe.stop()
        self.assertEqual(code, 0, probe.log_text()[-3000:])
        self.assertEqual([record_marker(r) for r in records], ["no-journal"])
        self.assertEqual(metrics.get("webtrap_journal_enabled"), 0)
        log = probe.log_text()
        self.assertIn(f"inspection journal folder '{in_the_way}'", log)
        self.assertIn("runs without the inspection journal", log)
        self.assertEqual(in_the_way.read_text(), "not a folder\n")

    def test_full_disk_counts_each_unprotected_request(self):
        # A 6 MiB tmpfs, nearly filled, so that journal writes fail with ENOSPC.
        mount_point = pathlib.Path(tempfile.mkdtemp(prefix="webtrap-test-tmpfs-"))
        os.chmod(mount_point, 0o755)
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs",
                                  str(mount_point)], capture_output=True)
        if mounted.returncode != 0:
            mount_point.rmdir()
            self.skipTest(f"mounting a tmpfs needs root: {mounted.stderr.decode().strip()}")
        try:
            os.chmod(mount_point, 0o755)
            spool = mount_point / "spool"
            # No commit runs during the test, so no done-id write can fail
            # and every journal write error belongs to one request.
            probe = Probe(CONFIG.replace("fsync_interval: 100ms", "fsync_interval: 1h"),
                          spool=spool)
            try:
                (mount_point / "filler").write_bytes(b"x" * (5 * 1024 * 1024 + 700 * 1024))
                markers = [f"full-{i}" for i in range(40)]
                with concurrent.futures.ThreadPoolExecutor(8) as pool:
                    responses = list(pool.map(
                        lambda m: send_raw(probe.http_port, form_post(m, FIELDS)), markers))
                for marker, response in zip(markers, responses):
                    self.assertTrue(response.startswith(b"HTTP/1.1 "), marker)
                metrics = probe.metrics()
                self.assertIsNone(probe.process.poll(), "the probe exited on a full disk")
            finally:
                probe.stop()
            entries = metrics.get("webtrap_journal_entries_total", 0)
            errors = metrics.get("webtrap_journal_write_errors_total", 0)
            self.assertGreater(errors, 0, "no journal write failed; the filler left too much room")
            # Each request is either journaled or counted once as unprotected.
            self.assertEqual(entries + errors, len(markers))
            log = probe.log_text()
            self.assertIn(f"write failed in {spool / 'inspection-journal'}", log)
        finally:
            subprocess.run(["umount", str(mount_point)], check=True)
            mount_point.rmdir()


if __name__ == "__main__":
    unittest.main()
