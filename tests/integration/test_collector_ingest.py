#!/usr/bin/env python3
"""Sends probe records to `webtrap collector` and checks what it stores and returns.

Real records come from a probe started for the test; bulk records come from
bench/collector/make_records.py. The collector runs on loopback with a
temporary state folder and an NDJSON file output. The test checks the ack
counts, deduplication by event id, 401 on bad tokens, 413 on a gzip bomb,
400 on a body that is not NDJSON, dead-lettering of malformed lines,
/metrics and /healthz, the NDJSON output, and that acknowledged records
survive a SIGKILL of the collector.
"""

import gzip
import json
import os
import pathlib
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import zlib

from probe_harness import BIN, SOURCE_DIR, Probe, wait_for

MAKE_RECORDS = SOURCE_DIR / "bench" / "collector" / "make_records.py"
BULK_RECORDS = 2000


def check(condition, message):
    if not condition:
        raise AssertionError(message)


class Collector:
    """A collector process on port 0, restartable on the same store."""

    def __init__(self, workdir):
        self.dir = workdir
        self.state = workdir / "state"
        self.output_path = workdir / "out" / "events.ndjson"
        self.config = workdir / "collector.yaml"
        self.audit_log = workdir / "modsec_audit.json"
        self.config.write_text(f"""listen: 127.0.0.1:0
admin: {{listen: 127.0.0.1:0}}
state_dir: {self.state}
limits: {{max_body_bytes: 4MiB, max_decompressed_bytes: 16MiB}}
inputs:
  files:
    - {{path: {self.audit_log}, format: modsec3, sensor_id: file-web, group: dmz, poll_interval: 100ms}}
outputs:
  ndjson: {{path: {self.output_path}, flush_interval: 100ms}}
""")
        self.ports_file = workdir / "ports.json"
        self.log_path = workdir / "collector.log"
        self.process = None

    def command(self, *args):
        result = subprocess.run([BIN, "collector", "--config", str(self.config), *args],
                                capture_output=True, text=True, timeout=60)
        check(result.returncode == 0,
              f"webtrap collector {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
        return result.stdout

    def enrol(self, sensor_id):
        output = self.command("enrol", "--sensor-id", sensor_id, "--group", "lab")
        lines = output.splitlines()
        token = next(line.split('"')[1] for line in lines if line.strip().startswith("token:"))
        check(len(token) == 64, f"token is not 64 hex digits: {token!r}")
        check(any(line.strip().startswith("url: http://127.0.0.1:") for line in lines),
              "enrol prints no shipper url:\n" + output)
        return token

    def start(self):
        if self.ports_file.exists():
            self.ports_file.unlink()
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [BIN, "collector", "--config", str(self.config), "--ports-file", str(self.ports_file)],
            stdout=log, stderr=subprocess.STDOUT)
        log.close()
        wait_for(lambda: self.ports_file.exists() or self.process.poll() is not None, 30,
                 "the collector's ports file")
        check(self.process.poll() is None, "collector exited at start:\n" + self.log())
        ports = json.loads(self.ports_file.read_text())
        self.ingest_port = ports["ingest"]
        self.admin_port = ports["admin"]

    def stop(self, sig=signal.SIGTERM):
        self.process.send_signal(sig)
        return self.process.wait(timeout=60)

    def log(self):
        return self.log_path.read_text(errors="replace")

    def post(self, path, body, token=None, headers=None, basic=None):
        request = urllib.request.Request(f"http://127.0.0.1:{self.ingest_port}{path}",
                                         data=body, method="POST")
        request.add_header("Content-Type", "application/x-ndjson")
        if token is not None:
            request.add_header("Authorization", f"Bearer {token}")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"{}")

    def post_batch(self, lines, token):
        body = gzip.compress(b"".join(line + b"\n" for line in lines))
        return self.post("/v1/records", body, token, {"Content-Encoding": "gzip"})

    def admin(self, path):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}{path}",
                                        timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def metrics(self):
        values = {}
        for line in self.admin("/metrics")[1].splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                values[name] = float(value)
        return values

    def output_ids(self):
        if not self.output_path.exists():
            return []
        data = self.output_path.read_bytes()
        return [json.loads(line)["event"]["id"] for line in data[:data.rfind(b"\n") + 1].splitlines()]


