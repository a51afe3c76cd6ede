#!/usr/bin/env python3
"""Streams records from two probes to Elasticsearch through faults, and checks that none is lost.

Two probes take a paced wrk load (benign and attack-looking requests, half
of the total each) and their shippers send the spool to one collector,
which delivers to the Elasticsearch test double (tests/tools/es_double.py).
While records flow, the test kills the collector with SIGKILL and restarts
it twice, makes the double return 429 and 503 for whole requests and
per-item 429s for a while, and takes the double down for several seconds. It
also posts malformed lines through a third sensor. Afterwards it checks:

- the ids in the double are exactly the event ids in both spools, each
  created once (409 conflicts from resends are counted, not errors);
- the collector's store holds each spool record once, and its output cursor
  has reached the end of the queue;
- the malformed lines are in the dead-letter store and counted in /metrics;
- the counters of the probes, the shippers, the collector and the double
  agree (see check_counters for the relations).

WEBTRAP_FAULT_RECORDS sets the total number of requests (default 100000).
Exit status: 0 pass, 1 a check failed, 77 a required tool is missing.
"""

import json
import os
import pathlib
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

try:
    import yaml
except ImportError:
    print("SKIP: python3-yaml is not installed (scripts/install-deps.sh --with-tests)")
    sys.exit(77)

from probe_harness import BIN, SOURCE_DIR, Probe, wait_for

TOTAL_RECORDS = int(os.environ.get("WEBTRAP_FAULT_RECORDS", "100000"))
PROBE_COUNT = 2
LOAD_CHUNKS = 10            # wrk runs per probe, paced, so the load spans the faults
LOAD_PAUSE_SECONDS = 1.0    # pause between two chunks of one probe
LOAD_CONNECTIONS = 16       # below the probe's per-source connection cap of 32
TEST_BUDGET_SECONDS = 240   # the whole run, from the first probe start
LOAD_SCRIPT = pathlib.Path(__file__).with_name("fault_load.lua")
ES_DOUBLE = SOURCE_DIR / "tests" / "tools" / "es_double.py"
OUTPUT_NAME = "elasticsearch"
# Faults counted in requests or items, so each one takes effect whatever the
# timing; the test checks the double's error counts against them.
BULK_429_COUNT = 6
BULK_503_COUNT = 4
ITEM_429_COUNT = 200
OUTAGE_SECONDS = 5

# Malformed lines posted through the third sensor: each must go to the
# dead-letter store as rejected, and the batch must still get a 200.
MALFORMED_LINES = [
    b'{"transaction": {"client_ip": "192.0.2.1", ',  # cut-off JSON
    b"this is not json at all",
    b'{"hello": "a JSON object that is not an audit record"}',
    b"[1, 2, 3]",
]


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def free_port():
    """Returns a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_request(method, url, body=None, headers=None, timeout=10):
    """Sends one request and returns (status, body bytes); HTTP errors are returned, not raised."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


LABEL_PATTERN = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """Parses Prometheus text into a list of (name, labels dict, value)."""
    samples = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        series, value = line.rsplit(" ", 1)
        name, _, label_text = series.partition("{")
        labels = dict(LABEL_PATTERN.findall(label_text))
        samples.append((name, labels, float(value)))
    return samples


def metric_sum(samples, name, **labels):
    """Sums every sample of `name` whose labels include `labels`; None when there is none."""
    values = [value for sample_name, sample_labels, value in samples
              if sample_name == name and all(sample_labels.get(k) == v for k, v in labels.items())]
    return sum(values) if values else None


