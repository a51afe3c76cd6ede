#!/usr/bin/env bash
# Replays the CRS 3.3.4 regression tests against a probe and, in the same
# run, against nginx with ModSecurity in the same engine settings. Fails when
# the probe passes fewer tests than nginx, or when replay did not run every
# test. Writes both pass rates, a table per rule file and every test that
# fails on the probe with its reason to crs-regression-results.md in the
# current folder (build/tests under ctest).
#
# Engine settings the suite expects: DetectionOnly, paranoia level 4,
# tx.crs_validate_utf8_encoding=1, tx.arg_name_length=100, tx.arg_length=400,
# rule 910000 removed. The probe gets them from
# tests/crs-regression/crs-test-settings.conf, nginx from nginx-peer.sh's
# crs-test mode.
set -euo pipefail

: "${WEBTRAP_BIN:?set WEBTRAP_BIN to the webtrap executable}"
: "${WEBTRAP_SOURCE_DIR:?set WEBTRAP_SOURCE_DIR to the source tree}"
: "${WEBTRAP_SHARED_DIR:?set WEBTRAP_SHARED_DIR to the shared folder}"

readonly PEER="$WEBTRAP_SOURCE_DIR/scripts/nginx-peer.sh"
readonly SETTINGS="$WEBTRAP_SOURCE_DIR/tests/crs-regression/crs-test-settings.conf"
readonly REPORT_TOOL="$WEBTRAP_SOURCE_DIR/tests/integration/crs_regression_report.py"
readonly CRS_TESTS="$WEBTRAP_SHARED_DIR/crs-tests"
readonly RESULTS="$PWD/crs-regression-results.md"
readonly START_TIMEOUT_S=60

for needed in "$CRS_TESTS" "$SETTINGS" "$PEER"; do
  if [[ ! -e $needed ]]; then
    echo "FAIL: $needed not found" >&2
    exit 1
  fi
done
if ! command -v nginx >/dev/null; then
  echo "FAIL: nginx not found; run scripts/install-deps.sh --with-tests" >&2
  exit 1
fi

# nginx workers run as an unprivileged user when the test runs as root, so the
# work folder lives under /tmp, where every user can reach it.
WORK=$(mktemp -d /tmp/webtrap-crs-regression.XXXXXX)
chmod 755 "$WORK"
PROBE_PID=""
PEER_DIR=""

cleanup() {
  if [[ -n $PROBE_PID ]] && kill -0 "$PROBE_PID" 2>/dev/null; then
    kill -TERM "$PROBE_PID"
    wait "$PROBE_PID" 2>/dev/null || true
  fi
  if [[ -n $PEER_DIR ]]; then
    "$PEER" stop "$PEER_DIR" >/dev/null 2>&1 || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

start_probe() {
  mkdir -p "$WORK/probe"
  cat >"$WORK/probe/probe.yaml" <<EOF
sensor:
  id: crs-regression
modsecurity:
  paranoia_level: 4
  extra_rules:
    - $SETTINGS
EOF
  "$WEBTRAP_BIN" probe --config "$WORK/probe/probe.yaml" --listen 127.0.0.1:0 \
    --spool "$WORK/probe/spool" --state-dir "$WORK/probe/state" \
    --admin-listen 127.0.0.1:0 --ports-file "$WORK/probe/ports.json" \
    >"$WORK/probe/probe.log" 2>&1 &
  PROBE_PID=$!
  local deadline=$((SECONDS + START_TIMEOUT_S))
  until [[ -s $WORK/probe/ports.json ]]; do
    if ! kill -0 "$PROBE_PID" 2>/dev/null; then
      echo "FAIL: the probe exited at start:" >&2
      cat "$WORK/probe/probe.log" >&2
      exit 1
    fi
    if ((SECONDS >= deadline)); then
      echo "FAIL: the probe wrote no ports file within ${START_TIMEOUT_S}s" >&2
      exit 1
    fi
    sleep 0.1
  done
  PROBE_PORT=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["http-0"])' \
    "$WORK/probe/ports.json")
}

# Starts the nginx peer on the first free port of a few random tries.
start_peer() {
  local dir=$WORK/nginx attempt port
  for attempt in 1 2 3 4 5; do
    port=$((20000 + RANDOM % 40000))
    if port_open "$port"; then
      continue
    fi
    if "$PEER" start "$dir" "$port" 4 crs-test >"$WORK/peer-start.log" 2>&1; then
      PEER_DIR=$dir
      PEER_PORT=$port
      return 0
    fi
  done
  echo "FAIL: nginx peer did not start; last output:" >&2
  cat "$WORK/peer-start.log" >&2
  exit 1
}

count_cases() {
  grep -rhE '^[[:space:]-]*test_title:' --include='*.yaml' "$1" | wc -l
}

# Runs replay against one target and checks its summary line. Arguments:
# label, target URL, records path. Sets PASSED.
replay_target() {
  local label=$1 target=$2 records=$3
  local output="$WORK/$label.out" status=0
  "$WEBTRAP_BIN" replay --target "$target" --records "$records" \
    --json-report "$WORK/$label.json" "$CRS_TESTS" >"$output" 2>"$WORK/$label.err" || status=$?
  if ((status != 0 && status != 1)); then
    echo "FAIL: $label: webtrap replay exited with $status" >&2
    cat "$WORK/$label.err" >&2
    exit 1
  fi
  local summary
  summary=$(tail -n 1 "$output")
  if [[ ! $summary =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed(,\ ([0-9]+)\ skipped)?$ ]]; then
    echo "FAIL: $label: last line is not a summary: '$summary'" >&2
    exit 1
  fi
  local passed=${BASH_REMATCH[1]} failed=${BASH_REMATCH[2]} skipped=${BASH_REMATCH[4]:-0}
  local cases
  cases=$(count_cases "$CRS_TESTS")
  if ((passed + failed + skipped != cases)); then
    echo "FAIL: $label: $passed passed + $failed failed + $skipped skipped != $cases test cases" >&2
    exit 1
  fi
  echo "$label: $summary"
  PASSED=$passed
}

start_probe
replay_target probe "http://127.0.0.1:$PROBE_PORT" "$WORK/probe/spool"
probe_passed=$PASSED

start_peer
replay_target nginx "http://127.0.0.1:$PEER_PORT" "$PEER_DIR/audit.log"
nginx_passed=$PASSED

python3 "$REPORT_TOOL" "$WORK/probe.json" "$WORK/nginx.json" "$RESULTS" \
  "tests/integration/test_crs_regression.sh"

if ! grep -q '^FAIL ' "$WORK/probe.out"; then
  echo "probe: no failing test"
else
  echo "tests that fail on the probe:"
  sed "s|$CRS_TESTS/||" "$WORK/probe.out" | grep '^FAIL '
fi

kill -TERM "$PROBE_PID"
probe_status=0
wait "$PROBE_PID" || probe_status=$?
PROBE_PID=""
if ((probe_status != 0)); then
  echo "FAIL: the probe exited with $probe_status; log:" >&2
  tail -n 50 "$WORK/probe/probe.log" >&2
  exit 1
fi

if ((probe_passed < nginx_passed)); then
  echo "FAIL: the probe passed $probe_passed tests, nginx $nginx_passed" >&2
  exit 1
fi
echo "PASS: the probe passed $probe_passed tests, nginx $nginx_passed"
