#!/usr/bin/env bash
# Installs what webtrap needs, builds it, and runs a probe and a collector on
# loopback with the built-in defaults. The probe's shipper sends each record
# to the collector, which keeps it in its embedded SQLite store. This terminal
# prints each record once it is stored. Ctrl-C stops both.
# --skip-build runs the existing build/webtrap without building it again
# (scripts/record-demo.sh uses it). The package check always runs, and it
# calls apt-get only when a package is missing.
# --jobs=N builds with at most N compiler processes, where ninja's default
# runs more than one per CPU, to leave CPUs to other work on a shared machine.
# --dashboard also serves the collector's dashboard on its admin listener,
# with an admin token generated at the first such run and kept in
# var/collector/admin.token, and prints the dashboard's URL and the token.
# etc/collector.yaml stays as it is: the token and dashboard.enabled reach
# the collector as WEBTRAP__ environment variables, which take the place of
# the file's admin.token (docs/collector-configuration.md).
set -euo pipefail
cd "$(dirname "$0")/.."

skip_build=false
dashboard=false
build_jobs=()
for option in "$@"; do
  case $option in
    --skip-build) skip_build=true ;;
    --dashboard) dashboard=true ;;
    --jobs=*)
      jobs=${option#--jobs=}
      if [[ ! $jobs =~ ^[1-9][0-9]*$ ]]; then
        echo "run.sh: invalid --jobs value \"$jobs\"; give a whole number of at least 1," \
          "for example --jobs=1" >&2
        exit 2
      fi
      build_jobs=(-j "$jobs")
      ;;
    *)
      echo "run.sh: unknown option $option; the options are --skip-build, --jobs=N and" \
        "--dashboard" >&2
      exit 2
      ;;
  esac
done

# One run per folder: a second one would enrol the sensor again, which
# replaces the shipper token of the running probe. The lock is inherited by
# the collector, the probe and the tail, so it lasts while any of them runs.
mkdir -p var
exec {run_lock}>var/run.lock
if ! flock --nonblock "$run_lock"; then
  echo "run.sh: another run.sh, or a probe or collector that it started, is running in" \
    "$(pwd) (it has the lock on var/run.lock); stop it with Ctrl-C first" >&2
  exit 1
fi

./scripts/install-deps.sh
if $skip_build; then
  if [[ ! -x build/webtrap ]]; then
    echo "run.sh: build/webtrap not found; run without --skip-build to build it" >&2
    exit 1
  fi
  echo "run.sh: --skip-build: using the existing build/webtrap," \
    "built $(date -u -r build/webtrap '+%Y-%m-%d %H:%M UTC')"
else
  ./scripts/build.sh "${build_jobs[@]}" webtrap
fi

mkdir -p var/spool var/state var/collector var/log
webtrap=./build/webtrap

# Prints to standard error the last LINES lines added to LOG after its
# first START bytes. The logs keep the lines of earlier runs, which would
# read as part of this run's failure.
# Usage: print_log_since LOG START LINES
print_log_since() {
  tail -c "+$(($2 + 1))" "$1" | tail -n "$3" >&2
}

# A new token at every start: enrolling again replaces the old one, so the
# token file and the collector's store can never disagree. A configuration
# error stops the enrolment, so its lines are shown here.
collector_log_start=$(stat -c %s var/log/collector.log 2>/dev/null || echo 0)
if ! "$webtrap" collector --config etc/collector.yaml enrol --sensor-id demo-probe --group lab \
  --token-file var/state/shipper.token >/dev/null 2>>var/log/collector.log; then
  echo "webtrap: the collector did not start: enrolling the demo probe failed; see" \
    "var/log/collector.log" >&2
  print_log_since var/log/collector.log "$collector_log_start" 20
  exit 1
fi

