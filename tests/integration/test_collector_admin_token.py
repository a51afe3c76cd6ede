#!/usr/bin/env python3
"""Wrong admin tokens are limited per client on every admin route.

One collector on 127.0.0.1 with admin.token, the dashboard on, a limit of 3
wrong tokens per client within a minute, and 127.0.0.9 as its trusted
proxy (admin.trusted_proxies, set through WEBTRAP__ADMIN__TRUSTED_PROXIES).
Every address in 127.0.0.0/8 reaches it, so the test plays several clients:

- guesses on /metrics from 127.0.0.1 get 401, then 429 with Retry-After and
  a body that names the reason. From then on /healthz, /v1/oat/verdicts and
  the dashboard's login get 429 from that address, also with the right
  token;
- the right token from 127.0.0.2 still gets 200 on /metrics and logs in to
  the dashboard, and /metrics counts the rejections by route;
- 127.0.0.3 is no trusted proxy, so made-up X-Forwarded-For addresses do not
  spread its guesses;
- through 127.0.0.9 the client named in X-Forwarded-For is blocked, while
  another client behind it and the proxy itself are not;
- with login_max_clients at 20, one wrong token from each of 30 more
  clients behind the proxy does not free the blocked client, and
  /metrics counts the clients forgotten while their failures counted;
- invalid admin.trusted_proxies values stop the collector at start with an
  error that names the key, the value and the fix.

Exit status: 0 pass, 1 a check failed.
"""

import http.client
import os
import subprocess
import sys

from probe_harness import BIN, CollectorRun, collector_ports

TOKEN = "admin-token-test-secret"
MAX_FAILURES = 3
WINDOW_S = 60
MAX_CLIENTS = 20
PROXY = "127.0.0.9"


def check(condition, message):
    if not condition:
        raise AssertionError(message)


