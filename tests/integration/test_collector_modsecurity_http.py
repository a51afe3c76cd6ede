#!/usr/bin/env python3
"""Real nginx with ModSecurity v3 and CRS reports to the collector over HTTP.

nginx with libnginx-mod-http-modsecurity (libmodsecurity 3.0.9) runs with
`SecAuditLogType HTTPS` and `SecAuditLog` pointing at the collector's
POST /v1/modsecurity. libmodsecurity 3.0.9 sends no credentials, and its
SecAuditLog URL accepts only the characters [0-9A-Za-z_/.*:-], so
`user:token@host` cannot be written there: the token travels as the last
path segment. The test sends benign and hostile requests to nginx, waits
for the records, and checks how they were decoded. It then posts one of
those records again with Basic and Bearer credentials (both duplicates)
and with wrong ones (401).

Exit status: 0 pass, 1 a check failed, 77 nginx or its ModSecurity module
is not installed.
"""

import base64
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request

from probe_harness import collector_ports, enrol_sensor, start_collector, wait_for

MODULE = pathlib.Path("/usr/lib/nginx/modules/ngx_http_modsecurity_module.so")
CRS_SETUP = pathlib.Path("/etc/modsecurity/crs/crs-setup.conf")
CRS_RULES = pathlib.Path("/usr/share/modsecurity-crs/rules")


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http(method, url, body=None, headers=None):
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def metric(admin_port, name):
    text = http("GET", f"http://127.0.0.1:{admin_port}/metrics")[1].decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def write_nginx(folder, port, collector_port, token):
    (folder / "html").mkdir()
    (folder / "html" / "index.html").write_text("ok\n")
    (folder / "modsec.conf").write_text(f"""SecRuleEngine DetectionOnly
SecRequestBodyAccess On
SecResponseBodyAccess Off
SecAuditEngine On
SecAuditLogParts ABIJDEFHZ
SecAuditLogFormat JSON
SecAuditLogType HTTPS
SecAuditLog http://127.0.0.1:{collector_port}/v1/modsecurity/{token}
Include {CRS_SETUP}
Include {CRS_RULES}/*.conf
""")
    (folder / "nginx.conf").write_text(f"""load_module {MODULE};
worker_processes 1;
pid {folder}/nginx.pid;
error_log {folder}/error.log info;
events {{ worker_connections 64; }}
http {{
  access_log {folder}/access.log;
  client_body_temp_path {folder}/client_body_temp;
  proxy_temp_path {folder}/proxy_temp;
  fastcgi_temp_path {folder}/fastcgi_temp;
  uwsgi_temp_path {folder}/uwsgi_temp;
  scgi_temp_path {folder}/scgi_temp;
  server {{
    listen 127.0.0.1:{port};
    root {folder}/html;
    modsecurity on;
    modsecurity_rules_file {folder}/modsec.conf;
    location / {{ try_files /index.html =404; }}
  }}
}}
""")


