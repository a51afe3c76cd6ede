#!/usr/bin/env python3
"""Elasticsearch test double for webtrap's tests and benchmark.

This is not Elasticsearch. It is a small HTTP server written from the
Elasticsearch 8 REST API documentation. It implements the part of the API that
the collector's Elasticsearch output and setup command use: cluster info,
_bulk with per-item results, index templates, ILM policies, data streams,
document lookup by id, _count and _cat/indices. Documents live in memory.

On top of the API it offers fault injection (request-level 429/5xx, per-item
429, mapping errors, slow responses, an outage), statistics and the list of
stored ids under /_double/, and it can act as a plain HTTP proxy for
absolute-form request targets on loopback. See
docs/elasticsearch-test-double.md.

Python standard library only. Binds to loopback only.
"""

from __future__ import annotations

import argparse
import base64
import fnmatch
import gzip
import http.client
import ipaddress
import json
import random
import re
import ssl
import sys
import threading
import time
import uuid
import zlib
from datetime import datetime, timezone
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import double_server
from double_server import exchange_entry, require_loopback, serve, server_class_for

DEFAULT_VERSION = "8.15.0"
# Characters Elasticsearch does not allow in index names (8.x).
INVALID_INDEX_CHARS = set('\\/*?"<>| ,#:')

# Built-in composable template of Elasticsearch 8 that turns logs-*-* into data
# streams. User templates need a priority above 100 to win over it.
BUILTIN_TEMPLATES = {
    "logs": {
        "index_patterns": ["logs-*-*"],
        "data_stream": {"hidden": False, "allow_custom_routing": False},
        "priority": 100,
        "composed_of": ["logs@mappings", "logs@settings"],
        "_meta": {"description": "built-in logs template (test double)", "managed": True},
    }
}


def error_body(status: int, error_type: str, reason: str, **extra) -> dict:
    """Build the error envelope Elasticsearch returns for a failed request."""
    cause = {"type": error_type, "reason": reason}
    cause.update(extra)
    return {"error": {"root_cause": [dict(cause)], **cause}, "status": status}


class Faults(double_server.Faults):
    """Injected failures, set from the command line or POST /_double/faults."""

    FIELDS = {
        "fail_next": int,  # the next N requests to _bulk get `fail_status`
        "fail_status": int,  # 429, 500, 502 or 503
        "fail_all_requests": bool,  # fail_next applies to every path, not only _bulk
        "retry_after": int,  # seconds in the Retry-After header, 0 for none
        "item_429_fraction": float,  # share of items that get a per-item 429
        "item_429_next": int,  # the next N items get a per-item 429
        "item_5xx_next": int,  # the next N items get a per-item 503
        "delay_ms": int,  # sleep before every response
        "reject_field": str,  # dotted field name: documents with reject_value get a 400
        "reject_value": str,
        "reject_type": str,  # mapper_parsing_exception or document_parsing_exception
        "down_seconds": float,  # close every connection for this long, from now
    }

    def __init__(self) -> None:
        self.fail_next = 0
        self.fail_status = 429
        self.fail_all_requests = False
        self.retry_after = 0
        self.item_429_fraction = 0.0
        self.item_429_next = 0
        self.item_5xx_next = 0
        self.delay_ms = 0
        self.reject_field = ""
        self.reject_value = ""
        self.reject_type = "document_parsing_exception"
        self.down_until = 0.0

    def validate(self) -> None:
        if self.fail_status not in (429, 500, 502, 503):
            raise ValueError(f"fail_status {self.fail_status} is not one of 429, 500, 502, 503")


class Index:
    """One concrete index (or the backing index of a data stream)."""

    def __init__(self, name: str, data_stream: str | None = None) -> None:
        self.name = name
        self.uuid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode()[:22]
        self.data_stream = data_stream
        self.docs: dict[str, object] = {}  # _id -> source (None in fast mode)
        self.seq_no = 0
        self.created = datetime.now(timezone.utc)


class State:
    """Everything the double stores, behind one lock."""

    def __init__(self, fast: bool) -> None:
        self.lock = threading.RLock()
        self.fast = fast
        self.indices: dict[str, Index] = {}
        self.data_streams: dict[str, str] = {}  # data stream -> backing index name
        self.templates: dict[str, dict] = {}
        self.ilm_policies: dict[str, dict] = {}
        self.faults = Faults()
        self.random = random.Random(1)
        self.recent: list[dict] = []  # last requests and responses, for fixtures
        self.record_limit = 0
        self.reset_stats()

    def reset_stats(self) -> None:
        self.stats = {
            "requests": 0,
            "bulk_requests": 0,
            "proxied_requests": 0,
            "items": 0,
            "created": 0,
            "conflicts": 0,
            "item_errors": {},  # status -> count
            "request_errors": {},  # status -> count
            "gzip_requests": 0,
            "bytes_received": 0,
        }

    def all_templates(self) -> dict[str, dict]:
        merged = dict(BUILTIN_TEMPLATES)
        merged.update(self.templates)
        return merged

    def matching_template(self, name: str) -> tuple[str, dict] | None:
        """Return the template with the highest priority whose patterns match."""
        best = None
        for template_name, body in self.all_templates().items():
            patterns = body.get("index_patterns", [])
            if isinstance(patterns, str):
                patterns = [patterns]
            if any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns):
                priority = int(body.get("priority", 0))
                if best is None or priority > best[0]:
                    best = (priority, template_name, body)
        return None if best is None else (best[1], best[2])

    def create_data_stream(self, name: str) -> Index:
        day = datetime.now(timezone.utc).strftime("%Y.%m.%d")
        backing = Index(f".ds-{name}-{day}-000001", data_stream=name)
        self.indices[backing.name] = backing
        self.data_streams[name] = backing.name
        return backing

    def resolve_write_target(self, name: str) -> tuple[Index | None, dict | None]:
        """Find or auto-create the index a bulk item writes to.

        Returns (index, None) or (None, error) with an item error object.
        """
        if name in self.data_streams:
            return self.indices[self.data_streams[name]], None
        if name in self.indices:
            return self.indices[name], None
        problem = invalid_index_name(name)
        if problem:
            return None, {"status": 400, "type": "invalid_index_name_exception",
                          "reason": f"Invalid index name [{name}], {problem}"}
        match = self.matching_template(name)
        if match and "data_stream" in match[1]:
            return self.create_data_stream(name), None
        index = Index(name)
        self.indices[name] = index
        return index, None

    def resolve_read(self, expression: str) -> list[Index]:
        """Indices named by a read expression: names, data streams, wildcards."""
        found: list[Index] = []
        for part in expression.split(","):
            if part in ("_all", "*"):
                part = "*"
            for stream, backing in self.data_streams.items():
                if fnmatch.fnmatchcase(stream, part):
                    found.append(self.indices[backing])
            for index in self.indices.values():
                if index.data_stream is None and fnmatch.fnmatchcase(index.name, part):
                    found.append(index)
                elif index.name == part:
                    found.append(index)
        unique: dict[str, Index] = {index.name: index for index in found}
        return list(unique.values())


