#!/usr/bin/env python3
"""Benchmark webtrap's probe against nginx with ModSecurity and CRS.

Both servers run pinned to CPU 0 and the load generators to CPU 1, on
loopback only. bench/run.sh builds the tools and calls this script; see
bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import datetime
import glob
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field

# bench/collector/run.sh owns the part of docs/benchmarks.md between these
# markers, and the part of bench/analysis.md from this heading on.
COLLECTOR_BEGIN_MARKER = "<!-- collector-benchmark:begin -->"
COLLECTOR_END_MARKER = "<!-- collector-benchmark:end -->"
COLLECTOR_NOTES_HEADING = "## What limits the collector"
SERVER_CPU = "0"
CLIENT_CPU = "1"
P99_TARGET_MS = 10.0
# Open-loop runs give the server this long after the last scheduled request.
OPEN_LOOP_DRAIN_S = 10
# nginx-peer.sh sets worker_connections 256; the open-loop generator stays
# below it and queues further requests itself, still timed from their
# scheduled send time.
OPEN_LOOP_MAX_CONNECTIONS = 200
# The probe's inspection backlog after a closed-loop run is at most
# pipeline.queue_limit jobs; this bounds the wait for it to empty.
PROBE_DRAIN_TIMEOUT_S = 180
START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 60
WARMUP_RATE = 100
WARMUP_S = 2
HOST_HEADER = "localhost"
BROWSER_HEADERS = (
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:115.0) Gecko/20100101 Firefox/115.0\r\n"
    "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
    "Accept-Language: en-US,en;q=0.5\r\n"
    "Accept-Encoding: gzip, deflate\r\n"
)
POST_BODY_BYTES = 2048


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- workloads --------------------------------------------------------------


def form_body(size: int) -> bytes:
    """Return a benign urlencoded contact form of exactly `size` bytes."""
    head = (
        "name=Jane+Doe&email=jane.doe%40example.org&subject=Question+about+my+order"
        "&order=10442&newsletter=on&message="
    )
    words = (
        "Hello+team%2C+I+ordered+a+blue+kettle+last+week+and+it+has+not+arrived+yet.+"
        "Could+you+check+the+delivery+status+and+let+me+know+when+to+expect+it%3F+"
    )
    text = head
    while len(text) < size:
        text += words
    return text[:size].encode()


def build_requests() -> dict[str, bytes]:
    attack_query = (
        "id=1%27%20UNION%20SELECT%20username%2Cpassword%20FROM%20users--%20"
        "&q=%3Cscript%3Ealert%28document.cookie%29%3C%2Fscript%3E"
    )
    body = form_body(POST_BODY_BYTES)
    return {
        "benign": (
            f"GET / HTTP/1.1\r\nHost: {HOST_HEADER}\r\n{BROWSER_HEADERS}\r\n"
        ).encode(),
        "attack": (
            f"GET /index.php?{attack_query} HTTP/1.1\r\nHost: {HOST_HEADER}\r\n"
            f"{BROWSER_HEADERS}\r\n"
        ).encode(),
        "post": (
            f"POST /contact.php HTTP/1.1\r\nHost: {HOST_HEADER}\r\n{BROWSER_HEADERS}"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        + body,
    }


# --- process helpers ----------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def read_status_kib(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    """Return user + system CPU time of a process, all threads included."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_busy_seconds(cpu: str) -> float:
    """Return the busy (not idle, not iowait) time of one CPU from /proc/stat."""
    with open("/proc/stat") as stat:
        for line in stat:
            fields = line.split()
            if fields[0] == f"cpu{cpu}":
                ticks = [int(v) for v in fields[1:]]
                return (sum(ticks[:8]) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")
    return 0.0


def children(pid: int) -> list[int]:
    found = []
    for path in glob.glob(f"/proc/{pid}/task/*/children"):
        try:
            with open(path) as handle:
                found += [int(p) for p in handle.read().split()]
        except OSError:
            pass
    return found


def thread_cpus(pid: int) -> set[str]:
    """Return the distinct Cpus_allowed_list values of a process's threads."""
    cpus = set()
    for path in glob.glob(f"/proc/{pid}/task/*/status"):
        try:
            with open(path) as status:
                for line in status:
                    if line.startswith("Cpus_allowed_list:"):
                        cpus.add(line.split()[1])
        except OSError:
            pass
    return cpus


def count_lines(paths: list[str]) -> int:
    total = 0
    for path in paths:
        with open(path, "rb") as handle:
            total += sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
    return total


def wait_for(predicate, timeout_s: float, interval_s: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return predicate()


def wait_stable(sample, quiet_s: float, timeout_s: float) -> None:
    """Wait until sample() returns the same value for quiet_s seconds."""
    deadline = time.monotonic() + timeout_s
    last, since = sample(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.2)
        current = sample()
        if current != last:
            last, since = current, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return


def rule_ids(record: dict) -> list[str]:
    messages = record.get("transaction", {}).get("messages", [])
    return sorted({m.get("details", {}).get("ruleId", "?") for m in messages})


def last_json_line(path: str) -> dict | None:
    with open(path, "rb") as handle:
        lines = [line for line in handle.read().splitlines() if line.strip()]
    for line in reversed(lines):
        try:
            return json.loads(line)
        except json.JSONDecodeError:
            continue
    return None


# --- servers ----------------------------------------------------------------


@dataclass
class Server:
    """A running server under test and what bench.py needs to measure it."""

    kind: str
    mode: str
    port: int
    work_dir: str
    handle: object = None
    admin_port: int = 0

    def pids(self) -> list[int]:
        raise NotImplementedError

    def peak_rss_kib(self) -> int:
        return sum(read_status_kib(pid, "VmHWM") for pid in self.pids())

    def cpu_seconds(self) -> float:
        return sum(cpu_seconds(pid) for pid in self.pids())


class NginxServer(Server):
    def __init__(self, peer_script: str, work_dir: str, audit_engine: str):
        super().__init__("nginx", f"SecAuditEngine {audit_engine}", free_port(), work_dir)
        self.peer_script = peer_script
        self.audit_engine = audit_engine
        os.makedirs(work_dir, exist_ok=True)
        self.log = open(os.path.join(work_dir, "bench-nginx.log"), "ab")

    def start(self) -> None:
        # nginx-peer.sh writes the configuration and checks that nginx starts.
        # nginx is then restarted on that configuration with two changes: the
        # audit log gets part C (the request body), as the probe's records
        # carry the body, and the audit engine mode of this run.
        self.run_peer("start", str(self.port))
        self.run_peer("stop")
        conf = os.path.join(self.work_dir, "modsec.conf")
        with open(conf) as handle:
            text = handle.read()
        text, engines = re.subn(r"^SecAuditEngine On$", f"SecAuditEngine {self.audit_engine}",
                                text, flags=re.M)
        text, parts = re.subn(r"^SecAuditLogParts AB(?!C)", "SecAuditLogParts ABC", text,
                              flags=re.M)
        if engines != 1 or parts != 1:
            raise RuntimeError(f"{conf} lacks 'SecAuditEngine On' or 'SecAuditLogParts AB...'")
        with open(conf, "w") as handle:
            handle.write(text)
        for name in ("audit.log", "access.log"):
            open(os.path.join(self.work_dir, name), "w").close()
        os.chmod(os.path.join(self.work_dir, "audit.log"), 0o666)
        nginx_conf = os.path.join(self.work_dir, "nginx.conf")
        subprocess.run(["taskset", "-c", SERVER_CPU, "nginx", "-p", self.work_dir, "-c",
                        nginx_conf], check=True, stdout=self.log, stderr=self.log)
        if not wait_for(lambda: self.pids() and port_open(self.port), START_TIMEOUT_S):
            raise RuntimeError(f"nginx did not start in {self.work_dir}")

    def run_peer(self, *args: str) -> None:
        subprocess.run(["taskset", "-c", SERVER_CPU, "bash", self.peer_script, args[0],
                        self.work_dir, *args[1:]], check=True, stdout=self.log, stderr=self.log)

    def stop(self) -> None:
        self.run_peer("stop")
        self.log.close()

    def master_pid(self) -> int:
        try:
            with open(os.path.join(self.work_dir, "nginx.pid")) as handle:
                return int(handle.read().strip())
        except (OSError, ValueError):
            return 0

    def pids(self) -> list[int]:
        master = self.master_pid()
        return [master] + children(master) if master else []

    def request_count(self) -> int:
        return count_lines([os.path.join(self.work_dir, "access.log")])

    def record_count(self) -> int:
        return count_lines([os.path.join(self.work_dir, "audit.log")])

    def last_record(self) -> dict | None:
        return last_json_line(os.path.join(self.work_dir, "audit.log"))


class ProbeServer(Server):
    def __init__(self, webtrap: str, work_dir: str, cache_entries: int, workers: int,
                 extra_env: dict[str, str] | None = None, data_dir: str = ""):
        cache = "on" if cache_entries else "off"
        mode = f"cache {cache}, {workers} workers"
        if extra_env and extra_env.get("LD_PRELOAD"):
            mode += f", {os.path.basename(extra_env['LD_PRELOAD'])}"
        super().__init__("probe", mode, free_port(), work_dir)
        self.webtrap = webtrap
        self.cache_entries = cache_entries
        self.workers = workers
        self.admin_port = free_port()
        self.spool_dir = os.path.join(work_dir, "spool")
        self.extra_env = extra_env or {}
        self.data_dir = data_dir

    def write_config(self) -> str:
        os.makedirs(self.work_dir, exist_ok=True)
        # The probe drops root privileges to `nobody` at start, so its folders
        # must be writable for that user.
        for sub in ("spool", "state"):
            path = os.path.join(self.work_dir, sub)
            os.makedirs(path, exist_ok=True)
            os.chmod(path, 0o777)
        os.chmod(self.work_dir, 0o755)
        data_keys, rules_key = "", ""
        if self.data_dir:
            data_keys = f"personas_dir: {self.data_dir}/personas\n"
            rules_key = f"\n  webtrap_rules: {self.data_dir}/rules"
        config = f"""# Generated by bench/bench.py.
sensor:
  id: bench-probe
persona: apache-debian-php
listeners:
  - name: http
    address: 127.0.0.1:{self.port}
state_dir: {self.work_dir}/state
admin:
  listen: 127.0.0.1:{self.admin_port}
# The load generators use one source address and up to 200 connections, so
# the per-source cap is raised. nginx 1.22 closes a keep-alive connection
# after 1000 requests (keepalive_requests), and so does the probe here.
limits:
  max_connections: 2048
  max_connections_per_source: 2048
  max_requests_per_connection: 1000
{data_keys}modsecurity:
  paranoia_level: 1
  cache_entries: {self.cache_entries}{rules_key}
pipeline:
  workers: {self.workers}
# A closed-loop run writes over 1 GiB of records, the default disk cap.
spool:
  dir: {self.spool_dir}
  max_bytes: 16GiB
"""
        path = os.path.join(self.work_dir, "probe.yaml")
        with open(path, "w") as handle:
            handle.write(config)
        return path

    def start(self) -> None:
        config = self.write_config()
        self.log_path = os.path.join(self.work_dir, "probe.log")
        log_file = open(self.log_path, "wb")
        self.handle = subprocess.Popen(
            ["taskset", "-c", SERVER_CPU, self.webtrap, "probe", "--config", config],
            stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=dict(os.environ, **self.extra_env))
        log_file.close()

        def ready() -> bool:
            if self.handle.poll() is not None:
                raise RuntimeError(f"probe exited with {self.handle.returncode}; see "
                                   f"{self.log_path}")
            return port_open(self.port) and self.metrics_or_none() is not None

        if not wait_for(ready, START_TIMEOUT_S, 0.2):
            self.stop()
            raise RuntimeError(f"probe did not listen within {START_TIMEOUT_S}s; see "
                               f"{self.log_path}")

    def stop(self) -> None:
        if self.handle is None or self.handle.poll() is not None:
            return
        self.handle.send_signal(signal.SIGTERM)
        try:
            self.handle.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            log(f"probe PID {self.handle.pid} did not stop after SIGTERM; sending SIGKILL")
            self.handle.kill()
            self.handle.wait()

    def pids(self) -> list[int]:
        return [self.handle.pid] if self.handle and self.handle.poll() is None else []

    def metrics_or_none(self) -> dict[str, float] | None:
        url = f"http://127.0.0.1:{self.admin_port}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                text = response.read().decode()
        except OSError:
            return None
        values = {}
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            name, _, value = line.rpartition(" ")
            try:
                values[name] = float(value)
            except ValueError:
                continue
        return values

    def metrics(self) -> dict[str, float]:
        values = self.metrics_or_none()
        if values is None:
            raise RuntimeError(f"probe metrics at 127.0.0.1:{self.admin_port} unreachable")
        return values

    def spool_files(self) -> list[str]:
        return sorted(glob.glob(os.path.join(self.spool_dir, "**", "*.ndjson"), recursive=True))

    def record_count(self) -> int:
        return count_lines(self.spool_files())

    def last_record(self) -> dict | None:
        files = self.spool_files()
        return last_json_line(files[-1]) if files else None


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def metric(values: dict[str, float], name: str) -> float:
    return values.get(name, 0.0)


def inspections(values: dict[str, float]) -> dict[str, float]:
    return {
        status: metric(values, f'webtrap_inspections_total{{status="{status}"}}')
        for status in ("complete", "cached", "failed")
    }


# --- load generators --------------------------------------------------------


@dataclass
class Tools:
    webtrap: str
    loadgen: str
    wrk_script: str
    peer_script: str


def run_wrk(tools: Tools, port: int, request_file: str, duration_s: int,
            connections: int) -> dict:
    env = dict(os.environ, BENCH_REQUEST_FILE=request_file)
    command = ["taskset", "-c", CLIENT_CPU, "wrk", "-t1", f"-c{connections}",
               f"-d{duration_s}s", "--timeout", "10s", "-s", tools.wrk_script,
               f"http://127.0.0.1:{port}/"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=True,
                            timeout=duration_s + 60)
    for line in result.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            summary = json.loads(line[len("BENCH_JSON "):])
            summary["rate"] = summary["requests"] / (summary["duration_us"] / 1e6)
            return summary
    raise RuntimeError(f"wrk printed no summary:\n{result.stdout}\n{result.stderr}")


def run_open_loop(tools: Tools, port: int, request_file: str, rate: float,
                  duration_s: float) -> dict:
    command = ["taskset", "-c", CLIENT_CPU, tools.loadgen, "--port", str(port), "--rate",
               f"{rate:.1f}", "--duration", str(duration_s), "--request-file", request_file,
               "--drain", str(OPEN_LOOP_DRAIN_S), "--max-connections",
               str(OPEN_LOOP_MAX_CONNECTIONS)]
    result = subprocess.run(command, capture_output=True, text=True, check=True,
                            timeout=duration_s + OPEN_LOOP_DRAIN_S + 60)
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    summary["rate"] = summary["achieved_rate"]
    return summary


# --- one measured run ---------------------------------------------------------


@dataclass
class RunSpec:
    server: str  # "nginx" or "probe"
    workload: str
    load: str  # "closed" (wrk) or "open" (constant rate)
    audit_engine: str = "On"
    cache_entries: int = 0
    rate: float = 0.0


@dataclass
class RunResult:
    spec: RunSpec
    mode: str = ""
    rate: float = 0.0
    p50_ms: float = -1.0
    p99_ms: float = -1.0
    load_summary: dict = field(default_factory=dict)
    peak_rss_kib: int = 0
    cpu_s: float = 0.0
    requests: int = 0
    records: int = 0
    rule_ids: list = field(default_factory=list)
    inspections: dict = field(default_factory=dict)
    shed: float = 0.0
    inspections_per_s_load: float = 0.0
    inspections_per_s_drain: float | None = None
    drain_s: float = 0.0
    load_s: float = 0.0
    # CPU 0 time used by processes other than the server during the load,
    # as a share of the load's wall time: other work on the machine.
    foreign_cpu0_share: float = 0.0
    # CPU 1 busy time (load generator and any other work) over the load's
    # wall time; a busy CPU 1 delays the generator and inflates latency.
    cpu1_busy_share: float = 0.0
    records_dropped: int = 0
    cpu_total_s: float = 0.0
    load_requests: int = 0
    loadavg: str = ""
    pinned: list = field(default_factory=list)

    def records_per_request(self) -> float:
        return self.records / self.requests if self.requests else 0.0


def latency_ms(summary: dict, key: str) -> float:
    value = summary.get(key, -1)
    return value / 1000.0 if value >= 0 else -1.0


def wait_probe_drained(server: ProbeServer) -> tuple[float, float | None]:
    """Wait until the probe has written every queued job.

    Returns the wait in seconds and the inspection rate while the queue
    emptied with no load running, or None when the backlog was too small to
    time.
    """
    start = time.monotonic()
    samples = []
    deadline = start + PROBE_DRAIN_TIMEOUT_S
    while time.monotonic() < deadline:
        values = server.metrics()
        now = time.monotonic()
        done = sum(inspections(values).values())
        depth = metric(values, "webtrap_inspection_queue_depth")
        samples.append((now, done, depth))
        written = metric(values, "webtrap_records_written_total") + metric(
            values, "webtrap_records_dropped_total")
        if depth == 0 and written >= metric(values, "webtrap_pipeline_jobs_total"):
            break
        time.sleep(0.25)
    else:
        raise RuntimeError(f"probe queue did not drain within {PROBE_DRAIN_TIMEOUT_S}s")
    waited = time.monotonic() - start

    drain_rate = None
    first_time, first_done, first_depth = samples[0]
    empty = next((s for s in samples if s[2] == 0), samples[-1])
    if first_depth >= 200 and empty[0] > first_time:
        drain_rate = (empty[1] - first_done) / (empty[0] - first_time)
    return waited, drain_rate


def measure(tools: Tools, spec: RunSpec, request_file: str, work_dir: str, duration_s: int,
            connections: int, workers: int, probe_preload: str = "",
            data_dir: str = "") -> RunResult:
    name = f"{spec.server}-{spec.workload}-{spec.load}-{spec.audit_engine}-c{spec.cache_entries}"
    run_dir = os.path.join(work_dir, name)
    os.makedirs(run_dir, exist_ok=True)
    if spec.server == "nginx":
        server = NginxServer(tools.peer_script, run_dir, spec.audit_engine)
    else:
        extra_env = {"LD_PRELOAD": probe_preload} if probe_preload else {}
        server = ProbeServer(tools.webtrap, run_dir, spec.cache_entries, workers, extra_env,
                             data_dir)
    result = RunResult(spec=spec, mode=server.mode)
    server.start()
    try:
        # A short warm-up so that first-request costs (page faults, lazy
        # initialisation) stay out of the measured run.
        run_open_loop(tools, server.port, request_file, WARMUP_RATE, WARMUP_S)
        if isinstance(server, ProbeServer):
            wait_probe_drained(server)
        record = server.last_record()
        result.rule_ids = rule_ids(record) if record else []
        result.pinned = sorted({cpus for pid in server.pids() for cpus in thread_cpus(pid)})

        before = server.metrics() if isinstance(server, ProbeServer) else {}
        with open("/proc/loadavg") as handle:
            result.loadavg = " ".join(handle.read().split()[:3])
        cpu_before = server.cpu_seconds()
        cpu0_before = cpu_busy_seconds(SERVER_CPU)
        cpu1_before = cpu_busy_seconds(CLIENT_CPU)
        load_start = time.monotonic()
        if spec.load == "closed":
            summary = run_wrk(tools, server.port, request_file, duration_s, connections)
        else:
            summary = run_open_loop(tools, server.port, request_file, spec.rate, duration_s)
        load_s = time.monotonic() - load_start
        result.load_s = load_s
        result.cpu_s = server.cpu_seconds() - cpu_before
        result.foreign_cpu0_share = max(
            0.0, (cpu_busy_seconds(SERVER_CPU) - cpu0_before - result.cpu_s) / load_s)
        result.cpu1_busy_share = (cpu_busy_seconds(CLIENT_CPU) - cpu1_before) / load_s
        result.load_requests = int(summary.get("requests", summary.get("completed", 0)))
        result.load_summary = summary
        result.rate = summary["rate"]
        result.p50_ms = latency_ms(summary, "p50_us")
        result.p99_ms = latency_ms(summary, "p99_us")

        if isinstance(server, ProbeServer):
            during = server.metrics()
            result.drain_s, result.inspections_per_s_drain = wait_probe_drained(server)
            after = server.metrics()
            done_before = inspections(before)
            done_after = inspections(after)
            result.inspections = {k: done_after[k] - done_before[k] for k in done_after}
            result.shed = metric(after, "webtrap_inspections_shed_total") - metric(
                before, "webtrap_inspections_shed_total")
            result.inspections_per_s_load = (
                sum(inspections(during).values()) - sum(done_before.values())) / load_s
            result.requests = int(metric(after, "webtrap_requests_total"))
            expected = int(metric(after, "webtrap_records_written_total"))
            wait_for(lambda: server.record_count() >= expected, 10, 0.2)
            result.records = server.record_count()
            result.records_dropped = int(metric(after, "webtrap_records_dropped_total"))
            result.cpu_total_s = server.cpu_seconds() - cpu_before
        else:
            # nginx inspects inline, so every request in access.log was inspected.
            # Requests in flight when wrk stops still finish, so wait until
            # both logs stop growing.
            wait_stable(lambda: (server.request_count(), server.record_count()), 1.0, 30)
            result.requests = server.request_count()
            result.records = server.record_count()
            result.cpu_total_s = server.cpu_seconds() - cpu_before
        result.peak_rss_kib = server.peak_rss_kib()
    finally:
        server.stop()
    if isinstance(server, ProbeServer):
        # A closed-loop run leaves about 1 GB of records; they are counted.
        for path in server.spool_files():
            os.remove(path)
    return result


# --- report -----------------------------------------------------------------


def cpu_per_request_us(r: RunResult) -> float:
    """Return the server's CPU time per request of the load, drain included."""
    return r.cpu_total_s * 1e6 / r.load_requests if r.load_requests else 0.0


def fmt_ms(value: float) -> str:
    if value < 0:
        return "n/a"
    return f"{value:.2f}" if value < 100 else f"{value:.0f}"


def result_rows(results: list[RunResult]) -> list[list[str]]:
    rows = []
    for r in results:
        s = r.load_summary
        if r.spec.load == "closed":
            load = "wrk closed loop"
        else:
            load = f"constant {r.spec.rate:.0f}/s"
        if r.spec.server == "probe":
            inspected = f"{r.inspections['complete']:.0f}+{r.inspections['cached']:.0f}c"
            if r.inspections.get("failed"):
                inspected += f"+{r.inspections['failed']:.0f}f"
            shed = f"{r.shed:.0f}"
            during = f"{r.inspections_per_s_load:.0f}"
            drained = ("n/a" if r.inspections_per_s_drain is None
                       else f"{r.inspections_per_s_drain:.0f}")
        else:
            inspected, shed, during, drained = "inline", "0", f"{r.rate:.0f}", "n/a"
        errors = s.get("failed", 0) + s.get("unfinished", 0) + sum(
            s.get(k, 0) for k in ("errors_connect", "errors_read", "errors_write",
                                  "errors_timeout"))
        rows.append([
            r.spec.server, r.mode, r.spec.workload, load, f"{r.rate:.0f}", fmt_ms(r.p50_ms),
            fmt_ms(r.p99_ms), str(errors), f"{r.peak_rss_kib / 1024:.1f}",
            f"{100 * r.cpu_s / r.load_s:.0f}" if r.load_s else "n/a",
            f"{100 * r.foreign_cpu0_share:.0f}", f"{100 * r.cpu1_busy_share:.0f}",
            f"{cpu_per_request_us(r):.0f}",
            f"{r.records_per_request():.3f}" + (f" ({r.records_dropped} dropped)"
                                                if r.records_dropped else ""), inspected, shed, during, drained,
            " ".join(r.rule_ids) or "none",
        ])
    return rows


HEADERS = ["server", "mode", "workload", "load", "req/s", "p50 ms", "p99 ms", "errors",
           "peak RSS MiB", "CPU %", "other CPU0 %", "CPU1 busy %", "CPU us/req", "records/req", "inspected", "shed", "insp/s load",
           "insp/s drain", "rule ids (sample)"]


def text_table(rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(HEADERS)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(HEADERS, widths))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows]
    return "\n".join(lines)


def markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def find(results, **criteria) -> RunResult | None:
    for r in results:
        if all(getattr(r.spec, k) == v for k, v in criteria.items()):
            return r
    return None


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "n/a"


def summary_rows(results: list[RunResult], workloads: list[str]) -> tuple[list, list[str]]:
    rows, misses = [], []
    for w in workloads:
        ng = find(results, server="nginx", workload=w, load="closed", audit_engine="On")
        ng_rel = find(results, server="nginx", workload=w, load="closed",
                      audit_engine="RelevantOnly")
        off = find(results, server="probe", workload=w, load="closed", cache_entries=0)
        on = next((r for r in results if r.spec.server == "probe" and r.spec.workload == w
                   and r.spec.load == "closed" and r.spec.cache_entries > 0), None)
        open_off = find(results, server="probe", workload=w, load="open", cache_entries=0)
        open_on = next((r for r in results if r.spec.server == "probe" and r.spec.workload == w
                        and r.spec.load == "open" and r.spec.cache_entries > 0), None)
        if not (ng and off and open_off):
            continue
        # The drain after the closed-loop run is the only time the workers
        # have CPU 0 to themselves, so it measures inspection throughput.
        drain = off.inspections_per_s_drain
        inspect_rate = drain if drain is not None else off.inspections_per_s_load
        row = [
            w,
            f"{ng.rate:.0f}",
            f"{ng_rel.rate:.0f}" if ng_rel else "n/a",
            f"{off.rate:.0f} ({ratio(off.rate, ng.rate)})",
            f"{fmt_ms(open_off.p99_ms)}" + (f" / {fmt_ms(open_on.p99_ms)}" if open_on else ""),
            f"{inspect_rate:.0f} ({ratio(inspect_rate, ng.rate)})",
            f"{on.inspections_per_s_load:.0f}" if on else "n/a",
            f"{open_off.inspections_per_s_load:.0f} "
            f"({ratio(open_off.inspections_per_s_load, ng.rate)})",
            f"{open_off.shed:.0f} of {open_off.requests}",
            f"{cpu_per_request_us(open_off):.0f} / {cpu_per_request_us(ng):.0f} "
            f"({ratio(cpu_per_request_us(open_off), cpu_per_request_us(ng))})",
            f"{off.peak_rss_kib / 1024:.0f} / {ng.peak_rss_kib / 1024:.0f} "
            f"({ratio(off.peak_rss_kib, ng.peak_rss_kib)})",
        ]
        rows.append(row)
        for label, run in (("cache off", open_off), ("cache on", open_on)):
            if run and (run.p99_ms < 0 or run.p99_ms > P99_TARGET_MS):
                misses.append(f"{w}: probe p99 at nginx's rate ({ng.rate:.0f}/s, {label}) is "
                              f"{fmt_ms(run.p99_ms)} ms, above the {P99_TARGET_MS:.0f} ms target.")
        if inspect_rate < ng.rate:
            misses.append(f"{w}: inspection throughput with the cache off ({inspect_rate:.0f}/s)"
                          f" is below nginx's {ng.rate:.0f} requests/s.")
        if open_off.inspections_per_s_load < 0.98 * open_off.rate:
            misses.append(f"{w}: while answering at nginx's rate with the cache off, the probe "
                          f"inspected {open_off.inspections_per_s_load:.0f} requests/s, so its "
                          "inspection queue grew.")
        if open_off.shed:
            misses.append(f"{w}: at nginx's rate with the cache off the probe shed "
                          f"{open_off.shed:.0f} inspections.")
        for r in (off, on, open_off, open_on):
            if r and r.requests and abs(r.records_per_request() - 1.0) > 1e-9:
                misses.append(f"{w}: {r.mode}, {r.spec.load} loop wrote "
                              f"{r.records_per_request():.3f} records per request, not 1.")
    return rows, misses


SUMMARY_HEADERS = [
    "workload", "nginx req/s (audit On)", "nginx req/s (RelevantOnly)",
    "probe req/s, cache off (vs nginx)", "probe p99 ms at nginx's rate, cache off / on",
    "probe inspections/s, cache off (vs nginx req/s)", "probe inspections/s, cache on",
    "probe inspections/s while answering at nginx's rate, cache off (vs nginx req/s)",
    "shed at nginx's rate, cache off",
    "CPU us/request probe at nginx's rate, cache off / nginx",
    "peak RSS MiB probe / nginx",
]


def machine_facts() -> dict:
    model = "unknown"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    facts = {"nproc": os.cpu_count(), "cpu_model": model, "kernel": platform.release()}
    for name, command in (
            ("nginx", ["nginx", "-v"]),
            ("wrk", ["dpkg-query", "-W", "-f=${Version}", "wrk"]),
            ("libmodsecurity", ["dpkg-query", "-W", "-f=${Version}", "libmodsecurity3"]),
            ("nginx_connector", ["dpkg-query", "-W", "-f=${Version}",
                                 "libnginx-mod-http-modsecurity"]),
            ("crs", ["dpkg-query", "-W", "-f=${Version}", "modsecurity-crs"])):
        try:
            out = subprocess.run(command, capture_output=True, text=True, timeout=10)
            facts[name] = (out.stdout + out.stderr).strip().replace("nginx version: ", "")
        except OSError:
            facts[name] = "unknown"
    try:
        facts["commit"] = subprocess.run(
            ["git", "-C", os.path.dirname(os.path.abspath(__file__)), "rev-parse", "--short",
             "HEAD"], capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", os.path.dirname(os.path.abspath(__file__)), "status", "--porcelain",
             "--", "../src", "../personas", "../rules"], capture_output=True, text=True,
            timeout=10).stdout.splitlines()
        if dirty:
            facts["commit"] += f" plus {len(dirty)} uncommitted paths in src/, personas/, rules/"
    except OSError:
        facts["commit"] = "unknown"
    return facts


