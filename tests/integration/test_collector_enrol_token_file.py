#!/usr/bin/env python3
"""`collector enrol --existing-token-file` with careless token files.

Checked:
- a token file that every user can read (o+r) is enrolled, with a warning that
  names the file and the chmod fix but not the token;
- a mode 0600 file gets no warning;
- a folder as the token file fails with a message that calls it a folder.

Exit status: 0 pass, 1 a check failed.
"""

import os
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path

from probe_harness import BIN


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def enrol(config, sensor_id, token_file):
    return subprocess.run([BIN, "collector", "--config", str(config), "enrol", "--sensor-id",
                           sensor_id, "--existing-token-file", str(token_file)],
                          capture_output=True, text=True, timeout=60)


def main():
    with tempfile.TemporaryDirectory(prefix="webtrap-enrol-file-") as name:
        folder = Path(name)
        config = folder / "c.yaml"
        config.write_text(f"listen: 127.0.0.1:0\nstate_dir: {folder / 'state'}\n")

        token = secrets.token_hex(32)
        shared = folder / "shared.token"
        shared.write_text(token + "\r\n")
        os.chmod(shared, 0o644)
        result = enrol(config, "web1", shared)
        check(result.returncode == 0, f"enrol failed: {result.stderr}")
        check("readable by other users" in result.stderr, f"no warning: {result.stderr!r}")
        check(f"chmod 600 {shared}" in result.stderr, f"no fix named: {result.stderr!r}")
        check(token not in result.stdout + result.stderr, "enrol printed the token")
        print("mode 0644: enrolled with a warning")

        private = folder / "private.token"
        private.write_text(secrets.token_hex(32) + "\n")
        os.chmod(private, 0o600)
        result = enrol(config, "web2", private)
        check(result.returncode == 0, f"enrol failed: {result.stderr}")
        check("readable by other users" not in result.stderr, f"warning: {result.stderr!r}")
        print("mode 0600: enrolled without a warning")

        result = enrol(config, "web3", folder)
        check(result.returncode != 0, "enrol accepted a folder as the token file")
        check("is a folder" in result.stderr, f"folder: {result.stderr!r}")
        print("folder: rejected")
    print("collector enrol token files: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
