#!/usr/bin/env python3
"""The collector masks card numbers in records from ModSecurity servers.

A collector on loopback takes a libmodsecurity v3 record with card numbers
through POST /v1/modsecurity, an undecodable body with a card number (a
dead letter), and a mod_security2 record plus an undecodable line from a
file input. The test then searches the store files (through the sqlite3
client and as raw bytes, the write-ahead log included), the NDJSON output
and the collector's log for the full numbers. It also checks that the
masked forms and the numbers that fail the Luhn check are there, and that
event.original is still valid JSON.

Exit status: 0 pass, 1 a check failed, 77 the sqlite3 client is not installed.
"""

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request

from probe_harness import collector_ports, enrol_sensor, start_collector, wait_for

# Luhn-valid test numbers, as they appear in the records below.
FULL_NUMBERS = ["4111111111111111", "5555555555554444", "378282246310005", "4012888888881881"]
# Numbers that fail the Luhn check, so they are kept.
NOT_CARDS = ["4111111111111112", "1234567890123"]

# 4111111111111111 written as percent escapes, as a client may send it.
PERCENT_CARD = "".join("%3" + digit for digit in FULL_NUMBERS[0])

MODSEC3_RECORD = (
    '{"transaction":{"client_ip":"203.0.113.9","time_stamp":"Fri Dec  4 15:41:52 2026",'
    '"server_id":"abc","client_port":51000,"host_ip":"127.0.0.1","host_port":80,'
    '"unique_id":"17963993203.232894","request":{"method":"POST","http_version":1.1,'
    '"uri":"/checkout?cc=4111111111111111&order=4111111111111112&pan=' + PERCENT_CARD + '",'
    '"body":"card=5555+5555+5555+4444&ref=1234567890123",'
    '"headers":{"Host":"shop.example","X-Card":"3782 822463 10005"}},'
    '"response":{"body":"","http_code":200,"headers":{"Server":"nginx"}},'
    '"producer":{"modsecurity":"ModSecurity v3.0.9 (Linux)",'
    '"connector":"ModSecurity-nginx v1.0.3","secrules_engine":"DetectionOnly",'
    '"components":["OWASP_CRS/3.3.4\\""]},'
    '"messages":[{"message":"Card number in argument","details":{'
    '"match":"Matched \\"Operator `Rx\' against variable `ARGS:cc\' (Value: `4111111111111111\' )",'
    '"reference":"o0,16","ruleId":"920999","file":"/etc/modsecurity/custom.conf",'
    '"lineNumber":"12","data":"Matched Data: 4012-8888-8888-1881 found within ARGS:cc",'
    '"severity":"2","ver":"OWASP_CRS/3.3.4","rev":"","tags":["pci"],'
    '"maturity":"0","accuracy":"0"}}]}}'
)

MODSEC2_RECORD = (
    '{"transaction":{"time":"04/Dec/2026:16:13:03.951955 +0000",'
    '"transaction_id":"axLmj1PZs792kfjhpO8zoAAAAAA","remote_address":"198.51.100.4",'
    '"remote_port":42674,"local_address":"127.0.0.1","local_port":80},'
    '"request":{"request_line":"POST /pay?pan=4111111111111111 HTTP/1.1",'
    '"headers":{"Host":"shop.example","Referer":"http://shop.example/?card=5555555555554444"},'
    '"body":["number=4012-8888-8888-1881&amex=378282246310005"]},'
    '"response":{"protocol":"HTTP/1.1","status":403,"headers":{"Connection":"close"}},'
    '"audit_data":{"messages":["Warning. Pattern match at ARGS:pan. [id \\"920999\\"] '
    '[msg \\"Card number\\"] [data \\"Matched Data: 4111111111111111 found within ARGS:pan\\"]"],'
    '"server":"Apache/2.4.62 (Debian)"}}'
)


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def http(method, url, body=None, headers=None):
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def metric(admin_port, name):
    text = http("GET", f"http://127.0.0.1:{admin_port}/metrics")[1].decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def without_separators(text):
    return text.replace(" ", "").replace("-", "").replace("+", "")


def check_no_full_number(text, where):
    joined = without_separators(text)
    for number in FULL_NUMBERS:
        check(number not in joined, f"full card number {number} in {where}")
    check(PERCENT_CARD not in text, f"percent-escaped card number in {where}")


