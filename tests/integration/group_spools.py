"""Probe spool files and state reads shared by the MISP feed and STIX output tests.

write_group_spools() turns records from bench/collector/make_records.py into
one spool file per sensor group, spread over many sources and two UTC days,
with credential canaries among them.
"""
import json
import random
import sqlite3
import subprocess
import sys
import time

from probe_harness import SOURCE_DIR, ctime

MAKE_RECORDS = SOURCE_DIR / "bench" / "collector" / "make_records.py"
GROUPS = ("edge", "core")
DAY_ONE = 1796342400  # 2026-12-04 00:00:00 UTC


def write_group_spools(workdir, records, sources, make_records_seed, seed, canary_every,
                       canary_passwords, mixed_group_share=None):
    """Write workdir/<group>.ndjson for each of GROUPS and return the number of canary hits.

    Record i gets one of `sources` addresses (every third an IPv6 one) drawn
    with random.Random(seed), and a time evenly spread over two days from
    DAY_ONE. A source's records go to GROUPS[source % 2]. With
    `mixed_group_share`, that share of records goes to the other group, so a
    source shows up in both. Every `canary_every`-th record carries a
    credential canary with one of `canary_passwords` passwords.
    """
    generated = workdir / "generated.ndjson"
    subprocess.run([sys.executable, str(MAKE_RECORDS), "--count", str(records),
                    "--seed", str(make_records_seed), "--probe-output", str(generated)],
                   check=True, capture_output=True, timeout=300)
    rng = random.Random(seed)
    addresses = [f"198.51.{i // 200}.{i % 200 + 1}" if i % 3 else f"2001:db8::{i:x}"
                 for i in range(sources)]
    files = {group: open(workdir / f"{group}.ndjson", "w") for group in GROUPS}
    canaries = 0
    for index, line in enumerate(generated.read_text().splitlines()):
        record = json.loads(line)
        source = rng.randrange(sources)
        group = GROUPS[source % 2]
        # The draw happens only with a share, so each test keeps its own
        # sequence of random numbers.
        if mixed_group_share is not None and rng.random() <= mixed_group_share:
            group = GROUPS[(source + 1) % 2]
        seconds = DAY_ONE + index * (2 * 86400) // records
        micros = rng.randrange(1000000)
        record["transaction"]["client_ip"] = addresses[source]
        record["transaction"]["time_stamp"] = ctime(seconds)
        record["webtrap"]["@timestamp"] = time.strftime(
            "%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{micros:06d}Z"
        if index % canary_every == 0:
            record["webtrap"]["baits"] = [{"kind": "credential_canary",
                                           "detail": f"user=admin password=pw{index % canary_passwords}"}]
            canaries += 1
        files[group].write(json.dumps(record) + "\n")
    for f in files.values():
        f.close()
    return canaries


def query_read_only(path, sql):
    """Run one read-only query, or return None while the database or its schema is missing or busy.

    The collector may be writing meanwhile (WAL).
    """
    if not path.exists():
        return None
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            return db.execute(sql).fetchall()
        finally:
            db.close()
    except sqlite3.OperationalError:
        return None


def load_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)
