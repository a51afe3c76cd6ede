"""A collector started per check, and a runner for scripts of such checks.

Used by the integration tests that attack the collector one weakness at a
time. Every server binds 127.0.0.1.
"""

import http.client
import json
import os
import pathlib
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time

BIN = pathlib.Path(os.environ.get("WEBTRAP_BIN", ""))


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class Collector:
    """A collector on loopback ports chosen by the kernel."""

    def __init__(self, workdir, extra="", limits="{}", nofile=None):
        self.dir = pathlib.Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.state = self.dir / "state"
        self.config = self.dir / "collector.yaml"
        self.config.write_text(f"listen: 127.0.0.1:0\n"
                               f"admin: {{listen: 127.0.0.1:0}}\n"
                               f"state_dir: {self.state}\n"
                               f"limits: {limits}\n{extra}")
        self.ports_file = self.dir / "ports.json"
        self.log_path = self.dir / "collector.log"
        self.nofile = nofile
        self.process = None

    def command(self, *args):
        return subprocess.run([str(BIN), "collector", "--config", str(self.config), *args],
                              capture_output=True, text=True, timeout=60)

    def enrol(self, sensor_id):
        result = self.command("enrol", "--sensor-id", sensor_id)
        check(result.returncode == 0, f"enrol failed:\n{result.stdout}{result.stderr}")
        return next(line.split('"')[1] for line in result.stdout.splitlines()
                    if line.strip().startswith("token:"))

    def count(self):
        result = self.command("count")
        check(result.returncode == 0, f"count failed:\n{result.stdout}{result.stderr}")
        return json.loads(result.stdout)

    def start(self):
        if self.ports_file.exists():
            self.ports_file.unlink()
        limit = self.nofile

        def limit_files():
            if limit is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [str(BIN), "collector", "--config", str(self.config), "--ports-file",
                 str(self.ports_file)],
                stdout=log, stderr=subprocess.STDOUT, preexec_fn=limit_files)
        wait_for(lambda: self.ports_file.exists() or self.process.poll() is not None, 30,
                 "the collector's ports file")
        check(self.process.poll() is None, "the collector exited at start:\n" + self.log())
        ports = json.loads(self.ports_file.read_text())
        self.ingest_port = ports["ingest"]
        self.admin_port = ports["admin"]

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=70)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def status_kib(self, field):
        for line in open(f"/proc/{self.process.pid}/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise AssertionError(f"{field} missing from /proc/{self.process.pid}/status")

    def cpu_seconds(self):
        fields = open(f"/proc/{self.process.pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def post(self, path, token, body, headers=None, timeout=300):
        connection = http.client.HTTPConnection("127.0.0.1", self.ingest_port, timeout=timeout)
        try:
            connection.request("POST", path, body=body,
                               headers={"Authorization": f"Bearer {token}", **(headers or {})})
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()


def start_log(workdir, limits="{}"):
    """Starts a collector with `limits`, waits for its start line, stops it
    and returns its log: for checks of what it warns about at start."""
    collector = Collector(workdir, limits=limits)
    collector.start()
    try:
        wait_for(lambda: "collector: started" in collector.log(), 10, "the start log line")
        return collector.log()
    finally:
        collector.stop()


def run_checks(checks, prefix, prepare=None):
    """Runs each check in a folder of its own and returns the exit status.

    Every check runs even when an earlier one fails. A check gets its folder
    and, when `prepare` is given, what prepare(root) returned. State folders
    go next to the binary rather than in /tmp, which may be a small tmpfs.
    """
    if not BIN.is_file():
        print("WEBTRAP_BIN is not set or not a file; skipping")
        return 77
    root = pathlib.Path(tempfile.mkdtemp(prefix=prefix, dir=BIN.parent))
    failed = []
    try:
        extra = [prepare(root)] if prepare is not None else []
        for check_function in checks:
            workdir = root / check_function.__name__
            workdir.mkdir()
            started = time.monotonic()
            try:
                check_function(workdir, *extra)
                print(f"ok   {check_function.__name__} ({time.monotonic() - started:.1f} s)")
            except AssertionError as error:
                failed.append(check_function.__name__)
                print(f"FAIL {check_function.__name__} ({time.monotonic() - started:.1f} s): "
                      f"{error}")
            sys.stdout.flush()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if failed:
        print(f"{len(failed)} of {len(checks)} checks failed: {', '.join(failed)}")
        return 1
    print(f"all {len(checks)} checks passed")
    return 0
