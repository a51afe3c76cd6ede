#!/usr/bin/env python3
"""Sensors enrolled with a client certificate: the token works only with that certificate.

The test makes a CA, a server certificate and three client certificates
(CN client-a, client-b, client-c) with the openssl command. It starts the
collector with tls.client_ca but without tls.require_client_certificate, so
a connection without a certificate gets through the handshake and reaches
the token check. Sensors are enrolled bound by fingerprint (from the PEM
file and from the colon-separated form that openssl prints), by subject CN,
and not at all. Each token is then sent with each certificate and without
one: only the enrolled certificate is accepted for a bound sensor, the
others get 403 with a message, and an unbound sensor is accepted with any
certificate or none. Enrolling with a certificate against a configuration
without tls.client_ca fails, and so does enrolling with an empty value of a
binding option.

Exit status: 0 pass, 1 a check failed, 77 the openssl command or
bench/collector/make_records.py is missing.
"""

import http.client
import json
import shutil
import ssl
import subprocess
import sys
import urllib.request

from probe_harness import BIN, SOURCE_DIR, CollectorRun, collector_ports, enrol_sensor

MAKE_RECORDS = SOURCE_DIR / "bench" / "collector" / "make_records.py"
CLIENTS = ("client-a", "client-b", "client-c")


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def openssl(*args, cwd):
    return subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True,
                          text=True, timeout=60).stdout


def make_certificates(folder):
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-days", "2", "-subj", "/CN=binding test CA", "-keyout", "ca.key", "-out", "ca.pem",
            cwd=folder)
    for name, extension in (("server", "subjectAltName=IP:127.0.0.1"),
                            *((client, "extendedKeyUsage=clientAuth") for client in CLIENTS)):
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-subj", f"/CN={name}", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                cwd=folder)
        (folder / f"{name}.ext").write_text(extension + "\n")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-days", "2", "-extfile", f"{name}.ext",
                "-out", f"{name}.pem", cwd=folder)


def tls_context(folder, client):
    context = ssl.create_default_context(cafile=str(folder / "ca.pem"))
    if client is not None:
        context.load_cert_chain(str(folder / f"{client}.pem"), str(folder / f"{client}.key"))
    return context


