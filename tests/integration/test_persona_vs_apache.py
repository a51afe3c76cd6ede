#!/usr/bin/env python3
"""Compares a probe running the apache-debian-php persona with a real Apache.

Both run on 127.0.0.1 in this test: Debian's apache2 with the configuration
that tests/fixtures/apache/capture.py writes (Debian 12 defaults), and
`webtrap probe`. Each request goes to both servers. The test compares the
status line, the header names in order, and the bytes of each header value
and of the body. Before comparing, it replaces the Date value, each server's
port and the Apache version (the installed apache2 may be newer than the
persona's), and sorts the Allow methods, whose order Apache takes from a hash
table.

Exits 77 (skipped) when apache2 is not installed.
"""

import importlib.util
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import probe_harness  # noqa: E402

APACHE = "/usr/sbin/apache2"
CAPTURE = probe_harness.SOURCE_DIR / "tests" / "fixtures" / "apache" / "capture.py"


def load_capture_module():
    spec = importlib.util.spec_from_file_location("capture", CAPTURE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def requests(port):
    host = f"Host: 127.0.0.1:{port}\r\n".encode()
    return {
        "robots": b"GET /robots.txt HTTP/1.1\r\n" + host + b"\r\n",
        "favicon": b"GET /favicon.ico HTTP/1.1\r\n" + host + b"\r\n",
        "nonexistent": b"GET /nonexistent HTTP/1.1\r\n" + host + b"\r\n",
        "nonexistent_keep_alive": b"GET /nonexistent HTTP/1.1\r\n" + host
        + b"Connection: keep-alive\r\n\r\n",
        "htaccess": b"GET /.htaccess HTTP/1.1\r\n" + host + b"\r\n",
        "server_status": b"GET /server-status HTTP/1.1\r\n" + host + b"\r\n",
        "admin_without_auth": b"GET /admin/ HTTP/1.1\r\n" + host + b"\r\n",
        "directory_no_slash": b"GET /backup-2019 HTTP/1.1\r\n" + host + b"\r\n",
        "style_gzip": b"GET /style.css HTTP/1.1\r\n" + host
        + b"Accept-Encoding: gzip, deflate, br\r\n\r\n",
        "if_modified_since": b"GET /robots.txt HTTP/1.1\r\n" + host
        + b"If-Modified-Since: Tue, 12 Mar 2024 00:00:00 GMT\r\n\r\n",
        "head": b"HEAD /robots.txt HTTP/1.1\r\n" + host + b"\r\n",
        "options": b"OPTIONS /robots.txt HTTP/1.1\r\n" + host + b"\r\n",
        "bad_method": b"FOO /robots.txt HTTP/1.1\r\n" + host + b"\r\n",
        "trace": b"TRACE / HTTP/1.1\r\n" + host + b"\r\n",
        "http10": b"GET /robots.txt HTTP/1.0\r\n\r\n",
        "bad_request": b"GARBAGE\r\n\r\n",
        "no_host": b"GET /robots.txt HTTP/1.1\r\n\r\n",
        "uri_too_long": b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n" + host + b"\r\n",
        "header_too_long": b"GET / HTTP/1.1\r\n" + host + b"X-A: " + b"a" * 9000 + b"\r\n\r\n",
    }


# The persona names a fixed Apache version, while the installed apache2 may
# have been updated since.
VERSION = re.compile(rb"Apache/2\.4\.\d+")


def normalise(response, port):
    response = VERSION.sub(b"Apache/2.4.x", response)
    head, _, body = response.partition(b"\r\n\r\n")
    lines = []
    for line in head.split(b"\r\n"):
        if line.startswith(b"Date: "):
            line = b"Date: (date)"
        elif line.startswith(b"Allow: "):
            line = b"Allow: " + b",".join(sorted(line[7:].split(b",")))
        lines.append(line.replace(str(port).encode(), b"(port)"))
    return b"\r\n".join(lines), body.replace(str(port).encode(), b"(port)")


def start_apache(capture):
    root = pathlib.Path(tempfile.mkdtemp(prefix="webtrap-apache-"))
    os.chmod(root, 0o755)
    port = free_port()
    capture.prepare(root, port)
    # -DFOREGROUND keeps Apache as our child, so it is stopped by its PID. It
    # gets a session of its own because prefork's shutdown signals its whole
    # process group, which would otherwise include this test and ctest.
    process = subprocess.Popen(
        [APACHE, "-f", str(root / "apache2.conf"), "-DFOREGROUND"],
        stdout=open(root / "stdout.log", "wb"), stderr=subprocess.STDOUT,
        start_new_session=True)
    if not capture.wait_for_port(port, time.monotonic() + 15):
        process.kill()
        process.wait()
        error_log = root / "error.log"
        message = error_log.read_text() if error_log.exists() else "no error log"
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError("apache2 did not start: " + message)
    return process, port, root


def main():
    if not os.access(APACHE, os.X_OK):
        print(f"SKIP: {APACHE} is not installed (Debian package apache2)")
        return 77
    capture = load_capture_module()
    apache, apache_port, apache_root = start_apache(capture)
    probe = None
    failures = 0
    try:
        probe = probe_harness.Probe()
        probe_port = probe.http_port
        apache_requests = requests(apache_port)
        probe_requests = requests(probe_port)
        for name in apache_requests:
            expected = normalise(probe_harness.send_raw(apache_port, apache_requests[name]), apache_port)
            actual = normalise(probe_harness.send_raw(probe_port, probe_requests[name]), probe_port)
            if expected[0] != actual[0]:
                failures += 1
                print(f"FAIL {name}: headers differ\n  apache: {expected[0]!r}\n"
                      f"  probe:  {actual[0]!r}")
            elif expected[1] != actual[1]:
                failures += 1
                print(f"FAIL {name}: bodies differ\n  apache: {expected[1][:300]!r}\n"
                      f"  probe:  {actual[1][:300]!r}")
            else:
                print(f"ok {name}")
        total = len(apache_requests)
    finally:
        if probe is not None:
            probe.stop()
        apache.send_signal(signal.SIGTERM)
        try:
            apache.wait(timeout=15)
        except subprocess.TimeoutExpired:
            apache.kill()
        shutil.rmtree(apache_root, ignore_errors=True)
    print(f"{total - failures} passed, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
