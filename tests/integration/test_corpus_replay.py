#!/usr/bin/env python3
"""Exploit corpus against a probe at paranoia level 1.

Replays the shared ftw corpus with `webtrap replay`, sends every request of the
CRS gap corpora byte for byte, and sends real-world request shapes with curl and
raw sockets. Each request must give exactly one record that validates against
docs/record-schema.json, with the rule ids expected for it.
"""

import json
import pathlib
import re
import subprocess
import sys
import unittest

import yaml

from probe_harness import BIN, SHARED_DIR, SOURCE_DIR, Probe, wait_for
from tool_harness import bait_kinds, build_request, rule_ids, schema_errors, send_with_port

CONFIG = """
sensor:
  id: corpus-test
modsecurity:
  paranoia_level: 1
limits:
  read_timeout: 5s
  idle_timeout: 2s
  # The Citrix Bleed line of the gap corpus has a 24 KiB Host header. At the
  # default 16KiB the parser rejects it uninspected, so its gap rule never runs.
  max_header_bytes: 64KiB
"""
MAX_HEADER_BYTES = 64 * 1024

CORPUS_DIR = SHARED_DIR / "corpus"
GAP_FILES = [CORPUS_DIR / "crs-gaps.jsonl", SOURCE_DIR / "tests" / "corpus" / "crs-gaps-extra.jsonl"]
GAP_RULES = range(77100, 77300)

XMLRPC_MULTICALL = (
    '<?xml version="1.0"?><methodCall><methodName>system.multicall</methodName><params>'
    "<param><value><array><data>"
    + "".join(
        "<value><struct><member><name>methodName</name><value><string>wp.getUsersBlogs"
        "</string></value></member><member><name>params</name><value><array><data>"
        f"<value><array><data><value><string>admin</string></value><value><string>{password}"
        "</string></value></data></array></value></data></array></value></member></struct></value>"
        for password in ("123456", "password", "admin123"))
    + "</data></array></value></param></params></methodCall>")


def count_stages(folder):
    """Requests that `webtrap replay` sends for the enabled ftw files in `folder`."""
    stages = 0
    for path in sorted(folder.glob("*.yaml")):
        document = yaml.safe_load(path.read_text())
        if not document.get("meta", {}).get("enabled", True):
            continue
        for test in document["tests"]:
            stages += len(test["stages"])
    return stages


def load_gap_requests():
    requests = []
    for path in GAP_FILES:
        if not path.exists():
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if line.strip():
                requests.append((f"{path.name}:{number}", json.loads(line)))
    return requests


def gap_request_bytes(case):
    """The request bytes of a gap corpus line, header fields in the order given.

    A line with a body and no framing header gets a Content-Length, as any
    client adds one. Without it the server would read the body as a second request.
    """
    headers = list(case["headers"])
    body = case.get("body", "").encode("utf-8")
    framing = {name.lower() for name, _ in headers} & {"content-length", "transfer-encoding"}
    if body and not framing:
        headers.append(["Content-Length", str(len(body))])
    return build_request(case["method"], case["uri"], headers, body)


class CorpusReplayTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.probe = Probe(CONFIG)
        cls.url = f"http://127.0.0.1:{cls.probe.http_port}"
        cls.sent = 0  # requests sent, each must give exactly one record
        cls.ids_before_send = {}  # client port -> event ids in the spool before that request

    @classmethod
    def tearDownClass(cls):
        code = cls.probe.stop()
        if code != 0:
            raise AssertionError(f"probe exited with {code}:\n{cls.probe.log_text()}")

    def records_for_ports(self, ports, timeout=30):
        """Waits for one record per client port and returns them in the order of `ports`.

        Records already in the spool when the request on a port was sent
        belong to an earlier request that had the same ephemeral port, so
        they do not count.
        """
        wanted = set(ports)

        def collect():
            found = {}
            for record in self.probe.records():
                port = record["transaction"]["client_port"]
                earlier = self.ids_before_send.get(port, set())
                if port in wanted and record["webtrap"]["event_id"] not in earlier:
                    found.setdefault(port, []).append(record)
            return found if len(found) == len(wanted) else None

        found = wait_for(collect, timeout, f"records for {len(wanted)} client ports")
        for port in ports:
            self.assertEqual(len(found[port]), 1, f"records for client port {port}")
        return [found[port][0] for port in ports]

    def event_ids(self):
        return {record["webtrap"]["event_id"] for record in self.probe.records()}

    def send(self, data):
        type(self).sent += 1
        before = self.event_ids()
        response, port = send_with_port(self.probe.http_port, data)
        self.ids_before_send[port] = before
        return response, port

    def curl(self, *args):
        """Runs curl against the probe and returns (status code, local port)."""
        type(self).sent += 1
        before = self.event_ids()
        result = subprocess.run(
            ["curl", "-s", "-o", "/dev/null", "--max-time", "10", "-w",
             "%{http_code} %{local_port}", *args],
            capture_output=True, text=True, timeout=30)
        self.assertEqual(result.returncode, 0, f"curl {args}: {result.stderr}")
        code, port = result.stdout.split()
        self.ids_before_send[int(port)] = before
        return int(code), int(port)

    def test_corpus_yaml_all_pass(self):
        stages = count_stages(CORPUS_DIR)
        self.assertGreater(stages, 0, f"no ftw cases in {CORPUS_DIR}")
        type(self).sent += stages
        result = subprocess.run(
            [BIN, "replay", "--target", self.url, "--records", str(self.probe.spool),
             "--json-report", str(self.probe.dir / "corpus-report.json"),
             *sorted(str(p) for p in CORPUS_DIR.glob("*.yaml"))],
            capture_output=True, text=True, timeout=300)
        summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
        self.assertRegex(summary, r"^\d+ passed, 0 failed$", result.stdout + result.stderr)
        self.assertEqual(int(summary.split()[0]), stages, "every stage is one passing test")
        self.assertEqual(result.returncode, 0, result.stderr)

    def test_crs_gap_requests_match_gap_rules(self):
        cases = load_gap_requests()
        self.assertGreaterEqual(len(cases), 3, "crs-gaps.jsonl is missing or short")
        ports = []
        for _, case in cases:
            response, port = self.send(gap_request_bytes(case))
            self.assertTrue(response.startswith(b"HTTP/1.1 "), f"{case['name']}: {response[:80]}")
            ports.append(port)
        records = self.records_for_ports(ports)
        for (where, case), record in zip(cases, records):
            with self.subTest(case=case["name"], line=where):
                self.assertTrue(record["webtrap"]["parse"]["ok"], record["webtrap"]["parse"])
                self.assertEqual(record["transaction"]["request"]["method"], case["method"])
                ids = rule_ids(record)
                self.assertTrue(any(int(i) in GAP_RULES for i in ids if i.isdigit()),
                                f"no rule in 77100-77299 for {case['name']}: {ids}")

    def test_xmlrpc_multicall_is_recorded_whole(self):
        code, port = self.curl("-A", "Mozilla/5.0 (Windows NT 10.0; Win64; x64)", "-H",
                               "Content-Type: text/xml", "--data-binary", XMLRPC_MULTICALL,
                               self.url + "/xmlrpc.php")
        self.assertEqual(code, 404)  # the persona is not WordPress
        record = self.records_for_ports([port])[0]
        self.assertEqual(record["transaction"]["request"]["method"], "POST")
        self.assertEqual(record["transaction"]["request"]["body"], XMLRPC_MULTICALL)
        self.assertEqual(record["webtrap"]["request"]["body_size"], len(XMLRPC_MULTICALL))

    # CRS 3.3.4 at paranoia level 1 has no rule for a system.multicall brute
    # force; webtrap's gap rule 77290 covers it.
    def test_xmlrpc_multicall_is_detected(self):
        _, port = self.curl("-A", "Mozilla/5.0", "-H", "Content-Type: text/xml",
                            "--data-binary", XMLRPC_MULTICALL, self.url + "/xmlrpc.php?detect")
        record = self.records_for_ports([port])[0]
        self.assertIn("77290", rule_ids(record))

    def test_wp_login_credential_post(self):
        body = "log=admin&pwd=qwerty123&wp-submit=Log+In&redirect_to=%2Fwp-admin%2F&testcookie=1"
        code, port = self.curl("-A", "Mozilla/5.0", "-b", "wordpress_test_cookie=WP+Cookie+check",
                               "-d", body, self.url + "/wp-login.php")
        self.assertEqual(code, 404)
        record = self.records_for_ports([port])[0]
        self.assertEqual(record["transaction"]["request"]["body"], body)
        self.assertEqual(record["transaction"]["request"]["headers"]["Cookie"],
                         "wordpress_test_cookie=WP+Cookie+check")

    def test_login_form_sqli_post(self):
        code, port = self.curl("-A", "Mozilla/5.0", "-d",
                               "user=admin%27+OR+1%3D1--+&pass=x&bags=false",
                               self.url + "/login.php")
        self.assertEqual(code, 200)
        record = self.records_for_ports([port])[0]
        self.assertEqual(record["webtrap"]["route"]["kind"], "login")
        self.assertIn("942100", rule_ids(record))
        self.assertNotIn("form_field", bait_kinds(record))

    def test_login_form_flipped_bait_field(self):
        code, port = self.curl("-A", "Mozilla/5.0", "-d", "user=admin&pass=hunter2&bags=true",
                               self.url + "/login.php")
        self.assertEqual(code, 200)
        record = self.records_for_ports([port])[0]
        self.assertIn("form_field", bait_kinds(record))
        self.assertIn("77050", rule_ids(record))

    def test_path_traversal_argument(self):
        code, port = self.curl("-A", "Mozilla/5.0",
                               self.url + "/about.php?file=../../../../etc/passwd")
        self.assertEqual(code, 200)
        ids = rule_ids(self.records_for_ports([port])[0])
        self.assertIn("930100", ids)  # encoded or plain ../ sequence
        self.assertIn("930120", ids)  # OS file access: etc/passwd

    def test_absolute_form_uri_is_accepted(self):
        # RFC 9112 section 3.2.2: a server must accept the absolute form, and Apache does.
        code, port = self.curl("--request-target", "http://www.example.com/about.php",
                               self.url + "/")
        self.assertEqual(code, 200)
        record = self.records_for_ports([port])[0]
        self.assertTrue(record["webtrap"]["parse"]["ok"])
        self.assertEqual(record["webtrap"]["request"]["line"],
                         "GET http://www.example.com/about.php HTTP/1.1")
        self.assertEqual(record["webtrap"]["route"]["name"], "about")

    def test_cookie_tampering_detected(self):
        response, _ = self.send(b"GET /login.php HTTP/1.1\r\nHost: www.example.com\r\n"
                                b"Connection: close\r\n\r\n")
        cookie = re.search(rb"Set-Cookie: (user_role)=([^;\r]+)", response)
        self.assertIsNotNone(cookie, response[:600])
        self.assertEqual(cookie.group(2), b"guest")
        code, port = self.curl("-A", "Mozilla/5.0", "-b", "user_role=admin",
                               self.url + "/login.php")
        self.assertEqual(code, 200)
        record = self.records_for_ports([port])[0]
        self.assertIn("cookie", bait_kinds(record))
        self.assertIn("77020", rule_ids(record))

    def test_honeytoken_reused_from_other_address(self):
        response, port = self.send(b"GET /.env HTTP/1.1\r\nHost: www.example.com\r\n"
                                   b"Connection: close\r\n\r\n")
        key = re.search(rb"AWS_ACCESS_KEY_ID=(\S+)", response)
        self.assertIsNotNone(key, response[:600])
        issued = self.records_for_ports([port])[0]["webtrap"]["issued_tokens"]
        self.assertIn(key.group(1).decode(), issued)
        # The attacker tries the key later from another address (::1 here).
        type(self).sent += 1
        result = subprocess.run(
            ["curl", "-s", "-o", "/dev/null", "-w", "%{local_port}", "--max-time", "10", "-H",
             f"X-Amz-Security-Token: {key.group(1).decode()}",
             f"http://[::1]:{self.probe.http6_port}/api/upload"],
            capture_output=True, text=True, timeout=30)
        record = self.records_for_ports([int(result.stdout)])[0]
        self.assertEqual(record["transaction"]["client_ip"], "::1")
        self.assertIn("honeytoken", bait_kinds(record))
        self.assertIn("77040", rule_ids(record))
        detail = next(b["detail"] for b in record["webtrap"]["baits"] if b["kind"] == "honeytoken")
        self.assertIn("127.0.0.1", detail)  # the address the token was issued to

    def check_rejected(self, data, expected_line):
        response, port = self.send(data)
        self.assertTrue(response.startswith(b"HTTP/1.1 400 "), response[:80])
        record = self.records_for_ports([port])[0]
        self.assertFalse(record["webtrap"]["parse"]["ok"])
        self.assertTrue(record["webtrap"]["parse"]["error"])
        self.assertEqual(record["transaction"]["response"]["http_code"], 400)
        self.assertTrue(record["webtrap"]["request"]["line"].startswith(expected_line),
                        record["webtrap"]["request"]["line"])
        return record

    def test_http09_request_line_rejected(self):
        self.check_rejected(b"GET /http09\r\n", "GET /http09")

    def test_nul_byte_in_header_rejected(self):
        record = self.check_rejected(b"GET /nul-header HTTP/1.1\r\nHost: a\r\nX-Nul: a\x00b\r\n"
                                     b"Connection: close\r\n\r\n", "GET /nul-header")
        self.assertIn("raw_head", record["webtrap"]["request"])

    def test_oversized_header_rejected(self):
        record = self.check_rejected(b"GET /big-header HTTP/1.1\r\nHost: a\r\nX-Big: "
                                     + b"A" * (MAX_HEADER_BYTES + 1024) + b"\r\n\r\n",
                                     "GET /big-header")
        self.assertIn("raw_head_truncated", record["webtrap"]["request"])

    def test_bad_method_rejected(self):
        record = self.check_rejected(b"G<E>T /bad-method HTTP/1.1\r\nHost: a\r\n\r\n",
                                     "G<E>T /bad-method")
        self.assertRegex(record["webtrap"]["parse"]["error"], re.compile("method", re.I))

    def test_zz_one_valid_record_per_request(self):
        # Runs last (unittest sorts by name), after every other request was sent.
        wait_for(lambda: len(self.probe.records()) >= self.sent, 30, f"{self.sent} records")
        records = self.probe.records()
        self.assertEqual(len(records), self.sent)
        self.assertEqual(schema_errors(records), [])
        self.assertEqual(len({r["webtrap"]["event_id"] for r in records}), len(records))
        self.assertEqual(self.probe.metrics()["webtrap_records_written_total"], len(records))


if __name__ == "__main__":
    result = unittest.main(verbosity=2, exit=False).result
    sys.exit(0 if result.wasSuccessful() else 1)
