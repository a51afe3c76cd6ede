#!/usr/bin/env python3
"""The probe's shipper against a collector stand-in on loopback.

A real probe with a `shipper:` section records requests. Its forked shipper
must deliver every record at least once through outages, error responses
and oversized batches. It must also survive restarts of the probe (SIGTERM
and SIGKILL) and of its worker process. The stand-in (tests/tools/collector_stand_in.py) only
implements POST /v1/records, so this tests the shipper, not the collector.
"""

import concurrent.futures
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request

from probe_harness import BIN, SOURCE_DIR, metrics_at, parse_metrics, send_raw, wait_for

sys.path.insert(0, str(SOURCE_DIR / "tests" / "tools"))
from collector_stand_in import CollectorStandIn  # noqa: E402

TOKEN = "test-token-0123456789"

CONFIG = """
sensor:
  id: shipper-test
spool:
  segment_bytes: 32KiB
shipper:
  url: {url}
  token: {token}
  batch_max_records: 20
  interval: 100ms
  retry_initial: 100ms
  retry_max: 1s
  timeout: 10s
"""


def children_of(pid):
    """Return the pids whose parent is `pid`, read from /proc."""
    found = []
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name in brackets may contain spaces; the fields after it do not.
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def alive(pid):
    try:
        state = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return state[state.rindex(")") + 2] != "Z"


def heavy_post(index):
    """A POST of 900 form fields, which takes libmodsecurity some milliseconds to inspect."""
    body = "&".join(f"f{j}={index}-{j}" for j in range(900)).encode()
    return (f"POST /blog/post.php?marker=heavy-{index} HTTP/1.1\r\nHost: www.example.com\r\n"
            f"Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body


def unshipped_bytes(spool):
    """The bytes of the spool segments after the position in shipped.offset."""
    offset_file = spool / "shipped.offset"
    shipped_name, shipped_offset = "", 0
    if offset_file.exists():
        shipped_name, offset_text = offset_file.read_text().split()
        shipped_offset = int(offset_text)
    total = 0
    for segment in sorted(spool.glob("segment-*.ndjson")):
        size = segment.stat().st_size
        if segment.name > shipped_name:
            total += size
        elif segment.name == shipped_name:
            total += max(0, size - shipped_offset)
    return total


class ProbeProcess:
    """A probe on one plain loopback port that keeps its spool across restarts."""

    def __init__(self, workdir, config_text):
        self.dir = workdir
        self.spool = workdir / "spool"
        self.config = workdir / "probe.yaml"
        self.config.write_text(config_text)
        self.process = None
        self.log = None

    def start(self, new_group=False):
        ports_file = self.dir / "ports.json"
        ports_file.unlink(missing_ok=True)
        self.log = open(self.dir / "probe.log", "ab")
        args = [BIN, "probe", "--config", str(self.config), "--listen", "127.0.0.1:0",
                "--spool", str(self.spool), "--state-dir", str(self.dir / "state"),
                "--admin-listen", "127.0.0.1:0", "--ports-file", str(ports_file)]
        self.process = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT,
                                        start_new_session=new_group)
        wait_for(lambda: ports_file.exists() or self.process.poll() is not None, 60,
                 "the probe's ports file")
        if self.process.poll() is not None:
            raise RuntimeError("probe exited at start:\n" + self.log_text())
        ports = json.loads(ports_file.read_text())
        self.http_port = ports["http-0"]
        self.admin_port = ports["admin"]

    def stop(self, sig=signal.SIGTERM):
        if self.process and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=30)
        if self.log:
            self.log.close()
        return self.process.returncode

    def log_text(self):
        if self.log and not self.log.closed:
            self.log.flush()
        return (self.dir / "probe.log").read_text(errors="replace")

    def request(self, path):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=10).read()
        except urllib.error.HTTPError:
            pass  # the persona's 404 is fine: every request is recorded

    def metrics(self):
        return metrics_at(self.admin_port)

    def event_ids(self):
        """Event ids of every whole record in the spool."""
        ids = []
        for segment in sorted(self.spool.glob("segment-*.ndjson")):
            data = segment.read_bytes()
            for line in data[:data.rfind(b"\n") + 1].splitlines():
                ids.append(json.loads(line)["webtrap"]["event_id"])
        return ids


class ShipperTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.workdir = pathlib.Path(tempfile.mkdtemp(prefix="webtrap-shipper-"))
        os.chmod(cls.workdir, 0o755)  # the shipper runs as nobody when the test runs as root
        cls.stand_in = CollectorStandIn(TOKEN).start()
        cls.probe = ProbeProcess(cls.workdir, CONFIG.format(url=cls.stand_in.url, token=TOKEN))
        cls.probe.start()
        cls.sent = 0

    @classmethod
    def tearDownClass(cls):
        cls.probe.stop()
        cls.stand_in.stop()
        if not os.environ.get("WEBTRAP_KEEP_TEST_DIRS"):
            shutil.rmtree(cls.workdir, ignore_errors=True)

    def send(self, count):
        for _ in range(count):
            type(self).sent += 1
            self.probe.request(f"/shipper-test/{self.sent}?q={'x' * 200}")

    def wait_delivered(self, timeout=30):
        """Wait until the stand-in has received the event id of every record in the spool."""
        def delivered():
            ids = self.probe.event_ids()
            counts = self.stand_in.snapshot()["event_counts"]
            missing = [i for i in ids if i not in counts]
            return ids if len(ids) >= self.sent and not missing else None

        try:
            return wait_for(delivered, timeout, "every spooled record at the stand-in")
        except TimeoutError:
            raise AssertionError("records missing at the stand-in; probe log:\n" +
                                 self.probe.log_text()[-4000:])

    def test_1_delivers_every_record(self):
        self.send(60)
        ids = self.wait_delivered()
        self.assertEqual(len(ids), 60)
        self.assertEqual(len(set(ids)), 60)
        self.assertIn("gzip", self.stand_in.content_encodings)

        # The offset reaches the end of the newest segment.
        segments = sorted(self.probe.spool.glob("segment-*.ndjson"))
        self.assertGreater(len(segments), 1, "32KiB segments should have rotated")
        newest = segments[-1]
        expected = f"{newest.name} {newest.stat().st_size}\n"
        wait_for(lambda: (self.probe.spool / "shipped.offset").read_text() == expected, 10,
                 "the offset at the end of the spool")

        def metrics_caught_up():
            values = self.probe.metrics()
            return values if values.get("webtrap_shipper_records_sent_total", 0) >= 60 else None

        values = wait_for(metrics_caught_up, 10, "the shipper's counters in /metrics")
        self.assertGreaterEqual(values["webtrap_shipper_records_read_total"], 60)
        self.assertGreaterEqual(values["webtrap_shipper_batches_sent_total"], 3)
        self.assertGreater(values["webtrap_shipper_bytes_sent_total"], 0)
        self.assertGreater(values["webtrap_shipper_last_success_timestamp_seconds"],
                           time.time() - 120)
        self.assertEqual(values["webtrap_shipper_dropped_total"], 0)
        self.assertEqual(values['webtrap_shipper_errors_total{kind="spool_truncated"}'], 0)

    def test_2_collector_outage_loses_nothing(self):
        before = self.probe.metrics()["webtrap_shipper_retries_total"]
        self.stand_in.stop()
        self.send(30)
        wait_for(lambda: self.probe.metrics()["webtrap_shipper_retries_total"] >= before + 2, 20,
                 "retries counted during the outage")
        self.assertGreater(self.probe.metrics()['webtrap_shipper_errors_total{kind="connection"}'],
                           0)
        backlog = self.probe.metrics()["webtrap_shipper_backlog_bytes"]
        self.assertGreater(backlog, 0)
        self.stand_in.start()  # the same port again
        self.wait_delivered()
        wait_for(lambda: self.probe.metrics()["webtrap_shipper_backlog_bytes"] == 0, 10,
                 "an empty backlog")
        self.assertIn("connection error", self.probe.log_text())

    def test_3_honours_503_and_429(self):
        for status in ("503", "429"):
            with self.subTest(status=status):
                before = self.stand_in.snapshot()["statuses"].get(int(status), 0)
                self.stand_in.set_mode(status, retry_after=1)
                self.send(5)
                wait_for(lambda: self.stand_in.snapshot()["statuses"].get(int(status), 0) >
                         before, 10, f"a {status} response")
                started = time.monotonic()
                requests = self.stand_in.snapshot()["requests"]
                time.sleep(0.5)
                # Retry-After: 1 delays the next attempt despite retry_initial 100ms.
                self.assertLessEqual(self.stand_in.snapshot()["requests"], requests + 1)
                self.stand_in.set_mode("ok")
                self.wait_delivered()
                self.assertGreater(time.monotonic() - started, 0.4)
                kind = "server_error" if status == "503" else "throttled"
                wait_for(lambda: self.probe.metrics()
                         [f'webtrap_shipper_errors_total{{kind="{kind}"}}'] > 0, 5,
                         f"errors of kind {kind} in /metrics")

    def test_4_wrong_token_is_logged_and_kept(self):
        self.stand_in.set_mode("401")
        self.send(5)
        wait_for(lambda: "rejects the credentials (HTTP 401)" in self.probe.log_text(), 10,
                 "the log line about the token")
        self.assertNotIn(TOKEN, self.probe.log_text())
        self.stand_in.set_mode("ok")
        self.wait_delivered(timeout=20)

    def test_5_halves_batches_on_413(self):
        ids = self.probe.event_ids()
        largest = max(len(line) for segment in self.probe.spool.glob("segment-*.ndjson")
                      for line in segment.read_bytes().splitlines())
        self.stand_in.max_body_bytes = largest * 3 + 10
        try:
            before = self.stand_in.snapshot()["statuses"].get(413, 0)
            # The 20 records wait in the spool behind 503s, so that a batch
            # of more than three forms however slowly the probe writes them.
            self.stand_in.set_mode("503")
            self.send(20)
            wait_for(lambda: len(self.probe.event_ids()) >= self.sent, 30,
                     "the 20 records in the spool")
            self.stand_in.set_mode("ok")
            self.wait_delivered()
            self.assertGreater(self.stand_in.snapshot()["statuses"].get(413, 0), before)
        finally:
            self.stand_in.max_body_bytes = None
        self.assertIn("as too large (413)", self.probe.log_text())
        self.assertGreater(len(self.probe.event_ids()), len(ids))

    def test_6_worker_crash_is_restarted(self):
        supervisors = children_of(self.probe.process.pid)
        self.assertEqual(len(supervisors), 1, "one shipper supervisor per probe")
        workers = children_of(supervisors[0])
        self.assertEqual(len(workers), 1)
        for pid in (supervisors[0], workers[0]):
            status = pathlib.Path(f"/proc/{pid}/status").read_text()
            self.assertIn("Seccomp:\t2", status, "the shipper must run under a seccomp filter")
            self.assertIn("NoNewPrivs:\t1", status)
            if os.geteuid() == 0:
                uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
                self.assertNotIn("\t0", uid_line, "the shipper must drop root")
        os.kill(workers[0], signal.SIGKILL)
        wait_for(lambda: "restarting in" in self.probe.log_text(), 10, "the restart log line")
        self.send(5)
        self.wait_delivered(timeout=20)
        new_workers = wait_for(lambda: children_of(supervisors[0]), 10, "a new worker")
        self.assertNotEqual(new_workers, workers)

    def test_7_probe_sigterm_restart_loses_nothing(self):
        self.stand_in.stop()
        self.send(20)
        supervisor = children_of(self.probe.process.pid)[0]
        self.assertEqual(self.probe.stop(signal.SIGTERM), 0)
        self.assertFalse(alive(supervisor), "the shipper must stop with the probe")
        self.stand_in.start()
        self.probe.start()
        self.wait_delivered()

    def test_8_probe_sigkill_restart_loses_nothing(self):
        # A slow collector keeps batches in flight when the probe is killed.
        # Longer than the probe's 1 s grace and drain before it stops the
        # shipper, so the stop finds the first batch still in flight.
        self.stand_in.set_mode("slow", slow_seconds=5)
        self.send(20)
        # The records must be in the spool before the kill, so that the
        # restart tests the shipper's offset and not the recovery of the
        # inspection journal.
        wait_for(lambda: len(self.probe.event_ids()) >= self.sent, 30,
                 "the 20 records in the spool")
        time.sleep(0.5)
        supervisor = children_of(self.probe.process.pid)[0]
        workers = children_of(supervisor)
        self.probe.stop(signal.SIGKILL)
        wait_for(lambda: not alive(supervisor) and not any(alive(w) for w in workers), 10,
                 "the shipper processes to end after the probe's SIGKILL")
        self.stand_in.set_mode("ok")
        self.probe.start()
        self.wait_delivered()
        counts = self.stand_in.snapshot()["event_counts"]
        self.assertTrue(all(counts[i] >= 1 for i in self.probe.event_ids()))

    def start_queued_probe(self, name, shipper_interval="100ms"):
        """Start a probe in its own process group, as a shell starts a command,
        send it 40 heavy POSTs and return it with most of them still queued
        for inspection."""
        workdir = self.workdir / name
        workdir.mkdir()
        os.chmod(workdir, 0o755)
        config = CONFIG.format(url=self.stand_in.url, token=TOKEN).replace(
            "  interval: 100ms\n", f"  interval: {shipper_interval}\n")
        probe = ProbeProcess(workdir, config + "pipeline:\n  workers: 1\n  queue_limit: 1000\n")
        probe.start(new_group=True)
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            responses = list(pool.map(lambda i: send_raw(probe.http_port, heavy_post(i)),
                                      range(40)))
        self.assertTrue(all(r.startswith(b"HTTP/1.1 ") for r in responses))
        self.assertGreater(probe.metrics().get("webtrap_inspection_queue_depth", 0), 0,
                           "every request was inspected before the stop")
        return probe

    def stop_line_unshipped(self, probe):
        log = probe.log_text()
        self.assertEqual(probe.process.returncode, 0, log[-3000:])
        stopped = re.search(r"probe: stopped .*\bunshipped_bytes=(\d+)", log)
        self.assertIsNotNone(stopped, log[-3000:])
        self.assertEqual(int(stopped.group(1)), unshipped_bytes(probe.spool), log[-3000:])
        return int(stopped.group(1)), log

    def test_ctrl_c_final_pass(self):
        # A terminal's Ctrl-C sends SIGINT to the foreground process group.
        # The shipper has a group of its own, so it keeps running while the
        # probe spools its inspection queue, then sends those records. Its
        # poll interval outlasts the test, so no regular pass ships them
        # first, however long the drain takes: the final pass sends them all.
        self.stand_in.set_mode("ok")
        probe = self.start_queued_probe("ctrl-c", shipper_interval="600s")
        try:
            os.killpg(probe.process.pid, signal.SIGINT)
            probe.process.wait(timeout=60)
        finally:
            probe.stop()
        unshipped, log = self.stop_line_unshipped(probe)
        self.assertEqual(unshipped, 0, log[-3000:])
        self.assertRegex(log, r"shipper: final pass after the probe's stop records_sent=40 "
                              r"outcome=spool_empty")
        self.assertRegex(log, r"shipper: stopped .*\bbacklog_bytes=0\b")
        counts = self.stand_in.snapshot()["event_counts"]
        ids = probe.event_ids()
        self.assertEqual(len(ids), 40)
        self.assertEqual([i for i in ids if i not in counts], [])

    def test_final_pass_503(self):
        # No retries in the final pass: a failing collector ends it at the
        # first attempt, and the records wait in the spool for the next start.
        probe = self.start_queued_probe("final-pass-503")
        self.stand_in.set_mode("503")
        try:
            started = time.monotonic()
            os.killpg(probe.process.pid, signal.SIGINT)
            probe.process.wait(timeout=60)
            elapsed = time.monotonic() - started
        finally:
            probe.stop()
            self.stand_in.set_mode("ok")
        unshipped, log = self.stop_line_unshipped(probe)
        self.assertGreater(unshipped, 0, log[-3000:])
        self.assertRegex(log, r"shipper: final pass after the probe's stop records_sent=0 "
                              r"outcome=http_503")
        # The drain of the queue takes most of it; a retry loop would run
        # into the supervisor's 5 s grace and the kill after it.
        self.assertNotIn("did not stop within", log)
        self.assertLess(elapsed, 30)

    def test_final_pass_counts_cut_send_as_retry(self):
        # The stop cuts off the batch in flight to a slow collector, and the
        # final pass sends it again: the stop line counts that second send.
        workdir = self.workdir / "cut-send"
        workdir.mkdir()
        os.chmod(workdir, 0o755)
        probe = ProbeProcess(workdir, CONFIG.format(url=self.stand_in.url, token=TOKEN))

        # Longer than the probe's 1 s grace and drain before it stops the
        # shipper, so the stop finds the first batch still in flight.
        self.stand_in.set_mode("slow", slow_seconds=5)
        try:
            probe.start(new_group=True)
            before = self.stand_in.snapshot()["requests"]
            for index in range(5):
                probe.request(f"/cut-send/{index}")
            wait_for(lambda: self.stand_in.snapshot()["requests"] > before, 30,
                     "a batch in flight to the slow stand-in")
            os.killpg(probe.process.pid, signal.SIGINT)
            # Only the batch in flight waits; the final pass gets a quick 200.
            self.stand_in.set_mode("ok")
            probe.process.wait(timeout=60)
        finally:
            probe.stop()
            self.stand_in.set_mode("ok")

        log = probe.log_text()
        self.assertRegex(log, r"shipper: final pass after the probe's stop records_sent=5 "
                              r"outcome=spool_empty", log[-3000:])
        stopped = re.search(r"shipper: stopped .*\bbatches_sent=(\d+) retries=(\d+)", log)
        self.assertIsNotNone(stopped, log[-3000:])
        self.assertEqual(int(stopped.group(1)), 1, log[-3000:])
        self.assertEqual(int(stopped.group(2)), 1, log[-3000:])

    def test_signal_to_every_process(self):
        # A signal sent to each process (kill of every pid) stops the shipper
        # before the probe spools its queue: no final pass runs, and the
        # probe's stop line gives the bytes that the next start ships.
        probe = self.start_queued_probe("every-pid")
        try:
            supervisor = children_of(probe.process.pid)[0]
            for pid in [probe.process.pid, supervisor, *children_of(supervisor)]:
                os.kill(pid, signal.SIGINT)
            probe.process.wait(timeout=60)
        finally:
            probe.stop()
        unshipped, log = self.stop_line_unshipped(probe)
        self.assertGreater(unshipped, 0, "the shipper sent the records spooled after its stop")

    def test_9_second_shipper_is_rejected(self):
        result = subprocess.run([BIN, "ship", "--config", str(self.probe.config), "--spool",
                                 str(self.probe.spool), "--metrics-listen", "127.0.0.1:0"],
                                capture_output=True, text=True, timeout=30)
        self.assertEqual(result.returncode, 2, result.stderr)
        self.assertIn("another shipper is already running", result.stderr)

    def test_9_plain_http_to_remote_host_is_rejected(self):
        bad = self.workdir / "bad.yaml"
        bad.write_text(CONFIG.format(url="http://192.0.2.10:7380", token=TOKEN))
        for command in (["probe", "--listen", "127.0.0.1:0"], ["ship"]):
            with self.subTest(command=command[0]):
                result = subprocess.run([BIN, *command, "--config", str(bad), "--spool",
                                         str(self.workdir / "bad-spool")],
                                        capture_output=True, text=True, timeout=30)
                self.assertEqual(result.returncode, 2, result.stderr)
                self.assertIn("shipper.url", result.stderr)
                self.assertIn("http://192.0.2.10:7380", result.stderr)
                self.assertIn("https://", result.stderr)


