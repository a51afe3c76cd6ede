#!/usr/bin/env python3
"""Decodes real ModSecurity audit records captured on loopback in this run.

Starts nginx with libnginx-mod-http-modsecurity (libmodsecurity v3,
SecAuditLogFormat JSON, SecAuditLogType Serial) and Apache with
libapache2-mod-security2 (SecAuditLogFormat JSON), both with Debian's CRS in
DetectionOnly mode and their own configuration in a temporary folder, and
a webtrap probe. It sends the same requests to each: an SQL injection with a repeated header
name, a query with a byte that is not UTF-8, a form POST with a body, and a
benign page. Then it decodes the audit logs with `webtrap decode` and checks
rule ids, methods, URIs, repeated headers, client ports, bodies, time stamps
and event ids.

nginx runs with TZ=America/New_York, so libmodsecurity writes its zoneless
time stamps in that zone, and the test checks that --timezone converts them.

With --save-fixtures DIR, the captured SQL injection and non-UTF-8 records
are also written to DIR (tests/fixtures/modsecurity contains the ones in git).

Exits 77 (skipped) when nginx, its ModSecurity module, apache2 or
mod_security2 is not installed.
"""

import argparse
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
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import probe_harness  # noqa: E402

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
NGINX_MODULE = pathlib.Path("/usr/lib/nginx/modules/ngx_http_modsecurity_module.so")
APACHE = "/usr/sbin/apache2"
APACHE_MODULES = pathlib.Path("/usr/lib/apache2/modules")
CRS_SETUP = pathlib.Path("/etc/modsecurity/crs/crs-setup.conf")
CRS_RULES = pathlib.Path("/usr/share/modsecurity-crs/rules")
UNICODE_MAPPING = [pathlib.Path("/etc/nginx/unicode.mapping"),
                   pathlib.Path("/etc/modsecurity/unicode.mapping"),
                   pathlib.Path("/usr/share/nginx/docs/modsecurity/unicode.mapping")]
NGINX_ZONE = "America/New_York"
START_TIMEOUT_S = 30

# Directives shared by both servers: detection only, bodies inspected, and a
# JSON audit record for every request with parts A, B, C (request body), F,
# H and Z.
MODSEC_COMMON = """SecRuleEngine DetectionOnly
SecRequestBodyAccess On
SecResponseBodyAccess Off
SecTmpDir {root}/modsec-tmp
SecDataDir {root}/modsec-tmp
SecUnicodeMapFile {unicode} 20127
SecAuditEngine On
SecAuditLogParts ABCFHZ
SecAuditLogFormat JSON
SecAuditLogType Serial
SecAuditLog {root}/audit.log
Include {crs_setup}
Include {crs_rules}/*.conf
"""

NGINX_CONF = """load_module {module};
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
daemon off;
events {{ worker_connections 64; }}
http {{
  access_log off;
  client_body_temp_path {root}/client_body_temp;
  proxy_temp_path {root}/proxy_temp;
  fastcgi_temp_path {root}/fastcgi_temp;
  uwsgi_temp_path {root}/uwsgi_temp;
  scgi_temp_path {root}/scgi_temp;
  server {{
    listen 127.0.0.1:{port};
    root {root}/www;
    modsecurity on;
    modsecurity_rules_file {root}/modsec.conf;
    location / {{ try_files /index.html =404; }}
  }}
}}
"""

# Only the modules this test needs are loaded, from this file alone, so the
# system's /etc/apache2 (where security2 may be enabled) plays no part.
APACHE_CONF = """ServerRoot {root}
PidFile {root}/apache2.pid
ErrorLog {root}/error.log
LogLevel warn
Listen 127.0.0.1:{port}
ServerName 127.0.0.1
User nobody
Group nogroup
LoadModule mpm_prefork_module {modules}/mod_mpm_prefork.so
LoadModule authz_core_module {modules}/mod_authz_core.so
LoadModule unique_id_module {modules}/mod_unique_id.so
LoadModule security2_module {modules}/mod_security2.so
LoadModule dir_module {modules}/mod_dir.so
LoadModule mime_module {modules}/mod_mime.so
TypesConfig /etc/mime.types
StartServers 1
MinSpareServers 1
MaxSpareServers 2
DocumentRoot {root}/www
<Directory {root}/www/>
  Require all granted
</Directory>
{modsec}
"""


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def unicode_mapping():
    for path in UNICODE_MAPPING:
        if path.exists():
            return path
    return None


