#!/usr/bin/env python3
"""Capture fidelity of a probe on loopback: every request becomes one valid record."""

import base64
import hashlib
import json
import socket
import ssl
import sys
import time
import unittest

import jsonschema

from probe_harness import Probe, SOURCE_DIR, send_raw, wait_for

CONFIG = """
sensor:
  id: capture-test
capture:
  body_bytes: 1KiB
limits:
  read_timeout: 2s
  idle_timeout: 2s
  max_connections_per_source: 8
  max_requests_per_connection: 5
"""


def find(records, marker):
    """The records whose request line contains `marker`."""
    return [r for r in records if marker in r["webtrap"]["request"]["line"]]


def decoded(record, pointer, text):
    """The exact bytes of a string in a record, restored from webtrap.encoded when present."""
    encoded = record["webtrap"].get("encoded", {})
    if pointer in encoded:
        return base64.b64decode(encoded[pointer])
    return text.encode("utf-8")


class ProbeCaptureTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.probe = Probe(CONFIG)
        cls.sent = 0  # requests sent, each must give exactly one record

    @classmethod
    def tearDownClass(cls):
        code = cls.probe.stop()
        records = cls.probe.records()
        schema = json.loads((SOURCE_DIR / "docs" / "record-schema.json").read_text())
        for record in records:
            jsonschema.validate(record, schema)
        if code != 0:
            raise AssertionError(f"probe exited with {code}:\n{cls.probe.log_text()}")

    def request(self, data, **kwargs):
        type(self).sent += 1
        return send_raw(self.probe.http_port, data, **kwargs)

    def record_for(self, marker, count=1):
        records = wait_for(lambda: (m := find(self.probe.records(), marker)) and
                           len(m) >= count and m, 20, f"record with {marker}")
        self.assertEqual(len(records), count, f"records for {marker}")
        return records

    def test_headers_in_order_with_duplicates(self):
        self.request(b"GET /order-test HTTP/1.1\r\nHost: www.example.com\r\nX-Dup: one\r\n"
                     b"Accept: */*\r\nX-Dup: two\r\nConnection: close\r\n\r\n")
        record = self.record_for("/order-test")[0]
        self.assertEqual(record["webtrap"]["request"]["line"], "GET /order-test HTTP/1.1")
        self.assertEqual(record["webtrap"]["request"]["headers"],
                         [["Host", "www.example.com"], ["X-Dup", "one"], ["Accept", "*/*"],
                          ["X-Dup", "two"], ["Connection", "close"]])
        self.assertEqual(record["transaction"]["request"]["headers"]["X-Dup"], "one, two")
        self.assertEqual(record["transaction"]["client_ip"], "127.0.0.1")

    def test_get_with_body_is_captured(self):
        body = b"<?php system('id'); ?>"
        self.request(b"GET /get-body HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n"
                     b"Connection: close\r\n\r\n%s" % (len(body), body))
        record = self.record_for("/get-body")[0]
        self.assertEqual(record["transaction"]["request"]["body"], body.decode())
        self.assertEqual(record["webtrap"]["request"]["body_size"], len(body))
        self.assertEqual(record["webtrap"]["request"]["body_sha256"],
                         hashlib.sha256(body).hexdigest())
        self.assertFalse(record["webtrap"]["request"]["body_truncated"])

    def test_body_past_cap_is_truncated_and_hashed_whole(self):
        body = bytes(range(256)) * 20  # 5120 bytes, not UTF-8, past the 1 KiB cap
        self.request(b"POST /big-body HTTP/1.1\r\nHost: a\r\nContent-Type: application/octet-stream"
                     b"\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))
        record = self.record_for("/big-body")[0]
        request = record["webtrap"]["request"]
        self.assertTrue(request["body_truncated"])
        self.assertEqual(request["body_size"], len(body))
        self.assertEqual(request["body_sha256"], hashlib.sha256(body).hexdigest())
        kept = decoded(record, "/transaction/request/body", record["transaction"]["request"]["body"])
        self.assertEqual(kept, body[:1024])

    def test_invalid_utf8_survives(self):
        self.request(b"GET /utf8-\xff\xfe%20x HTTP/1.1\r\nHost: a\r\nX-Bin: \xc0\xaf\x80\r\n"
                     b"Connection: close\r\n\r\n")
        record = self.record_for("/utf8-")[0]
        uri = decoded(record, "/transaction/request/uri", record["transaction"]["request"]["uri"])
        self.assertEqual(uri, b"/utf8-\xff\xfe%20x")
        line = decoded(record, "/webtrap/request/line", record["webtrap"]["request"]["line"])
        self.assertEqual(line, b"GET /utf8-\xff\xfe%20x HTTP/1.1")
        headers = record["webtrap"]["request"]["headers"]
        index = [name for name, _ in headers].index("X-Bin")
        value = decoded(record, f"/webtrap/request/headers/{index}/1", headers[index][1])
        self.assertEqual(value, b"\xc0\xaf\x80")

    def test_rejected_request_is_recorded(self):
        response = self.request(b"GARBAGE-NOT-HTTP \x01\x02 /parse-reject\r\n\r\n")
        self.assertTrue(response.startswith(b"HTTP/1.1 400 "), response[:80])
        record = self.record_for("parse-reject")[0]
        self.assertFalse(record["webtrap"]["parse"]["ok"])
        self.assertTrue(record["webtrap"]["parse"]["error"])
        raw = decoded(record, "/webtrap/request/raw_head", record["webtrap"]["request"]["raw_head"])
        self.assertIn(b"GARBAGE-NOT-HTTP \x01\x02 /parse-reject", raw)

    def test_request_cut_short_is_recorded(self):
        self.request(b"POST /cut-short HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nabc")
        record = self.record_for("/cut-short")[0]
        self.assertFalse(record["webtrap"]["parse"]["ok"])
        self.assertIn("closed", record["webtrap"]["parse"]["error"])

    def test_pipelined_requests_each_recorded(self):
        data = b"".join(b"GET /pipelined-%d HTTP/1.1\r\nHost: a\r\n\r\n" % i for i in range(3))
        type(self).sent += 2  # request() counts one
        response = self.request(data + b"GET /pipelined-end HTTP/1.1\r\nHost: a\r\n"
                                b"Connection: close\r\n\r\n")
        type(self).sent += 1
        self.assertEqual(response.count(b"HTTP/1.1 "), 4)
        for i in range(3):
            self.record_for(f"/pipelined-{i} ")
        record = self.record_for("/pipelined-end")[0]
        self.assertEqual(record["webtrap"]["request"]["line"], "GET /pipelined-end HTTP/1.1")

    def test_connection_cap_announces_close(self):
        data = b"".join(b"GET /cap-%d HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\n" % i
                        for i in range(7))
        type(self).sent += 4  # request() counts one; the probe reads five
        response = self.request(data)
        self.assertEqual(response.count(b"HTTP/1.1 "), 5)
        last = response[response.rfind(b"HTTP/1.1 "):]
        head = last[:last.find(b"\r\n\r\n")]
        self.assertIn(b"\r\nConnection: close", head)
        self.assertNotIn(b"Keep-Alive:", head)
        for i in range(5):
            self.record_for(f"/cap-{i} ")

    def test_chunked_body_is_decoded(self):
        self.request(b"POST /chunked HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                     b"Connection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        record = self.record_for("/chunked")[0]
        self.assertEqual(record["transaction"]["request"]["body"], "hello world")
        self.assertTrue(record["webtrap"]["request"]["chunked"])

    def test_expect_continue_is_answered(self):
        with socket.create_connection(("127.0.0.1", self.probe.http_port), timeout=10) as sock:
            type(self).sent += 1
            sock.sendall(b"POST /expect HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n"
                         b"Expect: 100-continue\r\nConnection: close\r\n\r\n")
            interim = sock.recv(4096)
            self.assertTrue(interim.startswith(b"HTTP/1.1 100 Continue"), interim)
            sock.sendall(b"data")
            self.assertIn(b"HTTP/1.1 ", sock.recv(65536))
        self.assertEqual(self.record_for("/expect")[0]["transaction"]["request"]["body"], "data")

    def test_tls_facts_are_recorded(self):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        with socket.create_connection(("127.0.0.1", self.probe.tls_port), timeout=10) as raw:
            with context.wrap_socket(raw, server_hostname="shop.example.com") as sock:
                type(self).sent += 1
                sock.sendall(b"GET /tls-test HTTP/1.1\r\nHost: shop.example.com\r\n"
                             b"Connection: close\r\n\r\n")
                self.assertTrue(sock.recv(65536).startswith(b"HTTP/1.1 "))
                version, cipher = sock.version(), sock.cipher()[0]
        tls = self.record_for("/tls-test")[0]["webtrap"]["tls"]
        self.assertEqual(tls["sni"], "shop.example.com")
        self.assertEqual(tls["version"], version)
        self.assertEqual(tls["cipher"], cipher)

    def test_plain_http_on_tls_port(self):
        type(self).sent += 1
        response = send_raw(self.probe.tls_port, b"GET /plain-on-tls HTTP/1.1\r\nHost: a\r\n\r\n")
        self.assertTrue(response.startswith(b"HTTP/1.1 400 "), response[:80])
        record = self.record_for("/plain-on-tls")[0]
        self.assertNotIn("tls", record["webtrap"])

    def test_ipv6_listener(self):
        type(self).sent += 1
        send_raw(self.probe.http6_port, b"GET /ipv6-test HTTP/1.1\r\nHost: a\r\n"
                 b"Connection: close\r\n\r\n", host="::1")
        self.assertEqual(self.record_for("/ipv6-test")[0]["transaction"]["client_ip"], "::1")

    def test_bait_port_hit(self):
        type(self).sent += 1
        send_raw(self.probe.bait_port, b"GET /bait-port HTTP/1.1\r\nHost: a\r\n"
                 b"Connection: close\r\n\r\n")
        record = self.record_for("/bait-port")[0]
        self.assertIn("fake_port", [bait["kind"] for bait in record["webtrap"]["baits"]])
        rule_ids = [m["details"]["ruleId"] for m in record["transaction"]["messages"]]
        self.assertTrue(any(rule.startswith("770") for rule in rule_ids), rule_ids)

    def test_slow_sender_is_cut_off_and_recorded(self):
        with socket.create_connection(("127.0.0.1", self.probe.http_port), timeout=10) as sock:
            type(self).sent += 1
            sock.sendall(b"GET /slowloris HTTP/1.1\r\nHost: a\r\n")
            started = time.monotonic()
            try:
                for _ in range(20):
                    time.sleep(0.5)
                    sock.sendall(b"X-a: b\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass
            self.assertLess(time.monotonic() - started, 8, "read timeout did not cut the sender")
        record = self.record_for("/slowloris")[0]
        self.assertIn("timeout", record["webtrap"]["parse"]["error"])
        self.assertEqual(record["transaction"]["response"]["http_code"], 0)
        self.assertEqual(record["transaction"]["response"]["headers"], {})

    def test_per_source_connection_cap(self):
        before = self.probe.metrics().get('webtrap_connections_rejected_total{reason="source_cap"}', 0)
        sockets = [socket.create_connection(("127.0.0.1", self.probe.http_port)) for _ in range(12)]
        try:
            wait_for(lambda: self.probe.metrics().get(
                'webtrap_connections_rejected_total{reason="source_cap"}', 0) >= before + 4, 10,
                "rejected connections")
        finally:
            for sock in sockets:
                sock.close()

    def test_zz_every_request_has_one_record(self):
        # Runs last (unittest sorts by name): all earlier requests must be on disk.
        wait_for(lambda: len(self.probe.records()) >= self.sent, 20, f"{self.sent} records")
        time.sleep(0.5)
        records = self.probe.records()
        self.assertEqual(len(records), self.sent)
        ids = {r["webtrap"]["event_id"] for r in records}
        self.assertEqual(len(ids), len(records))
        metrics = self.probe.metrics()
        self.assertEqual(metrics["webtrap_records_written_total"], len(records))


if __name__ == "__main__":
    result = unittest.main(verbosity=2, exit=False).result
    sys.exit(0 if result.wasSuccessful() else 1)