class EsDouble:
    """The Elasticsearch test double in fast mode (ids only), on a loopback port."""

    def __init__(self, workdir):
        port_file = workdir / "es-double.port"
        self.log = open(workdir / "es-double.log", "wb")
        self.process = subprocess.Popen(
            [sys.executable, str(ES_DOUBLE), "--host", "127.0.0.1", "--port", "0",
             "--port-file", str(port_file), "--fast"],
            stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(lambda: port_file.exists() or self.process.poll() is not None, 30,
                 "the Elasticsearch test double's port file")
        if self.process.poll() is not None:
            raise RuntimeError("the Elasticsearch test double exited at start; see es-double.log")
        self.url = f"http://127.0.0.1:{int(port_file.read_text())}"

    def control(self, method, path, payload=None):
        """Sends a /_double/ request, waiting out an injected outage (which refuses these too)."""
        body = json.dumps(payload).encode() if payload is not None else None
        give_up = time.monotonic() + 30
        while True:
            try:
                status, data = http_request(method, self.url + path, body,
                                            {"Content-Type": "application/json"}, timeout=30)
                break
            except OSError:
                if time.monotonic() > give_up or self.process.poll() is not None:
                    raise
                time.sleep(0.2)
        if status != 200:
            raise RuntimeError(f"{method} {path} on the test double returned {status}: {data[:300]!r}")
        return json.loads(data)

    def set_faults(self, **faults):
        return self.control("POST", "/_double/faults", faults)

    def stats(self):
        return self.control("GET", "/_double/stats")

    def faults(self):
        return self.control("GET", "/_double/faults")

    def ids(self):
        return self.control("GET", "/_double/ids")["ids"]

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


class Collector:
    """A `webtrap collector` process that the test kills and restarts on the same ports and store."""

    def __init__(self, workdir, es_url):
        self.dir = workdir / "collector"
        self.dir.mkdir()
        self.ingest_port = free_port()
        self.admin_port = free_port()
        self.url = f"http://127.0.0.1:{self.ingest_port}"
        self.admin_url = f"http://127.0.0.1:{self.admin_port}"
        self.config = self.dir / "collector.yaml"
        self.config.write_text(f"""listen: 127.0.0.1:{self.ingest_port}
admin:
  listen: 127.0.0.1:{self.admin_port}
state_dir: {self.dir / "state"}
outputs:
  elasticsearch:
    url: {es_url}
    batch_max_events: 1000
    flush_interval: 200ms
    retry_initial: 100ms
    retry_max: 2s
""")
        self.store_path = self.dir / "state" / "store.sqlite"
        self.log_path = self.dir / "collector.log"
        self.process = None
        self.starts = 0
        self.kills = 0

    def run_command(self, *args):
        result = subprocess.run([BIN, "collector", *args, "--config", str(self.config)],
                                capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            raise RuntimeError(f"webtrap collector {' '.join(args)} failed ({result.returncode}):\n"
                               f"{result.stdout}{result.stderr}")
        return result.stdout

    def enrol(self, sensor_id):
        """Enrols a sensor and returns (token, the printed probe configuration as a dict)."""
        output = self.run_command("enrol", "--sensor-id", sensor_id)
        return parse_enrolment(output, sensor_id)

    def start(self):
        self.starts += 1
        with open(self.log_path, "ab") as log_file:
            log_file.write(f"---- start {self.starts} ----\n".encode())
            log_file.flush()
            self.process = subprocess.Popen([BIN, "collector", "--config", str(self.config)],
                                            stdout=log_file, stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: self.healthy() or self.process.poll() is not None, 60,
                     "the collector's /healthz")
        except TimeoutError:
            raise RuntimeError("collector did not become healthy:\n" + self.log_tail())
        if self.process.poll() is not None:
            raise RuntimeError(f"collector exited at start ({self.process.returncode}):\n"
                               + self.log_tail())

    def healthy(self):
        try:
            status, _ = http_request("GET", self.admin_url + "/healthz", timeout=2)
        except OSError:
            return False
        return status in (200, 503)  # 503 is an unhealthy but running collector

    def kill(self):
        self.kills += 1
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self):
        if self.process is None or self.process.poll() is not None:
            return None
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        return self.process.returncode

    def metrics(self):
        status, data = http_request("GET", self.admin_url + "/metrics", timeout=10)
        if status != 200:
            raise RuntimeError(f"collector /metrics returned {status}")
        return parse_metrics(data.decode())

    def log_tail(self, lines=40):
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def query(self, sql, *args):
        """Runs one read-only query on the store; the collector may be writing meanwhile (WAL)."""
        connection = sqlite3.connect(f"file:{self.store_path}?mode=ro", uri=True, timeout=10)
        try:
            return connection.execute(sql, args).fetchall()
        finally:
            connection.close()

    def stored_events(self):
        if not self.store_path.exists():
            return 0
        try:
            return self.query("SELECT count(*) FROM events")[0][0]
        except sqlite3.OperationalError:
            return 0  # schema not created yet, or busy for longer than the timeout


def parse_enrolment(output, sensor_id):
    """Finds the token and the probe configuration lines in the output of `collector enrol`.

    The configuration is the `shipper:` line and the indented lines after it.
    """
    lines = output.splitlines()
    try:
        first = next(i for i, line in enumerate(lines) if line.rstrip() == "shipper:")
    except StopIteration:
        raise RuntimeError(f"no `shipper:` section in the enrol output for {sensor_id}:\n{output}")
    block = [lines[first]]
    for line in lines[first + 1:]:
        if not line.startswith((" ", "\t")):
            break
        block.append(line)
    config = yaml.safe_load("\n".join(block))
    token = config["shipper"].get("token")
    if not token:
        raise RuntimeError(f"no token in the enrol output for {sensor_id}:\n{output}")
    return token, config


def probe_config(sensor_id, enrolled):
    """Builds the probe configuration: the enrolment's lines plus a small inspection queue.

    The small queue sheds inspection early under the load, so the two
    probes' inspection threads leave CPU time to the collector. Shed
    requests are still recorded.
    """
    config = dict(enrolled)
    config.setdefault("sensor", {})["id"] = sensor_id
    config["pipeline"] = {"workers": 1, "queue_limit": 256}
    # The checks read every record back from the spool, so no segment may be
    # deleted at the disk cap (about 2.6 KB per record here).
    config["spool"] = {"max_bytes": "8GiB"}
    config["shipper"] = dict(config["shipper"])
    config["shipper"].update({"retry_initial": "100ms", "retry_max": "1s", "interval": "200ms",
                              "timeout": "20s"})
    return yaml.safe_dump(config, sort_keys=False)


def spool_event_ids(probe):
    """Every event id in the probe's spool segments, in order (duplicates kept)."""
    ids = []
    for segment in sorted(probe.spool.glob("segment-*.ndjson")):
        with open(segment, "rb") as handle:
            for line in handle:
                if not line.endswith(b"\n"):
                    raise AssertionError(f"{segment} ends with a partial line after the load settled")
                ids.append(json.loads(line)["webtrap"]["event_id"])
    return ids


class LoadDriver(threading.Thread):
    """Sends `target` requests to one probe in paced wrk chunks.

    All chunks but the last use LOAD_CONNECTIONS connections and may record
    a few requests more than asked (see fault_load.lua). Before the last
    chunk the driver waits for the probe to write every record, then sends
    the exact remainder on one connection, so the probe ends with exactly
    `target` records unless an earlier chunk already passed it.
    """

    def __init__(self, probe, name, target, workdir):
        super().__init__(name=f"load-{name}", daemon=True)
        self.probe = probe
        self.label = name
        self.target = target
        self.workdir = workdir
        self.error = None
        self.finished_at = None

    def records_written(self):
        return self.probe.metrics().get("webtrap_spool_records_written_total", 0)

    def settle(self):
        """Waits until the probe has written a record for every request it received."""
        def settled():
            metrics = self.probe.metrics()
            return (metrics.get("webtrap_inspection_queue_depth", 0) == 0
                    and metrics.get("webtrap_spool_records_written_total", 0)
                    >= metrics.get("webtrap_requests_total", 0))
        wait_for(settled, 60, f"probe {self.label} to write every record")
        return int(self.records_written())

    def run_wrk(self, chunk, limit, connections):
        done_file = self.workdir / f"wrk-{self.label}-{chunk}.done"
        url = f"http://127.0.0.1:{self.probe.http_port}/"
        process = subprocess.Popen(
            ["wrk", "-t1", f"-c{connections}", "-d300s", "-s", str(LOAD_SCRIPT), url,
             "--", str(limit), f"{self.label}c{chunk}", str(done_file)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: done_file.exists() or process.poll() is not None, 120,
                     f"wrk chunk {chunk} on probe {self.label}")
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
            output = process.communicate(timeout=30)[0].decode(errors="replace")
        if not done_file.exists():
            raise RuntimeError(f"wrk ended before {limit} responses:\n{output}")

    def run(self):
        try:
            per_chunk = self.target // LOAD_CHUNKS
            for chunk in range(LOAD_CHUNKS - 1):
                self.run_wrk(chunk, per_chunk, LOAD_CONNECTIONS)
                time.sleep(LOAD_PAUSE_SECONDS)
            written = self.settle()
            remainder = self.target - written
            if remainder > 0:
                self.run_wrk(LOAD_CHUNKS - 1, remainder, 1)
            self.settle()
        except Exception as error:  # reported by the main thread
            self.error = error
        self.finished_at = time.monotonic()


class FaultPlan:
    """Faults keyed to the share of records the collector has stored, so each one lands mid-stream."""

    def __init__(self, collector, double, malformed_token):
        self.collector = collector
        self.double = double
        self.malformed_token = malformed_token
        self.injected = []
        self.malformed_response = None
        self.item_429_until = None
        self.outage = None  # (end on the monotonic clock, documents created before it)
        self.created_during_outage = None
        self.steps = [
            (0.05, f"double: 429 on the next {BULK_429_COUNT} bulk requests", self.bulk_429),
            (0.15, "collector: SIGKILL and restart (1)", self.kill_collector),
            (0.30, f"double: per-item 429 on the next {ITEM_429_COUNT} items, then on 30% of "
                   "items for 4 s", self.item_429),
            (0.45, f"double: down for {OUTAGE_SECONDS} s", self.double_down),
            (0.60, "collector: SIGKILL and restart (2)", self.kill_collector),
            (0.70, "collector: malformed lines from a third sensor", self.post_malformed),
            (0.80, f"double: 503 on the next {BULK_503_COUNT} bulk requests", self.bulk_503),
        ]

    def bulk_429(self):
        self.double.set_faults(fail_next=BULK_429_COUNT, fail_status=429, retry_after=1)

    def bulk_503(self):
        self.double.set_faults(fail_next=BULK_503_COUNT, fail_status=503, retry_after=0)

    def item_429(self):
        self.double.set_faults(item_429_next=ITEM_429_COUNT, item_429_fraction=0.3)
        self.item_429_until = time.monotonic() + 4

    def double_down(self):
        created = self.double.stats()["created"]
        self.double.set_faults(down_seconds=OUTAGE_SECONDS)
        self.outage = (time.monotonic() + OUTAGE_SECONDS, created)

    def kill_collector(self):
        self.collector.kill()
        time.sleep(1.0)  # the shippers see refused connections meanwhile
        self.collector.start()

    def post_malformed(self):
        body = b"\n".join(MALFORMED_LINES) + b"\n"
        status, data = http_request(
            "POST", self.collector.url + "/v1/records", body,
            {"Authorization": f"Bearer {self.malformed_token}",
             "Content-Type": "application/x-ndjson"}, timeout=30)
        self.malformed_response = (status, data.decode(errors="replace"))

    def poll(self):
        """Runs every step whose threshold the stored share has reached; True when all ran."""
        if self.item_429_until and time.monotonic() >= self.item_429_until:
            self.double.set_faults(item_429_fraction=0.0)
            self.item_429_until = None
        if self.outage and time.monotonic() >= self.outage[0]:
            # Measured up to the first control request after the outage, so
            # a delivery right after its end may count too.
            self.created_during_outage = self.double.stats()["created"] - self.outage[1]
            self.outage = None
        if not self.steps:
            return self.item_429_until is None and self.outage is None
        fraction = self.collector.stored_events() / TOTAL_RECORDS
        while self.steps and fraction >= self.steps[0][0]:
            threshold, description, action = self.steps[0]
            if action == self.bulk_503 and self.double.faults()["fail_next"] > 0:
                break  # setting fail_next again would cancel the 429s not yet sent
            self.steps.pop(0)
            log(f"at {fraction:.0%} stored: {description}")
            action()
            self.injected.append(description)
        return not self.steps and self.item_429_until is None and self.outage is None


class Checks:
    """Collects failed checks, so one run reports every mismatch."""

    def __init__(self):
        self.failures = []

    def equal(self, what, actual, expected):
        if actual != expected:
            self.failures.append(f"{what}: {actual} != {expected}")
            log(f"FAIL {what}: {actual} != {expected}")
        else:
            log(f"ok   {what}: {actual}")

    def true(self, what, condition, detail=""):
        if not condition:
            self.failures.append(f"{what} {detail}".strip())
            log(f"FAIL {what} {detail}".strip())
        else:
            log(f"ok   {what}")


def wait_until_delivered(collector, expected, deadline):
    """Waits until the store contains `expected` events and the Elasticsearch output has caught up.

    Caught up means webtrap_collector_output_queue_depth is 0 in /metrics and
    the output's cursor in the store is the last seq.
    """
    last = None
    while time.monotonic() < deadline:
        try:
            rows = collector.query(
                "SELECT (SELECT count(*) FROM events), (SELECT coalesce(max(seq), 0) FROM events), "
                "(SELECT seq FROM cursors WHERE output = ?)", OUTPUT_NAME)
            depth = metric_sum(collector.metrics(), "webtrap_collector_output_queue_depth",
                               output=OUTPUT_NAME)
            stored, last_seq, cursor = rows[0]
            last = f"stored {stored}, last seq {last_seq}, cursor {cursor}, queue depth {depth}"
            if stored >= expected and cursor == last_seq and depth == 0:
                return last
        except sqlite3.OperationalError:
            pass
        time.sleep(0.25)
    raise TimeoutError(f"the collector did not deliver everything in time: {last}; "
                       f"expected {expected} events")


def check_everything(probes, collector, double, plan, checks):
    # Spools: every record written, once.
    spool_ids = []
    for probe in probes:
        ids = spool_event_ids(probe)
        written = probe.metrics().get("webtrap_spool_records_written_total")
        checks.equal(f"probe {probe.sensor_id}: spool lines == records written", len(ids), written)
        spool_ids.extend(ids)
    spool_set = set(spool_ids)
    checks.equal("event ids in the spools are unique", len(spool_set), len(spool_ids))

    # The double: every spool id exactly once.
    double_ids = double.ids()
    double_set = set(double_ids)
    stats = double.stats()
    missing = spool_set - double_set
    extra = double_set - spool_set
    checks.equal("ids missing from the double", len(missing), 0)
    checks.equal("ids in the double that no probe wrote", len(extra), 0)
    checks.equal("double: ids listed once each", len(double_ids), len(double_set))
    checks.equal("double: created == distinct ids", stats["created"], stats["distinct_ids"])
    checks.equal("double: distinct ids == spool records", stats["distinct_ids"], len(spool_set))
    if missing:
        log(f"first missing ids: {sorted(missing)[:5]}")

    # Each injected fault reached the collector's output.
    request_errors = stats["request_errors"]
    checks.equal("double: bulk requests answered 429", request_errors.get("429", 0), BULK_429_COUNT)
    checks.equal("double: bulk requests answered 503", request_errors.get("503", 0), BULK_503_COUNT)
    checks.true("double: items answered 429",
                stats["item_errors"].get("429", 0) >= ITEM_429_COUNT,
                f"{stats['item_errors'].get('429', 0)} < {ITEM_429_COUNT}")
    checks.true("double: connections refused while down", stats.get("refused_connections", 0) > 0,
                "(none: the collector sent nothing during the outage)")

    # The store: each spool record once, the output cursor at the end.
    store_ids = [row[0] for row in collector.query("SELECT event_id FROM events")]
    checks.equal("store: events == spool records", len(store_ids), len(spool_set))
    checks.true("store: the same ids as the spools", set(store_ids) == spool_set)

    # Dead letters, through the command a user would run.
    output = collector.run_command("dead-letters", "--limit", "100")
    letters = [json.loads(line) for line in output.splitlines() if line.strip()]
    ingest_letters = [letter for letter in letters if letter["output"] == "ingest"]
    checks.equal("dead letters from ingest", len(ingest_letters), len(MALFORMED_LINES))
    checks.equal("dead letters from outputs", len(letters) - len(ingest_letters), 0)
    payloads = {letter["payload"].rstrip("\n").encode() for letter in ingest_letters}
    for line in MALFORMED_LINES:
        checks.true(f"dead letter keeps the line {line[:30]!r}", line in payloads)
    for letter in ingest_letters:
        checks.true(f"dead letter {letter['id']} has a reason", bool(letter["reason"]))
    return spool_set, stats, letters


def check_counters(probes, collector, double_stats, malformed_response, checks):
    """Checks that the counters of the probes, shippers, collector and double agree.

    Relations checked, with N the records written to both spools:
    - per probe: spool records written == records the shipper had
      acknowledged (webtrap_shipper_records_sent_total counts a batch once,
      when its 200 arrives, so resends do not inflate it), and the shipper's
      backlog and dropped counts are 0;
    - collector store (`webtrap collector count`, persisted across kills):
      events == N. Its duplicates count is reported, not compared, because
      it depends on timing: it counts the records of batches that a kill
      cut off after the commit and before the acknowledgement, which the
      shipper then sent again;
    - the sensors' record counts in /healthz (received lines, persisted):
      each >= that sensor's events in the store, and their sum >= events
      + duplicates + dead letters (a batch whose commit was cut off counts
      once per attempt);
    - collector /metrics of the last run (counters restart at zero after a
      kill): received == stored + duplicates + rejected on the probe input,
      and the dead letters of the malformed batch are counted;
    - double: created == distinct ids == N, so each delivery of an event
      after the first was a 409 conflict, not a second document.
    Returns the store counts as a dict.
    """
    expected = 0
    for probe in probes:
        metrics = probe.metrics()
        written = metrics.get("webtrap_spool_records_written_total")
        expected += written or 0
        checks.equal(f"probe {probe.sensor_id}: records written == shipper acknowledged",
                     metrics.get("webtrap_shipper_records_sent_total"), written)
        checks.equal(f"probe {probe.sensor_id}: shipper backlog bytes",
                     metrics.get("webtrap_shipper_backlog_bytes"), 0)
        checks.equal(f"probe {probe.sensor_id}: shipper dropped records",
                     metrics.get("webtrap_shipper_dropped_total"), 0)
        probe.shipper_retries = metrics.get("webtrap_shipper_retries_total", 0)
        probe.shipper_failures = metrics.get("webtrap_shipper_failures_total", 0)
    checks.true("shippers saw failed attempts (the kills reached them)",
                sum(probe.shipper_failures for probe in probes) > 0)

    counts = json.loads(collector.run_command("count"))
    checks.equal("collector store: events == records written", counts["events"], expected)
    checks.equal("collector store: dead letters", counts["dead_letters"], len(MALFORMED_LINES))
    checks.equal("double: created == collector store events", double_stats["created"], counts["events"])

    # Per-sensor record counts in /healthz count every received line,
    # duplicates and rejected lines included, over all runs.
    status, body = http_request("GET", collector.admin_url + "/healthz")
    sensors = {sensor["sensor_id"]: sensor["records"] for sensor in json.loads(body)["sensors"]}
    stored_per_sensor = dict(collector.query("SELECT sensor_id, count(*) FROM events GROUP BY 1"))
    for probe in probes:
        checks.true(f"/healthz: sensor {probe.sensor_id} records >= its events in the store",
                    sensors.get(probe.sensor_id, 0) >= stored_per_sensor.get(probe.sensor_id, 0),
                    f"{sensors.get(probe.sensor_id)} < {stored_per_sensor.get(probe.sensor_id)}")
    # A batch that reached the store but whose own commit a kill or a 503
    # cut off is counted on each attempt, so the sum may exceed the store's
    # counts. It must never be below them.
    committed = counts["events"] + counts["duplicates"] + counts["dead_letters"]
    checks.true("/healthz: sum of sensor records >= events + duplicates + dead letters",
                sum(sensors.values()) >= committed, f"{sum(sensors.values())} < {committed}")
    log(f"     sensor records beyond the store's counts: {sum(sensors.values()) - committed}")

    samples = collector.metrics()
    received = metric_sum(samples, "webtrap_collector_input_received_total", input="probe")
    stored = metric_sum(samples, "webtrap_collector_input_stored_total", input="probe")
    duplicates = metric_sum(samples, "webtrap_collector_input_duplicates_total", input="probe")
    rejected = metric_sum(samples, "webtrap_collector_input_rejected_total", input="probe")
    checks.true("collector /metrics has the probe input counters",
                None not in (received, stored, duplicates, rejected),
                f"received={received} stored={stored} duplicates={duplicates} rejected={rejected}")
    if None not in (received, stored, duplicates, rejected):
        checks.equal("collector (last run): received == stored + duplicates + rejected",
                     received, stored + duplicates + rejected)
        checks.equal("collector (last run): rejected == malformed lines", rejected, len(MALFORMED_LINES))
    dead = metric_sum(samples, "webtrap_collector_dead_letters_total")
    checks.equal("collector (last run): dead letters counted in /metrics", dead, len(MALFORMED_LINES))

    if malformed_response is None:
        checks.true("malformed batch was posted", False)
    else:
        status, body = malformed_response
        checks.equal("malformed batch: HTTP status", status, 200)
        try:
            answer = json.loads(body)
        except ValueError:
            answer = {}
        checks.equal("malformed batch: received", answer.get("received"), len(MALFORMED_LINES))
        checks.equal("malformed batch: rejected", answer.get("rejected"), len(MALFORMED_LINES))
    return counts


def main():
    for tool in ("wrk",):
        if shutil.which(tool) is None:
            print(f"SKIP: {tool} is not installed (scripts/install-deps.sh --with-tests)")
            return 77
    if not pathlib.Path(BIN).exists():
        print(f"SKIP: webtrap binary {BIN} not found; set WEBTRAP_BIN")
        return 77

    started = time.monotonic()
    deadline = started + TEST_BUDGET_SECONDS
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="webtrap-faults-"))
    keep = bool(os.environ.get("WEBTRAP_KEEP_TEST_DIRS"))
    log(f"work folder {workdir}; {TOTAL_RECORDS} records from {PROBE_COUNT} probes")
    double = collector = None
    probes = []
    checks = Checks()
    try:
        double = EsDouble(workdir)
        collector = Collector(workdir, double.url)
        enrolments = {f"fault-probe-{i}": collector.enrol(f"fault-probe-{i}") for i in range(PROBE_COUNT)}
        malformed_token, _ = collector.enrol("fault-malformed")
        collector.start()
        for sensor_id, (token, enrolled) in enrolments.items():
            probe = Probe(probe_config(sensor_id, enrolled))
            probe.sensor_id = sensor_id
            probes.append(probe)

        plan = FaultPlan(collector, double, malformed_token)
        per_probe = TOTAL_RECORDS // PROBE_COUNT
        drivers = [LoadDriver(probe, f"p{i}", per_probe, workdir) for i, probe in enumerate(probes)]
        load_started = time.monotonic()
        for driver in drivers:
            driver.start()

        while not plan.poll():
            if time.monotonic() > deadline:
                raise TimeoutError(f"faults not all injected in time: {collector.stored_events()} of "
                                   f"{TOTAL_RECORDS} records stored; not yet injected: "
                                   f"{[step[1] for step in plan.steps]}")
            if collector.process.poll() is not None:
                raise RuntimeError("collector exited on its own:\n" + collector.log_tail())
            time.sleep(0.1)
        for driver in drivers:
            driver.join(max(1, deadline - time.monotonic()))
            if driver.is_alive():
                raise TimeoutError(f"{driver.name} did not finish in time")
            if driver.error:
                raise driver.error
        load_seconds = max(driver.finished_at for driver in drivers) - load_started
        expected = sum(int(probe.metrics()["webtrap_spool_records_written_total"]) for probe in probes)
        log(f"load done: {expected} records in {load_seconds:.1f} s")

        delivered_state = wait_until_delivered(collector, expected, deadline)
        delivered_at = time.monotonic()
        log(f"delivered: {delivered_state}, "
            f"{delivered_at - load_started:.1f} s after the load started")

        spool_set, double_stats, _ = check_everything(probes, collector, double, plan, checks)
        counts = check_counters(probes, collector, double_stats, plan.malformed_response, checks)
        checks.equal("collector kills", collector.kills, 2)
        checks.equal("collector exit status after SIGTERM", collector.stop(), 0)

        elapsed = time.monotonic() - started
        print()
        print("summary")
        print(f"  records:             {len(spool_set)} from {PROBE_COUNT} probes "
              f"(load {load_seconds:.1f} s)")
        print(f"  collector kills:     {collector.kills} (SIGKILL, restarted each time)")
        print(f"  duplicates absorbed: {counts['duplicates']} by the collector's store (resent "
              f"after a lost acknowledgement); shipper retries "
              f"{sum(p.shipper_retries for p in probes):.0f}, failed attempts "
              f"{sum(p.shipper_failures for p in probes):.0f}")
        print(f"  faults injected:     {len(plan.injected)}: " + "; ".join(plan.injected))
        print(f"  double:              {double_stats['bulk_requests']} bulk requests, "
              f"{double_stats['items']} items, {double_stats['created']} created, "
              f"{double_stats['conflicts']} conflicts (resends absorbed by _id), "
              f"item errors {double_stats['item_errors']}, request errors "
              f"{double_stats['request_errors']}, refused connections "
              f"{double_stats.get('refused_connections', 0)}, documents created during the "
              f"{OUTAGE_SECONDS} s outage {plan.created_during_outage}")
        print(f"  elapsed:             {elapsed:.1f} s (delivery complete "
              f"{delivered_at - load_started:.1f} s after the load started)")
        print(f"  result:              {'PASS' if not checks.failures else 'FAIL'}")
        for failure in checks.failures:
            print(f"    {failure}")
        if elapsed > TEST_BUDGET_SECONDS:
            print(f"  NOTE: the run took longer than its budget of {TEST_BUDGET_SECONDS} s")
        return 1 if checks.failures else 0
    except Exception as error:
        log(f"FAIL: {type(error).__name__}: {error}")
        if collector is not None:
            print("collector log (tail):\n" + collector.log_tail())
        for probe in probes:
            print(f"probe {getattr(probe, 'sensor_id', '?')} log (tail):\n"
                  + "\n".join(probe.log_text().splitlines()[-20:]))
        return 1
    finally:
        for probe in probes:
            probe.stop()
        if collector is not None:
            collector.stop()
        if double is not None:
            double.stop()
        if keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
