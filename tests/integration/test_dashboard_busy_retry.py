#!/usr/bin/python3
# Debian's interpreter, because python3-websocket is installed for it, not for
# a python3 that another tool put first on PATH.
"""The dashboard page retries a query that got 503 with Retry-After.

The collector responds to a dashboard query with 503 and Retry-After when
every query worker is busy and the queue is full. With the collector's limits
(16 admin connections, a queue of 32) only a test double reaches that
path, so this test serves the page from web/dashboard/ on a stand-in
server on loopback. Its API responds to each query with 503 first and then
with 200, or always with 503. Headless Chromium loads the page, and the test
checks that:

- each query is sent again after the Retry-After delay and the panels
  fill, while the status line shows that the collector is busy;
- a Retry-After of an hour is cut to the page's maximum wait, and the page
  gives up after its retry limit and shows the error.
"""

import json
import pathlib
import shutil
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from probe_harness import SOURCE_DIR, wait_for

CHART_JS = pathlib.Path("/usr/share/javascript/chart.js/chart.min.js")
# The page's limits, as web/dashboard/dashboard.js sets them.
PAGE_MAX_RETRIES = 3
PAGE_MAX_WAIT_S = 5

ANSWERS = {
    "summary": {"events": 42, "sources": 3, "first_ms": 0, "last_ms": 0},
    "timeline": {"bucket_ms": 3600000, "from_ms": 0, "points": []},
    "tags": {"kind": "oat", "items": []},
    "top": {"field": "source", "items": []},
    "geo": {"points": []},
    "health": {"now_ms": 0, "sensors": [], "outputs": []},
    "feed": {"events": []},
}


def check(condition, message):
    if not condition:
        raise AssertionError(message)


class StandIn:
    """The dashboard's page and a scripted API on 127.0.0.1, port 0."""

    def __init__(self):
        self.lock = threading.Lock()
        self.mode = "busy_once"  # or "always_busy"
        self.retry_after = "1"
        self.requests = {}  # target to the monotonic times it was requested
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def send(self, status, content_type, body, headers=()):
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                for name, value in headers:
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                path = self.path.split("?", 1)[0]
                files = {
                    "/dashboard/": ("text/html; charset=utf-8",
                                    SOURCE_DIR / "web/dashboard/index.html"),
                    "/dashboard/dashboard.js": ("text/javascript",
                                                SOURCE_DIR / "web/dashboard/dashboard.js"),
                    "/dashboard/dashboard.css": ("text/css",
                                                 SOURCE_DIR / "web/dashboard/dashboard.css"),
                    "/dashboard/chart.min.js": ("text/javascript", CHART_JS),
                }
                if path in files:
                    content_type, file = files[path]
                    self.send(200, content_type, file.read_bytes())
                    return
                if path == "/dashboard/world-outline.json":
                    self.send(200, "application/json", b'{"countries": []}')
                    return
                name = path.removeprefix("/dashboard/api/")
                if name not in ANSWERS:
                    self.send(404, "application/json", b'{"error": "not found"}')
                    return
                with stand_in.lock:
                    times = stand_in.requests.setdefault(self.path, [])
                    times.append(time.monotonic())
                    busy = stand_in.mode == "always_busy" or len(times) == 1
                    retry_after = stand_in.retry_after
                if busy:
                    self.send(503, "application/json",
                              b'{"error": "the dashboard is busy with other queries"}',
                              [("Retry-After", retry_after)])
                    return
                self.send(200, "application/json", json.dumps(ANSWERS[name]).encode())

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def reset(self, mode, retry_after):
        with self.lock:
            self.mode = mode
            self.retry_after = retry_after
            self.requests = {}

    def times(self, endpoint):
        """The request times of the first target that starts with /dashboard/api/ENDPOINT."""
        with self.lock:
            for target, times in self.requests.items():
                if target.startswith(f"/dashboard/api/{endpoint}?"):
                    return list(times)
        return []

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def status_text(browser):
    """The page's status line, '' until the page has loaded."""
    return browser.evaluate("(document.getElementById('status') || {}).textContent || ''")


def check_retry_after_busy(browser, stand_in):
    """Every query gets 503 once with Retry-After: 1 and 200 after it."""
    stand_in.reset("busy_once", "1")
    browser.command("Page.navigate", url=f"http://127.0.0.1:{stand_in.port}/dashboard/")
    busy = wait_for(lambda: "busy" in status_text(browser) and status_text(browser), 10,
                    "a busy status while the page waits")
    browser.wait_state("ready", 20)
    shown = browser.evaluate("document.getElementById('summary-events').textContent")
    check(shown == "42", f"summary shows {shown!r} after the retry, expected 42")
    for endpoint in ("summary", "timeline", "tags", "top", "geo", "health", "feed"):
        times = stand_in.times(endpoint)
        check(len(times) >= 2, f"{endpoint}: {len(times)} requests, expected a retry after 503")
        gap = times[1] - times[0]
        check(0.9 <= gap <= 3, f"{endpoint}: retried after {gap:.2f} s, expected Retry-After 1 s")
    final = status_text(browser)
    check("busy" not in final and "failed" not in final, f"status after the retry: {final!r}")
    return busy


def check_gives_up(browser, stand_in):
    """Every query gets 503 with Retry-After: 3600: capped waits, then an error."""
    stand_in.reset("always_busy", "3600")
    started = time.monotonic()
    browser.command("Page.navigate", url=f"http://127.0.0.1:{stand_in.port}/dashboard/?again")
    timeout = PAGE_MAX_RETRIES * PAGE_MAX_WAIT_S + 15
    browser.wait_state("error", timeout)
    elapsed = time.monotonic() - started
    # The queries run in parallel, so the last try of summary may arrive
    # just after another query gave up first.
    try:
        wait_for(lambda: len(stand_in.times("summary")) >= PAGE_MAX_RETRIES + 1, 3,
                 "the last try of summary")
    except TimeoutError:
        pass
    time.sleep(1)
    times = stand_in.times("summary")
    check(len(times) == PAGE_MAX_RETRIES + 1,
          f"summary was requested {len(times)} times, expected {PAGE_MAX_RETRIES + 1}")
    for first, second in zip(times, times[1:]):
        check(PAGE_MAX_WAIT_S - 0.5 <= second - first <= PAGE_MAX_WAIT_S + 2,
              f"waited {second - first:.2f} s for Retry-After: 3600, expected the page's "
              f"maximum of {PAGE_MAX_WAIT_S} s")
    error = status_text(browser)
    check("503" in error and "busy" in error, f"status after giving up: {error!r}")
    return elapsed, error


def main():
    from test_dashboard_browser import Browser, browser_missing, find_chromium

    missing = browser_missing()
    if missing:
        print(missing, file=sys.stderr)
        return 77
    chromium = find_chromium()
    if not CHART_JS.exists():
        print(f"{CHART_JS} not found; install the libjs-chart.js package", file=sys.stderr)
        return 77

    folder = pathlib.Path(tempfile.mkdtemp(prefix="webtrap-dashboard-busy-"))
    stand_in = StandIn()
    browser = None
    try:
        browser = Browser(chromium, folder)
        busy = check_retry_after_busy(browser, stand_in)
        elapsed, error = check_gives_up(browser, stand_in)
    finally:
        if browser is not None:
            browser.close()
        stand_in.close()
        shutil.rmtree(folder, ignore_errors=True)
    print(f"dashboard busy retry: status while waiting {busy!r}; gave up after {elapsed:.1f} s "
          f"with {error!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
