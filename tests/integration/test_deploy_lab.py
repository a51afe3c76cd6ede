#!/usr/bin/env python3
"""Build the images, run the compose lab, and replay the exploit corpus.

Runs whenever podman and docker-compose are installed
(scripts/install-deps.sh --with-containers). WEBTRAP_TEST_IMAGES picks how
the images get webtrap:
- unset or `prebuilt`: the runtime stages of deploy/docker/webtrap.Dockerfile
  get the binary this test runs (WEBTRAP_BIN's build folder), through
  `build-images.sh --prebuilt`. About a minute, so the README's test
  command can afford it.
- `1` or `full`: the whole Dockerfile, build stage included, compiles
  webtrap inside the image (15 to 30 minutes cold on two CPUs; later runs
  reuse the ccache folder in build-images/ccache).
- `0`: skipped.

Steps, all on loopback:
1. deploy/podman/build-images.sh builds webtrap-probe and webtrap-collector.
2. podman serves the Docker API on a socket in a temporary folder, and
   docker-compose starts the lab (enrol, collector, probe-a, probe-b) from
   deploy/compose/compose.yaml under its own project name.
3. `webtrap replay` sends the exploit corpus (corpus/ in WEBTRAP_SHARED_DIR)
   to both probes and checks each request's record and rule ids in the
   probe's spool volume.
4. Every record in both spools must be in the collector's store (by event
   id), and every record's path must be a `uri` attribute in the MISP feed.
5. docker-compose down -v removes the containers and volumes, and the API
   service is stopped by its PID.

Exits 77 (skipped) with WEBTRAP_TEST_IMAGES=0, or without podman or
docker-compose.
"""

import json
import os
import pathlib
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request


def source_dir():
    env = os.environ.get("WEBTRAP_SOURCE_DIR")
    return pathlib.Path(env) if env else pathlib.Path(__file__).resolve().parents[2]


SOURCE = source_dir()
SHARED = pathlib.Path(os.environ.get("WEBTRAP_SHARED_DIR", SOURCE.parent / "shared"))
WEBTRAP = os.environ.get("WEBTRAP_BIN", str(SOURCE / "build" / "webtrap"))
COMPOSE = SOURCE / "deploy" / "compose" / "compose.yaml"
PROJECT = "webtrap-lab-test"
# Every port the lab binds on 127.0.0.1 (deploy/compose/lab/*.yaml).
LAB_PORTS = [8080, 8443, 8888, 9101, 8081, 8444, 8889, 9111, 7380, 9102]
PROBES = {"probe-a": (8080, 9101), "probe-b": (8081, 9111)}


def port_in_use(port):
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_for(condition, seconds, what):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(1)
    raise AssertionError(f"timed out after {seconds}s waiting for {what}")


