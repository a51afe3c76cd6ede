#!/usr/bin/env python3
"""Kibana saved-objects import test double for webtrap's tests.

This is not Kibana. It is a small HTTP server written from the Kibana 8
saved objects API documentation (import objects API, get object API, Spaces
paths). It implements POST /api/saved_objects/_import and
GET /api/saved_objects/<type>/<id>, with or without a /s/<space_id> prefix,
and GET /api/status. Saved objects live in memory, per space.

It applies the documented import rules: the kbn-xsrf header, a multipart
body with a `file` part named *.ndjson, supported types, references that
resolve, and conflicts without overwrite. It is also stricter than Kibana.
It parses the JSON inside string attributes (visState, panelsJSON,
searchSourceJSON, layerListJSON, mapStateJSON, ...), and it checks that
every field a visualization, saved search, map or data view names exists in
the index template that webtrap installs, with a type that fits its use.
Kibana itself would import such objects and show the error only when a
panel renders.

Python standard library only. Binds to loopback only. See
docs/kibana.md for what it does and does not show.
"""

from __future__ import annotations

import argparse
import base64
import email.parser
import email.policy
import json
import pathlib
import re
import signal
import socket
import ssl
import sys
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

SOURCE_DIR = pathlib.Path(__file__).resolve().parent.parent.parent
DEFAULT_TEMPLATE = SOURCE_DIR / "etc" / "elasticsearch" / "index-template.json"
DEFAULT_VERSION = "8.15.0"
LOOPBACK_HOSTS = {"127.0.0.1", "::1"}
# Kibana's savedObjects.maxImportExportSize default (8.x).
MAX_IMPORT_OBJECTS = 10000
# Kibana's dashboard grid has 48 columns.
GRID_COLUMNS = 48

# Saved object types the double accepts, with the icon Kibana puts in
# meta.icon of import results.
TYPE_ICONS = {
    "index-pattern": "indexPatternApp",
    "visualization": "visualizeApp",
    "lens": "lensApp",
    "search": "discoverApp",
    "dashboard": "dashboardApp",
    "map": "gisApp",
    "tag": "tag",
    "config": "advancedSettingsApp",
}
# Attributes that hold JSON text, per type, as dotted paths.
JSON_STRING_ATTRIBUTES = {
    "index-pattern": ["fields", "fieldFormatMap", "sourceFilters", "fieldAttrs", "runtimeFieldMap"],
    "visualization": ["visState", "uiStateJSON", "kibanaSavedObjectMeta.searchSourceJSON"],
    "search": ["kibanaSavedObjectMeta.searchSourceJSON"],
    "dashboard": ["panelsJSON", "optionsJSON", "kibanaSavedObjectMeta.searchSourceJSON"],
    "map": ["mapStateJSON", "layerListJSON", "uiStateJSON"],
}
# Field types that aggregations (terms, cardinality, max, ...) accept.
AGGREGATABLE_TYPES = {"keyword", "long", "integer", "short", "byte", "double", "float",
                      "scaled_float", "ip", "date", "boolean", "wildcard", "constant_keyword"}
# Metric aggregations that need a numeric or date field.
NUMERIC_METRICS = {"max", "min", "avg", "sum", "median", "percentiles"}
NUMERIC_TYPES = {"long", "integer", "short", "byte", "double", "float", "scaled_float", "date"}
SPACE_ID = re.compile(r"^[a-z0-9_-]+$")


def kibana_error(status: int, message: str) -> dict:
    """The error body Kibana's HTTP layer returns for a rejected request."""
    reasons = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
               413: "Request Entity Too Large", 415: "Unsupported Media Type"}
    return {"statusCode": status, "error": reasons.get(status, "Error"), "message": message}


def version_tuple(text: str) -> tuple:
    parts = []
    for piece in text.split("."):
        digits = re.match(r"\d+", piece)
        parts.append(int(digits.group()) if digits else 0)
    return tuple(parts + [0] * (3 - len(parts)))


