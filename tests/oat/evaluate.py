#!/usr/bin/env python3
"""Run the OAT evaluation: labelled scenarios against probes, then score the collector's output.

Steps:
1. Each scenario (one source) runs on its own against a fresh probe on
   127.0.0.1. Its records are read from that probe's spool after it stops.
2. Each run's records get a distinct documentation address (RFC 5737) as
   client address, are split between two sensor ids, and are shifted in time
   so that all runs overlap. This rewrites data only: no traffic goes to
   those addresses.
3. The merged records, in time order, go to one collector through
   POST /v1/records with the tokens of two enrolled sensors, as two
   shippers would send them. The collector's NDJSON output contains the stored
   ECS documents.
4. scoring.py scores each source's documents against its labels.

`--write-doc docs/oat-evaluation.md` rewrites the results page from the run.
`--set holdout` runs the held-out scenarios instead, which no tagging rule
was fitted on; `--set holdout --write-doc docs/oat-holdout.md` rewrites their
page.
"""

import argparse
import datetime
import gzip
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "integration"))

import yaml  # noqa: E402

import scoring  # noqa: E402
from probe_harness import BIN, SOURCE_DIR, Probe, wait_for  # noqa: E402
from scenarios import SCENARIO_SETS, Context  # noqa: E402

PROBE_CONFIG = """
sensor:
  id: eval-run
modsecurity:
  paranoia_level: 1
limits:
  read_timeout: 10s
  idle_timeout: 5s
"""
PERSONA = SOURCE_DIR / "personas" / "apache-debian-php" / "persona.yaml"
# Time between the starts of consecutive runs in the merged stream, so that
# runs overlap in time as sources that attack at once would.
RUN_STAGGER = datetime.timedelta(seconds=2)
BATCH_MAX = 500
# Seconds to wait for a probe's inspection threads to catch up with the
# requests of a scenario before the probe is stopped.
INSPECTION_TIMEOUT = 300

TOOL_VERSIONS = [
    ("hydra", ["hydra", "-h"], r"Hydra v[\d.]+"),
    ("gobuster", ["gobuster", "version"], r"[\d.]+"),
    ("dirb", ["dirb"], r"DIRB v[\d.]+"),
    ("sqlmap", ["sqlmap", "--version"], r"[\d.]+#?\w*"),
    ("wapiti", ["wapiti", "--version"], r"Wapiti [\d.]+"),
    ("whatweb", ["whatweb", "--version"], r"WhatWeb version [\d.]+"),
    ("nmap", ["nmap", "--version"], r"Nmap version [\d.]+"),
    ("wget", ["wget", "--version"], r"GNU Wget [\d.]+"),
    ("ab", ["ab", "-V"], r"Version [\d.]+"),
    ("chromium", ["chromium", "--version"], r"Chromium [\d.]+"),
]


def log(message):
    print(f"[oat-eval {time.strftime('%H:%M:%S')}] {message}", flush=True)


def tool_versions():
    versions = {}
    for name, command, pattern in TOOL_VERSIONS:
        if not shutil.which(command[0]):
            versions[name] = "not installed"
            continue
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=30,
                                    errors="replace")
            match = re.search(pattern, result.stdout + result.stderr)
            versions[name] = match.group(0) if match else "unknown"
        except subprocess.TimeoutExpired:
            versions[name] = "unknown (timed out)"
    return versions


def persona_routes():
    return yaml.safe_load(PERSONA.read_text())["routes"]


class Run:
    """The outcome of one scenario run: its records, or why it did not run."""

    def __init__(self, scenario, index):
        self.scenario = scenario
        self.address = scoring.documentation_address(index)
        self.records = []
        self.seconds = 0.0
        self.not_run = ""  # reason the scenario was skipped, e.g. a missing route kind
        self.error = ""    # error message when the scenario ran but failed
        self.secrets = set()
        self.probe_dir = None

    def source(self):
        return {"name": self.scenario.name, "address": self.address,
                "labels": self.scenario.labels, "ignore": self.scenario.ignore,
                "quiet": self.scenario.quiet}


