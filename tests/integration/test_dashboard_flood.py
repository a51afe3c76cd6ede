#!/usr/bin/env python3
"""The dashboard's admin side under load, on loopback.

A collector with the dashboard on gets records with attacker-chosen
times (before 1970, year 1 and year 9999). Then eight clients send
dashboard queries back to back on keep-alive connections for 4 s, among
them timelines with int64-limit ranges, while the test checks that:
- /healthz on a new connection returns 200 within 1 s every time;
- no query fails and every response is 200, and the timeline's bucket width
  stays positive;
- the collector's resident memory grows by less than 16 MiB over three
  such rounds;
- a query without the token gets 401, and world-outline.json needs no
  token and serves JSON only at its own path;
- each insert wakes the index output: five single records show on the
  dashboard within 0.5 s each, although the runner's idle poll is 1 s;
- HEAD for the outline, /healthz and /metrics returns a length and no
  body, so the server reads a GET pipelined after it as the next request;
- with the admin listener's 16 connections idle on keep-alive, /healthz
  on a new connection answers within 1 s, because the connection idle
  longest is closed to make room (and counted in /metrics);
- 16 connections that each send half a request head are closed once the
  admin head timeout (5 s) has passed, and /healthz answers within 1 s
  after that, not after limits.read_timeout (30 s).
"""

import http.client
import json
import socket
import sys
import threading
import time
import urllib.request
import uuid

from probe_harness import CollectorRun, collector_ports, enrol_sensor

ADMIN_TOKEN = "dashboard-flood-token-0123456789abcdef"
SENSOR = "flood-sensor"
CLIENTS = 8
SECONDS = 4.0
AUTH = {"Authorization": "Bearer " + ADMIN_TOKEN}
# kMaxAdminConnections and kAdminHeadTimeout in src/collector/server.cpp.
ADMIN_CONNECTIONS = 16
ADMIN_HEAD_TIMEOUT = 5.0
QUERIES = [
    "summary", "timeline?limit=120", "tags?kind=oat", "top?field=path", "geo", "health",
    "feed?limit=500", "timeline?from=1&to=9223372036854775806&limit=1",
    "timeline?from=-9223372036854775808&limit=1000", "summary?from=5&to=1",
    "top?field=user_agent&" + "&".join(f"p{i}={i}" for i in range(300)),
]


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def record(timestamp, path):
    event_id = str(uuid.uuid4())
    return json.dumps({
        "transaction": {
            "client_ip": "203.0.113.5", "time_stamp": "Fri Dec  4 12:00:00 2026",
            "server_id": SENSOR, "client_port": 40000, "host_ip": "127.0.0.1",
            "host_port": 8080, "unique_id": event_id,
            "request": {"method": "GET", "http_version": 1.1, "uri": path,
                        "headers": {"Host": "shop.example", "User-Agent": "flood/1"}},
            "response": {"http_code": 404, "headers": {}},
            "producer": {"modsecurity": "ModSecurity v3.0.9 (Linux)"},
            "messages": [],
        },
        "webtrap": {"schema_version": 1, "event_id": event_id, "@timestamp": timestamp,
                    "sensor": {"id": SENSOR}},
    })


def get(port, target, headers=None):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", target, headers=headers or {})
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return response, body


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc status")


def flood_round(port):
    """Runs the clients for SECONDS and returns their counts and the /healthz latencies."""
    stop = time.monotonic() + SECONDS
    counts = {"ok": 0, "failed": []}
    lock = threading.Lock()

    def client(index):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        sent = index
        while time.monotonic() < stop:
            query = QUERIES[sent % len(QUERIES)]
            sent += 1
            try:
                connection.request("GET", "/dashboard/api/" + query, headers=AUTH)
                response = connection.getresponse()
                body = response.read()
            except (OSError, http.client.HTTPException) as error:
                with lock:
                    counts["failed"].append(f"{query}: {error!r}")
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                continue
            bad = response.status != 200
            if not bad and query.startswith("timeline"):
                bad = json.loads(body)["bucket_ms"] <= 0
            with lock:
                if bad:
                    counts["failed"].append(f"{query}: {response.status} {body[:200]!r}")
                else:
                    counts["ok"] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    latencies = []
    time.sleep(0.3)
    while time.monotonic() < stop - 0.3:
        started = time.monotonic()
        response, _ = get(port, "/healthz", AUTH)
        latencies.append(time.monotonic() - started)
        check(response.status == 200, f"/healthz answered {response.status} during the flood")
        time.sleep(0.1)
    for thread in threads:
        thread.join()
    return counts, latencies


