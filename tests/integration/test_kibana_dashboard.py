#!/usr/bin/env python3
"""Checks webtrap's Kibana dashboard and its import by setup-elasticsearch.

Runs against the Kibana import test double (tests/tools/kibana_double.py,
not Kibana) and the Elasticsearch test double (tests/tools/es_double.py,
not Elasticsearch), both on 127.0.0.1:

1. data/kibana/webtrap-dashboard.ndjson is what scripts/make_kibana_dashboard.py
   writes, so no one hand-edits the JSON inside its strings.
2. Every field a visualization, the map, the saved search or the data view
   uses is in the index template webtrap installs, with a type that fits.
3. The request/response fixtures in tests/fixtures/kibana/ match the double.
4. The dashboard imports into the double, and a broken copy does not.
5. `webtrap collector setup-elasticsearch` imports everything over HTTPS with
   kbn-xsrf and overwrite=true, twice, and reports a wrong password, an
   unreachable URL, an unknown CA, a missing space and per-object errors
   with the setting to fix.
"""

import base64
import json
import os
import pathlib
import socket
import ssl
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import uuid

from probe_harness import BIN, SOURCE_DIR, wait_for

TOOLS = SOURCE_DIR / "tests" / "tools"
sys.path.insert(0, str(TOOLS))
import kibana_double  # noqa: E402  (after the path change)

KIBANA_DOUBLE = TOOLS / "kibana_double.py"
ES_DOUBLE = TOOLS / "es_double.py"
DASHBOARD = SOURCE_DIR / "data" / "kibana" / "webtrap-dashboard.ndjson"
GENERATOR = SOURCE_DIR / "scripts" / "make_kibana_dashboard.py"
TEMPLATE = SOURCE_DIR / "etc" / "elasticsearch" / "index-template.json"
FIXTURES = SOURCE_DIR / "tests" / "fixtures" / "kibana"
ES_USER, ES_PASSWORD = "webtrap-writer", "es secret"
KIBANA_USER, KIBANA_PASSWORD = "webtrap-kibana", "kibana secret"
# Fields the dashboard's views are about; each must be used by some object.
REQUIRED_FIELDS = {
    "@timestamp", "event.kind", "source.ip", "source.geo.country_iso_code", "source.as.number",
    "source.as.organization.name", "source.geo.location", "threat.technique.id", "rule.category",
    "webtrap.bait_hits", "url.path", "user_agent.original", "observer.name",
}

failures = []


def check(condition, message):
    if not condition:
        failures.append(message)
        print(f"FAIL: {message}", file=sys.stderr)
    return condition


def load_objects(text):
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def multipart(objects, filename="export.ndjson"):
    boundary = uuid.uuid4().hex
    data = "".join(json.dumps(item) + "\n" for item in objects).encode()
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"{filename}\"\r\nContent-Type: application/ndjson\r\n\r\n").encode()
    body += data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


class Server:
    """One test double process on 127.0.0.1, stopped by its pid."""

    def __init__(self, folder, script, name, args, tls_ca=None):
        self.port_file = folder / f"{name}.port"
        self.log_path = folder / f"{name}.log"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, str(script), "--port", "0", "--port-file", str(self.port_file),
                 *args], stdout=log, stderr=subprocess.STDOUT)
        wait_for(lambda: self.port_file.exists() or self.process.poll() is not None, 20,
                 f"the port file of {name}")
        if self.process.poll() is not None:
            raise RuntimeError(f"{name} exited at start:\n{self.log_path.read_text()}")
        self.port = int(self.port_file.read_text())
        self.scheme = "https" if tls_ca else "http"
        self.context = ssl.create_default_context(cafile=str(tls_ca)) if tls_ca else None
        self.url = f"{self.scheme}://127.0.0.1:{self.port}"

    def call(self, method, path, body=None, headers=None):
        request = urllib.request.Request(self.url + path, method=method, data=body)
        for key, value in (headers or {}).items():
            request.add_header(key, value)
        try:
            with urllib.request.urlopen(request, timeout=30, context=self.context) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"{}")

    def import_objects(self, objects, path="/api/saved_objects/_import", headers=None,
                       filename="export.ndjson"):
        body, content_type = multipart(objects, filename)
        return self.call("POST", path, body, {"Content-Type": content_type, **(headers or {})})

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=30)


