#!/usr/bin/env python3
"""The collector's ingest listener enforces its connection cap and read timeout.

With limits.max_connections 3, a fourth connection is closed at once while
three idle ones are open. With limits.read_timeout 1s, a client that sends
half a request head is disconnected after about a second (a slowloris
sender cannot hold a connection).
"""

import os
import pathlib
import shutil
import signal
import socket
import sys
import tempfile
import time
import urllib.request

from probe_harness import collector_ports, start_collector


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


def main():
    folder = pathlib.Path(tempfile.mkdtemp(prefix="webtrap-collector-limits-"))
    collector = None
    sockets = []
    try:
        config = folder / "collector.yaml"
        config.write_text(f"""listen: 127.0.0.1:0
admin: {{listen: 127.0.0.1:0}}
state_dir: {folder / "state"}
limits: {{max_connections: 3, read_timeout: 1s, idle_timeout: 1s}}
""")
        collector = start_collector(config, folder)
        ports = collector_ports(collector, folder)

        for _ in range(3):
            sockets.append(socket.create_connection(("127.0.0.1", ports["ingest"]), timeout=5))
        time.sleep(0.2)
        extra = socket.create_connection(("127.0.0.1", ports["ingest"]), timeout=5)
        check(closed_within(extra, 0.5), "a fourth connection stayed open past max_connections 3")
        extra.close()

        slow = sockets[0]
        started = time.monotonic()
        slow.sendall(b"POST /v1/records HTTP/1.1\r\nHost: a\r\n")
        check(closed_within(slow, 5), "a half-sent request head was not timed out")
        elapsed = time.monotonic() - started
        check(0.3 <= elapsed <= 3, f"read timeout took {elapsed:.2f}s, expected under 1s")

        text = urllib.request.urlopen(f"http://127.0.0.1:{ports['admin']}/metrics",
                                      timeout=10).read().decode()
        values = dict(line.rsplit(" ", 1) for line in text.splitlines()
                      if line and not line.startswith("#"))
        check(float(values["webtrap_collector_connections_rejected_total"]) >= 1,
              "connections_rejected_total")
        check(float(values["webtrap_collector_request_timeouts_total"]) >= 1,
              "request_timeouts_total")
    except Exception:
        log_path = folder / "collector.log"
        if log_path.exists():
            print(log_path.read_text(errors="replace")[-4000:], file=sys.stderr)
        raise
    finally:
        for sock in sockets:
            sock.close()
        if collector is not None and collector.poll() is None:
            collector.send_signal(signal.SIGTERM)
            collector.wait(timeout=30)
        if not os.environ.get("WEBTRAP_KEEP_TEST_DIRS"):
            shutil.rmtree(folder, ignore_errors=True)
    print("collector limits: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
