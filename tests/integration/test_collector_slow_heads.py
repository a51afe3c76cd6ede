#!/usr/bin/env python3
"""The collector closes ingest connections whose request head arrives slower than
limits.header_timeout.

A client that sends its request head a byte at a time (slowloris) takes none
of the ingest slots, but it keeps one of limits.max_connections
connections. Before limits.header_timeout it kept it until
limits.read_timeout. Each check starts its own collector on 127.0.0.1 with a
long limits.read_timeout and a 3 s header timeout, so that only the header
timeout can end a head in time:

- slow heads lose their connections: with limits.max_connections 4, four
  connections that send a head a byte every 0.25 s take every connection,
  so a sensor's batch gets its connection closed at once. Each slow
  connection is closed about 3 s after it opened,
  webtrap_collector_header_timeouts_total is 4 and the read timeout counter
  0, one log line (rate-limited) names limits.header_timeout, and the batch
  then gets 200;
- honest head in pieces: a head sent in ten pieces over 2 s, then its body,
  gets 200 and is not counted;
- keep-alive idle time does not count: after a first request on a kept-alive
  connection, 4.5 s of idle time (longer than the header timeout, shorter
  than limits.idle_timeout) and a head in pieces over 2 s still get 200.
  The header timeout starts at the first byte of the next request: a slow
  head sent after a further idle time is closed about 3 s after its first
  byte, and counted;
- idle timeout still applies: a kept-alive connection that sends nothing is
  closed by limits.idle_timeout and counted as a read timeout, not as a
  slow head;
- header timeout past read timeout: the start log warns when
  limits.header_timeout is not below limits.read_timeout, and not with the
  defaults.

Every check runs even when an earlier one fails, and the test exits 1 if any
failed.
"""

import http.client
import socket
import sys
import time

from collector_checks import Collector, check, run_checks, start_log, wait_for
from test_collector_sensor_slots import make_records, metric, read_response

READ_TIMEOUT_SECONDS = 60
HEADER_TIMEOUT_SECONDS = 3
LIMITS = f"{{read_timeout: {READ_TIMEOUT_SECONDS}s, header_timeout: {HEADER_TIMEOUT_SECONDS}s}}"
# Time allowed past the expected cut for scheduling and the metric polls.
MARGIN_SECONDS = 3
# A head long enough to outlast every check when sent a byte every 0.25 s.
SLOW_HEAD = b"POST /v1/records HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + b"a" * 200


def header_timeouts(collector):
    return metric(collector, "webtrap_collector_header_timeouts_total")


def read_timeouts(collector):
    return metric(collector, "webtrap_collector_request_timeouts_total")