class ShipperDiskCapTest(unittest.TestCase):
    """Segments that the spool deletes at its disk cap during an outage are counted, not hung on."""

    def test_deleted_segments_are_counted(self):
        workdir = pathlib.Path(tempfile.mkdtemp(prefix="webtrap-shipper-cap-"))
        os.chmod(workdir, 0o755)
        if not os.environ.get("WEBTRAP_KEEP_TEST_DIRS"):
            self.addCleanup(shutil.rmtree, workdir, True)
        stand_in = CollectorStandIn(TOKEN).start()
        self.addCleanup(stand_in.stop)
        config = CONFIG.format(url=stand_in.url, token=TOKEN).replace(
            "  segment_bytes: 32KiB\n",
            "  segment_bytes: 8KiB\n  max_bytes: 32KiB\n  on_full: delete_oldest\n")
        probe = ProbeProcess(workdir, config)
        probe.start()
        self.addCleanup(probe.stop)

        sent = 0
        for i in range(5):
            sent += 1
            probe.request(f"/cap-test/{i}")
        wait_for(lambda: len(stand_in.snapshot()["event_counts"]) == 5, 20, "the first records")

        stand_in.stop()
        # The shipper must hold a batch it cannot deliver before the cap
        # deletes that batch's segment; otherwise it never read the lost
        # records and, correctly, counts none of them.
        for i in range(5, 10):
            sent += 1
            probe.request(f"/cap-test/{i}?q={'y' * 300}")
        wait_for(lambda: "connection error" in probe.log_text(), 10, "a failed attempt")
        for i in range(10, 80):
            sent += 1
            probe.request(f"/cap-test/{i}?q={'y' * 300}")
        # Requests are inspected and recorded after the response, so wait for
        # the spool to have seen every record.
        wait_for(lambda: probe.metrics()["webtrap_spool_records_written_total"] >= sent, 20,
                 "every record written to the spool")
        stand_in.start()

        def settled():
            ids = probe.event_ids()
            counts = stand_in.snapshot()["event_counts"]
            values = probe.metrics()
            # The probe copies the shipper's counters once a second, so the
            # drop count can trail the backlog.
            if (ids and all(i in counts for i in ids) and values["webtrap_shipper_backlog_bytes"] == 0
                    and values["webtrap_shipper_dropped_total"] > 0):
                return values
            return None

        values = wait_for(settled, 30,
                          "every record left in the spool at the stand-in, and a drop count")
        delivered = len(stand_in.snapshot()["event_counts"])
        spool_dropped = values['webtrap_spool_records_dropped_total{reason="disk_full"}']
        shipper_dropped = values["webtrap_shipper_dropped_total"]
        self.assertLess(delivered, sent, "the cap should have deleted unshipped records")
        # The spool counts every record it deleted before the offset passed it,
        # some of which a batch in flight still delivered. The shipper counts
        # only records that it read and never delivered, so it never overcounts.
        self.assertGreaterEqual(delivered + spool_dropped, sent)
        self.assertGreater(shipper_dropped, 0)
        self.assertLessEqual(shipper_dropped, sent - delivered)
        self.assertIn("the spool deleted unshipped segments", probe.log_text())


