"""Helpers for tests that drive a probe with real tools.

`RequestCapture` counts the HTTP requests sent to a port from a packet capture
(tshark on the loopback interface), so a test can compare the probe's record
count with a number that the probe did not produce itself.
"""

import collections
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid

import jsonschema

from probe_harness import SOURCE_DIR, send_raw, wait_for

MARKER_PREFIX = "/webtrap-capture-marker-"


def load_schema():
    return json.loads((SOURCE_DIR / "docs" / "record-schema.json").read_text())


def schema_errors(records, schema=None):
    """Returns one line per record that does not validate, with the record's request line."""
    schema = schema or load_schema()
    validator = jsonschema.Draft202012Validator(schema)
    errors = []
    for record in records:
        for error in validator.iter_errors(record):
            line = record.get("webtrap", {}).get("request", {}).get("line", "?")
            path = "/".join(str(p) for p in error.absolute_path)
            errors.append(f"{line!r}: /{path}: {error.message}")
    return errors


def rule_ids(record):
    return [m["details"]["ruleId"] for m in record["transaction"].get("messages", [])]


def has_rule(record, prefix):
    return any(rule.startswith(prefix) for rule in rule_ids(record))


def bait_kinds(record):
    return [bait["kind"] for bait in record["webtrap"].get("baits", [])]


def is_marker(record):
    return MARKER_PREFIX in record["webtrap"]["request"].get("line", "")


def build_request(method, uri, headers, body=b"", version="HTTP/1.1"):
    """Returns the bytes of a request with the header fields exactly in the order given.

    Adds nothing: a body goes out without a Content-Length unless `headers` has one.
    """
    if isinstance(body, str):
        body = body.encode("utf-8")
    head = f"{method} {uri} {version}\r\n".encode("utf-8")
    for name, value in headers:
        head += name.encode("utf-8") + b": " + value.encode("utf-8") + b"\r\n"
    return head + b"\r\n" + body