def prepare_root(prefix):
    root = pathlib.Path(tempfile.mkdtemp(prefix=prefix))
    (root / "www").mkdir()
    (root / "www" / "index.html").write_text("ok\n")
    (root / "modsec-tmp").mkdir()
    os.chmod(root / "modsec-tmp", 0o1777)
    subprocess.run(["chmod", "-R", "a+rX", str(root)], check=True)
    return root


def modsec_conf(root):
    return MODSEC_COMMON.format(root=root, unicode=unicode_mapping(), crs_setup=CRS_SETUP,
                                crs_rules=CRS_RULES)


class Server:
    """nginx or Apache in the foreground as our child, stopped by its PID."""

    def __init__(self, name, root, port, args, env):
        self.name = name
        self.root = root
        self.port = port
        self.audit_log = root / "audit.log"
        self.audit_log.touch()
        os.chmod(self.audit_log, 0o666)
        # A session of its own: prefork's shutdown signals its whole process
        # group, which would otherwise include this test.
        self.process = subprocess.Popen(args, stdout=open(root / "stdout.log", "wb"),
                                        stderr=subprocess.STDOUT, env=env,
                                        start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not port_open(port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{name} did not start:\n" + self.logs())
            time.sleep(0.1)

    def logs(self):
        text = ""
        for log in ("stdout.log", "error.log"):
            path = self.root / log
            if path.exists():
                text += path.read_text(errors="replace")
        return text

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_nginx():
    root = prepare_root("webtrap-decoders-nginx-")
    port = free_port()
    (root / "modsec.conf").write_text(modsec_conf(root))
    (root / "nginx.conf").write_text(NGINX_CONF.format(module=NGINX_MODULE, root=root, port=port))
    env = dict(os.environ, TZ=NGINX_ZONE)
    return Server("nginx", root, port,
                  [NGINX, "-p", str(root), "-c", str(root / "nginx.conf")], env)


def start_apache():
    root = prepare_root("webtrap-decoders-apache-")
    port = free_port()
    (root / "apache2.conf").write_text(APACHE_CONF.format(
        root=root, port=port, modules=APACHE_MODULES, modsec=modsec_conf(root)))
    return Server("apache", root, port,
                  [APACHE, "-f", str(root / "apache2.conf"), "-DFOREGROUND"], dict(os.environ))


def requests(port):
    host = f"Host: 127.0.0.1:{port}\r\n".encode()
    body = b"user=admin&pass=%27+or+%271%27%3D%271"
    return [
        ("sqli", b"GET /?id=1%27%20or%201=1-- HTTP/1.1\r\n" + host
         + b"X-Dup: one\r\nUser-Agent: decoder-test\r\nX-Dup: two\r\nConnection: close\r\n\r\n"),
        ("invalid_utf8", b"GET /search?q=caf\xe9 HTTP/1.1\r\n" + host
         + b"Connection: close\r\n\r\n"),
        ("post", b"POST /login HTTP/1.1\r\n" + host
         + b"Content-Type: application/x-www-form-urlencoded\r\n"
         + b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body),
        ("benign", b"GET /index.html HTTP/1.1\r\n" + host
         + b"User-Agent: Mozilla/5.0\r\nConnection: close\r\n\r\n"),
    ]


def exchange(port, raw):
    """Sends one request and returns (client port, response status line)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        client_port = sock.getsockname()[1]
        sock.sendall(raw)
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return client_port, data.split(b"\r\n", 1)[0]


def wait_for_lines(path, count, timeout=20):
    return probe_harness.wait_for(
        lambda: path.exists() and path.read_bytes().count(b"\n") >= count, timeout,
        f"{count} audit records in {path}")


def decode(path, *options):
    result = subprocess.run([probe_harness.BIN, "decode", *options, str(path)],
                            capture_output=True, timeout=60)
    if result.returncode != 0:
        raise AssertionError(f"webtrap decode {path} failed ({result.returncode}):\n"
                             + result.stderr.decode(errors="replace"))
    return [json.loads(line) for line in result.stdout.splitlines()]


class Checks:
    def __init__(self):
        self.failures = 0

    def expect(self, condition, what):
        if condition:
            print(f"ok {what}")
        else:
            self.failures += 1
            print(f"FAIL {what}")


def headers_named(record, name):
    return [value for (key, value) in record["request_headers"] if key.lower() == name.lower()]


def raw_header_pairs(original):
    """Returns the request headers of a v3 record as [name, value] pairs, repeats kept."""
    pairs_of = {}

    def keep_pairs(pairs):
        names = [key for key, _ in pairs]
        if "Host" in names and "User-Agent" in names:
            pairs_of["request"] = [[key, value] for key, value in pairs]
        return dict(pairs)

    json.loads(original, object_pairs_hook=keep_pairs)
    return pairs_of.get("request")


def rule_ids(record):
    return {message["rule_id"] for message in record["messages"]}


def check_producer(checks, name, records, sent, expected_format, joined_duplicates):
    by_name = dict(zip([item[0] for item in sent], records))
    checks.expect(len(records) == len(sent), f"{name}: {len(sent)} records decoded")
    for (label, client_port, started, finished), record in zip(sent, records):
        checks.expect(record["format"] == expected_format, f"{name} {label}: format")
        checks.expect(record["client_port"] == client_port,
                      f"{name} {label}: client port {client_port} (got {record['client_port']})")
        checks.expect(record["client_ip"] == "127.0.0.1", f"{name} {label}: client ip")
        seconds = record["timestamp_us"] / 1e6
        checks.expect(int(started) - 1 <= seconds <= finished + 1,
                      f"{name} {label}: time stamp {seconds} within [{started}, {finished}]")
        checks.expect(len(record["event_id"]) == 36, f"{name} {label}: event id is UUID-shaped")

    sqli = by_name["sqli"]
    checks.expect(sqli["method"] == "GET", f"{name} sqli: method")
    checks.expect(sqli["uri"] == "/?id=1%27%20or%201=1--", f"{name} sqli: uri {sqli['uri']!r}")
    checks.expect("942100" in rule_ids(sqli), f"{name} sqli: rule 942100 matched")
    checks.expect(any(m["version"] == "OWASP_CRS/3.3.4" for m in sqli["messages"]),
                  f"{name} sqli: rule set version")
    checks.expect("OWASP_CRS/3.3.4" in sqli["components"],
                  f"{name} sqli: component without a stray quote {sqli['components']}")
    if joined_duplicates:
        # Apache joins repeated request header fields before modules see them.
        checks.expect(headers_named(sqli, "X-Dup") == ["one, two"],
                      f"{name} sqli: repeated header joined {headers_named(sqli, 'X-Dup')}")
    else:
        checks.expect(headers_named(sqli, "X-Dup") == ["one", "two"],
                      f"{name} sqli: repeated header kept twice {headers_named(sqli, 'X-Dup')}")
        # libmodsecurity groups repeated names, so the log's own key order
        # (read with every pair kept) is the reference.
        in_log = raw_header_pairs(sqli["original"])
        checks.expect(sqli["request_headers"] == in_log,
                      f"{name} sqli: headers in the log's order {in_log}")
    checks.expect(sqli["host"].startswith("127.0.0.1:"), f"{name} sqli: host")

    invalid = by_name["invalid_utf8"]
    checks.expect(invalid["invalid_utf8"] is True, f"{name} invalid_utf8: flagged")
    checks.expect(invalid["uri"] == "/search?q=caf\ufffd",
                  f"{name} invalid_utf8: uri with U+FFFD {invalid['uri']!r}")
    original = base64.b64decode(invalid["original_base64"])
    checks.expect(b"caf\xe9" in original, f"{name} invalid_utf8: exact bytes kept")

    post = by_name["post"]
    checks.expect(post["method"] == "POST", f"{name} post: method")
    checks.expect(post["request_body"] == "user=admin&pass=%27+or+%271%27%3D%271",
                  f"{name} post: body {post['request_body']!r}")
    checks.expect(post["uri"] == "/login", f"{name} post: uri")

    benign = by_name["benign"]
    checks.expect(benign["uri"] == "/index.html", f"{name} benign: uri")
    checks.expect(benign["response_status"] == 200,
                  f"{name} benign: status {benign['response_status']}")
    checks.expect(not ({"942100", "941100"} & rule_ids(benign)), f"{name} benign: no attack rule")
    checks.expect(len({record["event_id"] for record in records}) == len(records),
                  f"{name}: event ids distinct")


def send_all(server):
    sent = []
    for label, raw in requests(server.port):
        started = time.time()
        client_port, _ = exchange(server.port, raw)
        sent.append((label, client_port, started, time.time()))
        # One request at a time, so the log order is the send order.
        wait_for_lines(server.audit_log, len(sent))
    return sent


def check_probe(checks):
    """Sends the same requests to a webtrap probe and decodes its spool."""
    probe = probe_harness.Probe()
    try:
        sent = []
        for label, raw in requests(probe.http_port):
            started = time.time()
            client_port, _ = exchange(probe.http_port, raw)
            sent.append((label, client_port, started, time.time()))
        written = probe.wait_records(len(sent))
    finally:
        probe.stop()
    records = []
    for segment in sorted(probe.spool.glob("*.ndjson")):
        records += decode(segment)
    name = "webtrap probe"
    checks.expect(len(records) == len(sent), f"{name}: {len(sent)} records decoded")
    # The probe may finish records out of order, so they are matched by port.
    by_port = {record["client_port"]: record for record in records}
    expected_ids = {record["webtrap"]["event_id"] for record in written}
    checks.expect({record["event_id"] for record in records} == expected_ids,
                  f"{name}: event ids are webtrap.event_id")
    by_label = {}
    for label, client_port, started, finished in sent:
        record = by_port.get(client_port)
        checks.expect(record is not None, f"{name} {label}: record for client port {client_port}")
        if record is None:
            continue
        by_label[label] = record
        checks.expect(record["format"] == "webtrap", f"{name} {label}: format")
        checks.expect(record["sensor_id"] == "test-probe", f"{name} {label}: sensor id")
        seconds = record["timestamp_us"] / 1e6
        checks.expect(started - 1 <= seconds <= finished + 1,
                      f"{name} {label}: time stamp {seconds} within [{started}, {finished}]")
    if len(by_label) != len(sent):
        return
    # The probe keeps the wire order, repeats included.
    names = [key for key, _ in by_label["sqli"]["request_headers"]]
    checks.expect(names == ["Host", "X-Dup", "User-Agent", "X-Dup", "Connection"],
                  f"{name} sqli: wire order of headers {names}")
    checks.expect(by_label["invalid_utf8"]["uri"] == "/search?q=caf\ufffd",
                  f"{name} invalid_utf8: uri {by_label['invalid_utf8']['uri']!r}")
    checks.expect(by_label["invalid_utf8"]["invalid_utf8"] is False,
                  f"{name} invalid_utf8: the record itself is valid UTF-8")
    checks.expect(by_label["post"]["request_body"] == "user=admin&pass=%27+or+%271%27%3D%271",
                  f"{name} post: body")
    checks.expect("942100" in rule_ids(by_label["sqli"]), f"{name} sqli: rule 942100 matched")


def save_fixtures(directory, nginx_log, apache_log):
    directory.mkdir(parents=True, exist_ok=True)
    nginx_lines = nginx_log.read_bytes().splitlines(keepends=True)
    apache_lines = apache_log.read_bytes().splitlines(keepends=True)
    (directory / "modsec3-nginx-sqli.json").write_bytes(nginx_lines[0])
    (directory / "modsec3-nginx-invalid-utf8.json").write_bytes(nginx_lines[1])
    (directory / "modsec2-apache-sqli.json").write_bytes(apache_lines[0])
    (directory / "modsec2-apache-post.json").write_bytes(apache_lines[2])
    print(f"saved fixtures in {directory}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--save-fixtures", type=pathlib.Path)
    args = parser.parse_args()

    missing = [str(path) for path in (pathlib.Path(NGINX), NGINX_MODULE, pathlib.Path(APACHE),
                                      APACHE_MODULES / "mod_security2.so", CRS_SETUP)
               if not path.exists()]
    if missing or unicode_mapping() is None:
        print("SKIP: missing " + ", ".join(missing or ["unicode.mapping"])
              + " (Debian packages nginx, libnginx-mod-http-modsecurity, apache2, "
              "libapache2-mod-security2, modsecurity-crs)")
        return 77

    checks = Checks()
    servers = []
    try:
        nginx = start_nginx()
        servers.append(nginx)
        apache = start_apache()
        servers.append(apache)
        nginx_sent = send_all(nginx)
        apache_sent = send_all(apache)
    except Exception:
        for server in servers:
            print(f"--- {server.name} logs:\n{server.logs()}")
        raise
    finally:
        for server in servers:
            server.stop()

    try:
        nginx_records = decode(nginx.audit_log, "--timezone", NGINX_ZONE)
        check_producer(checks, "nginx/libmodsecurity", nginx_records, nginx_sent, "modsec3",
                       joined_duplicates=False)
        apache_records = decode(apache.audit_log)
        check_producer(checks, "apache/mod_security2", apache_records, apache_sent, "modsec2",
                       joined_duplicates=True)

        # Read in UTC, the New York wall clock is 4 or 5 hours off.
        utc_records = decode(nginx.audit_log, "--timezone", "UTC")
        shift = (utc_records[0]["timestamp_us"] - nginx_records[0]["timestamp_us"]) / 3.6e9
        checks.expect(shift in (-4.0, -5.0), f"nginx: UTC reading is {shift} h off New York")

        again = decode(nginx.audit_log, "--timezone", NGINX_ZONE)
        checks.expect([r["event_id"] for r in again] == [r["event_id"] for r in nginx_records],
                      "nginx: same event ids when read again")
        checks.expect(decode(nginx.audit_log, "--format", "modsec3", "--timezone", NGINX_ZONE)
                      == nginx_records, "nginx: --format modsec3 equals auto")
        checks.expect(decode(apache.audit_log, "--format", "modsec2") == apache_records,
                      "apache: --format modsec2 equals auto")

        wrong = subprocess.run([probe_harness.BIN, "decode", "--format", "modsec2",
                                str(nginx.audit_log)], capture_output=True, timeout=60)
        checks.expect(wrong.returncode == 1 and b":1: transaction.time: missing" in wrong.stderr,
                      "nginx log read as modsec2: rejected with line number and field "
                      + wrong.stderr.decode(errors="replace").splitlines()[0])

        check_probe(checks)

        if args.save_fixtures:
            save_fixtures(args.save_fixtures, nginx.audit_log, apache.audit_log)
    finally:
        if not os.environ.get("WEBTRAP_KEEP_TEST_DIRS"):
            for server in servers:
                shutil.rmtree(server.root, ignore_errors=True)

    print(f"{checks.failures} failed")
    return 1 if checks.failures else 0


if __name__ == "__main__":
    sys.exit(main())
