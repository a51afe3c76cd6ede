#!/usr/bin/env python3
"""OAT evaluation: labelled real-tool scenarios against probes, scored per OAT.

Runs tests/oat/evaluate.py: every scenario against its own probe on
loopback, the records through one collector, precision and recall per OAT
over sources. Fails when a scenario cannot run or fails, when a quiet
browsing source gets a behavioural tag, or when an OAT that a scenario
covers misses 0.9 precision or recall. `tests/oat/evaluate.py --write-doc
docs/oat-evaluation.md` runs the same and rewrites the results page.
"""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "oat"))

import evaluate  # noqa: E402

if __name__ == "__main__":
    sys.exit(evaluate.main([]))
