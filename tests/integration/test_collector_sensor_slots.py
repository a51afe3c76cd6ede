#!/usr/bin/env python3
"""One sensor token cannot hold every ingest slot of the collector.

The collector admits at most 32 ingest requests at once (4 ingest workers
times 8), from the end of a request's header until its response is
written. A sender with a valid token (stolen from a probe host, say) that
opens 32 connections and sends each body a byte at a time used to hold all
32 for limits.read_timeout, and every other sensor got 503 meanwhile.
limits.max_slots_per_sensor (8 by default) now caps the slots of one
sensor. Each check starts its own collector on 127.0.0.1 with a short
limits.read_timeout:

- cap leaves slots to others: sensor A opens 32 slow connections. The first
  8 are admitted, and the other 24 get 503 with Retry-After and an error
  that names limits.max_slots_per_sensor, counted per sensor in
  webtrap_collector_sensor_requests_busy_total. A's token on POST
  /v1/modsecurity (as Bearer, Basic password and path segment) gets the
  same 503. Sensor B still posts a batch and gets 200 while A's slow
  connections are open, and the global busy counter stays at 0;
- slots come back: after A closes 3 of its 8 slow connections, A can post a
  batch again. After the other 5 time out, A again gets exactly 8 slots.
  Requests that end in 200, 400 (bad gzip), 413 (a chunked body over
  limits.max_body_bytes), a client that closes mid-body and a body read
  timeout each give their slot back too, and a collector stopped while A
  has its slots exits within limits.read_timeout plus a margin;
- configured cap: with limits.max_slots_per_sensor 1, A's second slow
  connection gets 503 that names the limit of 1, and B still gets 200;
- received bodies leave the cap: with the limit at 1 and the store's write
  lock held by the test, A's first batch waits for its commit, and A's
  next request is not rejected by the cap.

Every check runs even when an earlier one fails, and the test exits 1 if any
failed.
"""

import base64
import gzip
import json
import os
import pathlib
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request

from collector_checks import Collector, check, run_checks, wait_for

SOURCE_DIR = pathlib.Path(os.environ.get("WEBTRAP_SOURCE_DIR",
                                         pathlib.Path(__file__).resolve().parents[2]))
MAKE_RECORDS = SOURCE_DIR / "bench" / "collector" / "make_records.py"

# The collector's ingest slots: 4 ingest workers times kQueuedRequestsPerWorker
# (8) in src/collector/server.cpp.
TOTAL_SLOTS = 32
# The default of limits.max_slots_per_sensor.
DEFAULT_SENSOR_SLOTS = 8
# Short, so that a slow connection gives its slot back within seconds. Each
# check finishes what needs A's slow connections open well within it.
READ_TIMEOUT_SECONDS = 5
# Below the 16KiB limits.max_body_bytes of slots_come_back, and far more than
# a slow connection sends before it times out.
SLOW_BODY_BYTES = 10_000
LIMIT_NAME = b"limits.max_slots_per_sensor"


class SlowSender:
    """Connections that send a request header and then a body byte at a time.

    A background thread sends one more byte on every open connection each
    half second, as a slow sender would, until close_all().
    """

    def __init__(self, port, token, path="/v1/records"):
        self.port = port
        self.token = token
        self.path = path
        self.sockets = []
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._dribble, daemon=True)
        self.thread.start()

    def open(self):
        """Open one connection and send its header and one body byte."""
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        sock.sendall(f"POST {self.path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     f"Authorization: Bearer {self.token}\r\n"
                     "Content-Type: application/x-ndjson\r\n"
                     f"Content-Length: {SLOW_BODY_BYTES}\r\n\r\n{{".encode())
        with self.lock:
            self.sockets.append(sock)
        return sock

    def close(self, sock):
        with self.lock:
            self.sockets.remove(sock)
        sock.close()

    def close_all(self):
        self.stopped.set()
        self.thread.join()
        with self.lock:
            for sock in self.sockets:
                sock.close()
            self.sockets.clear()

    def _dribble(self):
        while not self.stopped.wait(0.5):
            with self.lock:
                for sock in self.sockets:
                    try:
                        sock.send(b" ")
                    except OSError:
                        pass  # closed by the collector's read timeout


