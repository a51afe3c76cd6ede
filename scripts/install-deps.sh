#!/usr/bin/env bash
# Installs every Debian 12 package that webtrap needs to build, run and test.
# Run as root on a fresh machine; running it again is cheap.
# deploy/docker/webtrap.Dockerfile runs it too: --build-only in the build
# stage and --runtime-only in the runtime stage, so the lists live here only.
set -euo pipefail

# What `cmake` and `ninja webtrap` need (GoogleTest too: CMakeLists.txt
# requires it).
compile_packages=(
  build-essential cmake ninja-build pkg-config git ca-certificates
  libmodsecurity-dev modsecurity-crs
  libboost1.81-dev libssl-dev libcurl4-openssl-dev libsimdjson-dev
  libsqlite3-dev libmaxminddb-dev libyaml-cpp-dev libcli11-dev
  libspdlog-dev libfmt-dev zlib1g-dev libjemalloc-dev
  libdeflate-dev  # whole-buffer gzip decompression of collector request bodies
  libjs-chart.js  # Chart.js, compiled into the collector's dashboard
  python3-pyshp  # reads the Natural Earth shapefile for the dashboard's map
  libhowardhinnant-date-dev  # IANA time zones for audit log time stamps
  libgtest-dev libgmock-dev
  ccache  # compiler cache, reused between image builds (docs/deployment.md)
)

# Developer tools on top of compile_packages, left out of --build-only.
developer_packages=(
  libbenchmark-dev  # bench/ only
  clang libclang-rt-14-dev  # libFuzzer targets (fuzz/)
  jq  # reads the records in the README's examples
  sqlite3  # reads the collector's store in the README's examples
)
build_packages=("${compile_packages[@]}" "${developer_packages[@]}")

# Shared libraries of the built webtrap binary (from `ldd build/webtrap`),
# the CRS rules and setup file the probe loads, CA certificates for the
# shipper and the Elasticsearch output, and curl for container health checks.
runtime_packages=(
  libmodsecurity3 modsecurity-crs
  libssl3 libcurl4 libsimdjson14 libsqlite3-0 libmaxminddb0 libyaml-cpp0.7
  libspdlog1.10 libfmt9 zlib1g libjemalloc2 libdeflate0 libdate-tz3
  ca-certificates curl
)

# Container tools for deploy/: podman with runc builds and runs the images
# without a Docker engine, debootstrap makes the base image without a
# registry, and docker-compose checks and runs deploy/compose/compose.yaml.
container_packages=(podman runc debootstrap docker-compose)

# The dashboard map's world outline is built from the Natural Earth
# shapefile naturalearth_lowres in this package. It is unpacked into
# .peers/geopandas and not installed, because installing it would pull in
# pandas, shapely and their dependencies, which webtrap does not use.
geopandas_deb=python3-geopandas

# Python libraries that `cloud-init schema` imports. The cloud-init package
# itself is unpacked into .peers/cloud-init and not installed, because an
# installed cloud-init would run at the machine's next boot.
cloud_init_python_packages=(
  python3-configobj python3-jinja2 python3-jsonpatch python3-jsonschema
  python3-netifaces python3-oauthlib python3-requests python3-serial python3-yaml
)

# Real tools that the integration tests and benchmarks drive on loopback.
test_packages=(
  curl openssl python3 python3-yaml python3-jsonschema
  sqlmap nmap hydra gobuster whatweb wapiti wrk
  dirb chromium  # OAT evaluation: dirb's scan and word lists, headless browsing
  python3-websocket  # drives headless Chromium in the dashboard test
  nginx libnginx-mod-http-modsecurity apache2 tshark
  libapache2-mod-security2  # mod_security2 audit records for the decoder tests
  libmaxmind-db-writer-perl  # builds the small GeoIP databases the tests use
  graphviz  # dot renders docs/diagrams (the docs target and its test)
  logrotate  # rotates a file input's audit log as on a real web server
)

# Peers of the collector benchmark (bench/collector/run.sh). syslog-ng-core
# conflicts with rsyslog as a Debian package, so its package and the
# libraries it needs beyond rsyslog's are unpacked into bench/.peers/syslog-ng
# instead of being installed.
bench_packages=(rsyslog)
syslog_ng_debs=(syslog-ng-core libivykis0 libnet1 libwrap0)

# What scripts/record-demo.sh records the terminal demo with. The test of the
# cast reads the committed file only, so CI does not install these.
docs_packages=(asciinema tmux)

usage="options: --with-tests, --with-bench, --with-containers, --with-cloud-init, --with-docs,
  --build-only (compile packages only), --runtime-only (libraries to run webtrap),
  --print (print the selected package names, one per line, and exit)"
with_tests=false
with_bench=false
with_containers=false
with_cloud_init=false
with_docs=false
base=full
print_only=false
for option in "$@"; do
  case $option in
    --with-tests) with_tests=true ;;
    --with-bench) with_bench=true ;;
    --with-containers) with_containers=true ;;
    --with-cloud-init) with_cloud_init=true ;;
    --with-docs) with_docs=true ;;
    --build-only) base=build ;;
    --runtime-only) base=runtime ;;
    --print) print_only=true ;;
    *) echo "install-deps.sh: unknown option $option; $usage" >&2; exit 2 ;;
  esac
done

case $base in
  full) want=("${build_packages[@]}") ;;
  build) want=("${compile_packages[@]}") ;;
  runtime) want=("${runtime_packages[@]}") ;;
esac
if $with_tests; then
  want+=("${test_packages[@]}")
fi
if $with_bench; then
  want+=("${bench_packages[@]}")
fi
if $with_containers; then
  want+=("${container_packages[@]}")
fi
if $with_cloud_init; then
  want+=("${cloud_init_python_packages[@]}")
fi
if $with_docs; then
  want+=("${docs_packages[@]}")
fi

if $print_only; then
  printf '%s\n' "${want[@]}"
  exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
  echo "install-deps.sh: run as root (apt-get needs it)" >&2
  exit 1
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

unpack_cloud_init() {
  local root
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.peers
  if [[ -x $root/cloud-init/usr/bin/cloud-init ]]; then
    return
  fi
  echo "install-deps.sh: unpacking cloud-init into $root/cloud-init"
  mkdir -p "$root/debs" "$root/cloud-init"
  (cd "$root/debs" && apt-get download cloud-init)
  dpkg -x "$root"/debs/cloud-init_*.deb "$root/cloud-init"
}

unpack_geopandas() {
  local root
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.peers
  if [[ -e $root/geopandas/usr/lib/python3/dist-packages/geopandas/datasets/naturalearth_lowres/naturalearth_lowres.shp ]]; then
    return
  fi
  echo "install-deps.sh: unpacking $geopandas_deb into $root/geopandas"
  mkdir -p "$root/debs" "$root/geopandas"
  # apt-get download needs the package lists, which the Dockerfile deletes.
  (cd "$root/debs" && { apt-get download "$geopandas_deb" ||
    { apt-get update -q && apt-get download "$geopandas_deb"; }; })
  dpkg -x "$root"/debs/"$geopandas_deb"_*.deb "$root/geopandas"
}

# Runs the steps that follow package installation.
run_post_install_steps() {
  if [[ $base != runtime ]]; then
    unpack_geopandas
  fi
  if $with_bench; then
    unpack_syslog_ng
  fi
  if $with_cloud_init; then
    unpack_cloud_init
  fi
}

missing=()
for package in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" ||
    missing+=("$package")
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "install-deps.sh: all ${#want[@]} packages present"
  run_post_install_steps
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
run_post_install_steps
