#!/usr/bin/env bash
# Builds the webtrap-probe and webtrap-collector images with podman, on a
# machine with no Docker engine and no registry (Debian 12, as root).
#
#   deploy/podman/build-images.sh [--prebuilt BUILD_DIR] [WORK_DIR]
#
# With --prebuilt, the images get the webtrap that BUILD_DIR (a CMake build
# folder of this source tree on a Debian 12 host) holds, installed with
# `cmake --install`, instead of compiling it in the build stage. That takes
# about a minute where the full build takes 15 to 30 (docs/deployment.md).
#
# WORK_DIR (default build-images/) contains containers.conf and the ccache
# folder that every image build reuses. When no debian:bookworm-slim image is
# present, the script makes one with debootstrap from the apt mirror, for
# machines that reach no registry. Elsewhere, pull the real image first and
# the script uses it.
set -euo pipefail
source_dir=$(cd "$(dirname "$0")/../.." && pwd)
prebuilt=
if [[ ${1:-} == --prebuilt ]]; then
  if [[ -z ${2:-} || ! -x ${2}/webtrap ]]; then
    echo "build-images: --prebuilt needs a build folder with a built webtrap" \
         "(cmake --build build --target webtrap), got '${2:-}'" >&2
    exit 2
  fi
  prebuilt=$(cd "$2" && pwd)
  shift 2
fi
work=${1:-$source_dir/build-images}
mkdir -p "$work/ccache"
work=$(cd "$work" && pwd)

# crun, podman's default runtime on Debian 12, fails in sandboxes that forbid
# setrlimit. runc with no default ulimits works there too.
if [[ -z ${CONTAINERS_CONF:-} ]]; then
  cat >"$work/containers.conf" <<'CONF'
[containers]
default_ulimits = []
[engine]
runtime = "runc"
CONF
  export CONTAINERS_CONF=$work/containers.conf
fi

base=docker.io/library/debian:bookworm-slim
if ! podman image exists "$base"; then
  echo "build-images: no $base image; making one with debootstrap (about 200 MB of downloads)"
  rootfs=$work/rootfs
  rm -rf "$rootfs"
  debootstrap --variant=minbase bookworm "$rootfs" >"$work/debootstrap.log"
  # The package cache and lists are not part of the real slim image.
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -c . | podman import - "$base" >/dev/null
  rm -rf "$rootfs"
fi

install_from=()
if [[ -n $prebuilt ]]; then
  # A folder in place of the build stage: the runtime stages copy its
  # /install/usr, as they would copy the build stage's.
  stage=$work/prebuilt
  rm -rf "$stage"
  DESTDIR=$stage/install cmake --install "$prebuilt" --prefix /usr --strip >/dev/null
  install -m 0755 "$source_dir/deploy/docker/entrypoint.sh" "$stage/install/usr/bin/webtrap-entrypoint"
  install_from=(--build-context "build=$stage")
  echo "build-images: using the webtrap built in $prebuilt"
fi
# Each build runs at the lowest CPU priority, and the build stage gets the
# ccache folder, so a rebuild after a small change compiles only that change.
# --format docker keeps the HEALTHCHECK, which the OCI image format drops.
for target in probe collector; do
  echo "build-images: building webtrap-$target"
  nice -n 19 podman build --pull=never --network=host --format docker \
    -v "$work/ccache:/ccache" "${install_from[@]}" \
    -f "$source_dir/deploy/docker/webtrap.Dockerfile" --target "$target" \
    -t "webtrap-$target:latest" "$source_dir"
done
podman images --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -E 'webtrap-(probe|collector)'
