#!/usr/bin/env python3
"""A revoked sensor token stays rejected by `collector enrol --existing-token-file`.

Sensor web1 is enrolled with a token file, revoked, and enrolled again with
a new token. Enrolling the old token afterwards, for web1 or for another
sensor, must fail, because revocation promises that the token is never
accepted again. A store written before the retired-token list (schema
version 2) must also remember the token of a sensor revoked back then.
An enrolment with --token-file keeps the token out of its output and prints
what replaces the placeholder in the printed ModSecurity line.

Exit status: 0 pass, 1 a check failed.
"""

import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

from probe_harness import BIN


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def collector_command(config, *args):
    return subprocess.run([BIN, "collector", "--config", str(config), *args],
                          capture_output=True, text=True, timeout=60)


def enrol_existing(config, sensor_id, token_file):
    return collector_command(config, "enrol", "--sensor-id", sensor_id,
                             "--existing-token-file", str(token_file))


def check_revoked_token_rejected(folder):
    config = folder / "c.yaml"
    config.write_text(f"listen: 127.0.0.1:0\nstate_dir: {folder / 'state'}\n")
    old_token = folder / "web1-old.token"
    result = collector_command(config, "enrol", "--sensor-id", "web1", "--token-file",
                               str(old_token))
    check(result.returncode == 0, f"first enrol failed: {result.stderr}")
    result = collector_command(config, "revoke", "--sensor-id", "web1")
    check(result.returncode == 0, f"revoke failed: {result.stderr}")
    result = collector_command(config, "enrol", "--sensor-id", "web1", "--token-file",
                               str(folder / "web1-new.token"))
    check(result.returncode == 0, f"enrol with a new token failed: {result.stderr}")

    for sensor_id in ("web2", "web1"):
        result = enrol_existing(config, sensor_id, old_token)
        check(result.returncode != 0, f"enrol gave the revoked token to {sensor_id}")
        check('this token was revoked for sensor "web1"' in result.stderr,
              f"{sensor_id}: {result.stderr}")
        check("--existing-token-file" in result.stderr, f"{sensor_id}: {result.stderr}")
        token = old_token.read_text().strip()
        check(token not in result.stdout + result.stderr, "enrol printed the revoked token")

    fresh_token = folder / "web3.token"
    result = collector_command(config, "enrol", "--sensor-id", "web3", "--token-file",
                               str(fresh_token))
    check(result.returncode == 0, f"enrol of web3 failed: {result.stderr}")
    # The ModSecurity line cannot read a token file, so the output explains
    # what replaces its placeholder.
    placeholder = f"TOKEN-FROM-{fresh_token}"
    check(f"/v1/modsecurity/{placeholder}" in result.stdout, result.stdout)
    check(f"Replace {placeholder} with the content of {fresh_token}" in result.stdout,
          f"enrol --token-file printed no hint for its placeholder:\n{result.stdout}")
    check(fresh_token.read_text().strip() not in result.stdout, "enrol printed the token")
    result = enrol_existing(config, "web3", fresh_token)
    check(result.returncode == 0, f"a live token was rejected: {result.stderr}")
    print("revoked token: rejected for the same and for another sensor")


def check_version_2_store(folder):
    config = folder / "v2.yaml"
    store = folder / "v2" / "store.sqlite"
    config.write_text(f"listen: 127.0.0.1:0\nstate_dir: {folder / 'v2'}\n")
    token_file = folder / "v2.token"
    result = collector_command(config, "enrol", "--sensor-id", "web1", "--token-file",
                               str(token_file))
    check(result.returncode == 0, f"enrol failed: {result.stderr}")
    result = collector_command(config, "revoke", "--sensor-id", "web1")
    check(result.returncode == 0, f"revoke failed: {result.stderr}")
    # Turn the store back into schema version 2, which had no retired-token
    # list. The next command upgrades it, and web1 then gets a new token.
    with sqlite3.connect(store) as database:
        database.execute("DROP TABLE IF EXISTS retired_tokens")
        database.execute("PRAGMA user_version=2")
    database.close()
    result = collector_command(config, "enrol", "--sensor-id", "web1", "--token-file",
                               str(folder / "v2-new.token"))
    check(result.returncode == 0, f"enrol with a new token failed: {result.stderr}")
    result = enrol_existing(config, "web2", token_file)
    check(result.returncode != 0, "a version 2 store forgot the revoked token")
    check('this token was revoked for sensor "web1"' in result.stderr,
          f"version 2 store: {result.stderr}")
    print("revoked token: remembered after upgrading a version 2 store")


def main():
    with tempfile.TemporaryDirectory(prefix="webtrap-enrol-retired-") as name:
        folder = Path(name)
        check_revoked_token_rejected(folder)
        check_version_2_store(folder)
    print("collector enrol with a revoked token: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
