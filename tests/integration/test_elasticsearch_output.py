#!/usr/bin/env python3
"""Runs `webtrap collector` with its Elasticsearch output against the test double.

The Elasticsearch test double (tests/tools/es_double.py, not Elasticsearch)
serves HTTPS with a CA made for the test and requires basic auth. The test
runs `webtrap collector setup-elasticsearch`, then a collector that receives
generated probe records and delivers them with gzip while the double injects
a whole-request 429, per-item 429s and a mapping error for one document. It
checks that every other event is in the double exactly once, that the
rejected one is in the dead-letter count, and that the requests carried the
credentials, gzip and the NDJSON framing.
"""

import base64
import json
import os
import pathlib
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

from probe_harness import BIN, SOURCE_DIR, wait_for

DOUBLE = SOURCE_DIR / "tests" / "tools" / "es_double.py"
MAKE_RECORDS = SOURCE_DIR / "bench" / "collector" / "make_records.py"
RECORDS = 400
USER, PASSWORD = "webtrap-writer", "correct horse"


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def make_certificates(folder):
    commands = [
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
         "-out", "ca.pem", "-days", "2", "-subj", "/CN=webtrap-test-ca"],
        ["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key",
         "-out", "server.csr", "-subj", "/CN=127.0.0.1"],
        ["openssl", "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
         "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf"],
    ]
    (folder / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    for command in commands:
        subprocess.run(command, cwd=folder, check=True, capture_output=True, timeout=60)


class Double:
    def __init__(self, folder):
        port_file = folder / "es.port"
        self.log = open(folder / "es.log", "wb")
        self.process = subprocess.Popen(
            [sys.executable, str(DOUBLE), "--port-file", str(port_file), "--record", "500",
             "--tls-cert", str(folder / "server.pem"), "--tls-key", str(folder / "server.key"),
             "--basic-auth", f"{USER}:{PASSWORD}"],
            stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(port_file.exists, 20, "the test double's port file")
        self.port = int(port_file.read_text())
        self.context = ssl.create_default_context(cafile=str(folder / "ca.pem"))
        self.auth = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()

    def call(self, method, path, body=None):
        request = urllib.request.Request(f"https://127.0.0.1:{self.port}{path}", method=method,
                                         data=json.dumps(body).encode() if body is not None else None)
        request.add_header("Authorization", self.auth)
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=30, context=self.context) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"{}")

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=30)
        self.log.close()


class Collector:
    def __init__(self, folder, es_port):
        self.folder = folder
        self.config = folder / "collector.yaml"
        self.config.write_text(f"""listen: 127.0.0.1:0
admin: {{listen: 127.0.0.1:0}}
state_dir: {folder / 'state'}
outputs:
  elasticsearch:
    url: [https://127.0.0.1:{es_port}]
    username: {USER}
    password: "{PASSWORD}"
    ca_file: {folder / 'ca.pem'}
    compression: gzip
    timeout: 10s
    batch_max_events: 100
    flush_interval: 100ms
    retry_initial: 100ms
    retry_max: 1s
""")
        self.ports_file = folder / "ports.json"
        self.log_path = folder / "collector.log"
        self.process = None

    def command(self, *args):
        return subprocess.run([BIN, "collector", *args, "--config", str(self.config)],
                              capture_output=True, text=True, timeout=60)

    def start(self):
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [BIN, "collector", "--config", str(self.config), "--ports-file", str(self.ports_file)],
                stdout=log, stderr=subprocess.STDOUT)
        wait_for(lambda: self.ports_file.exists() or self.process.poll() is not None, 30,
                 "the collector's ports file")
        check(self.process.poll() is None, "collector exited at start:\n" + self.log())
        ports = json.loads(self.ports_file.read_text())
        self.ingest_port = ports["ingest"]
        self.admin_port = ports["admin"]

    def log(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def post_records(self, lines, token):
        request = urllib.request.Request(f"http://127.0.0.1:{self.ingest_port}/v1/records",
                                         data=b"".join(line + b"\n" for line in lines), method="POST")
        request.add_header("Content-Type", "application/x-ndjson")
        request.add_header("Authorization", f"Bearer {token}")
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())

    def metric(self, name):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/metrics", timeout=10) as response:
            for line in response.read().decode().splitlines():
                if line.startswith(name + " "):
                    return float(line.rsplit(" ", 1)[1])
        return None


def enrol(collector):
    result = collector.command("enrol", "--sensor-id", "sensor-es", "--group", "lab")
    check(result.returncode == 0, f"enrol failed:\n{result.stdout}{result.stderr}")
    return next(line.split('"')[1] for line in result.stdout.splitlines()
                if line.strip().startswith("token:"))


def run(folder):
    make_certificates(folder)
    double = Double(folder)
    collector = Collector(folder, double.port)
    try:
        exercise(folder, double, collector)
    except Exception:
        print("collector log:\n" + collector.log()[-5000:], file=sys.stderr)
        raise
    finally:
        if collector.process is not None and collector.process.poll() is None:
            collector.process.send_signal(signal.SIGTERM)
            collector.process.wait(timeout=60)
        double.stop()


