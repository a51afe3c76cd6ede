#!/usr/bin/env python3
"""The collector serves the MISP feed folder read-only over its HTTPS ingest listener.

A real collector with `outputs.misp_feed.serve` tails two probe spool files
(1,200 records from 60 sources in two sensor groups over two UTC days). The
test then pulls the feed over HTTPS as MISP does (manifest.json, every
<uuid>.json it lists, hashes.csv) with the token in the Authorization
header, and checks:

- every event, ip-src attribute, http-request object and sighting expected
  from the records it wrote, and each event against the MISP schemas,
  object templates and describeTypes.json;
- hashes.csv against the md5 of every attribute value;
- ETag and Last-Modified revalidation (304), HEAD, and the content types;
- denials: no or a wrong token, path traversal in several encodings, the
  state database, dotfiles, a symlink to a file outside the folder, a FIFO,
  a subfolder, and methods other than GET and HEAD;
- the webtrap_collector_published_* counters in /metrics.

Exit status 77 (skip) when the openssl command, python3-jsonschema or the
MISP reference data is missing.
"""
import hashlib
import http.client
import ipaddress
import json
import os
import pathlib
import secrets
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_misp_feed as feed_test  # noqa: E402
from probe_harness import CollectorRun, collector_ports, wait_for  # noqa: E402

feed_test.RECORDS = 1200
feed_test.SOURCES = 60
PREFIX = "/feeds/misp"
check = feed_test.check


def make_certificate(folder):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", "server.key", "-out", "server.pem"],
                   cwd=folder, check=True, capture_output=True, timeout=60)


class Client:
    """Sends one raw HTTP/1.1 request per TLS connection, so targets go out byte for byte."""

    def __init__(self, port, cafile, token):
        self.port = port
        self.context = ssl.create_default_context(cafile=str(cafile))
        self.token = token

    def request(self, target, method="GET", token=None, headers=(), raw_target=None):
        """Returns (status, headers dict with lowercase names, body bytes)."""
        token = self.token if token is None else token
        lines = [f"{method} {target} HTTP/1.1".encode() if raw_target is None
                 else method.encode() + b" " + raw_target + b" HTTP/1.1",
                 b"Host: 127.0.0.1", b"Connection: close"]
        if token:
            lines.append(f"Authorization: {token}".encode())
        lines += [h.encode() for h in headers]
        data = b"\r\n".join(lines) + b"\r\n\r\n"
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as plain:
            with self.context.wrap_socket(plain, server_hostname="127.0.0.1") as sock:
                sock.sendall(data)
                chunks = []
                while True:
                    try:
                        chunk = sock.recv(65536)
                    except (ssl.SSLError, ConnectionResetError, socket.timeout):
                        break
                    if not chunk:
                        break
                    chunks.append(chunk)
        response = b"".join(chunks)
        if not response:
            return None, {}, b""
        head, _, body = response.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        fields = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip()
        return int(status_line.split()[1]), fields, body


def metrics(admin_port):
    text = urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=10).read()
    values = {}
    for line in text.decode().splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


def expected_from_spools(workdir):
    """Sources and hits per event uuid, and hits per (event, source), from the spool files."""
    events = {}
    for group in feed_test.GROUPS:
        for line in (workdir / f"{group}.ndjson").read_text().splitlines():
            record = json.loads(line)
            day = record["webtrap"]["@timestamp"][:10]
            ip = str(ipaddress.ip_address(record["transaction"]["client_ip"]))
            key = str(uuid.uuid5(feed_test.NAMESPACE, f"group|{group}|{day}"))
            events.setdefault(key, Counter())[ip] += 1
    return events


