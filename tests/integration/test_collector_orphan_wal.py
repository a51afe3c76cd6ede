#!/usr/bin/env python3
"""Checks that no collector subcommand makes a new store beside an orphan
write-ahead log.

With store.sqlite missing and store.sqlite-wal present (the store file was
moved or deleted after an unclean stop), a new store at the path would make
SQLite discard the commits in the log. Each subcommand that opens the store
(enrol, revoke, sensors, dead-letters, count, tail, rewind) must exit 2
naming the log, leave the log unchanged and create no store file. The
service itself is checked in test_collector_rewind.py.

Exit status: 0 pass, 1 a check failed, 77 WEBTRAP_BIN is not set.
"""

import sys

from collector_checks import Collector, check, run_checks

WAL_BYTES = b"write-ahead log of a moved store"

SUBCOMMANDS = [
    ["enrol", "--sensor-id", "web1"],
    ["revoke", "--sensor-id", "web1"],
    ["sensors"],
    ["dead-letters"],
    ["count"],
    ["tail", "--last", "1"],
    ["rewind", "--output", "ndjson", "--from-seq", "1"],
]


def subcommands_keep_orphan_log(workdir):
    collector = Collector(workdir)
    collector.state.mkdir()
    wal = collector.state / "store.sqlite-wal"
    wal.write_bytes(WAL_BYTES)
    failures = []
    for arguments in SUBCOMMANDS:
        result = collector.command(*arguments)
        name = arguments[0]
        if result.returncode != 2:
            failures.append(f"{name}: exit {result.returncode}, expected 2: {result.stderr}")
        elif "store.sqlite-wal" not in result.stderr or "move the write-ahead log away" not in \
                result.stderr:
            failures.append(f"{name}: the error does not name the log and the fix: "
                            f"{result.stderr}")
        created = sorted(path.name for path in collector.state.iterdir()
                         if path.name.startswith("store.sqlite") and path.name != wal.name
                         and not path.name.endswith(".lock"))
        if created:
            failures.append(f"{name}: created {created} beside the orphan log")
            for path in created:
                (collector.state / path).unlink()
        # SQLite removes or resets the log of a store it opened new.
        if not wal.exists() or wal.read_bytes() != WAL_BYTES:
            failures.append(f"{name}: the write-ahead log was removed or changed")
            wal.write_bytes(WAL_BYTES)
    check(not failures, "; ".join(failures))


CHECKS = [subcommands_keep_orphan_log]


def main():
    return run_checks(CHECKS, "collector-orphan-wal-")


if __name__ == "__main__":
    sys.exit(main())
