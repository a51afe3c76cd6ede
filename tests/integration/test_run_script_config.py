#!/usr/bin/env python3
"""scripts/run.sh with configuration files that a user has changed.

The script runs in a copy of scripts/ and etc/, as in
test_run_script_dashboard.py, with free loopback ports.

- Own shipper section: etc/probe.yaml has a shipper: section that points at
  another collector. run.sh prints one line saying that it replaces it, the
  probe starts, a request sent to it gets its terminal line, and
  etc/probe.yaml is unchanged.
- File input read at start: etc/collector.yaml has a file input whose file
  already contains two ModSecurity records. The collector stores them at its
  start, before run.sh starts its tail, and the terminal prints both. A
  second run, with the records already stored, does not print them again.
"""

import os
import pathlib
import shutil
import sys
import tempfile

from probe_harness import BIN, SOURCE_DIR, send_raw, wait_for
from test_run_script_dashboard import (RunScript, check, free_port_on_both_loopbacks,
                                       log_tails, make_tree)

OWN_SHIPPER = """
# A shipper section of the user's own, for another collector.
shipper:
  url: http://127.0.0.1:9/elsewhere
  # The token the other collector issued.
  token_file: var/state/other-collector.token

  batch_max_records: 50
"""

FILE_INPUT_SENSOR = "file-input-check"


def check_own_shipper_replaced(script, folder, http_port):
    probe_file = folder / "etc/probe.yaml"
    probe_file.write_text(probe_file.read_text() + OWN_SHIPPER)
    before = probe_file.read_text()
    run = RunScript(script, folder)
    try:
        banner = run.wait_banner()
        check("etc/probe.yaml has a shipper: section of its own; this run replaces it" in banner,
              f"run.sh did not say that it replaces the user's shipper section:\n{banner}")
        send_raw(http_port, b"GET /own-shipper-check HTTP/1.1\r\nHost: shop.example\r\n"
                            b"Connection: close\r\n\r\n")
        wait_for(lambda: "GET /own-shipper-check" in run.text(), 60,
                 "the terminal line of a request to the probe")
    finally:
        leftovers = run.stop()
    check(not leftovers, f"processes left after SIGINT: {leftovers}")
    check(probe_file.read_text() == before, "run.sh changed etc/probe.yaml")
    generated = (folder / "var/state/probe-with-shipper.yaml").read_text()
    shipper_keys = [line for line in generated.splitlines() if line.startswith("shipper:")]
    check(len(shipper_keys) == 1,
          f"var/state/probe-with-shipper.yaml has {len(shipper_keys)} shipper: keys:\n{generated}")
    check("9/elsewhere" not in generated and "batch_max_records" not in generated,
          f"a line of the user's shipper section is left:\n{generated}")
    check("listeners:" in generated, f"the probe's other sections are gone:\n{generated}")


def add_file_input(folder):
    """Give the copied etc/collector.yaml a file input whose file contains two records."""
    audit_log = folder / "audit.json"
    fixtures = SOURCE_DIR / "tests/fixtures/modsecurity"
    audit_log.write_text((fixtures / "modsec3-nginx-sqli.json").read_text().rstrip("\n") + "\n" +
                         (fixtures / "modsec2-apache-post.json").read_text().rstrip("\n") + "\n")
    collector_file = folder / "etc/collector.yaml"
    collector = collector_file.read_text()
    commented = "  # files:\n"
    check(commented in collector, "etc/collector.yaml no longer has the commented inputs.files "
          "example; update this test's file input")
    collector = collector.replace(
        commented, f"  files:\n    - {{path: {audit_log}, format: auto, "
                   f"sensor_id: {FILE_INPUT_SENSOR}, start_at: beginning}}\n", 1)
    collector_file.write_text(collector)


def file_input_lines(text):
    return [line for line in text.splitlines() if f" {FILE_INPUT_SENSOR} " in line]


def check_file_input_records_printed(script, folder):
    add_file_input(folder)
    run = RunScript(script, folder)
    try:
        run.wait_banner()
        wait_for(lambda: len(file_input_lines(run.text())) >= 2, 30,
                 "the terminal lines of the two records the file input read at start")
    finally:
        leftovers = run.stop()
    check(not leftovers, f"processes left after SIGINT: {leftovers}")
    check(len(file_input_lines(run.text())) == 2,
          f"expected 2 lines of the file input's records:\n{run.text()}")

    # The file input keeps its offset in the store, so a second run reads
    # nothing new and the tail starts after the stored records.
    run = RunScript(script, folder)
    try:
        run.wait_banner()
    finally:
        leftovers = run.stop()
    check(not leftovers, f"processes left after SIGINT: {leftovers}")
    check(not file_input_lines(run.text()),
          f"the second run printed the records stored by the first again:\n{run.text()}")


def main():
    if not pathlib.Path(BIN).exists():
        print(f"webtrap binary not found at {BIN}; build it or set WEBTRAP_BIN", file=sys.stderr)
        return 1
    folder = pathlib.Path(tempfile.mkdtemp(prefix="webtrap-run-config-")).resolve()
    # When the test runs as root, the probe's shipper drops to an
    # unprivileged user, which must be able to reach var/spool in here.
    folder.chmod(0o755)
    try:
        http_port = free_port_on_both_loopbacks()
        script = make_tree(folder, http_port)
        try:
            check_own_shipper_replaced(script, folder, http_port)
            check_file_input_records_printed(script, folder)
        except AssertionError:
            print(log_tails(folder), file=sys.stderr)
            raise
    finally:
        if not os.environ.get("WEBTRAP_KEEP_TEST_DIRS"):
            shutil.rmtree(folder, ignore_errors=True)
    print("run.sh: a user's shipper section replaced with a notice, and the records a file "
          "input reads at start printed once, all passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
