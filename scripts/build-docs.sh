#!/usr/bin/env bash
# Renders every Graphviz source in docs/diagrams/*.dot to SVG.
#
#   scripts/build-docs.sh [OUTPUT_DIR]     (default: docs/diagrams)
#
# `cmake --build build --target docs` runs this script with docs/diagrams,
# so the SVG files next to their sources are rendered again; they are
# committed so that the pages show them without a build.
# tests/integration/test_docs_architecture.sh fails when a committed SVG
# differs from a fresh render by the same Graphviz version.
# A render fails on a syntax error (dot exits non-zero) and also on any
# warning dot prints, because a warning means an attribute or a node was not
# drawn as written.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
output=${1:-$root/docs/diagrams}

if ! command -v dot >/dev/null; then
  echo "build-docs.sh: the dot command is missing; install Debian's graphviz package" \
       "(scripts/install-deps.sh --with-tests)" >&2
  exit 1
fi

shopt -s nullglob
sources=("$root"/docs/diagrams/*.dot)
if [[ ${#sources[@]} -eq 0 ]]; then
  echo "build-docs.sh: no .dot files found in $root/docs/diagrams" >&2
  exit 1
fi

mkdir -p "$output"
failed=0
for source in "${sources[@]}"; do
  name=$(basename "$source" .dot)
  messages=$(dot -Tsvg "$source" -o "$output/$name.svg" 2>&1) || {
    echo "build-docs.sh: dot failed on $source:" >&2
    echo "$messages" >&2
    failed=1
    continue
  }
  if [[ -n $messages ]]; then
    echo "build-docs.sh: dot printed warnings for $source:" >&2
    echo "$messages" >&2
    failed=1
    continue
  fi
  echo "build-docs.sh: rendered $output/$name.svg"
done
exit $failed
