#!/usr/bin/env python3
"""Retention that removes events while the Elasticsearch output sends them.

The collector stores 3,000 probe records in gzip batches of 100 under
`store.retention.max_size: 2MiB` with a pass every 100 ms. The
Elasticsearch test double responds to each `_bulk` request after 300 ms, so
retention removes most events while the output still has some in flight.
The test checks that:

- every document the double received is byte for byte the document that
  the same `_bulk` request framed (no damaged or empty document), and the
  output dead-lettered nothing;
- delivered plus `webtrap_collector_retention_removed_undelivered_total`
  is at most the stored events: retention does not count as undelivered
  the events that the output had read before the pass and then delivered
  (Store::beginInFlight and Store::endInFlight).
"""

import gzip
import json
import os
import subprocess
import sys
import time
import unittest
import urllib.request

from probe_harness import (BIN, SOURCE_DIR, CollectorRun, collector_ports, enrol_sensor,
                           metrics_at, wait_for)

MAKE_RECORDS = SOURCE_DIR / "bench" / "collector" / "make_records.py"
ES_DOUBLE = SOURCE_DIR / "tests" / "tools" / "es_double.py"
RECORDS = 3000
PER_BATCH = 100



class RetentionInFlightTest(unittest.TestCase):
    def test_removed_undelivered_excludes_delivered(self):
        with CollectorRun("webtrap-retention-in-flight-") as run:
            folder = run.folder
            records_path = folder / "records.ndjson"
            subprocess.run([sys.executable, str(MAKE_RECORDS), "--count", str(RECORDS),
                            "--seed", "5", "--probe-output", str(records_path)],
                           check=True, capture_output=True, timeout=120)
            lines = [line for line in records_path.read_bytes().splitlines() if line]

            port_file = folder / "es.port"
            with open(folder / "es.log", "wb") as es_log:
                double = subprocess.Popen(
                    [sys.executable, str(ES_DOUBLE), "--port-file", str(port_file),
                     "--delay-ms", "300", "--record", "1000"],
                    stdout=es_log, stderr=subprocess.STDOUT)
            try:
                wait_for(port_file.exists, 20, "the test double's port file")
                es_port = int(port_file.read_text())
                config = folder / "collector.yaml"
                config.write_text(f"""listen: 127.0.0.1:0
admin: {{listen: 127.0.0.1:0}}
state_dir: {folder / 'state'}
store:
  retention:
    max_size: 2MiB
    interval: 100ms
outputs:
  elasticsearch:
    url: [http://127.0.0.1:{es_port}]
    flush_interval: 50ms
    batch_max_events: 50
""")
                token, _ = enrol_sensor(config, "sensor-1")
                collector = run.start(config)
                ports = collector_ports(collector, folder)
                for start in range(0, len(lines), PER_BATCH):
                    body = b"".join(line + b"\n" for line in lines[start:start + PER_BATCH])
                    request = urllib.request.Request(
                        f"http://127.0.0.1:{ports['ingest']}/v1/records",
                        data=gzip.compress(body), method="POST")
                    request.add_header("Content-Type", "application/x-ndjson")
                    request.add_header("Content-Encoding", "gzip")
                    request.add_header("Authorization", f"Bearer {token}")
                    ack = json.loads(urllib.request.urlopen(request, timeout=60).read())
                    self.assertEqual(ack.get("stored"), PER_BATCH, ack)

                depth = 'webtrap_collector_output_queue_depth{output="elasticsearch"}'
                wait_for(lambda: metrics_at(ports["admin"]).get(depth) == 0, 60,
                         "an empty Elasticsearch queue")
                time.sleep(1)
                metrics = metrics_at(ports["admin"])
                recorded = json.loads(urllib.request.urlopen(
                    f"http://127.0.0.1:{es_port}/_double/requests", timeout=10).read())
            finally:
                double.terminate()
                double.wait(timeout=30)

        for entry in recorded["requests"]:
            if entry["path"] != "/_bulk":
                continue
            body_lines = entry["request_body"].split("\n")
            for document in body_lines[1::2]:
                if document:
                    self.assertIn('"original":"', document)
                    json.loads(document)
        delivered = metrics['webtrap_collector_output_delivered_total{output="elasticsearch"}']
        removed = metrics[
            'webtrap_collector_retention_removed_undelivered_total{output="elasticsearch"}']
        dead = metrics['webtrap_collector_output_dead_lettered_total{output="elasticsearch"}']
        self.assertEqual(dead, 0)
        self.assertGreater(removed, 0, "retention removed nothing; the test needs a smaller cap")
        self.assertLessEqual(delivered + removed, RECORDS,
                             f"{delivered:.0f} delivered and {removed:.0f} removed undelivered "
                             f"of {RECORDS} stored")


if __name__ == "__main__":
    if not MAKE_RECORDS.exists():
        print("skipped: bench/collector/make_records.py is missing")
        sys.exit(77)
    unittest.main()