def check_generated_file():
    with tempfile.TemporaryDirectory() as folder:
        output = pathlib.Path(folder) / "dashboard.ndjson"
        subprocess.run([sys.executable, str(GENERATOR), "--output", str(output)], check=True,
                       capture_output=True, timeout=60)
        check(output.read_text() == DASHBOARD.read_text(),
              f"{DASHBOARD} differs from the output of {GENERATOR}; run the script and commit")


def check_fields(objects, template=None, source="the template file"):
    """Check the fields of every object against `template` (default: the file in etc/)."""
    fields = kibana_double.template_fields(template or json.loads(TEMPLATE.read_text()))
    check(len(fields) > 50, f"only {len(fields)} fields in {source}")
    used = set()
    for saved in objects:
        parsed = {}
        for dotted in kibana_double.JSON_STRING_ATTRIBUTES.get(saved["type"], []):
            text = kibana_double.attribute(saved["attributes"], dotted)
            if text is not None:
                parsed[dotted.rsplit(".", 1)[-1]] = json.loads(text)
        object_fields = kibana_double.fields_used(saved, parsed)
        if saved["type"] in ("visualization", "search", "map"):
            check(object_fields, f"{saved['type']} {saved['id']} uses no field")
        for field, use in object_fields:
            used.add(field)
            problem = kibana_double.field_problem(field, use, fields)
            check(problem is None, f"{saved['type']} {saved['id']} ({source}): {problem}")
    missing = REQUIRED_FIELDS - used
    check(not missing, f"no dashboard object uses {sorted(missing)}")

    # The checker itself must catch a field that the template lacks and a
    # text field used for a terms aggregation.
    check(kibana_double.field_problem("source.nope", "aggregation:terms", fields) is not None,
          "field_problem accepted a field that is not in the template")
    check(kibana_double.field_problem("source.as.organization.name.text", "aggregation:terms",
                                      fields) is not None,
          "field_problem accepted a terms aggregation on a text field")


def check_dashboard_panels(objects):
    dashboard = next(item for item in objects if item["type"] == "dashboard")
    panels = json.loads(dashboard["attributes"]["panelsJSON"])
    referenced = {(ref["type"], ref["id"]) for ref in dashboard["references"]}
    others = {(item["type"], item["id"]) for item in objects
              if item["type"] not in ("dashboard", "index-pattern")}
    check(referenced == others, f"dashboard panels {sorted(referenced)} differ from the objects "
                                f"in the file {sorted(others)}")
    check(len(panels) == len(others), f"{len(panels)} panels for {len(others)} objects")
    view = next(item for item in objects if item["type"] == "index-pattern")
    check(view["attributes"]["timeFieldName"] == "@timestamp", "the data view's time field")


def check_fixtures(folder):
    for path in sorted(FIXTURES.glob("*.json")):
        case = json.loads(path.read_text())
        double = Server(folder, KIBANA_DOUBLE, f"fixture-{path.stem}", case.get("double_args", []))
        try:
            for objects in case.get("before", []):
                status, _ = double.import_objects(objects, headers={"kbn-xsrf": "true"})
                check(status == 200, f"{path.name}: setup import returned {status}")
            request = case["request"]
            status, body = double.import_objects(request["objects"], request["path"],
                                                 request["headers"],
                                                 request.get("filename", "export.ndjson"))
            expected = case["response"]
            check(status == expected["status"], f"{path.name}: status {status}, expected "
                                                f"{expected['status']}")
            check(body == expected["body"], f"{path.name}: body {json.dumps(body)}\n  expected "
                                            f"{json.dumps(expected['body'])}")
        finally:
            double.stop()
    print(f"fixtures: {len(list(FIXTURES.glob('*.json')))} cases compared")


