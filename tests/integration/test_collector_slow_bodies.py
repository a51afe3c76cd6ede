#!/usr/bin/env python3
"""The collector cuts request bodies that arrive slower than limits.min_body_rate.

limits.max_slots_per_sensor keeps one sensor token from holding more than
8 of the 32 ingest slots. Four stolen tokens that each send 8 bodies a byte
at a time still held all 32 until limits.read_timeout, and every other
sensor got 503. An admitted body must now average limits.min_body_rate
once limits.min_body_rate_grace has passed, or its connection is closed and
its slot freed. Each check starts its own collector on 127.0.0.1 with a
long limits.read_timeout, so that only the rate check can end a body in
time:

- four tokens lose their slots: sensors 1 to 4 each open 8 connections that
  send a body byte every half second and take all 32 slots, so sensor E
  gets 503. Every slow connection is closed after the grace period and
  well before limits.read_timeout, the slots come back, each sensor's
  webtrap_collector_slow_bodies_total is 8, one log line (rate-limited)
  names limits.min_body_rate, and E then gets 200;
- rate separates slow from honest: a body sent at half the minimum rate is
  cut at about twice the grace period. One sent at four times the rate and
  one that stalls after sending fast get 200 and are not counted;
- TLS body cut: the same byte-at-a-time body over HTTPS is cut after the
  grace period and the 16 KiB credited for one TLS record. The rate is
  16 KiB/s here, so the credit is 1 s. Skipped without the openssl command;
- honest TLS sender: a body of one full TLS record whose encrypted bytes
  arrive at 1.5 times the minimum rate gets its response. The collector
  reads none of the record until all of it arrived (about 11 s), which
  without the 16 KiB credit is past the 5 s grace period;
- zero turns the check off: with limits.min_body_rate 0, a byte-at-a-time
  body keeps its slot past the grace period until limits.read_timeout;
- slow header: a request head sent a byte at a time, which takes no slot,
  is closed by limits.read_timeout;
- grace past read timeout: a grace period at or above limits.read_timeout
  leaves the rate check nothing to do, and the start log warns about it;
  with the defaults it does not.

Every check runs even when an earlier one fails, and the test exits 1 if any
failed.
"""

import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time

from collector_checks import Collector, check, run_checks, start_log, wait_for
from test_collector_sensor_slots import (DEFAULT_SENSOR_SLOTS, TOTAL_SLOTS, SlowSender,
                                         in_flight, make_records, metric, open_admitted,
                                         read_response)

# Longer than any check, so a connection closed in a check was closed by the
# rate check.
READ_TIMEOUT_SECONDS = 60
RATE = 1024
# Long enough to open 32 connections before the first is cut.
GRACE_SECONDS = 5
LIMITS = (f"{{read_timeout: {READ_TIMEOUT_SECONDS}s, min_body_rate: {RATE}/s, "
          f"min_body_rate_grace: {GRACE_SECONDS}s}}")
# Time allowed past the expected cut for scheduling and the metric polls.
MARGIN_SECONDS = 3
# The largest TLS record's plaintext, which the collector credits a TLS body.
TLS_RECORD_BYTES = 16384


def slow_bodies(collector, sensor_id):
    return metric(collector, f'webtrap_collector_slow_bodies_total{{sensor="{sensor_id}"}}')


def closed_by_peer(sock, timeout):
    """Return True when the collector closes `sock` within `timeout` seconds."""
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
        return True
    except (ConnectionResetError, ssl.SSLError):
        return True
    except (socket.timeout, TimeoutError):
        return False


def paced_post(port, token, body, pieces):
    """Send a batch as (bytes, pause in seconds) pieces and return (status, body).

    `pieces` splits the body: each entry sends that many more bytes and then
    waits. The rest of the body goes after the last entry.
    """
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        sock.sendall(f"POST /v1/records HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     f"Authorization: Bearer {token}\r\n"
                     "Content-Type: application/x-ndjson\r\n"
                     f"Content-Length: {len(body)}\r\n\r\n".encode())
        sent = 0
        for size, pause in pieces:
            sock.sendall(body[sent:sent + size])
            sent += size
            time.sleep(pause)
        sock.sendall(body[sent:])
        status, _, response = read_response(sock, 30)
        return status, response
    except (BrokenPipeError, ConnectionResetError) as error:
        return None, repr(error).encode()
    finally:
        sock.close()