def pull_feed(client, feed):
    """Pulls the feed as MISP does. Returns (manifest, events, hashes.csv text, byte count)."""
    received = 0
    status, headers, body = client.request(f"{PREFIX}/manifest.json")
    check(status == 200, f"manifest.json: status {status}")
    check(headers.get("content-type") == "application/json",
          f"manifest.json: Content-Type {headers.get('content-type')}")
    check(body == (feed / "manifest.json").read_bytes(), "manifest.json: body differs from the file")
    received += len(body)
    manifest = json.loads(body)
    events = []
    for event_uuid in manifest:
        status, headers, body = client.request(f"{PREFIX}/{event_uuid}.json")
        check(status == 200, f"{event_uuid}.json: status {status}")
        check(headers.get("content-type") == "application/json",
              f"{event_uuid}.json: Content-Type {headers.get('content-type')}")
        check(int(headers.get("content-length", -1)) == len(body),
              f"{event_uuid}.json: Content-Length {headers.get('content-length')}, body {len(body)}")
        received += len(body)
        events.append(json.loads(body))
    status, headers, body = client.request(f"{PREFIX}/hashes.csv")
    check(status == 200, f"hashes.csv: status {status}")
    check(headers.get("content-type") == "text/csv",
          f"hashes.csv: Content-Type {headers.get('content-type')}")
    received += len(body)
    return manifest, events, body.decode(), received


def check_round_trip(manifest, events, hashes_text, spools, documents):
    check(sorted(manifest) == sorted(spools),
          f"manifest events {sorted(manifest)} != expected {sorted(spools)}")
    signatures = feed_test.expected_from_documents(documents)
    hashes = {}
    for event in events:
        body = event["Event"]
        event_uuid = body["uuid"]
        check(body["timestamp"] == manifest[event_uuid]["timestamp"],
              f"{event_uuid}: timestamp differs from the manifest")
        hits = spools.get(event_uuid, Counter())
        ip_src = {a["value"]: a for a in body["Attribute"] if a["type"] == "ip-src"}
        check(len(ip_src) == len([a for a in body["Attribute"] if a["type"] == "ip-src"]),
              f"{event_uuid}: duplicate ip-src")
        check(set(ip_src) == set(hits),
              f"{event_uuid}: ip-src {sorted(set(ip_src) ^ set(hits))} differ from the records")
        for ip, count in hits.items():
            sightings = ip_src.get(ip, {}).get("Sighting", [])
            check(len(sightings) == count - 1,
                  f"{event_uuid}: {ip} has {len(sightings)} sightings, expected {count - 1}")
        all_sightings = [s for a in body["Attribute"] for s in a.get("Sighting", [])]
        check(len(all_sightings) == sum(hits.values()) - len(hits),
              f"{event_uuid}: {len(all_sightings)} sightings, expected "
              f"{sum(hits.values()) - len(hits)}")
        http = [o for o in body["Object"] if o["name"] == "http-request"]
        want = signatures.get(event_uuid, {"signatures": set()})["signatures"]
        check(len(http) == len(want),
              f"{event_uuid}: {len(http)} http-request objects, expected {len(want)}")
        values = [a["value"] for a in body["Attribute"]] + \
            [a["value"] for o in body["Object"] for a in o["Attribute"]]
        hashes[event_uuid] = sorted(hashlib.md5(v.encode()).hexdigest() for v in values)
        print(f"{body['info']}: {len(ip_src)} ip-src, {len(http)} http-request, "
              f"{len(all_sightings)} sightings", flush=True)
    csv = {}
    for line in hashes_text.splitlines():
        md5, event_uuid = line.split(",")
        csv.setdefault(event_uuid, []).append(md5)
    check({k: sorted(v) for k, v in csv.items()} == hashes,
          "hashes.csv does not match the md5 of the attribute values of the event files")


