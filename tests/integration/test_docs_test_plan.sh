#!/usr/bin/env bash
# docs/test-plan.md must name every ctest test, so the plan cannot fall
# behind the tests:
# - every test that ctest lists for this build (`ctest -N` in the folder of
#   WEBTRAP_BIN), and every test that tests/CMakeLists.txt makes from the
#   files in tests/unit and tests/integration, appears by its ctest name
#   (unit.NAME or integration.NAME) in docs/test-plan.md;
# - every ctest name, test file and test case (file:Suite.Name or
#   file.py:function) the plan names exists, so a renamed or removed test
#   shows up here too.
set -uo pipefail

root=${WEBTRAP_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
plan=$root/docs/test-plan.md
passed=0
failed=0

pass() {
  passed=$((passed + 1))
}

fail() {
  echo "FAIL: $*"
  failed=$((failed + 1))
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
names=$work/names

# Test names from the files, the way tests/CMakeLists.txt makes them.
for source in "$root"/tests/unit/*_test.cpp; do
  echo "unit.$(basename "$source" .cpp)"
done >"$names"
for script in "$root"/tests/integration/test_*.py "$root"/tests/integration/test_*.sh; do
  name=$(basename "$script")
  echo "integration.${name%.*}"
done >>"$names"

# Test names that ctest has registered in this build, which also catches a
# test added to CMake by another rule than the globs above.
build=""
if [[ -n ${WEBTRAP_BIN:-} ]]; then
  build=$(dirname "$WEBTRAP_BIN")
fi
if [[ -n $build && -f $build/CTestTestfile.cmake ]]; then
  if ctest --test-dir "$build" -N >"$work/ctest.txt" 2>&1; then
    sed -n 's/^ *Test *#[0-9]*: *\([^ ]*\).*/\1/p' "$work/ctest.txt" >>"$names"
    if grep -q "^Total Tests: [1-9]" "$work/ctest.txt"; then
      pass
    else
      fail "ctest -N in $build listed no test"
    fi
  else
    fail "ctest -N in $build failed:"
    cat "$work/ctest.txt"
  fi
else
  echo "note: WEBTRAP_BIN is not set or its folder is not a build folder," \
       "so only the test files were listed"
fi
sort -u -o "$names" "$names"
if [[ $(wc -l <"$names") -lt 50 ]]; then
  fail "found only $(wc -l <"$names") test names; the listing in this test may be broken"
fi

# 1. Every test is in the plan, by its ctest name as a whole word.
while IFS= read -r name; do
  if grep -qw -- "$name" "$plan"; then
    pass
  else
    fail "docs/test-plan.md does not name the ctest test $name; add a case row for it" \
         "and a line in the test index at the end of the page"
  fi
done <"$names"

# 2. Every ctest name in the plan is a real test.
while IFS= read -r name; do
  if grep -qxF -- "$name" "$names"; then
    pass
  else
    fail "docs/test-plan.md names $name, which is not a ctest test"
  fi
done < <(grep -oP '(?<![\w.])(unit|integration)\.[a-z0-9_]+' "$plan" | sort -u)

# 3. Every test file the plan names exists under tests/, bench/ or fuzz/.
while IFS= read -r file; do
  if [[ -n $(find -L "$root/tests" "$root/bench" "$root/fuzz" -name "$file" -print -quit) ]]; then
    pass
  else
    fail "docs/test-plan.md names $file, which is not in tests/, bench/ or fuzz/"
  fi
done < <(grep -oP '(?<![\w/.-])([a-z0-9_]+_test\.cpp|test_[a-z0-9_]+\.(py|sh))' "$plan" | sort -u)

# 4. Every test case the plan names in a file:name reference exists: a
# GoogleTest `file_test.cpp:Suite.Name` (or `Suite.*`, or a name with a *
# at its end) and a Python `file.py:function`. A reference that starts with
# a colon continues the file named before it in the same table row.
if python3 - "$plan" "$root/tests" >"$work/names.log" 2>&1 <<'PYTHON'; then
import pathlib
import re
import sys

plan, tests = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
file_pattern = re.compile(r"([\w]+(?:_test\.cpp|\.py|\.sh))(?::(.+))?$")
checked = 0
problems = []
for line in plan.read_text().splitlines():
    if not line.startswith("|"):
        continue
    current = None
    for token in re.findall(r"`([^`]+)`", line):
        match = file_pattern.match(token)
        if match:
            current, name = match.group(1), match.group(2)
        elif token.startswith(":") and current:
            name = token[1:]
        else:
            continue
        if name is None:
            continue
        paths = list(tests.rglob(current))
        if not paths:
            problems.append(f"{current} (named with {name}) is not in tests/")
            continue
        text = paths[0].read_text()
        checked += 1
        if current.endswith(".cpp"):
            suite, _, test = name.rpartition(".")
            suite_pattern = re.escape(suite) if suite else r"\w+"
            test_pattern = r"\w+" if test == "*" else re.escape(test).replace(r"\*", r"\w*")
            pattern = rf"TEST(?:_F|_P)?\({suite_pattern},\s*{test_pattern}\b"
        else:
            pattern = rf"def {re.escape(name)}\b"
        if not re.search(pattern, text):
            problems.append(f"{current} has no test {name}")
for problem in problems:
    print(f"FAIL: docs/test-plan.md names a missing test case: {problem}")
print(f"checked {checked} test case references")
sys.exit(1 if problems or checked < 100 else 0)
PYTHON
  pass
  cat "$work/names.log"
else
  fail "test case references in docs/test-plan.md:"
  cat "$work/names.log"
fi

echo "test_docs_test_plan: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