def wait_for_inspection(probe):
    """Wait until the probe has a record for every request it handed to inspection.

    A stopping probe inspects its queue for pipeline.drain_timeout (5 s) and
    records the rest uninspected, without the rule matches that per-request
    OAT tags come from. The inspection threads run at a higher nice value
    than the threads that respond, so under load they can fall far behind a
    flood or a scan.
    """
    def caught_up():
        metrics = probe.metrics()
        handed = metrics.get("webtrap_pipeline_jobs_total", 0)
        recorded = (metrics.get("webtrap_records_written_total", 0)
                    + metrics.get("webtrap_records_dropped_total", 0))
        return recorded >= handed and metrics.get("webtrap_inspection_queue_depth", 0) == 0

    wait_for(caught_up, INSPECTION_TIMEOUT, "the probe to inspect every request")


def run_scenario(scenario, index, routes, workdir):
    run = Run(scenario, index)
    run.not_run = scenario.missing(routes)
    if run.not_run:
        log(f"{scenario.name}: not run: {run.not_run}")
        return run
    started = time.monotonic()
    probe = Probe(PROBE_CONFIG)
    try:
        folder = workdir / scenario.name
        folder.mkdir()
        context = Context(probe.http_port, folder, routes)
        try:
            scenario.driver(context)
            wait_for_inspection(probe)
        except Exception as error:  # a failed run is reported, and the others still run
            run.error = f"{type(error).__name__}: {error}"
        run.secrets = context.secrets
    finally:
        code = probe.stop()
    run.probe_dir = probe.dir
    if code != 0 and not run.error:
        run.error = f"probe exited with {code}:\n{probe.log_text()[-2000:]}"
    run.records = probe.records()
    run.seconds = time.monotonic() - started
    state = f"failed: {run.error[:300]}" if run.error else "done"
    log(f"{scenario.name}: {len(run.records)} records in {run.seconds:.1f} s, {state}")
    return run


class Collector:
    """A collector process on ephemeral ports that writes stored documents to an NDJSON file."""

    def __init__(self, workdir):
        self.dir = workdir
        self.output = workdir / "out" / "events.ndjson"
        self.config = workdir / "collector.yaml"
        self.ports_file = workdir / "collector-ports.json"
        self.log_path = workdir / "collector.log"
        self.config.write_text(
            f"listen: 127.0.0.1:0\n"
            f"admin: {{listen: 127.0.0.1:0}}\n"
            f"state_dir: {workdir / 'collector-state'}\n"
            f"outputs:\n"
            f"  ndjson: {{path: {self.output}, flush_interval: 100ms}}\n")
        self.process = None

    def command(self, *args):
        result = subprocess.run([BIN, "collector", "--config", str(self.config), *args],
                                capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            raise RuntimeError(f"webtrap collector {' '.join(args)} failed:\n"
                               f"{result.stdout}{result.stderr}")
        return result.stdout

    def enrol(self, sensor_id):
        output = self.command("enrol", "--sensor-id", sensor_id, "--group", "oat-eval")
        for line in output.splitlines():
            if line.strip().startswith("token:"):
                return line.split('"')[1]
        raise RuntimeError(f"enrol printed no token:\n{output}")

    def start(self):
        log_file = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [BIN, "collector", "--config", str(self.config), "--ports-file", str(self.ports_file)],
            stdout=log_file, stderr=subprocess.STDOUT)
        log_file.close()
        wait_for(lambda: self.ports_file.exists() or self.process.poll() is not None, 30,
                 "the collector's ports file")
        if self.process.poll() is not None:
            raise RuntimeError("collector exited at start:\n" + self.log_text())
        ports = json.loads(self.ports_file.read_text())
        self.ingest_port = ports["ingest"]
        self.admin_port = ports["admin"]

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log_text(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def post(self, lines, token):
        body = gzip.compress(b"".join(line + b"\n" for line in lines))
        request = urllib.request.Request(f"http://127.0.0.1:{self.ingest_port}/v1/records",
                                         data=body, method="POST")
        request.add_header("Content-Type", "application/x-ndjson")
        request.add_header("Content-Encoding", "gzip")
        request.add_header("Authorization", f"Bearer {token}")
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())

    def verdicts(self):
        """Return the collector's verdict table (GET /v1/oat/verdicts on the admin listener).

        Returns None when the collector answers 404, as a build without that
        endpoint does.
        """
        url = f"http://127.0.0.1:{self.admin_port}/v1/oat/verdicts"
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return None
            raise

    def documents(self):
        if not self.output.exists():
            return []
        data = self.output.read_bytes()
        return [json.loads(line) for line in data[:data.rfind(b"\n") + 1].splitlines()]


