#!/usr/bin/env python3
"""Checks that the dead-letter reason of a rejected record gives advice the
sender on that input can follow.

Each check starts its own collector on 127.0.0.1 with a temporary state
folder:

- two libmodsecurity records in one POST /v1/modsecurity body: the reason
  states that the endpoint takes one record per request and names the file
  input, where several records go, instead of asking for one record per
  line;
- a libmodsecurity record in a POST /v1/records batch: the reason names
  POST /v1/modsecurity and the file input, instead of a format setting that
  the probe input does not have;
- a record that starts with a UTF-8 byte order mark, alone in a POST
  /v1/modsecurity body, is stored as it is when it comes in a batch.

Every check runs even when an earlier one fails, and the test exits 1 if any
failed.
"""

import json
import os
import pathlib
import sys

from collector_checks import Collector, check, run_checks

SOURCE_DIR = pathlib.Path(os.environ.get("WEBTRAP_SOURCE_DIR",
                                         pathlib.Path(__file__).resolve().parents[2]))
MODSEC3_RECORD = (SOURCE_DIR / "tests" / "fixtures" / "modsecurity" /
                  "modsec3-nginx-sqli.json").read_bytes().strip()


def dead_letter_reasons(collector):
    result = collector.command("dead-letters", "--limit", "10")
    check(result.returncode == 0, f"dead-letters failed:\n{result.stdout}{result.stderr}")
    return [json.loads(line)["reason"] for line in result.stdout.splitlines()]


def two_records_in_one_post(workdir):
    collector = Collector(workdir)
    token = collector.enrol("nginx1")
    collector.start()
    try:
        body = MODSEC3_RECORD + b"\n" + MODSEC3_RECORD + b"\n"
        status, response = collector.post("/v1/modsecurity", token, body,
                                          {"Content-Type": "application/json"})
    finally:
        collector.stop()
    check(status == 200, f"expected 200, got {status} {response!r}")
    check(json.loads(response)["rejected"] == 1, f"expected one rejected body, got {response!r}")
    reasons = dead_letter_reasons(collector)
    check(len(reasons) == 1, f"expected one dead letter, got {reasons}")
    reason = reasons[0]
    check("one record per request" in reason, f"the reason does not say one record per "
                                              f"request: {reason}")
    check("inputs.files" in reason, f"the reason does not name the file input: {reason}")
    check("per line" not in reason, f"the reason asks for one record per line: {reason}")


def modsecurity_record_in_probe_batch(workdir):
    collector = Collector(workdir)
    token = collector.enrol("sensor-a")
    collector.start()
    try:
        status, response = collector.post("/v1/records", token, MODSEC3_RECORD + b"\n",
                                          {"Content-Type": "application/x-ndjson"})
    finally:
        collector.stop()
    check(status == 200, f"expected 200, got {status} {response!r}")
    check(json.loads(response)["rejected"] == 1, f"expected one rejected line, got {response!r}")
    reasons = dead_letter_reasons(collector)
    check(len(reasons) == 1, f"expected one dead letter, got {reasons}")
    reason = reasons[0]
    check("not a webtrap probe record" in reason, f"the reason does not say why: {reason}")
    check("POST /v1/modsecurity" in reason, f"the reason does not name /v1/modsecurity: {reason}")
    check("inputs.files" in reason, f"the reason does not name the file input: {reason}")
    check("read it as" not in reason, f"the reason offers a format setting: {reason}")


def record_with_byte_order_mark(workdir):
    collector = Collector(workdir)
    token = collector.enrol("nginx1")
    collector.start()
    try:
        status, response = collector.post("/v1/modsecurity", token,
                                          b"\xef\xbb\xbf" + MODSEC3_RECORD,
                                          {"Content-Type": "application/json"})
    finally:
        collector.stop()
    # The decoder skips a UTF-8 byte order mark, as it does in a batch or a
    # file, so the body check before it must not reject the record.
    check(status == 200, f"expected 200, got {status} {response!r}")
    if status == 200:
        check(json.loads(response)["stored"] == 1, f"expected one stored record, got {response!r}")


CHECKS = [two_records_in_one_post, modsecurity_record_in_probe_batch,
          record_with_byte_order_mark]


def main():
    return run_checks(CHECKS, "collector-advice-")


if __name__ == "__main__":
    sys.exit(main())
