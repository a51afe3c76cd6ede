#!/usr/bin/env bash
# Installs what webtrap needs, builds it, and runs a probe and a collector on
# loopback with the built-in defaults. The probe's shipper sends each record
# to the collector, which keeps it in its embedded SQLite store. This terminal
# prints each record once it is stored. Ctrl-C stops both.
# --skip-build runs the existing build/webtrap without building it again
# (scripts/record-demo.sh uses it). The package check always runs, and it
# calls apt-get only when a package is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

skip_build=false
for option in "$@"; do
  case $option in
    --skip-build) skip_build=true ;;
    *) echo "run.sh: unknown option $option; the only option is --skip-build" >&2; exit 2 ;;
  esac
done

./scripts/install-deps.sh
if $skip_build; then
  if [[ ! -x build/webtrap ]]; then
    echo "run.sh: build/webtrap not found; run without --skip-build to build it" >&2
    exit 1
  fi
  echo "run.sh: --skip-build: using the existing build/webtrap," \
    "built $(date -u -r build/webtrap '+%Y-%m-%d %H:%M UTC')"
else
  ./scripts/build.sh webtrap
fi

mkdir -p var/spool var/state var/collector var/log
webtrap=./build/webtrap

# A new token at every start: enrolling again replaces the old one, so the
# token file and the collector's store can never disagree.
"$webtrap" collector --config etc/collector.yaml enrol --sensor-id demo-probe --group lab \
  --token-file var/state/shipper.token >/dev/null 2>>var/log/collector.log

# The probe's own configuration plus the shipper section that points at the
# collector on loopback.
{
  cat etc/probe.yaml
  printf '\nshipper:\n  url: http://127.0.0.1:7380\n  token_file: var/state/shipper.token\n'
} >var/state/probe-with-shipper.yaml

collector_pid=""
probe_pid=""
tail_pid=""
# Stops the probe first and waits for it, so its shipper can send the last
# records while the collector still runs; then the collector and the tail.
stop_all() {
  trap - INT TERM HUP EXIT
  for pid in "$probe_pid" "$collector_pid" "$tail_pid"; do
    if [[ -n "$pid" ]]; then
      kill -TERM "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
  echo "webtrap: stopped; logs in var/log/, records in var/collector/store.sqlite"
}
trap stop_all INT TERM HUP EXIT

rm -f var/collector/ports.json
# setsid gives the collector and the probe sessions of their own, because a
# Ctrl-C in the terminal sends SIGINT to the whole foreground process group.
# Without it, the collector and the probe's shipper would stop at once and
# leave the last records in the spool. Now only this script gets the SIGINT,
# and stop_all stops the probe before the collector.
setsid "$webtrap" collector --config etc/collector.yaml --ports-file var/collector/ports.json \
  >>var/log/collector.log 2>&1 &
collector_pid=$!
for _ in $(seq 100); do
  [[ -s var/collector/ports.json ]] && break
  if ! kill -0 "$collector_pid" 2>/dev/null; then
    echo "webtrap: the collector did not start; see var/log/collector.log" >&2
    tail -n 20 var/log/collector.log >&2
    exit 1
  fi
  sleep 0.1
done

setsid "$webtrap" probe --config var/state/probe-with-shipper.yaml >>var/log/probe.log 2>&1 &
probe_pid=$!

cat <<TEXT
webtrap: a probe and a collector are running on loopback (Ctrl-C stops both)
  web:       http://127.0.0.1:8080/   and http://[::1]:8080/
  tls:       https://127.0.0.1:8443/  (self-signed certificate)
  bait:      http://127.0.0.1:8888/   (a port no real user visits)
  probe:     metrics http://127.0.0.1:9101/metrics, log var/log/probe.log
  collector: metrics http://127.0.0.1:9102/metrics, health http://127.0.0.1:9102/healthz,
             log var/log/collector.log, store var/collector/store.sqlite
  dashboard: http://127.0.0.1:9102/dashboard/ once etc/collector.yaml sets
             admin.token and dashboard.enabled: true (docs/dashboard.md)
Each request the probe receives appears below once the collector has stored it:
TEXT
"$webtrap" collector --config etc/collector.yaml tail --follow --last 0 &
tail_pid=$!
# Either one stopping ends the demo; the trap stops the other.
wait -n "$collector_pid" "$probe_pid" || true
