#!/usr/bin/env python3
"""Checks a file input against the real logrotate with copytruncate.

A collector on 127.0.0.1 reads logs/audit.log with a poll interval of 1 s.
Each round writes three ModSecurity records to the empty file and runs
`logrotate -f` (private state file and configuration) at once, so the copy
is usually made before the input reads a line, and the input must find it by
time. Then the check waits past the next poll. logrotate runs with:

- copytruncate alone (copies audit.log.1, audit.log.2, ...);
- dateext with a date format down to the second (audit.log-DATE);
- compress with delaycompress: logrotate compresses the copy read last and
  deletes it just before it makes the next copy, which on ext4 gets the
  freed inode number, and the new copy must still be read;
- compress alone: the copy is compressed at once, so its lines are lost (as
  docs/audit-decoders.md states), but the gzip file must not be read as
  lines and stored as dead letters;
- copytruncate alone, with each round run twice in a row (three records,
  logrotate, three more, logrotate), so that two copies wait for one poll
  and the input must read both.

Each check compares `collector count` with the records written: every
record stored once, no duplicates, no dead letters.

Exit status: 0 pass, 1 a check failed, 77 WEBTRAP_BIN is not set or the
logrotate command is missing.
"""

import os
import pathlib
import shutil
import subprocess
import sys
import time

from collector_checks import Collector, check, run_checks

SOURCE_DIR = pathlib.Path(os.environ.get("WEBTRAP_SOURCE_DIR",
                                         pathlib.Path(__file__).resolve().parents[2]))
MODSEC3_RECORD = (SOURCE_DIR / "tests" / "fixtures" / "modsecurity" /
                  "modsec3-nginx-sqli.json").read_text().strip()
FIXTURE_ID = '"unique_id":"17964007833.886302"'
ROUNDS = 4
RECORDS_PER_ROUND = 3
POLL_SECONDS = 1


def record(unique_id):
    check(FIXTURE_ID in MODSEC3_RECORD, f"the fixture record has no {FIXTURE_ID}")
    return MODSEC3_RECORD.replace(FIXTURE_ID, f'"unique_id":"{unique_id}"') + "\n"


def rotate_rounds(workdir, options, runs_per_round=1):
    """Write and rotate ROUNDS times; return (records written, count, log folder).

    Each round writes RECORDS_PER_ROUND records and runs logrotate
    `runs_per_round` times in a row.
    """
    logs = workdir / "logs"
    logs.mkdir()
    audit = logs / "audit.log"
    audit.write_text("")
    configuration = workdir / "logrotate.conf"
    configuration.write_text(f"{audit} {{\n  copytruncate\n  rotate 10\n  missingok\n"
                             f"{options}}}\n")
    state = workdir / "logrotate.state"

    collector = Collector(workdir / "collector", extra=(
        "inputs:\n  files:\n"
        f"    - {{path: {audit}, format: modsec3, sensor_id: web1, "
        f"poll_interval: {POLL_SECONDS}s}}\n"))
    collector.start()

    written = 0
    try:
        # The input has opened the empty file and polled it at least once.
        time.sleep(POLL_SECONDS * 1.5)
        for round_number in range(ROUNDS):
            for run in range(runs_per_round):
                with open(audit, "a") as log:
                    for index in range(RECORDS_PER_ROUND):
                        log.write(record(f"{workdir.name}-{round_number}-{run}-{index}"))
                        written += 1
                result = subprocess.run(["logrotate", "-f", "-s", str(state),
                                         str(configuration)],
                                        capture_output=True, text=True, timeout=60)
                check(result.returncode == 0, f"logrotate failed: {result.stderr}")
            # Past the next poll, and a new second for dateext's file name.
            time.sleep(POLL_SECONDS * 1.2)
        time.sleep(POLL_SECONDS * 2)
    finally:
        collector.stop()
    return written, collector.count(), sorted(path.name for path in logs.iterdir())


def expect_all_stored(workdir, options, runs_per_round=1):
    written, count, files = rotate_rounds(workdir, options, runs_per_round)
    check(count["events"] == written,
          f"expected {written} stored events, got {count} (files: {files})")
    check(count["duplicates"] == 0, f"expected no duplicates, got {count}")
    check(count["dead_letters"] == 0, f"expected no dead letters, got {count}")


def copytruncate_numbered(workdir):
    expect_all_stored(workdir, "")


def copytruncate_dateext(workdir):
    expect_all_stored(workdir, "  dateext\n  dateformat -%Y%m%d%H%M%S\n")


def copytruncate_delaycompress(workdir):
    expect_all_stored(workdir, "  compress\n  delaycompress\n")


def copytruncate_compress_not_read(workdir):
    written, count, files = rotate_rounds(workdir, "  compress\n")
    check(any(name.endswith(".gz") for name in files), f"logrotate compressed nothing: {files}")
    check(count["dead_letters"] == 0,
          f"the compressed copies were read as lines: {count} (files: {files})")
    check(count["events"] <= written, f"more events than records written: {count}")
    check(count["duplicates"] == 0, f"expected no duplicates, got {count}")


def copytruncate_twice_per_poll(workdir):
    expect_all_stored(workdir, "", runs_per_round=2)


CHECKS = [copytruncate_numbered, copytruncate_dateext, copytruncate_delaycompress,
          copytruncate_compress_not_read, copytruncate_twice_per_poll]


def main():
    if shutil.which("logrotate") is None:
        print("the logrotate command is missing; skipping")
        return 77
    return run_checks(CHECKS, "collector-logrotate-")


if __name__ == "__main__":
    sys.exit(main())
