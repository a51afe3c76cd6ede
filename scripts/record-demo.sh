#!/usr/bin/env bash
# Records docs/demo/webtrap-demo.cast, an asciinema cast of the README's quick
# start with attack traffic arriving. A tmux window of 100x30 has two panes:
# the top one runs ./scripts/run.sh, the bottom one sends requests to the
# probe on 127.0.0.1 and reads the collector's count. A Ctrl-C in the top pane
# then stops both servers. Everything stays on loopback.
#
# Run as root (run.sh checks the packages as root) from a tree where nothing
# listens on the README's ports. It needs asciinema and tmux
# (./scripts/install-deps.sh --with-docs) and whatweb (--with-tests).
# The packages are installed and build/webtrap built off camera first, so the
# cast shows `./scripts/run.sh --skip-build`, whose package check prints that
# every package is present.
#
# The demo starts from an empty store: it stops if var/ exists, and removes
# the var/ it made when it ends, with the throwaway sensor token inside.
#
# Options: --output FILE (default docs/demo/webtrap-demo.cast).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

output=docs/demo/webtrap-demo.cast
while [[ $# -gt 0 ]]; do
  case $1 in
    --output)
      if [[ $# -lt 2 ]]; then
        echo "record-demo.sh: --output needs a file name" >&2
        exit 2
      fi
      output=$2
      shift 2
      ;;
    *) echo "record-demo.sh: unknown option $1; the only option is --output FILE" >&2; exit 2 ;;
  esac
done

# The README's quick start command. tests/integration/test_demo_cast.py
# checks that the README still names it.
run_script=./scripts/run.sh

# Ports of etc/probe.yaml and etc/collector.yaml that run.sh lists.
readme_ports=(8080 8443 8888 9101 7380 9102)

cols=100
rows=30
# Pauses longer than this many seconds are cut to it in the cast.
idle_time_limit=1.5
socket=webtrap-demo-$$

for tool in asciinema tmux whatweb curl ss python3; do
  if ! command -v "$tool" >/dev/null; then
    echo "record-demo.sh: $tool not found; run ./scripts/install-deps.sh --with-tests --with-docs" >&2
    exit 1
  fi
done
if [[ -e var ]]; then
  echo "record-demo.sh: var/ exists (the store, spool and token of an earlier run);" \
    "move it away or delete it, so that the demo starts from an empty store" >&2
  exit 1
fi
for port in "${readme_ports[@]}"; do
  if [[ -n $(ss -Hltn "sport = :$port") ]]; then
    echo "record-demo.sh: port $port is in use; stop what listens there (ss -ltnp) and run again" >&2
    exit 1
  fi
done

./scripts/install-deps.sh
if [[ ! -x build/webtrap ]]; then
  echo "record-demo.sh: building build/webtrap before recording"
  ./scripts/build.sh webtrap
fi

tmux_demo() {
  tmux -L "$socket" "$@"
}

# Types TEXT into PANE a character at a time, so the cast reads like typing.
type_text() {
  local pane=$1 text=$2 i
  for ((i = 0; i < ${#text}; i++)); do
    tmux_demo send-keys -t "$pane" -l "${text:i:1}"
    sleep 0.02
  done
}

# Types a command into PANE, presses Enter and waits until the pane's shell
# is back at its prompt (at most TIMEOUT seconds).
run_in_pane() {
  local pane=$1 command=$2 timeout=${3:-20} i
  type_text "$pane" "$command"
  sleep 0.3
  tmux_demo send-keys -t "$pane" Enter
  sleep 0.3
  for ((i = 0; i < timeout * 10; i++)); do
    [[ $(tmux_demo display-message -p -t "$pane" '#{pane_current_command}') == bash ]] && return 0
    sleep 0.1
  done
  echo "record-demo.sh: '$command' did not finish within ${timeout}s" >&2
  return 1
}

# Prints the number of events in the collector's store, read off camera.
stored_events() {
  ./build/webtrap collector --config etc/collector.yaml --log-level error count 2>/dev/null |
    sed -n 's/.*"events":\([0-9]*\).*/\1/p'
}

wait_for_listener() {
  local port=$1 i
  for ((i = 0; i < 100; i++)); do
    [[ -n $(ss -Hltn "sport = :$port") ]] && return 0
    sleep 0.1
  done
  echo "record-demo.sh: nothing listens on 127.0.0.1:$port after 10s; see var/log/" >&2
  return 1
}

# The demo itself: runs in the background while asciinema records the
# tmux client, and ends the tmux session when it is done.
drive_demo() {
  local top=demo:0.0 bottom=demo:0.1 i
  sleep 1
  run_in_pane "$top" "# packages installed and build/webtrap built already, so the build is skipped" 5
  type_text "$top" "$run_script --skip-build"
  sleep 0.3
  tmux_demo send-keys -t "$top" Enter
  # No request is sent to check that the probe is up, because the request
  # would show up as a record.
  wait_for_listener 8080
  wait_for_listener 9102
  sleep 1

  run_in_pane "$bottom" "# a second shell: attack traffic to the probe on 127.0.0.1" 5
  run_in_pane "$bottom" "curl -s -o /dev/null -w '%{http_code}\n' \"http://127.0.0.1:8080/index.php?id=1%27%20UNION%20SELECT%20password%20FROM%20users--\""
  sleep 1.5
  run_in_pane "$bottom" "curl -s -o /dev/null -w '%{http_code}\n' \"http://127.0.0.1:8080/index.php?page=../../../../etc/passwd\""
  sleep 1.5
  run_in_pane "$bottom" "curl -s -o /dev/null -w '%{http_code}\n' http://127.0.0.1:8080/admin-old/   # a robots.txt bait"
  sleep 1.5
  run_in_pane "$bottom" "whatweb --color=never -a 1 http://127.0.0.1:8080/" 30
  # The collector count is typed once every request above is stored.
  for ((i = 0; i < 150; i++)); do
    [[ $(stored_events) -ge 4 ]] && break
    sleep 0.1
  done
  sleep 1
  run_in_pane "$bottom" "./build/webtrap collector --config etc/collector.yaml --log-level warn count"
  sleep 2

  tmux_demo send-keys -t "$top" C-c
  for ((i = 0; i < 300; i++)); do
    [[ $(tmux_demo display-message -p -t "$top" '#{pane_current_command}') == bash ]] && break
    sleep 0.1
  done
  sleep 2
  tmux_demo kill-session -t demo
}

mkdir -p "$(dirname "$output")"
made_var=false
stop_demo() {
  tmux_demo kill-server 2>/dev/null || true
  if [[ -n ${driver_pid:-} ]]; then
    kill "$driver_pid" 2>/dev/null || true
    wait "$driver_pid" 2>/dev/null || true
  fi
  if $made_var; then
    rm -rf "$repo/var"
  fi
}
trap stop_demo EXIT

# Each pane runs bash without rc files, with a short prompt and no history
# file, in a tmux server of its own that reads no user configuration.
pane_shell="env PS1='\$ ' HISTFILE=/dev/null bash --norc --noprofile"
export TERM=${TERM:-xterm-256color}
[[ $TERM == dumb ]] && export TERM=xterm-256color
tmux_demo -f /dev/null new-session -d -s demo -x "$cols" -y "$rows" "$pane_shell"
# Without the alternate screen, the demo's last screen stays in the cast
# when the tmux client exits.
tmux_demo set-option -g terminal-overrides ',*:smcup@:rmcup@'
tmux_demo set-option -g status off
tmux_demo set-option -g pane-border-status top
tmux_demo set-option -g pane-border-format ' #{pane_title} '
tmux_demo set-option -g allow-rename off
tmux_demo split-window -v -l 12 -t demo:0 "$pane_shell"
tmux_demo select-pane -t demo:0.0 -T "shell 1: the README's quick start"
tmux_demo select-pane -t demo:0.1 -T "shell 2: attack traffic to 127.0.0.1"
made_var=true

# If the demo fails halfway, ending the session still ends the recording.
(
  trap 'tmux_demo kill-session -t demo 2>/dev/null || true' EXIT
  drive_demo
) &
driver_pid=$!
asciinema rec --quiet --overwrite --cols "$cols" --rows "$rows" \
  --idle-time-limit "$idle_time_limit" \
  --title "webtrap: ./scripts/run.sh with attack traffic on loopback" \
  --command "tmux -L $socket attach -t demo" "$output"
wait "$driver_pid"
driver_pid=""

# The tmux client clears the screen and prints "[exited]" as it exits. Those
# two sequences are cut from the last event, so a player ends on the demo's
# last screen. The terminal mode resets in that event stay.
python3 - "$output" <<'PYTHON'
import json
import sys

path = sys.argv[1]
with open(path, encoding="utf-8") as cast:
    lines = cast.read().splitlines()
time, kind, text = json.loads(lines[-1])
if "[exited]" not in text:
    sys.exit(f"record-demo.sh: the last event of {path} is not the tmux client's exit: {text!r}")
text = text.replace("\x1b[H\x1b[2J", "").replace("[exited]\r\n", "")
lines[-1] = json.dumps([time, kind, text])
with open(path, "w", encoding="utf-8") as cast:
    cast.write("\n".join(lines) + "\n")
PYTHON
echo "record-demo.sh: wrote $output; play it with: asciinema play $output"