class Admin:
    """Requests to the admin listener from chosen loopback addresses."""

    def __init__(self, port):
        self.port = port

    def request(self, method, target, source, token=None, forwarded_for=None, body=None):
        """Sends one request from `source` and returns (status, headers, body text)."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10,
                                                source_address=(source, 0))
        headers = {}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if forwarded_for is not None:
            headers["X-Forwarded-For"] = forwarded_for
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            connection.request(method, target, body=body, headers=headers)
            response = connection.getresponse()
            return response.status, response.headers, response.read().decode(errors="replace")
        finally:
            connection.close()

    def get(self, target, source, token=None, forwarded_for=None):
        return self.request("GET", target, source, token, forwarded_for)

    def login(self, source, token):
        return self.request("POST", "/dashboard/login", source, body=f"token={token}")

    def metric(self, series):
        """Returns the value of one sample of /metrics, read from an address no check blocks."""
        status, _, text = self.get("/metrics", "127.0.0.254", TOKEN)
        check(status == 200, f"/metrics with the right token: {status} {text[:200]}")
        for line in text.splitlines():
            if line.startswith(series + " "):
                return float(line.rsplit(" ", 1)[1])
        raise AssertionError(f"/metrics has no {series}")


def rejected(route, reason):
    return (f'webtrap_collector_admin_token_rejected_total{{route="{route}",'
            f'reason="{reason}"}}')


def check_guesses_blocked_on_every_route(admin):
    attacker = "127.0.0.1"
    for attempt in range(MAX_FAILURES):
        status, _, body = admin.get("/metrics", attacker, f"guess-{attempt}")
        check(status == 401, f"guess {attempt} on /metrics: expected 401, got {status} {body}")
    status, headers, body = admin.get("/metrics", attacker, "guess-next")
    check(status == 429, f"guess past the limit on /metrics: expected 429, got {status} {body}")
    retry_after = headers.get("Retry-After", "")
    check(retry_after.isdigit() and 0 < int(retry_after) <= WINDOW_S,
          f"Retry-After {retry_after!r} is not 1 to {WINDOW_S} s")
    check("too many wrong admin tokens" in body, f"the 429 body does not name the reason: {body}")

    for target in ("/metrics", "/healthz", "/v1/oat/verdicts"):
        status, _, body = admin.get(target, attacker, TOKEN)
        check(status == 429, f"right token on {target} from the blocked address: {status} {body}")
    status, _, body = admin.login(attacker, TOKEN)
    check(status == 429, f"dashboard login from the blocked address: {status} {body}")

    scraper = "127.0.0.2"
    status, _, body = admin.get("/metrics", scraper, TOKEN)
    check(status == 200, f"right token from another address on /metrics: {status} {body[:200]}")
    status, headers, body = admin.login(scraper, TOKEN)
    check(status == 204 and "webtrap_dashboard=" in headers.get("Set-Cookie", ""),
          f"dashboard login from another address: {status} {body}")

    check(admin.metric(rejected("/metrics", "wrong_token")) == MAX_FAILURES,
          "wrong tokens on /metrics are not counted")
    check(admin.metric(rejected("/metrics", "rate_limited")) == 2,
          "429s on /metrics are not counted")
    check(admin.metric(rejected("/dashboard/login", "rate_limited")) == 1,
          "the 429 of the dashboard login is not counted")
    check(admin.metric('webtrap_collector_dashboard_logins_rejected_total{reason="rate_limited"}')
          == 1, "the dashboard's own counter lost its 429")
    print("ok: guesses on /metrics block the address on every route, and only that address")


def check_forwarded_for_from_untrusted_peer(admin):
    attacker = "127.0.0.3"
    for attempt in range(MAX_FAILURES):
        status, _, body = admin.get("/metrics", attacker, "guess",
                                    forwarded_for=f"198.51.100.{attempt + 1}")
        check(status == 401, f"guess {attempt} with X-Forwarded-For: {status} {body}")
    status, _, body = admin.get("/metrics", attacker, TOKEN, forwarded_for="198.51.100.200")
    check(status == 429, f"an untrusted peer spread its guesses over X-Forwarded-For: {status}")
    print("ok: X-Forwarded-For from a peer that is no trusted proxy is ignored")


def check_forwarded_for_from_trusted_proxy(admin):
    client = "198.51.100.7"
    for attempt in range(MAX_FAILURES):
        status, _, body = admin.get("/metrics", PROXY, "guess", forwarded_for=client)
        check(status == 401, f"guess {attempt} through the proxy: {status} {body}")
    status, _, _ = admin.get("/metrics", PROXY, TOKEN, forwarded_for=client)
    check(status == 429, f"the client behind the proxy is not blocked: {status}")
    status, _, _ = admin.get("/metrics", PROXY, TOKEN, forwarded_for=f"{client}, {PROXY}")
    check(status == 429, f"a listed proxy right of the client was taken as the client: {status}")
    status, _, _ = admin.get("/metrics", PROXY, TOKEN, forwarded_for=f"{client}, 198.51.100.8")
    check(status == 200, f"a client that names the blocked address left of its own: {status}")
    status, _, _ = admin.get("/metrics", PROXY, TOKEN, forwarded_for="198.51.100.8")
    check(status == 200, f"another client behind the proxy is blocked: {status}")
    status, _, _ = admin.get("/metrics", PROXY, TOKEN)
    check(status == 200, f"the proxy itself is blocked: {status}")
    status, _, _ = admin.get("/metrics", PROXY, TOKEN, forwarded_for=f"{client}, unknown")
    check(status == 200, f"a header that is not an address did not count the proxy: {status}")
    print("ok: behind the trusted proxy, the X-Forwarded-For client is blocked, and only it")


def check_eviction_keeps_block(admin):
    blocked = "198.51.100.7"
    status, _, _ = admin.get("/metrics", PROXY, TOKEN, forwarded_for=blocked)
    check(status == 429, f"the client behind the proxy is no longer blocked: {status}")
    others = MAX_CLIENTS + 10
    for number in range(others):
        client = f"203.0.113.{number + 1}"
        status, _, body = admin.get("/metrics", PROXY, "guess", forwarded_for=client)
        check(status == 401, f"one wrong token from {client}: {status} {body}")
    status, _, _ = admin.get("/metrics", PROXY, TOKEN, forwarded_for=blocked)
    check(status == 429, f"{others} other clients with one wrong token each freed the blocked "
          f"client: {status}")
    evicted = admin.metric("webtrap_collector_admin_token_clients_evicted_total")
    check(evicted >= others - MAX_CLIENTS, f"clients forgotten while they counted: {evicted}, "
          f"expected at least {others - MAX_CLIENTS}")
    print("ok: a blocked client stays blocked while other clients fill the limit's table")


def check_config_errors(run):
    cases = [
        ("[10.0.0.0/33]", "invalid entry \"10.0.0.0/33\"", "from 1 to 32"),
        ("[10.0.0.1/8]", "invalid entry \"10.0.0.1/8\"", "write the network as 10.0.0.0/8"),
        ("[proxy.example]", "invalid entry \"proxy.example\"", "not an IPv4 or IPv6 address"),
        ("[0.0.0.0/0]", "invalid entry \"0.0.0.0/0\"", "list only the addresses"),
        ("10.0.0.5", "expected a list, found \"10.0.0.5\"",
         "`admin.trusted_proxies: [10.0.0.5]`"),
    ]
    for value, problem, fix in cases:
        config = run.folder / "bad.yaml"
        config.write_text(f"listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:0\n"
                          f"  trusted_proxies: {value}\nstate_dir: {run.folder / 'bad-state'}\n")
        result = subprocess.run([BIN, "collector", "--config", str(config)],
                                capture_output=True, text=True, timeout=60)
        output = result.stdout + result.stderr
        check(result.returncode != 0, f"admin.trusted_proxies: {value} was accepted")
        for part in ("admin.trusted_proxies", problem, fix):
            check(part in output, f"the error for {value} lacks {part!r}: {output.strip()}")
    print("ok: invalid admin.trusted_proxies values stop the collector with the fix")


def main():
    with CollectorRun("webtrap-admin-token-") as run:
        config = run.folder / "collector.yaml"
        config.write_text(f"""listen: 127.0.0.1:0
admin:
  listen: 127.0.0.1:0
  token: {TOKEN}
state_dir: {run.folder / 'state'}
dashboard:
  enabled: true
  login_max_failures: {MAX_FAILURES}
  login_window: {WINDOW_S}s
  login_max_clients: {MAX_CLIENTS}
""")
        os.environ["WEBTRAP__ADMIN__TRUSTED_PROXIES"] = f"[{PROXY}]"
        try:
            collector = run.start(config)
        finally:
            del os.environ["WEBTRAP__ADMIN__TRUSTED_PROXIES"]
        admin = Admin(collector_ports(collector, run.folder)["admin"])
        check_guesses_blocked_on_every_route(admin)
        check_forwarded_for_from_untrusted_peer(admin)
        check_forwarded_for_from_trusted_proxy(admin)
        check_eviction_keeps_block(admin)
        log = (run.folder / "collector.log").read_text(errors="replace")
        check(f"trusted proxies: {PROXY}/32" in log, "the start log does not list the proxy")
        check("wrong admin token from 127.0.0.1 on /metrics" in log,
              "the first wrong token is not logged")
        check_config_errors(run)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except AssertionError as error:
        print(f"FAIL: {error}", file=sys.stderr)
        sys.exit(1)
