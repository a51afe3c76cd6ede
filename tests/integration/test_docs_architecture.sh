#!/usr/bin/env bash
# Checks docs/architecture.md and its Graphviz diagrams:
# - scripts/build-docs.sh renders every docs/diagrams/*.dot to SVG without an
#   error or a warning from dot;
# - architecture.md names every diagram source;
# - every repository path named in architecture.md or in a .dot file
#   (src/..., tests/..., deploy/... and the other top-level folders) exists,
#   so that a renamed file shows up here instead of as a stale box.
# Skipped (exit 77) when the dot command is missing.
set -uo pipefail

root=${WEBTRAP_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
doc=$root/docs/architecture.md
passed=0
failed=0

pass() {
  passed=$((passed + 1))
}

fail() {
  echo "FAIL: $*"
  failed=$((failed + 1))
}

if ! command -v dot >/dev/null; then
  echo "SKIP: the dot command is missing; install Debian's graphviz package"
  exit 77
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# 1. Every diagram renders.
if "$root/scripts/build-docs.sh" "$work/svg" >"$work/render.log" 2>&1; then
  pass
else
  fail "scripts/build-docs.sh failed:"
  cat "$work/render.log"
fi
shopt -s nullglob
diagrams=("$root"/docs/diagrams/*.dot)
if [[ ${#diagrams[@]} -lt 4 ]]; then
  fail "expected at least 4 diagrams in docs/diagrams, found ${#diagrams[@]}"
fi
for source in "${diagrams[@]}"; do
  name=$(basename "$source" .dot)
  if grep -q "<svg" "$work/svg/$name.svg" 2>/dev/null; then
    pass
  else
    fail "docs/diagrams/$name.dot gave no SVG in $work/svg/$name.svg"
  fi
  if grep -qF "docs/diagrams/$name.dot" "$doc"; then
    pass
  else
    fail "docs/architecture.md does not name docs/diagrams/$name.dot"
  fi
done

# 2. Every repository path named in the page and in the diagrams exists.
# A path starts at a top-level folder of the repository and is not part of
# a longer path (so /etc/modsecurity/... and /usr/share/... are skipped).
# Graphviz labels write line breaks as \n, which is replaced by a space first.
folders='src|tests|docs|deploy|scripts|bench|data|etc|personas|rules|web|fuzz|cmake'
extract_paths() {
  sed 's/\\n/ /g' "$1" |
    grep -oP "(?<![\\w/.\$-])(${folders})/[\\w.*/-]*[\\w*]" |
    sort -u
}
checked=0
for file in "$doc" "${diagrams[@]}"; do
  while IFS= read -r path; do
    checked=$((checked + 1))
    # A name with * is a glob and must match at least one file.
    if compgen -G "$root/$path" >/dev/null; then
      pass
    else
      fail "${file#"$root"/} names $path, which does not exist in the repository"
    fi
  done < <(extract_paths "$file")
done
if [[ $checked -lt 40 ]]; then
  fail "found only $checked repository paths in architecture.md and the diagrams;" \
       "the path pattern in this test may be broken"
fi

echo "test_docs_architecture: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