def make_certificates(folder):
    """Create a CA, a server certificate for 127.0.0.1 and a client certificate with openssl."""
    def run(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=folder)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
        "-keyout", "ca.key", "-out", "ca.pem")
    for name, extension in (("server", "subjectAltName=IP:127.0.0.1"),
                            ("client", "extendedKeyUsage=clientAuth")):
        run("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
            "-keyout", f"{name}.key", "-out", f"{name}.csr")
        (folder / f"{name}.ext").write_text(extension + "\n")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.pem")


class ShipperTlsTest(unittest.TestCase):
    """`webtrap ship` over HTTPS, with a private CA and with client certificates."""

    @classmethod
    def setUpClass(cls):
        if shutil.which("openssl") is None:
            raise unittest.SkipTest("openssl is not installed")
        cls.workdir = pathlib.Path(tempfile.mkdtemp(prefix="webtrap-shipper-tls-"))
        make_certificates(cls.workdir)

    @classmethod
    def tearDownClass(cls):
        if not os.environ.get("WEBTRAP_KEEP_TEST_DIRS"):
            shutil.rmtree(cls.workdir, ignore_errors=True)

    def stand_in(self, require_client_certificate):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.workdir / "server.pem", self.workdir / "server.key")
        if require_client_certificate:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(self.workdir / "ca.pem")
        stand_in = CollectorStandIn(TOKEN, tls_context=context).start()
        self.addCleanup(stand_in.stop)
        return stand_in

    def spool(self, name, count):
        """Write `count` records into a new spool folder and return it."""
        folder = self.workdir / name
        folder.mkdir()
        with open(folder / "segment-000000000001.ndjson", "w") as segment:
            for i in range(count):
                segment.write(json.dumps({"webtrap": {"event_id": f"{name}-{i}"}}) + "\n")
        return folder

    def config(self, url, **keys):
        lines = [f"shipper:\n  url: {url}\n  token: {TOKEN}\n  retry_max: 1s\n"]
        lines += [f"  {key}: {value}\n" for key, value in keys.items()]
        path = self.workdir / f"ship-{len(list(self.workdir.glob('ship-*')))}.yaml"
        path.write_text("".join(lines))
        return path

    def ship_until_idle(self, config, spool):
        return subprocess.run([BIN, "ship", "--config", str(config), "--spool", str(spool),
                               "--until-idle", "--metrics-listen", "off"],
                              capture_output=True, text=True, timeout=60)

    def ship_expecting_failure(self, config, spool, message):
        """Run `webtrap ship` until its log shows `message`, then stop it with SIGTERM."""
        log_path = spool / "ship.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen([BIN, "ship", "--config", str(config), "--spool",
                                        str(spool), "--metrics-listen", "127.0.0.1:0"],
                                       stdout=log, stderr=subprocess.STDOUT)
            try:
                wait_for(lambda: message in log_path.read_text(errors="replace"), 20,
                         f"'{message}' in the shipper's log")
            finally:
                process.send_signal(signal.SIGTERM)
                code = process.wait(timeout=30)
        self.assertEqual(code, 0, log_path.read_text(errors="replace"))
        return log_path.read_text(errors="replace")

    def test_https_with_ca_file(self):
        stand_in = self.stand_in(require_client_certificate=False)
        spool = self.spool("https", 50)
        result = self.ship_until_idle(self.config(stand_in.url, ca_file=self.workdir / "ca.pem"),
                                      spool)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(len(stand_in.snapshot()["event_counts"]), 50)
        self.assertEqual((spool / "shipped.offset").read_text(),
                         f"segment-000000000001.ndjson {(spool / 'segment-000000000001.ndjson').stat().st_size}\n")

    def test_https_rejects_unknown_ca(self):
        stand_in = self.stand_in(require_client_certificate=False)
        spool = self.spool("unknown-ca", 5)
        log = self.ship_expecting_failure(self.config(stand_in.url), spool, "connection error")
        self.assertIn("certificate", log)
        self.assertEqual(stand_in.snapshot()["event_counts"], {})
        self.assertFalse((spool / "shipped.offset").exists())

    def test_mutual_tls(self):
        stand_in = self.stand_in(require_client_certificate=True)
        without = self.spool("no-client-cert", 5)
        self.ship_expecting_failure(self.config(stand_in.url, ca_file=self.workdir / "ca.pem"),
                                    without, "connection error")
        self.assertEqual(stand_in.snapshot()["event_counts"], {})

        with_certificate = self.spool("client-cert", 20)
        config = self.config(stand_in.url, ca_file=self.workdir / "ca.pem",
                             client_certificate=self.workdir / "client.pem",
                             client_key=self.workdir / "client.key")
        result = self.ship_until_idle(config, with_certificate)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(len(stand_in.snapshot()["event_counts"]), 20)