def main():
    if shutil.which("nginx") is None or not MODULE.exists() or not CRS_RULES.exists():
        print("nginx, libnginx-mod-http-modsecurity or modsecurity-crs is not installed",
              file=sys.stderr)
        return 77
    # nginx workers run as the unprivileged user `nobody` when the test runs
    # as root, so the folder must be readable by every user.
    folder = pathlib.Path(tempfile.mkdtemp(prefix="webtrap-modsec-http-", dir="/tmp"))
    os.chmod(folder, 0o755)
    collector = None
    nginx_started = False
    try:
        config = folder / "collector.yaml"
        output = folder / "events.ndjson"
        config.write_text(f"""listen: 127.0.0.1:0
admin: {{listen: 127.0.0.1:0}}
state_dir: {folder / "state"}
outputs:
  ndjson: {{path: {output}, flush_interval: 100ms}}
""")
        token, enrol_output = enrol_sensor(config, "nginx-edge", "--group", "dmz")
        check("/v1/modsecurity/" in enrol_output, "enrol prints no SecAuditLog line")

        collector = start_collector(config, folder)
        ports = collector_ports(collector, folder)

        nginx_port = free_port()
        write_nginx(folder, nginx_port, ports["ingest"], token)
        subprocess.run(["nginx", "-p", str(folder), "-c", str(folder / "nginx.conf")],
                       check=True, timeout=60)
        nginx_started = True
        wait_for(lambda: (folder / "nginx.pid").exists(), 30, "nginx pid file")

        base = f"http://127.0.0.1:{nginx_port}"
        requests = [
            ("GET", "/", None, {}),
            ("GET", "/index.php?id=1%27%20UNION%20SELECT%20password%20FROM%20users--", None, {}),
            ("GET", "/search?q=%3Cscript%3Ealert(document.cookie)%3C/script%3E", None, {}),
            ("POST", "/login", b"user=admin&pass=%27%20or%201%3D1--",
             {"Content-Type": "application/x-www-form-urlencoded"}),
            ("GET", "/download?file=../../../../etc/passwd", None, {"User-Agent": "sqlmap/1.7"}),
            # Test card numbers, which must reach no document in full.
            ("POST", "/checkout?cc=4111111111111111", b"card=5555+5555+5555+4444&cvv=123",
             {"Content-Type": "application/x-www-form-urlencoded"}),
        ]
        for method, path, body, headers in requests:
            http(method, base + path, body, headers)
        name = 'webtrap_collector_input_stored_total{input="modsecurity_http"}'
        wait_for(lambda: metric(ports["admin"], name) >= len(requests), 30,
                 f"{len(requests)} records from nginx")

        wait_for(lambda: output.exists() and len(output.read_text().splitlines()) >= len(requests),
                 30, "the NDJSON output")
        documents = [json.loads(line) for line in output.read_text().splitlines()]
        check(len(documents) == len(requests), f"{len(documents)} documents, expected {len(requests)}")
        for document in documents:
            check(document["observer"]["name"] == "nginx-edge", f"observer: {document['observer']}")
            check(document["webtrap"]["input"] == "modsecurity-http", f"input: {document['webtrap']}")
            check(document["webtrap"]["format"] == "modsec3", f"format: {document['webtrap']}")
            check(document["webtrap"]["sensor"]["group"] == "dmz", f"group: {document['webtrap']}")
            check(document["source"]["ip"] == "127.0.0.1", f"source: {document['source']}")
            check(document["event"]["original"].startswith('{"transaction"'), "event.original")
        by_path = {document["url"]["path"]: document for document in documents}
        checkout = by_path.get("/checkout")
        check(checkout is not None, f"no document for /checkout: {sorted(by_path)}")
        check(checkout["url"]["query"] == "cc=411111******1111", f"checkout url: {checkout['url']}")
        check("411111******1111" in checkout["event"]["original"], "event.original not masked")
        json.loads(checkout["event"]["original"])
        for text, where in ((output.read_text(), "the NDJSON output"),
                            ((folder / "collector.log").read_text(errors="replace"), "the log")):
            for number in ("4111111111111111", "5555555555554444"):
                check(number not in text.replace("+", ""), f"full card number {number} in {where}")
        sqli = by_path.get("/index.php")
        check(sqli is not None, f"no document for /index.php: {sorted(by_path)}")
        check(any(rule.startswith("942") for rule in sqli["rule"]["id"]),
              f"SQL injection rules: {sqli['rule']}")
        xss = by_path.get("/search")
        check(any(rule.startswith("941") for rule in xss["rule"]["id"]), f"XSS rules: {xss['rule']}")
        login = by_path.get("/login")
        check(login["http"]["request"]["method"] == "POST", f"login method: {login['http']}")

        # The same record again, with each kind of credential.
        original = sqli["event"]["original"].encode()
        url = f"http://127.0.0.1:{ports['ingest']}/v1/modsecurity"
        basic = base64.b64encode(f"nginx-edge:{token}".encode()).decode()
        status, body = http("POST", url, original, {"Authorization": f"Basic {basic}",
                                                    "Content-Type": "application/json"})
        check(status == 200 and json.loads(body)["duplicates"] == 1, f"Basic: {status} {body}")
        status, body = http("POST", url, original, {"Authorization": f"Bearer {token}"})
        check(status == 200 and json.loads(body)["duplicates"] == 1, f"Bearer: {status} {body}")
        wrong = base64.b64encode(b"nginx-edge:wrong").decode()
        status, _ = http("POST", url, original, {"Authorization": f"Basic {wrong}"})
        check(status == 401, f"wrong Basic password: {status}")
        status, _ = http("POST", url + "/" + "f" * 64, original)
        check(status == 401, f"wrong path token: {status}")
        status, _ = http("POST", url, original)
        check(status == 401, f"no credentials: {status}")
        status, _ = http("POST", url, b"", {"Authorization": f"Bearer {token}"})
        check(status == 400, f"empty body: {status}")
    except Exception:
        for name in ("collector.log", "error.log"):
            path = folder / name
            if path.exists():
                print(f"---- {name}\n" + path.read_text(errors="replace")[-4000:], file=sys.stderr)
        raise
    finally:
        if nginx_started and (folder / "nginx.pid").exists():
            pid = int((folder / "nginx.pid").read_text())
            os.kill(pid, signal.SIGQUIT)
            wait_for(lambda: not (folder / "nginx.pid").exists(), 20, "nginx to stop")
        if collector is not None and collector.poll() is None:
            collector.send_signal(signal.SIGTERM)
            collector.wait(timeout=30)
        if not os.environ.get("WEBTRAP_KEEP_TEST_DIRS"):
            shutil.rmtree(folder, ignore_errors=True)
    print("collector modsecurity_http: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
