#!/usr/bin/env python3
"""Check the Elasticsearch test double against the official _bulk examples.

1. Sends the request examples of the Elasticsearch API specification
   (BulkRequestExample*.json under $WEBTRAP_SHARED_DIR/elasticsearch/examples)
   to tests/tools/es_double.py and compares each response with the matching
   official response example: same keys, same value types, same statuses and
   results per item.
2. Checks that every recorded _bulk response in tests/fixtures/elasticsearch
   has the shape of the official examples, and that every recorded request
   from the output is framed as the _bulk documentation requires.

Exit 77 (skipped) when the official examples are not available.
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
SHARED_DIR = pathlib.Path(os.environ.get("WEBTRAP_SHARED_DIR", SOURCE_DIR.parent / "shared"))
EXAMPLES = SHARED_DIR / "elasticsearch" / "examples"
FIXTURES = SOURCE_DIR / "tests" / "fixtures" / "elasticsearch"
DOUBLE = SOURCE_DIR / "tests" / "tools" / "es_double.py"

failures: list[str] = []


def check(condition: bool, message: str) -> None:
    if not condition:
        failures.append(message)
        print(f"FAIL: {message}", file=sys.stderr)


def load_example(name: str) -> dict:
    return json.loads((EXAMPLES / name).read_text())


def shape(value: object) -> object:
    """Keys and JSON types of `value`, recursively (lists by their first item)."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "null"


def item_body(item: dict) -> tuple[str, dict]:
    check(len(item) == 1, f"bulk item has {len(item)} keys, expected one action: {item}")
    op, body = next(iter(item.items()))
    return op, body


def official_item_shapes() -> tuple[dict, dict]:
    """The shape of a successful item and of a failed item, from the examples."""
    success = None
    failed = None
    for name in ("BulkResponseExample1.json", "BulkResponseExample2.json"):
        for item in load_example(name)["body"]["items"]:
            _, body = item_body(item)
            if "error" in body and failed is None:
                failed = shape(body)
            elif "error" not in body and success is None:
                success = shape(body)
    assert success is not None and failed is not None
    return success, failed


def check_bulk_response(body: dict, where: str, success_shape: dict, failed_shape: dict) -> None:
    top = shape(load_example("BulkResponseExample1.json")["body"])
    check(set(body) == set(top), f"{where}: top-level keys {sorted(body)} != {sorted(top)}")
    check(isinstance(body.get("took"), int), f"{where}: took is not an integer")
    check(isinstance(body.get("errors"), bool), f"{where}: errors is not a boolean")
    items = body.get("items", [])
    any_error = False
    for position, item in enumerate(items):
        op, item_fields = item_body(item)
        check(op in ("create", "index", "update", "delete"), f"{where}[{position}]: action {op!r}")
        expected = failed_shape if "error" in item_fields else success_shape
        any_error = any_error or "error" in item_fields
        actual = shape(item_fields)
        # Key order does not matter in JSON; compare as sorted key/type pairs.
        check(json.dumps(actual, sort_keys=True) == json.dumps(expected, sort_keys=True),
              f"{where}[{position}]: item shape {json.dumps(actual, sort_keys=True)} differs from "
              f"the official {json.dumps(expected, sort_keys=True)}")
    check(body.get("errors") == any_error, f"{where}: errors={body.get('errors')} but items say {any_error}")


class Double:
    def __init__(self) -> None:
        self.folder = tempfile.TemporaryDirectory()
        port_file = pathlib.Path(self.folder.name) / "port"
        self.process = subprocess.Popen([sys.executable, str(DOUBLE), "--port-file", str(port_file)],
                                        stdout=subprocess.DEVNULL)
        for _ in range(200):
            if port_file.exists():
                break
            time.sleep(0.025)
        self.port = int(port_file.read_text())

    def request(self, method: str, path: str, body: bytes = b"",
                content_type: str = "application/x-ndjson") -> tuple[int, object]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        connection.request(method, path, body=body, headers={"Content-Type": content_type})
        response = connection.getresponse()
        payload = response.read()
        connection.close()
        return response.status, json.loads(payload)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait()
        self.folder.cleanup()