def read_response(sock, timeout):
    """Read the response on `sock` and return (status, headers, body).

    Return (None, {}, data) when no whole response head arrives within
    `timeout`, which for a slow connection means the collector admitted it.
    """
    sock.settimeout(timeout)
    data = b""
    deadline = time.monotonic() + timeout
    try:
        while b"\r\n\r\n" not in data and time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except (socket.timeout, ConnectionResetError):
        pass
    if b"\r\n\r\n" not in data:
        return None, {}, data
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    try:
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
    except (socket.timeout, ConnectionResetError):
        pass
    return int(lines[0].split(" ")[1]), headers, body


def metric(collector, line_prefix):
    """Return the value of the /metrics line that starts with `line_prefix`, or 0."""
    url = f"http://127.0.0.1:{collector.admin_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    for line in text.splitlines():
        if line.startswith(line_prefix + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0


def in_flight(collector):
    return metric(collector, "webtrap_collector_requests_in_flight")


def sensor_busy(collector, sensor_id):
    return metric(collector,
                  f'webtrap_collector_sensor_requests_busy_total{{sensor="{sensor_id}"}}')


def open_admitted(collector, sender, count):
    """Open `count` slow connections, waiting until the collector admits each."""
    sockets = []
    for _ in range(count):
        expected = in_flight(collector) + 1
        sockets.append(sender.open())
        wait_for(lambda: in_flight(collector) >= expected, 10,
                 f"slow connection {len(sockets)} of {count} to be admitted "
                 f"(webtrap_collector_requests_in_flight {expected:.0f})")
    return sockets


def expect_sensor_busy(sock, description, max_slots):
    status, headers, body = read_response(sock, 3)
    check(status == 503,
          f"{description}: expected 503 from the per-sensor slot limit, got {status} {body[:200]!r} "
          "(None: the collector admitted the request)")
    check("retry-after" in headers, f"{description}: the 503 has no Retry-After header: {headers}")
    check(LIMIT_NAME in body, f"{description}: the 503 does not name {LIMIT_NAME.decode()}: {body!r}")
    check(f"already has {max_slots} request bod".encode() in body,
          f"{description}: the 503 does not give the limit of {max_slots}: {body!r}")


def post_modsecurity(collector, token, credential):
    """Post an audit record with `token` sent as `credential` and return (status, body)."""
    path = "/v1/modsecurity"
    headers = {"Content-Type": "application/json"}
    if credential == "bearer":
        headers["Authorization"] = f"Bearer {token}"
    elif credential == "basic":
        headers["Authorization"] = "Basic " + base64.b64encode(f"x:{token}".encode()).decode()
    else:
        path += "/" + token
    sock = socket.create_connection(("127.0.0.1", collector.ingest_port), timeout=10)
    try:
        body = b'{"transaction": {}}'
        head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
                + "".join(f"{name}: {value}\r\n" for name, value in headers.items()) + "\r\n")
        sock.sendall(head.encode() + body)
        status, _, response = read_response(sock, 10)
        return status, response
    finally:
        sock.close()


def post_batch(collector, token, records, description):
    status, body = collector.post("/v1/records", token, b"".join(records),
                                  {"Content-Type": "application/x-ndjson"}, timeout=30)
    check(status == 200, f"{description}: expected 200, got {status} {body!r}")


def make_records(root):
    path = root / "records.ndjson"
    subprocess.run([sys.executable, str(MAKE_RECORDS), "--count", "40", "--probe-output",
                    str(path)], check=True, capture_output=True, timeout=120)
    return path.read_bytes().splitlines(keepends=True)


