#!/usr/bin/env bash
# Installs what webtrap needs, builds it, and runs a probe on loopback with
# the built-in defaults. Records go to var/spool/; stop with Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
./scripts/build.sh webtrap

mkdir -p var/spool var/state
cat <<TEXT
webtrap: starting a probe on loopback (Ctrl-C stops it)
  web:     http://127.0.0.1:8080/   and http://[::1]:8080/
  tls:     https://127.0.0.1:8443/  (self-signed certificate)
  bait:    http://127.0.0.1:8888/   (a port no real user visits)
  metrics: http://127.0.0.1:9101/metrics
  records: var/spool/segment-*.ndjson (one new segment per start; see README)
TEXT
exec ./build/webtrap probe --config etc/probe.yaml "$@"