def four_tokens_lose_their_slots(workdir, records):
    collector = Collector(workdir, limits=LIMITS)
    tokens = [collector.enrol(f"sensor-{number}") for number in range(1, 5)]
    token_e = collector.enrol("sensor-e")
    collector.start()
    senders = [SlowSender(collector.ingest_port, token) for token in tokens]
    try:
        started = time.monotonic()
        sockets = []
        for sender in senders:
            sockets += open_admitted(collector, sender, DEFAULT_SENSOR_SLOTS)
        opened = time.monotonic() - started
        check(opened < GRACE_SECONDS - 1,
              f"opening the 32 slow connections took {opened:.1f} s, too close to "
              f"limits.min_body_rate_grace ({GRACE_SECONDS} s) to see them all at once")
        check(in_flight(collector) == TOTAL_SLOTS,
              f"expected the 4 sensors to hold all {TOTAL_SLOTS} slots, got "
              f"{in_flight(collector)}")
        status, body = collector.post("/v1/records", token_e, b"".join(records[:5]),
                                      {"Content-Type": "application/x-ndjson"}, timeout=30)
        check(status == 503, f"E's batch while all slots were taken: expected 503, got {status} "
                             f"{body!r}")

        wait_for(lambda: in_flight(collector) == 0, GRACE_SECONDS + MARGIN_SECONDS,
                 "the 32 slow bodies to be cut and their slots to come back")
        elapsed = time.monotonic() - started
        check(elapsed >= GRACE_SECONDS - 0.5,
              f"the slow bodies were cut after {elapsed:.1f} s, before "
              f"limits.min_body_rate_grace ({GRACE_SECONDS} s)")
        print(f"     32 slow bodies cut {elapsed:.1f} s after the first header")
        for number, sock in enumerate(sockets, 1):
            check(closed_by_peer(sock, 2), f"slow connection {number} was not closed")
        for number in range(1, 5):
            count = slow_bodies(collector, f"sensor-{number}")
            check(count == DEFAULT_SENSOR_SLOTS,
                  f"expected webtrap_collector_slow_bodies_total{{sensor=\"sensor-{number}\"}} "
                  f"{DEFAULT_SENSOR_SLOTS}, got {count}")
        timeouts = metric(collector, "webtrap_collector_request_timeouts_total")
        check(timeouts == 0, f"slow bodies were counted as read timeouts: {timeouts}")
        lines = [line for line in collector.log().splitlines()
                 if "slower than limits.min_body_rate" in line]
        check(len(lines) == 1,
              f"expected one rate-limited log line for the 32 cut bodies, got {len(lines)}: "
              f"{lines}")

        status, body = collector.post("/v1/records", token_e, b"".join(records[:5]),
                                      {"Content-Type": "application/x-ndjson"}, timeout=30)
        check(status == 200, f"E's batch after the slow bodies were cut: expected 200, got "
                             f"{status} {body!r}")
    finally:
        for sender in senders:
            sender.close_all()
        collector.stop()