def cap_leaves_slots_to_others(workdir, records):
    collector = Collector(workdir, limits=f"{{read_timeout: {READ_TIMEOUT_SECONDS}s}}")
    token_a = collector.enrol("sensor-a")
    token_b = collector.enrol("sensor-b")
    collector.start()
    sender = SlowSender(collector.ingest_port, token_a)
    try:
        started = time.monotonic()
        open_admitted(collector, sender, DEFAULT_SENSOR_SLOTS)
        # Connections 9 to 32, which used to take the rest of the slots.
        for number in range(DEFAULT_SENSOR_SLOTS + 1, TOTAL_SLOTS + 1):
            expect_sensor_busy(sender.open(), f"A's slow connection {number}",
                               DEFAULT_SENSOR_SLOTS)
        for credential in ("bearer", "basic", "path"):
            status, body = post_modsecurity(collector, token_a, credential)
            check(status == 503 and LIMIT_NAME in body,
                  f"A's token as {credential} on /v1/modsecurity: expected 503 naming the "
                  f"limit, got {status} {body!r}")

        post_batch(collector, token_b, records[:10], "B's batch while A has its slots")
        elapsed = time.monotonic() - started
        check(elapsed < READ_TIMEOUT_SECONDS - 1,
              f"the steps took {elapsed:.1f} s, too close to limits.read_timeout "
              f"({READ_TIMEOUT_SECONDS} s) to be sure A's connections were still open")
        check(in_flight(collector) == DEFAULT_SENSOR_SLOTS,
              f"expected A's {DEFAULT_SENSOR_SLOTS} slow requests in flight after B's batch, "
              f"got {in_flight(collector)}")
        rejected = TOTAL_SLOTS - DEFAULT_SENSOR_SLOTS + 3
        check(sensor_busy(collector, "sensor-a") == rejected,
              f"expected webtrap_collector_sensor_requests_busy_total{{sensor=\"sensor-a\"}} "
              f"{rejected}, got {sensor_busy(collector, 'sensor-a')}")
        check(sensor_busy(collector, "sensor-b") == 0,
              f"B was counted as busy: {sensor_busy(collector, 'sensor-b')}")
        busy = metric(collector, "webtrap_collector_requests_busy_total")
        check(busy == 0, f"expected no request rejected for want of any slot, got {busy}")
    finally:
        sender.close_all()
        collector.stop()


def slots_come_back(workdir, records):
    collector = Collector(workdir, limits=f"{{read_timeout: {READ_TIMEOUT_SECONDS}s, "
                                          "max_body_bytes: 16KiB}")
    token_a = collector.enrol("sensor-a")
    collector.start()
    sender = SlowSender(collector.ingest_port, token_a)
    try:
        # Closed by the client.
        sockets = open_admitted(collector, sender, DEFAULT_SENSOR_SLOTS)
        expect_sensor_busy(sender.open(), "A's slow connection over the cap",
                           DEFAULT_SENSOR_SLOTS)
        for sock in sockets[:3]:
            sender.close(sock)
        wait_for(lambda: in_flight(collector) == DEFAULT_SENSOR_SLOTS - 3, 10,
                 "the slots of the 3 closed connections to come back")
        post_batch(collector, token_a, records[:1], "A's batch after closing 3 slow connections")

        # Timed out: the other 5 hold their slots until limits.read_timeout.
        timeouts_before = metric(collector, "webtrap_collector_request_timeouts_total")
        wait_for(lambda: in_flight(collector) == 0, READ_TIMEOUT_SECONDS + 10,
                 "the slots of the 5 slow connections to come back after limits.read_timeout")
        timeouts = metric(collector, "webtrap_collector_request_timeouts_total")
        check(timeouts - timeouts_before >= 5,
              f"expected the 5 slow connections to end by timeout, got {timeouts - timeouts_before}")
        sender.close_all()

        # Requests that end each way, then A gets all of its slots again.
        post_batch(collector, token_a, records[1:2], "A's batch after the timeouts")
        status, body = collector.post("/v1/records", token_a, b"not gzip",
                                      {"Content-Encoding": "gzip"}, timeout=30)
        check(status == 400, f"bad gzip: expected 400, got {status} {body!r}")
        sock = socket.create_connection(("127.0.0.1", collector.ingest_port), timeout=10)
        sock.sendall(f"POST /v1/records HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     f"Authorization: Bearer {token_a}\r\nTransfer-Encoding: chunked\r\n\r\n"
                     "5000\r\n".encode() + b"{" * 0x5000 + b"\r\n0\r\n\r\n")
        status, _, body = read_response(sock, 10)
        sock.close()
        check(status == 413, f"chunked body over max_body_bytes: expected 413, got {status} "
                             f"{body!r}")
        sender = SlowSender(collector.ingest_port, token_a)
        sender.close(open_admitted(collector, sender, 1)[0])
        # open_admitted counts from the slots in use, so the closed
        # connection's slot must be back first.
        wait_for(lambda: in_flight(collector) == 0, 10, "the closed connection's slot to come back")
        timed_out = open_admitted(collector, sender, 1)
        wait_for(lambda: in_flight(collector) == 0, READ_TIMEOUT_SECONDS + 10,
                 "the slots of the closed and the timed-out connection to come back")
        sender.close(timed_out[0])

        open_admitted(collector, sender, DEFAULT_SENSOR_SLOTS)
        expect_sensor_busy(sender.open(), "A's slow connection over the cap, after the others "
                                          "ended", DEFAULT_SENSOR_SLOTS)

        # Stopped while A has its slots: drain() waits for them to time out.
        stopping = time.monotonic()
        collector.process.send_signal(signal.SIGTERM)
        try:
            collector.process.wait(timeout=READ_TIMEOUT_SECONDS + 15)
        except subprocess.TimeoutExpired:
            raise AssertionError("the collector did not stop within limits.read_timeout plus 15 s "
                                 "while A held its slots")
        check(collector.process.returncode == 0,
              f"the collector exited {collector.process.returncode} at its stop:\n"
              + collector.log()[-2000:])
        print(f"     stopped in {time.monotonic() - stopping:.1f} s with A's slots held")
    finally:
        sender.close_all()
        collector.stop()


