#!/usr/bin/env bash
# Checks the systemd units in deploy/systemd with `systemd-analyze verify`
# and `systemd-analyze security --offline`. verify needs the ExecStart binary
# to exist, so each unit is copied with /usr/local/bin/webtrap replaced by the
# built binary, and nothing else in the copy changes. verify exits 0 on unknown
# keys, so any output from it counts as a failure. Skipped (exit 77) when
# systemd-analyze is not installed.
set -euo pipefail
units_dir="$WEBTRAP_SOURCE_DIR/deploy/systemd"
# The highest "overall exposure level" accepted (0 is best, 10 worst).
max_exposure=2.5

if ! command -v systemd-analyze >/dev/null; then
  echo "systemd units: SKIPPED, systemd-analyze is not installed (Debian package systemd)"
  exit 77
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

failures=0
fail() {
  echo "FAIL: $*"
  failures=$((failures + 1))
}

units=(webtrap-probe.service webtrap-collector.service webtrap-ship.service)
for unit in "${units[@]}"; do
  sed "s#/usr/local/bin/webtrap#$WEBTRAP_BIN#g" "$units_dir/$unit" >"$work/$unit"
  if ! grep -q "^ExecStart=$WEBTRAP_BIN " "$work/$unit"; then
    fail "$unit: no ExecStart line starting with /usr/local/bin/webtrap"
  fi
done

verify_output=$(systemd-analyze verify "${units[@]/#/$work/}" 2>&1) || fail "systemd-analyze verify exited non-zero"
if [[ -n $verify_output ]]; then
  fail "systemd-analyze verify printed warnings:"
  echo "$verify_output"
fi

# The hardening settings every unit must keep, so that removing one fails
# this test and does not only raise the exposure level.
required=(NoNewPrivileges=yes ProtectSystem=strict ProtectHome=yes PrivateTmp=yes
  "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6" SystemCallArchitectures=native)
for unit in "${units[@]}"; do
  for setting in "${required[@]}"; do
    grep -qxF "$setting" "$work/$unit" || fail "$unit: missing $setting"
  done
  grep -q '^SystemCallFilter=@system-service' "$work/$unit" || fail "$unit: missing SystemCallFilter=@system-service"
  grep -q '^User=webtrap' "$work/$unit" || fail "$unit: does not run as a webtrap user"
done
# Only the probe binds low ports (80, 443), so only it keeps a capability.
grep -qx 'AmbientCapabilities=CAP_NET_BIND_SERVICE' "$work/webtrap-probe.service" ||
  fail "webtrap-probe.service: AmbientCapabilities is not exactly CAP_NET_BIND_SERVICE"
for unit in webtrap-collector.service webtrap-ship.service; do
  grep -qx 'AmbientCapabilities=' "$work/$unit" || fail "$unit: should have no ambient capability"
  grep -qx 'CapabilityBoundingSet=' "$work/$unit" || fail "$unit: should have an empty bounding set"
  grep -qx 'MemoryDenyWriteExecute=yes' "$work/$unit" || fail "$unit: missing MemoryDenyWriteExecute=yes"
done
# The probe's own seccomp filter needs the seccomp() system call.
for unit in webtrap-probe.service webtrap-ship.service; do
  grep -qx 'SystemCallFilter=@system-service seccomp' "$work/$unit" ||
    fail "$unit: SystemCallFilter must allow seccomp, which the process installs itself"
done

for unit in "${units[@]}"; do
  if ! report=$(systemd-analyze security --offline=yes "$work/$unit" 2>&1); then
    fail "systemd-analyze security failed on $unit"
    echo "$report"
    continue
  fi
  exposure=$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' <<<"$report")
  if [[ -z $exposure ]]; then
    fail "$unit: no exposure level in systemd-analyze security output"
    continue
  fi
  echo "$unit: exposure $exposure"
  if awk -v e="$exposure" -v m="$max_exposure" 'BEGIN { exit !(e > m) }'; then
    fail "$unit: exposure $exposure is above $max_exposure"
  fi
done

if ((failures > 0)); then
  echo "systemd units: $failures failed"
  exit 1
fi
echo "systemd units: ${#units[@]} units passed verify and security checks"