def rate_separates_slow_from_honest(workdir, records):
    collector = Collector(workdir, limits=LIMITS)
    token_slow = collector.enrol("sensor-slow")
    token_honest = collector.enrol("sensor-honest")
    collector.start()
    body = b"".join(records)
    check(len(body) >= 24 * RATE, f"the records make {len(body)} bytes, fewer than the test needs")
    results = {}

    def post(name, token, pieces):
        results[name] = (paced_post(collector.ingest_port, token, body, pieces),
                         time.monotonic() - started)

    # Half the rate: cut when 5 s + bytes / 1024 B/s passes, at about 10 s.
    half_rate = [(RATE // 8, 0.25)] * 80
    # Four times the rate for 6 s, past the grace period.
    fast = [(RATE, 0.25)] * 24
    # 16 KiB at once, then a 10 s stall: within the 5 s + 16 s it earned.
    stall = [(16 * RATE, 10)]
    threads = [threading.Thread(target=post, args=("half rate", token_slow, half_rate)),
               threading.Thread(target=post, args=("fast", token_honest, fast)),
               threading.Thread(target=post, args=("stall", token_honest, stall))]
    started = time.monotonic()
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        (status, response), elapsed = results["half rate"]
        check(status is None,
              f"a body at half of limits.min_body_rate got {status} {response[:200]!r}, "
              "expected its connection to be closed")
        expected = 2 * GRACE_SECONDS
        check(expected - 1.5 <= elapsed <= expected + MARGIN_SECONDS,
              f"the body at half the rate ended after {elapsed:.1f} s, expected about "
              f"{expected} s")
        for name in ("fast", "stall"):
            (status, response), elapsed = results[name]
            check(status == 200, f"the {name} body after {elapsed:.1f} s: expected 200, got "
                                 f"{status} {response[:200]!r}")
        check(slow_bodies(collector, "sensor-slow") == 1,
              f"expected 1 slow body of sensor-slow, got {slow_bodies(collector, 'sensor-slow')}")
        check(slow_bodies(collector, "sensor-honest") == 0,
              f"an honest body was counted as slow: {slow_bodies(collector, 'sensor-honest')}")
        wait_for(lambda: in_flight(collector) == 0, 5, "every slot to come back")
    finally:
        collector.stop()


def tls_collector(workdir, limits):
    """Return a collector with TLS on its ingest listener, or None without openssl."""
    if shutil.which("openssl") is None:
        print("     skipped: the openssl command is missing")
        return None
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-keyout", "server.key", "-out", "server.pem"],
                   cwd=workdir, check=True, capture_output=True, timeout=60)
    return Collector(workdir, limits=limits,
                     extra=f"tls: {{certificate: {workdir / 'server.pem'}, "
                           f"private_key: {workdir / 'server.key'}}}\n")


def tls_client_context():
    """Return a TLS client context that accepts the collector's self-signed certificate.

    The checks test the collector's cut, not its certificate.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def tls_body_cut(workdir, records):
    # At 16 KiB/s, the one TLS record credited to the body is worth 1 s.
    tls_rate = 16 * 1024
    credit_seconds = TLS_RECORD_BYTES / tls_rate
    collector = tls_collector(workdir, f"{{read_timeout: {READ_TIMEOUT_SECONDS}s, "
                                       f"min_body_rate: {tls_rate}/s, "
                                       f"min_body_rate_grace: {GRACE_SECONDS}s}}")
    if collector is None:
        return
    token = collector.enrol("sensor-a")
    collector.start()

    context = tls_client_context()
    raw = socket.create_connection(("127.0.0.1", collector.ingest_port), timeout=10)
    sock = context.wrap_socket(raw)
    try:
        started = time.monotonic()
        sock.sendall(f"POST /v1/records HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     f"Authorization: Bearer {token}\r\n"
                     "Content-Type: application/x-ndjson\r\n"
                     "Content-Length: 10000\r\n\r\n{".encode())
        wait_for(lambda: in_flight(collector) == 1, 10, "the TLS body to be admitted")

        closed_after = None
        while time.monotonic() - started < GRACE_SECONDS + credit_seconds + MARGIN_SECONDS:
            try:
                sock.sendall(b" ")
            except OSError:
                closed_after = time.monotonic() - started
                break
            if closed_by_peer(sock, 0.5):
                closed_after = time.monotonic() - started
                break

        check(closed_after is not None,
              f"a byte-at-a-time body over TLS was still open after {GRACE_SECONDS} s of grace, "
              f"{credit_seconds:.0f} s of TLS record credit and {MARGIN_SECONDS} s more")
        check(closed_after >= GRACE_SECONDS - 0.5,
              f"the TLS body was cut after {closed_after:.1f} s, before "
              f"limits.min_body_rate_grace ({GRACE_SECONDS} s)")
        wait_for(lambda: in_flight(collector) == 0, 5, "the TLS body's slot to come back")
        check(slow_bodies(collector, "sensor-a") == 1,
              f"expected 1 slow TLS body, got {slow_bodies(collector, 'sensor-a')}")
    finally:
        sock.close()
        collector.stop()


def honest_tls_sender(workdir, records):
    collector = tls_collector(workdir, LIMITS)
    if collector is None:
        return
    token = collector.enrol("sensor-a")
    collector.start()
    # The TLS connection runs over memory buffers, so the test decides when
    # each encrypted byte reaches the socket.
    context = tls_client_context()
    incoming = ssl.MemoryBIO()
    outgoing = ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing)
    raw = socket.create_connection(("127.0.0.1", collector.ingest_port), timeout=30)

    def flush():
        data = outgoing.read()
        if data:
            raw.sendall(data)

    def receive():
        data = raw.recv(65536)
        if not data:
            raise ConnectionResetError("the collector closed the connection")
        incoming.write(data)

    try:
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                flush()
                receive()
        flush()
        body = b"".join(records)[:TLS_RECORD_BYTES].ljust(TLS_RECORD_BYTES, b"\n")
        tls.write(f"POST /v1/records HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                  f"Authorization: Bearer {token}\r\n"
                  "Content-Type: application/x-ndjson\r\n"
                  f"Content-Length: {len(body)}\r\n\r\n".encode())
        flush()
        wait_for(lambda: in_flight(collector) == 1, 10, "the TLS body to be admitted")
        # One TLS record of the whole body, its encrypted bytes sent at 1.5
        # times the minimum rate, in pieces of a tenth of a second.
        tls.write(body)
        record = outgoing.read()
        piece = int(RATE * 1.5 / 10)
        started = time.monotonic()
        cut = False
        for offset in range(0, len(record), piece):
            try:
                raw.sendall(record[offset:offset + piece])
            except OSError:
                cut = True
                break
            time.sleep(0.1)
        sent_after = time.monotonic() - started
        answer = b""
        raw.settimeout(10)
        while not cut and b"\r\n\r\n" not in answer:
            try:
                receive()
                answer += tls.read(65536)
            except ssl.SSLWantReadError:
                continue
            except OSError:
                cut = True
        check(not cut and answer.startswith(b"HTTP/1.1 "),
              f"a TLS body sent at {RATE * 1.5:.0f} bytes/s in one {TLS_RECORD_BYTES}-byte record "
              f"(all of it after {sent_after:.1f} s) got no response: the collector cut it")
        check(slow_bodies(collector, "sensor-a") == 0,
              f"expected no slow body, got {slow_bodies(collector, 'sensor-a')}")
    finally:
        raw.close()
        collector.stop()


def zero_turns_check_off(workdir, records):
    read_timeout = 6
    collector = Collector(workdir, limits=f"{{read_timeout: {read_timeout}s, min_body_rate: 0, "
                                          "min_body_rate_grace: 1s}")
    token = collector.enrol("sensor-a")
    collector.start()
    sender = SlowSender(collector.ingest_port, token)
    try:
        sock = open_admitted(collector, sender, 1)[0]
        time.sleep(3)
        check(in_flight(collector) == 1,
              "with limits.min_body_rate 0, a slow body lost its slot after the grace period")
        check(closed_by_peer(sock, read_timeout + MARGIN_SECONDS),
              "the slow body was not closed by limits.read_timeout")
        wait_for(lambda: in_flight(collector) == 0, 5, "the slot to come back")
        timeouts = metric(collector, "webtrap_collector_request_timeouts_total")
        check(timeouts == 1, f"expected 1 read timeout, got {timeouts}")
        check(slow_bodies(collector, "sensor-a") == 0,
              f"a body was counted as slow with the check off: {slow_bodies(collector, 'sensor-a')}")
    finally:
        sender.close_all()
        collector.stop()


def slow_header_cut_by_read_timeout(workdir, records):
    read_timeout = 3
    collector = Collector(workdir, limits=f"{{read_timeout: {read_timeout}s}}")
    collector.start()
    head = b"POST /v1/records HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + b"a" * 200
    sock = socket.create_connection(("127.0.0.1", collector.ingest_port), timeout=10)
    try:
        started = time.monotonic()
        closed_after = None
        slots_checked = False
        for byte in head:
            if not slots_checked and time.monotonic() - started > 1:
                check(in_flight(collector) == 0, "a request head still arriving took an ingest "
                                                 "slot")
                slots_checked = True
            try:
                sock.send(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                closed_after = time.monotonic() - started
                break
            if closed_by_peer(sock, 0.25):
                closed_after = time.monotonic() - started
                break
        check(closed_after is not None,
              "a request head sent a byte every 0.25 s stayed open for all its "
              f"{len(head)} bytes")
        check(closed_after <= read_timeout + MARGIN_SECONDS,
              f"the slow head was closed after {closed_after:.1f} s, expected within "
              f"limits.read_timeout ({read_timeout} s)")
    finally:
        sock.close()
        collector.stop()


def grace_past_read_timeout(workdir, records):
    warning = "limits.min_body_rate never applies"
    log = start_log(workdir, "{read_timeout: 5s, min_body_rate_grace: 5s}")
    check(warning in log,
          "no warning at start that a grace period equal to limits.read_timeout turns the "
          "rate check off")
    check(warning not in start_log(workdir / "defaults"),
          "the rate check warning appeared with the defaults")


CHECKS = [four_tokens_lose_their_slots, rate_separates_slow_from_honest, tls_body_cut,
          honest_tls_sender, zero_turns_check_off, slow_header_cut_by_read_timeout,
          grace_past_read_timeout]


def main():
    return run_checks(CHECKS, "collector-slow-bodies-", make_records)


if __name__ == "__main__":
    sys.exit(main())