def render_markdown(results: list[RunResult], workloads: list[str], args, facts: dict,
                    command: str, date: str, notes_path: str) -> str:
    summary, misses = summary_rows(results, workloads)
    shares = [100 * r.foreign_cpu0_share for r in results]
    foreign_mean = sum(shares) / len(shares) if shares else 0.0
    foreign_max = max(shares) if shares else 0.0
    parts = [
        "# Benchmarks: webtrap probe against nginx with ModSecurity",
        "",
        "This page is written by `bench/run.sh`; rerun it to refresh the figures. "
        "`bench/README.md` explains how each figure is measured.",
        "",
        f"- Date: {date}",
        f"- Machine: {facts['nproc']} CPUs, {facts['cpu_model']}, Linux {facts['kernel']}",
        f"- Command: `{command}`",
        f"- webtrap commit {facts['commit']}; nginx {facts['nginx']} with "
        f"libnginx-mod-http-modsecurity {facts['nginx_connector']}; libmodsecurity3 "
        f"{facts['libmodsecurity']}; modsecurity-crs {facts['crs']} at paranoia level 1; "
        f"wrk {facts['wrk']}",
        f"- Each server is pinned to CPU {SERVER_CPU} (`taskset -c {SERVER_CPU}`, every "
        f"thread of the probe, the nginx master and its one worker); the load generators "
        f"are pinned to CPU {CLIENT_CPU}. Loopback only. Runs last {args.duration} s each; "
        f"wrk uses 1 thread and {args.connections} connections; the probe runs "
        f"{args.workers} inspection workers"
        + (f", with `LD_PRELOAD={args.probe_preload}`" if args.probe_preload else "") + ".",
        f"- Other work on the machine: other processes used {foreign_mean:.0f}% of CPU 0 on "
        f"average during the measured runs (max {foreign_max:.0f}%). The 1, 5, 15 minute "
        f"load averages were {results[0].loadavg if results else 'n/a'} at the first run and "
        f"{results[-1].loadavg if results else 'n/a'} at the last. Absolute figures fall when "
        "other work shares CPU 0; `CPU us/req` is less sensitive to it than req/s.",
        "",
        "## Against the targets",
        "",
        "Ratios compare with nginx in the same run. nginx's rate is its wrk throughput with "
        "`SecAuditEngine On`, because that is the mode that writes one audit record per "
        "request, as the probe does. The probe's p99 at that rate comes from the constant-rate "
        "generator, measured from each request's scheduled send time. \"Cache off\" is the "
        "raw cost of libmodsecurity per request. \"Cache on\" repeats one request, so every "
        "inspection after the first is a cache hit: it shows the cache, not the rule engine.",
        "",
        markdown_table(SUMMARY_HEADERS, summary),
        "",
    ]
    if misses:
        parts += ["Targets missed in this run:", ""] + [f"- {m}" for m in misses] + [""]
    else:
        parts += ["Every target was met in this run.", ""]
    parts += [
        "## Every run",
        "",
        "`inspected` is complete + cached (`c`) + failed (`f`) inspections during the run and "
        "the drain after it; `insp/s load` counts inspections finished while the load ran, "
        "`insp/s drain` those finished after it stopped, with the CPU to the workers alone. "
        "For nginx both are its request rate, because it inspects inline. `CPU %` is the "
        "server's user + system CPU time during the load over the load's wall time. "
        "`other CPU0 %` is CPU 0 time used by other processes on the machine in the same "
        "window, which slows the server. `CPU1 busy %` is CPU 1's busy time, the load generator's and any other process's, which can delay the generator. `CPU us/req` is the server's CPU time over the load "
        "and the inspection drain after it, per request of the load. `errors` adds up "
        "connection errors, timeouts and requests still unanswered at the end of a "
        "constant-rate run.",
        "",
        markdown_table(HEADERS, result_rows(results)),
        "",
    ]
    if os.path.exists(notes_path):
        with open(notes_path) as notes:
            # The collector part of the notes belongs to the collector section,
            # which bench/collector/run.sh writes.
            probe_notes = notes.read().split(COLLECTOR_NOTES_HEADING)[0]
            parts += [probe_notes.rstrip(), ""]
    return "\n".join(parts)


