#!/usr/bin/env python3
"""Check that the Elasticsearch test double's fast mode responds to _bulk as the full mode does.

The fast mode walks the body by offsets and caches the text of created
items, so this test sends the same bodies to a --fast and a full instance
and compares the items: simple create lines, a create of an id already in
the request (409), action lines that need a JSON parse (an escaped id, extra
spaces, no _id), blank lines, a per-item 429 fault and a reject_field
mapping error. It also checks a missing source line (400 for the request),
the distinct id count in /_double/stats and the ids in /_double/ids.
"""

from __future__ import annotations

import http.client
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

SOURCE_DIR = pathlib.Path(os.environ.get("WEBTRAP_SOURCE_DIR", pathlib.Path(__file__).resolve().parents[2]))
DOUBLE = SOURCE_DIR / "tests" / "tools" / "es_double.py"

failures: list[str] = []


def check(condition: bool, message: str) -> None:
    if not condition:
        failures.append(message)
        print(f"FAIL: {message}", file=sys.stderr)


class Double:
    """One es_double.py process on 127.0.0.1, stopped by its pid."""

    def __init__(self, folder: str, name: str, fast: bool) -> None:
        port_file = os.path.join(folder, f"{name}.port")
        command = [sys.executable, str(DOUBLE), "--port-file", port_file]
        if fast:
            command.append("--fast")
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while not os.path.exists(port_file):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"es_double.py ({name}) did not start")
            time.sleep(0.02)
        self.port = int(pathlib.Path(port_file).read_text())

    def request(self, method: str, path: str, body: bytes = b"",
                content_type: str = "application/json") -> tuple[int, dict]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request(method, path, body=body, headers={"Content-Type": content_type})
            response = connection.getresponse()
            return response.status, json.loads(response.read())
        finally:
            connection.close()

    def bulk(self, lines: list[str]) -> tuple[int, dict]:
        body = "".join(line + "\n" for line in lines).encode()
        return self.request("POST", "/_bulk", body, "application/x-ndjson")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def document(number: int, extra: str = "") -> str:
    return json.dumps({"@timestamp": "2026-01-01T00:00:00Z", "event": {"id": f"e{number}"},
                       "message": "x" * 300 + extra}, separators=(",", ":"))


def summary(items: list[dict]) -> list[tuple]:
    """Operation, status, _id, _index, result, _seq_no and error type of each item."""
    rows = []
    for item in items:
        (op, body), = item.items()
        rows.append((op, body.get("status"), body.get("_id"), body.get("_index"), body.get("result"),
                     body.get("_seq_no"), (body.get("error") or {}).get("type")))
    return rows


def first_batch() -> list[str]:
    lines = []
    for number in range(5):
        lines.append(f'{{"create":{{"_index":"bench-a","_id":"id-{number}"}}}}')
        lines.append(document(number))
    # The same id again in the same request: a version conflict.
    lines.append('{"create":{"_index":"bench-a","_id":"id-2"}}')
    lines.append(document(2))
    # An index operation, a second index and a blank line between items.
    lines.append('{"index":{"_index":"bench-b","_id":"id-0"}}')
    lines.append(document(10))
    lines.append("")
    # Action lines that the fast mode's pattern does not match.
    lines.append('{"create":{"_index":"bench-a","_id":"quote\\"d"}}')
    lines.append(document(11))
    lines.append('{ "create" : { "_index" : "bench-a", "_id" : "spaced" } }')
    lines.append(document(12))
    # A document line that looks like an action line stays a document.
    lines.append('{"create":{"_index":"bench-a","_id":"id-20"}}')
    lines.append('{"create":{"_index":"bench-a","_id":"id-21"}}')
    lines.append('{"create":{"_index":"bench-a","_id":"id-22"}}')
    lines.append(document(22))
    return lines