def invalid_index_name(name: str) -> str:
    """Return why `name` is not a valid index name, or '' when it is."""
    if not name:
        return "must not be empty"
    if name != name.lower():
        return "must be lowercase"
    if name.startswith(("-", "_", "+")):
        return "must not start with '_', '-', or '+'"
    if name in (".", ".."):
        return "must not be '.' or '..'"
    bad = sorted(set(name) & INVALID_INDEX_CHARS)
    if bad:
        return f"must not contain the following characters {bad}"
    if len(name.encode()) > 255:
        return "index name is too long"
    return ""


def lookup_field(document: object, dotted: str) -> object:
    """Read a field by dotted name, as an object path or a literal dotted key."""
    if isinstance(document, dict) and dotted in document:
        return document[dotted]
    current = document
    for part in dotted.split("."):
        if not isinstance(current, dict) or part not in current:
            return None
        current = current[part]
    return current


class BulkError(Exception):
    """A whole-request error of _bulk (the request gets this status)."""

    def __init__(self, status: int, error_type: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.error_type = error_type
        self.reason = reason


def check_bulk_framing(body: bytes) -> None:
    """Reject an empty body or one without the final newline Elasticsearch requires."""
    if not body:
        raise BulkError(400, "action_request_validation_exception",
                        "Validation Failed: 1: no requests added;")
    if not body.endswith(b"\n"):
        raise BulkError(400, "illegal_argument_exception",
                        "The bulk request must be terminated by a newline [\\n]")


def split_bulk_lines(body: bytes) -> list[bytes]:
    """Split an NDJSON bulk body. Elasticsearch requires a final newline."""
    check_bulk_framing(body)
    lines = body.split(b"\n")
    lines.pop()  # the empty string after the final newline
    return lines


# {"create":{"_index":"NAME","_id":"ID"}} where ID is printable ASCII other
# than quote and backslash, so it needs no JSON escaping. Groups: 1 the
# operation and index together (a cache key), 2 the operation, 3 the index,
# 4 the id. The fast mode matches it inside the whole body with endpos at
# the line's newline, where \Z matches.
SIMPLE_ACTION = re.compile(
    rb'\{"((create|index)":\{"_index":"([a-z0-9._+-]*))","_id":"([\x20\x21\x23-\x5b\x5d-\x7e]*)"\}\}\Z')


def parse_action(line: bytes, line_number: int) -> tuple[str, dict]:
    try:
        action = json.loads(line)
    except ValueError as error:
        raise BulkError(400, "x_content_parse_exception",
                        f"[{line_number}:1] Malformed action/metadata line [{line_number}]: {error}")
    if not isinstance(action, dict) or len(action) != 1:
        raise BulkError(400, "illegal_argument_exception",
                        f"Malformed action/metadata line [{line_number}], expected a single "
                        "object with one of create, index, update, delete")
    op, meta = next(iter(action.items()))
    if op not in ("create", "index", "update", "delete") or not isinstance(meta, dict):
        raise BulkError(400, "illegal_argument_exception",
                        f"Malformed action/metadata line [{line_number}], expected one of "
                        f"[create, delete, index, update] but found [{op}]")
    return op, meta


def created_item(op: str, index: Index, doc_id: str, result: str = "created",
                 status: int = 201, version: int = 1) -> dict:
    index.seq_no += 1
    return {op: {"_index": index.name, "_id": doc_id, "_version": version, "result": result,
                 "_shards": {"total": 2, "successful": 1, "failed": 0},
                 "_seq_no": index.seq_no - 1, "_primary_term": 1, "status": status}}


def error_item(op: str, index_name: str, doc_id: str, status: int, error_type: str,
               reason: str, index: Index | None = None) -> dict:
    # Elasticsearch writes "_na_" as the uuid when the index does not exist.
    error = {"type": error_type, "reason": reason,
             "index_uuid": index.uuid if index else "_na_", "shard": "0",
             "index": index.name if index else index_name}
    return {op: {"_index": index.name if index else index_name, "_id": doc_id,
                 "status": status, "error": error}}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "es-double/1"
    sys_version = ""

    # ---- plumbing ---------------------------------------------------------

    @property
    def state(self) -> State:
        return self.server.state  # type: ignore[attr-defined]

    def log_message(self, format: str, *args) -> None:  # noqa: A002
        if self.server.verbose:  # type: ignore[attr-defined]
            sys.stderr.write("es-double: " + (format % args) + "\n")

    def send_json(self, status: int, body: object, headers: dict | None = None) -> None:
        payload = body if isinstance(body, bytes) else json.dumps(body, separators=(",", ":")).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-elastic-product", "Elasticsearch")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        # Recorded before the write, so a client that reads the response and
        # then asks for /_double/requests finds this exchange.
        self.record_exchange(status, payload)
        if self.command != "HEAD":
            self.wfile.write(payload)

    def record_exchange(self, status: int, payload: bytes) -> None:
        state = self.state
        if state.record_limit <= 0 or self.path.startswith("/_double"):
            return
        entry = exchange_entry(self, status, payload)
        with state.lock:
            state.recent.append(entry)
            del state.recent[:-state.record_limit]

    def read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            raise BulkError(411, "illegal_argument_exception",
                            "chunked request bodies are not supported by the test double")
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        with self.state.lock:
            self.state.stats["bytes_received"] += len(body)
        encoding = self.headers.get("Content-Encoding", "").lower()
        if encoding == "gzip":
            try:
                body = gzip.decompress(body)
            except (OSError, EOFError, zlib.error) as error:
                raise BulkError(400, "illegal_argument_exception",
                                f"request body is not valid gzip: {error}")
            with self.state.lock:
                self.state.stats["gzip_requests"] += 1
        elif encoding not in ("", "identity"):
            raise BulkError(400, "illegal_argument_exception",
                            f"unsupported Content-Encoding [{encoding}]")
        if self.state.record_limit > 0:
            self._body_text = body.decode("utf-8", "replace")
        return body

    def read_json_body(self) -> object:
        body = self.read_body()
        try:
            return json.loads(body) if body else {}
        except ValueError as error:
            raise BulkError(400, "x_content_parse_exception", f"request body is not JSON: {error}")

    def authorized(self) -> bool:
        """Check credentials when the server was started with any."""
        server = self.server
        basic, api_key = server.basic_credentials, server.api_key  # type: ignore[attr-defined]
        if basic is None and api_key is None:
            return True
        header = self.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        scheme = scheme.lower()
        if scheme == "basic" and basic is not None:
            try:
                decoded = base64.b64decode(value, validate=True).decode()
            except (ValueError, UnicodeDecodeError):
                decoded = ""
            if decoded == basic:
                return True
            return self.deny(401, "unable to authenticate user for REST request")
        if scheme == "apikey" and api_key is not None:
            if value == api_key:
                return True
            return self.deny(401, "unable to authenticate with provided credentials and anonymous access is not allowed for this request")
        if header:
            return self.deny(401, f"unsupported authentication scheme for REST request [{self.path}]")
        return self.deny(401, f"missing authentication credentials for REST request [{self.path}]")

    def deny(self, status: int, reason: str) -> bool:
        challenge = 'Basic realm="security" charset="UTF-8", ApiKey'
        body = error_body(status, "security_exception", reason,
                          header={"WWW-Authenticate": [challenge]})
        self.count_request_error(status)
        self.send_json(status, body, {"WWW-Authenticate": challenge})
        return False

    def count_request_error(self, status: int) -> None:
        with self.state.lock:
            errors = self.state.stats["request_errors"]
            errors[str(status)] = errors.get(str(status), 0) + 1

    def injected_request_failure(self, is_bulk: bool) -> bool:
        """Answer with an injected 429/5xx when a fault asks for it."""
        state = self.state
        with state.lock:
            faults = state.faults
            if faults.fail_next <= 0 or not (is_bulk or faults.fail_all_requests):
                return False
            faults.fail_next -= 1
            status = faults.fail_status
            retry_after = faults.retry_after
        try:
            self.read_body()  # consumed (and recorded) but not processed
        except BulkError:
            pass
        headers = {"Retry-After": str(retry_after)} if retry_after > 0 else {}
        if status == 429:
            body = error_body(429, "es_rejected_execution_exception",
                              "rejected execution of coordinating operation [coordinating_and_primary_bytes=0, "
                              "replica_bytes=0, all_bytes=0, coordinating_operation_bytes=0, "
                              "max_coordinating_and_primary_bytes=0] (injected by the test double)")
        elif status == 503:
            body = error_body(503, "cluster_block_exception",
                              "blocked by: [SERVICE_UNAVAILABLE/2/no master]; (injected by the test double)")
        else:
            body = error_body(status, "internal_server_error",
                              f"injected HTTP {status} from the test double")
        self.count_request_error(status)
        self.send_json(status, body, headers)
        return True

    def drain_body(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)

    # ---- dispatch ---------------------------------------------------------

    def do_GET(self) -> None:  # noqa: N802
        self.dispatch()

    def do_HEAD(self) -> None:  # noqa: N802
        self.dispatch()

    def do_POST(self) -> None:  # noqa: N802
        self.dispatch()

    def do_PUT(self) -> None:  # noqa: N802
        self.dispatch()

    def do_DELETE(self) -> None:  # noqa: N802
        self.dispatch()

    def dispatch(self) -> None:
        self._body_text = ""
        if self.path.startswith(("http://", "https://")):
            self.proxy()
            return
        with self.state.lock:
            self.state.stats["requests"] += 1
            delay = self.state.faults.delay_ms
        if delay > 0:
            time.sleep(delay / 1000.0)
        url = urlsplit(self.path)
        path = unquote(url.path)
        query = parse_qs(url.query)
        # An outage also cuts keep-alive connections opened before it: the
        # request gets no answer, as when a node goes away. Control requests
        # still work, so a test can end the outage.
        if not path.startswith("/_double/"):
            with self.state.lock:
                down = self.state.faults.down_until > time.monotonic()
                if down:
                    self.state.stats["dropped_requests"] = self.state.stats.get("dropped_requests", 0) + 1
            if down:
                self.close_connection = True
                return
        try:
            if path.startswith("/_double/"):
                self.double_control(path, query)
                return
            if not self.authorized():
                return
            parts = [part for part in path.split("/") if part]
            is_bulk = bool(parts) and parts[-1] == "_bulk"
            if self.injected_request_failure(is_bulk):
                return
            self.route(parts, query)
        except BulkError as error:
            self.count_request_error(error.status)
            self.send_json(error.status, error_body(error.status, error.error_type, error.reason))

    def route(self, parts: list[str], query: dict) -> None:
        method = self.command
        if not parts and method in ("GET", "HEAD"):
            self.cluster_info()
        elif parts[-1:] == ["_bulk"] and method in ("POST", "PUT") and len(parts) <= 2:
            self.bulk(parts[0] if len(parts) == 2 else None)
        elif parts[:1] == ["_index_template"] and len(parts) == 2:
            self.index_template(parts[1])
        elif parts[:2] == ["_ilm", "policy"] and len(parts) == 3:
            self.ilm_policy(parts[2])
        elif parts[:1] == ["_data_stream"] and len(parts) == 2:
            self.data_stream(parts[1])
        elif parts[:2] == ["_cat", "indices"] and method == "GET":
            self.cat_indices(query)
        elif len(parts) == 3 and parts[1] == "_doc" and method in ("GET", "HEAD"):
            self.get_document(parts[0], parts[2])
        elif len(parts) == 2 and parts[1] == "_count" and method in ("GET", "POST"):
            self.count(parts[0])
        elif len(parts) == 2 and parts[1] == "_refresh":
            self.send_json(200, {"_shards": {"total": 1, "successful": 1, "failed": 0}})
        else:
            self.drain_body()
            raise BulkError(405 if parts and parts[-1].startswith("_") else 400,
                            "illegal_argument_exception",
                            f"no handler found for uri [{self.path}] and method [{method}] "
                            "in the test double")

    # ---- API --------------------------------------------------------------

    def cluster_info(self) -> None:
        server = self.server
        version = server.es_version  # type: ignore[attr-defined]
        self.send_json(200, {
            "name": "es-double",
            "cluster_name": "webtrap-test-double",
            "cluster_uuid": server.cluster_uuid,  # type: ignore[attr-defined]
            "version": {
                "number": version,
                "build_flavor": "default",
                "build_type": "test-double",
                "build_hash": "0" * 40,
                "build_date": "2024-01-01T00:00:00.000000000Z",
                "build_snapshot": False,
                "lucene_version": "9.11.1",
                "minimum_wire_compatibility_version": "7.17.0",
                "minimum_index_compatibility_version": "7.0.0",
                **({"distribution": server.distribution} if server.distribution else {}),  # type: ignore[attr-defined]
            },
            "tagline": "You Know, for Search",
        })

    def bulk(self, default_index: str | None) -> None:
        body = self.read_body()
        content_type = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if content_type not in ("application/x-ndjson", "application/json",
                                "application/vnd.elasticsearch+x-ndjson"):
            raise BulkError(406, "media_type_header_exception",
                            f"Content-Type header [{content_type}] is not supported")
        if default_index is not None and invalid_index_name(default_index):
            raise BulkError(400, "invalid_index_name_exception",
                            f"Invalid index name [{default_index}], {invalid_index_name(default_index)}")
        started = time.monotonic()
        if self.state.fast:
            check_bulk_framing(body)
            items, errors = self.bulk_fast(body, default_index)
        else:
            items, errors = self.bulk_full(split_bulk_lines(body), default_index)
        took = int((time.monotonic() - started) * 1000)
        self.send_bulk_response(took, errors, items)

    def send_bulk_response(self, took: int, errors: bool, items: list) -> None:
        # Items may be pre-encoded strings (fast mode) or dicts.
        encoded = ",".join(item if isinstance(item, str) else json.dumps(item, separators=(",", ":"))
                           for item in items)
        payload = f'{{"took":{took},"errors":{"true" if errors else "false"},"items":[{encoded}]}}'
        self.send_json(200, payload.encode())

    def rejection(self, source_line: bytes, doc_id: str,
                  document: object = None) -> tuple[int, str, str] | None:
        """The injected mapping error for a document that has reject_field == reject_value."""
        faults = self.state.faults
        if document is None:
            try:
                document = json.loads(source_line)
            except ValueError:
                return None
        value = lookup_field(document, faults.reject_field)
        if value is None or str(value) != faults.reject_value:
            return None
        return (400, faults.reject_type,
                f"[1:2] failed to parse field [{faults.reject_field}] of type [long] in document "
                f"with id '{doc_id}'. Preview of field's value: '{value}'")

    def next_item_fault(self) -> tuple[int, str, str] | None:
        """Per-item injected failure; the caller holds the state lock."""
        faults = self.state.faults
        if faults.item_429_next > 0:
            faults.item_429_next -= 1
            return (429, "es_rejected_execution_exception",
                    "rejected execution of primary operation (injected by the test double)")
        if faults.item_5xx_next > 0:
            faults.item_5xx_next -= 1
            return (503, "unavailable_shards_exception",
                    "primary shard is not active (injected by the test double)")
        if faults.item_429_fraction > 0 and self.state.random.random() < faults.item_429_fraction:
            return (429, "es_rejected_execution_exception",
                    "rejected execution of primary operation (injected by the test double)")
        return None

    def count_item(self, status: int) -> None:
        stats = self.state.stats
        stats["items"] += 1
        if status in (200, 201):
            if status == 201:
                stats["created"] += 1
            return
        if status == 409:
            stats["conflicts"] += 1
        errors = stats["item_errors"]
        errors[str(status)] = errors.get(str(status), 0) + 1

    def bulk_fast(self, body: bytes, default_index: str | None) -> tuple[list, bool]:
        """Minimum work per item: match action lines in place, keep ids in a set.

        The body is walked by offsets with bytes.find, so document lines are
        neither copied nor parsed. Splitting an 8 KB-per-document body into
        lines cost more than everything else together.
        """
        state = self.state
        faults = state.faults
        items: list[str] = []
        errors = False
        created = 0
        position = 0
        line_number = 0
        size = len(body)
        find = body.find
        match_action = SIMPLE_ACTION.match
        append = items.append
        # The usual action line, by its bytes up to the _id, mapped to the
        # operation, the index and the text of a created item around the
        # _id. Filled once per request and index, so later items skip the
        # lookups. Unused while faults or reject_field need each item.
        targets: dict[bytes, tuple[str, Index, str]] = {}
        with state.lock:
            item_faults = (faults.item_429_next > 0 or faults.item_5xx_next > 0
                           or faults.item_429_fraction > 0)
            use_targets = not item_faults and not faults.reject_field
            while position < size:
                end = find(b"\n", position)  # the body ends with a newline
                line_number += 1
                # The usual action line, as webtrap writes it, is matched
                # without a JSON parse. The id contains no quote or backslash,
                # so its bytes are valid JSON string content as they are.
                simple = match_action(body, position, end)
                if simple is not None and use_targets and end + 1 < size:
                    target = targets.get(simple.group(1))
                    if target is not None:
                        op, index, prefix = target
                        doc_id = simple.group(4).decode()
                        docs = index.docs
                        if op == "index" or doc_id not in docs:
                            docs[doc_id] = None
                            append(f'{prefix}{doc_id}","_version":1,"result":"created",'
                                   '"_shards":{"total":2,"successful":1,"failed":0},'
                                   f'"_seq_no":{index.seq_no},"_primary_term":1,"status":201}}}}')
                            index.seq_no += 1
                            created += 1
                            line_number += 1
                            position = find(b"\n", end + 1) + 1
                            continue
                if simple is not None:
                    op = simple.group(2).decode()
                    index_name = simple.group(3).decode()
                    doc_id = simple.group(4).decode()
                    id_json = '"' + doc_id + '"'
                else:
                    line = body[position:end]
                    if not line.strip():
                        position = end + 1
                        continue
                    op, meta = parse_action(line, line_number)
                    index_name = meta.get("_index", default_index) or ""
                    doc_id = meta.get("_id")
                    if doc_id is None:
                        doc_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode()[:20]
                    doc_id = str(doc_id)
                    id_json = json.dumps(doc_id)
                source_start = source_end = end + 1
                if op != "delete":
                    if source_start >= size:
                        raise BulkError(400, "illegal_argument_exception",
                                        f"action at line [{line_number}] has no source line; every "
                                        "create, index and update needs one")
                    source_end = find(b"\n", source_start)
                    line_number += 1
                    position = source_end + 1  # the source line is parsed only for reject_field
                else:
                    position = end + 1
                index = state.indices.get(state.data_streams.get(index_name, index_name))
                if index is None:
                    index, problem = state.resolve_write_target(index_name)
                    if problem:
                        append(json.dumps(error_item(op, index_name, doc_id, problem["status"],
                                                     problem["type"], problem["reason"])))
                        self.count_item(problem["status"])
                        errors = True
                        continue
                if faults.reject_field and op != "delete":
                    rejection = self.rejection(body[source_start:source_end], doc_id)
                    if rejection:
                        append(json.dumps(error_item(op, index_name, doc_id, *rejection,
                                                     index=index)))
                        self.count_item(400)
                        errors = True
                        continue
                fault = self.next_item_fault() if item_faults else None
                if fault:
                    append(json.dumps(error_item(op, index_name, doc_id, *fault, index=index)))
                    self.count_item(fault[0])
                    errors = True
                    continue
                docs = index.docs
                if op == "create" and doc_id in docs:
                    reason = json.dumps(f"[{doc_id}]: version conflict, document already exists "
                                        "(current version [1])")
                    append(
                        f'{{"{op}":{{"_index":"{index.name}","_id":{id_json},"status":409,'
                        f'"error":{{"type":"version_conflict_engine_exception","reason":{reason},'
                        f'"index_uuid":"{index.uuid}","shard":"0","index":"{index.name}"}}}}}}')
                    self.count_item(409)
                    errors = True
                    continue
                docs[doc_id] = None
                append(f'{{"{op}":{{"_index":"{index.name}","_id":{id_json},"_version":1,'
                       f'"result":"created","_shards":{{"total":2,"successful":1,"failed":0}},'
                       f'"_seq_no":{index.seq_no},"_primary_term":1,"status":201}}}}')
                index.seq_no += 1
                created += 1
                if simple is not None:
                    targets[simple.group(1)] = (op, index, f'{{"{op}":{{"_index":"{index.name}","_id":"')
            state.stats["bulk_requests"] += 1
            state.stats["items"] += created
            state.stats["created"] += created
        return items, errors

    def bulk_full(self, lines: list[bytes], default_index: str | None) -> tuple[list, bool]:
        """Check every document the way the API documentation describes."""
        state = self.state
        items: list[dict] = []
        position = 0
        count = len(lines)
        with state.lock:
            while position < count:
                line = lines[position]
                position += 1
                if not line.strip():
                    continue
                op, meta = parse_action(line, position)
                source_line = None
                if op != "delete":
                    if position >= count:
                        raise BulkError(400, "illegal_argument_exception",
                                        f"action at line [{position}] has no source line; every "
                                        "create, index and update needs one")
                    source_line = lines[position]
                    position += 1
                item = self.apply_item(op, meta, source_line, default_index)
                items.append(item)
                self.count_item(item[op]["status"])
            state.stats["bulk_requests"] += 1
        errors = any("error" in next(iter(item.values())) for item in items)
        return items, errors

    def apply_item(self, op: str, meta: dict, source_line: bytes | None,
                   default_index: str | None) -> dict:
        state = self.state
        index_name = meta.get("_index", default_index)
        doc_id = meta.get("_id")
        if index_name is None:
            return error_item(op, "", doc_id or "", 400, "action_request_validation_exception",
                              "Validation Failed: 1: index is missing;")
        if doc_id is None:
            if op in ("update", "delete"):
                return error_item(op, index_name, "", 400, "action_request_validation_exception",
                                  "Validation Failed: 1: id is missing;")
            doc_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode()[:20]
        doc_id = str(doc_id)
        if len(doc_id.encode()) > 512:
            return error_item(op, index_name, doc_id, 400, "action_request_validation_exception",
                              f"Validation Failed: 1: id [{doc_id}] is too long, must be no longer "
                              "than 512 bytes but was: " + str(len(doc_id.encode())) + ";")

        is_stream = index_name in state.data_streams
        if not is_stream and index_name not in state.indices:
            match = state.matching_template(index_name)
            is_stream = bool(match and "data_stream" in match[1])
        if is_stream and op != "create":
            return error_item(op, index_name, doc_id, 400, "illegal_argument_exception",
                              f"only write ops with an op_type of create are allowed in data streams")

        document = None
        if source_line is not None:
            try:
                document = json.loads(source_line)
            except ValueError as error:
                return error_item(op, index_name, doc_id, 400, "document_parsing_exception",
                                  f"[1:1] failed to parse: {error}")
            if not isinstance(document, dict):
                return error_item(op, index_name, doc_id, 400, "document_parsing_exception",
                                  "[1:1] failed to parse: source is not a JSON object")

        index, problem = state.resolve_write_target(index_name)
        if problem:
            return error_item(op, index_name, doc_id, problem["status"], problem["type"],
                              problem["reason"])

        if is_stream and document is not None and "@timestamp" not in document:
            return error_item(op, index_name, doc_id, 400, "document_parsing_exception",
                              "[1:1] failed to parse: data stream timestamp field [@timestamp] is missing",
                              index=index)

        if state.faults.reject_field and source_line is not None:
            rejection = self.rejection(source_line, doc_id, document)
            if rejection:
                return error_item(op, index_name, doc_id, *rejection, index=index)

        fault = self.next_item_fault()
        if fault:
            return error_item(op, index_name, doc_id, *fault, index=index)

        if op == "create":
            if doc_id in index.docs:
                return error_item(op, index_name, doc_id, 409, "version_conflict_engine_exception",
                                  f"[{doc_id}]: version conflict, document already exists "
                                  "(current version [1])", index=index)
            index.docs[doc_id] = document
            return created_item(op, index, doc_id)
        if op == "index":
            existed = doc_id in index.docs
            index.docs[doc_id] = document
            return created_item(op, index, doc_id, "updated" if existed else "created",
                                200 if existed else 201)
        if op == "delete":
            if doc_id not in index.docs:
                item = created_item(op, index, doc_id, "not_found", 404)
                return item
            del index.docs[doc_id]
            return created_item(op, index, doc_id, "deleted", 200, 2)
        # update: only partial documents ("doc"), no scripts
        if doc_id not in index.docs:
            if isinstance(document, dict) and document.get("doc_as_upsert"):
                index.docs[doc_id] = document.get("doc", {})
                return created_item(op, index, doc_id)
            return error_item(op, index_name, doc_id, 404, "document_missing_exception",
                              f"[{doc_id}]: document missing", index=index)
        current = index.docs[doc_id]
        if isinstance(current, dict) and isinstance(document, dict):
            current.update(document.get("doc", {}))
        return created_item(op, index, doc_id, "updated", 200, 2)

    def index_template(self, name: str) -> None:
        state = self.state
        if self.command == "PUT" or self.command == "POST":
            body = self.read_json_body()
            if not isinstance(body, dict) or "index_patterns" not in body:
                raise BulkError(400, "action_request_validation_exception",
                                "Validation Failed: 1: index patterns are missing;")
            patterns = body["index_patterns"]
            patterns = [patterns] if isinstance(patterns, str) else patterns
            priority = int(body.get("priority", 0))
            with state.lock:
                for other_name, other in state.all_templates().items():
                    if other_name == name or int(other.get("priority", 0)) != priority:
                        continue
                    other_patterns = other.get("index_patterns", [])
                    if set(patterns) & set(other_patterns):
                        raise BulkError(400, "illegal_argument_exception",
                                        f"index template [{name}] has index patterns {patterns} matching "
                                        f"patterns from existing templates [{other_name}] with patterns "
                                        f"({other_name} => {other_patterns}) that have the same priority "
                                        f"[{priority}]")
                state.templates[name] = body
            self.send_json(200, {"acknowledged": True})
            return
        if self.command in ("GET", "HEAD"):
            with state.lock:
                templates = state.all_templates()
                found = [{"name": key, "index_template": value} for key, value in templates.items()
                         if fnmatch.fnmatchcase(key, name)]
            if not found:
                raise BulkError(404, "resource_not_found_exception",
                                f"index template matching [{name}] not found")
            self.send_json(200, {"index_templates": found})
            return
        if self.command == "DELETE":
            with state.lock:
                if state.templates.pop(name, None) is None:
                    raise BulkError(404, "index_template_missing_exception",
                                    f"index_template [{name}] missing")
            self.send_json(200, {"acknowledged": True})
            return
        raise BulkError(405, "illegal_argument_exception", f"method {self.command} not allowed")

    def ilm_policy(self, name: str) -> None:
        state = self.state
        if self.command == "PUT":
            body = self.read_json_body()
            if not isinstance(body, dict) or not isinstance(body.get("policy"), dict):
                raise BulkError(400, "x_content_parse_exception",
                                "[1:1] [put_lifecycle_request] policy is missing")
            phases = body["policy"].get("phases", {})
            unknown = set(phases) - {"hot", "warm", "cold", "frozen", "delete"}
            if unknown:
                raise BulkError(400, "illegal_argument_exception",
                                f"Timeseries lifecycle does not support phase(s): {sorted(unknown)}")
            with state.lock:
                previous = state.ilm_policies.get(name)
                version = previous["version"] + 1 if previous else 1
                state.ilm_policies[name] = {
                    "version": version,
                    "modified_date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
                    "policy": body["policy"],
                }
            self.send_json(200, {"acknowledged": True})
            return
        if self.command == "GET":
            with state.lock:
                policy = state.ilm_policies.get(name)
            if policy is None:
                raise BulkError(404, "resource_not_found_exception",
                                f"Lifecycle policy not found: {name}")
            result = dict(policy)
            result["in_use_by"] = {"indices": [], "data_streams": [], "composable_templates": []}
            self.send_json(200, {name: result})
            return
        raise BulkError(405, "illegal_argument_exception", f"method {self.command} not allowed")

    def data_stream(self, name: str) -> None:
        state = self.state
        if self.command == "PUT":
            self.drain_body()
            with state.lock:
                if name in state.data_streams:
                    raise BulkError(400, "resource_already_exists_exception",
                                    f"data_stream [{name}] already exists")
                match = state.matching_template(name)
                if not match or "data_stream" not in match[1]:
                    raise BulkError(400, "illegal_argument_exception",
                                    f"no matching index template found for data stream [{name}]")
                state.create_data_stream(name)
            self.send_json(200, {"acknowledged": True})
            return
        if self.command == "GET":
            with state.lock:
                streams = []
                for stream, backing in state.data_streams.items():
                    if fnmatch.fnmatchcase(stream, name):
                        template = state.matching_template(stream)
                        streams.append({
                            "name": stream,
                            "timestamp_field": {"name": "@timestamp"},
                            "indices": [{"index_name": backing,
                                         "index_uuid": state.indices[backing].uuid}],
                            "generation": 1,
                            "status": "GREEN",
                            "template": template[0] if template else "",
                            "hidden": False,
                        })
            if not streams and "*" not in name:
                raise BulkError(404, "index_not_found_exception", f"no such index [{name}]")
            self.send_json(200, {"data_streams": streams})
            return
        raise BulkError(405, "illegal_argument_exception", f"method {self.command} not allowed")

    def get_document(self, target: str, doc_id: str) -> None:
        state = self.state
        with state.lock:
            indices = state.resolve_read(target)
            for index in indices:
                if doc_id in index.docs:
                    self.send_json(200, {"_index": index.name, "_id": doc_id, "_version": 1,
                                         "_seq_no": 0, "_primary_term": 1, "found": True,
                                         "_source": index.docs[doc_id]})
                    return
        if not indices:
            raise BulkError(404, "index_not_found_exception", f"no such index [{target}]")
        self.send_json(404, {"_index": indices[0].name, "_id": doc_id, "found": False})

    def count(self, target: str) -> None:
        self.drain_body()
        state = self.state
        with state.lock:
            indices = state.resolve_read(target)
            total = sum(len(index.docs) for index in indices)
        if not indices and "*" not in target:
            raise BulkError(404, "index_not_found_exception", f"no such index [{target}]")
        self.send_json(200, {"count": total, "_shards": {"total": len(indices), "successful": len(indices),
                                                         "skipped": 0, "failed": 0}})

    def cat_indices(self, query: dict) -> None:
        state = self.state
        rows = []
        with state.lock:
            for index in sorted(state.indices.values(), key=lambda entry: entry.name):
                rows.append({"health": "yellow", "status": "open", "index": index.name,
                             "uuid": index.uuid, "pri": "1", "rep": "1",
                             "docs.count": str(len(index.docs)), "docs.deleted": "0",
                             "store.size": "0b", "pri.store.size": "0b",
                             "dataset.size": "0b"})
        if query.get("format", [""])[0] == "json":
            self.send_json(200, rows)
            return
        text = "".join(f"{row['health']} {row['status']} {row['index']} {row['uuid']} 1 1 "
                       f"{row['docs.count']} 0 0b 0b\n" for row in rows).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=UTF-8")
        self.send_header("Content-Length", str(len(text)))
        self.end_headers()
        self.wfile.write(text)

    # ---- test control -----------------------------------------------------

    def double_control(self, path: str, query: dict) -> None:
        state = self.state
        if path == "/_double/faults":
            if self.command == "POST":
                values = self.read_json_body()
                try:
                    with state.lock:
                        state.faults.update(values if isinstance(values, dict) else {})
                except (ValueError, TypeError) as error:
                    raise BulkError(400, "illegal_argument_exception", str(error))
            with state.lock:
                self.send_json(200, state.faults.as_dict())
            return
        if path == "/_double/stats":
            with state.lock:
                stats = json.loads(json.dumps(state.stats))
                stats["distinct_ids"] = sum(len(index.docs) for index in state.indices.values())
                stats["indices"] = {name: len(index.docs) for name, index in state.indices.items()}
                stats["data_streams"] = dict(state.data_streams)
                stats["fast"] = state.fast
            self.send_json(200, stats)
            return
        if path == "/_double/ids":
            target = query.get("index", ["*"])[0]
            with state.lock:
                ids = sorted(doc_id for index in state.resolve_read(target) for doc_id in index.docs)
            self.send_json(200, {"count": len(ids), "ids": ids})
            return
        if path == "/_double/requests":
            with state.lock:
                recent = list(state.recent)
            self.send_json(200, {"requests": recent})
            return
        if path == "/_double/reset" and self.command == "POST":
            self.drain_body()
            with state.lock:
                state.indices.clear()
                state.data_streams.clear()
                state.templates.clear()
                state.ilm_policies.clear()
                state.faults = Faults()
                state.recent.clear()
                state.reset_stats()
            self.send_json(200, {"acknowledged": True})
            return
        raise BulkError(404, "resource_not_found_exception", f"unknown test double path [{path}]")

    # ---- proxy ------------------------------------------------------------

    def proxy(self) -> None:
        """Forward an absolute-form request to a loopback server, as an HTTP proxy."""
        target = urlsplit(self.path)
        host = target.hostname or ""
        try:
            loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        body = self.read_body_raw()
        if target.scheme != "http" or not loopback:
            self.send_json(403, error_body(403, "proxy_error",
                                           f"the test double only proxies plain HTTP to loopback, not [{self.path}]"))
            return
        headers = {name: value for name, value in self.headers.items()
                   if name.lower() not in ("proxy-connection", "proxy-authorization", "connection",
                                           "keep-alive", "host")}
        connection = http.client.HTTPConnection(host, target.port or 80, timeout=30)
        try:
            path = target.path + (f"?{target.query}" if target.query else "")
            connection.request(self.command, path or "/", body=body, headers=headers)
            response = connection.getresponse()
            payload = response.read()
        except OSError as error:
            self.send_json(502, error_body(502, "proxy_error", f"upstream {host}:{target.port} failed: {error}"))
            return
        finally:
            connection.close()
        with self.state.lock:
            self.state.stats["proxied_requests"] += 1
        self.send_response(response.status)
        for name, value in response.getheaders():
            if name.lower() not in ("connection", "keep-alive", "transfer-encoding", "content-length"):
                self.send_header(name, value)
        self.send_header("Via", "1.1 es-double-proxy")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def read_body_raw(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""


class DoubleServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def verify_request(self, request, client_address) -> bool:
        # An outage: close the connection before reading anything.
        with self.state.lock:
            down = self.state.faults.down_until > time.monotonic()
        if down:
            with self.state.lock:
                self.state.stats["refused_connections"] = self.state.stats.get("refused_connections", 0) + 1
        return not down


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="TCP port; 0 picks a free one (default 0)")
    parser.add_argument("--port-file", help="write the chosen port to this file once listening")
    parser.add_argument("--fast", action="store_true",
                        help="benchmark mode: parse only action lines and keep ids in a set")
    parser.add_argument("--es-version", default=DEFAULT_VERSION,
                        help=f"version number GET / returns (default {DEFAULT_VERSION})")
    parser.add_argument("--distribution", default="",
                        help="version.distribution in GET /, such as opensearch (default: none, as Elasticsearch)")
    parser.add_argument("--basic-auth", metavar="USER:PASSWORD", help="require HTTP basic auth")
    parser.add_argument("--api-key", metavar="BASE64",
                        help="require 'Authorization: ApiKey BASE64' (base64 of id:key)")
    parser.add_argument("--tls-cert", help="serve HTTPS with this PEM certificate")
    parser.add_argument("--tls-key", help="private key of --tls-cert (PEM)")
    parser.add_argument("--ids-file", help="write every stored _id to this file at exit, one per line")
    parser.add_argument("--record", type=int, default=0, metavar="N",
                        help="keep the last N requests and responses for GET /_double/requests")
    parser.add_argument("--fail-next", type=int, default=0, help="fail the next N _bulk requests")
    parser.add_argument("--fail-status", type=int, default=429, help="status of --fail-next (429, 500, 502, 503)")
    parser.add_argument("--retry-after", type=int, default=0, help="Retry-After seconds on injected failures")
    parser.add_argument("--item-429-fraction", type=float, default=0.0,
                        help="share of items (0..1) answered with a per-item 429")
    parser.add_argument("--delay-ms", type=int, default=0, help="delay before every response, in ms")
    parser.add_argument("--reject", metavar="FIELD=VALUE",
                        help="answer 400 document_parsing_exception for documents with this field value")
    parser.add_argument("--seed", type=int, default=1, help="seed of the per-item fault sampling")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    return parser.parse_args(argv)


def build_server(args: argparse.Namespace) -> DoubleServer:
    require_loopback(args.host, "es_double")
    server = server_class_for(DoubleServer, args.host)((args.host, args.port), Handler)
    state = State(fast=args.fast)
    state.random = random.Random(args.seed)
    state.record_limit = args.record
    faults = {"fail_next": args.fail_next, "fail_status": args.fail_status,
              "retry_after": args.retry_after, "item_429_fraction": args.item_429_fraction,
              "delay_ms": args.delay_ms}
    if args.reject:
        field, separator, value = args.reject.partition("=")
        if not separator or not field:
            raise SystemExit(f"es_double: --reject {args.reject!r} must look like FIELD=VALUE")
        faults.update({"reject_field": field, "reject_value": value})
    try:
        state.faults.update(faults)
    except ValueError as error:
        raise SystemExit(f"es_double: {error}")
    server.state = state  # type: ignore[attr-defined]
    server.verbose = args.verbose  # type: ignore[attr-defined]
    server.es_version = args.es_version  # type: ignore[attr-defined]
    server.distribution = args.distribution  # type: ignore[attr-defined]
    server.cluster_uuid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode()[:22]  # type: ignore[attr-defined]
    server.basic_credentials = args.basic_auth  # type: ignore[attr-defined]
    server.api_key = args.api_key  # type: ignore[attr-defined]
    if args.tls_cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.tls_cert, args.tls_key)
        # The handshake runs in the handler thread on first read, so a slow
        # client cannot block accept().
        server.socket = context.wrap_socket(server.socket, server_side=True,
                                            do_handshake_on_connect=False)
    return server


def write_ids(state: State, path: str) -> None:
    with state.lock:
        ids = [doc_id for index in state.indices.values() for doc_id in index.docs]
    with open(path, "w", encoding="utf-8") as handle:
        for doc_id in ids:
            handle.write(f"{doc_id}\n")


def main(argv: list[str]) -> int:
    args = parse_arguments(argv)
    server = build_server(args)
    scheme = "https" if args.tls_cert else "http"
    port = server.server_address[1]

    def save_ids() -> None:
        if args.ids_file:
            write_ids(server.state, args.ids_file)  # type: ignore[attr-defined]

    return serve(server, "es_double", f"{scheme}://{args.host}:{port} (fast={args.fast})",
                 args.port_file, save_ids)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
