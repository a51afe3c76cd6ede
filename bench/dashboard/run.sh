#!/usr/bin/env bash
# Times every dashboard query on an index of 1,000,000 events (or $1).
# Runs the unit test DashboardTest.QueriesAreFastOnLargeIndex, which fills
# a fresh index through DashboardIndex::add (so the indexing rate is
# measured too), then prints one line per panel and filter and fails when
# a query takes a second or more.
#   bench/dashboard/run.sh [EVENTS] [BUILD_DIR]
set -euo pipefail
events=${1:-1000000}
build=${2:-build}
binary=$build/tests/dashboard_test
if [[ ! -x $binary ]]; then
  echo "bench/dashboard/run.sh: $binary not found; build it with" \
       "cmake --build $build --target dashboard_test" >&2
  exit 1
fi
WEBTRAP_DASHBOARD_EVENTS=$events "$binary" --gtest_filter='*QueriesAreFastOnLargeIndex*' |
  grep -E '^dashboard|OK|FAILED'