def check_examples_against_double(success_shape: dict, failed_shape: dict) -> None:
    double = Double()
    try:
        request = load_example("BulkRequestExample1.json")["body_ndjson"]
        # The specification's example omits the final newline, which
        # Elasticsearch requires; the double must reject it the same way.
        if not request.endswith("\n"):
            status, body = double.request("POST", "/_bulk", request.encode())
            check(status == 400, f"a body without the final newline got HTTP {status}, expected 400")
            check(body.get("error", {}).get("type") == "illegal_argument_exception",
                  f"missing final newline: error {body}")

        pairs = [("BulkRequestExample1.json", "BulkResponseExample1.json"),
                 ("BulkRequestExample3.json", "BulkResponseExample2.json")]
        for request_name, response_name in pairs:
            request = load_example(request_name)["body_ndjson"].rstrip("\n") + "\n"
            official = load_example(response_name)["body"]
            status, body = double.request("POST", "/_bulk", request.encode())
            where = f"double response to {request_name}"
            check(status == 200, f"{where}: HTTP {status}")
            check_bulk_response(body, where, success_shape, failed_shape)
            check(len(body["items"]) == len(official["items"]),
                  f"{where}: {len(body['items'])} items, the official example has {len(official['items'])}")
            check(body["errors"] == official["errors"], f"{where}: errors {body['errors']} != {official['errors']}")
            for position, (ours, theirs) in enumerate(zip(body["items"], official["items"])):
                our_op, our_fields = item_body(ours)
                their_op, their_fields = item_body(theirs)
                check(our_op == their_op, f"{where}[{position}]: action {our_op} != {their_op}")
                for key in ("_index", "_id", "status", "result"):
                    check(our_fields.get(key) == their_fields.get(key),
                          f"{where}[{position}].{key}: {our_fields.get(key)!r} != {their_fields.get(key)!r}")
                if "error" in their_fields:
                    check(our_fields.get("error", {}).get("type") == their_fields["error"]["type"],
                          f"{where}[{position}]: error type {our_fields.get('error')} != {their_fields['error']}")
                    check(our_fields.get("error", {}).get("reason") == their_fields["error"]["reason"],
                          f"{where}[{position}]: error reason differs")
    finally:
        double.stop()


def check_fixtures(success_shape: dict, failed_shape: dict) -> None:
    files = sorted(FIXTURES.glob("*.json"))
    check(len(files) >= 5, f"only {len(files)} fixture files in {FIXTURES}")
    bulk_responses = 0
    for path in files:
        for position, exchange in enumerate(json.loads(path.read_text())["requests"]):
            where = f"{path.name}#{position} {exchange['method']} {exchange['path']}"
            if not exchange["path"].endswith("/_bulk"):
                continue
            headers = {key.lower(): value for key, value in exchange["request_headers"].items()}
            check(headers.get("content-type") == "application/x-ndjson",
                  f"{where}: Content-Type {headers.get('content-type')!r}")
            request = exchange["request_body"]
            check(request.endswith("\n"), f"{where}: request body does not end with a newline")
            lines = request[:-1].split("\n")
            check(len(lines) % 2 == 0, f"{where}: odd number of NDJSON lines")
            for number in range(0, len(lines), 2):
                action = json.loads(lines[number])
                json.loads(lines[number + 1])
                meta = action.get("create")
                check(meta is not None, f"{where} line {number + 1}: action is not create: {action}")
                check(meta is not None and set(meta) == {"_index", "_id"},
                      f"{where} line {number + 1}: action keys {action}")
            response = json.loads(exchange["response_body"])
            if exchange["status"] == 200:
                check_bulk_response(response, where, success_shape, failed_shape)
                check(len(response["items"]) == len(lines) // 2,
                      f"{where}: {len(response['items'])} items for {len(lines) // 2} actions")
                bulk_responses += 1
            else:
                check(set(response) == {"error", "status"}, f"{where}: error body keys {sorted(response)}")
                check(response["status"] == exchange["status"], f"{where}: status field differs")
                check({"type", "reason", "root_cause"} <= set(response["error"]),
                      f"{where}: error object keys {sorted(response['error'])}")
    check(bulk_responses >= 5, f"only {bulk_responses} recorded _bulk responses were checked")


def main() -> int:
    if not (EXAMPLES / "BulkResponseExample1.json").exists():
        print(f"skipped: official examples not found in {EXAMPLES}; set WEBTRAP_SHARED_DIR")
        return 77
    success_shape, failed_shape = official_item_shapes()
    check_examples_against_double(success_shape, failed_shape)
    check_fixtures(success_shape, failed_shape)
    if failures:
        print(f"{len(failures)} check(s) failed", file=sys.stderr)
        return 1
    print("es_double responses and recorded fixtures match the official _bulk examples")
    return 0


if __name__ == "__main__":
    sys.exit(main())
