#!/usr/bin/env python3
"""Collector benchmark: webtrap collector against rsyslog and syslog-ng.

Feeds the same generated audit records to each system over loopback and
measures records/s from the first byte sent until the last record is out:

- rsyslog: imtcp input, mmjsonparse, omfile writing the parsed tree as JSON;
- syslog-ng: network() input, json-parser, file() writing the parsed fields
  with format-json, with flow control so that it drops nothing;
- webtrap: `webtrap collector` with probe batches (gzip NDJSON over
  POST /v1/records), the SQLite store with synchronous=full, and the
  Elasticsearch output pointed at tests/tools/es_double.py --fast. The run
  ends when the double has stored every event id;
- rsyslog-fsync and syslog-ng-fsync: the peers with fsync on their output;
- webtrap-file: the collector's file input on the libmodsecurity 3.0.9
  layout of the same events, with the same store and output.

For webtrap it also reports CPU time per record of the collector, the test
double and the sending threads (which post gzip batches built before the
clock starts), and each collector thread's share of one CPU, by thread name.

bench/collector/run.sh is the entry point. Each run is bounded by --timeout.
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.path.dirname(os.path.dirname(HERE))
BEGIN_MARKER = "<!-- collector-benchmark:begin -->"
END_MARKER = "<!-- collector-benchmark:end -->"
ANALYSIS_HEADING = "## What limits the collector"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# Every record goes to the syslog peers inside an RFC 5424 frame with this
# header, so that both parse the JSON text as the MSG part.
SYSLOG_PREFIX = b"<134>1 2026-12-04T12:00:00.000000Z bench modsec - - - "


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process {process.args[0]} exited with status {process.returncode} at start")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listened on 127.0.0.1:{port} within {timeout} s")


def cpu_seconds(pid: int) -> float:
    """Return user + system CPU time of every thread of pid, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def machine_busy_seconds() -> float:
    """Return the CPU time all CPUs spent outside idle and iowait since boot, from /proc/stat."""
    with open("/proc/stat") as handle:
        fields = [int(x) for x in handle.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / CLOCK_TICKS


def thread_cpu_seconds(pid: int) -> dict[int, tuple[str, float]]:
    """Name and CPU seconds of each thread of a process, by thread id, from /proc/PID/task."""
    ticks = os.sysconf("SC_CLK_TCK")
    threads = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as handle:
                text = handle.read()
        except OSError:
            continue  # the thread ended
        name = text[text.index("(") + 1:text.rindex(")")]
        fields = text.rsplit(")", 1)[1].split()
        threads[int(tid)] = (name, (int(fields[11]) + int(fields[12])) / ticks)
    return threads


def busiest_threads(before: dict, after: dict, elapsed: float) -> list[str]:
    """Return each thread's share of one CPU during the run, as NAME:PERCENT, busiest first."""
    shares = []
    for tid, (name, seconds) in after.items():
        share = (seconds - before.get(tid, (name, 0.0))[1]) / elapsed * 100
        if share >= 0.5:
            shares.append((round(share, 1), name))
    return [f"{name}:{share}" for share, name in sorted(shares, reverse=True)]


def peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def stop(process: subprocess.Popen | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        log(f"{process.args[0]} ignored SIGTERM for 20 s, sending SIGKILL to pid {process.pid}")
        process.kill()
        process.wait()


# ---- records ---------------------------------------------------------------


class Records:
    """The generated records and the inputs derived from them, cached in the work folder."""

    def __init__(self, work_dir: str, count: int, seed: int, batch_records: int, gzip_level: int):
        self.count = count
        self.seed = seed
        stem = os.path.join(work_dir, f"records-{count}-seed{seed}")
        self.ndjson = stem + ".ndjson"
        self.syslog = stem + ".syslog"
        self.batches_path = stem + f"-batch{batch_records}-gzip{gzip_level}.bin"
        if not os.path.exists(self.ndjson):
            log(f"generating {count} records into {self.ndjson}")
            subprocess.run([sys.executable, os.path.join(HERE, "make_records.py"), "--count", str(count),
                            "--seed", str(seed), "--probe-output", self.ndjson + ".tmp"], check=True)
            os.replace(self.ndjson + ".tmp", self.ndjson)
        self.bytes = os.path.getsize(self.ndjson)
        if not os.path.exists(self.syslog):
            with open(self.ndjson, "rb") as source, open(self.syslog + ".tmp", "wb") as target:
                for line in source:
                    target.write(SYSLOG_PREFIX + line)
            os.replace(self.syslog + ".tmp", self.syslog)
        if not os.path.exists(self.batches_path):
            log(f"compressing batches of {batch_records} records (gzip level {gzip_level})")
            self.write_batches(batch_records, gzip_level)
        self.batches = self.read_batches()

    def write_batches(self, batch_records: int, gzip_level: int) -> None:
        with open(self.ndjson, "rb") as source, open(self.batches_path + ".tmp", "wb") as target:
            lines: list[bytes] = []
            for line in source:
                lines.append(line)
                if len(lines) == batch_records:
                    body = gzip.compress(b"".join(lines), compresslevel=gzip_level, mtime=0)
                    target.write(len(body).to_bytes(8, "little") + len(lines).to_bytes(8, "little") + body)
                    lines = []
            if lines:
                body = gzip.compress(b"".join(lines), compresslevel=gzip_level, mtime=0)
                target.write(len(body).to_bytes(8, "little") + len(lines).to_bytes(8, "little") + body)
        os.replace(self.batches_path + ".tmp", self.batches_path)

    def read_batches(self) -> list[tuple[int, bytes]]:
        batches = []
        with open(self.batches_path, "rb") as handle:
            while header := handle.read(16):
                size = int.from_bytes(header[:8], "little")
                records = int.from_bytes(header[8:], "little")
                batches.append((records, handle.read(size)))
        return batches

    def syslog_ranges(self, parts: int) -> list[tuple[int, int]]:
        """Split the syslog file into byte ranges that end at line ends."""
        size = os.path.getsize(self.syslog)
        cuts = [0]
        with open(self.syslog, "rb") as handle:
            for part in range(1, parts):
                handle.seek(size * part // parts)
                handle.readline()
                cuts.append(handle.tell())
        cuts.append(size)
        return [(cuts[i], cuts[i + 1] - cuts[i]) for i in range(parts)]

    def modsecurity_file(self) -> str:
        """Return the libmodsecurity 3.0.9 layout of the same events, generating it on first use."""
        path = self.ndjson.replace(".ndjson", "-modsecurity.ndjson")
        if not os.path.exists(path):
            log(f"generating the libmodsecurity layout of {self.count} records into {path}")
            subprocess.run([sys.executable, os.path.join(HERE, "make_records.py"), "--count", str(self.count),
                            "--seed", str(self.seed), "--modsecurity-output", path + ".tmp"], check=True)
            os.replace(path + ".tmp", path)
        return path

    def event_ids(self) -> set[str]:
        pattern = re.compile(rb'"event_id":"([0-9a-f-]{36})"')
        ids = set()
        with open(self.ndjson, "rb") as handle:
            for line in handle:
                ids.add(pattern.search(line).group(1).decode())
        return ids


# ---- measurement -----------------------------------------------------------


class LineCounter:
    """Counts newline bytes in a growing file, reading only what was appended."""

    def __init__(self, path: str):
        self.path = path
        self.offset = 0
        self.lines = 0

    def update(self) -> int:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                while chunk := handle.read(8 << 20):
                    self.lines += chunk.count(b"\n")
                    self.offset += len(chunk)
        except FileNotFoundError:
            pass
        return self.lines


def send_syslog(records: Records, port: int, senders: int) -> None:
    """Send the syslog file over `senders` TCP connections with sendfile(2)."""
    errors: list[BaseException] = []

    def send(offset: int, length: int) -> None:
        try:
            with socket.create_connection(("127.0.0.1", port)) as sock, open(records.syslog, "rb") as handle:
                sock.sendfile(handle, offset, length)
                sock.shutdown(socket.SHUT_WR)
        except OSError as error:
            errors.append(error)

    threads = [threading.Thread(target=send, args=part) for part in records.syslog_ranges(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError(f"sending to 127.0.0.1:{port} failed: {errors[0]}")


def send_quietly(records: Records, port: int, senders: int) -> None:
    """Run send_syslog in a thread: a peer stopped at its time limit breaks the pipe, which is logged, not raised."""
    try:
        send_syslog(records, port, senders)
    except RuntimeError as error:
        log(str(error))


def run_file_peer(name: str, command: list[str], env: dict | None, port: int, output: str,
                  records: Records, args) -> dict:
    log(f"{name}: starting {' '.join(command)}")
    stderr = open(output + ".stderr", "w")
    process = subprocess.Popen(command, env=env, stdout=stderr, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, process, 20)
        cpu_before = cpu_seconds(process.pid)
        busy_before = machine_busy_seconds()
        counter = LineCounter(output)
        start = time.monotonic()
        sender = threading.Thread(target=send_quietly, args=(records, port, args.senders))
        sender.start()
        deadline = start + (args.fsync_timeout if name.endswith("-fsync") else args.timeout)
        while counter.update() < records.count and time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with status {process.returncode}; see {output}.stderr")
            time.sleep(0.05)
        elapsed = time.monotonic() - start
        sender.join(timeout=5)
        cpu = cpu_seconds(process.pid) - cpu_before
        other = machine_busy_seconds() - busy_before - cpu
        rss = peak_rss_mib(process.pid)
    finally:
        stop(process)
        stderr.close()
    written = counter.update()
    complete = written == records.count
    if not complete:
        log(f"{name}: {written} of {records.count} records written when the run ended")
    return result(name, records, elapsed, cpu, rss, complete=complete,
                  written=written,
                  other_cpu_percent=round(100 * other / elapsed))


def result(name: str, records: Records, elapsed: float, cpu: float, rss: float, written: int,
           input_bytes: int = 0, **extra) -> dict:
    """Summarize one run. Rates count the records written, so a run stopped by its timeout still has a rate.

    input_bytes is the size of the records as this system read them, when it
    is not the probe NDJSON file.
    """
    done = max(written, 1)
    record_bytes = (input_bytes or records.bytes) * written / records.count
    return {"system": name, "records": records.count, "written": written, "seconds": round(elapsed, 3),
            "records_per_s": round(written / elapsed), "mib_per_s": round(record_bytes / elapsed / 2**20, 1),
            "cpu_s": round(cpu, 2), "cpu_us_per_record": round(cpu / done * 1e6, 1),
            "peak_rss_mib": round(rss, 1), **extra}


def run_rsyslog(records: Records, args, fsync: bool = False) -> dict:
    name = "rsyslog-fsync" if fsync else "rsyslog"
    folder = os.path.join(args.work_dir, name)
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    port = free_port()
    output = os.path.join(folder, "parsed.ndjson")
    config = os.path.join(folder, "rsyslog.conf")
    with open(config, "w") as handle:
        handle.write(f"""global(workDirectory="{folder}" maxMessageSize="64k")
module(load="imtcp" MaxSessions="{max(args.senders, 8)}")
module(load="mmjsonparse")
template(name="parsed" type="list") {{ property(name="$!all-json") constant(value="\\n") }}
ruleset(name="bench") {{
  action(type="mmjsonparse" cookie="")
  action(type="omfile" file="{output}" template="parsed" sync="{'on' if fsync else 'off'}")
}}
input(type="imtcp" address="127.0.0.1" port="{port}" ruleset="bench")
""")
    command = [args.rsyslogd, "-n", "-f", config, "-i", os.path.join(folder, "rsyslogd.pid")]
    return run_file_peer(name, command, None, port, output, records, args)


def run_syslog_ng(records: Records, args, fsync: bool = False) -> dict:
    name = "syslog-ng-fsync" if fsync else "syslog-ng"
    folder = os.path.join(args.work_dir, name)
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    port = free_port()
    output = os.path.join(folder, "parsed.ndjson")
    config = os.path.join(folder, "syslog-ng.conf")
    with open(config, "w") as handle:
        handle.write(f"""@version: 3.38
options {{ log-msg-size(65536); stats-freq(0); }};
source s_bench {{ network(ip("127.0.0.1") port({port}) transport("tcp") flags(syslog-protocol)
                  log-msg-size(65536) max-connections({max(args.senders, 8)})); }};
parser p_json {{ json-parser(prefix(".json.")); }};
destination d_parsed {{ file("{output}" template("$(format-json --scope none --key .json.* --shift-levels 2)\\n")
                            fsync({'yes' if fsync else 'no'})); }};
log {{ source(s_bench); parser(p_json); destination(d_parsed); flags(flow-control); }};
""")
    root = args.syslog_ng_root
    env = dict(os.environ, LD_LIBRARY_PATH=f"{root}/usr/lib/syslog-ng:{root}/usr/lib/x86_64-linux-gnu")
    command = [f"{root}/usr/sbin/syslog-ng", "-F", f"--module-path={root}/usr/lib/syslog-ng/3.38",
               "-f", config, "-p", os.path.join(folder, "syslog-ng.pid"),
               "-R", os.path.join(folder, "syslog-ng.persist"), "-c", os.path.join(folder, "syslog-ng.ctl")]
    return run_file_peer(name, command, env, port, output, records, args)


# ---- webtrap ---------------------------------------------------------------


def http_json(url: str, timeout: float = 10) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


class BatchSender:
    """Posts the gzip batches over several keep-alive connections."""

    def __init__(self, batches: list[tuple[int, bytes]], port: int, token: str, senders: int):
        self.batches = batches
        self.port = port
        self.token = token
        self.senders = senders
        self.next_index = 0
        self.lock = threading.Lock()
        self.totals = {"received": 0, "stored": 0, "duplicates": 0, "rejected": 0, "retries": 0}
        self.errors: list[str] = []
        self.finished_at = 0.0
        self.cpu_seconds = 0.0  # CPU time of the sending threads, summed

    def take(self) -> int | None:
        with self.lock:
            if self.next_index >= len(self.batches):
                return None
            self.next_index += 1
            return self.next_index - 1

    def post(self, connection: http.client.HTTPConnection, body: bytes) -> dict:
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/x-ndjson",
                   "Content-Encoding": "gzip"}
        for _ in range(100):
            connection.request("POST", "/v1/records", body=body, headers=headers)
            response = connection.getresponse()
            text = response.read()
            if response.status == 200:
                return json.loads(text)
            if response.status != 503:
                raise RuntimeError(f"POST /v1/records returned {response.status}: {text[:200]!r}")
            with self.lock:
                self.totals["retries"] += 1
            time.sleep(float(response.getheader("Retry-After", "1")))
        raise RuntimeError("POST /v1/records returned 503 100 times in a row")

    def worker(self) -> None:
        started = time.thread_time()
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        try:
            while (index := self.take()) is not None:
                reply = self.post(connection, self.batches[index][1])
                with self.lock:
                    for key in ("received", "stored", "duplicates", "rejected"):
                        self.totals[key] += int(reply.get(key, 0))
        except (OSError, RuntimeError, ValueError) as error:
            self.errors.append(str(error))
        finally:
            connection.close()
            with self.lock:
                self.cpu_seconds += time.thread_time() - started

    def run(self) -> None:
        threads = [threading.Thread(target=self.worker) for _ in range(self.senders)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.finished_at = time.monotonic()


def start_es_double(folder: str, args) -> tuple[subprocess.Popen, int]:
    port_file = os.path.join(folder, "es_double.port")
    log_file = open(os.path.join(folder, "es_double.log"), "w")
    process = subprocess.Popen([sys.executable, args.es_double, "--fast", "--port", "0", "--port-file", port_file],
                               stdout=log_file, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while not os.path.exists(port_file) or not open(port_file).read().strip():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"es_double did not start; see {log_file.name}")
        time.sleep(0.05)
    return process, int(open(port_file).read().strip())


def start_profiler(pid: int, folder: str, timeout: float) -> subprocess.Popen:
    """Start perf record on pid with DWARF call graphs, stopped with SIGINT at the end of the run."""
    output = os.path.join(folder, "perf.data")
    # WEBTRAP_BENCH_PERF_HZ raises the sampling rate for short runs.
    frequency = os.environ.get("WEBTRAP_BENCH_PERF_HZ", "499")
    process = subprocess.Popen(["perf", "record", "-F", frequency, "--call-graph", "dwarf,16384", "-p", str(pid),
                                "-o", output, "--", "sleep", str(int(timeout))],
                               stdout=subprocess.DEVNULL, stderr=open(output + ".log", "w"))
    time.sleep(1)
    log(f"perf record is writing {output}; read it with perf report -i {output} --no-children")
    return process


def write_collector_config(folder: str, port: int, admin_port: int, es_port: int, args,
                           input_file: str = "") -> str:
    config = os.path.join(folder, "collector.yaml")
    with open(config, "w") as handle:
        handle.write(f"""listen: 127.0.0.1:{port}
admin: {{listen: "127.0.0.1:{admin_port}"}}
state_dir: {folder}/state
store: {{synchronous: {args.store_synchronous}}}
""")
        if input_file:
            handle.write(f"inputs:\n  files:\n    - {{path: {input_file}, format: modsec3, sensor_id: bench-file}}\n")
        if args.elasticsearch:
            handle.write(f"outputs:\n  elasticsearch:\n    url: \"http://127.0.0.1:{es_port}\"\n")
            for line in args.es_option:
                handle.write(f"    {line}\n")
    return config


def enrol_sensor(webtrap: str, config: str) -> str:
    output = subprocess.run([webtrap, "collector", "--config", config, "enrol", "--sensor-id", "bench-sensor"],
                            capture_output=True, text=True, timeout=60)
    if output.returncode != 0:
        raise RuntimeError(f"webtrap collector enrol failed ({output.returncode}): {output.stderr.strip()}")
    match = re.search(r"token:\s*\"?([A-Za-z0-9_\-.~+/=]{16,})", output.stdout)
    if not match:
        raise RuntimeError(f"no token found in the output of webtrap collector enrol: {output.stdout!r}")
    return match.group(1)


def run_webtrap(records: Records, args, from_file: bool = False) -> dict:
    """Run the collector on probe batches over HTTP, or with from_file on the file input.

    The file input reads the libmodsecurity layout of the same events from a
    file that is complete before the collector starts, so that run is timed
    from the collector's start.
    """
    name = "webtrap-file" if from_file else "webtrap"
    folder = os.path.join(args.work_dir, name)
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    es_process, es_port = start_es_double(folder, args)
    collector = None
    try:
        port, admin_port = free_port(), free_port()
        input_file = records.modsecurity_file() if from_file else ""
        config = write_collector_config(folder, port, admin_port, es_port, args, input_file)
        token = enrol_sensor(args.webtrap, config)
        log_file = open(os.path.join(folder, "collector.log"), "w")
        es_cpu_before = cpu_seconds(es_process.pid)
        busy_before = machine_busy_seconds()
        start = time.monotonic()
        collector = subprocess.Popen([args.webtrap, "collector", "--config", config],
                                     stdout=log_file, stderr=subprocess.STDOUT)
        cpu_before = 0.0
        threads_before: dict = {}
        if not from_file:
            wait_for_port(port, collector, 30)
            cpu_before = cpu_seconds(collector.pid)
            threads_before = thread_cpu_seconds(collector.pid)
            busy_before = machine_busy_seconds()
            es_cpu_before = cpu_seconds(es_process.pid)
            start = time.monotonic()
        stats_url = f"http://127.0.0.1:{es_port}/_double/stats"
        # The file run has no sender: its batch list is empty.
        sender = BatchSender([] if from_file else records.batches, port, token, args.senders)
        profiler = start_profiler(collector.pid, folder, args.timeout) if args.profile else None
        thread = threading.Thread(target=sender.run)
        thread.start()
        deadline = start + args.timeout
        delivered = 0
        while time.monotonic() < deadline:
            if collector.poll() is not None:
                raise RuntimeError(f"the collector exited with status {collector.returncode}; see {log_file.name}")
            if not thread.is_alive() and not args.elasticsearch:
                break
            delivered = http_json(stats_url)["distinct_ids"]
            if delivered >= records.count and not thread.is_alive():
                break
            time.sleep(0.1)
        elapsed = time.monotonic() - start
        thread.join(timeout=10)
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)
            profiler.wait(timeout=120)
        cpu = cpu_seconds(collector.pid) - cpu_before
        threads = busiest_threads(threads_before, thread_cpu_seconds(collector.pid), elapsed)
        es_cpu = cpu_seconds(es_process.pid) - es_cpu_before
        other = machine_busy_seconds() - busy_before - cpu - es_cpu
        rss = peak_rss_mib(collector.pid)
        stats = http_json(stats_url)
        ids = set(http_json(f"http://127.0.0.1:{es_port}/_double/ids", timeout=60)["ids"])
        expected = records.event_ids()
        stored_seconds = (sender.finished_at or time.monotonic()) - start
    finally:
        stop(collector)
        stop(es_process)
    if sender.errors:
        log(f"webtrap: sender errors: {sender.errors[:3]}")
    # Without the Elasticsearch output, the run ends at the last acknowledgement.
    # The collector gives libmodsecurity records ids of its own, so the file run
    # counts distinct ids in the double.
    if from_file:
        delivered_ids = len(ids)
    elif args.elasticsearch:
        delivered_ids = len(ids & expected)
    else:
        delivered_ids = sender.totals["stored"]
    complete = delivered_ids == records.count
    if not complete and not from_file:
        log(f"webtrap: the double holds {len(ids)} ids, {len(expected - ids)} missing, {len(ids - expected)} unexpected")
    return result(name, records, elapsed, cpu, rss, complete=complete,
                  input_bytes=os.path.getsize(input_file) if from_file else 0,
                  written=delivered_ids,
                  stored_seconds=None if from_file else round(stored_seconds, 3),
                  stored_per_s=None if from_file else round(records.count / stored_seconds),
                  acknowledged=sender.totals, double_created=stats.get("created"),
                  double_conflicts=stats.get("conflicts"), double_bulk_requests=stats.get("bulk_requests"),
                  es_double_cpu_s=round(es_cpu, 2),
                  es_double_cpu_us_per_record=round(es_cpu / max(delivered_ids, 1) * 1e6, 1),
                  sender_cpu_s=round(sender.cpu_seconds, 2),
                  sender_cpu_us_per_record=round(sender.cpu_seconds / records.count * 1e6, 1),
                  collector_threads_cpu_percent=threads, sender_errors=sender.errors[:3],
                  other_cpu_percent=round(100 * other / elapsed))


# ---- report ----------------------------------------------------------------


def machine_facts(args) -> dict:
    cpu_model = "unknown"
    with open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as handle:
        memory_gib = int(handle.readline().split()[1]) / 2**20

    def version(command: list[str], env=None) -> str:
        try:
            text = subprocess.run(command, capture_output=True, text=True, timeout=10, env=env).stdout
            return text.splitlines()[0].strip() if text else "unknown"
        except (OSError, subprocess.TimeoutExpired):
            return "unknown"

    root = args.syslog_ng_root
    env = dict(os.environ, LD_LIBRARY_PATH=f"{root}/usr/lib/syslog-ng:{root}/usr/lib/x86_64-linux-gnu")
    commit = subprocess.run(["git", "-C", SOURCE_DIR, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    changed = subprocess.run(["git", "-C", SOURCE_DIR, "status", "--porcelain", "--", "src", "CMakeLists.txt"],
                             capture_output=True, text=True).stdout.strip()
    if changed:
        commit += " with uncommitted changes in src/"
    return {"cpus": os.cpu_count(), "cpu_model": cpu_model, "memory_gib": round(memory_gib, 1),
            "kernel": platform.release(), "load_average": " ".join(f"{x:.2f}" for x in os.getloadavg()),
            "rsyslog": "rsyslog " + version([args.rsyslogd, "-v"]).split()[1:2][0] if os.path.exists(args.rsyslogd)
            else "rsyslog not found",
            "syslog_ng": "syslog-ng " + re.sub(r".*\((.*)\).*", r"\1",
                                               version([f"{root}/usr/sbin/syslog-ng", "--version"], env)),
            "webtrap_commit": commit}


def ratio(numerator: float, denominator: float) -> str:
    return f"{numerator / denominator:.2f}x" if denominator else "n/a"


def render(results: list[dict], facts: dict, args, date: str, records) -> str:
    by_name = {r["system"]: r for r in results}
    webtrap = by_name.get("webtrap")
    lines = [BEGIN_MARKER, "# Benchmarks: webtrap collector against rsyslog and syslog-ng", "",
             "This section is written by `bench/collector/run.sh`; `bench/README.md` explains the set-up.", "",
             f"- Date: {date} UTC",
             f"- Machine: {facts['cpus']} CPUs, {facts['cpu_model']}, {facts['memory_gib']} GiB, "
             f"Linux {facts['kernel']}; load average {facts['load_average']} at the end",
             f"- Command: `{args.command}`",
             f"- webtrap commit {facts['webtrap_commit']}; {facts['rsyslog']}; {facts['syslog_ng']}",
             f"- Records: {records.count} webtrap probe records from `bench/collector/make_records.py --seed "
             f"{args.seed}`, {records.bytes / records.count:.0f} bytes on average ({records.bytes / 2**20:.0f} MiB), "
             f"sent over {args.senders} loopback connections per system. Nothing is pinned to a CPU.",
             "",
             "| system | path measured | records/s | MiB/s | webtrap vs this | CPU us/record | records per CPU second "
             "| webtrap vs this, per CPU second | peak RSS MiB | other CPU % | complete |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    paths = {"rsyslog": "imtcp, mmjsonparse, omfile (no fsync)",
             "rsyslog-fsync": "imtcp, mmjsonparse, omfile with sync=\"on\" (fsync after each write)",
             "syslog-ng": "network(), json-parser, file() with flow control (no fsync)",
             "syslog-ng-fsync": "network(), json-parser, file() with flow control and fsync(yes)",
             "webtrap-file": "file input tailing the libmodsecurity 3.0.9 layout of the same events, SQLite "
                             f"synchronous={args.store_synchronous}, Elasticsearch output to the test double",
             "webtrap": f"POST /v1/records (gzip NDJSON, {args.batch_records} records per batch), SQLite "
                        f"synchronous={args.store_synchronous}, "
                        + ("Elasticsearch output to the test double" if args.elasticsearch else "no output")}
    for r in results:
        is_peer = webtrap is not None and not r["system"].startswith("webtrap")
        versus = ratio(webtrap["records_per_s"], r["records_per_s"]) if is_peer else ""
        versus_cpu = ratio(r["cpu_us_per_record"], webtrap["cpu_us_per_record"]) if is_peer else ""
        per_cpu_second = round(1e6 / r["cpu_us_per_record"]) if r["cpu_us_per_record"] else "n/a"
        lines.append(f"| {r['system']} | {paths[r['system']]} | {r['records_per_s']} | {r['mib_per_s']} | {versus} | "
                     f"{r['cpu_us_per_record']} | {per_cpu_second} | {versus_cpu} | {r['peak_rss_mib']} | "
                     f"{r['other_cpu_percent']} | "
                     f"{'yes' if r['complete'] else 'no, stopped: %d of %d' % (r['written'], r['records'])} |")
    if webtrap:
        double_us = webtrap.get("es_double_cpu_s", 0) / max(webtrap["written"], 1) * 1e6
        ceiling = facts["cpus"] * 1e6 / (webtrap["cpu_us_per_record"] + double_us)
        lines += ["", f"Target: 50,000 records/s end to end. Measured: {webtrap['records_per_s']} records/s while "
                  f"other work used {webtrap['other_cpu_percent']}% of the machine's {facts['cpus'] * 100}% CPU. "
                  f"Estimate of the ceiling with the machine to itself, from CPU time alone: {facts['cpus']} CPUs "
                  f"over {webtrap['cpu_us_per_record']} us (collector) + {double_us:.1f} us (test double) per record "
                  f"= {ceiling:,.0f} records/s. The estimate ignores the sender and any waiting."]
    if webtrap and "sender_cpu_us_per_record" in webtrap:
        lines += ["", f"CPU per record in the webtrap run: collector {webtrap['cpu_us_per_record']} us, "
                  f"test double {webtrap['es_double_cpu_us_per_record']} us, sender (the benchmark's "
                  f"Python threads posting prebuilt gzip batches) {webtrap['sender_cpu_us_per_record']} us. "
                  f"Collector threads busier than 0.5% of a CPU, in % of one CPU: "
                  f"{', '.join(webtrap['collector_threads_cpu_percent'])}."]
    if webtrap and args.elasticsearch:
        lines += ["", f"webtrap, ingest to store alone (every batch acknowledged, so committed to SQLite): "
                  f"{webtrap['stored_per_s']} records/s in {webtrap['stored_seconds']} s. "
                  f"The test double used {webtrap['es_double_cpu_s']} s of CPU on the same machine. "
                  f"Acknowledged: {json.dumps(webtrap['acknowledged'])}; the double created "
                  f"{webtrap['double_created']} documents with {webtrap['double_conflicts']} conflicts "
                  f"in {webtrap['double_bulk_requests']} bulk requests."]
    if args.notes and os.path.exists(args.notes):
        with open(args.notes) as handle:
            text = handle.read()
        if ANALYSIS_HEADING in text:
            lines += ["", text[text.index(ANALYSIS_HEADING):].rstrip()]
    lines.append(END_MARKER)
    return "\n".join(lines) + "\n"


def write_section(path: str, section: str) -> None:
    text = open(path).read() if os.path.exists(path) else ""
    if BEGIN_MARKER in text and END_MARKER in text:
        head = text[:text.index(BEGIN_MARKER)]
        tail = text[text.index(END_MARKER) + len(END_MARKER):].lstrip("\n")
        text = head + section + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section
    with open(path, "w") as handle:
        handle.write(text)


def render_saved(args) -> int:
    """Rewrite the section from a saved results.json, for example after editing the notes."""
    with open(args.from_results) as handle:
        saved = json.load(handle)
    run_args = argparse.Namespace(**saved["args"])
    run_args.notes = args.notes
    run_args.command = f"{saved['args']['command']}`, then this section with `{args.command}"
    records = argparse.Namespace(count=saved["record_count"], bytes=saved["record_bytes"])
    section = render(saved["results"], saved["facts"], run_args, saved["date"], records)
    print(section)
    if args.output:
        write_section(args.output, section)
        log(f"wrote the collector section of {args.output}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=200000, help="records per system")
    parser.add_argument("--seed", type=int, default=1, help="seed of make_records.py")
    parser.add_argument("--senders", type=int, default=4, help="concurrent loopback connections per system")
    parser.add_argument("--batch-records", type=int, default=500, help="records per webtrap batch")
    parser.add_argument("--gzip-level", type=int, default=6, help="gzip level of the webtrap batches")
    parser.add_argument("--timeout", type=float, default=300, help="maximum seconds per system run")
    parser.add_argument("--fsync-timeout", type=float, default=90,
                        help="maximum seconds of a -fsync peer run; its rate counts the records written by then")
    parser.add_argument("--systems", default="rsyslog,rsyslog-fsync,syslog-ng,syslog-ng-fsync,webtrap,webtrap-file",
                        help="comma-separated systems to run; the -fsync peers write their output with fsync, "
                             "and webtrap-file reads the libmodsecurity layout through the collector's file input")
    parser.add_argument("--work-dir", help="folder for records, configurations and outputs")
    parser.add_argument("--from-results", metavar="RESULTS_JSON",
                        help="render the section from an earlier run's results.json, with the current --notes")
    parser.add_argument("--webtrap", help="webtrap executable")
    parser.add_argument("--es-double", default=os.path.join(SOURCE_DIR, "tests/tools/es_double.py"))
    parser.add_argument("--es-option", action="append", default=[],
                        help="extra line under outputs.elasticsearch, e.g. 'batch_max_events: 2000'")
    parser.add_argument("--store-synchronous", default="full", choices=["full", "normal", "off"],
                        help="SQLite synchronous mode of the collector's store")
    parser.add_argument("--no-elasticsearch", dest="elasticsearch", action="store_false",
                        help="run the collector with no output, so the run measures ingest to store alone")
    parser.add_argument("--profile", action="store_true",
                        help="record the collector with perf record into WORK_DIR/webtrap/perf.data")
    parser.add_argument("--rsyslogd", default="/usr/sbin/rsyslogd")
    parser.add_argument("--syslog-ng-root", default=os.path.join(SOURCE_DIR, "bench/.peers/syslog-ng"),
                        help="folder where syslog-ng-core was unpacked with dpkg -x")
    parser.add_argument("--output", help="markdown file whose collector section is rewritten")
    parser.add_argument("--notes", default=os.path.join(SOURCE_DIR, "bench/analysis.md"))
    parser.add_argument("--command", default="bench/collector/run.sh", help="command line shown in the report")
    args = parser.parse_args()
    if args.from_results:
        return render_saved(args)
    if not args.work_dir:
        parser.error("--work-dir is required unless --from-results is given")

    systems = [s for s in args.systems.split(",") if s]
    runners = {"rsyslog": run_rsyslog, "syslog-ng": run_syslog_ng, "webtrap": run_webtrap,
               "rsyslog-fsync": lambda records, args: run_rsyslog(records, args, fsync=True),
               "syslog-ng-fsync": lambda records, args: run_syslog_ng(records, args, fsync=True),
               "webtrap-file": lambda records, args: run_webtrap(records, args, from_file=True)}
    unknown = set(systems) - set(runners)
    if unknown:
        parser.error(f"unknown system {sorted(unknown)[0]}: use {', '.join(runners)}")
    if any(system.startswith("webtrap") for system in systems) and not args.webtrap:
        parser.error("--webtrap is required when the systems include webtrap")
    os.makedirs(args.work_dir, exist_ok=True)
    records = Records(args.work_dir, args.count, args.seed, args.batch_records, args.gzip_level)
    results = []
    for system in systems:
        outcome = runners[system](records, args)
        log(f"{system}: {json.dumps(outcome)}")
        results.append(outcome)
        # Each peer wrote about as many bytes as it read; drop them before the next run.
        for name in ("parsed.ndjson",):
            path = os.path.join(args.work_dir, system, name)
            if os.path.exists(path):
                os.remove(path)
    date = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    facts = machine_facts(args)
    with open(os.path.join(args.work_dir, "results.json"), "w") as handle:
        json.dump({"date": date, "facts": facts, "args": vars(args), "results": results,
                   "record_count": records.count, "record_bytes": records.bytes}, handle, indent=1)
    section = render(results, facts, args, date, records)
    print(section)
    if args.output:
        write_section(args.output, section)
        log(f"wrote the collector section of {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
