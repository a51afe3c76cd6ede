#!/usr/bin/env python3
"""One sensor enrolled on two collectors with the same token.

Collector A makes the token (`enrol --token-file`); collector B enrols the
same sensor id with `enrol --existing-token-file` (from the file, then again
from standard input). `webtrap ship` then sends one spool to A and a copy to
B with the same token file, the collector URL coming from
WEBTRAP__SHIPPER__URL. Both stores must hold every record under the sensor
and group.

Also checked:
- enrol never prints a reused token;
- enrol rejects an invalid token file, --token-file together with
  --existing-token-file, and a token that another sensor has;
- a certificate binding is stored with a reused token;
- after `revoke` on B, B rejects the token, A accepts it, and B does not
  enrol it again.

Exit status: 0 pass, 1 a check failed, 77 bench/collector/make_records.py is
missing.
"""

import http.client
import json
import os
import shutil
import sqlite3
import subprocess
import sys

from probe_harness import BIN, SOURCE_DIR, CollectorRun, collector_ports, start_collector

MAKE_RECORDS = SOURCE_DIR / "bench" / "collector" / "make_records.py"
RECORDS = 6


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def collector_command(config, *args, stdin=None):
    return subprocess.run([BIN, "collector", "--config", str(config), *args], input=stdin,
                          capture_output=True, text=True, timeout=60)


def sensors_by_id(config):
    result = collector_command(config, "sensors")
    check(result.returncode == 0, f"`collector sensors` failed: {result.stderr}")
    return {entry["sensor_id"]: entry for entry in map(json.loads, result.stdout.splitlines())}


def token_hash(store, sensor_id):
    with sqlite3.connect(store) as database:
        row = database.execute("SELECT token_sha256 FROM sensors WHERE sensor_id = ?",
                               (sensor_id,)).fetchone()
    database.close()
    return row[0] if row else None


def write_config(folder, name, extra=""):
    config = folder / f"{name}.yaml"
    config.write_text(f"listen: 127.0.0.1:0\nadmin:\n  listen: ''\n"
                      f"state_dir: {folder / name}\n{extra}")
    return config


def ship(folder, spool, token_file, port):
    """Runs `webtrap ship --until-idle` on `spool` to the collector on `port`."""
    config = folder / "ship.yaml"
    config.write_text(f"shipper:\n  token_file: {token_file}\n  retry_max: 1s\n")
    environment = dict(os.environ, WEBTRAP__SHIPPER__URL=f"http://127.0.0.1:{port}")
    result = subprocess.run([BIN, "ship", "--config", str(config), "--spool", str(spool),
                             "--until-idle", "--metrics-listen", "off"], env=environment,
                            capture_output=True, text=True, timeout=60)
    check(result.returncode == 0, f"ship to port {port} failed: {result.stderr}")
    check("shipper.url from WEBTRAP__SHIPPER__URL" in result.stderr,
          f"ship log does not name WEBTRAP__SHIPPER__URL: {result.stderr}")


def post_status(port, token, body):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("POST", "/v1/records", body=body,
                       headers={"Authorization": f"Bearer {token}",
                                "Content-Type": "application/x-ndjson"})
    status = connection.getresponse().status
    connection.close()
    return status


def check_rejected_inputs(folder, config_b, token_file):
    bad = folder / "bad.token"
    bad.write_text("not-a-token\n")
    result = collector_command(config_b, "enrol", "--sensor-id", "web1",
                               "--existing-token-file", str(bad))
    check(result.returncode != 0, "enrol accepted an invalid token file")
    check("invalid token (11 characters" in result.stderr, f"invalid token: {result.stderr}")
    check("not-a-token" not in result.stderr, "the invalid token was echoed")

    result = collector_command(config_b, "enrol", "--sensor-id", "web1", "--existing-token-file",
                               str(token_file), "--token-file", str(folder / "out.token"))
    check(result.returncode != 0, "enrol accepted --token-file with --existing-token-file")
    check("both given" in result.stderr, f"both options: {result.stderr}")

    result = collector_command(config_b, "enrol", "--sensor-id", "web2",
                               "--existing-token-file", str(token_file))
    check(result.returncode != 0, "enrol gave one token to two sensors")
    check('already enrolled for sensor "web1"' in result.stderr, f"shared token: {result.stderr}")