def feed_collector(collector, merged, tokens):
    """Post the merged records in time order and return the summed acknowledgement counts.

    Each batch contains records of one sensor and is sent with that sensor's token.
    """
    batch, batch_sensor = [], None
    totals = {"received": 0, "stored": 0, "duplicates": 0, "rejected": 0}

    def flush():
        if batch:
            ack = collector.post(batch, tokens[batch_sensor])
            for key in totals:
                totals[key] += ack.get(key, 0)
            batch.clear()

    for record in merged:
        sensor = record["webtrap"]["sensor"]["id"]
        if sensor != batch_sensor or len(batch) >= BATCH_MAX:
            flush()
            batch_sensor = sensor
        batch.append(json.dumps(record, separators=(",", ":")).encode())
    flush()
    return totals


def leaked_secrets(secrets, folders):
    """Return a 'path: N full card numbers' line for each file that contains any of `secrets`.

    `folders` may list files and folders, which are searched recursively. Every
    file is read as bytes, so the SQLite store and the logs are searched too.
    """
    if not secrets:
        return []
    needles = [secret.encode() for secret in secrets]
    leaks = []
    for folder in folders:
        folder = pathlib.Path(folder)
        paths = [folder] if folder.is_file() else sorted(folder.rglob("*"))
        for path in paths:
            if not path.is_file():
                continue
            data = path.read_bytes()
            found = sum(1 for needle in needles if needle in data)
            if found:
                leaks.append(f"{path}: {found} full card numbers")
    return leaks


def evaluate(scenarios, workdir):
    routes = persona_routes()
    started = time.monotonic()
    runs = [run_scenario(s, i, routes, workdir) for i, s in enumerate(scenarios)]
    scenario_seconds = time.monotonic() - started

    done = [run for run in runs if not run.not_run and not run.error and run.records]
    base = min((scoring.parse_timestamp(r["webtrap"]["@timestamp"])
                for run in done for r in run.records), default=None)
    rewritten = [scoring.rewrite_run(run.records, run.scenario.name, run.address,
                                     base + index * RUN_STAGGER)
                 for index, run in enumerate(done)]
    merged = scoring.merge_runs(rewritten)

    collector = Collector(workdir)
    tokens = {sensor: collector.enrol(sensor) for sensor in scoring.SENSOR_IDS}
    collector.start()
    try:
        totals = feed_collector(collector, merged, tokens)
        wait_for(lambda: len(collector.documents()) >= totals["stored"], 120,
                 f"{totals['stored']} documents in the collector's output")
        documents = collector.documents()
        verdict_table = collector.verdicts()
    except Exception:
        log("collector log:\n" + collector.log_text()[-4000:])
        raise
    finally:
        collector.stop()

    result = scoring.score([run.source() for run in done], documents)
    secrets = set().union(*(run.secrets for run in runs))
    probe_dirs = [run.probe_dir for run in runs if run.probe_dir]
    leaks = leaked_secrets(secrets, probe_dirs + [collector.output.parent,
                                                  workdir / "collector-state",
                                                  collector.log_path])
    return {
        "verdict_mismatch": verdict_mismatch(documents, verdict_table) if verdict_table else [],
        "withdrawn_verdicts": None if verdict_table is None else sum(
            1 for key in verdict_table["keys"] for verdict in key["verdicts"]
            if verdict["status"] == "withdrawn"),
        "leaks": leaks,
        "secrets": len(secrets),
        "runs": runs,
        "done": done,
        "totals": totals,
        "documents": len(documents),
        "result": result,
        "scenario_seconds": scenario_seconds,
        "seconds": time.monotonic() - started,
    }


def verdict_mismatch(documents, verdict_table):
    """Return the (key, OAT id) pairs withdrawn in the documents or in the table, not both.

    The newest webtrap.oat_verdicts entry per key and id in the stored
    documents and the collector's own table must agree on which verdicts
    were withdrawn.
    """
    newest = {}
    for document in documents:
        scoring.note_verdicts(newest, document)
    in_documents = {pair for pair, status in newest.items() if status == "withdrawn"}
    in_table = {(key["key"], verdict["id"]) for key in verdict_table["keys"]
                for verdict in key["verdicts"] if verdict["status"] == "withdrawn"}
    return sorted(in_documents ^ in_table)


