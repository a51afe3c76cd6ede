#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (-fsanitize=fuzzer,address,undefined)
# and runs each one for a bounded time.
#
# Usage: fuzz/run.sh [SECONDS] [TARGET...]
#   SECONDS  run time per target, default 60
#   TARGET   fuzz target names, default every fuzz/*_fuzz.cpp
# Environment: WEBTRAP_FUZZ_BUILD sets the build folder (default build-fuzz).
# Each target keeps its corpus in fuzz/corpus-<target>/ (ignored by git), so
# later runs start from what earlier runs found. A target with a folder
# fuzz/seeds/<target>/ (in git) also runs every file in it first: seed inputs
# and the inputs of fixed crashes. Crash inputs are written to
# the build folder, and the script exits non-zero on the first failing target.
set -euo pipefail

seconds="${1:-60}"
shift || true
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [[ "$seconds" -eq 0 ]]; then
  echo "fuzz/run.sh: SECONDS must be a positive integer, got '$seconds'" >&2
  exit 2
fi

source_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build_dir="${WEBTRAP_FUZZ_BUILD:-$source_dir/build-fuzz}"

targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
  for file in "$source_dir"/fuzz/*_fuzz.cpp; do
    targets+=("$(basename "$file" .cpp)")
  done
fi

cmake -S "$source_dir" -B "$build_dir" -G Ninja \
  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DWEBTRAP_FUZZ=ON >/dev/null
ninja -C "$build_dir" "${targets[@]}"

for target in "${targets[@]}"; do
  corpus="$source_dir/fuzz/corpus-$target"
  mkdir -p "$corpus"
  # The audit decoder starts from real records: each fixture prefixed with
  # the byte that selects the format (0: auto), as the target reads it.
  if [[ $target == audit_decoder_fuzz ]]; then
    for fixture in "$source_dir"/tests/fixtures/modsecurity/*.json; do
      seed="$corpus/seed-$(basename "$fixture")"
      if [[ ! -e $seed ]]; then
        { printf '\x00'; cat "$fixture"; } >"$seed"
      fi
    done
  fi
  # libFuzzer reads every corpus folder but writes new inputs to the first.
  corpora=("$corpus")
  if [[ -d $source_dir/fuzz/seeds/$target ]]; then
    corpora+=("$source_dir/fuzz/seeds/$target")
  fi
  echo "== $target: ${seconds}s, corpus ${corpora[*]}"
  # libFuzzer exits 77 on a crash by default, which ctest reads as a skip.
  (cd "$build_dir" &&
    "$build_dir/fuzz/$target" -max_total_time="$seconds" -print_final_stats=1 \
      -timeout=10 -rss_limit_mb=2048 -error_exitcode=1 -timeout_exitcode=1 "${corpora[@]}")
done