def check_import_into_double(folder, objects):
    double = Server(folder, KIBANA_DOUBLE, "kibana-plain", [])
    try:
        status, body = double.import_objects(objects, headers={"kbn-xsrf": "true"},
                                             filename="webtrap-dashboard.ndjson")
        check(status == 200 and body.get("success") is True,
              f"the dashboard did not import: {status} {json.dumps(body)[:2000]}")
        check(body.get("successCount") == len(objects),
              f"successCount {body.get('successCount')} for {len(objects)} objects")

        # A copy with a broken panelsJSON and a visualization on a missing
        # field must fail for exactly those two objects.
        broken = json.loads(json.dumps(objects))
        for item in broken:
            item["id"] = "broken-" + item["id"]
            for ref in item["references"]:
                ref["id"] = "broken-" + ref["id"]
            if item["type"] == "dashboard":
                item["attributes"]["panelsJSON"] = item["attributes"]["panelsJSON"][:-1]
            if item["id"] == "broken-webtrap-top-paths":
                state = json.loads(item["attributes"]["visState"])
                state["aggs"][1]["params"]["field"] = "url.no_such_path"
                item["attributes"]["visState"] = json.dumps(state)
        status, body = double.import_objects(broken, headers={"kbn-xsrf": "true"})
        failed = {(error["id"], error["error"]["type"]) for error in body.get("errors", [])}
        check(failed == {("broken-webtrap-overview", "unknown"),
                         ("broken-webtrap-top-paths", "unknown")},
              f"broken copy: expected the dashboard and top paths to fail, got {failed}")
        check(body.get("successCount") == len(objects) - 2,
              f"broken copy: successCount {body.get('successCount')}")
    finally:
        double.stop()


def make_certificates(folder):
    (folder / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    commands = [
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
         "-out", "ca.pem", "-days", "2", "-subj", "/CN=webtrap-kibana-test-ca"],
        ["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key",
         "-out", "server.csr", "-subj", "/CN=127.0.0.1"],
        ["openssl", "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
         "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf"],
    ]
    for command in commands:
        subprocess.run(command, cwd=folder, check=True, capture_output=True, timeout=60)


def free_port():
    """A loopback port that nothing listens on, as far as a fresh bind can tell."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def write_config(folder, name, es_port, kibana_lines):
    config = folder / f"{name}.yaml"
    kibana = "".join(f"      {line}\n" for line in kibana_lines)
    config.write_text(f"""listen: 127.0.0.1:0
