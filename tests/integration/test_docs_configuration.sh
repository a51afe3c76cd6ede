#!/usr/bin/env bash
# docs/configuration.md must list exactly what `webtrap probe --config-reference`
# prints, so the documented keys never drift from the parser.
set -euo pipefail
docs="$WEBTRAP_SOURCE_DIR/docs/configuration.md"
expected=$("$WEBTRAP_BIN" probe --config-reference)
actual=$(sed -n '/^| key | type |/,$p' "$docs")
if [[ "$expected" != "$actual" ]]; then
  echo "docs/configuration.md is out of date; regenerate its table with:"
  echo "  webtrap probe --config-reference"
  diff <(echo "$expected") <(echo "$actual") || true
  exit 1
fi
echo "docs/configuration.md matches --config-reference ($(echo "$expected" | wc -l) lines)"
