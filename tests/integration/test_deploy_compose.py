#!/usr/bin/env python3
"""Check the compose lab (deploy/compose) and the images' default configs.

- `docker-compose config` accepts deploy/compose/compose.yaml with no
  profile, each profile, and both profiles together.
- Every service uses the host network, each profile brings the services it
  promises, and the health URLs in the compose file match the admin
  listeners of the configuration files the services mount.
- Every listener in the lab's webtrap configuration files is on loopback.
- The real webtrap binary starts with each lab and image configuration file
  (paths moved to a temporary folder, ports replaced by 0 so that the test
  never collides with other services) and returns 200 on GET /healthz.

Exits 77 (skipped) when docker-compose is not installed.
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
COMPOSE = SOURCE / "deploy" / "compose" / "compose.yaml"
LAB = SOURCE / "deploy" / "compose" / "lab"
IMAGE_CONFIGS = SOURCE / "deploy" / "docker"
WEBTRAP = os.environ.get("WEBTRAP_BIN", str(SOURCE / "build" / "webtrap"))

BASE_SERVICES = {"enrol", "collector", "probe-a", "probe-b"}
PROFILE_SERVICES = {
    "elastic": {"elasticsearch", "kibana", "elastic-setup"},
    "misp": {"misp-db", "misp-redis", "misp-core"},
}
ADDRESS = re.compile(r"(?:\d+\.\d+\.\d+\.\d+|\[[0-9a-fA-F:]+\]):\d+")
LOOPBACK = re.compile(r"^(127\.\d+\.\d+\.\d+|\[::1\]):\d+$")


def compose_config(profiles, failures):
    command = ["docker-compose", "-f", str(COMPOSE)]
    for profile in profiles:
        command += ["--profile", profile]
    command.append("config")
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        failures.append(f"docker-compose config with profiles {profiles} exited "
                        f"{result.returncode}: {result.stderr.strip()}")
        return None
    return yaml.safe_load(result.stdout)


def check_compose(failures):
    for profiles in ([], ["elastic"], ["misp"], ["elastic", "misp"]):
        config = compose_config(profiles, failures)
        if config is None:
            continue
        services = config.get("services", {})
        expected = set(BASE_SERVICES)
        for profile in profiles:
            expected |= PROFILE_SERVICES[profile]
        missing = expected - set(services)
        if missing:
            failures.append(f"profiles {profiles}: services missing: {sorted(missing)}")
        for name, service in services.items():
            if service.get("network_mode") != "host":
                failures.append(f"service {name}: network_mode is "
                                f"{service.get('network_mode')!r}, expected 'host'")
            for port in service.get("ports", []) or []:
                failures.append(f"service {name}: publishes port {port}; the lab uses the "
                                "host network only")

    config = compose_config(["elastic", "misp"], failures)
    if config is None:
        return
    services = config["services"]
    for name in ("collector", "probe-a", "probe-b"):
        environment = services[name].get("environment", {})
        config_path = environment.get("WEBTRAP_CONFIG", "")
        prefix = "/etc/webtrap/lab/"
        if not config_path.startswith(prefix):
            failures.append(f"service {name}: WEBTRAP_CONFIG {config_path!r} is not under {prefix}")
            continue
        lab_file = LAB / config_path[len(prefix):]
        if not lab_file.is_file():
            failures.append(f"service {name}: {lab_file} does not exist")
            continue
        admin = yaml.safe_load(lab_file.read_text())["admin"]["listen"]
        health = environment.get("WEBTRAP_HEALTH_URL", "")
        if health != f"http://{admin}/healthz":
            failures.append(f"service {name}: WEBTRAP_HEALTH_URL {health!r} does not match "
                            f"admin.listen {admin} of {lab_file.name}")
        if not services[name].get("read_only"):
            failures.append(f"service {name}: read_only is not set")


def listener_addresses(config):
    """Return the addresses a webtrap configuration listens on."""
    addresses = [listener["address"] for listener in config.get("listeners", [])]
    if "listen" in config:
        addresses.append(config["listen"])
    admin = config.get("admin", {}).get("listen")
    if admin:
        addresses.append(admin)
    return addresses


def check_lab_personas(failures):
    """Check that the lab's probes imitate different servers, each with a
    persona folder that exists."""
    personas = {}
    for path in sorted(LAB.glob("probe-*.yaml")):
        persona = yaml.safe_load(path.read_text()).get("persona")
        if not persona or not (SOURCE / "personas" / persona / "persona.yaml").is_file():
            failures.append(f"{path.name}: persona {persona!r} is not a folder in personas/")
        personas[path.name] = persona
    if len(set(personas.values())) != len(personas):
        failures.append(f"the lab probes share a persona: {personas}")


def check_server_header(label, config_path, port, failures):
    """Check that GET / on the probe's web listener names the persona's server."""
    persona = yaml.safe_load(config_path.read_text()).get("persona")
    persona_file = SOURCE / "personas" / str(persona) / "persona.yaml"
    if not persona_file.is_file():
        return  # check_lab_personas reports it
    expected = yaml.safe_load(persona_file.read_text())["server_header"]
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as response:
            server = response.headers.get("Server")
    except OSError as error:
        failures.append(f"{label}: GET / failed: {error}")
        return
    if server != expected:
        failures.append(f"{label}: Server {server!r}, expected {expected!r} of {persona}")


def check_lab_addresses(failures):
    seen = {}
    for path in sorted(LAB.glob("*.yaml")):
        config = yaml.safe_load(path.read_text())
        for address in listener_addresses(config):
            if not LOOPBACK.match(address):
                failures.append(f"{path.name}: {address} is not a loopback address")
        if path.name.startswith("probe-"):
            for address in listener_addresses(config):
                if address in seen:
                    failures.append(f"{path.name}: {address} is also used by {seen[address]}")
                seen[address] = path.name
        shipper_url = config.get("shipper", {}).get("url")
        if shipper_url is not None and shipper_url != "http://127.0.0.1:7380":
            failures.append(f"{path.name}: shipper.url {shipper_url} is not the lab "
                            "collector http://127.0.0.1:7380")


def portable_copy(path, work):
    """Return the config text with /var/lib/webtrap* moved under WORK and every
    listener port replaced by 0."""
    text = path.read_text()
    text = text.replace("/var/lib/webtrap-tokens", str(work / "tokens"))
    text = text.replace("/var/lib/webtrap", str(work / "data"))
    text = ADDRESS.sub(lambda match: "127.0.0.1:0" if not match.group(0).startswith("[")
                       else "[::1]:0", text)
    return text


def wait_for_ports(process, ports_file, log_file, failures, label):
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if ports_file.exists() and ports_file.stat().st_size > 0:
            return json.loads(ports_file.read_text())
        if process.poll() is not None:
            failures.append(f"{label}: exited {process.returncode} at start: "
                            f"{log_file.read_text()[-2000:]}")
            return None
        time.sleep(0.2)
    failures.append(f"{label}: no ports file after 60s")
    return None


def check_health(label, port, failures):
    """GET /healthz, retrying for 10s because the admin listener may start
    after the ports file is written."""
    url = f"http://127.0.0.1:{port}/healthz"
    deadline = time.monotonic() + 10
    while True:
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                if response.status != 200:
                    failures.append(f"{label}: {url} returned {response.status}")
                return
        except OSError as error:
            if time.monotonic() > deadline:
                failures.append(f"{label}: GET {url} failed: {error}")
                return
            time.sleep(0.2)


def run_config(role, path, work, failures):
    label = f"{role} with {path.relative_to(SOURCE)}"
    work.mkdir(parents=True)
    (work / "data").mkdir()
    (work / "tokens").mkdir()
    config = work / "config.yaml"
    config.write_text(portable_copy(path, work))
    # The token files that the lab's enrol service would write.
    (work / "data" / "misp-feed.token").write_text("0" * 64)
    for sensor in ("lab-probe-a", "lab-probe-b"):
        (work / "tokens" / f"{sensor}.token").write_text("test-token\n")
    ports_file = work / "ports.json"
    log_file = work / "log.txt"
    command = [WEBTRAP, role, "--config", str(config), "--ports-file", str(ports_file)]
    with open(log_file, "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        ports = wait_for_ports(process, ports_file, log_file, failures, label)
        if ports is not None:
            if "admin" not in ports:
                failures.append(f"{label}: no admin listener in {ports}")
            else:
                check_health(label, ports["admin"], failures)
            if role == "probe" and path.parent == LAB and "http" in ports:
                check_server_header(label, path, ports["http"], failures)
            elif role == "probe" and path.parent == LAB:
                failures.append(f"{label}: no http listener in {ports}")
            if process.poll() is not None:
                failures.append(f"{label}: exited {process.returncode} after start: "
                                f"{log_file.read_text()[-2000:]}")
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def check_configs_start(failures):
    work = pathlib.Path(tempfile.mkdtemp(prefix="webtrap-deploy-"))
    # Started as root, the probe switches to nobody, which must reach its spool.
    work.chmod(0o755)
    try:
        cases = [("collector", LAB / "collector.yaml"),
                 ("collector", IMAGE_CONFIGS / "collector.yaml"),
                 ("probe", LAB / "probe-a.yaml"),
                 ("probe", LAB / "probe-b.yaml"),
                 ("probe", IMAGE_CONFIGS / "probe.yaml")]
        for index, (role, path) in enumerate(cases):
            run_config(role, path, work / str(index), failures)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main():
    if shutil.which("docker-compose") is None:
        print("deploy compose: SKIPPED, docker-compose is not installed "
              "(scripts/install-deps.sh --with-containers)")
        return 77
    failures = []
    check_compose(failures)
    check_lab_addresses(failures)
    check_lab_personas(failures)
    check_configs_start(failures)
    for failure in failures:
        print(f"FAIL: {failure}")
    if failures:
        print(f"deploy compose: {len(failures)} failed")
        return 1
    print("deploy compose: compose file, profiles and lab configurations passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
