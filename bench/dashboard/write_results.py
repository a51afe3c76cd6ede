#!/usr/bin/env python3
"""Writes the output of bench/dashboard/run.sh into docs/benchmarks.md.

Replaces the text between the markers dashboard-bench:begin and
dashboard-bench:end with the date, machine, load average, indexing rate and
one table row per filter and panel: the dashboard's time, the peer's time
and their ratio.
"""
import argparse
import datetime
import platform
import re
import sys

BEGIN = "<!-- dashboard-bench:begin (written by bench/dashboard/run.sh) -->"
END = "<!-- dashboard-bench:end -->"
LINE = re.compile(r"^dashboard (query|peer)\s+(\S+)\s+(\S+)\s+([0-9.]+) ms$")


def cpu_model():
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--results", required=True)
    parser.add_argument("--docs", required=True)
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--load-before", required=True)
    parser.add_argument("--load-after", required=True)
    parser.add_argument("--status", type=int, required=True)
    args = parser.parse_args()

    times = {}  # (filter, panel) -> {"query": ms, "peer": ms}
    order = []
    indexing = sqlite = ""
    with open(args.results, encoding="utf-8", errors="replace") as results:
        for line in results:
            line = line.rstrip("\n")
            if line.startswith("dashboard index:"):
                indexing = line.split(":", 1)[1].strip()
            elif line.startswith("dashboard sqlite "):
                sqlite = line.split(" ", 2)[2].strip()
            match = LINE.match(line)
            if match:
                kind, name, panel, ms = match.groups()
                key = (name, panel)
                if key not in times:
                    times[key] = {}
                    order.append(key)
                times[key][kind] = float(ms)
    if not order:
        sys.exit("bench/dashboard/write_results.py: no timings in the test output; see above")

    cpus = len([line for line in open("/proc/cpuinfo", encoding="utf-8")
                if line.startswith("processor")])
    lines = [
        BEGIN,
        "",
        f"Run of {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC with "
        f"{args.events:,} events, on {cpus} CPUs ({cpu_model()}), SQLite {sqlite or 'unknown'}.",
        f"Load average (1, 5, 15 min) {args.load_before} before the run and "
        f"{args.load_after} after it; other work on the machine slows both columns alike.",
        f"Indexing: {indexing or 'not reported'}.",
        "The test " + ("passed: every dashboard query took under 1 s." if args.status == 0
                       else f"failed (exit status {args.status}): a query took 1 s or more, "
                       "or another check failed."),
        "",
        "| filter | panel | dashboard ms | peer ms | peer / dashboard |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for name, panel in order:
        entry = times[(name, panel)]
        query = entry.get("query")
        peer = entry.get("peer")
        ratio = "n/a"
        if query and peer is not None:
            ratio = f"{peer / query:,.1f}x" if peer / query < 10 else f"{peer / query:,.0f}x"
        lines.append(f"| {name} | {panel} | {query:,.1f} | "
                     f"{'n/a' if peer is None else f'{peer:,.1f}'} | {ratio} |")
    lines += ["", END]

    with open(args.docs, encoding="utf-8") as docs:
        text = docs.read()
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        text = head + "\n".join(lines) + tail
    else:
        sys.exit(f"bench/dashboard/write_results.py: markers not found in {args.docs}; "
                 f"add the lines {BEGIN!r} and {END!r} where the table belongs")
    with open(args.docs, "w", encoding="utf-8") as docs:
        docs.write(text)
    print(f"bench/dashboard/run.sh: wrote {len(order)} rows into {args.docs}")


if __name__ == "__main__":
    main()
