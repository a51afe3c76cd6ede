#!/usr/bin/env python3
"""A stand-in for the collector's ingest API, for shipper tests only.

It implements just enough of `POST /v1/records` to test the shipper: it
checks the bearer token, gunzips the body, counts the event id of every
line and returns {"received","stored","duplicates","rejected"}. It stores
nothing durably and is not the collector. Tests switch it into failure
modes (503, 429, 401, 413 over a size, slow responses) and stop and restart
it on the same port.

Run alone: collector_stand_in.py --port 7380 --token secret
"""

import argparse
import gzip
import http.server
import json
import socket
import threading
import time
import zlib


def event_id_of(record):
    """Return the record's event id: webtrap.event_id, or a top-level event_id."""
    if isinstance(record, dict):
        nested = record.get("webtrap")
        if isinstance(nested, dict) and "event_id" in nested:
            return nested["event_id"]
        return record.get("event_id")
    return None


class CollectorStandIn:
    """The stand-in server, run on a thread of the test process."""

    def __init__(self, token, port=0, host="127.0.0.1", tls_context=None):
        self.token = token
        self.tls_context = tls_context  # an ssl.SSLContext for HTTPS, None for plain HTTP
        self.host = host
        self.port = port
        self.lock = threading.Lock()
        self.event_counts = {}  # event id -> times received
        self.requests = 0
        self.statuses = {}  # HTTP status -> responses sent
        self.rejected_lines = 0
        self.content_encodings = set()
        # Failure modes, changed by the test.
        self.mode = "ok"  # ok, 503, 429, 401, slow
        self.retry_after = None  # seconds, sent with 503 and 429
        self.slow_seconds = 0.0
        self.max_body_bytes = None  # respond 413 above this many decompressed bytes
        self.server = None
        self.thread = None
        self.connections = set()  # open client sockets, closed by stop()

    def start(self):
        handler = self._make_handler()
        self.server = http.server.ThreadingHTTPServer((self.host, self.port), handler)
        self.server.daemon_threads = True
        if self.tls_context is not None:
            self.server.socket = self.tls_context.wrap_socket(self.server.socket,
                                                              server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        """Stop listening and cut every open connection, as a crashed collector would."""
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
        with self.lock:
            connections = list(self.connections)
            self.connections.clear()
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    @property
    def url(self):
        scheme = "https" if self.tls_context is not None else "http"
        return f"{scheme}://{self.host}:{self.port}"

    def set_mode(self, mode, retry_after=None, slow_seconds=0.0):
        with self.lock:
            self.mode = mode
            self.retry_after = retry_after
            self.slow_seconds = slow_seconds

    def snapshot(self):
        with self.lock:
            return {
                "event_counts": dict(self.event_counts),
                "requests": self.requests,
                "statuses": dict(self.statuses),
                "rejected_lines": self.rejected_lines,
            }

    def _count(self, status):
        self.statuses[status] = self.statuses.get(status, 0) + 1

    def _make_handler(self):
        stand_in = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                super().setup()
                with stand_in.lock:
                    stand_in.connections.add(self.connection)

            def finish(self):
                with stand_in.lock:
                    stand_in.connections.discard(self.connection)
                try:
                    super().finish()
                except OSError:
                    pass

            def log_message(self, *args):
                pass

            def _send(self, status, body, headers=()):
                data = json.dumps(body).encode() if not isinstance(body, bytes) else body
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers:
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                length = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(length)
                with stand_in.lock:
                    stand_in.requests += 1
                    mode = stand_in.mode
                    retry_after = stand_in.retry_after
                    slow = stand_in.slow_seconds
                    limit = stand_in.max_body_bytes
                if self.path != "/v1/records":
                    with stand_in.lock:
                        stand_in._count(404)
                    return self._send(404, {"error": "unknown path"})
                if self.headers.get("Authorization") != f"Bearer {stand_in.token}" or mode == "401":
                    with stand_in.lock:
                        stand_in._count(401)
                    return self._send(401, {"error": "unknown token"})
                if mode in ("503", "429"):
                    headers = [("Retry-After", str(retry_after))] if retry_after is not None else []
                    with stand_in.lock:
                        stand_in._count(int(mode))
                    return self._send(int(mode), {"error": "not now"}, headers)
                if mode == "slow":
                    time.sleep(slow)

                encoding = self.headers.get("Content-Encoding", "")
                stand_in.content_encodings.add(encoding)
                try:
                    body = gzip.decompress(raw) if encoding == "gzip" else raw
                except (OSError, EOFError, zlib.error):
                    with stand_in.lock:
                        stand_in._count(400)
                    return self._send(400, {"error": "body is not gzip"})
                if limit is not None and len(body) > limit:
                    with stand_in.lock:
                        stand_in._count(413)
                    return self._send(413, {"error": "body too large"})

                received = stored = duplicates = rejected = 0
                with stand_in.lock:
                    for line in body.split(b"\n"):
                        if not line.strip():
                            continue
                        received += 1
                        try:
                            event_id = event_id_of(json.loads(line))
                        except ValueError:
                            event_id = None
                        if event_id is None:
                            rejected += 1
                            stand_in.rejected_lines += 1
                            continue
                        seen = stand_in.event_counts.get(event_id, 0)
                        stand_in.event_counts[event_id] = seen + 1
                        if seen:
                            duplicates += 1
                        else:
                            stored += 1
                    stand_in._count(200)
                try:
                    self._send(200, {"received": received, "stored": stored,
                                     "duplicates": duplicates, "rejected": rejected})
                except OSError:
                    pass  # the shipper left, for example killed with the probe

        return Handler


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=7380)
    parser.add_argument("--token", required=True)
    args = parser.parse_args()
    stand_in = CollectorStandIn(args.token, args.port).start()
    print(f"collector stand-in listening on {stand_in.url}", flush=True)
    try:
        while True:
            time.sleep(5)
            snap = stand_in.snapshot()
            print(f"requests={snap['requests']} events={len(snap['event_counts'])}", flush=True)
    except KeyboardInterrupt:
        stand_in.stop()


if __name__ == "__main__":
    main()