# The dashboard's admin token: 32 random bytes in hex, made once and kept
# readable by the owner only, so a bookmarked login keeps working across runs.
# It lives in the collector's folder, because the probe, run as root, hands
# var/state to its unprivileged user, and the probe faces the attackers.
collector_environment=()
if $dashboard; then
  admin_token_file=var/collector/admin.token
  if [[ -e var/state/admin.token && ! -e $admin_token_file ]]; then
    # Where run.sh kept the token before; the move keeps logins working.
    mv var/state/admin.token "$admin_token_file"
    chown "$(id -u):$(id -g)" "$admin_token_file"
    echo "run.sh: moved the admin token from var/state/admin.token to $admin_token_file," \
      "out of the probe's folder"
  fi
  if [[ ! -s $admin_token_file ]]; then
    (umask 077 && od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$admin_token_file")
  fi
  if ! admin_token=$(<"$admin_token_file") 2>/dev/null || [[ ! -r $admin_token_file ]]; then
    echo "run.sh: cannot read the admin token from $admin_token_file; make it a file" \
      "readable by $(id -un), or delete it so that run.sh generates a new token" >&2
    exit 1
  fi
  # A Bearer token (RFC 6750, token68): letters, digits and -._~+/ with
  # optional trailing '=', so it fits in the Authorization header.
  if [[ ! $admin_token =~ ^[A-Za-z0-9._~+/-]+=*$ ]]; then
    echo "run.sh: $admin_token_file does not hold a usable admin token (it must be one" \
      "word of letters, digits and -._~+/ with optional trailing =); fix it, or delete it" \
      "so that run.sh generates a new token" >&2
    exit 1
  fi
  admin_token_mode=$(stat -c %a "$admin_token_file")
  if (( 8#$admin_token_mode & 8#077 )); then
    chmod 600 "$admin_token_file"
    echo "run.sh: $admin_token_file had mode $admin_token_mode, so other users could read" \
      "the admin token; set it to 600. Delete the file for a new token if someone may have" \
      "read it."
  fi
  collector_environment=(WEBTRAP__ADMIN__TOKEN="$admin_token" WEBTRAP__DASHBOARD__ENABLED=true)
fi

collector_pid=""
probe_pid=""
tail_pid=""
# A second Ctrl-C while stop_all waits for the probe stops the collector and
# the tail at once too. They run in sessions of their own, so without this
# they would outlive the script.
hurry_stop() {
  echo "run.sh: stopping the collector too without waiting for the probe's last records;" \
    "those stay in var/spool/ and the next run ships them" >&2
  local pid
  for pid in "$collector_pid" "$tail_pid"; do
    if [[ -n "$pid" ]]; then
      kill -TERM "$pid" 2>/dev/null || true
    fi
  done
}

# Stops the probe first and waits for it, so its shipper can send the last
# records while the collector still runs; then the collector, then the
# tail, which prints the events stored up to its stop before it exits.
stop_all() {
  trap - EXIT
  trap hurry_stop INT TERM HUP
  local pid
  for pid in "$probe_pid" "$collector_pid" "$tail_pid"; do
    if [[ -n "$pid" ]]; then
      kill -TERM "$pid" 2>/dev/null || true
      # A trapped signal ends wait early, so wait until the process is gone.
      while kill -0 "$pid" 2>/dev/null; do
        wait "$pid" 2>/dev/null || true
      done
    fi
  done
  trap - INT TERM HUP
  echo "webtrap: stopped; logs in var/log/, records in var/collector/store.sqlite"
}
trap stop_all INT TERM HUP EXIT

# Waits until the process NAME (PID) has written its ports file, or exits
# with an error that points at LOG: when the process ends first (with the
# last LINES lines that this run added to LOG after byte START), or after
# SECONDS.
# Usage: wait_for_ports NAME PID FILE LOG START SECONDS LINES
wait_for_ports() {
  local name=$1 pid=$2 file=$3 log=$4 start=$5 seconds=$6 lines=$7
  for _ in $(seq $((seconds * 10))); do
    [[ -s $file ]] && return 0
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "webtrap: the $name did not start; see $log" >&2
      print_log_since "$log" "$start" "$lines"
      exit 1
    fi
    sleep 0.1
  done
  echo "webtrap: the $name wrote no $file within $seconds s; see $log" >&2
  exit 1
}

# The sequence number of the newest event stored before the collector
# starts. The tail prints every event stored after it, also those that a
# file input (inputs.files) reads at the collector's start, before the
# collector has written its ports file and the tail can start.
collector_log_start=$(stat -c %s var/log/collector.log 2>/dev/null || echo 0)
if ! store_count=$("$webtrap" collector --config etc/collector.yaml count \
  2>>var/log/collector.log); then
  echo "webtrap: the collector did not start: counting the stored events failed; see" \
    "var/log/collector.log" >&2
  print_log_since var/log/collector.log "$collector_log_start" 20
  exit 1
fi
last_seq_before_start=$(sed -n 's/.*"last_seq": *\([0-9]*\).*/\1/p' <<<"$store_count")
if [[ -z $last_seq_before_start ]]; then
  echo "webtrap: no last_seq in the output of collector count: $store_count" >&2
  exit 1
fi

rm -f var/collector/ports.json
# setsid gives the collector and the probe sessions of their own, because a
# Ctrl-C in the terminal sends SIGINT to the whole foreground process group.
# Without it, the collector and the probe's shipper would stop at once and
# leave the last records in the spool. Now only this script gets the SIGINT,
# and stop_all stops the probe before the collector.
collector_log_start=$(stat -c %s var/log/collector.log 2>/dev/null || echo 0)
env "${collector_environment[@]}" setsid "$webtrap" collector --config etc/collector.yaml \
  --ports-file var/collector/ports.json >>var/log/collector.log 2>&1 &
collector_pid=$!
wait_for_ports collector "$collector_pid" var/collector/ports.json var/log/collector.log \
  "$collector_log_start" 10 20

# The tail prints from the events stored before the collector started, so
# the records that file inputs read at its start are printed too, and so
# are those that the probe's shipper sends from an earlier run's spool.
# setsid keeps a terminal's Ctrl-C from it as well: it stops last, after
# the probe's final records are stored.
setsid "$webtrap" collector --config etc/collector.yaml tail --follow \
  --after-seq "$last_seq_before_start" &
tail_pid=$!

# The ports the collector bound ({"ingest": 7380, "admin": 9102} with
# etc/collector.yaml), so the shipper and the lines below follow that file.
ports=$(<var/collector/ports.json)
ingest_port=$(sed -n 's/.*"ingest": *\([0-9]*\).*/\1/p' <<<"$ports")
admin_port=$(sed -n 's/.*"admin": *\([0-9]*\).*/\1/p' <<<"$ports")
if [[ -z $ingest_port || -z $admin_port ]]; then
  echo "webtrap: no ingest or admin port in var/collector/ports.json: $ports" >&2
  exit 1
fi

# The probe's own configuration plus the shipper section that points at the
# collector on loopback. A shipper: section of the user's own in
# etc/probe.yaml is replaced, not used, because it points at another
# collector and this terminal would print none of the probe's records.
# Both sections together would also stop the probe at start with a
# repeated key. awk drops the top-level shipper: key and the indented,
# blank and comment lines after it, up to the next top-level key.
# etc/probe.yaml stays unchanged.
if grep -Eq "^[\"']?shipper[\"']?[[:space:]]*:" etc/probe.yaml; then
  echo "run.sh: etc/probe.yaml has a shipper: section of its own; this run replaces it in" \
    "var/state/probe-with-shipper.yaml with one for this run's collector" \
    "(http://127.0.0.1:$ingest_port), so that the probe's records appear below." \
    "etc/probe.yaml stays unchanged"
fi
{
  awk '
    /^["\047]?shipper["\047]?[[:space:]]*:/ { in_shipper = 1; next }
    in_shipper && /^([[:space:]#]|$)/ { next }
    { in_shipper = 0; print }
  ' etc/probe.yaml
  printf '\nshipper:\n  url: http://127.0.0.1:%s\n  token_file: var/state/shipper.token\n' \
    "$ingest_port"
} >var/state/probe-with-shipper.yaml

rm -f var/state/probe-ports.json
# The probe appends to its log; the banner reads only this run's lines.
probe_log_start=$(stat -c %s var/log/probe.log 2>/dev/null || echo 0)
setsid "$webtrap" probe --config var/state/probe-with-shipper.yaml \
  --ports-file var/state/probe-ports.json >>var/log/probe.log 2>&1 &
probe_pid=$!
# The banner below is printed only once the probe listens, so it never
# shows a URL or token of a run that is about to stop.
wait_for_ports probe "$probe_pid" var/state/probe-ports.json var/log/probe.log \
  "$probe_log_start" 30 5

# One banner line per probe listener, from the probe's log lines
# "probe: listening name=N address=A port=P tls=T bait=B", so the banner
# shows what etc/probe.yaml configured and the ports actually bound.
listener_lines=""
while read -r name address port tls bait; do
  [[ $address == *:* ]] && address="[$address]"
  scheme=http
  note=""
  if [[ $tls == true ]]; then
    scheme=https
    note="  (self-signed certificate)"
  fi
  [[ $bait == true ]] && note="$note  (bait: a port no real user visits)"
  listener_lines+=$(printf '  %-10s %s://%s:%s/%s' "$name:" "$scheme" "$address" "$port" "$note")
  listener_lines+=$'\n'
done < <(tail -c "+$((probe_log_start + 1))" var/log/probe.log |
  sed -n 's/.*probe: listening name=\([^ ]*\) address=\([^ ]*\) port=\([0-9]*\) tls=\([a-z]*\) bait=\([a-z]*\).*/\1 \2 \3 \4 \5/p')
probe_ports=$(<var/state/probe-ports.json)
probe_admin_port=$(sed -n 's/.*"admin": *\([0-9]*\).*/\1/p' <<<"$probe_ports")
if [[ -n $probe_admin_port ]]; then
  probe_metrics="metrics http://127.0.0.1:$probe_admin_port/metrics, "
else
  probe_metrics=""
fi

admin_url=http://127.0.0.1:$admin_port
if $dashboard; then
  dashboard_lines="  dashboard: $admin_url/dashboard/ (log in with the admin token)
             admin token: $admin_token (kept in $admin_token_file)
             /metrics and /healthz need the header Authorization: Bearer <admin token> too"
else
  dashboard_lines="  dashboard: off unless etc/collector.yaml turns it on; ./scripts/run.sh --dashboard
             turns it on with a generated admin token (docs/dashboard.md)"
fi

cat <<TEXT
webtrap: a probe and a collector are running on loopback (Ctrl-C stops both)
probe listeners (etc/probe.yaml):
${listener_lines}  probe:     ${probe_metrics}log var/log/probe.log
  collector: metrics $admin_url/metrics, health $admin_url/healthz,
             log var/log/collector.log, store var/collector/store.sqlite
$dashboard_lines
Each request the probe receives appears below once the collector has stored it
(records that file inputs read at the collector's start, or that an earlier run
left in var/spool/, may appear above this banner):
TEXT
# Either one stopping ends the demo; the trap stops the other.
stopped_pid=""
stopped_status=0
wait -n -p stopped_pid "$collector_pid" "$probe_pid" || stopped_status=$?
# Unset or empty when Ctrl-C interrupted the wait rather than a process
# ending: bash 5.2 unsets the -p variable when a trapped signal ends wait.
if [[ -n ${stopped_pid:-} ]]; then
  stopped_name=collector
  [[ $stopped_pid == "$probe_pid" ]] && stopped_name=probe
  if (( stopped_status > 128 )); then
    echo "run.sh: the $stopped_name was killed by signal" \
      "$(kill -l $((stopped_status - 128)) 2>/dev/null || echo $((stopped_status - 128)));" \
      "see var/log/$stopped_name.log" >&2
  else
    echo "run.sh: the $stopped_name exited with status $stopped_status; see" \
      "var/log/$stopped_name.log" >&2
  fi
  if [[ $stopped_name == probe ]]; then
    echo "run.sh: run ./scripts/run.sh again: the probe records the requests it had answered" \
      "but not yet recorded (kept in var/spool/inspection-journal/) and ships the spool" >&2
  else
    echo "run.sh: run ./scripts/run.sh again: the collector keeps every batch it acknowledged," \
      "and the probe's shipper sends what it had not yet sent (kept in var/spool/)" >&2
  fi
fi