def template_fields(template: dict) -> dict:
    """Map every field path of an index template to (type, aggregatable, nested).

    Multi-fields appear as `parent.sub`, and object properties by their
    dotted path. `nested` is true for fields inside a nested object, which
    plain aggregations cannot reach.
    """
    fields = {}

    def walk(properties: dict, prefix: str, nested: bool):
        for name, mapping in properties.items():
            path = prefix + name
            field_type = mapping.get("type", "object")
            inner_nested = nested or field_type == "nested"
            if "properties" in mapping:
                fields[path] = (field_type, False, nested)
                walk(mapping["properties"], path + ".", inner_nested)
                continue
            aggregatable = (field_type in AGGREGATABLE_TYPES and mapping.get("doc_values", True)
                            and (mapping.get("index", True) or field_type == "wildcard"))
            fields[path] = (field_type, bool(aggregatable), nested)
            for sub_name, sub_mapping in mapping.get("fields", {}).items():
                sub_type = sub_mapping.get("type", "keyword")
                fields[f"{path}.{sub_name}"] = (sub_type, sub_type in AGGREGATABLE_TYPES, nested)

    walk(template.get("template", {}).get("mappings", {}).get("properties", {}), "", False)
    return fields


def attribute(attributes: dict, dotted: str):
    value = attributes
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def fields_used(saved: dict, parsed: dict) -> list:
    """(field, use) pairs that one saved object names, from its parsed JSON strings.

    `use` is "aggregation:<type>", "time", "column", "sort" or "geo".
    """
    used = []
    kind = saved.get("type")
    if kind == "index-pattern":
        time_field = saved["attributes"].get("timeFieldName")
        if time_field:
            used.append((time_field, "time"))
    elif kind == "visualization":
        for agg in parsed.get("visState", {}).get("aggs", []):
            field = agg.get("params", {}).get("field")
            if field:
                used.append((field, f"aggregation:{agg.get('type')}"))
    elif kind == "search":
        for column in saved["attributes"].get("columns", []):
            used.append((column, "column"))
        for entry in saved["attributes"].get("sort", []):
            if isinstance(entry, list) and entry:
                used.append((entry[0], "sort"))
    elif kind == "map":
        for layer in parsed.get("layerListJSON", []):
            geo_field = layer.get("sourceDescriptor", {}).get("geoField")
            if geo_field:
                used.append((geo_field, "geo"))
    return used


def field_problem(field: str, use: str, fields: dict):
    """Why `field` cannot serve `use` under the template mapping, or None."""
    if field not in fields:
        return f"field {field} is not in the index template mapping"
    field_type, aggregatable, nested = fields[field]
    if use == "time" and field_type != "date":
        return f"time field {field} has type {field_type}, not date"
    if use == "geo" and field_type != "geo_point":
        return f"geo field {field} has type {field_type}, not geo_point"
    if use.startswith("aggregation:"):
        agg_type = use.split(":", 1)[1]
        if nested:
            return f"field {field} is inside a nested object, which a {agg_type} aggregation cannot reach"
        if not aggregatable:
            return f"field {field} ({field_type}) is not aggregatable"
        if agg_type in NUMERIC_METRICS and field_type not in NUMERIC_TYPES:
            return f"{agg_type} needs a numeric or date field, but {field} is {field_type}"
    if use == "sort" and not aggregatable:
        return f"sort field {field} ({field_type}) has no doc values"
    return None


