#!/usr/bin/env python3
"""`webtrap ship` killed with SIGKILL and restarted twice while records stream to a collector.

A writer thread appends probe records to spool segments at a steady pace,
rotating segments as the probe's spool does. `webtrap ship` sends them to a
real `webtrap collector` with its embedded store. The test kills the shipper
with SIGKILL twice mid-stream, once a third and once two thirds of the
records are stored, and restarts it each time on the same spool. Afterwards
it checks that:

- the collector's store contains every written event id exactly once;
- every restart resumed from the persisted offset: the records the
  collector received twice (its duplicate counter) are at most one batch per
  kill, where a restart from zero would send a third of the stream again;
- the last shipper's /metrics agree with what it read and sent.

Exit status: 0 pass, 1 a check failed.
"""

import json
import os
import pathlib
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

from probe_harness import (BIN, SOURCE_DIR, collector_ports, enrol_sensor, metrics_at,
                           start_collector, wait_for)

MAKE_RECORDS = SOURCE_DIR / "bench" / "collector" / "make_records.py"
TOTAL_RECORDS = 3000
RECORDS_PER_SEGMENT = 400   # about 1.7 MB per segment with these records
WRITE_CHUNK = 30            # records appended at a time
WRITE_PAUSE_SECONDS = 0.02  # between chunks: the stream lasts about 2-4 s
BATCH_MAX_RECORDS = 50
KILLS = 2
TEST_BUDGET_SECONDS = 60
PORT_LINE = re.compile(r"ship: serving /metrics and /healthz address=\S+ port=(\d+)")


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)




class SpoolWriter(threading.Thread):
    """Appends records to numbered segments as the probe's spool does, one segment at a time."""

    def __init__(self, spool, lines):
        super().__init__(daemon=True)
        self.spool = spool
        self.lines = lines
        self.written = 0
        self.error = None

    def run(self):
        try:
            for start in range(0, len(self.lines), WRITE_CHUNK):
                segment = start // RECORDS_PER_SEGMENT + 1
                path = self.spool / f"segment-{segment:012d}.ndjson"
                with open(path, "ab") as handle:
                    handle.write(b"".join(self.lines[start:start + WRITE_CHUNK]))
                self.written = min(start + WRITE_CHUNK, len(self.lines))
                time.sleep(WRITE_PAUSE_SECONDS)
        except OSError as error:
            self.error = error


class Shipper:
    """One `webtrap ship` process on the spool, with its metrics listener on a free port."""

    def __init__(self, workdir, config, spool, number):
        self.log_path = workdir / f"ship-{number}.log"
        self.log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            [BIN, "ship", "--config", str(config), "--spool", str(spool),
             "--metrics-listen", "127.0.0.1:0"],
            stdout=self.log, stderr=subprocess.STDOUT)
        match = wait_for(lambda: PORT_LINE.search(self.log_text()) or self.process.poll() is not None,
                         20, "the shipper's metrics port in its log")
        if self.process.poll() is not None:
            raise AssertionError(f"webtrap ship exited at start:\n{self.log_text()}")
        self.metrics_port = int(match.group(1))

    def log_text(self):
        return self.log_path.read_text(errors="replace")

    def kill(self):
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        self.log.close()

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=30)
        self.log.close()
        return self.process.returncode


class Checks:
    def __init__(self):
        self.failures = []

    def true(self, what, condition, detail=""):
        status = "ok" if condition else "FAILED"
        log(f"{status}: {what}{': ' + detail if detail else ''}")
        if not condition:
            self.failures.append(what)


def stored_ids(state_dir):
    """Event ids in the collector's store, read-only while the collector runs (WAL)."""
    path = state_dir / "store.sqlite"
    if not path.exists():
        return []
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        return [row[0] for row in connection.execute("SELECT event_id FROM events")]
    except sqlite3.OperationalError:
        return []  # the schema is not created yet
    finally:
        connection.close()


