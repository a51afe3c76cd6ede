#!/usr/bin/env python3
"""Measure how many documents per second es_double.py --fast takes.

Starts the double on loopback, builds all _bulk bodies in advance (so the
client does little work per request), sends them over one keep-alive
connection, and prints documents per second. Standard library only.

    tests/tools/es_double_bench.py --docs 200000 --batch 1000 --doc-bytes 1500
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=200_000, help="documents to send (default 200000)")
    parser.add_argument("--batch", type=int, default=1000, help="documents per _bulk request (default 1000)")
    parser.add_argument("--doc-bytes", type=int, default=1500, help="approximate document size (default 1500)")
    parser.add_argument("--full", action="store_true", help="measure the full mode instead of --fast")
    args = parser.parse_args()

    double = pathlib.Path(__file__).with_name("es_double.py")
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
            started = time.perf_counter()
            for body in bodies:
                connection.request("POST", "/_bulk", body=body, headers=headers)
                response = connection.getresponse()
                payload = response.read()
                if response.status != 200 or b'"errors":false' not in payload[:64]:
                    print(f"unexpected response {response.status}: {payload[:200]!r}", file=sys.stderr)
                    return 1
            elapsed = time.perf_counter() - started
            connection.request("GET", "/_double/stats")
            stats = json.loads(connection.getresponse().read())
        finally:
            process.terminate()
            process.wait()
    mode = "full" if args.full else "fast"
    megabytes = sum(len(body) for body in bodies) / 1e6
    print(f"{mode}: {args.docs} docs in {elapsed:.2f} s = {args.docs / elapsed:,.0f} docs/s "
          f"({megabytes / elapsed:.1f} MB/s, {args.batch} docs/request, ~{args.doc_bytes} B/doc); "
          f"double stored {stats['distinct_ids']} ids")
    return 0 if stats["distinct_ids"] == args.docs else 1


if __name__ == "__main__":
    sys.exit(main())
