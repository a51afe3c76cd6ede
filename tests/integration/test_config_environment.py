#!/usr/bin/env python3
"""Configuration keys set from WEBTRAP__ environment variables in real processes.

- A collector whose file sets `listen: 127.0.0.1:1` is started with
  WEBTRAP__LISTEN set to a free port and WEBTRAP__ADMIN__TOKEN set to a
  secret. It must listen on that port, require that admin token, and log the
  overridden keys by name without the secret.
- An unknown key, a value for a map and an invalid value each stop the
  collector at start with a message that names the variable.
- `webtrap ship` names WEBTRAP__SHIPPER__URL when the shipper's own check
  rejects the URL.
- `webtrap probe` takes WEBTRAP__LISTENERS as a YAML flow list.

Exit status: 0 pass, 1 a check failed.
"""

import json
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request

from probe_harness import BIN, CollectorRun, collector_ports, wait_for

ADMIN_SECRET = "admin-secret-4f1c9e"


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def free_port():
    """Returns a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def admin_status(port, token=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def start_failure(command, config, variables):
    """Runs `webtrap COMMAND --config CONFIG` with `variables`; returns (exit code, stderr)."""
    environment = dict(os.environ, **variables)
    result = subprocess.run([BIN, command, "--config", str(config)], env=environment,
                            capture_output=True, text=True, timeout=60)
    return result.returncode, result.stderr


def check_collector_listens_on_variable_port(run):
    folder = run.folder
    config = folder / "collector.yaml"
    config.write_text(f"listen: 127.0.0.1:1\nadmin:\n  listen: 127.0.0.1:0\n"
                      f"state_dir: {folder / 'state'}\n")
    port = free_port()
    environment = dict(os.environ, WEBTRAP__LISTEN=f"127.0.0.1:{port}",
                       WEBTRAP__ADMIN__TOKEN=ADMIN_SECRET)
    with open(folder / "collector.log", "wb") as log:
        run.collector = subprocess.Popen(
            [BIN, "collector", "--config", str(config), "--ports-file",
             str(folder / "ports.json")],
            stdout=log, stderr=subprocess.STDOUT, env=environment)
    ports = collector_ports(run.collector, folder)
    check(ports["ingest"] == port, f"ingest port {ports['ingest']}, expected {port} from "
          "WEBTRAP__LISTEN")
    with socket.create_connection(("127.0.0.1", port), timeout=10):
        pass
    check(admin_status(ports["admin"]) == 401, "admin listener answered without the token "
          "from WEBTRAP__ADMIN__TOKEN")
    check(admin_status(ports["admin"], ADMIN_SECRET) == 200,
          "admin listener rejected the token from WEBTRAP__ADMIN__TOKEN")
    log_text = (folder / "collector.log").read_text(errors="replace")
    check("configuration keys set from the environment: admin.token from "
          "WEBTRAP__ADMIN__TOKEN, listen from WEBTRAP__LISTEN" in log_text,
          f"start log does not name the overridden keys:\n{log_text}")
    check(ADMIN_SECRET not in log_text, "the admin token's value appears in the log")
    print(f"collector: listens on 127.0.0.1:{port} from WEBTRAP__LISTEN")


def check_collector_start_errors(run):
    config = run.folder / "collector.yaml"
    cases = [
        ({"WEBTRAP__LISTEN_ADDRESS": "127.0.0.1:7380"},
         "WEBTRAP__LISTEN_ADDRESS: listen_address is not a collector configuration key"),
        ({"WEBTRAP__OUTPUTS__NDJSON": "/tmp/x"},
         "WEBTRAP__OUTPUTS__NDJSON: outputs.ndjson is a map of keys"),
        ({"WEBTRAP__LISTEN": "localhost:7380"},
         "[set in the environment: listen from WEBTRAP__LISTEN; fix or unset the variable]"),
        ({"WEBTRAP__listen": "127.0.0.1:7380"}, "WEBTRAP__listen: invalid variable name"),
    ]
    for variables, expected in cases:
        code, stderr = start_failure("collector", config, variables)
        check(code != 0, f"collector started with {variables}")
        check(expected in stderr, f"{variables}: expected {expected!r} in:\n{stderr}")
    print(f"collector: {len(cases)} invalid overrides stop the start with the variable named")


def check_ship_error_names_variable(run):
    """A shipper URL from the environment that the shipper's own check rejects.

    The check runs before any connection, so nothing is sent.
    """
    config = run.folder / "ship.yaml"
    config.write_text("shipper:\n  token: abc\n")
    spool = run.folder / "ship-spool"
    spool.mkdir()
    environment = dict(os.environ, WEBTRAP__SHIPPER__URL="http://collector.invalid:7380",
                       WEBTRAP__SPOOL__DIR=str(run.folder / "unused-spool"))
    result = subprocess.run([BIN, "ship", "--config", str(config), "--spool", str(spool),
                             "--until-idle", "--metrics-listen", "off"], env=environment,
                            capture_output=True, text=True, timeout=60)
    check(result.returncode != 0, "ship accepted plain http to a non-loopback host")
    check("uses plain http to the non-loopback host" in result.stderr, result.stderr)
    check("[set in the environment: shipper.url from WEBTRAP__SHIPPER__URL;" in result.stderr,
          f"ship error does not name WEBTRAP__SHIPPER__URL: {result.stderr}")
    check("spool.dir from WEBTRAP__SPOOL__DIR is replaced by --spool" in result.stderr,
          f"no warning that --spool replaces WEBTRAP__SPOOL__DIR: {result.stderr}")
    print("ship: a rejected shipper.url names WEBTRAP__SHIPPER__URL")


def check_probe_listeners(run):
    folder = run.folder
    # Started as root, the probe runs as nobody, which must reach its spool.
    os.chmod(folder, 0o755)
    config = folder / "probe.yaml"
    config.write_text(f"listeners:\n  - address: 127.0.0.1:1\n"
                      f"state_dir: {folder / 'probe-state'}\nspool:\n  dir: {folder / 'spool'}\n"
                      "admin:\n  listen: ''\nhardening:\n  seccomp: false\n")
    port = free_port()
    environment = dict(os.environ, WEBTRAP__LISTENERS=f"[{{address: '127.0.0.1:{port}'}}]")
    log_path = folder / "probe.log"
    with open(log_path, "wb") as log:
        probe = subprocess.Popen([BIN, "probe", "--config", str(config)], stdout=log,
                                 stderr=subprocess.STDOUT, env=environment)
    try:
        def accepting():
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return True
            except OSError:
                check(probe.poll() is None, "probe exited:\n" + log_path.read_text())
                return False
        wait_for(accepting, 60, f"the probe on port {port}")
        check("listeners from WEBTRAP__LISTENERS" in log_path.read_text(),
              "probe start log does not name WEBTRAP__LISTENERS")
    finally:
        probe.terminate()
        probe.wait(timeout=30)
    print(f"probe: listens on 127.0.0.1:{port} from WEBTRAP__LISTENERS")


def check_probe_command_line_wins(run):
    """A command-line option replaces a variable, with a warning naming both."""
    folder = run.folder
    config = folder / "probe-cli.yaml"
    config.write_text(f"state_dir: {folder / 'probe-cli-state'}\n"
                      f"spool:\n  dir: {folder / 'spool-cli'}\n"
                      "admin:\n  listen: ''\nhardening:\n  seccomp: false\n")
    port = free_port()
    environment = dict(os.environ, WEBTRAP__LISTENERS="[{address: '127.0.0.1:1'}]",
                       WEBTRAP__SENSOR__ID="env-sensor")
    log_path = folder / "probe-cli.log"
    with open(log_path, "wb") as log:
        probe = subprocess.Popen([BIN, "probe", "--config", str(config), "--listen",
                                  f"127.0.0.1:{port}", "--sensor-id", "cli-sensor"],
                                 stdout=log, stderr=subprocess.STDOUT, env=environment)
    try:
        def accepting():
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return True
            except OSError:
                check(probe.poll() is None, "probe exited:\n" + log_path.read_text())
                return False
        wait_for(accepting, 60, f"the probe on port {port}")
        text = log_path.read_text()
        check("listeners from WEBTRAP__LISTENERS is replaced by --listen" in text,
              "no warning that --listen replaces WEBTRAP__LISTENERS:\n" + text)
        check("sensor.id from WEBTRAP__SENSOR__ID is replaced by --sensor-id" in text,
              "no warning that --sensor-id replaces WEBTRAP__SENSOR__ID:\n" + text)
        check("sensor=cli-sensor" in text, "the probe did not use --sensor-id:\n" + text)
    finally:
        probe.terminate()
        probe.wait(timeout=30)
    print("probe: command-line options replace variables, with a warning")


def main():
    with CollectorRun("webtrap-config-environment-") as run:
        check_collector_listens_on_variable_port(run)
        check_collector_start_errors(run)
        check_ship_error_names_variable(run)
        check_probe_listeners(run)
        check_probe_command_line_wins(run)
    print("config environment: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
