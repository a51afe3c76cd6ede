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
import json
import os
import pathlib
import subprocess
import sys

from collector_checks import Collector, check, run_checks

SOURCE_DIR = pathlib.Path(os.environ.get("WEBTRAP_SOURCE_DIR",
                                         pathlib.Path(__file__).resolve().parents[2]))
MAKE_RECORDS = SOURCE_DIR / "bench" / "collector" / "make_records.py"

# Maximum record lines in one probe batch (kMaxBatchRecords in
# src/collector/server.cpp).
MAX_BATCH_RECORDS = 100_000


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
    return run_checks(CHECKS, "collector-bounds-")



if __name__ == "__main__":
    sys.exit(main())
