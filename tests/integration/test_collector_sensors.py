#!/usr/bin/env python3
"""Sensor revocation and token rotation in a running collector.

Two sensors are enrolled and the collector is started. Then, with the
collector running:

- after `collector revoke`, the next request with the sensor's token fails
  with 403 and a message naming the revocation, also on a keep-alive
  connection opened before. The sensor's stored records stay, and
  `collector sensors`, /healthz and /metrics list it as revoked;
- enrolling the revoked sensor again gives a new token that works, while the
  old one stays rejected;
- enrolling an active sensor again (token rotation) rejects its old token
  with 401 and accepts the new one, with its record count kept.

A store written before sensors could be revoked (schema version 1) is
upgraded at open: its sensors keep their tokens and can be revoked. Before
the first enrolment, the commands that only read the store fail with an
error naming its path and create no store.

Exit status: 0 pass, 1 a check failed, 77 bench/collector/make_records.py is
missing.
"""

import hashlib
import http.client
import json
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request

from probe_harness import BIN, SOURCE_DIR, CollectorRun, collector_ports, enrol_sensor

MAKE_RECORDS = SOURCE_DIR / "bench" / "collector" / "make_records.py"


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def post(connection, token, body):
    """Posts a batch on a kept-alive connection; returns (status, parsed JSON body)."""
    connection.request("POST", "/v1/records", body=body,
                       headers={"Authorization": f"Bearer {token}",
                                "Content-Type": "application/x-ndjson"})
    response = connection.getresponse()
    return response.status, json.loads(response.read())


def collector_command(config, *args):
    return subprocess.run([BIN, "collector", "--config", str(config), *args],
                          capture_output=True, text=True, timeout=60)


def sensors_by_id(config):
    result = collector_command(config, "sensors")
    check(result.returncode == 0, f"`collector sensors` failed: {result.stderr}")
    return {entry["sensor_id"]: entry
            for entry in map(json.loads, result.stdout.splitlines())}


def metrics(admin_port):
    text = urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics",
                                  timeout=10).read().decode()
    return dict(line.rsplit(" ", 1) for line in text.splitlines()
                if line and not line.startswith("#"))


def check_version1_store_upgrade(folder):
    """Opens a store with the version 1 sensors table and revokes a sensor in it."""
    state = folder / "old-state"
    state.mkdir()
    token = "0" * 64
    with sqlite3.connect(state / "store.sqlite") as database:
        database.executescript("""
CREATE TABLE sensors (
  sensor_id TEXT PRIMARY KEY,
  group_name TEXT NOT NULL,
  token_sha256 TEXT NOT NULL UNIQUE,
  enrolled_ms INTEGER NOT NULL,
  last_seen_ms INTEGER NOT NULL,
  records INTEGER NOT NULL
);
PRAGMA user_version=1;
""")
        database.execute("INSERT INTO sensors VALUES('old-sensor', 'dmz', ?, 1000, 2000, 7)",
                         (hashlib.sha256(token.encode()).hexdigest(),))
    database.close()
    config = folder / "old.yaml"
    config.write_text(f"listen: 127.0.0.1:0\nadmin: {{listen: ''}}\nstate_dir: {state}\n")
    listed = sensors_by_id(config)
    check(listed["old-sensor"]["records"] == 7, f"upgraded store: {listed}")
    check(listed["old-sensor"]["revoked"] is None, f"upgraded store: {listed}")
    check(listed["old-sensor"]["certificate_sha256"] == "", f"upgraded store: {listed}")
    revoke = collector_command(config, "revoke", "--sensor-id", "old-sensor")
    check(revoke.returncode == 0, f"revoke in an upgraded store failed: {revoke.stderr}")
    check(sensors_by_id(config)["old-sensor"]["revoked"] is not None,
          "revoke in an upgraded store did not mark the sensor")
    with sqlite3.connect(state / "store.sqlite") as database:
        version = database.execute("PRAGMA user_version").fetchone()[0]
        offset_columns = [row[1] for row in database.execute("PRAGMA table_info(file_offsets)")]
        letter_columns = [row[1] for row in database.execute("PRAGMA table_info(dead_letters)")]
    database.close()
    check(version == 7, f"schema version after the upgrade: {version}, expected 7")
    check("head" in offset_columns, f"file_offsets columns after the upgrade: {offset_columns}")
    check("empty_at_ns" in offset_columns,
          f"file_offsets columns after the upgrade: {offset_columns}")
    check("record_key" in letter_columns,
          f"dead_letters columns after the upgrade: {letter_columns}")


