#!/usr/bin/env python3
"""Check the recorded terminal demo, docs/demo/webtrap-demo.cast.

- The file is an asciicast v2 recording: a JSON header with version 2,
  width and height, then one JSON array [time, "o", text] per line with
  non-decreasing times, and it plays in under 90 seconds at 100x30 or less.
- Its output shows the README's quick start command, the attack commands of
  the second shell, a stored record for each of them, the collector's count
  and the Ctrl-C stop, and no sensor token or honeytoken.
- scripts/record-demo.sh still runs the script that the README's quick start
  names.

The cast is read as a file, so this test needs neither asciinema nor a
running probe. When asciinema is installed, `asciinema cat` must read it too.
"""

import json
import os
import pathlib
import re
import shlex
import shutil
import subprocess
import sys

CAST_PATH = "docs/demo/webtrap-demo.cast"
RECORD_SCRIPT_PATH = "scripts/record-demo.sh"
MAX_DURATION_SECONDS = 90
MAX_WIDTH = 100
MAX_HEIGHT = 30

# CSI sequences (cursor moves, colours, modes), OSC sequences (titles) and
# two-character escapes such as ESC = and ESC ( B, as a terminal reads them.
ESCAPE_SEQUENCE = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"
    r"|\x1b[()][0-9A-Za-z]"
    r"|\x1b[=>78DEHMNOZc]")

# The record line that `webtrap collector tail` prints for each request sent
# in the demo, with a rule the request must have matched: 942xxx is CRS SQL
# injection, 930xxx CRS path traversal, 77010 webtrap's robots.txt trap, and
# whatweb's request for / matches 913100 (CRS scanner user agent).
EXPECTED_RECORDS = {
    "SQL injection": r"GET /index\.php\?id=1%27%20UNION%20SELECT%20password%20FROM%20users--"
                     r"\s*200\s*rules: [0-9,]*\b942\d{3}\b",
    "path traversal": r"GET /index\.php\?page=\.\./\.\./\.\./\.\./etc/passwd"
                      r"\s*200\s*rules: [0-9,]*\b930\d{3}\b",
    "robots.txt bait": r"GET /admin-old/\s*401\s*rules: [0-9,]*\b77010\b",
    "whatweb": r"GET /\s*200\s*rules: [0-9,]*\b913100\b",
}

# Commands typed in the cast, as regular expressions over its text.
EXPECTED_COMMANDS = {
    "SQL injection": r"curl [^\n]*\"http://127\.0\.0\.1:8080/index\.php\?id=1%27%20UNION",
    "path traversal": r"curl [^\n]*\"http://127\.0\.0\.1:8080/index\.php\?page=\.\./",
    "robots.txt bait": r"curl [^\n]*http://127\.0\.0\.1:8080/admin-old/",
    "whatweb": r"whatweb [^\n]*http://127\.0\.0\.1:8080/",
    "count": r"\./build/webtrap collector --config etc/collector\.yaml [^\n]*count",
}

# Lines that the run script and the package check print as they start.
EXPECTED_RUN_OUTPUT = [
    r"install-deps\.sh: all \d+ packages present",
    r"run\.sh: --skip-build: using the existing build/webtrap",
    r"webtrap: a probe and a collector are running on loopback",
]

# Shapes of secrets that must not appear in the cast: the honeytokens of
# docs/baits.md and a printed sensor token.
SECRET_PATTERNS = {
    "AWS access key honeytoken": r"AKIA[A-Z2-7]{16}",
    "Stripe key honeytoken": r"sk_live_[A-Za-z0-9]{8,}",
    "enrolment output": r"token_file:|Authorization: Bearer",
}


def source_dir():
    env = os.environ.get("WEBTRAP_SOURCE_DIR")
    return pathlib.Path(env) if env else pathlib.Path(__file__).resolve().parents[2]


def check(condition, message, failures):
    if not condition:
        failures.append(message)


def read_cast(path, failures):
    """Return (header, events) of an asciicast v2 file, checking its layout."""
    lines = path.read_text(encoding="utf-8").splitlines()
    check(len(lines) >= 2, f"{path}: a header and at least one event expected, got "
          f"{len(lines)} lines", failures)
    if not lines:
        return {}, []

    header = json.loads(lines[0])
    check(isinstance(header, dict), f"{path}: the header is not a JSON object", failures)
    if not isinstance(header, dict):
        return {}, []
    check(header.get("version") == 2, f"{path}: version is {header.get('version')!r}, "
          "expected 2", failures)
    for key, maximum in (("width", MAX_WIDTH), ("height", MAX_HEIGHT)):
        value = header.get(key)
        check(isinstance(value, int) and value > 0,
              f"{path}: header {key} {value!r} is not a positive integer", failures)
        if isinstance(value, int):
            check(value <= maximum, f"{path}: header {key} {value} is over {maximum}", failures)

    events = []
    previous_time = 0.0
    for number, line in enumerate(lines[1:], start=2):
        event = json.loads(line)
        shape_ok = (isinstance(event, list) and len(event) == 3
                    and isinstance(event[0], (int, float)) and event[1] == "o"
                    and isinstance(event[2], str))
        check(shape_ok, f"{path}:{number}: expected [time, \"o\", text], got {line[:80]}",
              failures)
        if not shape_ok:
            continue
        check(event[0] >= previous_time, f"{path}:{number}: time {event[0]} is before "
              f"the previous event's {previous_time}", failures)
        previous_time = event[0]
        events.append(event)
    return header, events


