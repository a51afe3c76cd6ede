#!/usr/bin/env bash
# Installs what webtrap needs, builds it, and runs every test with ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh --with-tests --with-containers --with-cloud-init
./scripts/build.sh
# ctest runs two tests at a time, for the 2 CPUs the suite is sized for.
# Tests that measure wall-clock time or need the machine to themselves
# carry the RUN_SERIAL property (tests/CMakeLists.txt) and run alone.
ctest --test-dir build --output-on-failure --timeout 900 -j2 "$@"
