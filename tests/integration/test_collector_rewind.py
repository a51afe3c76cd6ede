#!/usr/bin/env python3
"""`webtrap collector rewind` and the store lock, against a real collector.

A collector tails a file of 60 libmodsecurity v3 records and writes them to
its NDJSON output. Then:

- a second collector on the same store stops at its start, naming the lock.
  So does one whose store.path is a symbolic link to the first one's store,
  and one beside a collector that created its store through a link to a
  file that did not exist yet. A hard link to the store, and the same path
  once its lock file is deleted, meet at the lock on the store file itself;
- a collector with its own store that cannot start (a port in use, a
  missing GeoIP database, a bad certificate, an output that cannot write)
  leaves no store behind, but keeps one in which a sensor was enrolled
  during its start, and one moved onto its store path during its start;
- rewind fails while the collector runs, naming the running collector;
- after the stop, rewind --from-seq 41 moves the output's cursor to 40, and
  the next start sends events 41 to 60 again, so the file has 80 lines;
- rewind --since 1h sends all 60 again (140 lines, each of the 60 ids);
- bad arguments (an unknown output, a seq past the cursor, both or neither
  of --since and --from-seq, --from-seq 0) exit 2 with a message naming the
  fix, and the cursor stays where it was;
- --since 0s keeps the cursor and still prints the JSON result;
- a rewind of an output that the configuration no longer has prints a note on
  standard error;
- a folder in place of the lock file gets an error that says to remove it,
  and another user's read-only lock file does not stop a rewind (as root,
  where user nobody can run the binary);
- a rewind on a store that does not exist exits 2 and makes no folder.
"""
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys

from probe_harness import (BIN, SOURCE_DIR, CollectorRun, collector_ports, start_collector,
                           wait_for)

MAKE_RECORDS = SOURCE_DIR / "bench" / "collector" / "make_records.py"
RECORDS = 60
NOBODY = 65534


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def command(config, *args):
    """Run `webtrap collector --config CONFIG ARGS` and return (status, stdout, stderr)."""
    result = subprocess.run([BIN, "collector", "--config", str(config), *args],
                            capture_output=True, text=True, timeout=60)
    return result.returncode, result.stdout, result.stderr


def output_ids(path):
    """The event ids of the NDJSON output's lines, in order."""
    if not path.exists():
        return []
    return [json.loads(line)["event"]["id"] for line in path.read_text().splitlines()]


def stop(collector):
    collector.send_signal(signal.SIGTERM)
    check(collector.wait(timeout=30) == 0, f"collector exit status {collector.returncode}")