class Store:
    """Saved objects per space and the log of requests, shared by all handler threads."""

    def __init__(self, spaces, template_fields_map, unsupported, kibana_version):
        self.lock = threading.Lock()
        self.spaces = {space: {} for space in spaces}
        self.fields = template_fields_map
        self.types = {kind: icon for kind, icon in TYPE_ICONS.items() if kind not in unsupported}
        self.version = kibana_version
        self.requests = []

    def validate(self, saved: dict, references_by_name: dict):
        """Content problems of one saved object (the double's own checks), as a list."""
        problems = []
        kind = saved["type"]
        attributes = saved["attributes"]
        parsed = {}
        for dotted in JSON_STRING_ATTRIBUTES.get(kind, []):
            text = attribute(attributes, dotted)
            if text is None:
                continue
            if not isinstance(text, str):
                problems.append(f"{dotted} must be a string holding JSON")
                continue
            try:
                parsed[dotted.rsplit(".", 1)[-1]] = json.loads(text)
            except json.JSONDecodeError as error:
                problems.append(f"{dotted} is not valid JSON: {error}")
        if problems:
            return problems

        if not isinstance(attributes.get("title"), str) or not attributes["title"]:
            problems.append("attributes.title is missing")
        source = parsed.get("searchSourceJSON", {})
        index_ref = source.get("indexRefName")
        if index_ref and index_ref not in references_by_name:
            problems.append(f"searchSourceJSON.indexRefName {index_ref} names no reference")
        if kind in ("visualization", "search") and not index_ref:
            problems.append("searchSourceJSON has no indexRefName, so the object has no data view")
        if kind == "visualization":
            vis_state = parsed.get("visState", {})
            if not vis_state.get("type"):
                problems.append("visState.type is missing")
            ids = [agg.get("id") for agg in vis_state.get("aggs", [])]
            if len(ids) != len(set(ids)):
                problems.append("visState.aggs ids are not unique")
        if kind == "dashboard":
            panels = parsed.get("panelsJSON", [])
            if not isinstance(panels, list):
                problems.append("panelsJSON is not an array")
                panels = []
            indexes = set()
            for panel in panels:
                index = panel.get("panelIndex")
                if index in indexes:
                    problems.append(f"panelIndex {index} is used twice")
                indexes.add(index)
                reference = references_by_name.get(panel.get("panelRefName"))
                if reference is None:
                    problems.append(f"panel {index}: panelRefName {panel.get('panelRefName')} names "
                                    "no reference")
                elif reference["type"] != panel.get("type"):
                    problems.append(f"panel {index}: type {panel.get('type')} differs from its "
                                    f"reference's type {reference['type']}")
                grid = panel.get("gridData", {})
                if grid.get("i") != index:
                    problems.append(f"panel {index}: gridData.i is {grid.get('i')}")
                if grid.get("x", 0) < 0 or grid.get("x", 0) + grid.get("w", 0) > GRID_COLUMNS:
                    problems.append(f"panel {index}: x + w exceeds the {GRID_COLUMNS}-column grid")
                if grid.get("w", 0) <= 0 or grid.get("h", 0) <= 0:
                    problems.append(f"panel {index}: gridData has no size")
        if kind == "map":
            for layer in parsed.get("layerListJSON", []):
                name = layer.get("sourceDescriptor", {}).get("indexPatternRefName")
                if name and name not in references_by_name:
                    problems.append(f"layer {layer.get('id')}: indexPatternRefName {name} names "
                                    "no reference")
        for field, use in fields_used(saved, parsed):
            problem = field_problem(field, use, self.fields)
            if problem:
                problems.append(problem)
        return problems

    def import_objects(self, space: str, objects: list, overwrite: bool, new_copies: bool):
        """Kibana's import: every object is checked, and those without errors are stored."""
        with self.lock:
            existing = self.spaces[space]
            in_file = {(item.get("type"), item.get("id")) for item in objects}
            errors, successes = [], []
            for saved in objects:
                kind, object_id = saved.get("type"), saved.get("id")
                attributes = saved.get("attributes")
                title = attributes.get("title", object_id) if isinstance(attributes, dict) else object_id
                entry = {"id": object_id, "type": kind, "title": title,
                         "meta": {"title": title, "icon": TYPE_ICONS.get(kind, "questionInCircle")}}
                error = self._object_error(saved, existing, in_file, overwrite, new_copies)
                if error is not None:
                    errors.append({**entry, "error": error})
                    continue
                destination = str(uuid.uuid4()) if new_copies else object_id
                result = {"id": object_id, "type": kind, "meta": entry["meta"]}
                if new_copies:
                    result["destinationId"] = destination
                if (kind, destination) in existing:
                    result["overwrite"] = True
                existing[(kind, destination)] = saved
                successes.append(result)
        body = {"success": not errors, "successCount": len(successes),
                "successResults": successes, "warnings": []}
        if errors:
            body["errors"] = errors
        return body

    def _object_error(self, saved, existing, in_file, overwrite, new_copies):
        kind, object_id = saved.get("type"), saved.get("id")
        if not isinstance(kind, str) or not isinstance(object_id, str) or not object_id:
            return {"type": "unknown", "statusCode": 400, "message": "type and id must be strings"}
        if kind not in self.types:
            return {"type": "unsupported_type"}
        if not isinstance(saved.get("attributes"), dict):
            return {"type": "unknown", "statusCode": 400, "message": "attributes must be an object"}
        core_version = saved.get("coreMigrationVersion")
        if core_version and version_tuple(core_version) > version_tuple(self.version):
            return {"type": "unknown", "statusCode": 400,
                    "message": f"coreMigrationVersion {core_version} is newer than this Kibana "
                               f"({self.version}), and objects cannot move to an older version"}
        references = saved.get("references", [])
        if not isinstance(references, list) or not all(
                isinstance(ref, dict) and {"name", "type", "id"} <= ref.keys() for ref in references):
            return {"type": "unknown", "statusCode": 400,
                    "message": "references must be a list of {name, type, id}"}
        missing = [{"type": ref["type"], "id": ref["id"]} for ref in references
                   if (ref["type"], ref["id"]) not in in_file and (ref["type"], ref["id"]) not in existing]
        if missing:
            return {"type": "missing_references", "references": missing}
        problems = self.validate(saved, {ref["name"]: ref for ref in references})
        if problems:
            return {"type": "unknown", "statusCode": 400, "message": "; ".join(problems)}
        if not overwrite and not new_copies and (kind, object_id) in existing:
            return {"type": "conflict"}
        return None