def main():
    started = time.monotonic()
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="webtrap-ship-restarts-"))
    collector = None
    shipper = None
    writer = None
    checks = Checks()
    try:
        records_path = workdir / "records.ndjson"
        subprocess.run([sys.executable, str(MAKE_RECORDS), "--count", str(TOTAL_RECORDS),
                        "--probe-output", str(records_path)], check=True,
                       capture_output=True, timeout=60)
        lines = records_path.read_bytes().splitlines(keepends=True)
        written_ids = [json.loads(line)["webtrap"]["event_id"] for line in lines]
        assert len(set(written_ids)) == TOTAL_RECORDS, "make_records.py repeated an event id"

        state_dir = workdir / "state"
        collector_config = workdir / "collector.yaml"
        collector_config.write_text(f"listen: 127.0.0.1:0\nadmin: {{listen: 127.0.0.1:0}}\n"
                                    f"state_dir: {state_dir}\n")
        token, _ = enrol_sensor(collector_config, "restart-sensor")
        collector = start_collector(collector_config, workdir)
        ports = collector_ports(collector, workdir)

        spool = workdir / "spool"
        spool.mkdir()
        ship_config = workdir / "probe.yaml"
        ship_config.write_text(f"""shipper:
  url: http://127.0.0.1:{ports["ingest"]}
  token: {token}
  batch_max_records: {BATCH_MAX_RECORDS}
  interval: 50ms
  retry_initial: 100ms
  retry_max: 1s
""")

        writer = SpoolWriter(spool, lines)
        writer.start()
        shipper = Shipper(workdir, ship_config, spool, 1)
        resumed_offsets = []
        for kill in range(1, KILLS + 1):
            threshold = TOTAL_RECORDS * kill // (KILLS + 1)
            wait_for(lambda: len(stored_ids(state_dir)) >= threshold, 30,
                     f"{threshold} records in the store")
            shipper.kill()
            stored_at_kill = len(stored_ids(state_dir))
            offset = (spool / "shipped.offset").read_text().strip()
            log(f"killed shipper {kill} with SIGKILL: stored={stored_at_kill} "
                f"written={writer.written} offset={offset}")
            shipper = Shipper(workdir, ship_config, spool, kill + 1)
            # The shipper reads its offset right after logging its start.
            wait_for(lambda: "shipper: starting" in shipper.log_text(), 10,
                     "the shipper's start log line")
            time.sleep(0.2)
            resumed = re.search(r"resuming at segment=(\S+) offset=(\d+)", shipper.log_text())
            resumed_offsets.append((resumed.group(1), int(resumed.group(2))) if resumed
                                   else ("none", 0))

        writer.join(timeout=30)
        checks.true("the spool writer finished", not writer.is_alive() and writer.error is None,
                    str(writer.error or ""))

        remaining = max(5, TEST_BUDGET_SECONDS - (time.monotonic() - started))
        try:
            wait_for(lambda: len(stored_ids(state_dir)) >= TOTAL_RECORDS, remaining,
                     "every record in the store")
        except TimeoutError:
            log(f"store has {len(stored_ids(state_dir))} of {TOTAL_RECORDS} records")

        ids = stored_ids(state_dir)
        checks.true("the store contains every written event id", set(ids) == set(written_ids),
                    f"missing={len(set(written_ids) - set(ids))} "
                    f"unexpected={len(set(ids) - set(written_ids))}")
        checks.true("the store contains each event id once", len(ids) == len(set(ids)),
                    f"rows={len(ids)} distinct={len(set(ids))}")

        for number, (segment, offset) in enumerate(resumed_offsets, start=2):
            checks.true(f"shipper {number} resumed past the start of the spool",
                        segment != "none" and offset > 0,
                        f"{segment} {offset}")

        collector_metrics = metrics_at(ports["admin"])
        received = collector_metrics.get('webtrap_collector_input_received_total{input="probe"}', 0)
        duplicates = collector_metrics.get(
            'webtrap_collector_input_duplicates_total{input="probe"}', 0)
        log(f"collector: received={received:.0f} duplicates={duplicates:.0f}")
        checks.true("re-sent records are at most one batch per kill",
                    duplicates <= KILLS * BATCH_MAX_RECORDS,
                    f"duplicates={duplicates:.0f} bound={KILLS * BATCH_MAX_RECORDS}")
        checks.true("the collector received each record once plus the re-sent ones",
                    received == TOTAL_RECORDS + duplicates,
                    f"received={received:.0f} expected={TOTAL_RECORDS + duplicates:.0f}")

        # The last shipper read only what followed the offset it resumed from.
        wait_for(lambda: metrics_at(shipper.metrics_port)["webtrap_shipper_backlog_bytes"] == 0,
                 10, "an empty backlog in the last shipper's /metrics")
        values = metrics_at(shipper.metrics_port)
        read = values["webtrap_shipper_records_read_total"]
        sent = values["webtrap_shipper_records_sent_total"]
        log(f"last shipper: read={read:.0f} sent={sent:.0f} "
            f"batches={values['webtrap_shipper_batches_sent_total']:.0f}")
        checks.true("the last shipper sent every record it read", read == sent,
                    f"read={read:.0f} sent={sent:.0f}")
        checks.true("the last shipper read less than the whole stream",
                    0 < read < TOTAL_RECORDS, f"read={read:.0f}")
        checks.true("the last shipper counted no connection error",
                    values['webtrap_shipper_errors_total{kind="connection"}'] == 0)
        checks.true("the last shipper recorded a recent success",
                    values["webtrap_shipper_last_success_timestamp_seconds"] > time.time() - 60)

        checks.true("the last shipper stops cleanly on SIGTERM", shipper.stop() == 0)
        checks.true("the last shipper logged its stop", "shipper: stopped" in shipper.log_text())
        shipper = None
        elapsed = time.monotonic() - started
        checks.true("the test ran within its budget", elapsed < TEST_BUDGET_SECONDS,
                    f"{elapsed:.1f}s")
    finally:
        if shipper is not None and shipper.process.poll() is None:
            shipper.kill()
        if collector is not None and collector.poll() is None:
            collector.send_signal(signal.SIGTERM)
            try:
                collector.wait(timeout=30)
            except subprocess.TimeoutExpired:
                collector.kill()
                collector.wait()
        if os.environ.get("WEBTRAP_KEEP_TEST_DIRS"):
            log(f"test folder kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    if checks.failures:
        log(f"{len(checks.failures)} check(s) failed; set WEBTRAP_KEEP_TEST_DIRS=1 to keep "
            "the test folder for inspection")
        return 1
    log("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