def summary_lines(outcome):
    lines = []
    result = outcome["result"]
    for name, entry in result["per_source"].items():
        lines.append(f"  {name}: {entry['documents']} documents, predicted "
                     f"{sorted(entry['predicted'])}, behaviour {sorted(entry['behaviour'])}")
    for oat, row in result["oats"].items():
        lines.append(f"  {oat}: labelled {row['labelled']} predicted {row['predicted']} "
                     f"TP {row['tp']} FP {row['fp']} FN {row['fn']} precision "
                     f"{scoring._show(row['precision'])} recall {scoring._show(row['recall'])}")
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", dest="scenario_set", choices=sorted(SCENARIO_SETS),
                        default="tuning",
                        help="scenario set to run: tuning (the set the tagging rules were "
                             "checked on, run by ctest) or holdout (runs not used for tuning)")
    parser.add_argument("--only", action="append", default=[],
                        help="run only the scenario with this name (repeatable)")
    parser.add_argument("--write-doc", type=pathlib.Path,
                        help="rewrite this Markdown page (docs/oat-evaluation.md) from the run")
    parser.add_argument("--json", type=pathlib.Path, help="write the scores as JSON to this file")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args(argv)

    known = SCENARIO_SETS[args.scenario_set]
    scenarios = [s for s in known if not args.only or s.name in args.only]
    unknown = set(args.only) - {s.name for s in known}
    if unknown:
        parser.error(f"unknown scenario {sorted(unknown)} in set {args.scenario_set}; "
                     f"known: {[s.name for s in known]}")

    workdir = pathlib.Path(tempfile.mkdtemp(prefix="webtrap-oat-eval-"))
    os.chmod(workdir, 0o755)
    try:
        outcome = evaluate(scenarios, workdir)
    finally:
        if args.keep or os.environ.get("WEBTRAP_KEEP_TEST_DIRS"):
            log(f"work folder kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    for line in summary_lines(outcome):
        print(line)
    holdout = args.scenario_set == "holdout"
    problems = problems_of(outcome, holdout)
    log(f"finished in {outcome['seconds']:.0f} s (scenarios {outcome['scenario_seconds']:.0f} s)")
    if args.write_doc:
        import report
        binary = os.path.relpath(BIN, SOURCE_DIR) if os.path.isabs(BIN) else BIN
        arguments = " ".join(argv if argv is not None else sys.argv[1:])
        command = f"WEBTRAP_BIN={binary} python3 tests/oat/evaluate.py {arguments}"
        args.write_doc.write_text(report.render(outcome, problems, tool_versions(), command,
                                                holdout))
        log(f"wrote {args.write_doc}")
    if args.json:
        args.json.write_text(json.dumps(json_outcome(outcome), indent=1, default=sorted))
    for problem in problems:
        print("FAIL: " + problem)
    return 1 if problems else 0


def problems_of(outcome, holdout=False):
    """Return every reason the evaluation fails: runs not done, targets missed.

    On the held-out set every target miss is a problem, because KNOWN_MISSES
    lists misses of the tuning set only, and an OAT may have a single source.
    """
    problems = []
    for run in outcome["runs"]:
        if run.not_run:
            problems.append(f"{run.scenario.name} did not run: {run.not_run}")
        elif run.error:
            problems.append(f"{run.scenario.name} failed: {run.error}")
        elif not run.records:
            problems.append(f"{run.scenario.name} wrote no record")
    problems += [f"full card number found in a stored file: {leak}" for leak in outcome["leaks"]]
    for key, oat in outcome["verdict_mismatch"]:
        problems.append(f"verdict of {oat} for key {key} is withdrawn in the stored documents "
                        f"or in GET /v1/oat/verdicts, not in both")
    totals = outcome["totals"]
    if totals["rejected"]:
        problems.append(f"the collector rejected {totals['rejected']} records")
    if outcome["result"]["unmatched_documents"]:
        problems.append(f"{outcome['result']['unmatched_documents']} documents match no source")
    if holdout:
        problems += scoring.unexpected_failures(outcome["result"], known={})
        return problems
    for oat, row in outcome["result"]["oats"].items():
        if row["labelled"] == 1:
            problems.append(f"{oat} has one labelled source that ran; its figures need two or more")
    problems += scoring.unexpected_failures(outcome["result"])
    return problems


def json_outcome(outcome):
    return {
        "runs": [{"name": r.scenario.name, "labels": r.scenario.labels, "address": r.address,
                  "records": len(r.records), "seconds": round(r.seconds, 1),
                  "not_run": r.not_run, "error": r.error} for r in outcome["runs"]],
        "totals": outcome["totals"],
        "withdrawn_verdicts": outcome["withdrawn_verdicts"],
        "result": outcome["result"],
        "seconds": round(outcome["seconds"], 1),
    }


if __name__ == "__main__":
    sys.exit(main())