def healthy(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


def volume_path(environment, name):
    result = subprocess.run(["podman", "volume", "inspect", "--format", "{{.Mountpoint}}",
                             f"{PROJECT}_{name}"], env=environment, capture_output=True,
                            text=True, check=True)
    return pathlib.Path(result.stdout.strip())


def spool_records(spool):
    records = []
    for segment in sorted(spool.glob("segment-*.ndjson")):
        for line in segment.read_text().splitlines():
            if line.strip():
                records.append(json.loads(line))
    return records


def stored_event_ids(store):
    connection = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    try:
        return {row[0] for row in connection.execute("SELECT event_id FROM events")}
    finally:
        connection.close()


def feed_uris(feed):
    uris = set()
    manifest = feed / "manifest.json"
    if not manifest.exists():
        return uris
    for event_uuid in json.loads(manifest.read_text()):
        event = json.loads((feed / f"{event_uuid}.json").read_text())["Event"]
        for obj in event.get("Object", []):
            for attribute in obj.get("Attribute", []):
                if attribute.get("object_relation") == "uri":
                    uris.add(attribute["value"])
    return uris


def run_lab(environment, failures):
    compose = ["docker-compose", "-p", PROJECT, "-f", str(COMPOSE)]
    subprocess.run(compose + ["up", "-d"], env=environment, check=True)
    try:
        for name, (_, admin) in PROBES.items():
            wait_for(lambda: healthy(admin), 180, f"{name} /healthz on port {admin}")
        wait_for(lambda: healthy(9102), 180, "collector /healthz on port 9102")

        corpus = sorted(str(path) for path in (SHARED / "corpus").glob("*.yaml"))
        for name, (web, _) in PROBES.items():
            spool = volume_path(environment, f"{name}-data") / "spool"
            result = subprocess.run([WEBTRAP, "replay", "--target", f"http://127.0.0.1:{web}",
                                     "--records", str(spool), *corpus],
                                    capture_output=True, text=True)
            print(f"{name}: {result.stdout.strip().splitlines()[-1] if result.stdout else ''}")
            if result.returncode != 0:
                failures.append(f"{name}: webtrap replay exited {result.returncode}: "
                                f"{result.stdout[-2000:]}{result.stderr[-2000:]}")

        records = []
        for name in PROBES:
            records += spool_records(volume_path(environment, f"{name}-data") / "spool")
        expected_ids = {record["webtrap"]["event_id"] for record in records}
        if len(expected_ids) < 2 * len(corpus):
            failures.append(f"only {len(expected_ids)} records in the spools for "
                            f"{len(corpus)} corpus files sent to 2 probes")
        collector_data = volume_path(environment, "collector-data")
        store = collector_data / "collector" / "store.sqlite"
        try:
            wait_for(lambda: expected_ids <= stored_event_ids(store), 120,
                     "every spooled record in the collector's store")
        except AssertionError as error:
            missing = expected_ids - stored_event_ids(store)
            failures.append(f"{error}: {len(missing)} of {len(expected_ids)} missing")

        paths = {urllib.parse.urlsplit(record["transaction"]["request"]["uri"]).path
                 for record in records}
        feed = collector_data / "misp-feed"
        try:
            wait_for(lambda: paths <= feed_uris(feed), 120, "every record's path in the MISP feed")
        except AssertionError as error:
            missing = sorted(paths - feed_uris(feed))
            failures.append(f"{error}: missing {missing[:10]}")
        print(f"lab: {len(expected_ids)} records, {len(paths)} distinct paths")
    finally:
        subprocess.run(compose + ["logs", "--tail", "20"], env=environment)
        subprocess.run(compose + ["down", "-v"], env=environment)


def main():
    mode = os.environ.get("WEBTRAP_TEST_IMAGES", "prebuilt")
    if mode == "0":
        print("deploy lab: SKIPPED, WEBTRAP_TEST_IMAGES=0")
        return 77
    if mode not in ("prebuilt", "1", "full"):
        print(f"FAIL: WEBTRAP_TEST_IMAGES={mode!r} is not one of prebuilt, full (or 1), 0")
        return 1
    for tool in ("podman", "docker-compose"):
        if shutil.which(tool) is None:
            print(f"deploy lab: SKIPPED, {tool} is not installed "
                  "(scripts/install-deps.sh --with-containers)")
            return 77
    busy = [port for port in LAB_PORTS if port_in_use(port)]
    if busy:
        print(f"FAIL: the lab's ports {busy} on 127.0.0.1 are in use; stop what uses them")
        return 1

    work = pathlib.Path(tempfile.mkdtemp(prefix="webtrap-lab-"))
    environment = dict(os.environ)
    conf = work / "containers.conf"
    conf.write_text('[containers]\ndefault_ulimits = []\n[engine]\nruntime = "runc"\n')
    environment.setdefault("CONTAINERS_CONF", str(conf))
    # WEBTRAP_SKIP_IMAGE_BUILD=1 uses the images already built, to rerun the lab alone.
    if os.environ.get("WEBTRAP_SKIP_IMAGE_BUILD") != "1":
        image_work = pathlib.Path(os.environ.get("WEBTRAP_IMAGE_WORK", SOURCE / "build-images"))
        command = [str(SOURCE / "deploy" / "podman" / "build-images.sh")]
        if mode == "prebuilt":
            command += ["--prebuilt", str(pathlib.Path(WEBTRAP).resolve().parent)]
        subprocess.run(command + [str(image_work)], env=environment, check=True)

    socket_path = work / "podman.sock"
    service = subprocess.Popen(["podman", "system", "service", "--time=0",
                                f"unix://{socket_path}"], env=environment)
    environment["DOCKER_HOST"] = f"unix://{socket_path}"
    failures = []
    try:
        wait_for(socket_path.exists, 30, "the podman API socket")
        run_lab(environment, failures)
    finally:
        service.terminate()
        service.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)
    for failure in failures:
        print(f"FAIL: {failure}")
    if failures:
        print(f"deploy lab: {len(failures)} failed")
        return 1
    images = ("images already built" if os.environ.get("WEBTRAP_SKIP_IMAGE_BUILD") == "1"
              else "images built with the test's own binary" if mode == "prebuilt"
              else "images built from source")
    print(f"deploy lab: {images}, corpus replayed into both probes, every record "
          "stored and in the MISP feed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
