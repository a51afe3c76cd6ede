#!/usr/bin/env python3
"""Checks that GET /healthz on the collector's admin listener shows each file
input, and that a file input that cannot open its file marks the collector
degraded without failing the check.

The collector runs on 127.0.0.1 with two file inputs: one whose file exists
and one whose file is missing. /healthz must return 200 with status
"degraded" and name the missing file with open_failing true, as the gauge
webtrap_collector_file_open_failing does. Once the file is created and
read, the status is "ok" again.

Exit status: 0 pass, 1 a check failed, 77 WEBTRAP_BIN is not set.
"""

import json
import os
import pathlib
import sys
import urllib.error
import urllib.request

from collector_checks import Collector, check, run_checks, wait_for

SOURCE_DIR = pathlib.Path(os.environ.get("WEBTRAP_SOURCE_DIR",
                                         pathlib.Path(__file__).resolve().parents[2]))
MODSEC3_RECORD = (SOURCE_DIR / "tests" / "fixtures" / "modsecurity" /
                  "modsec3-nginx-sqli.json").read_bytes().strip()


def healthz(collector):
    url = f"http://127.0.0.1:{collector.admin_port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def metric(collector, name):
    url = f"http://127.0.0.1:{collector.admin_port}/metrics"
    with urllib.request.urlopen(url, timeout=30) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.rsplit(" ", 1)[1])
    return None


def missing_file_is_degraded(workdir):
    present = workdir / "present.json"
    present.write_bytes(MODSEC3_RECORD + b"\n")
    missing = workdir / "logs" / "missing.json"
    collector = Collector(workdir, extra=(
        "inputs:\n"
        "  files:\n"
        f"    - {{path: {present}, format: modsec3, sensor_id: web1, poll_interval: 100ms}}\n"
        f"    - {{path: {missing}, format: modsec3, sensor_id: web2, poll_interval: 100ms}}\n"))
    collector.start()
    try:
        failing_gauge = f'webtrap_collector_file_open_failing{{path="{missing}"}}'
        wait_for(lambda: metric(collector, failing_gauge) == 1, 30,
                 "the missing file's open_failing gauge")
        status, body = healthz(collector)
        check(status == 200, f"/healthz with a missing file: expected 200, got {status} {body}")
        check(body["status"] == "degraded", f"expected status degraded, got {body}")
        check(body["store"]["ok"] is True, f"expected the store ok, got {body}")
        inputs = {entry["path"]: entry for entry in body.get("file_inputs", [])}
        check(set(inputs) == {str(present), str(missing)}, f"file inputs listed: {body}")
        check(inputs[str(present)]["open_failing"] is False, f"present file: {inputs}")
        check("error" not in inputs[str(present)], f"present file has an error: {inputs}")
        check(inputs[str(missing)]["open_failing"] is True, f"missing file: {inputs}")
        check("No such file" in inputs[str(missing)]["error"], f"missing file's error: {inputs}")

        missing.parent.mkdir()
        missing.write_bytes(MODSEC3_RECORD + b"\n")
        wait_for(lambda: healthz(collector)[1]["status"] == "ok", 30,
                 "/healthz status ok after the file was created")
        status, body = healthz(collector)
        check(status == 200, f"/healthz after the file was created: {status} {body}")
        inputs = {entry["path"]: entry for entry in body["file_inputs"]}
        check(inputs[str(missing)]["open_failing"] is False, f"created file: {inputs}")
        check(metric(collector, failing_gauge) == 0, "the gauge did not return to 0")
    finally:
        collector.stop()


def no_file_inputs_listed_empty(workdir):
    collector = Collector(workdir)
    collector.start()
    try:
        status, body = healthz(collector)
    finally:
        collector.stop()
    check(status == 200, f"/healthz: {status} {body}")
    check(body["status"] == "ok", f"expected status ok, got {body}")
    check(body.get("file_inputs") == [], f"expected an empty file_inputs list, got {body}")


CHECKS = [missing_file_is_degraded, no_file_inputs_listed_empty]


def main():
    return run_checks(CHECKS, "collector-healthz-")


if __name__ == "__main__":
    sys.exit(main())
