#!/usr/bin/env bash
# Runs every libFuzzer target in fuzz/ (request capture, record serialization,
# audit record decoding, the probe and collector configuration loaders) for a
# bounded time with AddressSanitizer and UBSan, starting with the inputs in
# fuzz/seeds/<target>/. A crash or sanitizer report makes libFuzzer exit
# non-zero, which fails this test.
set -euo pipefail
seconds="${WEBTRAP_FUZZ_SECONDS:-20}"
export WEBTRAP_FUZZ_BUILD="${WEBTRAP_FUZZ_BUILD:-$(dirname "$WEBTRAP_BIN")/fuzz-build}"
"$WEBTRAP_SOURCE_DIR/fuzz/run.sh" "$seconds"
echo "fuzz smoke: every target ran ${seconds}s without a crash"