def post(port, context, token, body):
    """Posts a batch over a new TLS connection; returns (status, parsed JSON body)."""
    connection = http.client.HTTPSConnection("127.0.0.1", port, timeout=30, context=context)
    try:
        connection.request("POST", "/v1/records", body=body,
                           headers={"Authorization": f"Bearer {token}",
                                    "Content-Type": "application/x-ndjson"})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def main():
    if shutil.which("openssl") is None or not MAKE_RECORDS.exists():
        print("the openssl command or bench/collector/make_records.py is missing", file=sys.stderr)
        return 77
    with CollectorRun("webtrap-collector-binding-") as run:
        folder = run.folder
        make_certificates(folder)
        subprocess.run([sys.executable, str(MAKE_RECORDS), "--count", "20", "--probe-output",
                        str(folder / "records.ndjson")], check=True, capture_output=True,
                       timeout=60)
        records = iter((folder / "records.ndjson").read_bytes().splitlines(keepends=True))

        plain_config = folder / "plain.yaml"
        plain_config.write_text(f"listen: 127.0.0.1:0\nstate_dir: {folder / 'plain-state'}\n")
        refused = subprocess.run([BIN, "collector", "--config", str(plain_config), "enrol",
                                  "--sensor-id", "x", "--client-certificate-cn", "client-a"],
                                 capture_output=True, text=True, timeout=60)
        check(refused.returncode != 0, "enrol with a certificate but no tls.client_ca succeeded")
        check("tls.client_ca" in refused.stderr, f"enrol error: {refused.stderr}")

        config = folder / "collector.yaml"
        config.write_text(f"""listen: 127.0.0.1:0
admin: {{listen: 127.0.0.1:0}}
state_dir: {folder / "state"}
tls:
  certificate: {folder / "server.pem"}
  private_key: {folder / "server.key"}
  client_ca: {folder / "ca.pem"}
""")
        bad = subprocess.run([BIN, "collector", "--config", str(config), "enrol", "--sensor-id",
                              "x", "--client-certificate-sha256", "not-hex"],
                             capture_output=True, text=True, timeout=60)
        check(bad.returncode != 0 and "--client-certificate-sha256" in bad.stderr,
              f"enrol with an invalid fingerprint: {bad.returncode} {bad.stderr}")
        # An empty value, such as an unset shell variable, must not enrol the
        # sensor without the binding that the option requests.
        for option in ("--client-certificate", "--client-certificate-sha256",
                       "--client-certificate-cn"):
            empty = subprocess.run([BIN, "collector", "--config", str(config), "enrol",
                                    "--sensor-id", "x", option, ""],
                                   capture_output=True, text=True, timeout=60)
            check(empty.returncode != 0, f"enrol with an empty {option} succeeded: "
                  f"{empty.stdout}")
            check(option in empty.stderr, f"enrol with an empty {option}: {empty.stderr}")

        fingerprint_b = openssl("x509", "-in", "client-b.pem", "-noout", "-fingerprint",
                                "-sha256", cwd=folder).strip().split("=", 1)[1]
        check(":" in fingerprint_b, f"openssl fingerprint format: {fingerprint_b}")
        tokens = {}
        tokens["by-file"], output = enrol_sensor(config, "by-file", "--client-certificate",
                                                 str(folder / "client-a.pem"))
        check("client_certificate:" in output, f"enrol output has no client_certificate line: "
              f"{output}")
        tokens["by-fingerprint"], _ = enrol_sensor(config, "by-fingerprint",
                                                   "--client-certificate-sha256", fingerprint_b)
        tokens["by-cn"], _ = enrol_sensor(config, "by-cn", "--client-certificate-cn", "client-c")
        tokens["unbound"], _ = enrol_sensor(config, "unbound")
        listed = {entry["sensor_id"]: entry for entry in map(json.loads, subprocess.run(
            [BIN, "collector", "--config", str(config), "sensors"], capture_output=True,
            text=True, timeout=60, check=True).stdout.splitlines())}
        check(listed["by-fingerprint"]["certificate_sha256"]
              == fingerprint_b.replace(":", "").lower(), f"stored fingerprint: {listed}")
        check(listed["by-cn"]["certificate_cn"] == "client-c", f"stored CN: {listed}")

        collector = run.start(config)
        ports = collector_ports(collector, folder)
        accepted = {"by-file": "client-a", "by-fingerprint": "client-b", "by-cn": "client-c"}
        rejections = 0
        for sensor, token in tokens.items():
            for client in (*CLIENTS, None):
                status, body = post(ports["ingest"], tls_context(folder, client), token,
                                    next(records))
                case = f"sensor {sensor} with certificate {client}"
                if sensor == "unbound" or accepted[sensor] == client:
                    check(status == 200 and body["stored"] == 1, f"{case}: {status} {body}")
                    continue
                rejections += 1
                check(status == 403, f"{case}: status {status}, expected 403")
                check(sensor in body["error"], f"{case}: error {body['error']!r} names no sensor")
                if client is None:
                    check("present that certificate" in body["error"],
                          f"{case}: error {body['error']!r}")
                else:
                    check("is not the one enrolled" in body["error"],
                          f"{case}: error {body['error']!r}")

        text = urllib.request.urlopen(f"http://127.0.0.1:{ports['admin']}/metrics",
                                      timeout=10).read().decode()
        values = dict(line.rsplit(" ", 1) for line in text.splitlines()
                      if line and not line.startswith("#"))
        counted = values.get(
            'webtrap_collector_sensor_requests_rejected_total{reason="certificate"}')
        check(counted == str(rejections),
              f"certificate rejections counted: {counted}, expected {rejections}")
        log = (folder / "collector.log").read_text(errors="replace")
        check("rejected an ingest request with 403" in log, "no log line for the rejections")
    print("collector certificate binding: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