def check_revalidation(client):
    """Returns the number of 304 responses it caused."""
    # A file changed in the current second gets no Last-Modified (its value
    # could repeat after another change within that second), so wait a second.
    time.sleep(1.1)
    status, headers, body = client.request(f"{PREFIX}/manifest.json")
    etag = headers.get("etag")
    last_modified = headers.get("last-modified")
    check(etag is not None and last_modified is not None, "manifest.json: no ETag or Last-Modified")
    status, headers, body = client.request(f"{PREFIX}/manifest.json",
                                           headers=[f"If-None-Match: {etag}"])
    check(status == 304 and body == b"", f"If-None-Match: status {status}, {len(body)} body bytes")
    check(headers.get("etag") == etag, "304 without the ETag")
    status, _, _ = client.request(f"{PREFIX}/manifest.json",
                                  headers=[f'If-None-Match: "other", W/{etag}'])
    check(status == 304, f"If-None-Match with a list and a weak tag: status {status}")
    status, _, body = client.request(f"{PREFIX}/manifest.json",
                                     headers=['If-None-Match: "other"'])
    check(status == 200 and body, f"If-None-Match with another tag: status {status}")
    status, _, body = client.request(f"{PREFIX}/manifest.json",
                                     headers=[f"If-Modified-Since: {last_modified}"])
    check(status == 304 and body == b"", f"If-Modified-Since: status {status}")
    status, _, body = client.request(f"{PREFIX}/manifest.json",
                                     headers=["If-Modified-Since: Sat, 01 Jan 2000 00:00:00 GMT"])
    check(status == 200 and body, f"If-Modified-Since in the past: status {status}")
    status, headers, body = client.request(f"{PREFIX}/manifest.json", method="HEAD")
    check(status == 200 and body == b"", f"HEAD: status {status}, {len(body)} body bytes")
    check(headers.get("etag") == etag, "HEAD: another ETag")
    return 3


def check_keep_alive(client, token):
    """Sends GET, HEAD, a revalidation and GET again on one connection, as a polling client may.

    Returns the number of 304 responses it caused."""
    connection = http.client.HTTPSConnection("127.0.0.1", client.port, context=client.context,
                                             timeout=10)
    headers = {"Authorization": f"Bearer {token}"}
    try:
        connection.request("GET", f"{PREFIX}/manifest.json", headers=headers)
        first = connection.getresponse()
        body = first.read()
        check(first.status == 200 and body, f"keep-alive GET: status {first.status}")
        etag = first.getheader("ETag")
        connection.request("HEAD", f"{PREFIX}/manifest.json", headers=headers)
        head = connection.getresponse()
        check(head.read() == b"", "keep-alive HEAD: a body was sent")
        check(head.getheader("Content-Length") == str(len(body)),
              f"keep-alive HEAD: Content-Length {head.getheader('Content-Length')}")
        connection.request("GET", f"{PREFIX}/manifest.json",
                           headers=dict(headers, **{"If-None-Match": etag}))
        revalidated = connection.getresponse()
        check(revalidated.status == 304 and revalidated.read() == b"",
              f"keep-alive revalidation: status {revalidated.status}")
        connection.request("GET", f"{PREFIX}/hashes.csv", headers=headers)
        last = connection.getresponse()
        check(last.status == 200 and last.read(), f"keep-alive GET after 304: status {last.status}")
    finally:
        connection.close()
    return 1


def check_tokens(client, token):
    """Returns the number of requests denied for the token."""
    denials = [("no token", ""), ("wrong token", "Bearer " + "0" * len(token)),
               ("a prefix of the token", "Bearer " + token[:-1]),
               ("the token in Basic", "Basic " + token)]
    for what, value in denials:
        # An empty token sends no Authorization header.
        status, headers, body = client.request(f"{PREFIX}/manifest.json", token=value)
        check(status == 401, f"{what}: status {status}")
        check(headers.get("www-authenticate") == "Bearer", f"{what}: no WWW-Authenticate")
        check(b'"Event"' not in body and b"{" not in body, f"{what}: a feed body was sent")
    for what, value in [("Bearer", "Bearer " + token), ("bare", token)]:
        status, _, _ = client.request(f"{PREFIX}/hashes.csv", token=value)
        check(status == 200, f"the token as {what}: status {status}")
    return len(denials)


