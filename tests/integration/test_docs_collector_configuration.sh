#!/usr/bin/env bash
# docs/collector-configuration.md must list exactly what
# `webtrap collector --config-reference` prints, so the documented keys never
# drift from the parser.
set -euo pipefail
docs="$WEBTRAP_SOURCE_DIR/docs/collector-configuration.md"
expected=$("$WEBTRAP_BIN" collector --config-reference)
actual=$(sed -n '/^| key | type |/,$p' "$docs")
if [[ "$expected" != "$actual" ]]; then
  echo "docs/collector-configuration.md is out of date; regenerate its table with:"
  echo "  webtrap collector --config-reference"
  diff <(echo "$expected") <(echo "$actual") || true
  exit 1
fi
echo "docs/collector-configuration.md matches --config-reference ($(echo "$expected" | wc -l) lines)"
