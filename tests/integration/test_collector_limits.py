#!/usr/bin/env python3
"""The collector's ingest and admin listeners enforce their limits.

Each check starts its own collector on 127.0.0.1:

- connection cap and read timeout: with limits.max_connections 3, a fourth
  connection is closed at once while three idle ones are open. With
  limits.read_timeout 1s, a client that sends half a request head is
  disconnected after about a second (a slowloris sender cannot hold a
  connection);
- limits.max_record_bytes: a record longer than the limit goes to the
  dead-letter store with the reason and its card number masked, is counted,
  and the rest of its batch is stored. A first attempt that gets 503 because
  the store is locked is counted neither there nor in the sensor's records;
- `Expect: 100-continue`: a valid request gets the interim 100 response
  before it sends its body, and one with a wrong token or a body over
  limits.max_body_bytes gets its final status without being asked for the
  body. A wrong token gets 401 even when the body is also too large;
- admin listener: past 16 open connections that each sent half a request
  head (none idle), a new one is closed at once. With 16 that sent nothing
  (idle), a new one stays open and the oldest is closed instead. The
  ingest listener keeps working while the admin listener is full, and an admin request with a body
  over 64 KiB gets 413;
- malformed requests: a header field with a NUL byte gets 400 and a head
  over 64 KiB gets 431, on the ingest and the admin listener, each with a
  message and counted in webtrap_collector_http_responses_total;
- accept backoff: with RLIMIT_NOFILE 64 and 100 open connections, accepts
  fail with EMFILE. The collector logs the failure with its retry delay,
  does not spin, and serves again once the connections close.

Exit status: 0 pass, 1 a check failed, 77 bench/collector/make_records.py is
missing.
"""

import gzip
import json
import os
import pathlib
import resource
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

from probe_harness import BIN, SOURCE_DIR, collector_ports, enrol_sensor, wait_for

MAKE_RECORDS = SOURCE_DIR / "bench" / "collector" / "make_records.py"
# The admin listener's connection cap (kMaxAdminConnections in server.cpp).
ADMIN_CONNECTION_CAP = 16


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def closed_within(sock, seconds):
    """True when the server closes `sock` within `seconds`."""
    sock.settimeout(seconds)
    try:
        return sock.recv(1024) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