def real_probe_records(workdir):
    """Records written by a real probe for a few benign and hostile requests."""
    probe = Probe()
    try:
        paths = ["/", "/robots.txt", "/index.php?id=1%27%20OR%201=1--", "/.env",
                 "/wp-login.php", "/?q=%3Cscript%3Ealert(1)%3C/script%3E", "/cgi-bin/../../etc/passwd"]
        for path in paths:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{probe.http_port}{path}", timeout=10).read()
            except urllib.error.HTTPError:
                pass
        probe.wait_records(len(paths))
    finally:
        probe.stop()
    lines = []
    for segment in sorted(probe.spool.glob("*.ndjson")):
        lines.extend(line for line in segment.read_bytes().splitlines() if line)
    check(len(lines) >= len(paths), f"probe wrote {len(lines)} records, expected {len(paths)}")
    return lines


def generated_records(workdir, count, seed, layout="probe"):
    path = workdir / f"records-{seed}-{layout}.ndjson"
    subprocess.run([sys.executable, str(MAKE_RECORDS), "--count", str(count), "--seed", str(seed),
                    f"--{layout}-output", str(path)], check=True, capture_output=True, timeout=120)
    return path.read_bytes().splitlines()


def gzip_bomb(size):
    """A gzip body of `size` zero bytes, a few hundred KiB on the wire."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = bytes(1 << 20)
    parts = [compressor.compress(chunk) for _ in range(size >> 20)]
    parts.append(compressor.flush())
    return b"".join(parts)


def main():
    if not MAKE_RECORDS.exists():
        print("bench/collector/make_records.py is missing", file=sys.stderr)
        return 77
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="webtrap-collector-test-"))
    collector = Collector(workdir)
    try:
        run(workdir, collector)
    except Exception:
        if collector.process is not None:
            print("collector log:\n" + collector.log()[-6000:], file=sys.stderr)
        raise
    finally:
        if collector.process is not None and collector.process.poll() is None:
            collector.stop(signal.SIGKILL)
        if not os.environ.get("WEBTRAP_KEEP_TEST_DIRS"):
            shutil.rmtree(workdir, ignore_errors=True)
    print("collector ingest: all checks passed")
    return 0


def run(workdir, collector):
    real = real_probe_records(workdir)
    # One record as the probe writes it when its inspection queue was full:
    # it has no rule matches, and `tail` must not show it as a clean request.
    shed = json.loads(real[0])
    shed["webtrap"]["inspection"]["status"] = "shed"
    real[0] = json.dumps(shed, separators=(",", ":")).encode()
    bulk = generated_records(workdir, BULK_RECORDS, seed=11)
    extra = generated_records(workdir, 300, seed=12)

    audit = generated_records(workdir, 40, seed=13, layout="modsecurity")
    token = collector.enrol("sensor-a")
    collector.start()

    # The file input tails a ModSecurity audit log written after the start.
    with open(collector.audit_log, "ab") as log_file:
        log_file.write(b"".join(line + b"\n" for line in audit[:30]))
        log_file.write(b"{broken json line\n")
        log_file.write(b"".join(line + b"\n" for line in audit[30:]))
    file_stored = 'webtrap_collector_input_stored_total{input="file"}'
    wait_for(lambda: collector.metrics().get(file_stored) == len(audit), 30, "the file input")
    metrics = collector.metrics()
    check(metrics.get('webtrap_collector_input_rejected_total{input="file"}') == 1,
          "file input rejected counter")
    check(metrics.get('webtrap_collector_sensor_records_total{sensor="file-web"}') == len(audit) + 1,
          "file input sensor counter")
    totals = {"received": 0, "stored": 0, "duplicates": 0, "rejected": 0}

    def add(ack):
        for key in totals:
            totals[key] += ack[key]

    # Real probe records: all stored, then all duplicates on a resend.
    status, ack = collector.post_batch(real, token)
    check(status == 200, f"real batch: status {status} {ack}")
    check(ack == {"received": len(real), "stored": len(real), "duplicates": 0, "rejected": 0},
          f"real batch ack: {ack}")
    add(ack)
    status, ack = collector.post_batch(real, token)
    check(ack["duplicates"] == len(real) and ack["stored"] == 0, f"resend ack: {ack}")
    add(ack)

    # Tokens.
    status, body = collector.post_batch(real[:1], "0" * 64)
    check(status == 401, f"unknown token: status {status}")
    status, body = collector.post("/v1/records", b"{}\n")
    check(status == 401, f"missing token: status {status}")

    # Limits and bodies that are not NDJSON.
    status, body = collector.post("/v1/records", gzip_bomb(64 << 20), token,
                                  {"Content-Encoding": "gzip"})
    check(status == 413, f"gzip bomb: status {status} {body}")
    status, body = collector.post("/v1/records", b"x" * (5 << 20), token)
    check(status == 413, f"oversized body: status {status}")
    status, body = collector.post("/v1/records", b"\x1f\x8bnot really gzip", token,
                                  {"Content-Encoding": "gzip"})
    check(status == 400, f"broken gzip: status {status}")
    status, body = collector.post("/v1/records", b"GIF89a binary stuff\nmore\n", token)
    check(status == 400, f"not NDJSON: status {status}")

    # Malformed lines among good ones: good ones stored, bad ones dead-lettered.
    malformed = [b'{"transaction": {"client_ip": "192.0.2.1", ', b"not json",
                 b'{"hello": "an object that is no audit record"}']
    mixed = [extra[0], malformed[0], extra[1], malformed[1], malformed[2], extra[2]]
    status, ack = collector.post_batch(mixed, token)
    check(status == 200, f"mixed batch: status {status}")
    check(ack == {"received": 6, "stored": 3, "duplicates": 0, "rejected": 3}, f"mixed ack: {ack}")
    add(ack)
    letters = [json.loads(line) for line in collector.command("dead-letters", "--limit", "10").splitlines()]
    letters = [letter for letter in letters if "input=probe" in letter["reason"]]
    check(len(letters) == 3, f"dead letters: {len(letters)}")
    check({letter["payload"].encode() for letter in letters} == set(malformed),
          f"dead-letter payloads: {[letter['payload'] for letter in letters]}")
    check(all(letter["output"] == "ingest" and letter["reason"] for letter in letters),
          f"dead-letter reasons: {letters}")

    # Bulk: four concurrent senders, 500 records per batch.
    batches = [bulk[i:i + 500] for i in range(0, len(bulk), 500)]
    acks = []

    def send(batch):
        acks.append(collector.post_batch(batch, token))

    threads = [threading.Thread(target=send, args=(batch,)) for batch in batches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    check(all(status == 200 for status, _ in acks), f"bulk statuses: {[s for s, _ in acks]}")
    for _, ack in acks:
        add(ack)
    check(sum(ack["stored"] for _, ack in acks) == len(bulk), f"bulk acks: {acks}")

    # Metrics agree with the acknowledgements.
    metrics = collector.metrics()
    for key in totals:
        name = f'webtrap_collector_input_{key}_total{{input="probe"}}'
        check(metrics.get(name) == totals[key], f"{name} = {metrics.get(name)}, acks say {totals[key]}")
    check(metrics.get('webtrap_collector_sensor_records_total{sensor="sensor-a"}') == totals["received"],
          "sensor records counter")
    check(metrics.get('webtrap_collector_sensor_last_seen_timestamp_seconds{sensor="sensor-a"}', 0) > 0,
          "sensor last seen gauge")
    check(metrics.get('webtrap_collector_input_bytes_total{input="probe"}', 0) > 0, "bytes counter")

    status, text = collector.admin("/healthz")
    health = json.loads(text)
    check(status == 200 and health["store"]["ok"], f"healthz: {status} {text}")
    check([output["name"] for output in health["outputs"]] == ["ndjson"], f"healthz outputs: {text}")
    sensors = {sensor["sensor_id"]: sensor for sensor in health["sensors"]}
    check(sensors.get("sensor-a", {}).get("last_seen"), f"healthz sensors: {text}")

    # The NDJSON output receives every stored record once, the file input's too.
    totals["stored"] += len(audit)
    wait_for(lambda: len(collector.output_ids()) >= totals["stored"], 30, "the NDJSON output")
    ids = collector.output_ids()
    check(len(ids) == totals["stored"] and len(set(ids)) == len(ids),
          f"NDJSON output: {len(ids)} lines, {len(set(ids))} distinct, {totals['stored']} stored")

    # Probe batches keep their originals once, in the store's batches table,
    # yet every document still carries its record exactly as sent, and
    # `tail --documents` prints the documents the output wrote.
    written = collector.output_path.read_text().splitlines()
    originals = {json.loads(line)["event"]["original"] for line in written}
    missing = [line for line in real + bulk if line.decode() not in originals]
    check(not missing, f"{len(missing)} probe records lack their event.original, first: "
          f"{missing[:1]}")
    with sqlite3.connect(collector.state / "store.sqlite") as database:
        batches = database.execute("SELECT count(*) FROM batches").fetchone()[0]
        by_reference = database.execute(
            "SELECT count(*) FROM events WHERE original_batch IS NOT NULL").fetchone()[0]
    database.close()
    check(batches > 0 and by_reference == len(real) + len(bulk),
          f"store: {batches} batches, {by_reference} events by reference, expected "
          f"{len(real) + len(bulk)}")
    # tail escapes characters a terminal may obey, which changes the text but
    # not the JSON value of a document.
    tailed = collector.command("tail", "--last", str(len(written)), "--documents").splitlines()
    as_values = lambda lines: sorted(json.dumps(json.loads(line), sort_keys=True) for line in lines)
    check(as_values(tailed) == as_values(written),
          f"tail --documents printed {len(tailed)} lines that differ from the "
          f"{len(written)} the output wrote")
    lines = collector.command("tail", "--last", str(len(written))).splitlines()
    marked = [line for line in lines if "inspection)" in line]
    check(len(marked) == 1 and "(shed inspection)" in marked[0],
          f"tail lines marking an uninspected request: {marked[:3]}")

    # A stopped `tail --follow` first prints the events stored before the
    # stop, and marks a record whose rule messages the probe cut.
    follow = subprocess.Popen([BIN, "collector", "--config", str(collector.config), "tail",
                               "--follow", "--last", "0"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)  # caught up, so it waits between reads of the store
        late = generated_records(workdir, 20, 77)
        cut_record = json.loads(late[0])
        cut_record["webtrap"].setdefault("inspection", {})["details_cut"] = {
            "truncated_strings": 2, "reduced_matches": 0, "omitted_matches": 5}
        late[0] = json.dumps(cut_record, separators=(",", ":")).encode()
        status, ack = collector.post_batch(late, token)
        check(status == 200 and ack["stored"] == len(late), f"late batch: {status} {ack}")
        totals["stored"] += ack["stored"]
        totals["received"] += ack["received"]
        follow.send_signal(signal.SIGTERM)
        printed, errors = follow.communicate(timeout=30)
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.wait()
    check(follow.returncode == 0, f"tail --follow after SIGTERM: {follow.returncode} {errors}")
    printed = printed.splitlines()
    check(len(printed) == len(late),
          f"tail --follow printed {len(printed)} of the {len(late)} events stored before its stop")
    check(sum("(messages cut, 5 left out)" in line for line in printed) == 1,
          f"tail lines marking cut rule messages: {printed[:2]}")

    # Acknowledged records survive a SIGKILL right after the ack.
    status, ack = collector.post_batch(extra[3:], token)
    check(ack["stored"] == len(extra) - 3, f"last batch ack: {ack}")
    totals["stored"] += ack["stored"]
    collector.stop(signal.SIGKILL)
    counts = json.loads(collector.command("count"))
    check(counts["events"] == totals["stored"],
          f"after SIGKILL the store holds {counts['events']} events, {totals['stored']} were acknowledged")
    check(counts["dead_letters"] == 4, f"dead letters after restart: {counts}")

    # After a restart the sensor stays known and the output catches up.
    collector.start()
    status, text = collector.admin("/healthz")
    sensors = {sensor["sensor_id"]: sensor for sensor in json.loads(text)["sensors"]}
    check(sensors["sensor-a"]["records"] >= totals["received"], f"sensor after restart: {text}")
    metrics = collector.metrics()
    check(metrics.get('webtrap_collector_sensor_last_seen_timestamp_seconds{sensor="sensor-a"}', 0) > 0,
          "sensor last seen gauge after restart")
    wait_for(lambda: len(set(collector.output_ids())) >= totals["stored"], 30,
             "the NDJSON output after restart")

    # Enrolling the sensor again replaces its token while the collector runs.
    new_token = collector.enrol("sensor-a")
    status, _ = collector.post_batch(real[:1], token)
    check(status == 401, f"replaced token: status {status}")
    status, ack = collector.post_batch(real[:1], new_token)
    check(status == 200 and ack["duplicates"] == 1, f"new token: {status} {ack}")

    check(collector.stop() == 0, "collector exit status after SIGTERM")
    stop_lines = [line for line in collector.log().splitlines() if "collector: stopped" in line]
    check(stop_lines, "no stop line in the log")
    # The counts are this run's: one record sent again after the restart,
    # not the store's totals of duplicates and dead letters.
    check(stop_lines[-1].endswith("received=1 stored=0 duplicates=1 rejected=0"),
          f"stop line: {stop_lines[-1]}")


if __name__ == "__main__":
    sys.exit(main())
