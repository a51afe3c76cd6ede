#!/usr/bin/python3
# Debian's interpreter, because python3-websocket is installed for it, not for
# a python3 that another tool put first on PATH.
"""The built-in dashboard in headless Chromium, against a collector fed by a probe.

A probe on loopback gets replayed attack requests: SQL injection with
sqlmap's user agent, a bait path, and a stored-XSS payload in the path, the
user agent and a header. It ships its records to a collector that serves
the dashboard. Chromium, driven through the DevTools protocol
(python3-websocket), logs in with the admin token and checks that:

- the login page shows the login form alone: the panels, the header's
  filters and the log out button are hidden until the login, and hidden
  again after a log out and after a 401 from an ended session;
- the panels show the counts of the records the probe wrote;
- a filter changes the counts;
- the detail view shows a whole record;
- the map draws the world outline: land pixels are painted, ocean pixels
  are not;
- the payload is shown as text and never runs (no marker set, no element
  made from it);
- records dated 1970 and 2100 from a second sensor stay off the default
  timeline, which notes this and links to ranges that show them, and the
  sensor table marks the 2100 record as ahead of the collector's clock.

Screenshots of each view go to WEBTRAP_SCREENSHOT_DIR when it is set
(docs/dashboard holds the committed ones), else to the test's folder.
Chromium is started with a proxy on a closed loopback port and a host
resolver that finds no name, so it cannot reach any other address.
"""

import base64
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import uuid

from probe_harness import (BIN, CollectorRun, Probe, collector_ports, enrol_sensor, send_raw,
                           wait_for)

ADMIN_TOKEN = "dashboard-admin-token-0123456789abcdef"
SENSOR = "dash-probe"
# A second sensor whose records are dated far back and far ahead.
SKEWED_SENSOR = "skewed-clock"
SKEWED_TIMES = {"past": "1970-01-02T00:00:00Z", "ahead": "2100-01-01T00:00:00Z"}
# Controls that a visitor without a session must not see.
SIGNED_IN_ONLY = ("panels", "filters", "logout")
XSS_PATH = '/q<script>window.__xss=1</script>"><img/src=x/onerror=window.__xss=2>'
XSS_AGENT = '"><img src=x onerror="window.__xss=3"><script>window.__xss=4</script>'
XSS_HEADER = '<script>window.__xss=5</script>'


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def find_chromium():
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return None


def browser_missing():
    """Returns why Chromium cannot be driven here, or None when it can."""
    if find_chromium() is None:
        return "chromium not found; install Debian's chromium package"
    try:
        import websocket  # noqa: F401
    except ImportError:
        return "python3-websocket not installed; it drives Chromium"
    return None