def check_certificate_binding(folder, token_file):
    # The certificate files are read only when the collector starts, so enrol
    # needs none on disk.
    config = write_config(folder, "c", "tls:\n  certificate: /nonexistent/c.pem\n"
                          "  private_key: /nonexistent/c.key\n  client_ca: /nonexistent/ca.pem\n")
    result = collector_command(config, "enrol", "--sensor-id", "web1", "--existing-token-file",
                               str(token_file), "--client-certificate-cn", "web1.example")
    check(result.returncode == 0, f"enrol with a binding failed: {result.stderr}")
    check("subject CN is \"web1.example\"" in result.stdout, f"binding output: {result.stdout}")
    listed = sensors_by_id(config)["web1"]
    check(listed["certificate_cn"] == "web1.example", f"binding not stored: {listed}")


def main():
    if not MAKE_RECORDS.exists():
        print("bench/collector/make_records.py is missing", file=sys.stderr)
        return 77
    with CollectorRun("webtrap-enrol-two-") as run:
        folder = run.folder
        subprocess.run([sys.executable, str(MAKE_RECORDS), "--count", str(RECORDS),
                        "--probe-output", str(folder / "records.ndjson")], check=True,
                       capture_output=True, timeout=60)
        spool_a = folder / "spool-a"
        spool_a.mkdir()
        shutil.copy(folder / "records.ndjson", spool_a / "segment-000000000001.ndjson")
        spool_b = folder / "spool-b"
        shutil.copytree(spool_a, spool_b)

        config_a = write_config(folder, "a")
        config_b = write_config(folder, "b")
        token_file = folder / "web1.token"
        result = collector_command(config_a, "enrol", "--sensor-id", "web1", "--group", "lb",
                                   "--token-file", str(token_file))
        check(result.returncode == 0, f"enrol on A failed: {result.stderr}")
        token = token_file.read_text().strip()

        result = collector_command(config_b, "enrol", "--sensor-id", "web1", "--group", "lb",
                                   "--existing-token-file", str(token_file))
        check(result.returncode == 0, f"enrol on B failed: {result.stderr}")
        check(f"with the token in {token_file}" in result.stdout, f"enrol B: {result.stdout}")
        check(f"token_file: {token_file}" in result.stdout, f"enrol B: {result.stdout}")
        check(token not in result.stdout + result.stderr, "enrol printed the reused token")
        check(token_file.read_text().strip() == token, "enrol on B changed the token file")

        result = collector_command(config_b, "enrol", "--sensor-id", "web1", "--group", "lb",
                                   "--existing-token-file", "-", stdin=token + "\n")
        check(result.returncode == 0, f"enrol on B from stdin failed: {result.stderr}")
        check("read from standard input, keeping its token" in result.stdout,
              f"enrol B from stdin: {result.stdout}")

        hash_a = token_hash(folder / "a" / "store.sqlite", "web1")
        hash_b = token_hash(folder / "b" / "store.sqlite", "web1")
        check(hash_a is not None and hash_a == hash_b, f"token hashes differ: {hash_a} {hash_b}")
        check(sensors_by_id(config_b)["web1"]["group"] == "lb", "group not kept on B")

        check_rejected_inputs(folder, config_b, token_file)
        check_certificate_binding(folder, token_file)

        collector_a = run.start(config_a)
        ports_a = collector_ports(collector_a, folder)
        folder_b = folder / "run-b"
        folder_b.mkdir()
        collector_b = start_collector(config_b, folder_b)
        try:
            ports_b = collector_ports(collector_b, folder_b)
            ship(folder, spool_a, token_file, ports_a["ingest"])
            ship(folder, spool_b, token_file, ports_b["ingest"])
            for name, config in (("A", config_a), ("B", config_b)):
                count = json.loads(collector_command(config, "count").stdout)
                check(count["events"] == RECORDS, f"collector {name}: {count}, expected "
                      f"{RECORDS} events")
                listed = sensors_by_id(config)["web1"]
                check(listed["records"] == RECORDS and listed["group"] == "lb",
                      f"collector {name}: sensor {listed}")
            print(f"ship: {RECORDS} records stored on each of two collectors with one token")

            record = (folder / "records.ndjson").read_bytes().splitlines(keepends=True)[0]
            revoke = collector_command(config_b, "revoke", "--sensor-id", "web1")
            check(revoke.returncode == 0, f"revoke on B failed: {revoke.stderr}")
            check(post_status(ports_b["ingest"], token, record) == 403,
                  "B accepted the token after revoke")
            check(post_status(ports_a["ingest"], token, record) == 200,
                  "A rejected the token after revoke on B")
            again = collector_command(config_b, "enrol", "--sensor-id", "web1",
                                      "--existing-token-file", str(token_file))
            check(again.returncode != 0, "B enrolled the revoked token again")
            check("was revoked with this token" in again.stderr, f"revoked: {again.stderr}")
            print("revoke: B rejects the token, A still accepts it")
        finally:
            collector_b.terminate()
            collector_b.wait(timeout=30)
    print("collector enrol on two collectors: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
