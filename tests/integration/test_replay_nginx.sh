#!/usr/bin/env bash
# Replays the CRS 3.3.4 regression tests and the exploit corpus against nginx
# with libnginx-mod-http-modsecurity, and checks that `webtrap replay` ran
# every case and that nginx passes at least a measured floor of them.
#
# The floors are 90% of what nginx 1.22.1 with libmodsecurity 3.0.9 and CRS
# 3.3.4 passed on Debian 12 when this test was written. It passed 1467 of
# 1499 enabled CRS cases at paranoia level 4 in crs-test mode, and 8 of 9
# corpus cases at paranoia level 1.
set -euo pipefail

: "${WEBTRAP_BIN:?set WEBTRAP_BIN to the webtrap executable}"
: "${WEBTRAP_SOURCE_DIR:?set WEBTRAP_SOURCE_DIR to the source tree}"
: "${WEBTRAP_SHARED_DIR:?set WEBTRAP_SHARED_DIR to the shared folder}"

readonly PEER="$WEBTRAP_SOURCE_DIR/scripts/nginx-peer.sh"
readonly CRS_TESTS="$WEBTRAP_SHARED_DIR/crs-tests"
readonly CORPUS="$WEBTRAP_SHARED_DIR/corpus"
readonly CRS_FLOOR=1320
readonly CORPUS_FLOOR=7

for needed in nginx "$CRS_TESTS" "$CORPUS"; do
  if ! command -v "$needed" >/dev/null && [[ ! -e $needed ]]; then
    echo "FAIL: $needed not found; run scripts/install-deps.sh and check the shared folder" >&2
    exit 1
  fi
done

# nginx workers run as an unprivileged user when the test runs as root, so the
# peer folder lives under /tmp, where every user can reach it.
WORK=$(mktemp -d /tmp/webtrap-replay-nginx.XXXXXX)
chmod 755 "$WORK"
PEER_DIR=""

cleanup() {
  if [[ -n $PEER_DIR ]]; then
    "$PEER" stop "$PEER_DIR" >/dev/null 2>&1 || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Starts the peer in $1 with the remaining arguments after DIR PORT, on the
# first free port of a few random tries.
start_peer() {
  local dir=$1
  shift
  local attempt port
  for attempt in 1 2 3 4 5; do
    port=$((20000 + RANDOM % 40000))
    if port_open "$port"; then
      continue
    fi
    if "$PEER" start "$dir" "$port" "$@" >"$WORK/peer-start.log" 2>&1; then
      PEER_DIR=$dir
      PEER_PORT=$port
      return 0
    fi
  done
  echo "FAIL: nginx peer did not start; last output:" >&2
  cat "$WORK/peer-start.log" >&2
  exit 1
}

stop_peer() {
  "$PEER" stop "$PEER_DIR"
  PEER_DIR=""
}

# Counts test cases in ftw files: one `test_title` key per case.
count_cases() {
  grep -rhE '^[[:space:]-]*test_title:' --include='*.yaml' "$1" | wc -l
}

# Runs replay and checks its summary line. Arguments: label, folder, floor.
replay_and_check() {
  local label=$1 folder=$2 floor=$3
  local output="$WORK/$label.out" status=0
  "$WEBTRAP_BIN" replay --target "http://127.0.0.1:$PEER_PORT" --records "$PEER_DIR/audit.log" \
    --json-report "$WORK/$label.json" "$folder" >"$output" 2>"$WORK/$label.err" || status=$?
  if ((status != 0 && status != 1)); then
    echo "FAIL: $label: webtrap replay exited with $status" >&2
    cat "$WORK/$label.err" >&2
    exit 1
  fi

  local summary
  summary=$(tail -n 1 "$output")
  echo "$label: $summary"
  if [[ ! $summary =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed(,\ ([0-9]+)\ skipped)?$ ]]; then
    echo "FAIL: $label: last line is not a summary: '$summary'" >&2
    exit 1
  fi
  local passed=${BASH_REMATCH[1]} failed=${BASH_REMATCH[2]} skipped=${BASH_REMATCH[4]:-0}
  local cases
  cases=$(count_cases "$folder")
  if ((passed + failed + skipped != cases)); then
    echo "FAIL: $label: $passed passed + $failed failed + $skipped skipped != $cases test cases" >&2
    exit 1
  fi
  if (((status == 0) != (failed == 0))); then
    echo "FAIL: $label: exit status $status does not match $failed failed" >&2
    exit 1
  fi
  local fail_lines
  fail_lines=$(grep -c '^FAIL ' "$output" || true)
  if ((fail_lines != failed)); then
    echo "FAIL: $label: $fail_lines FAIL lines for $failed failed tests" >&2
    exit 1
  fi
  if ((passed < floor)); then
    echo "FAIL: $label: $passed passed, below the floor of $floor; failures:" >&2
    grep '^FAIL ' "$output" | head -n 50 >&2
    exit 1
  fi
  echo "$label: pass rate $((100 * passed / (passed + failed)))% ($passed of $((passed + failed)) enabled cases)"
}

start_peer "$WORK/crs" 4 crs-test
replay_and_check crs-tests "$CRS_TESTS" "$CRS_FLOOR"
stop_peer

start_peer "$WORK/corpus" 1
replay_and_check corpus "$CORPUS" "$CORPUS_FLOOR"
stop_peer

echo "PASS: replay against nginx"
