#!/usr/bin/env python3
"""Real attack tools against a probe on loopback.

Each tool gets a fresh probe and a tshark capture of the probe's plain port.
The capture counts the requests the tool sent, independently of the probe, and
the probe must have written exactly one record per request, each valid against
docs/record-schema.json. Then each tool's records must show what the tool did:
the CRS rule ids for its payloads and user agent, and the baits it touched.
Every run is bounded by a timeout and small word lists.
"""

import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

import yaml

from probe_harness import SOURCE_DIR, Probe
from tool_harness import (RequestCapture, bait_kinds, complete_records, is_marker,
                          port_count_differences, records_by_port, rule_ids, schema_errors,
                          tshark_missing, wait_pipeline_drained)

CONFIG = """
sensor:
  id: attack-tools-test
modsecurity:
  paranoia_level: 1
limits:
  read_timeout: 10s
  idle_timeout: 5s
"""

PERSONA_DIR = SOURCE_DIR / "personas" / "apache-debian-php"
# Words in tool output that would give away the honeypot or its HTTP library.
GIVEAWAYS = re.compile(r"webtrap|beast|boost", re.IGNORECASE)
TOOLS = ["tshark", "sqlmap", "nmap", "gobuster", "whatweb", "hydra"]


def persona_routes():
    return yaml.safe_load((PERSONA_DIR / "persona.yaml").read_text())["routes"]


def header(record, name):
    for field_name, value in record["webtrap"]["request"]["headers"]:
        if field_name.lower() == name.lower():
            return value
    return ""


class ToolRun:
    """The outcome of one tool against its own probe."""

    def __init__(self, output, records, capture_summary):
        self.output = output
        self.records = records
        self.capture_summary = capture_summary