def batch_request(token, body):
    return (f"POST /v1/records HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {token}\r\n"
            "Content-Type: application/x-ndjson\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def is_closed(sock):
    """Return True when the collector has closed `sock`, without waiting."""
    sock.setblocking(False)
    try:
        return sock.recv(65536) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True
    finally:
        sock.setblocking(True)


def send_slowly(sockets, head, pause, limit_seconds, started=None):
    """Send `head` a byte at a time to every socket in `sockets`, one byte each per
    `pause` seconds.

    Return for each socket the seconds from `started` (default: now) after which the
    collector closed it, or None when it stayed open for `limit_seconds`.
    """
    if started is None:
        started = time.monotonic()
    closed_after = [None] * len(sockets)
    for byte in head:
        if time.monotonic() - started > limit_seconds:
            break
        for index, sock in enumerate(sockets):
            if closed_after[index] is not None:
                continue
            try:
                sock.send(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                closed_after[index] = time.monotonic() - started
                continue
            if is_closed(sock):
                closed_after[index] = time.monotonic() - started
        if all(after is not None for after in closed_after):
            break
        time.sleep(pause)
    return closed_after


def send_in_pieces(sock, request, head_pieces, seconds):
    """Send the head of `request` in `head_pieces` pieces spread over `seconds`, then
    the body at once."""
    head_end = request.index(b"\r\n\r\n") + 4
    head, body = request[:head_end], request[head_end:]
    size = -(-len(head) // head_pieces)
    for offset in range(0, len(head), size):
        sock.sendall(head[offset:offset + size])
        time.sleep(seconds / head_pieces)
    sock.sendall(body)


def post_fails(collector, token, body):
    """Return True when a batch post gets no response because its connection was closed."""
    try:
        collector.post("/v1/records", token, body, {"Content-Type": "application/x-ndjson"},
                       timeout=10)
    except (ConnectionError, http.client.HTTPException, OSError):
        return True
    return False


def slow_heads_lose_connections(workdir, records):
    max_connections = 4
    collector = Collector(workdir, limits=f"{{read_timeout: {READ_TIMEOUT_SECONDS}s, "
                                          f"header_timeout: {HEADER_TIMEOUT_SECONDS}s, "
                                          f"max_connections: {max_connections}}}")
    token = collector.enrol("sensor-a")
    collector.start()
    body = b"".join(records[:5])
    sockets = [socket.create_connection(("127.0.0.1", collector.ingest_port), timeout=10)
               for _ in range(max_connections)]
    opened = time.monotonic()
    try:
        for sock in sockets:
            sock.send(SLOW_HEAD[:1])
        wait_for(lambda: metric(collector, "webtrap_collector_connections_open")
                 == max_connections, 5, "the slow connections to be accepted")
        check(post_fails(collector, token, body),
              f"a batch got a response while {max_connections} slow heads held every "
              "connection; the test needs them to take limits.max_connections")
        closed_after = send_slowly(sockets, SLOW_HEAD[1:], 0.25,
                                   HEADER_TIMEOUT_SECONDS + MARGIN_SECONDS, opened)
        for number, after in enumerate(closed_after, 1):
            check(after is not None,
                  f"slow head {number} was still open {HEADER_TIMEOUT_SECONDS + MARGIN_SECONDS} "
                  f"s after it started, past limits.header_timeout ({HEADER_TIMEOUT_SECONDS} s)")
            if after is not None:
                check(after >= HEADER_TIMEOUT_SECONDS - 0.5,
                      f"slow head {number} was closed after {after:.1f} s, before "
                      f"limits.header_timeout ({HEADER_TIMEOUT_SECONDS} s)")
        print("     slow heads closed after "
              f"{', '.join(f'{after:.1f}' for after in closed_after if after is not None)} s")
        check(header_timeouts(collector) == max_connections,
              f"expected webtrap_collector_header_timeouts_total {max_connections}, got "
              f"{header_timeouts(collector)}")
        check(read_timeouts(collector) == 0,
              f"slow heads were counted as read timeouts: {read_timeouts(collector)}")
        lines = [line for line in collector.log().splitlines()
                 if "was not complete within limits.header_timeout" in line]
        check(len(lines) == 1,
              f"expected one rate-limited log line for the {max_connections} closed "
              f"connections, got {len(lines)}: {lines}")
        wait_for(lambda: metric(collector, "webtrap_collector_connections_open") == 0, 5,
                 "the slow connections to be counted as closed")
        status, response = collector.post("/v1/records", token, body,
                                          {"Content-Type": "application/x-ndjson"}, timeout=30)
        check(status == 200, f"the batch after the slow heads were closed: expected 200, got "
                             f"{status} {response[:200]!r}")
    finally:
        for sock in sockets:
            sock.close()
        collector.stop()


def honest_head_in_pieces(workdir, records):
    collector = Collector(workdir, limits=LIMITS)
    token = collector.enrol("sensor-a")
    collector.start()
    sock = socket.create_connection(("127.0.0.1", collector.ingest_port), timeout=30)
    try:
        send_in_pieces(sock, batch_request(token, b"".join(records[:5])), 10, 2)
        status, _, response = read_response(sock, 30)
        check(status == 200, f"a head sent in ten pieces over 2 s: expected 200, got {status} "
                             f"{response[:200]!r}")
        check(header_timeouts(collector) == 0,
              f"an honest head was counted as slow: {header_timeouts(collector)}")
    finally:
        sock.close()
        collector.stop()


def keep_alive_idle_not_counted(workdir, records):
    collector = Collector(workdir, limits=LIMITS)
    token = collector.enrol("sensor-a")
    collector.start()
    body = b"".join(records[:5])
    sock = socket.create_connection(("127.0.0.1", collector.ingest_port), timeout=30)
    try:
        sock.sendall(batch_request(token, body))
        status, headers, response = read_response(sock, 30)
        check(status == 200, f"the first request: expected 200, got {status} {response[:200]!r}")
        check(headers.get("connection", "").lower() != "close",
              f"the collector closed the connection after the first request: {headers}")

        idle = HEADER_TIMEOUT_SECONDS + 1.5
        time.sleep(idle)
        send_in_pieces(sock, batch_request(token, body), 10, 2)
        status, _, response = read_response(sock, 30)
        check(status == 200, f"a request after {idle} s of keep-alive idle time, its head in "
                             f"pieces over 2 s: expected 200, got {status} {response[:200]!r}")
        check(header_timeouts(collector) == 0,
              f"keep-alive idle time was counted towards limits.header_timeout: "
              f"{header_timeouts(collector)}")

        time.sleep(idle)
        closed_after = send_slowly([sock], SLOW_HEAD, 0.25,
                                   HEADER_TIMEOUT_SECONDS + MARGIN_SECONDS)[0]
        check(closed_after is not None,
              f"a slow head after keep-alive idle time was still open "
              f"{HEADER_TIMEOUT_SECONDS + MARGIN_SECONDS} s after its first byte")
        if closed_after is not None:
            check(closed_after >= HEADER_TIMEOUT_SECONDS - 0.5,
                  f"a slow head after keep-alive idle time was closed {closed_after:.1f} s "
                  f"after its first byte, before limits.header_timeout "
                  f"({HEADER_TIMEOUT_SECONDS} s)")
        check(header_timeouts(collector) == 1,
              f"expected 1 header timeout, got {header_timeouts(collector)}")
    finally:
        sock.close()
        collector.stop()


def idle_timeout_still_applies(workdir, records):
    idle_timeout = 2
    collector = Collector(workdir, limits=f"{{read_timeout: {READ_TIMEOUT_SECONDS}s, "
                                          f"header_timeout: {HEADER_TIMEOUT_SECONDS}s, "
                                          f"idle_timeout: {idle_timeout}s}}")
    token = collector.enrol("sensor-a")
    collector.start()
    sock = socket.create_connection(("127.0.0.1", collector.ingest_port), timeout=30)
    try:
        sock.sendall(batch_request(token, b"".join(records[:5])))
        status, _, response = read_response(sock, 30)
        check(status == 200, f"the first request: expected 200, got {status} {response[:200]!r}")
        started = time.monotonic()
        wait_for(lambda: is_closed(sock), idle_timeout + MARGIN_SECONDS,
                 "limits.idle_timeout to close the idle connection")
        elapsed = time.monotonic() - started
        check(elapsed >= idle_timeout - 0.5,
              f"the idle connection was closed after {elapsed:.1f} s, before "
              f"limits.idle_timeout ({idle_timeout} s)")
        wait_for(lambda: read_timeouts(collector) == 1, 5, "the idle timeout to be counted")
        check(header_timeouts(collector) == 0,
              f"an idle connection was counted as a slow head: {header_timeouts(collector)}")
    finally:
        sock.close()
        collector.stop()


def header_timeout_past_read_timeout(workdir, records):
    warning = "limits.header_timeout (30000 ms) is not below limits.read_timeout"
    log = start_log(workdir, "{read_timeout: 30s, header_timeout: 30s}")
    check(warning in log,
          "no warning at start that limits.header_timeout equal to limits.read_timeout "
          "never applies first")
    check("limits.header_timeout" not in start_log(workdir / "defaults"),
          "the header timeout warning appeared with the defaults")


CHECKS = [slow_heads_lose_connections, honest_head_in_pieces, keep_alive_idle_not_counted,
          idle_timeout_still_applies, header_timeout_past_read_timeout]


def main():
    return run_checks(CHECKS, "collector-slow-heads-", make_records)


if __name__ == "__main__":
    sys.exit(main())
