#!/usr/bin/env bash
# Configures and builds webtrap in build/ (Release with debug info).
# ccache (installed by scripts/install-deps.sh) keeps compiled objects, so
# a second clone on the same machine, or a return to an earlier commit,
# takes them from the cache instead of compiling them again. CCACHE_BASEDIR
# lets clones in different folders share the cache, and CCACHE_NOHASHDIR
# keeps ccache from hashing the build folder's path into objects with debug
# information. Their debug information then names the folder of the clone
# that compiled them first.
set -euo pipefail
cd "$(dirname "$0")/.."
launcher=()
if command -v ccache >/dev/null; then
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
  export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$PWD}"
  export CCACHE_NOHASHDIR="${CCACHE_NOHASHDIR:-1}"
fi
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "${launcher[@]}" >/dev/null
ninja -C build "$@"
