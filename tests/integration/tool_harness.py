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


class Stream:
    """What a packet capture shows of one TCP connection to the probe."""

    def __init__(self, client_port):
        self.client_port = client_port
        self.requests = 0         # requests that tshark's HTTP dissector parsed
        self.client_data = False  # the client sent any payload
        self.marker = False       # carries a marker request of RequestCapture

    def sent(self):
        """Requests the client sent: data that tshark could not parse counts as one."""
        return max(self.requests, 1 if self.client_data else 0)


class RequestCapture:
    """Counts the HTTP requests sent to one TCP port of lo, from a live tshark capture.

    The count comes from the wire, not from the probe, so a test can compare it
    with the records. Data that tshark's HTTP dissector cannot parse as a
    request (a bad method, binary data, a request cut short) counts as one
    request, because the probe, like Apache, responds to such bytes with one
    error and closes the connection.

    NOTE: a client that pipelines may send requests after a response that
    closes the connection. Neither Apache 2.4 nor the probe reads those, so
    they are counted here but give no record. Run pipelining tools with
    pipelining off.
    """

    FIELDS = ["tcp.stream", "tcp.srcport", "http.request", "http.request.uri"]

    def __init__(self, port, interface="lo"):
        self.port = port
        self.lines = []
        self.errors = []
        self._ready = threading.Event()
        self._lock = threading.Lock()
        args = [
            # A 64 MiB capture buffer (-B, default 2 MiB) makes dropped packets
            # less likely while other work keeps the CPUs busy.
            "tshark", "-i", interface, "-n", "-l", "-B", "64",
            "-f", f"tcp dst port {port}",
            "-d", f"tcp.port=={port},http",
            "-Y", "tcp.len > 0",
            "-T", "fields", "-E", "separator=\t", "-E", "occurrence=a", "-E", "aggregator=|",
        ]
        for field in self.FIELDS:
            args += ["-e", field]

        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        start_new_session=True)
        self._readers = [threading.Thread(target=self._read_stdout, daemon=True),
                         threading.Thread(target=self._read_stderr, daemon=True)]
        for reader in self._readers:
            reader.start()

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
        for reader in self._readers:
            reader.join(timeout=10)
        self.process.stdout.close()
        self.process.stderr.close()

    def streams(self):
        """Every TCP connection that carried data, without those of marker requests."""
        streams = {}
        with self._lock:
            lines = list(self.lines)
        for line in lines:
            fields = line.split("\t")
            fields += [""] * (len(self.FIELDS) - len(fields))
            stream_id, client_port, requests, uris = fields
            stream = streams.setdefault(stream_id, Stream(int(client_port)))
            stream.client_data = True
            stream.requests += len(requests.split("|")) if requests else 0
            stream.marker = stream.marker or MARKER_PREFIX in uris
        return [stream for stream in streams.values() if not stream.marker]

    def summary(self):
        streams = self.streams()
        return {
            "connections": len(streams),
            "requests_sent": sum(s.sent() for s in streams),
            "requests_parsed_by_tshark": sum(s.requests for s in streams),
        }

    def sent_by_port(self):
        counts = collections.Counter()
        for stream in self.streams():
            counts[stream.client_port] += stream.sent()
        return counts


def wait_pipeline_drained(probe, timeout=300):
    """Waits until the probe has written or dropped a record for every request it responded to.

    Inspection runs after the response is sent, so on a busy machine the last
    records reach the spool long after the tool has finished.
    """

    def drained():
        metrics = probe.metrics()
        jobs = metrics.get("webtrap_pipeline_jobs_total", 0)
        done = (metrics.get("webtrap_records_written_total", 0)
                + metrics.get("webtrap_records_dropped_total", 0))
        return jobs == done

    wait_for(drained, timeout, "the probe to record every answered request")


def records_by_port(records):
    return collections.Counter(r["transaction"]["client_port"] for r in records
                               if not is_marker(r))


def port_count_differences(expected, actual, limit=20):
    """Lines naming the client ports whose record count differs from the capture."""
    lines = []
    for port in sorted(set(expected) | set(actual)):
        if expected[port] != actual[port]:
            lines.append(f"client port {port}: {expected[port]} requests sent, "
                         f"{actual[port]} records")
    return lines[:limit] + ([f"... {len(lines) - limit} more"] if len(lines) > limit else [])


def complete_records(probe):
    """Every record whose line is complete, in spool order.

    Unlike Probe.records(), skips a last line that the probe is still writing,
    so it can poll a spool while a tool floods the probe.
    """
    records = []
    if not probe.spool.exists():
        return records
    for segment in sorted(probe.spool.glob("*.ndjson")):
        data = segment.read_bytes()
        complete = data[:data.rfind(b"\n") + 1]
        for line in complete.splitlines():
            records.append(json.loads(line.decode("utf-8")))
    return records