class Browser:
    """Headless Chromium with one page, driven through the DevTools protocol."""

    def __init__(self, chromium, folder):
        import websocket  # python3-websocket

        self.profile = folder / "chromium-profile"
        self.log = open(folder / "chromium.log", "wb")
        self.process = subprocess.Popen([
            chromium, "--headless=new", "--no-sandbox", "--disable-gpu",
            "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
            f"--user-data-dir={self.profile}", "--no-first-run", "--no-default-browser-check",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-default-apps", "--disable-extensions", "--metrics-recording-only",
            "--proxy-server=http://127.0.0.1:9",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            "--window-size=1400,1000", "about:blank",
        ], stdout=self.log, stderr=subprocess.STDOUT)
        port_file = self.profile / "DevToolsActivePort"
        wait_for(lambda: port_file.exists() and port_file.read_text().strip(), 60,
                 "Chromium's DevToolsActivePort file")
        port = int(port_file.read_text().splitlines()[0])
        targets = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list",
                                                    timeout=10).read())
        page = next(target for target in targets if target["type"] == "page")
        self.socket = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=30,
                                                  suppress_origin=True)
        self.next_id = 0
        self.command("Page.enable")
        self.command("Runtime.enable")

    def command(self, method, **params):
        self.next_id += 1
        request_id = self.next_id
        self.socket.send(json.dumps({"id": request_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv())
            if message.get("id") == request_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def evaluate(self, expression):
        result = self.command("Runtime.evaluate", expression=expression, returnByValue=True,
                              awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_state(self, state, timeout=30):
        return wait_for(lambda: self.evaluate("document.body && document.body.dataset.state")
                        == state, timeout, f"page state {state}")

    def screenshot(self, path):
        height = self.evaluate("document.documentElement.scrollHeight")
        self.command("Emulation.setDeviceMetricsOverride", width=1400,
                     height=min(int(height), 4000), deviceScaleFactor=1, mobile=False)
        data = self.command("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        path.write_bytes(base64.b64decode(data["data"]))
        self.command("Emulation.clearDeviceMetricsOverride")

    def close(self):
        try:
            self.socket.close()
        finally:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
            self.log.close()


# Places well inside a land mass or an ocean of Natural Earth's 1:110m
# countries, off the map's 30-degree grid lines. The test's records have no
# GeoIP location, so no dot covers them.
LAND_POINTS = [("Brazil", -52, -10), ("Siberia", 100, 62), ("Australia", 134, -25),
               ("Sahara", 10, 22), ("Canada", -105, 58)]
OCEAN_POINTS = [("South Pacific", -130, -40), ("Indian Ocean", 75, -25),
                ("North Atlantic", -40, 35), ("North Pacific", -160, 35)]


def map_alpha(browser, lon, lat):
    """Return the alpha of the map canvas pixel at lon, lat (0 where nothing is drawn)."""
    return browser.evaluate(f"""(() => {{
      const chart = Chart.getChart('chart-map');
      const ratio = chart.currentDevicePixelRatio;
      const x = Math.round(chart.scales.x.getPixelForValue({lon}) * ratio);
      const y = Math.round(chart.scales.y.getPixelForValue({lat}) * ratio);
      return chart.ctx.getImageData(x, y, 1, 1).data[3];
    }})()""")


def check_world_outline(admin, browser):
    """Check the outline asset and that the map canvas shows land, not sea."""
    response = urllib.request.urlopen(
        f"http://127.0.0.1:{admin}/dashboard/world-outline.json", timeout=10)
    check(response.headers["Content-Type"] == "application/json",
          f"world-outline.json Content-Type: {response.headers['Content-Type']}")
    check(response.headers["X-Content-Type-Options"] == "nosniff",
          "nosniff missing on world-outline.json")
    body = response.read()
    check(len(body) < 300_000, f"world-outline.json is {len(body)} bytes, expected < 300 KB")
    outline = json.loads(body)
    countries = outline["countries"]
    check(len(countries) > 150, f"world-outline.json has {len(countries)} countries")
    for country in countries:
        for ring in country:
            check(len(ring) >= 6 and len(ring) % 2 == 0, f"ring with {len(ring)} numbers")
            check(all(-180 <= lon <= 180 for lon in ring[0::2]), "longitude out of range")
            check(all(-90 <= lat <= 90 for lat in ring[1::2]), "latitude out of range")
    note = browser.evaluate("document.getElementById('map-note').textContent")
    check("outline failed" not in note, f"map note: {note}")
    for name, lon, lat in LAND_POINTS:
        alpha = map_alpha(browser, lon, lat)
        check(alpha > 0, f"map pixel at {name} ({lon}, {lat}) is empty; the land is not drawn")
    for name, lon, lat in OCEAN_POINTS:
        alpha = map_alpha(browser, lon, lat)
        check(alpha == 0, f"map pixel at {name} ({lon}, {lat}) has alpha {alpha}; "
                          "the ocean should stay empty")


def shown(browser, element_id):
    """Whether the element is rendered: displayed, not invisible, with a box."""
    return browser.evaluate(f"""(() => {{
      const element = document.getElementById({json.dumps(element_id)});
      const style = getComputedStyle(element);
      return style.display !== 'none' && style.visibility !== 'hidden' &&
             element.getClientRects().length > 0;
    }})()""")


def check_signed_in_view(browser, signed_in, when):
    """Check that the panels, filters and log out button show only with a session."""
    for element_id in SIGNED_IN_ONLY:
        check(shown(browser, element_id) == signed_in,
              f"{when}: #{element_id} is {'hidden' if signed_in else 'shown'}")
    check(shown(browser, "login") != signed_in,
          f"{when}: the login form is {'shown' if signed_in else 'hidden'}")


def reload_panels(browser, hash_text, expected_state):
    """Set the URL fragment, which reloads every panel, and wait for `expected_state`."""
    browser.evaluate(f"""
      document.body.dataset.state = 'reloading';
      location.hash = {json.dumps(hash_text)};
    """)
    browser.wait_state(expected_state)


def log_in(browser):
    browser.evaluate(f"""
      document.getElementById('login-token').value = {json.dumps(ADMIN_TOKEN)};
      document.getElementById('login-form').requestSubmit();
    """)
    browser.wait_state("ready")


def skewed_record(timestamp, path):
    """A probe record of SKEWED_SENSOR dated `timestamp` (ISO 8601)."""
    event_id = str(uuid.uuid4())
    return json.dumps({
        "transaction": {
            "client_ip": "203.0.113.5", "time_stamp": "Fri Dec  4 12:00:00 2026",
            "server_id": SKEWED_SENSOR, "client_port": 40000, "host_ip": "127.0.0.1",
            "host_port": 8080, "unique_id": event_id,
            "request": {"method": "GET", "http_version": 1.1, "uri": path,
                        "headers": {"Host": "shop.example", "User-Agent": "skewed/1"}},
            "response": {"http_code": 404, "headers": {}},
            "producer": {"modsecurity": "ModSecurity v3.0.9 (Linux)"},
            "messages": [],
        },
        "webtrap": {"schema_version": 1, "event_id": event_id, "@timestamp": timestamp,
                    "sensor": {"id": SKEWED_SENSOR}},
    })


def check_skewed_dates(browser, admin, ingest, token, total):
    """Send SKEWED_TIMES records and check the timeline note and the sensor table."""
    body = "".join(skewed_record(timestamp, f"/skewed/{name}") + "\n"
                   for name, timestamp in SKEWED_TIMES.items()).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{ingest}/v1/records", data=body, method="POST",
        headers={"Authorization": "Bearer " + token, "Content-Type": "application/x-ndjson"})
    stored = json.loads(urllib.request.urlopen(request, timeout=30).read())["stored"]
    check(stored == len(SKEWED_TIMES), f"the collector stored {stored} of the skewed records")
    expected = total + len(SKEWED_TIMES)
    wait_for(lambda: api(admin, "summary")["events"] == expected, 60,
             f"{expected} events in the dashboard index")
    timeline = api(admin, "timeline?limit=120")
    check(timeline["earlier_events"] == 1 and timeline["later_events"] == 1,
          f"timeline without a range: {timeline}")

    reload_panels(browser, "", "ready")
    shown_total = int(browser.evaluate("document.getElementById('summary-events').textContent"))
    check(shown_total == expected, f"summary shows {shown_total} events, expected {expected}")
    notes = browser.evaluate("""[...document.querySelectorAll('#timeline-note .left-out')].map(
      (line) => [line.textContent, line.querySelector('a').getAttribute('href')])""")
    check(len(notes) == 2, f"timeline notes: {notes}")
    earlier, later = notes
    check(earlier[0].startswith("1 event dated before ") and "from=86400000" in earlier[1],
          f"the note on the record dated 1970: {earlier}")
    check(later[0].startswith("1 event dated after ") and "to=4102444800001" in later[1],
          f"the note on the record dated 2100: {later}")
    newest = browser.evaluate(f"""[...document.querySelectorAll('#table-sensors tbody tr')]
      .find((row) => row.cells[0].textContent === {json.dumps(SKEWED_SENSOR)})
      .cells[2].textContent""")
    check(newest.startswith("2100-01-01 00:00:00Z (ahead of the collector's clock by "),
          f"newest event of {SKEWED_SENSOR}: {newest}")

    # The link under the timeline puts the record dated 1970 on it.
    browser.evaluate("document.querySelector('#timeline-note .left-out a').click()")
    wait_for(lambda: "from=86400000" in browser.evaluate("location.hash"), 10, "hash with from")
    browser.wait_state("ready")
    check(api(admin, "timeline?limit=120&from=86400000")["earlier_events"] == 0,
          "a timeline with a start counts earlier events")
    reload_panels(browser, "", "ready")


def check_log_out(browser):
    """Log out with the button, log in again, then end the session behind the page's back."""
    browser.evaluate("document.getElementById('logout').click()")
    browser.wait_state("login")
    check_signed_in_view(browser, False, "after a log out")
    log_in(browser)
    check_signed_in_view(browser, True, "after a second login")
    # Another tab logs out: the page's next query gets 401.
    browser.evaluate("fetch('/dashboard/logout', {method: 'POST', credentials: 'same-origin'})"
                     ".then((response) => response.status)")
    reload_panels(browser, "sensor=" + SENSOR, "login")
    check_signed_in_view(browser, False, "after a 401")


def table_counts(browser, table_id):
    """The rows of a two-column count table as {value: count}."""
    return browser.evaluate(f"""
      Object.fromEntries([...document.querySelectorAll('#{table_id} tbody tr')].map(
        (row) => [row.cells[0].textContent, Number(row.cells[row.cells.length - 1].textContent)]))
    """)


def api(admin_port, endpoint):
    request = urllib.request.Request(f"http://127.0.0.1:{admin_port}/dashboard/api/{endpoint}",
                                     headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    return json.loads(urllib.request.urlopen(request, timeout=10).read())


def replay_attacks(probe):
    """Sends the attack requests to the probe and returns how many were sent."""
    requests = []
    for i in range(6):
        requests.append(
            f"GET /products.php?id={i}'%20UNION%20SELECT%20username,password%20FROM%20users--"
            f" HTTP/1.1\r\nHost: shop.example\r\nUser-Agent: sqlmap/1.7.2#stable\r\n"
            "Connection: close\r\n\r\n")
    for _ in range(3):
        requests.append("GET /.env HTTP/1.1\r\nHost: shop.example\r\n"
                        "User-Agent: python-requests/2.31\r\nConnection: close\r\n\r\n")
    for _ in range(2):
        requests.append("GET /admin-old/ HTTP/1.1\r\nHost: shop.example\r\n"
                        "User-Agent: gobuster/3.5\r\nConnection: close\r\n\r\n")
    requests.append(f"GET {XSS_PATH} HTTP/1.1\r\nHost: shop.example\r\nUser-Agent: {XSS_AGENT}\r\n"
                    f"X-Note: {XSS_HEADER}\r\nConnection: close\r\n\r\n")
    for request in requests:
        send_raw(probe.http_port, request.encode())
    return len(requests)


def main():
    missing = browser_missing()
    if missing:
        print(missing, file=sys.stderr)
        return 77
    chromium = find_chromium()

    with CollectorRun("webtrap-dashboard-") as run:
        folder = run.folder
        shots = pathlib.Path(os.environ.get("WEBTRAP_SCREENSHOT_DIR", folder / "screenshots"))
        shots.mkdir(parents=True, exist_ok=True)
        config = folder / "collector.yaml"
        config.write_text(f"""listen: 127.0.0.1:0
admin: {{listen: 127.0.0.1:0, token: {ADMIN_TOKEN}}}
state_dir: {folder / "state"}
dashboard: {{enabled: true}}
""")
        sensor_token, _ = enrol_sensor(config, SENSOR)
        skewed_token, _ = enrol_sensor(config, SKEWED_SENSOR)
        collector = run.start(config)
        ports = collector_ports(collector, folder)
        admin = ports["admin"]

        probe = Probe(f"""sensor:
  id: {SENSOR}
shipper:
  url: http://127.0.0.1:{ports["ingest"]}
  token: {sensor_token}
  interval: 100ms
  retry_initial: 100ms
""")
        browser = None
        try:
            sent = replay_attacks(probe)
            records = probe.wait_records(sent)
            total = len(records)
            check(total == sent, f"the probe wrote {total} records for {sent} requests")
            wait_for(lambda: api(admin, "summary")["events"] == total, 60,
                     f"{total} events in the dashboard index")

            # Without a session or token the data endpoints are closed.
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{admin}/dashboard/api/summary",
                                       timeout=10)
                raise AssertionError("/dashboard/api/summary answered without a token")
            except urllib.error.HTTPError as error:
                check(error.code == 401, f"expected 401 without a token, got {error.code}")
            page = urllib.request.urlopen(f"http://127.0.0.1:{admin}/dashboard/", timeout=10)
            policy = page.headers["Content-Security-Policy"]
            check(policy and "script-src 'self'" in policy and "unsafe-inline" not in policy,
                  f"Content-Security-Policy: {policy}")
            check(page.headers["X-Content-Type-Options"] == "nosniff", "nosniff missing")

            browser = Browser(chromium, folder)
            base = f"http://127.0.0.1:{admin}/dashboard/"
            browser.command("Page.navigate", url=base)
            browser.wait_state("login")
            panels_display = "getComputedStyle(document.getElementById('panels')).display"
            check(browser.evaluate(panels_display) == "none",
                  "the panels show under the login form before a login")
            check_signed_in_view(browser, False, "before a login")
            browser.screenshot(shots / "login.png")
            log_in(browser)
            check(browser.evaluate(panels_display) == "grid", "the panels are hidden after login")
            check_signed_in_view(browser, True, "after the login")
            check(browser.evaluate("document.cookie") == "",
                  "the session cookie is readable from script; it must be HttpOnly")

            # Overview: the panels match the records the probe wrote.
            shown_total = int(browser.evaluate(
                "document.getElementById('summary-events').textContent"))
            check(shown_total == total, f"summary shows {shown_total} events, expected {total}")
            paths = table_counts(browser, "table-paths")
            check(paths.get("/.env") == 3, f"top paths: {paths}")
            check(paths.get(XSS_PATH) == 1, f"top paths lack the payload as text: {paths}")
            agents = table_counts(browser, "table-agents")
            check(agents.get("sqlmap/1.7.2#stable") == 6, f"top user agents: {agents}")
            check(agents.get(XSS_AGENT) == 1, f"top user agents lack the payload: {agents}")
            sources = table_counts(browser, "table-sources")
            check(sources.get("127.0.0.1") == total, f"top sources: {sources}")
            oat_api = {item["value"]: item["count"] for item in api(admin, "tags?kind=oat")["items"]}
            oat_shown = table_counts(browser, "table-oat")
            check(oat_shown == oat_api and oat_api, f"OAT table {oat_shown} != API {oat_api}")
            oat_in_records = {}
            for record in records:
                for tag in record.get("webtrap", {}).get("oat", []):
                    oat_in_records[tag["id"]] = oat_in_records.get(tag["id"], 0) + 1
            for oat_id, count in oat_in_records.items():
                check(oat_shown.get(oat_id, 0) >= count,
                      f"{oat_id}: {oat_shown.get(oat_id)} shown, {count} in the probe records")
            baits = table_counts(browser, "table-bait")
            baits_in_records = {}
            for record in records:
                for bait in {hit["kind"] for hit in record.get("webtrap", {}).get("baits", [])}:
                    baits_in_records[bait] = baits_in_records.get(bait, 0) + 1
            check(baits_in_records.get("robots_trap", 0) >= 2,
                  f"the probe recorded no robots_trap hits: {baits_in_records}")
            check(baits == baits_in_records,
                  f"bait table {baits}, bait hits in the probe records {baits_in_records}")
            crs = table_counts(browser, "table-crs")
            check(crs == {item["value"]: item["count"]
                          for item in api(admin, "tags?kind=crs")["items"]},
                  f"CRS table {crs}")
            sensors = browser.evaluate(
                "[...document.querySelectorAll('#table-sensors tbody tr')].map("
                "(row) => [row.cells[0].textContent, Number(row.cells[1].textContent)])")
            check([SENSOR, total] in sensors, f"sensor health rows: {sensors}")
            feed_rows = browser.evaluate(
                "document.querySelectorAll('#table-feed tbody tr').length")
            check(feed_rows == total, f"live feed shows {feed_rows} rows, expected {total}")
            check_world_outline(admin, browser)
            browser.screenshot(shots / "overview.png")

            # A filter changes the counts: the most frequent OAT id, then an unknown sensor.
            first_oat = max(oat_api, key=oat_api.get)
            browser.evaluate(f"""
              document.getElementById('filter-oat').value = {json.dumps(first_oat)};
              document.getElementById('filters').requestSubmit();
            """)
            wait_for(lambda: browser.evaluate("location.hash").find("oat=") >= 0, 10, "hash")
            browser.wait_state("ready")
            filtered = int(browser.evaluate("document.getElementById('summary-events').textContent"))
            check(filtered == oat_api[first_oat],
                  f"with oat={first_oat} the summary shows {filtered}, expected {oat_api[first_oat]}")
            browser.screenshot(shots / "filtered.png")
            browser.evaluate("""
              document.getElementById('filter-oat').value = '';
              document.getElementById('filter-sensor').value = 'no-such-sensor';
              document.getElementById('filters').requestSubmit();
            """)
            wait_for(lambda: "no-such-sensor" in browser.evaluate("location.hash"), 10, "hash")
            browser.wait_state("ready")
            empty = int(browser.evaluate("document.getElementById('summary-events').textContent"))
            check(empty == 0, f"an unknown sensor shows {empty} events")
            browser.evaluate("document.getElementById('filter-clear').click()")
            wait_for(lambda: browser.evaluate("location.hash") == "", 10, "cleared hash")
            browser.wait_state("ready")

            # Detail view of the payload's record, opened from the live feed.
            xss_id = next(record["webtrap"]["event_id"] for record in records
                          if "onerror" in json.dumps(record))
            browser.evaluate(f"""
              [...document.querySelectorAll('#table-feed tbody tr')]
                .find((row) => row.dataset.eventId === {json.dumps(xss_id)}).click();
            """)
            wait_for(lambda: browser.evaluate(
                "!document.getElementById('panel-detail').hidden && "
                "document.getElementById('detail-json').textContent.length > 0"), 20,
                "the detail view")
            detail = json.loads(browser.evaluate(
                "document.getElementById('detail-json').textContent"))
            check(detail.get("event", {}).get("id") == xss_id, f"detail shows {detail.get('event')}")
            check(detail.get("url", {}).get("path") == XSS_PATH,
                  f"detail url.path: {detail.get('url')}")
            detail_text = browser.evaluate("document.getElementById('detail-json').textContent")
            check(XSS_HEADER in detail_text, "the header payload is missing from the detail view")
            browser.screenshot(shots / "detail.png")

            # The payload was shown as text: no marker, no element made from it.
            check(browser.evaluate("typeof window.__xss") == "undefined",
                  f"the payload ran: window.__xss = {browser.evaluate('window.__xss')}")
            check(browser.evaluate("document.querySelectorAll('img').length") == 0,
                  "an <img> element exists; payload text was parsed as HTML")
            check(browser.evaluate("document.querySelectorAll('main script').length") == 0,
                  "a <script> element exists in the panels")
            feed_text = browser.evaluate("document.getElementById('table-feed').textContent")
            check(XSS_PATH in feed_text and XSS_AGENT in feed_text,
                  "the live feed does not show the payload as text")

            check_skewed_dates(browser, admin, ports["ingest"], skewed_token, total)
            check_log_out(browser)
        finally:
            if browser is not None:
                browser.close()
            probe.stop()
    print(f"dashboard browser test: {total} records, login view, panels, map outline, filters, "
          "detail, XSS, skewed dates and log out checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
