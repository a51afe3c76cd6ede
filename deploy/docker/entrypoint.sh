#!/bin/bash
# Starts webtrap in a container. The configuration is the YAML file in
# WEBTRAP_CONFIG (mount your own over /etc/webtrap/). The binary itself reads
# a WEBTRAP__<KEY> variable for every key of that file, such as
# WEBTRAP__SHIPPER__URL for shipper.url (docs/configuration.md); this script
# passes them on untouched. It also maps these older variables to
# command-line options, which take precedence over the file and over the
# WEBTRAP__ variables:
#
#   all roles:  WEBTRAP_LOG_LEVEL      --log-level (trace, debug, info, warn, error)
#   probe:      WEBTRAP_SENSOR_ID      --sensor-id
#               WEBTRAP_LISTEN         --listen, one per space-separated ADDR:PORT
#               WEBTRAP_LISTEN_TLS     --listen-tls, the same
#               WEBTRAP_LISTEN_BAIT    --listen-bait, the same
#               WEBTRAP_ADMIN_LISTEN   --admin-listen (ADDR:PORT or off)
#               WEBTRAP_PARANOIA_LEVEL --paranoia-level (1 to 4)
#   ship:       WEBTRAP_METRICS_LISTEN --metrics-listen
#
# WEBTRAP_ROLE (probe, collector or ship) picks the subcommand. Arguments
# given to the container are appended, so `enrol --sensor-id web1` works
# with the collector image.
set -euo pipefail

role=${WEBTRAP_ROLE:?WEBTRAP_ROLE is not set; set it to probe, collector or ship}
arguments=("$role" --config "${WEBTRAP_CONFIG:?WEBTRAP_CONFIG is not set; set it to the YAML file}")

# Appends OPTION VALUE when VALUE is not empty.
add_if_set() {
  if [[ -n $2 ]]; then
    arguments+=("$1" "$2")
  fi
}

# Appends OPTION WORD for each space-separated word of VALUE.
add_each() {
  local option=$1 word words
  # read -a splits without glob expansion, which would treat [::1] as a pattern.
  read -r -a words <<<"$2"
  for word in "${words[@]}"; do
    arguments+=("$option" "$word")
  done
}

add_if_set --log-level "${WEBTRAP_LOG_LEVEL:-}"

case $role in
  probe)
    add_if_set --sensor-id "${WEBTRAP_SENSOR_ID:-}"
    add_each --listen "${WEBTRAP_LISTEN:-}"
    add_each --listen-tls "${WEBTRAP_LISTEN_TLS:-}"
    add_each --listen-bait "${WEBTRAP_LISTEN_BAIT:-}"
    add_if_set --admin-listen "${WEBTRAP_ADMIN_LISTEN:-}"
    add_if_set --paranoia-level "${WEBTRAP_PARANOIA_LEVEL:-}"
    ;;
  ship)
    add_if_set --metrics-listen "${WEBTRAP_METRICS_LISTEN:-}"
    ;;
  collector) ;;
  *)
    echo "webtrap-entrypoint: invalid WEBTRAP_ROLE '$role'; use probe, collector or ship" >&2
    exit 2
    ;;
esac

exec webtrap "${arguments[@]}" "$@"
