#!/usr/bin/env python3
"""The collector returns 503 while its disk is full, and recovers when space returns.

The store lives on a 3 MiB tmpfs. Batches are posted until the store
cannot commit: those get 503 with Retry-After, /healthz turns 503 and names
the cause, and the collector keeps running. The tmpfs is then enlarged, and
the rejected batches, sent again, are stored: nothing acknowledged is lost
and nothing rejected was half stored.

Exit status: 0 pass, 1 a check failed, 77 when a tmpfs cannot be mounted
(not root, or no mount permission in this container).
"""

import gzip
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request

from probe_harness import BIN, SOURCE_DIR, collector_ports, enrol_sensor, start_collector

MAKE_RECORDS = SOURCE_DIR / "bench" / "collector" / "make_records.py"


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def request(url, body=None, headers=None):
    req = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET",
                                 headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def main():
    if not MAKE_RECORDS.exists():
        print("bench/collector/make_records.py is missing", file=sys.stderr)
        return 77
    folder = pathlib.Path(tempfile.mkdtemp(prefix="webtrap-collector-disk-"))
    disk = folder / "disk"
    disk.mkdir()
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(disk)],
                           capture_output=True, text=True)
    if mount.returncode != 0:
        print(f"cannot mount a tmpfs: {mount.stderr.strip()}", file=sys.stderr)
        shutil.rmtree(folder, ignore_errors=True)
        return 77
    collector = None
    try:
        records = folder / "records.ndjson"
        subprocess.run([sys.executable, str(MAKE_RECORDS), "--count", "1600", "--probe-output",
                        str(records)], check=True, capture_output=True, timeout=120)
        lines = records.read_bytes().splitlines(keepends=True)
        batches = [gzip.compress(b"".join(lines[i:i + 200])) for i in range(0, len(lines), 200)]

        config = folder / "collector.yaml"
        config.write_text(f"""listen: 127.0.0.1:0
admin: {{listen: 127.0.0.1:0}}
state_dir: {disk / "state"}
""")
        token, _ = enrol_sensor(config, "disk-test")
        collector = start_collector(config, folder)
        ports = collector_ports(collector, folder)
        ingest = f"http://127.0.0.1:{ports['ingest']}/v1/records"
        healthz = f"http://127.0.0.1:{ports['admin']}/healthz"
        headers = {"Authorization": f"Bearer {token}", "Content-Encoding": "gzip"}

        stored = 0
        rejected = []
        for batch in batches:
            status, response_headers, body = request(ingest, batch, headers)
            if status == 200:
                stored += json.loads(body)["stored"]
            else:
                check(status == 503, f"disk full: status {status} {body}")
                check(response_headers.get("Retry-After"), "503 without Retry-After")
                rejected.append(batch)
        check(rejected, "the 3 MiB disk never filled up")
        status, _, body = request(healthz)
        check(status == 503, f"/healthz while the disk is full: {status}")
        check("full" in json.loads(body)["store"]["error"], f"/healthz error: {body}")
        check(collector.poll() is None, "the collector exited when the disk filled up")

        subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
        for batch in rejected:
            status, _, body = request(ingest, batch, headers)
            check(status == 200, f"after the disk grew: status {status} {body}")
            stored += json.loads(body)["stored"]
        check(stored == len(lines), f"stored {stored} of {len(lines)} records")
        status, _, body = request(healthz)
        check(status == 200, f"/healthz after recovery: {status} {body}")

        collector.send_signal(signal.SIGTERM)
        check(collector.wait(timeout=30) == 0, "collector exit status after SIGTERM")
        counts = json.loads(subprocess.run([BIN, "collector", "--config", str(config), "count"],
                                           capture_output=True, text=True, timeout=60,
                                           check=True).stdout)
        check(counts["events"] == len(lines), f"store after restart: {counts}")
    except Exception:
        log_path = folder / "collector.log"
        if log_path.exists():
            print(log_path.read_text(errors="replace")[-4000:], file=sys.stderr)
        raise
    finally:
        if collector is not None and collector.poll() is None:
            collector.send_signal(signal.SIGKILL)
            collector.wait(timeout=30)
        subprocess.run(["umount", str(disk)], capture_output=True)
        if not os.environ.get("WEBTRAP_KEEP_TEST_DIRS"):
            shutil.rmtree(folder, ignore_errors=True)
    print("collector disk full: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