class ShipMetricsTest(unittest.TestCase):
    """`webtrap ship` serves its counters on its own metrics listener."""

    def test_counts_reads_errors_and_sends(self):
        workdir = pathlib.Path(tempfile.mkdtemp(prefix="webtrap-ship-metrics-"))
        if not os.environ.get("WEBTRAP_KEEP_TEST_DIRS"):
            self.addCleanup(shutil.rmtree, workdir, True)
        spool = workdir / "spool"
        spool.mkdir()
        with open(spool / "segment-000000000001.ndjson", "w") as segment:
            for i in range(30):
                segment.write(json.dumps({"webtrap": {"event_id": f"metrics-{i}"}}) + "\n")
        stand_in = CollectorStandIn(TOKEN).start()
        self.addCleanup(stand_in.stop)
        stand_in.stop()  # the port stays reserved for start()
        config = workdir / "probe.yaml"
        config.write_text(f"shipper:\n  url: {stand_in.url}\n  token: {TOKEN}\n"
                          "  batch_max_records: 10\n  interval: 100ms\n"
                          "  retry_initial: 100ms\n  retry_max: 300ms\n")

        log_path = workdir / "ship.log"
        log = open(log_path, "wb")
        self.addCleanup(log.close)
        process = subprocess.Popen([BIN, "ship", "--config", str(config), "--spool", str(spool),
                                    "--metrics-listen", "127.0.0.1:0"],
                                   stdout=log, stderr=subprocess.STDOUT)
        self.addCleanup(lambda: process.poll() is None and (process.kill(), process.wait()))
        match = wait_for(lambda: re.search(r"ship: serving /metrics and /healthz "
                                           r"address=127\.0\.0\.1 port=(\d+)",
                                           log_path.read_text(errors="replace")), 20,
                         "the metrics listener's log line")
        base = f"http://127.0.0.1:{match.group(1)}"

        def metrics():
            with urllib.request.urlopen(base + "/metrics", timeout=10) as response:
                self.assertIn("text/plain; version=0.0.4", response.headers["Content-Type"])
                return parse_metrics(response.read().decode())

        def wait_metrics(condition, what):
            def check():
                values = metrics()
                return values if condition(values) else None

            return wait_for(check, 20, what)

        # The collector is down: the batch is read once and retried.
        values = wait_metrics(lambda v: v["webtrap_shipper_retries_total"] >= 2,
                              "retries while the collector is down")
        self.assertGreaterEqual(values['webtrap_shipper_errors_total{kind="connection"}'], 2)
        self.assertEqual(values["webtrap_shipper_records_read_total"], 10)
        self.assertEqual(values["webtrap_shipper_records_sent_total"], 0)
        self.assertGreater(values["webtrap_shipper_backlog_bytes"], 0)

        stand_in.set_mode("503")
        stand_in.start()
        wait_metrics(lambda v: v['webtrap_shipper_errors_total{kind="server_error"}'] > 0,
                     "a 503 counted as a server error")
        stand_in.set_mode("ok")
        values = wait_metrics(lambda v: v["webtrap_shipper_backlog_bytes"] == 0,
                              "an empty backlog")
        self.assertEqual(values["webtrap_shipper_records_read_total"], 30)
        self.assertEqual(values["webtrap_shipper_records_sent_total"], 30)
        self.assertEqual(values["webtrap_shipper_batches_sent_total"], 3)
        self.assertGreater(values["webtrap_shipper_bytes_sent_total"], 0)
        self.assertGreater(values["webtrap_shipper_last_success_timestamp_seconds"],
                           time.time() - 60)
        self.assertEqual(values['webtrap_shipper_errors_total{kind="unauthorized"}'], 0)
        self.assertEqual(len(stand_in.snapshot()["event_counts"]), 30)

        with urllib.request.urlopen(base + "/healthz", timeout=10) as response:
            self.assertEqual(response.read(), b"ok\n")
        with self.assertRaises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(base + "/nothing-here", timeout=10)
        self.assertEqual(missing.exception.code, 404)

        process.send_signal(signal.SIGTERM)
        self.assertEqual(process.wait(timeout=30), 0)
        text = log_path.read_text(errors="replace")
        self.assertIn("shipper: stopped records_read=30 records_sent=30", text)
        self.assertIn("ship: metrics listener stopped", text)