class AttackToolsTest(unittest.TestCase):
    maxDiff = None  # show every differing client port on failure

    @classmethod
    def setUpClass(cls):
        missing = [tool for tool in TOOLS if not shutil.which(tool)]
        if missing:
            raise AssertionError(f"missing tools {missing}: run scripts/install-deps.sh --with-tests")
        problem = tshark_missing()
        if problem:
            raise AssertionError(problem)

    def run_tool(self, command, timeout):
        """Runs `command` (PORT replaced by the probe's port) against a fresh probe.

        Checks that the records match the requests captured on the wire, client
        port by client port, and that every record validates. Returns a ToolRun.
        """
        probe = Probe(CONFIG)
        try:
            capture = RequestCapture(probe.http_port)
            try:
                args = [arg.replace("PORT", str(probe.http_port)) for arg in command]
                result = subprocess.run(args, capture_output=True, text=True, timeout=timeout,
                                        cwd=probe.dir)
                capture.finish()
            finally:
                capture.stop_process()
            output = result.stdout + result.stderr
            self.assertEqual(result.returncode, 0, f"{args[0]} failed:\n{output[-3000:]}")

            sent = capture.sent_by_port()
            total = sum(sent.values())
            self.assertGreater(total, 0, f"{args[0]} sent no request:\n{output[-3000:]}")

            wait_pipeline_drained(probe)
            records = [r for r in complete_records(probe) if not is_marker(r)]
            differences = port_count_differences(sent, records_by_port(records))
            self.assertEqual(differences, [], f"{args[0]}: {capture.summary()}")
            self.assertEqual(len(records), total)
            self.assertEqual(schema_errors(records), [])
        finally:
            code = probe.stop()
        if code != 0:
            log = (probe.dir / "probe.log").read_text(errors="replace")
            self.fail(f"probe exited with {code}:\n{log[-3000:]}")
        return ToolRun(output, records, capture.summary())

    def assert_scanner_rule(self, run, agent_marker):
        """Every record sent with the tool's own User-Agent has CRS rule 913100."""
        tagged = [r for r in run.records if agent_marker in header(r, "User-Agent").lower()]
        self.assertTrue(tagged, f"no request with a User-Agent containing {agent_marker!r}")
        without = [r["webtrap"]["request"]["line"] for r in tagged if "913100" not in rule_ids(r)]
        self.assertEqual(without, [], "requests without the scanner rule 913100")

    def assert_no_giveaway(self, output):
        self.assertIsNone(GIVEAWAYS.search(output), GIVEAWAYS.search(output))

    def test_sqlmap_boolean_and_union(self):
        run = self.run_tool(
            ["sqlmap", "-u", "http://127.0.0.1:PORT/about.php?id=1", "--batch",
             "--technique=BU", "--level=1", "--risk=1", "--threads=1", "--timeout=10",
             "--retries=0", "--flush-session", "--disable-coloring", "--output-dir=sqlmap"],
            timeout=300)
        sqli = [r for r in run.records if any(i.startswith("942") for i in rule_ids(r))]
        self.assertGreaterEqual(len(sqli), 5, f"few 942xxx matches in {len(run.records)} records")
        self.assertIn("942100", {i for r in sqli for i in rule_ids(r)})
        self.assert_scanner_rule(run, "sqlmap")

    def test_nmap_http_scripts(self):
        # http.pipeline=1 stops nmap from pipelining, because requests pipelined
        # behind a response that closes the connection are never read (Apache
        # behaves the same) and the capture would count them.
        run = self.run_tool(
            ["nmap", "-n", "-Pn", "-p", "PORT", "-sV", "--script",
             "http-title,http-headers,http-enum,http-methods",
             "--script-args", "http.pipeline=1", "--host-timeout", "300s", "127.0.0.1"],
            timeout=400)
        self.assertRegex(run.output, r"open\s+http\s+Apache httpd [\d.]+ \(\(Debian\)\)")
        self.assertIn("Server: Apache/", run.output)
        self.assert_no_giveaway(run.output)
        self.assertGreater(len(run.records), 100, "http-enum sent few requests")
        self.assert_scanner_rule(run, "nmap scripting engine")

    def test_gobuster_dir_wordlist(self):
        traps = [route["path"].strip("/") for route in persona_routes()
                 if route.get("trap") in ("robots", "comment")]
        self.assertTrue(traps, "the persona advertises no trap path")
        words = ["admin", "login.php", "about.php", ".env", ".git/config", "wp-admin",
                 "phpmyadmin", "server-status", "cgi-bin", "uploads", "backup.zip", *traps]
        with tempfile.TemporaryDirectory() as folder:
            wordlist = pathlib.Path(folder) / "words.txt"
            wordlist.write_text("\n".join(words) + "\n")
            run = self.run_tool(
                ["gobuster", "dir", "-u", "http://127.0.0.1:PORT/", "-w", str(wordlist),
                 "-t", "4", "--timeout", "10s", "-q", "-z", "--no-error"], timeout=120)
        self.assertGreaterEqual(len(run.records), len(words))
        self.assert_scanner_rule(run, "gobuster")
        kinds = [kind for r in run.records for kind in bait_kinds(r)]
        self.assertIn("robots_trap", kinds)
        self.assertIn("comment_trap", kinds)
        ids = {i for r in run.records for i in rule_ids(r)}
        self.assertIn("77010", ids)
        self.assertIn("77011", ids)

    def test_whatweb_aggressive(self):
        run = self.run_tool(["whatweb", "-a", "3", "--color=never", "--open-timeout", "10",
                             "--read-timeout", "10", "http://127.0.0.1:PORT/"], timeout=120)
        product = run.records[0]["webtrap"]["persona"]["product"]  # e.g. Apache/2.4.71 (Debian)
        version = re.search(r"Apache/([\d.]+)", product).group(1)
        self.assertIn(f"Apache[{version}]", run.output)
        self.assertIn("HTTPServer[Debian Linux]", run.output)
        self.assert_no_giveaway(run.output)
        self.assert_scanner_rule(run, "whatweb")

    def test_hydra_basic_auth_admin(self):
        canary = next(r for r in persona_routes() if r.get("canary") and r["kind"] == "admin")
        users = ["admin", "root", "webmaster"]
        passwords = ["123456", "password", "letmein"]
        with tempfile.TemporaryDirectory() as folder:
            user_file = pathlib.Path(folder) / "users.txt"
            password_file = pathlib.Path(folder) / "passwords.txt"
            user_file.write_text("\n".join(users) + "\n")
            password_file.write_text("\n".join(passwords) + "\n")
            run = self.run_tool(
                ["hydra", "-L", str(user_file), "-P", str(password_file), "-s", "PORT", "-t", "2",
                 "-w", "10", "-I", "127.0.0.1", "http-get", canary["path"]], timeout=120)
        self.assertIn("0 valid password", run.output)
        tried = set()
        for record in run.records:
            self.assertEqual(record["webtrap"]["route"]["kind"], "admin")
            self.assertEqual(record["transaction"]["response"]["http_code"], 401)
            if not header(record, "Authorization"):
                continue
            self.assertIn("credential_canary", bait_kinds(record))
            self.assertIn("77030", rule_ids(record))
            detail = next(b["detail"] for b in record["webtrap"]["baits"]
                          if b["kind"] == "credential_canary")
            tried.add(re.match(r"user=(\S+)", detail).group(1))
        self.assertEqual(tried, set(users))
        self.assert_scanner_rule(run, "(hydra)")


if __name__ == "__main__":
    result = unittest.main(verbosity=2, exit=False).result
    sys.exit(0 if result.wasSuccessful() else 1)