def main():
    if shutil.which("sqlite3") is None:
        print("the sqlite3 client is not installed", file=sys.stderr)
        return 77
    folder = pathlib.Path(tempfile.mkdtemp(prefix="webtrap-card-masking-", dir="/tmp"))
    collector = None
    try:
        state = folder / "state"
        output = folder / "events.ndjson"
        audit_log = folder / "modsec_audit.json"
        audit_log.write_text(MODSEC2_RECORD + "\n" +
                             '{"transaction": broken line with 4111 1111 1111 1111\n')
        config = folder / "collector.yaml"
        config.write_text(f"""listen: 127.0.0.1:0
admin: {{listen: 127.0.0.1:0}}
state_dir: {state}
inputs:
  files:
    - {{path: {audit_log}, format: modsec2, sensor_id: apache-1, poll_interval: 100ms}}
outputs:
  ndjson: {{path: {output}, flush_interval: 100ms}}
""")
        token, _ = enrol_sensor(config, "nginx-edge")

        log_path = folder / "collector.log"
        collector = start_collector(config, folder)
        ports = collector_ports(collector, folder)

        url = f"http://127.0.0.1:{ports['ingest']}/v1/modsecurity"
        auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        status, body = http("POST", url, MODSEC3_RECORD.encode(), auth)
        check(status == 200 and json.loads(body)["stored"] == 1, f"modsec3 record: {status} {body}")
        # The same record again is a duplicate: masking keeps the event id stable.
        status, body = http("POST", url, MODSEC3_RECORD.encode(), auth)
        check(status == 200 and json.loads(body)["duplicates"] == 1, f"again: {status} {body}")
        broken = b'{"transaction":{"uri":"/pay?cc=4111111111111111"'
        status, body = http("POST", url, broken, auth)
        check(status == 200 and json.loads(body)["rejected"] == 1, f"broken record: {status} {body}")

        wait_for(lambda: metric(ports["admin"], 'webtrap_collector_input_stored_total{input="file"}')
                 >= 1, 30, "the file input's record")
        wait_for(lambda: metric(ports["admin"], 'webtrap_collector_input_rejected_total{input="file"}')
                 >= 1, 30, "the file input's dead letter")
        wait_for(lambda: output.exists() and len(output.read_text().splitlines()) >= 2, 30,
                 "the NDJSON output")

        collector.send_signal(signal.SIGTERM)
        collector.wait(timeout=30)

        ndjson = output.read_text()
        documents = [json.loads(line) for line in ndjson.splitlines()]
        check(len(documents) == 2, f"{len(documents)} documents, expected 2")
        check_no_full_number(ndjson, "the NDJSON output")
        by_format = {document["webtrap"]["format"]: document for document in documents}
        check(set(by_format) == {"modsec3", "modsec2"}, f"formats: {sorted(by_format)}")
        for name, document in by_format.items():
            original = json.loads(document["event"]["original"])
            check("transaction" in original, f"{name} event.original: {original}")
            check("411111******1111" in document["event"]["original"],
                  f"{name} event.original is not masked: {document['event']['original']}")
        modsec3 = by_format["modsec3"]
        masked_percent = PERCENT_CARD[:18] + "%2A" * 6 + PERCENT_CARD[-12:]
        check(modsec3["url"]["query"] ==
              "cc=411111******1111&order=4111111111111112&pan=" + masked_percent,
              f"modsec3 url: {modsec3['url']}")
        for number in NOT_CARDS:
            check(number in modsec3["event"]["original"], f"{number} was masked")

        sqlite = subprocess.run(["sqlite3", str(state / "store.sqlite"),
                                 "SELECT count(*) FROM events; SELECT count(*) FROM dead_letters;"
                                 " SELECT CAST(payload AS TEXT) FROM dead_letters;", ".dump"],
                                capture_output=True, text=True, timeout=60, check=True)
        lines = sqlite.stdout.splitlines()
        check(lines[0:2] == ["2", "2"], f"events and dead letters in the store: {lines[0:2]}")
        check(any("411111******1111" in line for line in lines[2:4]),
              f"dead letters: {lines[2:4]}")
        check(any("4111 11** **** 1111" in line for line in lines[2:4]),
              f"dead letters: {lines[2:4]}")
        check_no_full_number(sqlite.stdout, "the store (sqlite3 .dump)")
        for path in sorted(state.iterdir()):
            if path.name.startswith("store.sqlite"):
                check_no_full_number(path.read_bytes().decode("latin-1"), path.name)
        check_no_full_number(log_path.read_text(errors="replace"), "the collector log")
    except Exception:
        path = folder / "collector.log"
        if path.exists():
            print("---- collector.log\n" + path.read_text(errors="replace")[-4000:], file=sys.stderr)
        raise
    finally:
        if collector is not None and collector.poll() is None:
            collector.send_signal(signal.SIGTERM)
            collector.wait(timeout=30)
        if not os.environ.get("WEBTRAP_KEEP_TEST_DIRS"):
            shutil.rmtree(folder, ignore_errors=True)
    print("collector card masking: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
