#!/usr/bin/env python3
"""Write a Markdown report comparing two `webtrap replay --json-report` files.

Usage: crs_regression_report.py PROBE_JSON NGINX_JSON OUTPUT_MD COMMAND

The report has the pass rate of each target, a table per CRS rule file, every
test that fails on the probe with its reasons, and the tests whose result
differs between the two targets.
"""

import collections
import datetime
import json
import pathlib
import sys


def load(path):
    report = json.loads(pathlib.Path(path).read_text())
    return report["summary"], report["tests"]


def rule_file(test):
    """The CRS rule file folder of a test, e.g. REQUEST-942-APPLICATION-ATTACK-SQLI."""
    return pathlib.Path(test["file"]).parent.name


def rate(passed, failed):
    run = passed + failed
    return f"{100.0 * passed / run:.1f}%" if run else "n/a"


def per_file(tests):
    counts = collections.defaultdict(collections.Counter)
    for test in tests:
        counts[rule_file(test)][test["result"]] += 1
    return counts


def failure_reasons(test):
    reasons = []
    for stage in test["stages"]:
        if stage["result"] == "pass":
            continue
        text = "; ".join(stage.get("reasons") or []) or stage.get("error") or "failed"
        reasons.append(f"stage {stage['stage']}: {text}")
    return " / ".join(reasons) or "failed"


def escape(text):
    return text.replace("|", "\\|").replace("\n", " ")


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    probe_summary, probe_tests = load(sys.argv[1])
    nginx_summary, nginx_tests = load(sys.argv[2])
    output = pathlib.Path(sys.argv[3])
    command = sys.argv[4]

    lines = [
        "# CRS 3.3.4 regression tests: probe and nginx",
        "",
        f"Run on {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC with `{command}`.",
        "Both targets run libmodsecurity 3.0.9 in DetectionOnly mode with CRS 3.3.4 at paranoia",
        "level 4, `tx.crs_validate_utf8_encoding=1`, `tx.arg_name_length=100`,",
        "`tx.arg_length=400` and rule 910000 removed. The pass rate counts passed and failed",
        "tests; skipped tests are in files with `meta.enabled: false`.",
        "",
        "| target | passed | failed | skipped | pass rate |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, summary in (("probe", probe_summary), ("nginx", nginx_summary)):
        lines.append(f"| {name} | {summary['passed']} | {summary['failed']} | "
                     f"{summary['skipped']} | {rate(summary['passed'], summary['failed'])} |")

    lines += ["", "## By rule file", "",
              "| rule file | probe passed | probe failed | nginx passed | nginx failed |",
              "| --- | ---: | ---: | ---: | ---: |"]
    probe_files, nginx_files = per_file(probe_tests), per_file(nginx_tests)
    for name in sorted(set(probe_files) | set(nginx_files)):
        p, n = probe_files[name], nginx_files[name]
        lines.append(f"| {name} | {p['pass']} | {p['fail']} | {n['pass']} | {n['fail']} |")

    probe_failures = [t for t in probe_tests if t["result"] == "fail"]
    lines += ["", f"## Tests that fail on the probe ({len(probe_failures)})", "",
              "| test | reason |", "| --- | --- |"]
    for test in probe_failures:
        lines.append(f"| {test['title']} | {escape(failure_reasons(test))} |")

    nginx_results = {(t["file"], t["title"]): t["result"] for t in nginx_tests}
    differences = [t for t in probe_tests
                   if nginx_results.get((t["file"], t["title"]), "missing") != t["result"]]
    lines += ["", f"## Tests with a different result on nginx ({len(differences)})", "",
              "| test | probe | nginx |", "| --- | --- | --- |"]
    for test in differences:
        nginx_result = nginx_results.get((test["file"], test["title"]), "missing")
        lines.append(f"| {test['title']} | {test['result']} | {nginx_result} |")

    output.write_text("\n".join(lines) + "\n")
    print(f"probe: {probe_summary['passed']} passed, {probe_summary['failed']} failed, "
          f"pass rate {rate(probe_summary['passed'], probe_summary['failed'])}")
    print(f"nginx: {nginx_summary['passed']} passed, {nginx_summary['failed']} failed, "
          f"pass rate {rate(nginx_summary['passed'], nginx_summary['failed'])}")
    print(f"report: {output}")


if __name__ == "__main__":
    main()