def compare_modes(folder: str) -> None:
    fast = Double(folder, "fast", fast=True)
    full = Double(folder, "full", fast=False)
    try:
        lines = first_batch()
        fast_status, fast_body = fast.bulk(lines)
        full_status, full_body = full.bulk(lines)
        check(fast_status == 200, f"fast mode: _bulk returned {fast_status}")
        check(full_status == 200, f"full mode: _bulk returned {full_status}")
        check(fast_body.get("errors") is True, "fast mode: errors is not true despite a 409")
        fast_rows = summary(fast_body["items"])
        full_rows = summary(full_body["items"])
        check(len(fast_rows) == 11, f"fast mode: {len(fast_rows)} items for 11 actions")
        for position, (fast_row, full_row) in enumerate(zip(fast_rows, full_rows)):
            check(fast_row == full_row, f"item {position}: fast {fast_row} != full {full_row}")
        check(fast_rows[5][1] == 409, f"repeated id: status {fast_rows[5][1]}, expected 409")

        # A second request whose items hit the per-request cache of created
        # item text, then a conflict with the first request.
        second = []
        for number in range(5, 8):
            second += [f'{{"create":{{"_index":"bench-a","_id":"id-{number}"}}}}', document(number)]
        second += ['{"create":{"_index":"bench-a","_id":"id-0"}}', document(0)]
        fast_status, fast_body = fast.bulk(second)
        full_status, full_body = full.bulk(second)
        check(summary(fast_body["items"]) == summary(full_body["items"]),
              f"second request: fast {summary(fast_body['items'])} != full {summary(full_body['items'])}")

        # Faults: one per-item 429, then documents with a rejected value.
        faults = json.dumps({"item_429_next": 1, "reject_field": "event.id",
                             "reject_value": "e31"}).encode()
        for double in (fast, full):
            status, _ = double.request("POST", "/_double/faults", faults)
            check(status == 200, f"setting faults returned {status}")
        third = []
        for number in range(30, 33):
            third += [f'{{"create":{{"_index":"bench-a","_id":"id-{number}"}}}}', document(number)]
        fast_status, fast_body = fast.bulk(third)
        full_status, full_body = full.bulk(third)
        fast_rows = summary(fast_body["items"])
        check(fast_rows == summary(full_body["items"]),
              f"faults: fast {fast_rows} != full {summary(full_body['items'])}")
        check([row[1] for row in fast_rows] == [429, 400, 201],
              f"faults: statuses {[row[1] for row in fast_rows]}, expected [429, 400, 201]")

        # A create without its source line fails the whole request.
        status, body = fast.bulk(['{"create":{"_index":"bench-a","_id":"id-40"}}'])
        check(status == 400, f"missing source line: status {status}, expected 400")
        check("no source line" in json.dumps(body), f"missing source line: body {body}")
        status, body = fast.request("POST", "/_bulk", b'{"create":{"_index":"bench-a","_id":"x"}}',
                                    "application/x-ndjson")
        check(status == 400, f"no final newline: status {status}, expected 400")

        _, fast_stats = fast.request("GET", "/_double/stats")
        _, full_stats = full.request("GET", "/_double/stats")
        check(fast_stats["distinct_ids"] == full_stats["distinct_ids"],
              f"distinct ids: fast {fast_stats['distinct_ids']} != full {full_stats['distinct_ids']}")
        check(fast_stats["distinct_ids"] == 14, f"distinct ids: {fast_stats['distinct_ids']}, expected 14")
        check(fast_stats["created"] == full_stats["created"],
              f"created: fast {fast_stats['created']} != full {full_stats['created']}")
        _, fast_ids = fast.request("GET", "/_double/ids")
        _, full_ids = full.request("GET", "/_double/ids")
        check(fast_ids["ids"] == full_ids["ids"], f"ids: fast {fast_ids['ids']} != full {full_ids['ids']}")
    finally:
        fast.stop()
        full.stop()


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="es-double-fast-") as folder:
        compare_modes(folder)
    if failures:
        print(f"{len(failures)} check(s) failed", file=sys.stderr)
        return 1
    print("es_double fast mode: items, stats and ids match the full mode")
    return 0


if __name__ == "__main__":
    sys.exit(main())
