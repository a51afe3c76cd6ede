#!/usr/bin/env python3
"""Sends broken and hostile traffic to a loopback probe and checks that it stays up and bounded."""

import socket
import sys

from probe_harness import Probe, wait_for

CONFIG = """sensor:
  id: abuse
limits:
  read_timeout: 5s
  idle_timeout: 1s
  max_connections_per_source: 8
  max_header_bytes: 8KiB
  max_body_bytes: 64KiB
"""

HOST = b"Host: x\r\n"
CHUNKED = b"POST / HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\n"

# Each case is sent on its own connection and must get one persona response
# and one record.
MALFORMED = {
    "empty line": b"\r\n\r\n",
    "binary garbage": b"\x00\x01\x02\xff\xfe garbage\r\n\r\n",
    "HTTP/0.9": b"GET /\r\n",
    "HTTP/2 preface": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    "NUL in target": b"GET /a\x00b HTTP/1.1\r\n" + HOST + b"\r\n",
    "bare CR": b"GET / HTTP/1.1\r\n" + HOST + b"X: a\rY: z\r\n\r\n",
    "obs-fold": b"GET / HTTP/1.1\r\n" + HOST + b"X: a\r\n b\r\n\r\n",
    "bad chunk size": CHUNKED + b"zz\r\nabc\r\n0\r\n\r\n",
    "huge chunk size": CHUNKED + b"ffffffffffffffffffff\r\nabc\r\n0\r\n\r\n",
    "long chunk extension": CHUNKED + b"3;" + b"a" * 20000 + b"\r\nabc\r\n0\r\n\r\n",
    "length and chunked": b"POST / HTTP/1.1\r\n" + HOST + b"Content-Length: 3\r\n"
                          b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    "absurd length": b"POST / HTTP/1.1\r\n" + HOST + b"Content-Length: 99999999999999999999\r\n\r\n",
    "negative length": b"POST / HTTP/1.1\r\n" + HOST + b"Content-Length: -1\r\n\r\n",
    "two lengths": b"POST / HTTP/1.1\r\n" + HOST + b"Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
    "body past limit": b"POST / HTTP/1.1\r\n" + HOST + b"Content-Length: 100000\r\n\r\n" + b"a" * 100000,
    "body at limit": b"POST / HTTP/1.1\r\n" + HOST + b"Content-Length: 65536\r\n\r\n" + b"a" * 65536,
    "huge header": b"GET / HTTP/1.1\r\n" + HOST + b"X: " + b"a" * 20000 + b"\r\n\r\n",
    "many headers": b"GET / HTTP/1.1\r\n" + b"".join(b"X%d: y\r\n" % i for i in range(300)) + b"\r\n",
    "long target": b"GET /" + b"a" * 100000 + b" HTTP/1.1\r\n" + HOST + b"\r\n",
    "encoded traversal": b"GET /icons/..%2f..%2f..%2f..%2fetc/passwd HTTP/1.1\r\n" + HOST + b"\r\n",
    "dot traversal": b"GET /cgi-bin/.%2e/.%2e/.%2e/.%2e/etc/passwd HTTP/1.1\r\n" + HOST + b"\r\n",
}


def exchange(port, data, timeout=10):
    """Sends `data`, closes the sending side and returns every byte the probe sent back."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the probe may close first, after a limit
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except OSError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("VmRSS not found")


def check_malformed(probe, failures):
    before = len(probe.records())
    for name, data in MALFORMED.items():
        response = exchange(probe.http_port, data)
        if not response.startswith(b"HTTP/1.1 "):
            failures.append(f"{name}: no HTTP/1.1 response, got {response[:40]!r}")
        if b"root:" in response:
            failures.append(f"{name}: served a file outside the persona folder")
        if b"Apache/2.4" not in response:
            failures.append(f"{name}: response lacks the Apache Server header")
    wait_for(lambda: len(probe.records()) >= before + len(MALFORMED), 30,
             "one record per malformed request")


def check_endless_chunk_line(probe, failures):
    start = rss_kib(probe.process.pid)
    with socket.create_connection(("127.0.0.1", probe.http_port), timeout=5) as sock:
        sock.sendall(CHUNKED + b"3;")
        try:
            for _ in range(200):
                sock.sendall(b"a" * (1 << 20))
        except OSError:
            pass  # expected: the probe closes the connection
    growth = rss_kib(probe.process.pid) - start
    if growth > 64 * 1024:
        failures.append(f"an endless chunk line grew RSS by {growth} KiB")


def check_source_cap(probe, failures):
    open_sockets = []
    try:
        for _ in range(40):
            open_sockets.append(socket.create_connection(("127.0.0.1", probe.http_port), timeout=5))
        wait_for(lambda: probe.metrics().get(
            'webtrap_connections_rejected_total{reason="source_cap"}', 0) >= 32, 20,
            "source cap rejections")
        open_now = probe.metrics().get("webtrap_connections_open", 0)
        if open_now > 8:
            failures.append(f"{open_now} connections open from one source, cap is 8")
    finally:
        for sock in open_sockets:
            sock.close()


def check_tls_port(probe, failures):
    for data in (b"\x16\x03\x01\x00\x05hello", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
                 b"\x16", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"):
        exchange(probe.tls_port, data, timeout=15)
    if probe.process.poll() is not None:
        failures.append("the probe exited after TLS garbage")


def main():
    probe = Probe(CONFIG)
    failures = []
    try:
        check_malformed(probe, failures)
        check_endless_chunk_line(probe, failures)
        check_source_cap(probe, failures)
        check_tls_port(probe, failures)
        if probe.process.poll() is not None:
            failures.append("the probe exited under attack traffic")
    finally:
        code = probe.stop()
    if code != 0:
        failures.append(f"the probe exited with {code} on SIGTERM")
    for failure in failures:
        print("FAIL:", failure)
    if failures:
        print(probe.log_text()[-2000:])
        sys.exit(1)
    print("ok")


if __name__ == "__main__":
    main()
