#!/usr/bin/env python3
"""Attacks `webtrap collector` the way a hostile client or a careless operator would.

Each check starts its own collector on 127.0.0.1 with a temporary state
folder and fails on one specific weakness:

- request bodies buffered in memory before the token is checked;
- a busy accept loop and a log flood when file descriptors run out;
- one store transaction per dead-lettered line, which makes a batch of
  broken lines slow and not atomic;
- batches committed during a SIGTERM but never answered;
- zero and absurd values for limits and io_threads accepted without an error;
- a file input that stays stuck after its path was briefly a folder;
- duplicate Authorization headers accepted;
- the shipper sending its token in clear text to a proxy from the environment
  even though its URL is a loopback http:// address;
- the Elasticsearch output inflating a gzip bomb of a response in memory.

Every check runs even when an earlier one fails, and the test exits 1 if any
failed. It took about 25 s on a 2-core virtual machine.
"""

import gzip
import http.client
import http.server
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
import zlib

from collector_checks import BIN, Collector, check, run_checks, wait_for

SOURCE_DIR = pathlib.Path(os.environ.get("WEBTRAP_SOURCE_DIR",
                                         pathlib.Path(__file__).resolve().parents[2]))
MAKE_RECORDS = SOURCE_DIR / "bench" / "collector" / "make_records.py"