def check_outline_and_head(port):
    response, body = get(port, "/dashboard/api/summary")
    check(response.status == 401, f"a query without the token got {response.status}")
    response, body = get(port, "/dashboard/world-outline.json")
    check(response.status == 200, f"world-outline.json got {response.status} without a token")
    check(response.getheader("Content-Type") == "application/json",
          f"world-outline.json has content type {response.getheader('Content-Type')}")
    check(len(json.loads(body)["countries"]) > 100, "world-outline.json lists too few countries")
    for other in ("/dashboard/world-outline.json/", "/dashboard//world-outline.json",
                  "/dashboard/api/../world-outline.json", "/dashboard/world-outline.json%00"):
        response, _ = get(port, other)
        check(response.status in (401, 404), f"{other} answered {response.status}")
    for target in ("/dashboard/world-outline.json", "/healthz", "/metrics"):
        check_head(port, target)


def check_head(port, target):
    """Sends HEAD and then GET for `target` pipelined on one connection.

    Python's http.client reads each response through a new buffer, so it
    would hide a body sent after a HEAD response. This reads the raw bytes.
    """
    auth = f"Authorization: Bearer {ADMIN_TOKEN}\r\n"
    request = (f"HEAD {target} HTTP/1.1\r\nHost: x\r\n{auth}\r\n"
               f"GET {target} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(request.encode())
        received = b""
        while chunk := connection.recv(65536):
            received += chunk
    head, _, rest = received.partition(b"\r\n\r\n")
    check(head.startswith(b"HTTP/1.1 200"), f"HEAD {target}: {head[:80]!r}")
    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    check(rest.startswith(b"HTTP/1.1 200"),
          f"HEAD {target} was followed by {rest[:60]!r}, not the GET response: a body?")
    get_head, _, get_body = rest.partition(b"\r\n\r\n")
    # /healthz and /metrics change between the two requests, so only the
    # outline's length must match exactly.
    check(length > 0, f"HEAD {target} has Content-Length {length}")
    if target.endswith(".json"):
        check(length == len(get_body), f"HEAD {target} length {length}, GET body {len(get_body)}")


def healthz_within(port, seconds):
    """Asks for /healthz on new connections until one gets 200.

    Returns the seconds that took, or None if none did within `seconds`.
    """
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=seconds)
            connection.request("GET", "/healthz", headers=AUTH)
            response = connection.getresponse()
            response.read()
            connection.close()
            if response.status == 200:
                return time.monotonic() - started
        except (OSError, http.client.HTTPException):
            time.sleep(0.05)
    return None


def closed_by_server(sock, seconds):
    """True if the server closes `sock` within `seconds` without sending anything."""
    sock.settimeout(seconds)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def metric(port, name):
    _, body = get(port, "/metrics", AUTH)
    for line in body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"/metrics has no {name}")


def check_admin_connection_limit(port):
    """Fills the admin listener with idle, then with half-sent connections."""
    idle = []
    for _ in range(ADMIN_CONNECTIONS):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("GET", "/healthz", headers=AUTH)
        response = connection.getresponse()
        response.read()
        check(response.status == 200, f"/healthz on an idle connection got {response.status}")
        idle.append(connection)
        time.sleep(0.02)
    took = healthz_within(port, 1.0)
    check(took is not None,
          f"/healthz got no answer within 1 s with {ADMIN_CONNECTIONS} idle admin connections")
    check(closed_by_server(idle[0].sock, 2.0),
          "the admin connection idle longest was not closed to make room")
    check(metric(port, "webtrap_collector_admin_connections_evicted_total") >= 1,
          "admin_connections_evicted_total did not count the eviction")

    half = []
    for _ in range(ADMIN_CONNECTIONS):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        half.append(sock)
        time.sleep(0.05)
    sent = time.monotonic()
    for connection in idle:
        connection.close()
    time.sleep(max(0.0, sent + ADMIN_HEAD_TIMEOUT - time.monotonic()))
    half_took = healthz_within(port, 1.0)
    check(half_took is not None,
          f"/healthz got no answer within 1 s once {ADMIN_CONNECTIONS} half-sent heads were "
          f"{ADMIN_HEAD_TIMEOUT:.0f} s old")
    check(all(closed_by_server(sock, 1.0) for sock in half),
          "connections with half a request head were not closed after the head timeout")
    for sock in half:
        sock.close()
    print(f"admin connection limit: /healthz {took * 1000:.1f} ms with "
          f"{ADMIN_CONNECTIONS} idle connections, {half_took * 1000:.1f} ms after "
          f"{ADMIN_CONNECTIONS} half-sent heads timed out")


