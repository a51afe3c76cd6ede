#!/usr/bin/env bash
# Runs the collector benchmark: the same generated records through rsyslog
# (mmjsonparse), syslog-ng (json-parser) and `webtrap collector` (SQLite store
# with synchronous=full, Elasticsearch output to tests/tools/es_double.py),
# prints the table and rewrites the collector section of docs/benchmarks.md.
# Bounded: one run per system, each stopped after --timeout seconds (300 by
# default). Needs rsyslog and syslog-ng unpacked by
# `scripts/install-deps.sh --with-bench`. Loopback only.
#
# Usage: bench/collector/run.sh [--count N] [--senders N] [--batch-records N]
#                               [--systems rsyslog,rsyslog-fsync,syslog-ng,syslog-ng-fsync,webtrap,webtrap-file]
#                               [--timeout S] [--fsync-timeout S] [--es-option 'KEY: VALUE'] [--profile]
#                               [--store-synchronous full|normal|off] [--no-elasticsearch]
#                               [--no-docs]
#        bench/collector/run.sh --render WORK_DIR/results.json
# WEBTRAP_BIN selects a prebuilt webtrap; otherwise it is built in
# build-bench/ as RelWithDebInfo. WEBTRAP_BENCH_WORK_DIR chooses the work
# folder, which keeps the generated records for the next run.
set -euo pipefail

readonly SOURCE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
readonly BUILD_DIR=${WEBTRAP_BENCH_BUILD_DIR:-$SOURCE_DIR/build-bench}
readonly ORIGINAL_ARGS="$*"
readonly WORK_DIR=${WEBTRAP_BENCH_WORK_DIR:-/tmp/webtrap-collector-bench}

output=$SOURCE_DIR/docs/benchmarks.md
systems=rsyslog,rsyslog-fsync,syslog-ng,syslog-ng-fsync,webtrap,webtrap-file
from_results=""
args=()
while (($#)); do
  case $1 in
    --no-docs) output="" ;;
    --render)
      (($# >= 2)) || { echo "error: $1 needs a results.json" >&2; exit 2; }
      from_results=$2
      shift
      ;;
    --profile | --no-elasticsearch) args+=("$1") ;;
    --systems)
      (($# >= 2)) || { echo "error: $1 needs a value" >&2; exit 2; }
      systems=$2
      shift
      ;;
    --count | --senders | --batch-records | --timeout | --fsync-timeout | --es-option | --seed | \
      --gzip-level | --store-synchronous)
      (($# >= 2)) || { echo "error: $1 needs a value" >&2; exit 2; }
      args+=("$1" "$2")
      shift
      ;;
    *) echo "error: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

if [[ -n $from_results ]]; then
  # Rewrites the collector section from an earlier run, with the current
  # bench/analysis.md, without measuring again.
  exec python3 "$SOURCE_DIR/bench/collector/collector_bench.py" --from-results "$from_results" \
    ${output:+--output "$output"} --notes "$SOURCE_DIR/bench/analysis.md" \
    --command "bench/collector/run.sh $ORIGINAL_ARGS"
fi

if [[ $systems == *rsyslog* && ! -x /usr/sbin/rsyslogd ]]; then
  echo "error: /usr/sbin/rsyslogd not found; run scripts/install-deps.sh --with-bench" >&2
  exit 1
fi
if [[ $systems == *syslog-ng* && ! -x $SOURCE_DIR/bench/.peers/syslog-ng/usr/sbin/syslog-ng ]]; then
  echo "error: bench/.peers/syslog-ng not found; run scripts/install-deps.sh --with-bench" >&2
  exit 1
fi

webtrap=${WEBTRAP_BIN:-}
if [[ $systems == *webtrap* && -z $webtrap ]]; then
  cmake -S "$SOURCE_DIR" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  ninja -C "$BUILD_DIR" webtrap >/dev/null
  webtrap=$BUILD_DIR/webtrap
fi

mkdir -p "$WORK_DIR"
echo "work folder: $WORK_DIR" >&2
python3 "$SOURCE_DIR/bench/collector/collector_bench.py" \
  --work-dir "$WORK_DIR" \
  --systems "$systems" \
  ${webtrap:+--webtrap "$webtrap"} \
  ${output:+--output "$output"} \
  --notes "$SOURCE_DIR/bench/analysis.md" \
  --command "bench/collector/run.sh${ORIGINAL_ARGS:+ $ORIGINAL_ARGS}" \
  "${args[@]}"