def send_with_port(port, data, host="127.0.0.1", timeout=10):
    """Sends bytes on a new connection, reads until the server closes, and returns
    (response bytes, local port), so the caller can find the record by client port."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        local_port = sock.getsockname()[1]
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may close before it has read everything, as for a too long head
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks), local_port


def tshark_missing():
    """Returns why a packet capture cannot run here, or an empty string."""
    if not shutil.which("tshark"):
        return "tshark not found; install the Debian package tshark"
    if os.geteuid() != 0 and not os.access("/usr/bin/dumpcap", os.X_OK):
        return "dumpcap is not runnable; capturing on lo needs root or the wireshark group"
    return ""


class RequestCapture:
    """Counts the HTTP requests that reach one TCP port on lo, from a live tshark capture.

    Every TCP stream to the port counts the requests that tshark's HTTP dissector
    parsed in it. A stream that carried data but no request tshark could parse
    (a bad method, binary data, a request cut short) counts as one request,
    because the probe, like Apache, responds to such bytes with one error and closes
    the connection, so they give one record. Streams that carried no data count
    as none. The result is a count per client port, to compare with the
    records' `transaction.client_port`.
    """

    def __init__(self, port, interface="lo"):
        self.port = port
        self.lines = []
        self.errors = []
        self._ready = threading.Event()
        self._lock = threading.Lock()
        args = [
            "tshark", "-i", interface, "-n", "-l",
            "-f", f"tcp dst port {port}",
            "-d", f"tcp.port=={port},http",
            "-Y", "tcp.len > 0",
            "-T", "fields", "-E", "separator=\t", "-E", "occurrence=a", "-E", "aggregator=|",
            "-e", "tcp.stream", "-e", "tcp.srcport", "-e", "http.request",
            "-e", "http.request.method", "-e", "http.request.uri",
        ]

        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        start_new_session=True)
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

        if not self._ready.wait(30):
            self.stop_process()
            raise RuntimeError("tshark did not start capturing within 30 s: "
                               + " ".join(self.errors))
        if self.process.poll() is not None:
            raise RuntimeError("tshark exited at start: " + " ".join(self.errors))

        # tshark prints "Capturing on" before dumpcap captures packets, so send
        # marker requests until one shows up in the capture.
        for _ in range(30):
            try:
                self._send_marker("start", timeout=1)
                return
            except TimeoutError:
                pass
        self.stop_process()
        raise RuntimeError("tshark captured none of 30 start marker requests: "
                           + " ".join(self.errors))

    def _send_marker(self, label, timeout):
        marker = f"{MARKER_PREFIX}{label}-{uuid.uuid4().hex}"
        send_raw(self.port, f"GET {marker} HTTP/1.1\r\nHost: localhost\r\n"
                 "Connection: close\r\n\r\n".encode())

        def seen():
            with self._lock:
                return any(marker in line for line in self.lines)

        wait_for(seen, timeout, f"tshark to capture the {label} marker request")

    def _read_stdout(self):
        for raw in self.process.stdout:
            with self._lock:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))

    def _read_stderr(self):
        for raw in self.process.stderr:
            text = raw.decode("utf-8", "replace").strip()
            if text.startswith("Capturing on"):
                self._ready.set()
            elif text and "Running as user" not in text:
                self.errors.append(text)
        self._ready.set()  # tshark exited: let the constructor see it

    def finish(self, timeout=30):
        """Sends a marker request and waits until tshark has seen it, then stops tshark.

        Packets on lo arrive in order, so once the capture contains this request it
        contains every packet sent to the port before it.
        """
        self._send_marker("end", timeout)
        self.stop_process()

    def stop_process(self):
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def requests_by_port(self):
        """Counter of expected records per client port, without marker requests."""
        streams = {}
        with self._lock:
            lines = list(self.lines)
        for line in lines:
            fields = line.split("\t")
            fields += [""] * (5 - len(fields))
            stream, source_port, flags, _methods, uris = fields[:5]
            entry = streams.setdefault(stream, {"port": int(source_port), "requests": 0,
                                                "marker": False})
            if flags:
                entry["requests"] += len(flags.split("|"))
            if MARKER_PREFIX in uris:
                entry["marker"] = True
        counts = collections.Counter()
        for entry in streams.values():
            if entry["marker"]:
                continue
            counts[entry["port"]] += max(entry["requests"], 1)
        return counts

    def http_request_count(self):
        """Requests that tshark parsed as HTTP, without marker requests."""
        total = 0
        with self._lock:
            lines = list(self.lines)
        for line in lines:
            fields = line.split("\t") + [""] * 5
            if fields[2] and MARKER_PREFIX not in fields[4]:
                total += len(fields[2].split("|"))
        return total


def records_by_port(records):
    return collections.Counter(r["transaction"]["client_port"] for r in records
                               if not is_marker(r))


def port_count_differences(expected, actual, limit=20):
    """Lines naming the client ports whose record count differs from the capture."""
    lines = []
    for port in sorted(set(expected) | set(actual)):
        if expected[port] != actual[port]:
            lines.append(f"client port {port}: {expected[port]} requests captured, "
                         f"{actual[port]} records")
    return lines[:limit] + ([f"... {len(lines) - limit} more"] if len(lines) > limit else [])


def wait_records_settled(probe, minimum, timeout=60, quiet=1.0):
    """Waits until the probe has at least `minimum` records and no new one for `quiet` s."""
    deadline = time.monotonic() + timeout
    last_count, last_change = -1, time.monotonic()
    while time.monotonic() < deadline:
        count = len(probe.records())
        if count != last_count:
            last_count, last_change = count, time.monotonic()
        elif count >= minimum and time.monotonic() - last_change >= quiet:
            return probe.records()
        time.sleep(0.1)
    raise TimeoutError(f"probe has {last_count} records after {timeout}s, expected {minimum}")