def hold_start_at_certificate(folder, name):
    """Start a collector whose tls.certificate is a named pipe, and return
    (process, pipe descriptor, config, store path) once the collector has
    made its store and waits to read the certificate. Writing garbage to the
    pipe and closing it makes the start fail."""
    case = folder / name
    case.mkdir()
    pipe = case / "certificate.pem"
    os.mkfifo(pipe)
    case_config = case / "collector.yaml"
    case_config.write_text(f"listen: 127.0.0.1:0\nadmin: {{listen: \"\"}}\n"
                           f"state_dir: {case}/state\n"
                           f"tls: {{certificate: {pipe}, private_key: {pipe}}}\n")
    process = subprocess.Popen([BIN, "collector", "--config", str(case_config)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    writer = None

    def reading_certificate():
        # Opening the writing end without blocking works once a reader has
        # the pipe open, and the certificate is read after the store is made.
        nonlocal writer
        try:
            writer = os.open(pipe, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            return process.poll() is not None
        return True

    wait_for(reading_certificate, timeout=30, what=f"the {name} collector to read its certificate")
    if writer is None:
        raise AssertionError(f"the {name} collector exited at its start: {process.stderr.read()}")
    return process, writer, case_config, case / "state" / "store.sqlite"


def fail_held_start(process, writer):
    """Make a held start fail on its certificate; return its standard error."""
    os.write(writer, b"not a certificate\n")
    os.close(writer)
    _, errors = process.communicate(timeout=30)
    check(process.returncode == 2 and "tls.certificate" in errors,
          f"a collector with a bad certificate: {process.returncode} {errors}")
    return errors


def main():
    with CollectorRun("webtrap-rewind-") as run:
        folder = run.folder
        records = folder / "modsec_audit.json"
        subprocess.run([sys.executable, str(MAKE_RECORDS), "--count", str(RECORDS), "--seed", "5",
                        "--modsecurity-output", str(records)],
                       check=True, capture_output=True, timeout=120)
        output = folder / "events.ndjson"
        config = folder / "collector.yaml"
        config.write_text(f"""listen: 127.0.0.1:0
admin: {{listen: "127.0.0.1:0"}}
state_dir: {folder}/state
inputs:
  files:
    - {{path: {records}, format: modsec3, sensor_id: web1}}
outputs:
  ndjson:
    path: {output}
""")
        # A store that does not exist gets an error and no lock file.
        elsewhere = folder / "elsewhere.yaml"
        elsewhere.write_text(f"listen: 127.0.0.1:0\nstate_dir: {folder}/missing\n")
        status, _, errors = command(elsewhere, "rewind", "--output", "ndjson", "--since", "1h")
        check(status == 2 and "does not exist" in errors and not (folder / "missing").exists(),
              f"rewind on a missing store: {status} {errors}")

        # A named pipe or a folder at store.path is rejected at start. Opening
        # a pipe to lock it must not wait for a writer.
        (folder / "odd").mkdir()
        os.mkfifo(folder / "odd" / "pipe.sqlite")
        (folder / "odd" / "folder.sqlite").mkdir()
        for name, fix in [("pipe.sqlite", "not a regular file"), ("folder.sqlite", "a folder")]:
            odd = folder / f"odd-{name}.yaml"
            odd.write_text(f"listen: 127.0.0.1:0\nadmin: {{listen: \"\"}}\n"
                           f"state_dir: {folder}/odd\nstore: {{path: {folder}/odd/{name}}}\n")
            for args in [(), ("rewind", "--output", "ndjson", "--since", "1h")]:
                try:
                    result = subprocess.run([BIN, "collector", "--config", str(odd), *args],
                                            capture_output=True, text=True, timeout=20)
                except subprocess.TimeoutExpired:
                    raise AssertionError(f"collector {' '.join(args)} with {name} as its store "
                                         "ran for 20 s")
                check(result.returncode == 2 and fix in result.stderr,
                      f"collector {' '.join(args)} with {name} as its store: "
                      f"{result.returncode} {result.stderr}")

        # A store created through a symbolic link whose target does not exist
        # yet shares its lock with the target's own path.
        (folder / "fresh").mkdir()
        (folder / "fresh" / "link.sqlite").symlink_to(folder / "fresh" / "store.sqlite")
        through_link = folder / "through-link.yaml"
        through_link.write_text(f"listen: 127.0.0.1:0\nadmin: {{listen: \"127.0.0.1:0\"}}\n"
                                f"state_dir: {folder}/fresh\n"
                                f"store: {{path: {folder}/fresh/link.sqlite}}\n")
        direct = folder / "direct.yaml"
        direct.write_text(f"listen: 127.0.0.1:0\nadmin: {{listen: \"127.0.0.1:0\"}}\n"
                          f"state_dir: {folder}/fresh\n")
        collector = run.start(through_link)
        wait_for(lambda: (folder / "fresh" / "store.sqlite").exists(), 30,
                 "the store made through the link")
        try:
            second = subprocess.run([BIN, "collector", "--config", str(direct)],
                                    capture_output=True, text=True, timeout=20)
        except subprocess.TimeoutExpired:
            raise AssertionError("a second collector ran for 20 s beside one started through a "
                                 "link to a new store")
        check(second.returncode == 2 and "is in use by another collector" in second.stderr,
              f"a second collector beside one started through a link to a new store: "
              f"{second.returncode} {second.stderr}")
        # A SIGTERM before the collector has started ends it with status -15.
        collector_ports(collector, folder)
        stop(collector)
        (folder / "ports.json").unlink(missing_ok=True)

        collector = run.start(config)
        ports = collector_ports(collector, folder)
        wait_for(lambda: len(output_ids(output)) >= RECORDS, 60, "the NDJSON output")
        first_ids = output_ids(output)
        check(len(set(first_ids)) == RECORDS, f"{len(first_ids)} lines, "
              f"{len(set(first_ids))} distinct ids before any rewind")

        # A second collector on the same store stops at its start.
        second = subprocess.run([BIN, "collector", "--config", str(config)],
                                capture_output=True, text=True, timeout=60)
        check(second.returncode == 2 and "is in use by another collector" in second.stderr
              and "store.sqlite.lock" in second.stderr,
              f"a second collector on the store: {second.returncode} {second.stderr}")

        # A collector with a store of its own that cannot start leaves no
        # store behind. The TLS and NDJSON cases fail after the store was
        # made, the others before.
        with socket.socket() as probe_port:
            probe_port.bind(("127.0.0.1", 0))
            free_port = probe_port.getsockname()[1]
        port_cases = [
            ("busy", f"listen: 127.0.0.1:{ports['ingest']}\n", "cannot listen"),
            ("same", f"listen: 127.0.0.1:{free_port}\n"
                     f"admin: {{listen: \"127.0.0.1:{free_port}\"}}\n",
             "admin.listen: cannot listen"),
            ("geoip", f"listen: 127.0.0.1:{free_port}\n"
                      f"enrich: {{geoip_city: {folder}/missing.mmdb}}\n",
             "enrich.geoip_city"),
            ("tls", f"listen: 127.0.0.1:{free_port}\n"
                    f"tls: {{certificate: {config}, private_key: {config}}}\n",
             "tls.certificate"),
            ("ndjson", f"listen: 127.0.0.1:{free_port}\n"
                       f"outputs: {{ndjson: {{path: {config}/out.ndjson}}}}\n",
             "outputs.ndjson.path"),
        ]
        for name, settings, expected in port_cases:
            port_config = folder / f"{name}-port.yaml"
            port_config.write_text(f"{settings}state_dir: {folder}/{name}\n")
            second = subprocess.run([BIN, "collector", "--config", str(port_config)],
                                    capture_output=True, text=True, timeout=60)
            left_behind = (folder / name / "store.sqlite").exists()
            check(second.returncode == 2 and expected in second.stderr and not left_behind,
                  f"a collector with the {name} case: {second.returncode} {second.stderr}, "
                  f"store left behind: {left_behind}")

        # A failed start removes only the store file that it created, and
        # none that got data from elsewhere during the start: a sensor
        # enrolled beside it, or a store moved onto its path.
        process, writer, held_config, held_store = hold_start_at_certificate(folder, "enrolled")
        status, _, errors = command(held_config, "enrol", "--sensor-id", "held1")
        check(status == 0, f"enrol beside a starting collector: {status} {errors}")
        fail_held_start(process, writer)
        status, listed, errors = command(held_config, "sensors")
        check(held_store.exists() and status == 0 and "held1" in listed,
              f"a sensor enrolled during a failed start: store kept {held_store.exists()}, "
              f"sensors {status} {listed} {errors}")

        process, writer, held_config, held_store = hold_start_at_certificate(folder, "moved")
        moved_config = folder / "moved-source.yaml"
        moved_config.write_text(f"state_dir: {folder}/moved-source\n")
        status, _, errors = command(moved_config, "enrol", "--sensor-id", "moved1")
        check(status == 0, f"enrol into the store to move: {status} {errors}")
        os.rename(folder / "moved-source" / "store.sqlite", held_store)
        fail_held_start(process, writer)
        status, listed, errors = command(held_config, "sensors")
        check(held_store.exists() and status == 0 and "moved1" in listed,
              f"a store moved onto the path during a failed start: store kept "
              f"{held_store.exists()}, sensors {status} {listed} {errors}")

        # A write-ahead log whose store file is missing is kept, and the
        # collector does not start a new store over it.
        orphan = folder / "orphan"
        orphan.mkdir()
        (orphan / "store.sqlite-wal").write_bytes(b"wal of a moved store")
        orphan_config = folder / "orphan.yaml"
        orphan_config.write_text(f"listen: 127.0.0.1:{free_port}\nstate_dir: {orphan}\n")
        second = subprocess.run([BIN, "collector", "--config", str(orphan_config)],
                                capture_output=True, text=True, timeout=60)
        check(second.returncode == 2 and "store.sqlite-wal" in second.stderr,
              f"a collector beside an orphan write-ahead log: {second.returncode} {second.stderr}")
        check((orphan / "store.sqlite-wal").read_bytes() == b"wal of a moved store"
              and not (orphan / "store.sqlite").exists(),
              f"the orphan write-ahead log was changed, or a store was made: "
              f"{sorted(p.name for p in orphan.iterdir())}")

        # The same store through a symbolic link to its file shares the lock.
        (folder / "link.sqlite").symlink_to(folder / "state" / "store.sqlite")
        linked = folder / "linked.yaml"
        linked.write_text(config.read_text().replace(
            f"state_dir: {folder}/state", f"state_dir: {folder}/state\nstore: {{path: {folder}/link.sqlite}}"))
        second = subprocess.run([BIN, "collector", "--config", str(linked)],
                                capture_output=True, text=True, timeout=60)
        check(second.returncode == 2 and "is in use by another collector" in second.stderr,
              f"a second collector through a link: {second.returncode} {second.stderr}")

        status, _, errors = command(config, "rewind", "--output", "ndjson", "--from-seq", "41")
        check(status == 2 and "stop the collector, then run rewind again" in errors,
              f"rewind beside a running collector: {status} {errors}")

        # Paths that share no lock file meet at the lock on the store file:
        # a hard link to it, and the same path once its lock file is deleted.
        os.link(folder / "state" / "store.sqlite", folder / "hard.sqlite")
        hard = folder / "hard.yaml"
        hard.write_text(config.read_text().replace(
            f"state_dir: {folder}/state", f"state_dir: {folder}/state\nstore: {{path: {folder}/hard.sqlite}}"))
        (folder / "lock-deleted.yaml").write_text(config.read_text())
        for name in ["hard.yaml", "lock-deleted.yaml"]:
            if name == "lock-deleted.yaml":
                (folder / "state" / "store.sqlite.lock").unlink()
            second = subprocess.run([BIN, "collector", "--config", str(folder / name)],
                                    capture_output=True, text=True, timeout=60)
            check(second.returncode == 2 and "reached it by another path" in second.stderr,
                  f"a second collector with {name}: {second.returncode} {second.stderr}")
        (folder / "hard.sqlite").unlink()
        stop(collector)

        # Arguments that cannot work leave the cursor alone.
        bad = [
            (["--output", "elastic", "--from-seq", "1"], "its outputs are: ndjson"),
            (["--output", "ndjson", "--from-seq", str(RECORDS + 5)], "never forward"),
            (["--output", "ndjson"], "give either --since"),
            (["--output", "ndjson", "--since", "1h", "--from-seq", "3"], "give either --since"),
            (["--output", "ndjson", "--since", "two hours"], "invalid duration"),
            (["--output", "ndjson", "--from-seq", "0"], "0 is not a seq"),
        ]
        for args, expected in bad:
            status, _, errors = command(config, "rewind", *args)
            check(status == 2 and expected in errors, f"rewind {args}: {status} {errors}")

        # A span with no stored event leaves the cursor and still prints it.
        status, printed, errors = command(config, "rewind", "--output", "ndjson", "--since", "0s")
        check(status == 0 and "contains no event stored in the last 0s" in errors,
              f"rewind --since 0s: {status} {errors}")
        check(printed and json.loads(printed)["cursor_after"] == RECORDS,
              f"rewind --since 0s printed {printed!r}")

        # A rewind of an output that the configuration no longer has says so.
        without_output = folder / "without-output.yaml"
        without_output.write_text(f"listen: 127.0.0.1:0\nstate_dir: {folder}/state\n")
        status, printed, errors = command(without_output, "rewind", "--output", "ndjson",
                                          "--from-seq", str(RECORDS + 1))
        check(status == 0 and "has no outputs.ndjson section" in errors,
              f"rewind of an output missing from the configuration: {status} {errors}")

        # A folder in place of the lock file gets an error that says to remove it.
        lock = folder / "state" / "store.sqlite.lock"
        lock.unlink()
        lock.mkdir()
        status, _, errors = command(config, "rewind", "--output", "ndjson", "--from-seq", "41")
        check(status == 2 and "it is a folder: remove it" in errors,
              f"rewind with a folder as the lock file: {status} {errors}")
        lock.rmdir()

        # Another user's lock file with mode 0644 is enough to lock: flock
        # needs no write access. Checked only as root, and only where user
        # nobody can run the binary (not in a build folder under /root).
        as_nobody = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
        if os.geteuid() == 0 and subprocess.run([*as_nobody, BIN, "--help"],
                                                capture_output=True, timeout=60).returncode == 0:
            lock.touch(mode=0o644)
            os.chmod(lock, 0o644)
            folder.chmod(0o755)
            for path in [folder / "state", *(folder / "state").glob("store.sqlite*")]:
                if path != lock:
                    os.chown(path, NOBODY, -1)
            result = subprocess.run([*as_nobody, BIN, "collector", "--config", str(config),
                                     "rewind", "--output", "ndjson", "--from-seq",
                                     str(RECORDS + 1)],
                                    capture_output=True, text=True, timeout=60)
            check(result.returncode == 0, "rewind as another user with a read-only lock file: "
                  f"{result.returncode} {result.stderr}")
            for path in (folder / "state").glob("store.sqlite*"):
                os.chown(path, 0, -1)

        status, printed, errors = command(config, "rewind", "--output", "ndjson",
                                          "--from-seq", "41")
        check(status == 0, f"rewind --from-seq 41: {status} {errors}")
        result = json.loads(printed)
        check(result == {"output": "ndjson", "cursor_before": RECORDS, "cursor_after": 40,
                         "last_seq": RECORDS}, f"rewind --from-seq 41 printed {result}")

        collector = run.start(config)
        wait_for(lambda: len(output_ids(output)) >= RECORDS + 20, 60, "the events sent again")
        stop(collector)
        ids = output_ids(output)
        check(ids[RECORDS:] == first_ids[40:], "after rewind --from-seq 41 the output got "
              f"{len(ids) - RECORDS} lines that are not events 41 to 60 in order")

        status, printed, errors = command(config, "rewind", "--output", "ndjson", "--since", "1h")
        check(status == 0 and json.loads(printed)["cursor_after"] == 0,
              f"rewind --since 1h: {status} {printed} {errors}")
        # Again: the output has sent none of the span now, and the rewind prints why.
        status, printed, errors = command(config, "rewind", "--output", "ndjson", "--since", "1h")
        check(status == 0 and "has not sent the events stored in the last 1h" in errors
              and json.loads(printed)["cursor_after"] == 0,
              f"a second rewind --since 1h: {status} {printed} {errors}")
        collector = run.start(config)
        wait_for(lambda: len(output_ids(output)) >= 2 * RECORDS + 20, 60, "the second resend")
        stop(collector)
        ids = output_ids(output)
        check(len(ids) == 2 * RECORDS + 20 and ids[RECORDS + 20:] == first_ids,
              f"after rewind --since 1h the output has {len(ids)} lines, expected "
              f"{2 * RECORDS + 20} ending with the first {RECORDS} again")
        run.collector = None
    print("collector rewind: the store lock, rewind beside a running collector, bad arguments, "
          "--from-seq and --since all passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
