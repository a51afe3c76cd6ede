#!/usr/bin/env bash
# Times every dashboard query on an index of 1,000,000 events (or $1), next
# to a peer measured in the same run, and writes the figures into
# docs/benchmarks.md (section "Dashboard queries").
#
# Runs the unit test DashboardTest.QueriesAreFastOnLargeIndex, which fills a
# fresh index through DashboardIndex::add (so the indexing rate is measured
# too) and times every panel with five filters. With WEBTRAP_DASHBOARD_PEER=1
# the test also stores the same events in a collector store and times each
# panel's question as plain SQL with SQLite's JSON functions over the stored
# documents: what a user of the store would run with the sqlite3 tool.
# The test fails when a dashboard query takes a second or more; the figures
# are written either way.
#   bench/dashboard/run.sh [EVENTS] [BUILD_DIR]
set -euo pipefail
events=${1:-1000000}
build=${2:-build}
binary=$build/tests/dashboard_test
here=$(cd "$(dirname "$0")" && pwd)
docs=$here/../../docs/benchmarks.md
if [[ ! -x $binary ]]; then
  echo "bench/dashboard/run.sh: $binary not found; build it with" \
       "cmake --build $build --target dashboard_test" >&2
  exit 1
fi
output=$(mktemp)
trap 'rm -f "$output"' EXIT
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
status=0
WEBTRAP_DASHBOARD_EVENTS=$events WEBTRAP_DASHBOARD_PEER=1 \
  "$binary" --gtest_filter='*QueriesAreFastOnLargeIndex*' >"$output" 2>&1 || status=$?
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
grep -E '^dashboard|OK \]|FAILED' "$output" || true
python3 "$here/write_results.py" --results "$output" --docs "$docs" --events "$events" \
  --load-before "$load_before" --load-after "$load_after" --status "$status"
exit "$status"
