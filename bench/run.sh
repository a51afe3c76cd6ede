#!/usr/bin/env bash
# Runs the probe benchmark against nginx with ModSecurity and CRS, prints the
# table and rewrites docs/benchmarks.md. Bounded: 21 runs of --duration
# seconds (15 by default) plus start, warm-up and drain time, about 12
# minutes in all. Needs 2 CPUs, nginx, libnginx-mod-http-modsecurity,
# modsecurity-crs and wrk; run as root so that nginx can switch users.
#
# Usage: bench/run.sh [--duration S] [--workloads benign,attack,post]
#                     [--connections N] [--workers N] [--cache-entries N]
#                     [--probe-preload LIBRARY] [--no-docs]
#        bench/run.sh --render WORK_DIR/results.json
# WEBTRAP_BIN selects a prebuilt webtrap; otherwise it is built in
# build-bench/ as RelWithDebInfo.
set -euo pipefail

readonly SOURCE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly BUILD_DIR=${WEBTRAP_BENCH_BUILD_DIR:-$SOURCE_DIR/build-bench}
readonly ORIGINAL_ARGS="$*"
readonly WORK_DIR=${WEBTRAP_BENCH_WORK_DIR:-$(mktemp -d /tmp/webtrap-bench.XXXXXX)}
# The probe switches to `nobody` after binding, so the folders above its spool
# must be traversable by that user; mktemp makes them 0700.
chmod 755 "$WORK_DIR"

output=$SOURCE_DIR/docs/benchmarks.md
args=()
from_results=""
while (($#)); do
  case $1 in
    --no-docs) output="" ;;
    --render)
      (($# >= 2)) || { echo "error: $1 needs a results.json" >&2; exit 2; }
      from_results=$2
      shift
      ;;
    --duration | --workloads | --connections | --workers | --cache-entries | --probe-preload)
      (($# >= 2)) || { echo "error: $1 needs a value" >&2; exit 2; }
      args+=("$1" "$2")
      shift
      ;;
    *) echo "error: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

if [[ -n $from_results ]]; then
  # Rewrites docs/benchmarks.md from an earlier run, with the current
  # bench/analysis.md, without measuring again.
  exec python3 "$SOURCE_DIR/bench/bench.py" --from-results "$from_results" \
    --output "$output" --notes "$SOURCE_DIR/bench/analysis.md"
fi

if (($(nproc) < 2)); then
  echo "error: the benchmark pins servers to CPU 0 and load to CPU 1; this machine has $(nproc) CPU" >&2
  exit 1
fi
for tool in wrk nginx taskset cmake ninja python3; do
  if ! command -v "$tool" >/dev/null; then
    echo "error: $tool not found; install it (scripts/install-deps.sh)" >&2
    exit 1
  fi
done

webtrap=${WEBTRAP_BIN:-}
if [[ -z $webtrap ]]; then
  # The build and the personas/ and rules/ copy that bench.py takes at its
  # start come from the same tree, so edit neither during a run.
  cmake -S "$SOURCE_DIR" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  ninja -C "$BUILD_DIR" webtrap >/dev/null
  webtrap=$BUILD_DIR/webtrap
fi
cmake -S "$SOURCE_DIR/bench" -B "$BUILD_DIR/bench-tools" -G Ninja >/dev/null
ninja -C "$BUILD_DIR/bench-tools" >/dev/null

command_line="bench/run.sh${ORIGINAL_ARGS:+ $ORIGINAL_ARGS}"
echo "work folder: $WORK_DIR" >&2
python3 "$SOURCE_DIR/bench/bench.py" \
  --webtrap "$webtrap" \
  --loadgen "$BUILD_DIR/bench-tools/constant_rate_load" \
  --peer-script "$SOURCE_DIR/scripts/nginx-peer.sh" \
  --data-dir "$SOURCE_DIR" \
  --work-dir "$WORK_DIR" \
  ${output:+--output "$output"} \
  --notes "$SOURCE_DIR/bench/analysis.md" \
  --command "$command_line" \
  "${args[@]}"
