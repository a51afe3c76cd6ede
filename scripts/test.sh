#!/usr/bin/env bash
# Installs what webtrap needs, builds it, and runs every test with ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh --with-tests --with-containers --with-cloud-init
./scripts/build.sh
ctest --test-dir build --output-on-failure --timeout 900 "$@"
