#!/usr/bin/env python3
"""A running probe tags its records with OAT ids (webtrap.oat).

Sends one request of each kind that the ontology's per-request rules cover
(an SQL injection, a robots.txt trap path, form POSTs, a bait port) to a
probe on loopback. The tests check the tags in the records it writes, and
that a plain page view gets none.
"""

import json
import sys
import unittest
import urllib.parse

import jsonschema

from probe_harness import Probe, SOURCE_DIR, send_raw

CONFIG = """
sensor:
  id: oat-test
"""


def post(path, fields):
    body = urllib.parse.urlencode(fields).encode()
    head = (f"POST {path} HTTP/1.1\r\nHost: shop.example\r\nUser-Agent: oat-test\r\n"
            f"Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    return head + body


def get(target, agent="oat-test"):
    return (f"GET {target} HTTP/1.1\r\nHost: shop.example\r\nUser-Agent: {agent}\r\n"
            f"Connection: close\r\n\r\n").encode()


class ProbeOatTagsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.probe = Probe(CONFIG)
        requests = [
            (cls.probe.http_port, get("/plain-view-marker")),
            (cls.probe.http_port, get("/?sqli-marker=1%27%20OR%20%271%27=%271")),
            (cls.probe.http_port, get("/admin-old/")),
            (cls.probe.http_port, post("/login.php", {"user": "alice", "pass": "hunter2"})),
            (cls.probe.http_port, post("/register.php", {
                "username": "bot1", "email": "bot1@example.com", "password": "Secret123",
                "confirm": "Secret123", "bags": "false"})),
            (cls.probe.http_port, post("/blog/post.php", {
                "name": "Spam", "email": "spam@example.com", "website": "",
                "comment": "Cheap pills http://spam.example/a and http://spam.example/b",
                "bags": "false"})),
            (cls.probe.bait_port, get("/bait-port-marker")),
            (cls.probe.http_port, get("/whatweb-marker", agent="WhatWeb/0.5.5")),
        ]
        for port, data in requests:
            send_raw(port, data)
        cls.records = cls.probe.wait_records(len(requests))

    @classmethod
    def tearDownClass(cls):
        code = cls.probe.stop()
        schema = json.loads((SOURCE_DIR / "docs" / "record-schema.json").read_text())
        for record in cls.probe.records():
            jsonschema.validate(record, schema)
        if code != 0:
            raise AssertionError(f"probe exited with {code}:\n{cls.probe.log_text()}")

    def tags(self, marker):
        """Maps OAT id to tag for the one record whose request line contains `marker`."""
        found = [r for r in self.records if marker in r["webtrap"]["request"]["line"]]
        self.assertEqual(len(found), 1, f"records for {marker}")
        tags = found[0]["webtrap"]["oat"]
        ids = [tag["id"] for tag in tags]
        self.assertEqual(ids, sorted(set(ids)), "one tag per id, in order")
        return {tag["id"]: tag for tag in tags}

    def test_plain_page_view_has_no_tag(self):
        self.assertEqual(self.tags("/plain-view-marker"), {})

    def test_sql_injection_is_vulnerability_scanning(self):
        tags = self.tags("sqli-marker")
        self.assertIn("OAT-014", tags)
        tag = tags["OAT-014"]
        self.assertEqual(tag["name"], "Vulnerability Scanning")
        self.assertEqual(tag["basis"], "rule")
        self.assertTrue(tag["reason"].startswith("crs:942"), tag["reason"])
        self.assertGreaterEqual(tag["confidence"], 0.6)
        self.assertIn("T1190", tag["attack"])
        self.assertTrue(tag["version"].startswith("webtrap-oat-"))

    def test_robots_trap_is_scraping_or_footprinting(self):
        tags = self.tags("GET /admin-old/")
        self.assertEqual(tags["OAT-011"]["reason"], "bait:robots_trap")
        self.assertEqual(tags["OAT-018"]["reason"], "bait:robots_trap")
        self.assertLess(tags["OAT-011"]["confidence"], 0.5)

    def test_login_post_is_cracking_or_stuffing(self):
        tags = self.tags("POST /login.php")
        self.assertEqual(set(tags), {"OAT-007", "OAT-008"})
        self.assertEqual(tags["OAT-007"]["reason"], "route:login POST")

    def test_register_post_is_account_creation(self):
        tags = self.tags("POST /register.php")
        self.assertEqual(set(tags), {"OAT-019"})

    def test_comment_with_links_is_spam(self):
        tags = self.tags("POST /blog/post.php")
        self.assertIn("OAT-017", tags)
        self.assertTrue(tags["OAT-017"]["reason"].startswith("route:comment POST links="),
                        tags["OAT-017"]["reason"])

    def test_whatweb_user_agent_is_fingerprinting(self):
        tags = self.tags("/whatweb-marker")
        self.assertEqual(set(tags), {"OAT-004"})
        self.assertEqual(tags["OAT-004"]["reason"], "crs:913100")
        self.assertGreaterEqual(tags["OAT-004"]["confidence"], 0.5)

    def test_bait_port_is_fingerprinting(self):
        tags = self.tags("/bait-port-marker")
        self.assertEqual(tags["OAT-004"]["reason"], "bait:fake_port")


if __name__ == "__main__":
    sys.exit(unittest.main())
