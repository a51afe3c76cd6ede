"""Starts a webtrap probe on loopback for an integration test and reads its records.

Also enrols sensors with a collector and starts `webtrap collector`.
"""

import atexit
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

BIN = os.environ.get("WEBTRAP_BIN", "build/webtrap")
SOURCE_DIR = pathlib.Path(os.environ.get("WEBTRAP_SOURCE_DIR", pathlib.Path(__file__).parents[2]))
SHARED_DIR = pathlib.Path(os.environ.get("WEBTRAP_SHARED_DIR", SOURCE_DIR.parent / "shared"))


def ctime(seconds):
    """Return the asctime(3) form of a UTC time, as libmodsecurity writes it."""
    t = time.gmtime(seconds)
    return f"{time.strftime('%a %b', t)} {t.tm_mday:2d} {time.strftime('%H:%M:%S %Y', t)}"


def wait_for(condition, timeout, what):
    """Polls `condition` until it returns a true value or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


class Probe:
    """A probe process with one plain, one TLS, one IPv6 and one bait listener, all on port 0.

    `spool` is the spool folder, by default a new one in the probe's own
    temporary folder. Pass an earlier probe's `spool` to restart on it.
    `start_timeout` is the maximum number of seconds to wait for the ports
    file, which a probe writes once its start (and any journal recovery)
    is done.
    """

    def __init__(self, config_text="", extra_args=(), spool=None, start_timeout=60):
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix="webtrap-test-"))
        os.chmod(self.dir, 0o755)
        if not os.environ.get("WEBTRAP_KEEP_TEST_DIRS"):
            atexit.register(shutil.rmtree, self.dir, True)
        self.spool = pathlib.Path(spool) if spool else self.dir / "spool"
        self.ports_file = self.dir / "ports.json"
        config = self.dir / "probe.yaml"
        config.write_text(config_text or "sensor:\n  id: test-probe\n")
        args = [
            BIN, "probe", "--config", str(config),
            "--listen", "127.0.0.1:0", "--listen", "[::1]:0",
            "--listen-tls", "127.0.0.1:0", "--listen-bait", "127.0.0.1:0",
            "--spool", str(self.spool), "--state-dir", str(self.dir / "state"),
            "--admin-listen", "127.0.0.1:0", "--ports-file", str(self.ports_file),
            *extra_args,
        ]
        self.log = open(self.dir / "probe.log", "wb")
        self.process = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: self.ports_file.exists() or self.process.poll() is not None,
                     start_timeout, "the probe's ports file")
        except TimeoutError:
            self.stop()
            raise
        if self.process.poll() is not None:
            raise RuntimeError("probe exited at start:\n" + self.log_text())
        ports = json.loads(self.ports_file.read_text())
        self.http_port = ports["http-0"]
        self.http6_port = ports["http-1"]
        self.tls_port = ports["https-2"]
        self.bait_port = ports["bait-3"]
        self.admin_port = ports["admin"]

    def log_text(self):
        if not self.log.closed:
            self.log.flush()
        return (self.dir / "probe.log").read_text(errors="replace")

    def records(self):
        """Every whole record written so far, in spool order, parsed with json.loads.

        A last line without its newline is still being written and is skipped.
        """
        records = []
        if not self.spool.exists():
            return records
        for segment in sorted(self.spool.glob("*.ndjson")):
            data = segment.read_bytes()
            for line in data[:data.rfind(b"\n") + 1].splitlines():
                records.append(json.loads(line.decode("utf-8")))
        return records

    def wait_records(self, count, timeout=30):
        def enough():
            records = self.records()
            return records if len(records) >= count else None

        return wait_for(enough, timeout, f"{count} records")

    def metrics(self):
        """The admin listener's counters as a dict of 'name{labels}' to float."""
        return metrics_at(self.admin_port)

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
        return self.process.returncode


def send_raw(port, data, host="127.0.0.1", read=True, timeout=10):
    """Sends bytes on a new connection and returns what the server sent until it closed."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect((host, port))
        sock.sendall(data)
        if not read:
            return b""
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


def enrol_sensor(config, sensor_id, *extra_args):
    """Runs `webtrap collector enrol` for `sensor_id` and returns (token, enrol output)."""
    enrol = subprocess.run([BIN, "collector", "--config", str(config), "enrol",
                            "--sensor-id", sensor_id, *extra_args],
                           capture_output=True, text=True, timeout=60, check=True)
    token = next(line.split('"')[1] for line in enrol.stdout.splitlines()
                 if line.strip().startswith("token:"))
    return token, enrol.stdout


def start_collector(config, folder):
    """Starts `webtrap collector` with `config`, its output in folder/collector.log.

    The caller stops the returned process. Read its ports with collector_ports().
    """
    with open(folder / "collector.log", "wb") as log:
        return subprocess.Popen([BIN, "collector", "--config", str(config),
                                 "--ports-file", str(folder / "ports.json")],
                                stdout=log, stderr=subprocess.STDOUT)


class CollectorRun:
    """A temporary folder for one collector test, and the collector started in it.

    Used as a context manager: on an exception it prints the end of the
    collector's log, and on leaving it stops the collector with SIGTERM and
    removes the folder (kept when WEBTRAP_KEEP_TEST_DIRS is set).
    """

    def __init__(self, prefix):
        self.folder = pathlib.Path(tempfile.mkdtemp(prefix=prefix))
        self.collector = None

    def start(self, config):
        """Starts `webtrap collector` with `config` in the folder (see start_collector)."""
        self.collector = start_collector(config, self.folder)
        return self.collector

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, traceback):
        try:
            if exc_type is not None:
                log_path = self.folder / "collector.log"
                if log_path.exists():
                    print(log_path.read_text(errors="replace")[-4000:], file=sys.stderr)
        finally:
            if self.collector is not None and self.collector.poll() is None:
                self.collector.send_signal(signal.SIGTERM)
                self.collector.wait(timeout=30)
            if not os.environ.get("WEBTRAP_KEEP_TEST_DIRS"):
                shutil.rmtree(self.folder, ignore_errors=True)
        return False


def collector_ports(collector, folder):
    """Waits for the ports file of a collector from start_collector() and returns its ports."""
    ports_file = folder / "ports.json"
    wait_for(lambda: ports_file.exists() or collector.poll() is not None, 30, "ports file")
    if collector.poll() is not None:
        raise AssertionError("collector exited at start")
    return json.loads(ports_file.read_text())


def parse_metrics(text):
    """Prometheus text as a dict of 'name{labels}' to float."""
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


def metrics_at(port):
    """The counters of the admin listener on 127.0.0.1:`port`."""
    url = f"http://127.0.0.1:{port}/metrics"
    return parse_metrics(urllib.request.urlopen(url, timeout=10).read().decode())


def form_post(marker, fields):
    """A raw POST of `fields` form fields to /blog/post.php?marker=MARKER.
    Each marker gives a distinct body, so no inspection result comes from the
    cache, and 900 fields cost libmodsecurity some milliseconds, so such
    requests queue for inspection."""
    body = "&".join(f"f{j}={marker}-{j}" for j in range(fields)).encode()
    return (f"POST /blog/post.php?marker={marker} HTTP/1.1\r\nHost: www.example.com\r\n"
            f"User-Agent: Mozilla/5.0\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body


def record_marker(record):
    """The `marker` query parameter of a record's request line, or ""."""
    target = record["webtrap"]["request"]["line"].split(" ")[1]
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(target).query)
    return query.get("marker", [""])[0]