def parse_multipart(content_type: str, body: bytes):
    """The parts of a multipart/form-data body as (name, filename, bytes), via the email package."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body)
    if not message.is_multipart():
        return None
    parts = []
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        parts.append((name, part.get_filename(), part.get_payload(decode=True) or b""))
    return parts


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "kibana-double"

    def log_message(self, fmt, *args):
        sys.stderr.write("kibana_double: " + (fmt % args) + "\n")

    def send_json(self, status: int, body: dict):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def authorized(self) -> bool:
        options = self.server.options
        if not options.basic_auth and not options.api_key:
            return True
        header = self.headers.get("Authorization", "")
        scheme, _, credentials = header.partition(" ")
        if scheme == "Basic" and options.basic_auth:
            try:
                return base64.b64decode(credentials).decode() == options.basic_auth
            except (ValueError, UnicodeDecodeError):
                return False
        if scheme == "ApiKey" and options.api_key:
            return credentials == options.api_key
        return False

    def split_space(self, path: str):
        """(space id, rest of the path) for /s/<space>/api/... and /api/..."""
        match = re.match(r"^/s/([^/]+)(/.*)$", path)
        if match:
            return unquote(match.group(1)), match.group(2)
        return "default", path

    def record(self, body_size: int):
        store = self.server.store
        with store.lock:
            store.requests.append({
                "method": self.command, "path": self.path,
                "kbn_xsrf": self.headers.get("kbn-xsrf"),
                "content_type": self.headers.get("Content-Type"),
                "authorization_scheme": self.headers.get("Authorization", "").partition(" ")[0],
                "body_bytes": body_size})

    def do_GET(self):
        url = urlsplit(self.path)
        self.record(0)
        if url.path == "/_double/requests":
            with self.server.store.lock:
                self.send_json(200, {"requests": list(self.server.store.requests)})
            return
        if not self.authorized():
            self.send_json(401, kibana_error(401, "unable to authenticate the request: missing or "
                                                  "wrong credentials"))
            return
        space, rest = self.split_space(url.path)
        if space not in self.server.store.spaces:
            self.send_json(404, kibana_error(404, "Not Found"))
            return
        if rest == "/api/status":
            self.send_json(200, {"name": "kibana-double", "version": {"number": self.server.store.version},
                                 "status": {"overall": {"level": "available"}}})
            return
        match = re.match(r"^/api/saved_objects/([^/_][^/]*)/([^/]+)$", rest)
        if match:
            kind, object_id = unquote(match.group(1)), unquote(match.group(2))
            with self.server.store.lock:
                saved = self.server.store.spaces[space].get((kind, object_id))
            if saved is None:
                self.send_json(404, kibana_error(404, f"Saved object [{kind}/{object_id}] not found"))
            else:
                self.send_json(200, {**saved, "namespaces": [space]})
            return
        self.send_json(404, kibana_error(404, "Not Found"))

    def do_POST(self):
        url = urlsplit(self.path)
        body = self.read_body()
        self.record(len(body))
        if not self.authorized():
            self.send_json(401, kibana_error(401, "unable to authenticate the request: missing or "
                                                  "wrong credentials"))
            return
        space, rest = self.split_space(url.path)
        if rest != "/api/saved_objects/_import":
            self.send_json(404, kibana_error(404, "Not Found"))
            return
        # Kibana checks the header on every request that can change state.
        if self.headers.get("kbn-xsrf") is None:
            self.send_json(400, kibana_error(400, "Request must contain a kbn-xsrf header."))
            return
        if space not in self.server.store.spaces:
            self.send_json(404, kibana_error(404, "Not Found"))
            return
        query = {key: values[-1] for key, values in parse_qs(url.query).items()}
        overwrite = query.get("overwrite", "false") == "true"
        new_copies = query.get("createNewCopies", "false") == "true"
        if overwrite and new_copies:
            self.send_json(400, kibana_error(400, "cannot use [overwrite] with [createNewCopies]"))
            return
        content_type = self.headers.get("Content-Type", "")
        if not content_type.startswith("multipart/form-data"):
            self.send_json(415, kibana_error(415, "Unsupported Media Type"))
            return
        parts = parse_multipart(content_type, body)
        files = [part for part in parts or [] if part[0] == "file"]
        if not files:
            self.send_json(400, kibana_error(400, "[request body.file]: expected a file part named "
                                                  "file"))
            return
        _, filename, data = files[0]
        extension = pathlib.PurePath(filename or "").suffix
        if extension != ".ndjson":
            self.send_json(400, kibana_error(400, f"Invalid file extension {extension or '(none)'}"))
            return
        objects = []
        for number, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as error:
                self.send_json(400, kibana_error(400, f"line {number}: {error}"))
                return
            if not isinstance(item, dict):
                self.send_json(400, kibana_error(400, f"line {number}: not a JSON object"))
                return
            # An export ends with a summary line, which import skips.
            if "exportedCount" in item and "type" not in item:
                continue
            objects.append(item)
        if len(objects) > MAX_IMPORT_OBJECTS:
            self.send_json(400, kibana_error(400, f"Can't import more than {MAX_IMPORT_OBJECTS} "
                                                  "objects"))
            return
        self.send_json(200, self.server.store.import_objects(space, objects, overwrite, new_copies))


def main():
    parser = argparse.ArgumentParser(description="Kibana saved-objects import test double")
    parser.add_argument("--host", default="127.0.0.1", help="127.0.0.1 or ::1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--port-file", type=pathlib.Path, help="write the port here once listening")
    parser.add_argument("--tls-cert", help="PEM certificate: serve HTTPS")
    parser.add_argument("--tls-key", help="PEM key of --tls-cert")
    parser.add_argument("--basic-auth", help="require Authorization: Basic for USER:PASSWORD")
    parser.add_argument("--api-key", help="require Authorization: ApiKey with this encoded key")
    parser.add_argument("--space", action="append", default=[],
                        help="a space id besides default (repeat for more)")
    parser.add_argument("--template", type=pathlib.Path, default=DEFAULT_TEMPLATE,
                        help="index template whose mapping lists the fields objects may use")
    parser.add_argument("--unsupported-type", action="append", default=[],
                        help="answer unsupported_type for this saved object type, as a Kibana "
                             "without its plugin does (repeat for more)")
    parser.add_argument("--kibana-version", default=DEFAULT_VERSION,
                        help="version in /api/status and the newest coreMigrationVersion accepted")
    options = parser.parse_args()
    if options.host not in LOOPBACK_HOSTS:
        parser.error("--host must be 127.0.0.1 or ::1")
    for space in options.space:
        if not SPACE_ID.match(space):
            parser.error(f"--space {space}: use lowercase letters, digits, '_' and '-'")

    template = json.loads(options.template.read_text())
    server_class = ThreadingHTTPServer
    if ":" in options.host:
        class V6Server(ThreadingHTTPServer):
            address_family = socket.AF_INET6
        server_class = V6Server
    server = server_class((options.host, options.port), Handler)
    server.daemon_threads = True
    server.options = options
    server.store = Store(["default", *options.space], template_fields(template),
                         set(options.unsupported_type), options.kibana_version)
    scheme = "http"
    if options.tls_cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(options.tls_cert, options.tls_key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    port = server.server_address[1]
    print(f"kibana_double listening on {scheme}://{options.host}:{port}", flush=True)
    if options.port_file:
        temporary = options.port_file.with_suffix(".tmp")
        temporary.write_text(str(port))
        temporary.replace(options.port_file)

    def stop(signum, frame):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server.serve_forever()
    server.server_close()


if __name__ == "__main__":
    main()
