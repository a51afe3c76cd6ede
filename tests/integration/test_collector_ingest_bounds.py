#!/usr/bin/env python3
"""Checks that a small ingest request cannot make the collector do work far
out of proportion to its size.

Each check starts its own collector on 127.0.0.1 with a temporary state
folder and fails on one specific weakness:

- a gzip batch of millions of tiny lines ("{}"), a few kilobytes on the
  wire, that the collector turned into one dead letter per line. Each
  3-byte line took about 190 bytes of memory and 100 bytes of store, so
  the limits.max_decompressed_bytes bound on memory did not hold;
- a ModSecurity record with 100,000 distinct rule ids, whose rule fields
  took time quadratic in that count (about 40 s of CPU for 13 MB).

Every check runs even when an earlier one fails, and the test exits 1 if any
failed.
"""

import gzip
import http.client
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time

BIN = pathlib.Path(os.environ.get("WEBTRAP_BIN", ""))
SOURCE_DIR = pathlib.Path(os.environ.get("WEBTRAP_SOURCE_DIR",
                                         pathlib.Path(__file__).resolve().parents[2]))
MAKE_RECORDS = SOURCE_DIR / "bench" / "collector" / "make_records.py"

# Maximum record lines in one probe batch (kMaxBatchRecords in
# src/collector/server.cpp).
MAX_BATCH_RECORDS = 100_000


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class Collector:
    """A collector on loopback ports chosen by the kernel."""

    def __init__(self, workdir):
        self.dir = pathlib.Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config = self.dir / "collector.yaml"
        self.config.write_text("listen: 127.0.0.1:0\n"
                               "admin: {listen: 127.0.0.1:0}\n"
                               f"state_dir: {self.dir / 'state'}\n")
        self.ports_file = self.dir / "ports.json"
        self.log_path = self.dir / "collector.log"
        self.process = None

    def command(self, *args):
        return subprocess.run([str(BIN), "collector", "--config", str(self.config), *args],
                              capture_output=True, text=True, timeout=60)

    def enrol(self, sensor_id):
        result = self.command("enrol", "--sensor-id", sensor_id)
        check(result.returncode == 0, f"enrol failed:\n{result.stdout}{result.stderr}")
        return next(line.split('"')[1] for line in result.stdout.splitlines()
                    if line.strip().startswith("token:"))

    def count(self):
        result = self.command("count")
        check(result.returncode == 0, f"count failed:\n{result.stdout}{result.stderr}")
        return json.loads(result.stdout)

    def start(self):
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [str(BIN), "collector", "--config", str(self.config), "--ports-file",
                 str(self.ports_file)],
                stdout=log, stderr=subprocess.STDOUT)
        wait_for(lambda: self.ports_file.exists() or self.process.poll() is not None, 30,
                 "the collector's ports file")
        check(self.process.poll() is None, "the collector exited at start:\n" + self.log())
        self.ingest_port = json.loads(self.ports_file.read_text())["ingest"]

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=70)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def cpu_seconds(self):
        fields = open(f"/proc/{self.process.pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def post(self, path, token, body, headers=None, timeout=300):
        connection = http.client.HTTPConnection("127.0.0.1", self.ingest_port, timeout=timeout)
        try:
            connection.request("POST", path, body=body,
                               headers={"Authorization": f"Bearer {token}", **(headers or {})})
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()


def tiny_line_flood_rejected(workdir):
    collector = Collector(workdir)
    token = collector.enrol("web1")
    collector.start()
    try:
        gzip_headers = {"Content-Encoding": "gzip"}
        # Below the limit, each undecodable line is a dead letter. The lines
        # differ, because the store may keep one dead letter per repeated line.
        lines = b"".join(b'{"line":%d}\n' % number for number in range(1000))
        status, body = collector.post("/v1/records", token, gzip.compress(lines), gzip_headers)
        check(status == 200, f"1,000 undecodable lines: expected 200, got {status} {body!r}")
        check(json.loads(body)["rejected"] == 1000,
              f"1,000 undecodable lines: expected rejected 1000, got {body!r}")

        flood = gzip.compress(b"{}\n" * (MAX_BATCH_RECORDS + 1))
        status, body = collector.post("/v1/records", token, flood, gzip_headers)
        check(status == 413,
              f"a {len(flood)}-byte batch of {MAX_BATCH_RECORDS + 1} lines: expected 413, got "
              f"{status} {body!r}")
        check(b"records" in body, f"the 413 does not name the record limit: {body!r}")
        # Blank lines contain no record and do not count.
        padded = gzip.compress(b"\n" * (MAX_BATCH_RECORDS + 1) + b"{}\n")
        status, body = collector.post("/v1/records", token, padded, gzip_headers)
        check(status == 200, f"blank lines and one record: expected 200, got {status} {body!r}")
    finally:
        collector.stop()
    counts = collector.count()
    check(counts["dead_letters"] == 1001,
          f"expected the 1,001 dead letters of the accepted batches, got {counts}")


def many_rule_ids_linear(workdir):
    records = workdir / "modsecurity.ndjson"
    subprocess.run([sys.executable, str(MAKE_RECORDS), "--count", "1", "--modsecurity-output",
                    str(records)], check=True, capture_output=True, timeout=120)
    record = json.loads(records.read_text().splitlines()[0])
    record["transaction"]["messages"] = [
        {"message": f"rule {i}",
         "details": {"ruleId": str(900000 + i), "match": "x", "data": "d", "severity": "2",
                     "tags": ["attack-generic"]}}
        for i in range(100_000)]
    body = json.dumps(record).encode()

    collector = Collector(workdir / "collector")
    token = collector.enrol("nginx1")
    collector.start()
    try:
        before = collector.cpu_seconds()
        status, response = collector.post("/v1/modsecurity", token, body,
                                          {"Content-Type": "application/json"})
        spent = collector.cpu_seconds() - before
    finally:
        collector.stop()
    check(status == 200, f"expected 200, got {status} {response!r}")
    check(json.loads(response)["stored"] == 1, f"expected the record stored, got {response!r}")
    # On a 2-core virtual machine the request took under 2 s, and 78 s of CPU
    # while the rule fields took time quadratic in the rule count.
    check(spent < 10, f"a {len(body)}-byte record with 100,000 rule ids took {spent:.1f} s "
                      "of CPU")


CHECKS = [tiny_line_flood_rejected, many_rule_ids_linear]


def main():
    if not BIN.is_file():
        print("WEBTRAP_BIN is not set or not a file; skipping")
        return 77
    root = pathlib.Path(tempfile.mkdtemp(prefix="collector-bounds-", dir=BIN.parent))
    failed = []
    try:
        for check_function in CHECKS:
            workdir = root / check_function.__name__
            workdir.mkdir()
            started = time.monotonic()
            try:
                check_function(workdir)
                print(f"ok   {check_function.__name__} ({time.monotonic() - started:.1f} s)")
            except AssertionError as error:
                failed.append(check_function.__name__)
                print(f"FAIL {check_function.__name__} ({time.monotonic() - started:.1f} s): "
                      f"{error}")
            sys.stdout.flush()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if failed:
        print(f"{len(failed)} of {len(CHECKS)} checks failed: {', '.join(failed)}")
        return 1
    print(f"all {len(CHECKS)} checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
