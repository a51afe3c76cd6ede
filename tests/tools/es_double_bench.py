#!/usr/bin/env python3
"""Measure how many documents per second es_double.py --fast takes.

Starts the double on loopback, builds all _bulk bodies in advance (so the
client does little work per request), sends them over one keep-alive
connection, and prints documents per second and the double's CPU time per
document (user + system, from /proc). Standard library only.

    tests/tools/es_double_bench.py --docs 200000 --batch 600 --doc-bytes 8000
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time


def build_bodies(total: int, batch: int, doc_bytes: int) -> list[bytes]:
    padding = "x" * max(0, doc_bytes - 120)
    bodies = []
    for start in range(0, total, batch):
        lines = []
        for number in range(start, min(total, start + batch)):
            lines.append(f'{{"create":{{"_index":"logs-webtrap-default","_id":"bench-{number:09d}"}}}}')
            lines.append(f'{{"@timestamp":"2026-01-01T00:00:00Z","event":{{"id":"bench-{number:09d}"}},'
                         f'"message":"{padding}"}}')
        bodies.append(("\n".join(lines) + "\n").encode())
    return bodies


def cpu_seconds(pid: int) -> tuple[float, float]:
    """User and system CPU time of a process in seconds, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / ticks, int(fields[12]) / ticks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=200_000, help="documents to send (default 200000)")
    parser.add_argument("--batch", type=int, default=1000, help="documents per _bulk request (default 1000)")
    parser.add_argument("--doc-bytes", type=int, default=1500, help="approximate document size (default 1500)")
    parser.add_argument("--full", action="store_true", help="measure the full mode instead of --fast")
    parser.add_argument("--double", help="es_double.py to measure, such as an older copy for an A/B "
                        "run (default: the one next to this script)")
    args = parser.parse_args()

    double = pathlib.Path(args.double) if args.double else pathlib.Path(__file__).with_name("es_double.py")
    bodies = build_bodies(args.docs, args.batch, args.doc_bytes)
    with tempfile.TemporaryDirectory() as folder:
        port_file = os.path.join(folder, "port")
        command = [sys.executable, str(double), "--port-file", port_file]
        if not args.full:
            command.append("--fast")
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        try:
            for _ in range(200):
                if os.path.exists(port_file):
                    break
                time.sleep(0.025)
            port = int(pathlib.Path(port_file).read_text())
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            headers = {"Content-Type": "application/x-ndjson"}
            cpu_before = cpu_seconds(process.pid)
            started = time.perf_counter()
            for body in bodies:
                connection.request("POST", "/_bulk", body=body, headers=headers)
                response = connection.getresponse()
                payload = response.read()
                if response.status != 200 or b'"errors":false' not in payload[:64]:
                    print(f"unexpected response {response.status}: {payload[:200]!r}", file=sys.stderr)
                    return 1
            elapsed = time.perf_counter() - started
            cpu_after = cpu_seconds(process.pid)
            user = cpu_after[0] - cpu_before[0]
            system = cpu_after[1] - cpu_before[1]
            connection.request("GET", "/_double/stats")
            stats = json.loads(connection.getresponse().read())
        finally:
            process.terminate()
            process.wait()
    mode = "full" if args.full else "fast"
    megabytes = sum(len(body) for body in bodies) / 1e6
    print(f"{mode}: {args.docs} docs in {elapsed:.2f} s = {args.docs / elapsed:,.0f} docs/s "
          f"({megabytes / elapsed:.1f} MB/s, {args.batch} docs/request, ~{args.doc_bytes} B/doc); "
          f"double CPU {(user + system) / args.docs * 1e6:.2f} us/doc "
          f"(user {user / args.docs * 1e6:.2f}, system {system / args.docs * 1e6:.2f}); "
          f"double stored {stats['distinct_ids']} ids")
    return 0 if stats["distinct_ids"] == args.docs else 1


if __name__ == "__main__":
    sys.exit(main())
