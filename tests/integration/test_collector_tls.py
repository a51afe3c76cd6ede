#!/usr/bin/env python3
"""The collector's ingest listener over HTTPS, with and without client certificates.

The test makes a CA, a server certificate for 127.0.0.1 and a client
certificate with the openssl command. It starts the collector with
tls.require_client_certificate. A sender with the client certificate must
get its batch stored, and one without it must fail the TLS handshake.

Exit status: 0 pass, 1 a check failed, 77 the openssl command is missing.
"""

import json
import shutil
import ssl
import subprocess
import sys
import urllib.error
import urllib.request

from probe_harness import SOURCE_DIR, CollectorRun, collector_ports, enrol_sensor

MAKE_RECORDS = SOURCE_DIR / "bench" / "collector" / "make_records.py"


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_certificates(folder):
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test CA",
            "-keyout", "ca.key", "-out", "ca.pem", cwd=folder)
    for name, extension in (("server", "subjectAltName=IP:127.0.0.1"),
                            ("client", "extendedKeyUsage=clientAuth")):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
                "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=folder)
        (folder / f"{name}.ext").write_text(extension + "\n")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-days", "2", "-extfile", f"{name}.ext",
                "-out", f"{name}.pem", cwd=folder)


def post(port, context, token, body):
    request = urllib.request.Request(f"https://127.0.0.1:{port}/v1/records", data=body,
                                     method="POST",
                                     headers={"Authorization": f"Bearer {token}",
                                              "Content-Type": "application/x-ndjson"})
    with urllib.request.urlopen(request, timeout=30, context=context) as response:
        return response.status, json.loads(response.read())


def main():
    if shutil.which("openssl") is None or not MAKE_RECORDS.exists():
        print("the openssl command or bench/collector/make_records.py is missing", file=sys.stderr)
        return 77
    with CollectorRun("webtrap-collector-tls-") as run:
        folder = run.folder
        make_certificates(folder)
        subprocess.run([sys.executable, str(MAKE_RECORDS), "--count", "1", "--probe-output",
                        str(folder / "record.ndjson")], check=True, capture_output=True, timeout=60)
        record = (folder / "record.ndjson").read_bytes()
        config = folder / "collector.yaml"
        config.write_text(f"""listen: 127.0.0.1:0
admin: {{listen: 127.0.0.1:0, token: admin-secret}}
state_dir: {folder / "state"}
tls:
  certificate: {folder / "server.pem"}
  private_key: {folder / "server.key"}
  client_ca: {folder / "ca.pem"}
  require_client_certificate: true
""")
        token, enrol_output = enrol_sensor(config, "tls-sensor")
        check("url: https://127.0.0.1:" in enrol_output, "enrol prints no https url")
        check("ca_file:" in enrol_output, "enrol prints no ca_file line")

        collector = run.start(config)
        ports = collector_ports(collector, folder)
        port = ports["ingest"]
        admin = ports["admin"]

        # The admin listener requires admin.token.
        for headers, expected in (({}, 401), ({"Authorization": "Bearer wrong"}, 401),
                                  ({"Authorization": "Bearer admin-secret"}, 200)):
            request = urllib.request.Request(f"http://127.0.0.1:{admin}/metrics", headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    status = response.status
            except urllib.error.HTTPError as error:
                status = error.code
            check(status == expected, f"/metrics with {headers}: {status}, expected {expected}")

        with_certificate = ssl.create_default_context(cafile=str(folder / "ca.pem"))
        with_certificate.load_cert_chain(str(folder / "client.pem"), str(folder / "client.key"))
        status, ack = post(port, with_certificate, token, record)
        check(status == 200 and ack["stored"] == 1, f"with a client certificate: {status} {ack}")

        without_certificate = ssl.create_default_context(cafile=str(folder / "ca.pem"))
        try:
            post(port, without_certificate, token, record)
            check(False, "a sender without a client certificate was accepted")
        except (ssl.SSLError, urllib.error.URLError, ConnectionResetError) as error:
            print(f"without a client certificate: rejected as expected ({error})")

        status, ack = post(port, with_certificate, token, record)
        check(status == 200 and ack["duplicates"] == 1, f"resend: {status} {ack}")
    print("collector TLS: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