class ShipTruncationTest(unittest.TestCase):
    """A segment truncated in place and refilled between two polls is shipped from its start."""

    def test_copytruncate_loses_no_new_record(self):
        workdir = pathlib.Path(tempfile.mkdtemp(prefix="webtrap-ship-truncation-"))
        if not os.environ.get("WEBTRAP_KEEP_TEST_DIRS"):
            self.addCleanup(shutil.rmtree, workdir, True)
        spool = workdir / "spool"
        spool.mkdir()
        segment = spool / "segment-000000000001.ndjson"

        def records(prefix, count):
            return "".join(json.dumps({"webtrap": {"event_id": f"{prefix}-{i}"}}) + "\n"
                           for i in range(count))

        segment.write_text(records("before", 20))
        stand_in = CollectorStandIn(TOKEN).start()
        self.addCleanup(stand_in.stop)
        config = workdir / "probe.yaml"
        # A long poll interval leaves time to truncate and refill the
        # segment while the shipper waits.
        config.write_text(f"shipper:\n  url: {stand_in.url}\n  token: {TOKEN}\n"
                          "  interval: 3s\n  retry_max: 1s\n")
        log_path = workdir / "ship.log"
        log = open(log_path, "wb")
        self.addCleanup(log.close)
        process = subprocess.Popen([BIN, "ship", "--config", str(config), "--spool", str(spool),
                                    "--metrics-listen", "off"],
                                   stdout=log, stderr=subprocess.STDOUT)
        self.addCleanup(lambda: process.poll() is None and (process.kill(), process.wait()))
        wait_for(lambda: len(stand_in.snapshot()["event_counts"]) == 20, 20,
                 "the first 20 records at the stand-in")
        old_size = segment.stat().st_size
        inode = segment.stat().st_ino

        # What logrotate's copytruncate leaves: the same file, emptied, then
        # appended to again past the old size before the next poll.
        with open(segment, "r+") as handle:
            handle.truncate(0)
        with open(segment, "a") as handle:
            handle.write(records("after", 30))
        self.assertEqual(segment.stat().st_ino, inode)
        self.assertGreater(segment.stat().st_size, old_size)

        wait_for(lambda: all(f"after-{i}" in stand_in.snapshot()["event_counts"]
                             for i in range(30)), 20, "every record written after the truncation")
        # The stand-in counts a batch before the shipper reads its response,
        # so wait for the commit before stopping the shipper.
        expected = f"segment-000000000001.ndjson {segment.stat().st_size}\n"
        wait_for(lambda: (spool / "shipped.offset").read_text() == expected, 10,
                 "the offset at the end of the refilled segment")
        process.send_signal(signal.SIGTERM)
        self.assertEqual(process.wait(timeout=30), 0)
        self.assertIn("was truncated or rewritten in place", log_path.read_text(errors="replace"))