def check_index_follows_inserts(ingest, admin, sensor_token, events):
    """Each insert wakes the index output, so the dashboard shows a record
    within a fraction of the runner's 1 s idle poll. Five tries, each after
    the runner went idle, so that an idle poll landing early by chance
    cannot pass for the wake-up every time."""
    lags = []
    for attempt in range(5):
        time.sleep(1.2)
        body = (record(f"2026-12-04T13:{attempt:02}:00Z", f"/lag/{attempt}") + "\n").encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{ingest}/v1/records", data=body, method="POST",
            headers={"Authorization": "Bearer " + sensor_token,
                     "Content-Type": "application/x-ndjson"})
        urllib.request.urlopen(request, timeout=30).read()
        stored_at = time.monotonic()
        events += 1
        while time.monotonic() - stored_at < 10:
            if json.loads(get(admin, "/dashboard/api/summary", AUTH)[1])["events"] == events:
                break
            time.sleep(0.01)
        lags.append(time.monotonic() - stored_at)
    check(max(lags) < 0.5, f"the dashboard showed new records after {lags} s, expected < 0.5 s")
    return lags


def main():
    with CollectorRun("webtrap-dashboard-flood-") as run:
        folder = run.folder
        config = folder / "collector.yaml"
        config.write_text(f"""listen: 127.0.0.1:0
admin: {{listen: 127.0.0.1:0, token: {ADMIN_TOKEN}}}
state_dir: {folder / "state"}
dashboard: {{enabled: true}}
""")
        sensor_token, _ = enrol_sensor(config, SENSOR)
        collector = run.start(config)
        ports = collector_ports(collector, folder)
        admin = ports["admin"]

        times = ["1969-12-31T23:00:00Z", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z"]
        times += [f"2026-12-04T12:{minute:02}:00Z" for minute in range(20)]
        body = "".join(record(t, f"/flood/{i}") + "\n" for i, t in enumerate(times)).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{ports['ingest']}/v1/records", data=body, method="POST",
            headers={"Authorization": "Bearer " + sensor_token,
                     "Content-Type": "application/x-ndjson"})
        stored = json.loads(urllib.request.urlopen(request, timeout=30).read())["stored"]
        check(stored == len(times), f"the collector stored {stored} of {len(times)} records")
        deadline = time.monotonic() + 60
        events = 0
        while time.monotonic() < deadline:
            events = json.loads(get(admin, "/dashboard/api/summary", AUTH)[1])["events"]
            if events == len(times):
                break
            time.sleep(0.2)
        check(events == len(times), f"the dashboard shows {events} of {len(times)} events")
        lags = check_index_follows_inserts(ports["ingest"], admin, sensor_token, events)

        check_outline_and_head(admin)
        check_admin_connection_limit(admin)
        before = rss_kib(collector.pid)
        worst = 0.0
        succeeded = 0
        for _ in range(3):
            counts, latencies = flood_round(admin)
            check(not counts["failed"], f"failed queries: {counts['failed'][:5]}")
            check(latencies, "no /healthz request was made during the flood")
            worst = max(worst, max(latencies))
            succeeded += counts["ok"]
        after = rss_kib(collector.pid)
        check(worst < 1.0, f"/healthz took {worst:.3f} s during the flood")
        check(after - before < 16 * 1024,
              f"resident memory grew from {before} to {after} KiB over three rounds")
        check(collector.poll() is None, "the collector exited during the flood")
        print(f"dashboard flood test: {succeeded} queries from {CLIENTS} clients in "
              f"3 x {SECONDS:.0f} s, /healthz at most {worst * 1000:.1f} ms, index lag at most "
              f"{max(lags) * 1000:.0f} ms, "
              f"RSS {before} -> {after} KiB; passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
