#!/usr/bin/env bash
# Installs every Debian 12 package that webtrap needs to build, run and test.
# Run as root on a fresh machine; running it again is cheap.
set -euo pipefail

build_packages=(
  build-essential cmake ninja-build pkg-config git ca-certificates
  libmodsecurity-dev modsecurity-crs
  libboost1.81-dev libssl-dev libcurl4-openssl-dev libsimdjson-dev
  libsqlite3-dev libmaxminddb-dev libyaml-cpp-dev libcli11-dev
  libspdlog-dev libfmt-dev zlib1g-dev libjemalloc-dev
  libdeflate-dev  # whole-buffer gzip decompression of collector request bodies
  libhowardhinnant-date-dev  # IANA time zones for audit log time stamps
  libgtest-dev libgmock-dev libbenchmark-dev
  clang libclang-rt-14-dev
  jq  # reads the records in the README's examples
  sqlite3  # reads the collector's store in the README's examples
)

# Real tools that the integration tests and benchmarks drive on loopback.
test_packages=(
  curl openssl python3 python3-yaml python3-jsonschema
  sqlmap nmap hydra gobuster whatweb wapiti wrk
  dirb chromium  # OAT evaluation: dirb's scan and word lists, headless browsing
  nginx libnginx-mod-http-modsecurity apache2 tshark
  libapache2-mod-security2  # mod_security2 audit records for the decoder tests
  libmaxmind-db-writer-perl  # builds the small GeoIP databases the tests use
)

# Peers of the collector benchmark (bench/collector/run.sh). syslog-ng-core
# conflicts with rsyslog as a Debian package, so its package and the
# libraries it needs beyond rsyslog's are unpacked into bench/.peers/syslog-ng
# instead of being installed.
bench_packages=(rsyslog)
syslog_ng_debs=(syslog-ng-core libivykis0 libnet1 libwrap0)

with_tests=false
with_bench=false
for option in "$@"; do
  case $option in
    --with-tests) with_tests=true ;;
    --with-bench) with_bench=true ;;
    *) echo "install-deps.sh: unknown option $option; use --with-tests and/or --with-bench" >&2; exit 2 ;;
  esac
done

if [[ $(id -u) -ne 0 ]]; then
  echo "install-deps.sh: run as root (apt-get needs it)" >&2
  exit 1
fi

want=("${build_packages[@]}")
if $with_tests; then
  want+=("${test_packages[@]}")
fi
if $with_bench; then
  want+=("${bench_packages[@]}")
fi

unpack_syslog_ng() {
  local root
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/bench/.peers
  if [[ -x $root/syslog-ng/usr/sbin/syslog-ng ]]; then
    return
  fi
  echo "install-deps.sh: unpacking ${syslog_ng_debs[*]} into $root/syslog-ng"
  mkdir -p "$root/debs" "$root/syslog-ng"
  (cd "$root/debs" && apt-get download "${syslog_ng_debs[@]}")
  for deb in "$root"/debs/*.deb; do
    dpkg -x "$deb" "$root/syslog-ng"
  done
}

missing=()
for package in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" ||
    missing+=("$package")
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "install-deps.sh: all ${#want[@]} packages present"
  if $with_bench; then
    unpack_syslog_ng
  fi
  exit 0
fi

echo "install-deps.sh: installing ${#missing[@]} packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# Installing nginx or apache2 starts their services on port 80 through the
# package scripts; policy-rc.d keeps them stopped so that tests own the ports.
if [[ ! -e /usr/sbin/policy-rc.d ]]; then
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
  chmod 755 /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
apt-get install -y -q --no-install-recommends "${missing[@]}"
if $with_bench; then
  unpack_syslog_ng
fi