class ShipperProxyTest(unittest.TestCase):
    """The shipper uses shipper.proxy and ignores the proxy variables of its environment."""

    def test_configured_proxy_wins_over_environment(self):
        workdir = pathlib.Path(tempfile.mkdtemp(prefix="webtrap-shipper-proxy-"))
        if not os.environ.get("WEBTRAP_KEEP_TEST_DIRS"):
            self.addCleanup(shutil.rmtree, workdir, True)
        configured = socket.create_server(("127.0.0.1", 0))
        environment_proxy = socket.create_server(("127.0.0.1", 0))
        self.addCleanup(configured.close)
        self.addCleanup(environment_proxy.close)
        spool = workdir / "spool"
        spool.mkdir()
        (spool / "segment-000000000001.ndjson").write_text('{"n": 1}\n')
        config = workdir / "probe.yaml"
        # The collector's host name is never resolved: with an HTTP proxy,
        # libcurl sends the name to the proxy in its CONNECT request.
        config.write_text("shipper:\n  url: https://collector.invalid:7380\n"
                          f"  token: {TOKEN}\n  retry_max: 1s\n"
                          f"  proxy: http://127.0.0.1:{configured.getsockname()[1]}\n")
        environment_url = f"http://127.0.0.1:{environment_proxy.getsockname()[1]}"
        environment = dict(os.environ, http_proxy=environment_url, https_proxy=environment_url,
                           HTTPS_PROXY=environment_url, all_proxy=environment_url)
        shipper = subprocess.Popen([BIN, "ship", "--config", str(config), "--spool", str(spool),
                                    "--until-idle", "--metrics-listen", "off"], env=environment,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            configured.settimeout(20)
            connection, _ = configured.accept()
            with connection:
                connection.settimeout(10)
                request = connection.recv(4096)
            environment_proxy.settimeout(0.5)
            with self.assertRaises(socket.timeout, msg="the shipper used the proxy in its "
                                   "environment"):
                environment_proxy.accept()
        finally:
            shipper.kill()
            shipper.wait()
        self.assertTrue(request.startswith(b"CONNECT collector.invalid:7380 "), request[:200])
        self.assertNotIn(TOKEN.encode(), request)

if __name__ == "__main__":
    unittest.main(verbosity=2)