def main():
    if not MAKE_RECORDS.exists():
        print("bench/collector/make_records.py is missing", file=sys.stderr)
        return 77
    with CollectorRun("webtrap-collector-sensors-") as run:
        folder = run.folder
        subprocess.run([sys.executable, str(MAKE_RECORDS), "--count", "6", "--probe-output",
                        str(folder / "records.ndjson")], check=True, capture_output=True,
                       timeout=60)
        records = (folder / "records.ndjson").read_bytes().splitlines(keepends=True)
        config = folder / "collector.yaml"
        config.write_text(f"""listen: 127.0.0.1:0
admin: {{listen: 127.0.0.1:0}}
state_dir: {folder / "state"}
""")
        # Commands that only read the store fail on a missing store and
        # create none, so a wrong folder cannot report an empty store.
        # A count that is not a whole number is rejected before the store
        # is opened, naming the value and what to give.
        for option, value in (("--last", "-1"), ("--last", "abc"), ("--after-seq", "-1"),
                              ("--after-seq", "1.5")):
            result = collector_command(config, "tail", option, value)
            check(result.returncode != 0, f"`tail {option} {value}` was accepted")
            check(f"invalid value {value}; give" in result.stderr,
                  f"`tail {option} {value}` does not name the value: {result.stderr}")
            check("whole number of 0 or more" in result.stderr,
                  f"`tail {option} {value}` does not say what to give: {result.stderr}")
        for command in ("count", "sensors", "tail", "dead-letters"):
            result = collector_command(config, command)
            check(result.returncode == 2 and "does not exist" in result.stderr
                  and str(folder / "state" / "store.sqlite") in result.stderr,
                  f"`collector {command}` without a store: {result.returncode} {result.stderr}")
            check(not (folder / "state" / "store.sqlite").exists(),
                  f"`collector {command}` created the store")
        token_a, _ = enrol_sensor(config, "sensor-a")
        token_b, _ = enrol_sensor(config, "sensor-b")
        collector = run.start(config)
        ports = collector_ports(collector, folder)
        connection = http.client.HTTPConnection("127.0.0.1", ports["ingest"], timeout=30)

        status, ack = post(connection, token_a, records[0] + records[1])
        check(status == 200 and ack["stored"] == 2, f"sensor-a before revoke: {status} {ack}")

        # Revocation takes effect on the open keep-alive connection.
        revoke = collector_command(config, "revoke", "--sensor-id", "sensor-a")
        check(revoke.returncode == 0, f"revoke failed: {revoke.stderr}")
        check("Revoked sensor \"sensor-a\"" in revoke.stdout, f"revoke output: {revoke.stdout}")
        status, body = post(connection, token_a, records[2])
        check(status == 403, f"revoked token: status {status}, expected 403")
        check("revoked" in body["error"] and "sensor-a" in body["error"],
              f"revoked token: error {body['error']!r} does not name the revocation")
        connection.close()
        connection = http.client.HTTPConnection("127.0.0.1", ports["ingest"], timeout=30)
        status, ack = post(connection, token_b, records[2])
        check(status == 200 and ack["stored"] == 1, f"sensor-b after revoking a: {status} {ack}")

        again = collector_command(config, "revoke", "--sensor-id", "sensor-a")
        check(again.returncode == 0 and "already revoked" in again.stdout,
              f"second revoke: {again.returncode} {again.stdout}")
        missing = collector_command(config, "revoke", "--sensor-id", "no-such-sensor")
        check(missing.returncode != 0, "revoking an unknown sensor succeeded")
        check("no such sensor" in missing.stderr, f"unknown sensor: {missing.stderr}")

        # The revoked sensor's records and row stay, marked revoked.
        count = json.loads(collector_command(config, "count").stdout)
        check(count["events"] == 3, f"events after revoke: {count}")
        # tail from a seq in range prints the rest. A seq past the last one
        # (taken from another store) prints nothing and warns on stderr.
        after = collector_command(config, "tail", "--after-seq", "1")
        check(after.returncode == 0 and len(after.stdout.splitlines()) == 2,
              f"tail --after-seq 1: {after.returncode} {after.stdout!r} {after.stderr}")
        past = collector_command(config, "tail", "--after-seq", "99")
        check(past.returncode == 0, f"tail --after-seq 99 exited {past.returncode}")
        check(past.stdout == "", f"tail --after-seq 99 printed {past.stdout!r}")
        check("--after-seq 99 is past the last seq" in past.stderr,
              f"tail --after-seq 99 does not warn: {past.stderr!r}")
        check("(3)" in past.stderr, f"the warning does not give the last seq: {past.stderr!r}")
        listed = sensors_by_id(config)
        check(listed["sensor-a"]["revoked"] is not None, f"sensors: {listed['sensor-a']}")
        check(listed["sensor-a"]["records"] == 2, f"sensors: {listed['sensor-a']}")
        check(listed["sensor-b"]["revoked"] is None, f"sensors: {listed['sensor-b']}")
        health = json.loads(urllib.request.urlopen(
            f"http://127.0.0.1:{ports['admin']}/healthz", timeout=10).read())
        health_sensors = {entry["sensor_id"]: entry for entry in health["sensors"]}
        check(health_sensors["sensor-a"]["revoked"] is not None, f"/healthz: {health_sensors}")
        check(health_sensors["sensor-b"]["revoked"] is None, f"/healthz: {health_sensors}")
        # With the dashboard off, the 404 at its address names the setting.
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{ports['admin']}/dashboard/", timeout=10)
            check(False, "/dashboard/ answered 2xx with the dashboard off")
        except urllib.error.HTTPError as error:
            body = error.read().decode()
            check(error.code == 404, f"/dashboard/ with the dashboard off: {error.code}")
            check("dashboard.enabled" in body, f"/dashboard/ 404 does not say how: {body}")
        values = metrics(ports["admin"])
        check(values.get('webtrap_collector_sensor_revoked{sensor="sensor-a"}') == "1",
              "metrics: sensor-a is not shown as revoked")
        check(values.get('webtrap_collector_sensor_revoked{sensor="sensor-b"}') == "0",
              "metrics: sensor-b is shown as revoked")
        check(values.get('webtrap_collector_sensor_requests_rejected_total{reason="revoked"}')
              == "1", "metrics: the rejected request of the revoked sensor is not counted")

        # Enrolling the revoked sensor again gives a new token; the old one stays rejected.
        new_token_a, output = enrol_sensor(config, "sensor-a")
        check(new_token_a != token_a, "re-enrolling gave the old token")
        check("lifting its revocation" in output, f"re-enrol output: {output}")
        status, _ = post(connection, token_a, records[3])
        check(status == 401, f"old token after re-enrolling: status {status}, expected 401")
        status, ack = post(connection, new_token_a, records[3])
        check(status == 200 and ack["stored"] == 1, f"new token of sensor-a: {status} {ack}")
        check(sensors_by_id(config)["sensor-a"]["revoked"] is None, "re-enrolled sensor-a is "
              "still listed as revoked")

        # Token rotation of an active sensor on an open connection.
        new_token_b, output = enrol_sensor(config, "sensor-b")
        check("replacing its previous token" in output, f"rotation output: {output}")
        status, body = post(connection, token_b, records[4])
        check(status == 401, f"old token after rotation: status {status}, expected 401")
        check("unknown token" in body["error"], f"old token after rotation: {body}")
        status, ack = post(connection, new_token_b, records[4])
        check(status == 200 and ack["stored"] == 1, f"new token of sensor-b: {status} {ack}")
        connection.close()
        listed = sensors_by_id(config)
        check(listed["sensor-b"]["records"] >= 1,
              f"rotation reset the record count of sensor-b: {listed['sensor-b']}")

        check_version1_store_upgrade(folder)
    print("collector sensors: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