def exercise(folder, double, collector):
    # Setup: version check, ILM policy, index template, data stream.
    result = collector.command("setup-elasticsearch")
    check(result.returncode == 0, f"setup-elasticsearch failed:\n{result.stdout}{result.stderr}")
    template = json.loads((SOURCE_DIR / "etc/elasticsearch/index-template.json").read_text())
    policy = template["template"]["settings"]["index.lifecycle.name"]
    status, body = double.call("GET", f"/_ilm/policy/{policy}")
    check(status == 200, f"ILM policy {policy} not installed: {status} {body}")
    status, body = double.call("GET", f"/_index_template/{policy}")
    check(status == 200, f"index template {policy} not installed: {status} {body}")
    patterns = body["index_templates"][0]["index_template"]["index_patterns"]
    check(patterns == ["logs-webtrap-default"], f"template patterns {patterns}")
    status, body = double.call("GET", "/_data_stream/logs-webtrap-default")
    check(status == 200 and body["data_streams"][0]["template"] == policy,
          f"data stream not created from the template: {status} {body}")

    records_path = folder / "records.ndjson"
    subprocess.run([sys.executable, str(MAKE_RECORDS), "--count", str(RECORDS), "--seed", "21",
                    "--probe-output", str(records_path)], check=True, capture_output=True, timeout=120)
    lines = [line for line in records_path.read_bytes().splitlines() if line]
    ids = [json.loads(line)["webtrap"]["event_id"] for line in lines]
    check(len(set(ids)) == RECORDS, "the generated records do not have distinct event ids")
    rejected_id = ids[37]

    status, _ = double.call("POST", "/_double/faults", {
        "fail_next": 2, "fail_status": 429, "retry_after": 1,
        "item_429_next": 25,
        "reject_field": "event.id", "reject_value": rejected_id,
        "reject_type": "mapper_parsing_exception"})
    check(status == 200, "setting the faults failed")

    token = enrol(collector)
    collector.start()
    ack = collector.post_records(lines, token)
    check(ack.get("stored") == RECORDS, f"collector stored {ack}")

    def delivered():
        status, stats = double.call("GET", "/_double/stats")
        return stats["distinct_ids"] == RECORDS - 1
    wait_for(delivered, 90, f"{RECORDS - 1} documents in the test double")
    wait_for(lambda: collector.metric('webtrap_collector_output_queue_depth{output="elasticsearch"}') == 0,
             30, "an empty Elasticsearch queue")

    status, body = double.call("GET", "/_double/ids")
    stored = body["ids"]
    check(len(stored) == len(set(stored)), "an id is stored twice")
    check(set(stored) == set(ids) - {rejected_id},
          f"stored ids differ: missing {sorted(set(ids) - {rejected_id} - set(stored))[:5]}, "
          f"extra {sorted(set(stored) - set(ids))[:5]}")
    status, document = double.call("GET", f"/logs-webtrap-default/_doc/{ids[0]}")
    check(status == 200 and "@timestamp" in document["_source"], f"document {ids[0]}: {document}")

    status, stats = double.call("GET", "/_double/stats")
    check(stats["request_errors"].get("429") == 2, f"request-level 429s: {stats['request_errors']}")
    check(stats["item_errors"].get("429") == 25, f"per-item 429s: {stats['item_errors']}")
    check(stats["item_errors"].get("400", 0) >= 1, f"mapping errors: {stats['item_errors']}")
    check(stats["gzip_requests"] >= 1 and stats["gzip_requests"] == stats["bulk_requests"] + 2,
          f"not every _bulk request was gzip: {stats}")

    dead = collector.metric('webtrap_collector_output_dead_lettered_total{output="elasticsearch"}')
    check(dead == 1, f"dead-lettered {dead}, expected 1")
    items = collector.metric('webtrap_collector_es_items_total{output="elasticsearch",status="429"}')
    check(items == 25, f"es_items_total 429 = {items}, expected 25")

    status, recorded = double.call("GET", "/_double/requests")
    bulk = [entry for entry in recorded["requests"] if entry["path"] == "/_bulk"]
    check(bulk, "no _bulk request was recorded")
    for entry in bulk:
        headers = {key.lower(): value for key, value in entry["request_headers"].items()}
        check(headers.get("authorization") == double.auth, "a _bulk request lacks the basic auth header")
        check(headers.get("content-encoding") == "gzip", "a _bulk request is not gzip")
        check(headers.get("content-type") == "application/x-ndjson", f"Content-Type {headers.get('content-type')}")
        check(entry["request_body"].endswith("\n"), "a _bulk body does not end with a newline")

    print("elasticsearch output: all checks passed "
          f"({stats['bulk_requests']} bulk requests, {stats['conflicts']} conflicts)")


def main():
    if shutil.which("openssl") is None or not MAKE_RECORDS.exists():
        print("skipped: openssl or bench/collector/make_records.py is missing")
        return 77
    folder = pathlib.Path(tempfile.mkdtemp(prefix="webtrap-es-output-"))
    try:
        run(folder)
    finally:
        if not os.environ.get("WEBTRAP_KEEP_TEST_DIRS"):
            shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