def write_page(path: str, text: str) -> None:
    """Write the probe page to path, keeping what follows it: the collector
    section and the sections after it (the dashboard queries), which other
    benchmarks write."""
    rest = ""
    if os.path.exists(path):
        with open(path) as handle:
            old = handle.read()
        begin = old.find(COLLECTOR_BEGIN_MARKER)
        end = old.find(COLLECTOR_END_MARKER)
        if begin >= 0 and end > begin:
            rest = old[begin:].rstrip("\n") + "\n"
    with open(path, "w") as handle:
        handle.write(text.rstrip("\n") + "\n")
        if rest:
            handle.write("\n" + rest)


# --- main ---------------------------------------------------------------------


def load_results(path: str) -> tuple[list[RunResult], dict]:
    """Read a results.json written by an earlier run."""
    with open(path) as handle:
        saved = json.load(handle)
    results = []
    for item in saved["results"]:
        item = dict(item)
        spec = RunSpec(**item.pop("spec"))
        results.append(RunResult(spec=spec, **item))
    return results, saved


def snapshot_data(source: str, work_dir: str) -> str:
    """Copy the personas and rules folders into the work folder.

    The probe then reads the files that match the binary under test for the
    whole run, even when the source tree changes meanwhile.
    """
    target = os.path.join(work_dir, "data")
    for name in ("personas", "rules"):
        shutil.copytree(os.path.join(source, name), os.path.join(target, name),
                        dirs_exist_ok=True)
    subprocess.run(["chmod", "-R", "a+rX", target], check=True)
    return target


