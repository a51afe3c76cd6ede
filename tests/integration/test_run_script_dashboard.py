#!/usr/bin/env python3
"""The README's quick start script, scripts/run.sh, with and without --dashboard.

The script runs in a copy of the tree's scripts/ and etc/ in a temporary
folder, with build/webtrap linked to WEBTRAP_BIN, so its var/ is the test's
own. The copied etc/collector.yaml binds port 0 and the copied
etc/probe.yaml binds free ports, so the run does not collide with
anything on the README's ports. The copied scripts/install-deps.sh is a
stand-in that checks nothing, because a test must not install packages.
Everything listens on loopback.

- Without options, /healthz on the collector's admin listener needs no
  token, /dashboard/ is 404, and the banner names the option that turns it on.
- With --dashboard, the banner prints the dashboard's URL and a generated
  admin token. var/collector/admin.token keeps it with mode 0600 and the
  test's owner, also when the probe runs as root and hands its var/state
  to an unprivileged user. The page loads, the API returns 401
  without the token and 200 with it, a login with the token sets the
  session cookie, and a request sent to the probe reaches the dashboard
  through the shipper.
- While one run is going, a second one in the same folder stops at once
  with an error that names var/run.lock, and prints no token.
- A second run with --dashboard keeps the same token, and sets a token
  file of mode 0644 back to 0600 with a notice.
- A token file that contains no usable token, or a probe port in use, stops
  the run with an error that names the cause, before any banner or token.
- SIGINT stops the script, the probe and the collector.
- A probe killed with SIGKILL ends the run with a line that names the
  signal and states that a new run records the journaled requests.
"""

import json
import os
import pathlib
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

from probe_harness import BIN, SOURCE_DIR, send_raw, wait_for

