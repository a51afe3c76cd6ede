#!/usr/bin/env python3
"""Check the cloud-init user-data for a probe host (deploy/cloud-init).

- `cloud-init schema --config-file` accepts it, and rejects a copy with a
  broken key, so the check can fail.
- The probe.yaml it writes starts the real webtrap probe (listeners moved to
  loopback port 0 and the shipper section, which names a placeholder
  collector, left out) and returns 200 on GET /healthz.
- The build steps name files and install-deps.sh options that exist, the
  token guard is there, and the firewall opens exactly the probe's ports.

cloud-init comes from `scripts/install-deps.sh --with-cloud-init`, which
unpacks the Debian package into .peers/cloud-init without installing it.
Exits 77 (skipped) when neither that copy nor a cloud-init command exists.
"""

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

import yaml


def source_dir():
    env = os.environ.get("WEBTRAP_SOURCE_DIR")
    return pathlib.Path(env) if env else pathlib.Path(__file__).resolve().parents[2]


SOURCE = source_dir()
USER_DATA = SOURCE / "deploy" / "cloud-init" / "probe-user-data.yaml"
WEBTRAP = os.environ.get("WEBTRAP_BIN", str(SOURCE / "build" / "webtrap"))
UNPACKED = SOURCE / ".peers" / "cloud-init"


def cloud_init_command():
    """Return the command that runs cloud-init, or None."""
    script = UNPACKED / "usr" / "bin" / "cloud-init"
    if script.exists():
        # Debian's python3, which has the python3-* packages cloud-init imports.
        return ["env", f"PYTHONPATH={UNPACKED / 'usr/lib/python3/dist-packages'}",
                "/usr/bin/python3", str(script)]
    if shutil.which("cloud-init"):
        return ["cloud-init"]
    return None


def schema_check(command, path):
    return subprocess.run(command + ["schema", "--config-file", str(path)],
                          capture_output=True, text=True)


def check_schema(command, failures, work):
    result = schema_check(command, USER_DATA)
    if result.returncode != 0 or "Valid cloud-config" not in result.stdout:
        failures.append(f"cloud-init schema rejected {USER_DATA.name} "
                        f"(exit {result.returncode}): {result.stdout}{result.stderr}")
    # Negative control: packages must be a list.
    broken = work / "broken.yaml"
    broken.write_text(USER_DATA.read_text().replace("packages:\n  - git\n", "packages: git\n", 1))
    if broken.read_text() == USER_DATA.read_text():
        failures.append("negative control: the packages list was not found to break")
    elif schema_check(command, broken).returncode == 0:
        failures.append("cloud-init schema accepted a user-data with packages: git (a string)")


def written_file(user_data, path):
    for entry in user_data["write_files"]:
        if entry["path"] == path:
            return entry
    return None


def check_contents(user_data, failures):
    if not USER_DATA.read_text().startswith("#cloud-config\n"):
        failures.append("the first line is not #cloud-config")
    script = "\n".join(step[-1] for step in user_data["runcmd"] if isinstance(step, list))
    for option in re.findall(r"install-deps\.sh ((?:--[a-z-]+ ?)+)", script):
        result = subprocess.run([str(SOURCE / "scripts" / "install-deps.sh"), *option.split(),
                                 "--print"], capture_output=True, text=True)
        if result.returncode != 0:
            failures.append(f"install-deps.sh {option} --print failed: {result.stderr}")
    for relative in re.findall(r"deploy/[\w./-]+", script):
        if not (SOURCE / relative).exists():
            failures.append(f"runcmd installs {relative}, which does not exist")
    if "grep -q REPLACE" not in script:
        failures.append("runcmd does not stop on REPLACE placeholders")
    token = written_file(user_data, "/etc/webtrap/sensor.token")
    if token is None or token.get("permissions") != "0640" or not token.get("defer"):
        failures.append("/etc/webtrap/sensor.token must be mode 0640 and deferred "
                        "until the webtrap user exists")

    probe = yaml.safe_load(written_file(user_data, "/etc/webtrap/probe.yaml")["content"])
    probe_ports = {int(listener["address"].rsplit(":", 1)[1]) for listener in probe["listeners"]}
    firewall = written_file(user_data, "/etc/nftables.conf")["content"]
    opened = set()
    for match in re.findall(r"tcp dport \{?([\d, ]+)\}? accept", firewall):
        opened |= {int(port) for port in match.replace(",", " ").split()}
    if opened != probe_ports | {22}:
        failures.append(f"the firewall opens {sorted(opened)}, expected SSH and the probe's "
                        f"ports {sorted(probe_ports | {22})}")
    if "policy drop" not in firewall.split("chain input", 1)[1].split("}", 1)[0]:
        failures.append("the firewall's input chain does not drop by default")
    if not probe["admin"]["listen"].startswith("127.0.0.1:"):
        failures.append("the probe's admin listener is not on loopback")


def check_probe_starts(user_data, failures, work):
    probe = yaml.safe_load(written_file(user_data, "/etc/webtrap/probe.yaml")["content"])
    del probe["shipper"]
    for listener in probe["listeners"]:
        listener["address"] = "127.0.0.1:0"
    probe["admin"]["listen"] = "127.0.0.1:0"
    config = work / "probe.yaml"
    config.write_text(yaml.safe_dump(probe))
    ports_file = work / "ports.json"
    log_file = work / "probe.log"
    command = [WEBTRAP, "probe", "--config", str(config), "--ports-file", str(ports_file),
               "--spool", str(work / "spool"), "--state-dir", str(work / "state")]
    with open(log_file, "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not (ports_file.exists() and ports_file.stat().st_size > 0):
            if process.poll() is not None or time.monotonic() > deadline:
                failures.append(f"the probe did not start with the user-data's probe.yaml: "
                                f"{log_file.read_text()[-2000:]}")
                return
            time.sleep(0.2)
        ports = json.loads(ports_file.read_text())
        url = f"http://127.0.0.1:{ports['admin']}/healthz"
        deadline = time.monotonic() + 10
        while True:
            try:
                with urllib.request.urlopen(url, timeout=10) as response:
                    if response.status != 200:
                        failures.append(f"{url} returned {response.status}")
                break
            except OSError as error:
                if time.monotonic() > deadline:
                    failures.append(f"GET {url} failed: {error}")
                    break
                time.sleep(0.2)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main():
    command = cloud_init_command()
    if command is None:
        print("deploy cloud-init: SKIPPED, cloud-init is not available "
              "(scripts/install-deps.sh --with-cloud-init)")
        return 77
    user_data = yaml.safe_load(USER_DATA.read_text())
    failures = []
    work = pathlib.Path(tempfile.mkdtemp(prefix="webtrap-cloud-init-"))
    # Started as root, the probe switches to nobody, which must reach its spool.
    work.chmod(0o755)
    try:
        check_schema(command, failures, work)
        check_contents(user_data, failures)
        check_probe_starts(user_data, failures, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for failure in failures:
        print(f"FAIL: {failure}")
    if failures:
        print(f"deploy cloud-init: {len(failures)} failed")
        return 1
    print("deploy cloud-init: schema, contents and probe configuration passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