def run_all(args, parser) -> list[RunResult]:
    os.makedirs(args.work_dir, exist_ok=True)
    here = os.path.dirname(os.path.abspath(__file__))
    tools = Tools(webtrap=args.webtrap, loadgen=args.loadgen,
                  wrk_script=os.path.join(here, "wrk_report.lua"), peer_script=args.peer_script)
    requests = build_requests()
    data_dir = snapshot_data(args.data_dir, args.work_dir) if args.data_dir else ""
    results: list[RunResult] = []
    for w in args.workload_list:
        request_file = os.path.join(args.work_dir, f"{w}.http")
        with open(request_file, "wb") as handle:
            handle.write(requests[w])
        common = dict(tools=tools, request_file=request_file, work_dir=args.work_dir,
                      duration_s=args.duration, connections=args.connections,
                      workers=args.workers, probe_preload=args.probe_preload,
                      data_dir=data_dir)
        specs = [RunSpec("nginx", w, "closed", audit_engine="On"),
                 RunSpec("nginx", w, "closed", audit_engine="RelevantOnly")]
        for spec in specs:
            log(f"{spec.server} {w} {spec.load} audit {spec.audit_engine}")
            results.append(measure(spec=spec, **common))
        nginx_rate = results[-2].rate
        specs = [RunSpec("nginx", w, "open", rate=nginx_rate),
                 RunSpec("probe", w, "closed", cache_entries=0),
                 RunSpec("probe", w, "closed", cache_entries=args.cache_entries),
                 RunSpec("probe", w, "open", cache_entries=0, rate=nginx_rate),
                 RunSpec("probe", w, "open", cache_entries=args.cache_entries, rate=nginx_rate)]
        for spec in specs:
            log(f"{spec.server} {w} {spec.load} cache {spec.cache_entries} rate {spec.rate:.0f}")
            results.append(measure(spec=spec, **common))
            log(f"  -> {results[-1].rate:.0f} req/s, p99 {fmt_ms(results[-1].p99_ms)} ms")
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--webtrap", help="webtrap binary")
    parser.add_argument("--loadgen", help="constant_rate_load binary")
    parser.add_argument("--peer-script", help="scripts/nginx-peer.sh")
    parser.add_argument("--work-dir", help="folder for servers, logs and results.json")
    parser.add_argument("--output", help="markdown file to rewrite with the results")
    parser.add_argument("--notes", default="", help="markdown appended to --output")
    parser.add_argument("--from-results", default="",
                        help="render --output from this results.json instead of measuring")
    parser.add_argument("--duration", type=int, default=15, help="seconds per measured run")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections")
    parser.add_argument("--workers", type=int, default=2, help="probe pipeline.workers")
    parser.add_argument("--cache-entries", type=int, default=8192,
                        help="modsecurity.cache_entries for the cache-on runs")
    parser.add_argument("--workloads", default="benign,attack,post")
    parser.add_argument("--probe-preload", default="",
                        help="shared library preloaded into the probe (LD_PRELOAD), for "
                             "example an allocator such as libtcmalloc_minimal.so.4")
    parser.add_argument("--data-dir", default="",
                        help="folder with personas/ and rules/ to copy for the probe; "
                             "empty uses the binary's built-in data folder")
    parser.add_argument("--command", default="bench/run.sh", help="command shown in the report")
    args = parser.parse_args()

    if args.from_results:
        results, saved = load_results(args.from_results)
        run_args = argparse.Namespace(**saved["args"])
        facts, date = saved["facts"], saved["date"]
        command = (f"{saved['command']}`, then this page from its results with "
                   f"`bench/run.sh --render {args.from_results}")
    else:
        for name in ("webtrap", "loadgen", "peer_script", "work_dir"):
            if not getattr(args, name):
                parser.error(f"--{name.replace('_', '-')} is required unless --from-results "
                             "is given")
        if not 1 <= args.duration <= 120:
            parser.error("--duration must be 1 to 120 seconds")
        args.workload_list = [w for w in args.workloads.split(",") if w]
        for w in args.workload_list:
            if w not in build_requests():
                parser.error(f"unknown workload {w}; use benign, attack or post")
        results = run_all(args, parser)
        run_args = args
        facts = machine_facts()
        date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        command = args.command
        saved_args = {k: v for k, v in vars(args).items()
                      if k in ("duration", "connections", "workers", "cache_entries",
                               "workload_list", "probe_preload")}
        with open(os.path.join(args.work_dir, "results.json"), "w") as handle:
            json.dump({"date": date, "command": command, "facts": facts, "args": saved_args,
                       "results": [{**r.__dict__, "spec": r.spec.__dict__} for r in results]},
                      handle, indent=1)

    print(text_table(result_rows(results)))
    summary, misses = summary_rows(results, run_args.workload_list)
    print()
    print(text_table_summary(summary))
    for m in misses:
        print("MISS:", m)
    if args.output:
        write_page(args.output, render_markdown(results, run_args.workload_list, run_args, facts,
                                                command, date, args.notes))
        log(f"wrote {args.output}")
    return 0


def text_table_summary(rows: list[list[str]]) -> str:
    return "\n".join(["; ".join(f"{h}: {c}" for h, c in zip(SUMMARY_HEADERS, row))
                      for row in rows])


if __name__ == "__main__":
    sys.exit(main())