def check_denials(client, workdir, feed, any_event):
    """Sends requests that must not reach any file. Returns the expected denial counts."""
    secret = b"outside-secret-" + secrets.token_hex(8).encode()
    (workdir / "outside.json").write_bytes(secret)
    (feed / ".hidden.json").write_bytes(secret)
    (feed / ".manifest.json.tmp").write_bytes(secret)
    link = f"{uuid.uuid4()}.json"
    os.symlink(workdir / "outside.json", feed / link)
    fifo = f"{uuid.uuid4()}.json"
    os.mkfifo(feed / fifo)
    subfolder = f"{uuid.uuid4()}.json"
    (feed / subfolder).mkdir()
    (feed / subfolder / "manifest.json").write_bytes(secret)

    name_denials = [
        "/../collector.yaml", "/../outside.json", "/..%2foutside.json", "/%2e%2e/outside.json",
        "/%2E%2E%2Foutside.json", "/%252e%252e%252foutside.json", "/..%5coutside.json",
        "/%2fetc%2fpasswd", "//etc/passwd", "/manifest.json%00", "/manifest.json%00.json",
        "/./manifest.json", "/sub/../manifest.json", "/state.sqlite", "/state.sqlite-wal", "/.hidden.json",
        "/.manifest.json.tmp", f"/{subfolder}/manifest.json", "/manifest%2ejson",
        f"/{any_event.upper()}.json", "/../../outside.json", "", "/",
    ]
    for suffix in name_denials:
        status, _, body = client.request(PREFIX + suffix)
        check(status == 404, f"{PREFIX + suffix}: status {status}")
        check(secret not in body and b"SQLite" not in body, f"{PREFIX + suffix}: leaked content")
    raw = [b"/feeds/misp/..\\outside.json", b"/feeds/misp/manifest.json\x00",
           b"/feeds/misp/\x00../outside.json"]
    for target in raw:
        status, _, body = client.request(None, raw_target=target)
        check(status != 200, f"{target!r}: status {status}")
        check(secret not in body, f"{target!r}: leaked content")
    backslash_denied = 1  # the first raw target parses and reaches the name check
    # Targets outside the prefix reach the ingest endpoints, which return 404.
    for target in ["/feeds/outside.json", "/feeds/mispx/outside.json",
                   "/etc/passwd", str(workdir / "outside.json")]:
        status, _, body = client.request(target)
        check(status == 404, f"{target}: status {status}")
        check(secret not in body, f"{target}: leaked content")

    status, _, body = client.request(f"{PREFIX}/{link}")
    check(status == 404 and secret not in body, f"symlink to a file outside: status {status}")
    started = time.monotonic()
    status, _, _ = client.request(f"{PREFIX}/{fifo}")
    check(status == 404, f"FIFO: status {status}")
    check(time.monotonic() - started < 5, "a FIFO in the folder held the request")
    status, _, _ = client.request(f"{PREFIX}/{subfolder}")
    check(status == 404, f"subfolder: status {status}")

    methods = ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "PROPFIND"]
    for method in methods:
        status, headers, _ = client.request(f"{PREFIX}/manifest.json", method=method,
                                            headers=["Content-Length: 0"])
        check(status == 405, f"{method}: status {status}")
        check(headers.get("allow") == "GET, HEAD", f"{method}: Allow {headers.get('allow')}")
    check((feed / "manifest.json").exists(), "manifest.json is gone after DELETE")
    return {"name": len(name_denials) + backslash_denied, "symlink": 1, "not_regular": 2,
            "method": len(methods)}