def exchange(port, data, timeout=30):
    """Send raw bytes, half-close, and return everything the server sends back."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        received = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not chunk:
                break
            received += chunk
        return received


def post(port, path, body, headers=()):
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n" + "".join(f"{name}: {value}\r\n" for name, value in headers)
            + "\r\n")
    response = exchange(port, head.encode() + body)
    try:
        return int(response.split(b" ", 2)[1]), response.split(b"\r\n\r\n", 1)[-1]
    except (IndexError, ValueError):
        return None, response


def make_records(workdir, count):
    path = workdir / "records.ndjson"
    subprocess.run([sys.executable, str(MAKE_RECORDS), "--count", str(count), "--probe-output",
                    str(path)], check=True, capture_output=True, timeout=120)
    return path.read_bytes().splitlines(keepends=True)


def unauthenticated_bodies_not_buffered(workdir, records):
    collector = Collector(workdir, limits="{max_body_bytes: 32MiB, max_decompressed_bytes: 64MiB}")
    collector.start()
    try:
        before = collector.status_kib("VmRSS")
        megabyte = b"x" * (1 << 20)
        sockets = []
        try:
            # Eight connections without any token, each 16 MiB into a 24 MiB body.
            for _ in range(8):
                sock = socket.create_connection(("127.0.0.1", collector.ingest_port), timeout=10)
                sock.sendall(b"POST /v1/records HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                             b"Content-Length: 25165824\r\n\r\n")
                try:
                    for _ in range(16):
                        sock.sendall(megabyte)
                except OSError:
                    pass  # the collector closed the connection early, as it should
                sockets.append(sock)
            time.sleep(0.5)
            grown_mib = (collector.status_kib("VmRSS") - before) / 1024
        finally:
            for sock in sockets:
                sock.close()
        check(grown_mib < 48,
              f"the collector grew by {grown_mib:.0f} MiB while 8 clients without a token sent "
              "16 MiB each; the token must be checked before the body is read")
    finally:
        collector.stop()


def descriptor_exhaustion_no_busy_loop(workdir, records):
    collector = Collector(workdir, nofile=64)
    token = collector.enrol("s1")
    collector.start()
    sockets = []
    try:
        for _ in range(80):
            try:
                sockets.append(socket.create_connection(("127.0.0.1", collector.admin_port),
                                                        timeout=2))
            except OSError:
                break
        time.sleep(0.3)
        cpu_before = collector.cpu_seconds()
        log_before = collector.log_path.stat().st_size
        time.sleep(1.0)
        cpu_used = collector.cpu_seconds() - cpu_before
        log_grown = collector.log_path.stat().st_size - log_before
        for sock in sockets:
            sock.close()
        sockets = []
        check(cpu_used < 0.5,
              f"with every file descriptor in use the collector used {cpu_used:.2f} s of CPU in "
              "1 s; accept must back off after EMFILE")
        check(log_grown < 100_000,
              f"with every file descriptor in use the log grew by {log_grown} bytes in 1 s; "
              "repeated accept failures must be rate-limited")
        time.sleep(0.5)
        status, body = post(collector.ingest_port, "/v1/records", records[0],
                            [("Authorization", f"Bearer {token}")])
        check(status == 200, f"ingest after the descriptors were freed: {status} {body[:200]!r}")
    finally:
        for sock in sockets:
            sock.close()
        collector.stop()


def dead_letter_batch_atomic(workdir, records):
    collector = Collector(workdir)
    token = collector.enrol("s1")
    collector.start()
    seen_counts = set()
    posting = threading.Event()
    posting.set()

    def watch_dead_letters():
        connection = sqlite3.connect(f"file:{collector.state / 'store.sqlite'}?mode=ro", uri=True,
                                     timeout=5)
        while posting.is_set():
            seen_counts.add(connection.execute("SELECT count(*) FROM dead_letters").fetchone()[0])
            time.sleep(0.002)
        connection.close()

    watcher = threading.Thread(target=watch_dead_letters)
    watcher.start()
    try:
        broken = b"".join(b'{"broken": %d}\n' % i for i in range(6000))
        status, body = post(collector.ingest_port, "/v1/records", gzip.compress(broken),
                            [("Authorization", f"Bearer {token}"), ("Content-Encoding", "gzip")])
    finally:
        posting.clear()
        watcher.join()
        collector.stop()
    check(status == 200, f"batch of 6000 broken lines: {status} {body[:200]!r}")
    check(json.loads(body)["rejected"] == 6000, f"batch of 6000 broken lines: {body!r}")
    # One transaction per line also makes such a batch take seconds (5 to 11 s
    # on a 2-core virtual machine with a shared disk) and duplicates dead
    # letters when a later step fails and the sender retries.
    partial = sorted(count for count in seen_counts if count not in (0, 6000))
    check(not partial,
          f"a reader saw {len(partial)} partial dead-letter counts of the batch, such as "
          f"{partial[:5]}; its dead letters must be committed in one transaction")


def sigterm_answers_committed_batches(workdir, records):
    collector = Collector(workdir, limits="{max_body_bytes: 32MiB, max_decompressed_bytes: 64MiB}")
    token = collector.enrol("s1")
    collector.start()
    batches = [records[i:i + 250] for i in range(0, len(records), 250)]
    lock = threading.Lock()
    next_batch = [0]
    unanswered = []

    def send_batches():
        connection = http.client.HTTPConnection("127.0.0.1", collector.ingest_port, timeout=20)
        while True:
            with lock:
                if next_batch[0] >= len(batches):
                    return
                batch = batches[next_batch[0]]
                next_batch[0] += 1
            try:
                connection.request("POST", "/v1/records", gzip.compress(b"".join(batch), 1),
                                   {"Authorization": f"Bearer {token}",
                                    "Content-Encoding": "gzip"})
                response = connection.getresponse()
                response.read()
            except (OSError, http.client.HTTPException):
                with lock:
                    unanswered.append(batch)
                return

    threads = [threading.Thread(target=send_batches) for _ in range(8)]
    for thread in threads:
        thread.start()
    wait_for(lambda: next_batch[0] >= 16, 30, "16 batches sent")
    started = time.monotonic()
    collector.process.send_signal(signal.SIGTERM)
    try:
        collector.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        collector.process.kill()
        collector.process.wait()
    finally:
        stop_seconds = time.monotonic() - started
        for thread in threads:
            thread.join()
    check(stop_seconds < 15, f"the collector took {stop_seconds:.0f} s to stop after SIGTERM")

    connection = sqlite3.connect(str(collector.state / "store.sqlite"))
    stored = {row[0] for row in connection.execute("SELECT event_id FROM events")}
    connection.close()
    committed_unanswered = 0
    for batch in unanswered:
        ids = {json.loads(line)["webtrap"]["event_id"] for line in batch}
        if ids <= stored:
            committed_unanswered += 1
    check(committed_unanswered == 0,
          f"{committed_unanswered} of {len(unanswered)} unanswered batches were committed: "
          "after SIGTERM the collector must answer what it commits, or take no new requests")


def bad_limits_rejected(workdir, records):
    cases = {
        "limits.read_timeout": "limits: {read_timeout: 0s}\n",
        "limits.idle_timeout": "limits: {idle_timeout: 0s}\n",
        "limits.max_connections": "limits: {max_connections: 0}\n",
        "limits.max_body_bytes": "limits: {max_body_bytes: 0}\n",
        "io_threads": "io_threads: 1000000\n",
    }
    failures = []
    for key, text in cases.items():
        config = workdir / f"{key}.yaml"
        config.write_text(f"listen: 127.0.0.1:0\nadmin: {{listen: 127.0.0.1:0}}\n"
                          f"state_dir: {workdir / 'state'}\n{text}")
        result = subprocess.run([str(BIN), "collector", "--config", str(config), "count"],
                                capture_output=True, text=True, timeout=30)
        if result.returncode != 2 or key not in result.stderr:
            last_line = (result.stderr.strip().splitlines() or [""])[-1]
            failures.append(f"{text.strip()}: exit {result.returncode}, last line {last_line!r}")
    check(not failures, "values that make the collector unusable were accepted:\n  "
          + "\n  ".join(failures))


def file_input_recovers_from_folder(workdir, records):
    audit_log = workdir / "audit.json"
    collector = Collector(workdir, extra=(
        "inputs:\n  files:\n"
        f"    - {{path: {audit_log}, format: webtrap, sensor_id: f1, poll_interval: 100ms}}\n"))

    def stored_events():
        return json.loads(collector.command("count").stdout)["events"]

    audit_log.write_bytes(b"".join(records[0:5]))
    collector.start()
    try:
        wait_for(lambda: stored_events() >= 5, 20, "the first 5 records of the file")
        audit_log.unlink()
        audit_log.mkdir()
        time.sleep(0.5)
        audit_log.rmdir()
        audit_log.write_bytes(b"".join(records[5:10]))
        try:
            wait_for(lambda: stored_events() >= 10, 8, "records written after the folder")
        except AssertionError:
            raise AssertionError(
                f"the file input read {stored_events() - 5} of 5 records written after its path "
                "was a folder for 0.5 s; it must reopen the path")
    finally:
        collector.stop()


def duplicate_authorization_rejected(workdir, records):
    collector = Collector(workdir)
    token = collector.enrol("s1")
    collector.start()
    try:
        status, body = post(collector.ingest_port, "/v1/records", records[0],
                            [("Authorization", f"Bearer {token}"),
                             ("Authorization", "Bearer another-token")])
        check(status in (400, 401),
              f"two different Authorization headers got {status} {body[:200]!r}; an ambiguous "
              "credential must be rejected")
    finally:
        collector.stop()


def shipper_ignores_proxy_environment(workdir, records):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    listener.settimeout(0.2)
    proxy_port = listener.getsockname()[1]

    spool = workdir / "spool"
    spool.mkdir()
    (spool / "segment-000000000001.ndjson").write_bytes(b"".join(records[0:3]))
    # Port 9 on loopback is closed: the shipper may only fail to connect.
    config = workdir / "probe.yaml"
    config.write_text("shipper:\n  url: http://127.0.0.1:9\n  token: proxy-test-token\n"
                      "  retry_max: 1s\n")

    environment = dict(os.environ, http_proxy=f"http://127.0.0.1:{proxy_port}",
                       HTTP_PROXY=f"http://127.0.0.1:{proxy_port}")
    # No metrics listener: a busy default port would end the shipper at
    # start, and the check below would pass without a connection attempt.
    shipper = subprocess.Popen([str(BIN), "ship", "--config", str(config), "--spool", str(spool),
                                "--until-idle", "--metrics-listen", "off"], env=environment,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    received = b""
    try:
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline and not received:
            try:
                connection, _ = listener.accept()
            except socket.timeout:
                continue
            connection.settimeout(1)
            try:
                received = connection.recv(4096)
            except socket.timeout:
                received = b"<connected>"
            connection.close()
        exited_early = shipper.poll()
    finally:
        shipper.kill()
        shipper.wait()
        listener.close()
    check(exited_early is None,
          f"the shipper exited with {exited_early} before the proxy check ended, so it never "
          "tried to connect; run it by hand to see why")
    check(not received,
          "the shipper sent its loopback http:// batch through the proxy in http_proxy: "
          f"{received[:160]!r}; the token would leave the host in clear text")


def elasticsearch_gzip_bomb_bounded(workdir, records):
    # 512 MiB of spaces, gzip-compressed to about 0.5 MiB.
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    spaces = b" " * (1 << 20)
    bomb = b"".join(compressor.compress(spaces) for _ in range(512)) + compressor.flush()

    class BombHandler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(bomb)))
            self.end_headers()
            self.wfile.write(bomb)

    class QuietServer(http.server.ThreadingHTTPServer):
        def handle_error(self, request, client_address):
            pass  # the collector resets the connection when it stops reading

    server = QuietServer(("127.0.0.1", 0), BombHandler)
    server_thread = threading.Thread(target=server.serve_forever, daemon=True)
    server_thread.start()
    collector = Collector(workdir, extra=(
        "outputs:\n  elasticsearch:\n"
        f"    url: http://127.0.0.1:{server.server_address[1]}\n"
        "    flush_interval: 100ms\n    retry_initial: 500ms\n    retry_max: 1s\n"))
    token = collector.enrol("s1")
    collector.start()
    try:
        status, body = post(collector.ingest_port, "/v1/records", records[0],
                            [("Authorization", f"Bearer {token}")])
        check(status == 200, f"ingest: {status} {body[:200]!r}")
        wait_for(lambda: "output elasticsearch: sending" in collector.log()
                 or collector.process.poll() is not None,
                 20, "the Elasticsearch output to report the failed request")
        check(collector.process.poll() is None, "the collector died:\n" + collector.log()[-2000:])
        peak_mib = collector.status_kib("VmHWM") / 1024
        check(peak_mib < 400,
              f"a 0.5 MiB gzip response that inflates to 512 MiB raised the collector's peak "
              f"memory to {peak_mib:.0f} MiB; the response size must be capped")
    finally:
        collector.stop()
        server.shutdown()
        server.server_close()


CHECKS = [
    unauthenticated_bodies_not_buffered,
    descriptor_exhaustion_no_busy_loop,
    dead_letter_batch_atomic,
    sigterm_answers_committed_batches,
    bad_limits_rejected,
    file_input_recovers_from_folder,
    duplicate_authorization_rejected,
    shipper_ignores_proxy_environment,
    elasticsearch_gzip_bomb_bounded,
]


def main():
    return run_checks(CHECKS, "collector-abuse-", lambda root: make_records(root, 5000))



if __name__ == "__main__":
    sys.exit(main())