def configured_cap(workdir, records):
    collector = Collector(workdir, limits=f"{{read_timeout: {READ_TIMEOUT_SECONDS}s, "
                                          "max_slots_per_sensor: 1}")
    token_a = collector.enrol("sensor-a")
    token_b = collector.enrol("sensor-b")
    collector.start()
    sender = SlowSender(collector.ingest_port, token_a)
    try:
        open_admitted(collector, sender, 1)
        expect_sensor_busy(sender.open(), "A's second slow connection", 1)
        post_batch(collector, token_b, records[:5], "B's batch while A has its one slot")
    finally:
        sender.close_all()
        collector.stop()


def received_bodies_leave_cap(workdir, records):
    # The cap counts bodies in transfer only: a request whose body is in and
    # that waits for its commit does not count, so a web server whose many
    # workers post at once is not held to it.
    collector = Collector(workdir, limits=f"{{read_timeout: {READ_TIMEOUT_SECONDS}s, "
                                          "max_slots_per_sensor: 1}")
    token_a = collector.enrol("sensor-a")
    collector.start()
    # The store's write lock, taken here, keeps A's first batch waiting in its
    # commit. The collector waits up to 5 s for the lock, so it is held 2 s.
    store = sqlite3.connect(collector.state / "store.sqlite", timeout=10,
                            isolation_level=None)
    results = []
    try:
        store.execute("BEGIN IMMEDIATE")
        def post(batch):
            results.append(collector.post("/v1/records", token_a, b"".join(batch),
                                          {"Content-Type": "application/x-ndjson"}, timeout=30))

        senders = [threading.Thread(target=post, args=(records[:5],)),
                   threading.Thread(target=post, args=(records[5:10],))]
        senders[0].start()
        wait_for(lambda: in_flight(collector) >= 1, 10, "A's first batch to be admitted")
        # Admitted is not yet received: the collector counts a body's bytes
        # right after it frees the sensor's share, so wait for that count.
        wait_for(lambda: metric(collector, 'webtrap_collector_input_bytes_total{input="probe"}')
                 > 0, 10, "A's first body to be received")
        senders[1].start()
        # A rejection by the cap comes at once, after the second header.
        time.sleep(0.5)
        check(sensor_busy(collector, "sensor-a") == 0,
              "A's second batch was rejected by limits.max_slots_per_sensor while its first "
              "batch, whose body was in, waited for the store")
        check(in_flight(collector) == 2,
              f"expected A's two batches in flight, got {in_flight(collector)}")
        store.execute("ROLLBACK")
        for sender in senders:
            sender.join(timeout=30)
        statuses = sorted(status for status, _ in results)
        check(statuses == [200, 200], f"A's two batches after the store lock ended: {results}")
    finally:
        store.close()
        collector.stop()


CHECKS = [cap_leaves_slots_to_others, slots_come_back, configured_cap, received_bodies_leave_cap]


def main():
    return run_checks(CHECKS, "collector-sensor-slots-", make_records)


if __name__ == "__main__":
    sys.exit(main())