class Collector:
    """A collector process with its own folder, config and log."""

    def __init__(self, folder, config_text, nofile=None):
        self.folder = folder
        folder.mkdir(parents=True)
        self.config = folder / "collector.yaml"
        self.config.write_text(f"listen: 127.0.0.1:0\nadmin: {{listen: 127.0.0.1:0}}\n"
                               f"state_dir: {folder / 'state'}\n{config_text}")
        self.nofile = nofile
        self.process = None
        self.ports = None

    def start(self):
        nofile = self.nofile

        def limit_files():
            if nofile is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        with open(self.folder / "collector.log", "wb") as log:
            self.process = subprocess.Popen(
                [BIN, "collector", "--config", str(self.config), "--ports-file",
                 str(self.folder / "ports.json")],
                stdout=log, stderr=subprocess.STDOUT, preexec_fn=limit_files)
        self.ports = collector_ports(self.process, self.folder)

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=30)

    def log(self):
        path = self.folder / "collector.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def metrics(self):
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.ports['admin']}/metrics",
                                      timeout=10).read().decode()
        return {name: float(value) for name, value in
                (line.rsplit(" ", 1) for line in text.splitlines()
                 if line and not line.startswith("#"))}

    def cpu_seconds(self):
        fields = open(f"/proc/{self.process.pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def read_head(sock):
    """Reads up to the end of one response head and returns (status, head, bytes after it)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else None
    return status, head, rest


def read_response(sock):
    """Reads one response with a Content-Length; returns (status, body)."""
    status, head, body = read_head(sock)
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, body


def post_raw(port, path, token, body, extra_headers=""):
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall((f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      f"Authorization: Bearer {token}\r\nContent-Length: {len(body)}\r\n"
                      f"{extra_headers}\r\n").encode() + body)
        return read_response(sock)


def check_connection_cap_and_read_timeout(folder):
    collector = Collector(folder, "limits: {max_connections: 3, read_timeout: 1s, "
                                  "idle_timeout: 1s}\n")
    sockets = []
    try:
        collector.start()
        port = collector.ports["ingest"]
        for _ in range(3):
            sockets.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        time.sleep(0.2)
        extra = socket.create_connection(("127.0.0.1", port), timeout=5)
        check(closed_within(extra, 0.5), "a fourth connection stayed open past max_connections 3")
        extra.close()

        slow = sockets[0]
        started = time.monotonic()
        slow.sendall(b"POST /v1/records HTTP/1.1\r\nHost: a\r\n")
        check(closed_within(slow, 5), "a half-sent request head was not timed out")
        elapsed = time.monotonic() - started
        check(0.3 <= elapsed <= 3, f"read timeout took {elapsed:.2f}s, expected under 1s")

        values = collector.metrics()
        check(values["webtrap_collector_connections_rejected_total"] >= 1,
              "connections_rejected_total")
        check(values["webtrap_collector_request_timeouts_total"] >= 1,
              "request_timeouts_total")
    finally:
        for sock in sockets:
            sock.close()
        collector.stop()


def oversized_record(record):
    """A copy of `record` padded past 64 KiB, with a test card number in its first bytes."""
    document = json.loads(record)
    document["transaction"]["request"]["headers"]["X-Card"] = "4111111111111111"
    document["transaction"]["request"]["headers"]["X-Padding"] = "a" * (100 * 1024)
    return json.dumps(document).encode() + b"\n"


def check_max_record_bytes(folder, records):
    collector = Collector(folder, "limits: {max_record_bytes: 64KiB}\n")
    try:
        token, _ = enrol_sensor(collector.config, "limits-sensor")
        collector.start()
        port = collector.ports["ingest"]
        long_record = oversized_record(records[1])
        check(len(long_record) > 64 * 1024, "the oversized record is not over 64 KiB")
        batch = gzip.compress(records[0] + long_record + records[2])
        # While another connection holds the store's write lock, the commit
        # fails after the 5 s busy timeout and the batch gets 503. Nothing of
        # it may be counted, because the sender sends it again.
        database = sqlite3.connect(folder / "state" / "store.sqlite", isolation_level=None)
        database.execute("BEGIN EXCLUSIVE")
        try:
            status, body = post_raw(port, "/v1/records", token, batch,
                                    "Content-Encoding: gzip\r\n")
        finally:
            database.execute("ROLLBACK")
            database.close()
        check(status == 503, f"batch while the store is locked: status {status} {body[:200]!r}")
        status, body = post_raw(port, "/v1/records", token, batch, "Content-Encoding: gzip\r\n")
        check(status == 200, f"batch with an oversized record: status {status} {body[:200]!r}")
        ack = json.loads(body)
        check(ack["received"] == 3, f"ack received: {ack}")
        check(ack["stored"] == 2, f"ack stored: {ack}")
        check(ack["rejected"] == 1, f"ack rejected: {ack}")

        # One oversized POST /v1/modsecurity body (the whole request is one record).
        status, body = post_raw(port, "/v1/modsecurity", token, long_record)
        check(status == 200, f"oversized ModSecurity record: status {status} {body[:200]!r}")
        ack = json.loads(body)
        check(ack["rejected"] == 1 and ack["stored"] == 0, f"ModSecurity ack: {ack}")

        # A record of exactly the limit followed by a line end is not too long,
        # on /v1/modsecurity as on /v1/records.
        document = json.loads(records[3])
        document["transaction"]["request"]["headers"]["X-Padding"] = ""
        record = json.dumps(document).encode()
        document["transaction"]["request"]["headers"]["X-Padding"] = "a" * (64 * 1024 -
                                                                             len(record))
        at_limit = json.dumps(document).encode()
        check(len(at_limit) == 64 * 1024, f"the record at the limit has {len(at_limit)} bytes")
        status, body = post_raw(port, "/v1/modsecurity", token, at_limit + b"\r\n")
        ack = json.loads(body)
        check(status == 200 and ack["stored"] == 1, f"ModSecurity record at the limit: {ack}")

        letters = subprocess.run([BIN, "collector", "--config", str(collector.config),
                                  "dead-letters"], capture_output=True, text=True, timeout=60,
                                 check=True).stdout.splitlines()
        check(len(letters) == 2, f"dead letters: {len(letters)}, expected 2")
        for letter in map(json.loads, letters):
            check("limits.max_record_bytes" in letter["reason"], f"reason: {letter['reason']}")
            check(str(len(long_record)) in letter["reason"] or
                  str(len(long_record) - 1) in letter["reason"],
                  f"reason does not give the record size: {letter['reason']}")
            check(len(letter["payload"]) == 64 * 1024,
                  f"payload kept {len(letter['payload'])} bytes, expected 65536")
            check("4111111111111111" not in letter["payload"], "card number kept unmasked")
            check("411111******1111" in letter["payload"], "masked card number missing")

        count = json.loads(subprocess.run([BIN, "collector", "--config", str(collector.config),
                                           "count"], capture_output=True, text=True,
                                          timeout=60, check=True).stdout)
        check(count["events"] == 3, f"stored events: {count}")
        # Three records in the batch that got 503 and then 200, and two ModSecurity records.
        sensors = subprocess.run([BIN, "collector", "--config", str(collector.config), "sensors"],
                                 capture_output=True, text=True, timeout=60,
                                 check=True).stdout.splitlines()
        records_counted = json.loads(sensors[0])["records"]
        check(records_counted == 5, f"sensor records: {records_counted}, expected 5")

        values = collector.metrics()
        for input_label in ("probe", "modsecurity_http"):
            name = f'webtrap_collector_oversized_records_total{{input="{input_label}"}}'
            check(values.get(name) == 1, f"{name}: {values.get(name)}, expected 1")
            name = f'webtrap_collector_input_rejected_total{{input="{input_label}"}}'
            check(values.get(name) == 1, f"{name}: {values.get(name)}, expected 1")
        name = 'webtrap_collector_dead_letters_total{stage="ingest"}'
        check(values.get(name) == 2, f"{name}: {values.get(name)}, expected 2")
    finally:
        collector.stop()


def check_expect_continue(folder, records):
    collector = Collector(folder, "limits: {max_body_bytes: 64KiB}\n")
    try:
        token, _ = enrol_sensor(collector.config, "continue-sensor")
        collector.start()
        port = collector.ports["ingest"]
        body = records[3]

        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall((f"POST /v1/records HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                          f"Authorization: Bearer {token}\r\nContent-Length: {len(body)}\r\n"
                          "Expect: 100-continue\r\n\r\n").encode())
            status, head, rest = read_head(sock)
            check(status == 100, f"Expect: 100-continue got {status}, expected 100 first")
            check(rest == b"", f"bytes after the interim response: {rest[:100]!r}")
            sock.sendall(body)
            status, answer = read_response(sock)
            check(status == 200, f"after 100 Continue: status {status} {answer[:200]!r}")
            check(json.loads(answer)["stored"] == 1, f"after 100 Continue: {answer!r}")

        # Rejected requests get their final status at once: the client never
        # sends the body, so waiting for it would hang until the read timeout.
        # The token is checked first, so a client without one learns nothing
        # of the body limit.
        cases = (("wrong token", "Bearer wrong", len(body), 401),
                 ("wrong token and body over max_body_bytes", "Bearer wrong", 1 << 20, 401),
                 ("body over max_body_bytes", f"Bearer {token}", 1 << 20, 413))
        for case, authorization, length, expected in cases:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.sendall((f"POST /v1/records HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                              f"Authorization: {authorization}\r\nContent-Length: {length}\r\n"
                              "Expect: 100-continue\r\n\r\n").encode())
                status, _, _ = read_head(sock)
                check(status == expected, f"{case} with Expect: {status}, expected {expected}")
        values = collector.metrics()
        name = 'webtrap_collector_http_responses_total{endpoint="records",status="413"}'
        check(values.get(name) == 1, f"{name}: {values.get(name)}, expected 1")
    finally:
        collector.stop()


def check_admin_connection_cap(folder, records):
    collector = Collector(folder, "")
    sockets = []
    try:
        token, _ = enrol_sensor(collector.config, "admin-cap-sensor")
        collector.start()
        admin = collector.ports["admin"]
        # Each sends half a request head, so none is idle and none can be
        # closed to make room for a new connection.
        for _ in range(ADMIN_CONNECTION_CAP):
            sock = socket.create_connection(("127.0.0.1", admin), timeout=5)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            sockets.append(sock)
        time.sleep(0.3)
        for index, sock in enumerate(sockets):
            check(not closed_within(sock, 0.01), f"admin connection {index + 1} was closed "
                  f"below the cap of {ADMIN_CONNECTION_CAP}")
        extra = socket.create_connection(("127.0.0.1", admin), timeout=5)
        check(closed_within(extra, 1), f"admin connection {ADMIN_CONNECTION_CAP + 1} stayed "
              "open past the cap")
        extra.close()

        # The ingest listener is not affected by a full admin listener.
        status, body = post_raw(collector.ports["ingest"], "/v1/records", token, records[4])
        check(status == 200, f"ingest while the admin listener is full: {status} {body[:200]!r}")

        sockets.pop().close()
        # The server notices the close and frees the slot shortly after.
        values = wait_for(lambda: try_metrics(collector), 5, "a free admin connection slot")
        check(values["webtrap_collector_admin_connections_rejected_total"] >= 1,
              "admin_connections_rejected_total")
        for sock in sockets:
            sock.close()
        sockets = []
        time.sleep(0.3)

        # Connections that sent nothing are idle, so a new one replaces the
        # one idle longest.
        for _ in range(ADMIN_CONNECTION_CAP):
            sockets.append(socket.create_connection(("127.0.0.1", admin), timeout=5))
            time.sleep(0.02)
        time.sleep(0.3)
        extra = socket.create_connection(("127.0.0.1", admin), timeout=5)
        check(closed_within(sockets[0], 1),
              "the admin connection idle longest stayed open when a new one came at the cap")
        check(not closed_within(extra, 0.3),
              "a new admin connection was closed although an idle one could make room")
        extra.close()
        for sock in sockets:
            sock.close()
        sockets = []

        with socket.create_connection(("127.0.0.1", admin), timeout=10) as sock:
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         b"Content-Length: 100000\r\n\r\n" + b"x" * 100000)
            status, answer = read_response(sock)
            check(status == 413, f"admin request with a 100 KB body: {status}, expected 413")
            check(b"admin request body" in answer, f"admin 413 message: {answer[:200]!r}")
    finally:
        for sock in sockets:
            sock.close()
        collector.stop()


def check_malformed_requests(folder, records):
    collector = Collector(folder, "")
    try:
        collector.start()
        cases = (("a NUL byte in a header field",
                  b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Note: a\x00b\r\n\r\n", 400,
                  b"malformed HTTP request"),
                 ("a 70 KB header field",
                  b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Note: " + b"a" * 70000 +
                  b"\r\n\r\n", 431, b"request head larger than"))
        for listener in ("ingest", "admin"):
            for case, request, expected, text in cases:
                with socket.create_connection(("127.0.0.1", collector.ports[listener]),
                                              timeout=10) as sock:
                    sock.sendall(request)
                    status, answer = read_response(sock)
                check(status == expected, f"{listener}, {case}: status {status}, expected {expected}")
                check(text in answer, f"{listener}, {case}: message {answer[:200]!r}")
        values = collector.metrics()
        for endpoint in ("other", "admin"):
            for status in (400, 431):
                name = f'webtrap_collector_http_responses_total{{endpoint="{endpoint}",status="{status}"}}'
                check(values.get(name) == 1, f"{name}: {values.get(name)}, expected 1")
        check(collector.process.poll() is None, "the collector exited after malformed requests")
    finally:
        collector.stop()


def try_metrics(collector):
    try:
        return collector.metrics()
    except (urllib.error.URLError, ConnectionError, OSError):
        return None


def check_accept_backoff(folder, records):
    collector = Collector(folder, "", nofile=64)
    sockets = []
    try:
        token, _ = enrol_sensor(collector.config, "backoff-sensor")
        collector.start()
        port = collector.ports["ingest"]
        for _ in range(100):
            sockets.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        wait_for(lambda: "accept on the ingest listener failed" in collector.log(), 10,
                 "the accept failure in the log")
        cpu_before = collector.cpu_seconds()
        time.sleep(1.0)
        cpu_used = collector.cpu_seconds() - cpu_before
        check(cpu_used < 0.5, f"the collector used {cpu_used:.2f} s of CPU in 1 s without free "
              "file descriptors; accept must back off")
        log = collector.log()
        check("Too many open files" in log, "the accept failure does not name EMFILE")
        check("retrying in" in log, "the accept failure does not give the retry delay")
        check(log.count("accept on the ingest listener failed") <= 2,
              "repeated accept failures were not rate-limited in the log")

        for sock in sockets:
            sock.close()
        sockets = []
        deadline = time.monotonic() + 10
        status = None
        while time.monotonic() < deadline and status != 200:
            try:
                status, body = post_raw(port, "/v1/records", token, records[5])
            except OSError:
                status = None
            if status != 200:
                time.sleep(0.2)
        check(status == 200, f"ingest after the connections closed: {status}")
        values = collector.metrics()
        failures = values.get('webtrap_collector_accept_failures_total{listener="ingest"}', 0)
        check(failures >= 1, f"accept failures counted: {failures}")
    finally:
        for sock in sockets:
            sock.close()
        collector.stop()


def main():
    if not MAKE_RECORDS.exists():
        print("bench/collector/make_records.py is missing", file=sys.stderr)
        return 77
    folder = pathlib.Path(tempfile.mkdtemp(prefix="webtrap-collector-limits-"))
    checks = (("connection cap and read timeout", check_connection_cap_and_read_timeout),
              ("max_record_bytes", check_max_record_bytes),
              ("Expect: 100-continue", check_expect_continue),
              ("admin connection cap", check_admin_connection_cap),
              ("malformed requests", check_malformed_requests),
              ("accept backoff", check_accept_backoff))
    failures = []
    try:
        subprocess.run([sys.executable, str(MAKE_RECORDS), "--count", "6", "--probe-output",
                        str(folder / "records.ndjson")], check=True, capture_output=True,
                       timeout=60)
        records = (folder / "records.ndjson").read_bytes().splitlines(keepends=True)
        for index, (name, function) in enumerate(checks):
            workdir = folder / f"check-{index}"
            try:
                if function is check_connection_cap_and_read_timeout:
                    function(workdir)
                else:
                    function(workdir, records)
                print(f"ok: {name}")
            except Exception as error:  # each check reports and the next one still runs
                failures.append(name)
                print(f"FAILED: {name}: {error}", file=sys.stderr)
                log = workdir / "collector.log"
                if log.exists():
                    print(log.read_text(errors="replace")[-4000:], file=sys.stderr)
    finally:
        if not os.environ.get("WEBTRAP_KEEP_TEST_DIRS"):
            shutil.rmtree(folder, ignore_errors=True)
    if failures:
        print(f"collector limits: {len(failures)} checks failed: {', '.join(failures)}",
              file=sys.stderr)
        return 1
    print("collector limits: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