START_TIMEOUT = 60
STOP_TIMEOUT = 30


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def free_port_on_both_loopbacks():
    """A TCP port free on 127.0.0.1 and on ::1 at the time of the call."""
    for _ in range(50):
        with socket.socket(socket.AF_INET) as v4:
            v4.bind(("127.0.0.1", 0))
            port = v4.getsockname()[1]
            try:
                with socket.socket(socket.AF_INET6) as v6:
                    v6.bind(("::1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no port free on both 127.0.0.1 and ::1 after 50 tries")


def make_tree(folder, http_port):
    """Copy what run.sh needs into `folder` and return the path of the copied run.sh."""
    (folder / "scripts").mkdir()
    shutil.copy2(SOURCE_DIR / "scripts/run.sh", folder / "scripts/run.sh")
    stand_in = folder / "scripts/install-deps.sh"
    stand_in.write_text("#!/usr/bin/env bash\n"
                        "echo 'install-deps.sh: stand-in of the run script test, checks nothing'\n")
    stand_in.chmod(0o755)
    (folder / "build").mkdir()
    (folder / "build/webtrap").symlink_to(pathlib.Path(BIN).resolve())

    (folder / "etc").mkdir()
    collector = (SOURCE_DIR / "etc/collector.yaml").read_text()
    for default in ("127.0.0.1:7380", "127.0.0.1:9102"):
        check(default in collector, f"etc/collector.yaml no longer listens on {default}; "
              "update this test's port rewrite")
        collector = collector.replace(default, "127.0.0.1:0")
    (folder / "etc/collector.yaml").write_text(collector)

    probe = (SOURCE_DIR / "etc/probe.yaml").read_text()
    replacements = {"127.0.0.1:8080": f"127.0.0.1:{http_port}",
                    "[::1]:8080": f"[::1]:{http_port}",
                    "127.0.0.1:8443": "127.0.0.1:0", "127.0.0.1:8888": "127.0.0.1:0",
                    "127.0.0.1:9101": "127.0.0.1:0"}
    for default, replacement in replacements.items():
        check(default in probe, f"etc/probe.yaml no longer listens on {default}; "
              "update this test's port rewrite")
        probe = probe.replace(default, replacement)
    (folder / "etc/probe.yaml").write_text(probe)
    return folder / "scripts/run.sh"


class RunScript:
    """scripts/run.sh started in its own session, its output in a file."""

    def __init__(self, script, folder, *options):
        self.folder = folder
        self.output_path = folder / f"run-{'-'.join(o.strip('-') for o in options) or 'plain'}.txt"
        self.output = open(self.output_path, "wb")
        self.process = subprocess.Popen([str(script), "--skip-build", *options], cwd=folder,
                                        stdout=self.output, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True)

    def text(self):
        return self.output_path.read_text(errors="replace")

    def wait_banner(self):
        """Wait for the line run.sh prints after starting both, and return the output."""
        marker = "Each request the probe receives appears below"
        wait_for(lambda: marker in self.text() or self.process.poll() is not None,
                 START_TIMEOUT, "run.sh's banner")
        check(marker in self.text(), f"run.sh exited with {self.process.poll()} before its "
              f"banner:\n{self.text()}\n{log_tails(self.folder)}")
        return self.text()

    def stop(self, group=False, twice=False):
        """Send SIGINT, wait for the stop line, and end any leftover process. With `group`,
        SIGINT goes to run.sh's whole process group, as a terminal's Ctrl-C sends it. With
        `twice`, a second SIGINT goes to the group 0.3 s later, as an impatient user sends it."""
        if self.process.poll() is None:
            if group:
                os.killpg(self.process.pid, signal.SIGINT)
            else:
                self.process.send_signal(signal.SIGINT)
        if twice:
            time.sleep(0.3)
            if self.process.poll() is None:
                os.killpg(self.process.pid, signal.SIGINT)
        try:
            self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.output.close()
        leftovers = processes_in(self.folder)
        described = [describe_process(pid) for pid in leftovers]
        for pid in leftovers:
            os.kill(pid, signal.SIGKILL)
        return described


def processes_in(folder):
    """PIDs of webtrap processes whose working folder is `folder` (started by run.sh)."""
    pids = []
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (pathlib.Path(os.readlink(entry / "cwd")) == folder
                    and "webtrap" in (entry / "cmdline").read_bytes().decode(errors="replace")):
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def describe_process(pid):
    """`pid` with its parent and command line, for a failure message."""
    try:
        command = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        return f"{pid} (parent {parent_of(pid)}): {command.decode(errors='replace').strip()}"
    except OSError:
        return str(pid)


def parent_of(pid):
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("PPid:"):
            return int(line.split()[1])
    return 0


def log_tails(folder):
    parts = []
    for name in ("collector.log", "probe.log"):
        path = folder / "var/log" / name
        if path.exists():
            parts.append(f"--- {path}\n{path.read_text(errors='replace')[-3000:]}")
    return "\n".join(parts)


def admin_port(folder):
    return json.loads((folder / "var/collector/ports.json").read_text())["admin"]


def accepts(port):
    """Whether a TCP connection to 127.0.0.1:`port` succeeds."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


def http_get(url, headers=None):
    """Return (status, body) of a GET, also for an error status."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def check_plain_run(script, folder, http_port):
    """The default run, stopped as a terminal's Ctrl-C stops it: the line of a request
    sent just before the stop is still printed."""
    run = RunScript(script, folder)
    stopped = False
    try:
        banner = run.wait_banner()
        check("dashboard: off unless etc/collector.yaml turns it on" in banner
              and "--dashboard" in banner, f"the banner does not say how to turn the dashboard "
              f"on:\n{banner}")
        check("admin token:" not in banner, f"a run without --dashboard printed a token:\n{banner}")
        check(not (folder / "var/collector/admin.token").exists(),
              "a run without --dashboard made var/collector/admin.token")
        port = admin_port(folder)
        status, _ = http_get(f"http://127.0.0.1:{port}/healthz")
        check(status == 200, f"/healthz without a token answered {status}; the default run "
              "has no admin token")
        status, _ = http_get(f"http://127.0.0.1:{port}/dashboard/")
        check(status == 404, f"/dashboard/ answered {status} without --dashboard, expected 404")
        send_raw(http_port, b"GET /last-before-ctrl-c HTTP/1.1\r\nHost: shop.example\r\n"
                            b"Connection: close\r\n\r\n")
        leftovers = run.stop(group=True)
        stopped = True
    finally:
        if not stopped:
            leftovers = run.stop()
    check(not leftovers, f"processes left after SIGINT: {leftovers}")
    check("GET /last-before-ctrl-c" in run.text(),
          f"a Ctrl-C to the process group lost the last request's line:\n{run.text()}")
    check("webtrap: stopped" in run.text(), f"no stop line after SIGINT:\n{run.text()}")
    check("unbound variable" not in run.text(), f"run.sh failed after SIGINT:\n{run.text()}")


def check_double_ctrl_c(script, folder, http_port):
    """A second Ctrl-C while run.sh waits for the probe's final pass still stops the
    collector and the tail, which run in sessions of their own."""
    run = RunScript(script, folder)
    stopped = False
    try:
        run.wait_banner()
        send_raw(http_port, b"GET /before-two-ctrl-c HTTP/1.1\r\nHost: shop.example\r\n"
                            b"Connection: close\r\n\r\n")
        leftovers = run.stop(group=True, twice=True)
        stopped = True
    finally:
        if not stopped:
            leftovers = run.stop()
    check(not leftovers, f"processes left after two SIGINTs: {leftovers}\n{run.text()}")
    check("webtrap: stopped" in run.text(), f"no stop line after two SIGINTs:\n{run.text()}")


def check_part_killed(script, folder, part, hint, hint_text):
    """A probe or collector (`part`) killed under run.sh ends the run with a line naming the
    signal and a line telling how to go on, which contains `hint`."""
    run = RunScript(script, folder)
    try:
        run.wait_banner()
        # The process run.sh started, not its children, and not the
        # collector tail that run.sh also starts.
        started = []
        for pid in processes_in(folder):
            argv = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if argv[1:2] == [part.encode()] and b"tail" not in argv \
                    and parent_of(pid) == run.process.pid:
                started.append(pid)
        check(len(started) == 1, f"expected one {part} started by run.sh, found {started}")
        os.kill(started[0], signal.SIGKILL)
        run.process.wait(timeout=STOP_TIMEOUT)
    finally:
        leftovers = run.stop()
    check(not leftovers, f"processes left after the {part} was killed: {leftovers}")
    text = run.text()
    check(f"the {part} was killed by signal KILL" in text,
          f"run.sh did not name the {part}'s signal:\n{text}")
    check("run ./scripts/run.sh again" in text and hint in text,
          f"run.sh did not say how to {hint_text}:\n{text}")


def run_to_end(script, folder, *options, environment=None):
    """Run run.sh --skip-build with `options` to its end and return (exit status, output)."""
    result = subprocess.run([str(script), "--skip-build", *options], cwd=folder,
                            env=environment, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, timeout=START_TIMEOUT)
    return result.returncode, result.stdout.decode(errors="replace")


def check_bad_jobs_rejected(script, folder):
    """An invalid --jobs value stops run.sh before it builds or starts anything."""
    for value in ("0", "two", ""):
        status, output = run_to_end(script, folder, f"--jobs={value}")
        check(status == 2, f"run.sh --jobs={value} exited with {status}, expected 2:\n{output}")
        check(f'invalid --jobs value "{value}"' in output and "--jobs=1" in output,
              f"run.sh --jobs={value} does not name the value and the fix:\n{output}")
        check("webtrap: a probe and a collector are running" not in output,
              f"run.sh --jobs={value} started the probe and collector:\n{output}")


def check_second_run_rejected(script, folder):
    """A run in a folder where another one is going stops before it changes anything."""
    status, output = run_to_end(script, folder, "--dashboard")
    check(status != 0, f"a second run.sh in the same folder exited with 0:\n{output}")
    check("var/run.lock" in output and "another run.sh" in output,
          f"the second run.sh does not name the running one:\n{output}")
    check("admin token:" not in output, f"the rejected run printed a token:\n{output}")


def check_dashboard_run(script, folder, http_port, while_running=None):
    run = RunScript(script, folder, "--dashboard")
    try:
        banner = run.wait_banner()
        port = admin_port(folder)
        url = f"http://127.0.0.1:{port}/dashboard/"
        check(f"dashboard: {url}" in banner, f"the banner lacks the dashboard URL {url}:\n{banner}")
        # The banner lists the listeners the probe bound, not the defaults:
        # this tree's etc/probe.yaml moved every port.
        probe_ports = json.loads((folder / "var/state/probe-ports.json").read_text())
        expected = [f"http:      http://127.0.0.1:{http_port}/",
                    f"http-v6:   http://[::1]:{http_port}/",
                    f"https:     https://127.0.0.1:{probe_ports['https']}/  (self-signed",
                    f"bait-8888: http://127.0.0.1:{probe_ports['bait-8888']}/  (bait:",
                    f"metrics http://127.0.0.1:{probe_ports['admin']}/metrics"]
        for line in expected:
            check(line in banner, f"the banner lacks {line!r}:\n{banner}")
        check(":8443/" not in banner and ":9101/" not in banner,
              f"the banner shows a default port that this tree does not use:\n{banner}")
        match = re.search(r"admin token: ([0-9a-f]+) \(kept in var/collector/admin\.token\)",
                          banner)
        check(match is not None, f"the banner lacks the admin token:\n{banner}")
        token = match.group(1)
        check(len(token) == 64, f"the admin token has {len(token)} hex digits, expected 64")
        token_file = folder / "var/collector/admin.token"
        check(token_file.read_text() == token, "var/collector/admin.token differs from the banner")
        mode = stat.S_IMODE(token_file.stat().st_mode)
        check(mode == 0o600, f"var/collector/admin.token has mode {mode:o}, expected 600")
        # Run as root, the probe hands var/state to its unprivileged user,
        # which must not be able to read the admin token.
        check(token_file.stat().st_uid == os.getuid(),
              f"var/collector/admin.token belongs to uid {token_file.stat().st_uid}, "
              f"not to the user who ran run.sh ({os.getuid()})")
        check(not (folder / "var/state/admin.token").exists(),
              "the admin token is in var/state, the probe's folder")
        if while_running is not None:
            while_running()

        status, page = http_get(url)
        check(status == 200 and b"<title>webtrap dashboard</title>" in page,
              f"GET {url}: {status} {page[:200]!r}")
        summary_url = f"http://127.0.0.1:{port}/dashboard/api/summary"
        status, _ = http_get(summary_url)
        check(status == 401, f"the summary without a token answered {status}, expected 401")
        bearer = {"Authorization": f"Bearer {token}"}
        status, body = http_get(summary_url, bearer)
        check(status == 200, f"the summary with the printed token answered {status}: {body!r}")
        status, _ = http_get(f"http://127.0.0.1:{port}/healthz", bearer)
        check(status == 200, f"/healthz with the token answered {status}")

        login = urllib.request.Request(f"http://127.0.0.1:{port}/dashboard/login",
                                       data=f"token={token}".encode(), method="POST")
        with urllib.request.urlopen(login, timeout=10) as response:
            check(response.status == 204, f"the login answered {response.status}, expected 204")
            cookie = response.headers.get("Set-Cookie", "")
        check("HttpOnly" in cookie, f"the login set no session cookie: {cookie!r}")

        # A request to the probe reaches the dashboard through the shipper,
        # which run.sh points at the collector's ingest port.
        check(accepts(http_port), f"the banner was printed before the probe listened on "
              f"127.0.0.1:{http_port}")
        send_raw(http_port, b"GET /run-script-check HTTP/1.1\r\nHost: shop.example\r\n"
                            b"Connection: close\r\n\r\n")
        wait_for(lambda: json.loads(http_get(summary_url, bearer)[1])["events"] >= 1, 60,
                 "the probe's record in the dashboard")
        # The terminal line of each record names the listener, so a request
        # to the bait port reads differently from the same one on the web port.
        wait_for(lambda: "GET /run-script-check" in run.text(), 30, "the record's terminal line")
        check(re.search(r"GET /run-script-check .*via http$", run.text(), re.M),
              f"the terminal line does not name the listener http:\n{run.text()}")
        send_raw(probe_ports["bait-8888"], b"GET /bait-check HTTP/1.1\r\nHost: shop.example\r\n"
                                          b"Connection: close\r\n\r\n")
        wait_for(lambda: "GET /bait-check" in run.text(), 60, "the bait request's terminal line")
        check(re.search(r"GET /bait-check .*via bait-8888 \(bait\)$", run.text(), re.M),
              f"the terminal line does not mark the bait listener:\n{run.text()}")
        # A path with a C1 escape (U+009B) and a right-to-left override
        # (U+202E) reaches the terminal escaped, so it cannot drive it.
        send_raw(http_port, "GET /c1-check\u009b31m\u202e HTTP/1.1\r\nHost: shop.example\r\n"
                            "Connection: close\r\n\r\n".encode())
        wait_for(lambda: "GET /c1-check" in run.text(), 60, "the C1 request's terminal line")
        check("GET /c1-check\\u009b31m\\u202e " in run.text(),
              f"the terminal line does not escape U+009B and U+202E:\n{run.text()}")
        check("\u009b" not in run.text() and "\u202e" not in run.text(),
              f"the terminal got a raw U+009B or U+202E:\n{run.text()!r}")
    finally:
        leftovers = run.stop()
    check(not leftovers, f"processes left after SIGINT: {leftovers}")
    check("webtrap: stopped" in run.text(), f"no stop line after SIGINT:\n{run.text()}")
    check("unbound variable" not in run.text(), f"run.sh failed after SIGINT:\n{run.text()}")
    return token


def check_bad_token_file(script, folder):
    """A token file that cannot be sent as a Bearer token stops the run before the banner."""
    token_file = folder / "var/collector/admin.token"
    token_file.write_text("  two words \n")
    token_file.chmod(0o600)
    try:
        status, output = run_to_end(script, folder, "--dashboard")
    finally:
        token_file.unlink()
    check(status != 0, f"run.sh accepted a token with spaces:\n{output}")
    check("var/collector/admin.token does not hold a usable admin token" in output
          and "delete it" in output, f"the error does not name the file and the fix:\n{output}")
    check("admin token:" not in output, f"run.sh printed a token it did not use:\n{output}")


def check_probe_port_in_use(script, folder, http_port):
    """A probe that cannot listen stops the run before the banner and its token."""
    with socket.socket(socket.AF_INET) as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", http_port))
        taken.listen()
        status, output = run_to_end(script, folder, "--dashboard")
    check(status != 0, f"run.sh exited with 0 while the probe's port was in use:\n{output}")
    check("the probe did not start; see var/log/probe.log" in output,
          f"run.sh does not say that the probe did not start:\n{output}")
    check("admin token:" not in output,
          f"run.sh printed a token for a run that stopped:\n{output}")
    check(not processes_in(folder), "processes left after the probe did not start")


def check_start_error_shows_this_run(script, folder):
    """A collector that stops at a configuration error prints that error under run.sh's
    message, without the lines that earlier runs left in the same log."""
    environment = dict(os.environ, WEBTRAP__NO_SUCH_KEY="1")
    status, output = run_to_end(script, folder, environment=environment)
    check(status != 0, f"run.sh exited with 0 while the collector could not start:\n{output}")
    check("the collector did not start" in output and "var/log/collector.log" in output,
          f"run.sh does not say that the collector did not start:\n{output}")
    check("WEBTRAP__NO_SUCH_KEY" in output,
          f"run.sh does not show the collector's error:\n{output}")
    # collector.log has the lines of every earlier run, which all stopped.
    check("collector: stopped" not in output,
          f"run.sh printed log lines of an earlier run under this failure:\n{output}")
    check(not processes_in(folder), "processes left after the collector did not start")


def main():
    if not pathlib.Path(BIN).exists():
        print(f"webtrap binary not found at {BIN}; build it or set WEBTRAP_BIN", file=sys.stderr)
        return 1
    folder = pathlib.Path(tempfile.mkdtemp(prefix="webtrap-run-script-")).resolve()
    # When the test runs as root, the probe's shipper drops to an
    # unprivileged user, which must be able to reach var/spool in here.
    folder.chmod(0o755)
    try:
        http_port = free_port_on_both_loopbacks()
        script = make_tree(folder, http_port)
        try:
            check_plain_run(script, folder, http_port)
            check_double_ctrl_c(script, folder, http_port)
            check_part_killed(script, folder, "probe", "inspection-journal",
                              "recover the probe's requests")
            check_part_killed(script, folder, "collector", "var/spool/",
                              "go on after the collector's kill")
            first_token = check_dashboard_run(
                script, folder, http_port, lambda: check_second_run_rejected(script, folder))
            token_file = folder / "var/collector/admin.token"
            token_file.chmod(0o644)
            second_token = check_dashboard_run(script, folder, http_port)
            check(second_token == first_token, "a second run with --dashboard printed a new token")
            check("had mode 644" in (folder / "run-dashboard.txt").read_text(errors="replace"),
                  "run.sh did not say that it set the token file of mode 0644 to 0600")
            check_bad_token_file(script, folder)
            check_probe_port_in_use(script, folder, http_port)
            check_start_error_shows_this_run(script, folder)
            check_bad_jobs_rejected(script, folder)
        except AssertionError:
            print(log_tails(folder), file=sys.stderr)
            raise
    finally:
        if not os.environ.get("WEBTRAP_KEEP_TEST_DIRS"):
            shutil.rmtree(folder, ignore_errors=True)
    print("run.sh: default run without a dashboard stopped by Ctrl-C to its group, a run "
          "stopped by two Ctrl-Cs, a killed "
          "collector, --dashboard with URL, token, login and a "
          "shipped record, a killed probe, a rejected second run, the same token on the next run, a bad token "
          "file, a probe port in use, a collector configuration error shown without older log lines, invalid --jobs values, and the stop all passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