def main():
    if not feed_test.MISP_DIR.is_dir():
        print(f"skip: {feed_test.MISP_DIR} is missing")
        return 77
    if shutil.which("openssl") is None:
        print("skip: the openssl command is missing")
        return 77
    try:
        import jsonschema  # noqa: F401
    except ImportError:
        print("skip: python3-jsonschema is missing")
        return 77

    with CollectorRun("webtrap-misp-feed-serving-") as run:
        workdir = run.folder
        feed_test.write_spools(workdir)
        make_certificate(workdir)
        token = secrets.token_hex(32)
        feed = workdir / "feed"
        store = workdir / "state" / "store.sqlite"
        inputs = "\n".join(
            f"    - {{path: {workdir / (g + '.ndjson')}, format: webtrap, sensor_id: sensor-{g}, "
            f"group: {g}}}" for g in feed_test.GROUPS)
        config = workdir / "collector.yaml"
        # The state database sits inside the feed folder here, so that the
        # test can show that a file in the folder is still not served.
        config.write_text(f"""listen: 127.0.0.1:0
tls:
  certificate: {workdir / "server.pem"}
  private_key: {workdir / "server.key"}
admin:
  listen: 127.0.0.1:0
state_dir: {workdir / "state"}
inputs:
  files:
{inputs}
outputs:
  misp_feed:
    path: {feed}
    state_path: {feed / "state.sqlite"}
    batch_max_events: 500
    flush_interval: 100ms
    serve:
      prefix: {PREFIX}
      token: {token}
""")
        collector = run.start(config)
        ports = collector_ports(collector, workdir)
        Query = feed_test.Collector.query

        def caught_up():
            last = Query(store, "SELECT count(*), max(seq) FROM events")
            cursor = Query(store, "SELECT seq FROM cursors WHERE output = 'misp_feed'")
            return bool(last and cursor) and last[0][0] >= feed_test.RECORDS and \
                cursor[0][0] == last[0][1]

        started = time.monotonic()
        wait_for(caught_up, 120, "the feed output to catch up")
        print(f"feed caught up in {time.monotonic() - started:.1f} s", flush=True)
        documents = [row[0] for row in Query(store, "SELECT document FROM events")]
        check(len(documents) == feed_test.RECORDS,
              f"{len(documents)} events stored, expected {feed_test.RECORDS}")

        client = Client(ports["ingest"], workdir / "server.pem", "Bearer " + token)
        manifest, events, hashes_text, received = pull_feed(client, feed)
        spools = expected_from_spools(workdir)
        check(len(spools) == 4, f"{len(spools)} groups x days in the records, expected 4")
        check_round_trip(manifest, events, hashes_text, spools, documents)
        feed_test.validate(feed_test.MISP_DIR / "event-schema-lax.json", events, workdir,
                           "event-schema-lax")
        feed_test.validate(feed_test.MISP_DIR / "event-schema.json",
                           [feed_test.strip_newer_fields(e) for e in events], workdir,
                           "event-schema")
        describe = feed_test.load_json(feed_test.MISP_DIR / "describeTypes.json")
        credential_objects = feed_test.check_objects(events, describe.get("result", describe))
        check(credential_objects > 0, "no credential object from the canary hits")

        not_modified = check_revalidation(client)
        not_modified += check_keep_alive(client, token)
        token_denials = check_tokens(client, token)
        denials = check_denials(client, workdir, feed, next(iter(manifest)))

        values = metrics(ports["admin"])
        label = 'folder="misp_feed"'
        check(values.get(f"webtrap_collector_published_not_modified_total{{{label}}}") ==
              not_modified, f"not-modified counter is "
              f"{values.get(f'webtrap_collector_published_not_modified_total{{{label}}}')}, "
              f"expected {not_modified}")
        sent = values.get(f"webtrap_collector_published_bytes_total{{{label}}}", 0)
        check(sent >= received, f"bytes counter {sent} is below the {received} bytes pulled")
        expected_denied = dict(denials, token=token_denials)
        for reason in ("too_large", "busy", "read_error"):
            expected_denied.setdefault(reason, 0)
        for reason, count in expected_denied.items():
            name = f'webtrap_collector_published_denied_total{{{label},reason="{reason}"}}'
            check(values.get(name) == count, f"{name} is {values.get(name)}, expected {count}")
        ok = values.get(f'webtrap_collector_published_requests_total{{{label},status="200"}}', 0)
        check(ok >= len(manifest) + 2, f"{ok} requests with status 200 counted")
        print(f"pulled {len(manifest)} events, {received} bytes; {sum(expected_denied.values())} "
              f"requests denied", flush=True)

    if feed_test.failures:
        print(f"{len(feed_test.failures)} checks failed")
        return 1
    print("MISP feed serving: every check passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
