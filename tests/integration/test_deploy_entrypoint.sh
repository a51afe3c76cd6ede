#!/usr/bin/env bash
# deploy/docker/entrypoint.sh against a stub `webtrap` that prints its
# arguments, one per line, and the WEBTRAP__ variables it received. Checks
# the command line that each older variable (WEBTRAP_LISTEN and the others)
# builds, that WEBTRAP__ variables reach the binary untouched, and that a
# missing or invalid WEBTRAP_ROLE stops the script.
set -euo pipefail
entrypoint="$WEBTRAP_SOURCE_DIR/deploy/docker/entrypoint.sh"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat >"$work/webtrap" <<'STUB'
#!/usr/bin/env bash
printf '%s\n' "$@"
env | grep '^WEBTRAP__' | sort
STUB
chmod +x "$work/webtrap"
failures=0

# expect NAME EXPECTED-OUTPUT ENV-ASSIGNMENTS... -- ARGUMENTS...
expect() {
  local name=$1 expected=$2
  shift 2
  local assignments=()
  while [[ $1 != -- ]]; do
    assignments+=("$1")
    shift
  done
  shift
  local actual
  actual=$(cd "$work" && env -i PATH="$work:/usr/bin:/bin" "${assignments[@]}" \
    bash "$entrypoint" "$@")
  if [[ "$actual" != "$expected" ]]; then
    echo "FAIL $name"
    diff <(echo "$expected") <(echo "$actual") || true
    failures=$((failures + 1))
  else
    echo "ok   $name"
  fi
}

# A file named like a glob match of [::1] must not change the address.
touch "$work/:"

expect "probe options" "probe
--config
/etc/webtrap/probe.yaml
--log-level
debug
--sensor-id
web1
--listen
0.0.0.0:8080
--listen
[::1]:8080
--listen-tls
0.0.0.0:8443
--listen-bait
0.0.0.0:8888
--admin-listen
off
--paranoia-level
2
WEBTRAP__SHIPPER__TOKEN_FILE=/run/secrets/token
WEBTRAP__SHIPPER__URL=https://collector.example:7380" \
  WEBTRAP_ROLE=probe WEBTRAP_CONFIG=/etc/webtrap/probe.yaml WEBTRAP_LOG_LEVEL=debug \
  WEBTRAP_SENSOR_ID=web1 "WEBTRAP_LISTEN=0.0.0.0:8080 [::1]:8080" \
  WEBTRAP_LISTEN_TLS=0.0.0.0:8443 WEBTRAP_LISTEN_BAIT=0.0.0.0:8888 \
  WEBTRAP_ADMIN_LISTEN=off WEBTRAP_PARANOIA_LEVEL=2 \
  WEBTRAP__SHIPPER__URL=https://collector.example:7380 \
  WEBTRAP__SHIPPER__TOKEN_FILE=/run/secrets/token --

expect "probe without options" "probe
--config
/etc/webtrap/probe.yaml" \
  WEBTRAP_ROLE=probe WEBTRAP_CONFIG=/etc/webtrap/probe.yaml WEBTRAP_LISTEN= --

expect "ship options" "ship
--config
/etc/webtrap/probe.yaml
--metrics-listen
127.0.0.1:9103" \
  WEBTRAP_ROLE=ship WEBTRAP_CONFIG=/etc/webtrap/probe.yaml \
  WEBTRAP_METRICS_LISTEN=127.0.0.1:9103 WEBTRAP_SENSOR_ID=ignored --

expect "collector with appended arguments" "collector
--config
/etc/webtrap/collector.yaml
enrol
--sensor-id
web1
WEBTRAP__LISTEN=0.0.0.0:7380" \
  WEBTRAP_ROLE=collector WEBTRAP_CONFIG=/etc/webtrap/collector.yaml \
  WEBTRAP__LISTEN=0.0.0.0:7380 -- enrol --sensor-id web1

for role_case in "WEBTRAP_ROLE=proxy" "WEBTRAP_UNRELATED=1"; do
  if (cd "$work" && env -i PATH="$work:/usr/bin:/bin" "$role_case" \
      WEBTRAP_CONFIG=/etc/webtrap/probe.yaml bash "$entrypoint" >/dev/null 2>&1); then
    echo "FAIL $role_case: the entrypoint ran"
    failures=$((failures + 1))
  else
    echo "ok   $role_case stops the entrypoint"
  fi
done

if ((failures > 0)); then
  echo "deploy entrypoint: $failures checks failed"
  exit 1
fi
echo "deploy entrypoint: all checks passed"