admin: {{listen: 127.0.0.1:0}}
state_dir: {folder / 'state'}
outputs:
  elasticsearch:
    url: http://127.0.0.1:{es_port}
    username: {ES_USER}
    password: "{ES_PASSWORD}"
    kibana:
{kibana}""")
    return config


def setup(config):
    return subprocess.run([BIN, "collector", "setup-elasticsearch", "--config", str(config)],
                          capture_output=True, text=True, timeout=120)


def check_setup_command(folder, objects):
    make_certificates(folder)
    tls = ["--tls-cert", str(folder / "server.pem"), "--tls-key", str(folder / "server.key")]
    es = Server(folder, ES_DOUBLE, "es", ["--basic-auth", f"{ES_USER}:{ES_PASSWORD}"])
    kibana = Server(folder, KIBANA_DOUBLE, "kibana",
                    [*tls, "--basic-auth", f"{KIBANA_USER}:{KIBANA_PASSWORD}", "--space", "soc"],
                    tls_ca=folder / "ca.pem")
    partial = Server(folder, KIBANA_DOUBLE, "kibana-no-maps", ["--unsupported-type", "map"])
    auth = "Basic " + base64.b64encode(f"{KIBANA_USER}:{KIBANA_PASSWORD}".encode()).decode()
    good = [f"url: {kibana.url}", f"username: {KIBANA_USER}", f'password: "{KIBANA_PASSWORD}"',
            f"ca_file: {folder / 'ca.pem'}", "space: soc"]
    try:
        config = write_config(folder, "good", es.port, good)
        for attempt in (1, 2):
            result = setup(config)
            check(result.returncode == 0,
                  f"setup-elasticsearch run {attempt} failed:\n{result.stdout}{result.stderr}")
            check("imported 13 Kibana saved objects" in result.stderr,
                  f"run {attempt} does not report the import:\n{result.stderr}")
        status, requests = kibana.call("GET", "/_double/requests")
        imports = [item for item in requests["requests"] if item["method"] == "POST"]
        check(len(imports) == 2, f"{len(imports)} import requests, expected 2")
        for item in imports:
            check(item["path"] == "/s/soc/api/saved_objects/_import?overwrite=true",
                  f"import path {item['path']}")
            check(item["kbn_xsrf"] is not None, "the import request has no kbn-xsrf header")
            check((item["content_type"] or "").startswith("multipart/form-data; boundary="),
                  f"import content type {item['content_type']}")
            check(item["authorization_scheme"] == "Basic", "the import request has no basic auth")
        for saved in objects:
            status, body = kibana.call("GET", f"/s/soc/api/saved_objects/{saved['type']}/"
                                              f"{saved['id']}", headers={"Authorization": auth})
            check(status == 200, f"{saved['type']} {saved['id']} is not in space soc: {status}")
        status, view = kibana.call("GET", "/s/soc/api/saved_objects/index-pattern/webtrap-data-view",
                                   headers={"Authorization": auth})
        check(view.get("attributes", {}).get("title") == "logs-webtrap-default",
              f"the data view title is {view.get('attributes', {}).get('title')}, expected the "
              "configured data stream logs-webtrap-default")
        # The template as setup-elasticsearch installed it must map every field too.
        es_auth = "Basic " + base64.b64encode(f"{ES_USER}:{ES_PASSWORD}".encode()).decode()
        template_name = json.loads(TEMPLATE.read_text())["template"]["settings"][
            "index.lifecycle.name"]
        status, installed = es.call("GET", f"/_index_template/{template_name}",
                                    headers={"Authorization": es_auth})
        if check(status == 200, f"index template {template_name} not installed: {status}"):
            check_fields(objects, installed["index_templates"][0]["index_template"],
                         "the installed index template")
        status, _ = kibana.call("GET", "/api/saved_objects/dashboard/webtrap-overview",
                                headers={"Authorization": auth})
        check(status == 404, "the dashboard was imported into the default space as well")

        # Error cases: each run must fail and name the setting to fix.
        cases = [
            ("wrong password", good[:2] + ['password: "wrong"'] + good[3:],
             ["HTTP 401", "outputs.elasticsearch.kibana.username"]),
            ("inherited credentials", [good[0], good[3], good[4]],
             ["HTTP 401", "the Elasticsearch output's credentials were used"]),
            ("unreachable", [f"url: http://127.0.0.1:{free_port()}"],
             ["cannot reach Kibana", "outputs.elasticsearch.kibana.url"]),
            ("Elasticsearch URL", [f"url: {es.url}"],
             ["failed with HTTP 405", "outputs.elasticsearch.kibana.url is Kibana's URL"]),
            ("unknown CA", good[:3] + [good[4]],
             ["TLS with Kibana", "outputs.elasticsearch.kibana.ca_file"]),
            ("missing space", good[:4] + ["space: no-such-space"],
             ["HTTP 404", "outputs.elasticsearch.kibana.space"]),
            ("no maps plugin", [f"url: {partial.url}"],
             ["imported 12 of 13 saved objects", "map webtrap-map-sources",
              "unsupported_type"]),
            ("no url", ["space: soc"], ["outputs.elasticsearch.kibana.url: missing"]),
            ("invalid space", good[:4] + ["space: SOC Team"],
             ["outputs.elasticsearch.kibana.space", "is not a space id"]),
        ]
        for name, lines, expected in cases:
            result = setup(write_config(folder, name.replace(" ", "-"), es.port, lines))
            check(result.returncode != 0, f"{name}: setup-elasticsearch succeeded")
            for text in expected:
                check(text in result.stderr, f"{name}: stderr lacks {text!r}:\n{result.stderr}")
    finally:
        es.stop()
        kibana.stop()
        partial.stop()


def main():
    if not os.access(BIN, os.X_OK):
        print(f"webtrap binary {BIN} not found", file=sys.stderr)
        return 1
    objects = load_objects(DASHBOARD.read_text())
    check_generated_file()
    check_fields(objects)
    check_dashboard_panels(objects)
    with tempfile.TemporaryDirectory(prefix="webtrap-kibana-") as name:
        folder = pathlib.Path(name)
        check_fixtures(folder)
        check_import_into_double(folder, objects)
        check_setup_command(folder, objects)
    if failures:
        print(f"{len(failures)} checks failed", file=sys.stderr)
        return 1
    print(f"kibana dashboard: {len(objects)} saved objects validate and import; "
          "setup-elasticsearch reports each error case")
    return 0


if __name__ == "__main__":
    sys.exit(main())