def screen_text(events):
    """Join the output of all events without escape sequences and line breaks.

    Line breaks go too, because a line longer than the terminal wraps, and
    the assertions look for whole record lines.
    """
    text = "".join(event[2] for event in events)
    text = ESCAPE_SEQUENCE.sub("", text)
    return text.replace("\r", "").replace("\n", "")


def readme_run_command():
    """Return the command in the README's quick start code block."""
    readme = (source_dir() / "README.md").read_text(encoding="utf-8")
    match = re.search(r"## Quick start[^\n]*\n+```sh\n([^\n]+)\n```", readme)
    if match is None:
        raise AssertionError("README.md: no ```sh block under the Quick start heading")
    return match.group(1).strip()


def check_cast_text(text, run_command, failures):
    check(run_command in text, f"the cast does not show the README's command {run_command}",
          failures)
    for pattern in EXPECTED_RUN_OUTPUT:
        check(re.search(pattern, text), f"the cast does not show the line /{pattern}/", failures)
    for name, pattern in EXPECTED_COMMANDS.items():
        check(re.search(pattern, text), f"the cast does not show the {name} command", failures)

    record_count = 0
    for name, pattern in EXPECTED_RECORDS.items():
        found = re.search(r"demo-probe\s*127\.0\.0\.1\s*" + pattern, text)
        check(found, f"the cast shows no stored record of the {name} request "
              f"with its rule (/{pattern}/)", failures)
        record_count += found is not None

    count = re.search(r"\{\"events\":(\d+),", text)
    check(count, "the cast shows no output of `webtrap collector count`", failures)
    if count:
        events = int(count.group(1))
        check(events >= len(EXPECTED_RECORDS),
              f"the collector's count is {events}, expected at least "
              f"{len(EXPECTED_RECORDS)} (one per request sent)", failures)
        check(events >= record_count, f"the collector's count {events} is below the "
              f"{record_count} record lines shown", failures)

    stop = re.search(r"\^C\s*webtrap: stopped", text)
    check(stop, "the cast does not show Ctrl-C and run.sh's 'webtrap: stopped' line", failures)
    if count and stop:
        check(count.start() < stop.start(), "the count is shown after the stop, "
              "not while the servers run", failures)

    for name, pattern in SECRET_PATTERNS.items():
        check(not re.search(pattern, text), f"the cast shows a secret: {name} (/{pattern}/)",
              failures)


def check_record_script(run_command, failures):
    script = (source_dir() / RECORD_SCRIPT_PATH).read_text(encoding="utf-8")
    match = re.search(r"^run_script=(\S+)$", script, re.MULTILINE)
    check(match, f"{RECORD_SCRIPT_PATH}: no run_script= line", failures)
    if match:
        check(match.group(1) == run_command, f"{RECORD_SCRIPT_PATH} runs {match.group(1)}, "
              f"but the README's quick start runs {run_command}", failures)
    check((source_dir() / run_command).is_file(),
          f"the README's quick start script {run_command} does not exist", failures)


def check_asciinema_reads(path, failures):
    asciinema = shutil.which("asciinema")
    if asciinema is None:
        print(f"note: asciinema is not installed, so `asciinema cat {CAST_PATH}` was not run")
        return
    # asciinema 2.2 cat opens /dev/tty, so script(1) gives it a terminal.
    command = f"{shlex.quote(asciinema)} cat {shlex.quote(str(path))}"
    result = subprocess.run(["script", "--quiet", "--return", "--command", command, "/dev/null"],
                            stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
    check(result.returncode == 0, f"asciinema cat {CAST_PATH} exited {result.returncode}: "
          f"{(result.stdout + result.stderr).decode(errors='replace')[-300:]}", failures)


def main():
    failures = []
    path = source_dir() / CAST_PATH
    header, events = read_cast(path, failures)
    duration = events[-1][0] if events else 0.0
    check(duration < MAX_DURATION_SECONDS,
          f"{CAST_PATH} plays for {duration:.1f} s, over {MAX_DURATION_SECONDS} s", failures)

    run_command = readme_run_command()
    check_cast_text(screen_text(events), run_command, failures)
    check_record_script(run_command, failures)
    check_asciinema_reads(path, failures)

    for failure in failures:
        print(f"FAIL: {failure}")
    if failures:
        print(f"demo cast: {len(failures)} checks failed")
        return 1
    print(f"demo cast: {len(events)} events, {duration:.1f} s at "
          f"{header['width']}x{header['height']}, every check passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
