#!/usr/bin/env bash
# Stop the daemons that start-slurm.sh started, and only those: each is listed as
# "PID COMM" in $STATE_DIR/started and is killed by that PID after checking that the
# process still has that command name. Daemons that were already running before
# start-slurm.sh (not listed) are left alone; nothing is matched by name.
# Packages, configuration and state are left in place.
set -uo pipefail
STATE_DIR=${STATE_DIR:-/tmp/lstmscope-slurm}
STARTED=$STATE_DIR/started
[[ -s $STARTED ]] || { echo "stop-slurm: nothing recorded in $STARTED"; exit 0; }

stop() { # stop PID COMM
  local pid=$1 comm=$2
  if [[ -r /proc/$pid/comm && $(<"/proc/$pid/comm") == "$comm" ]]; then
    echo "stop-slurm: stopping $comm (pid $pid)"
    kill "$pid"
    for _ in $(seq 1 60); do [[ -d /proc/$pid ]] || break; sleep 0.25; done
    if [[ -d /proc/$pid ]]; then echo "stop-slurm: $comm did not exit, SIGKILL"; kill -9 "$pid"; fi
  fi
}

# reverse start order: node daemon, controller, accounting, database, munge
mapfile -t entries < <(tac "$STARTED")
for entry in "${entries[@]}"; do
  read -r pid comm <<<"$entry"
  [[ $pid =~ ^[0-9]+$ && -n $comm ]] && stop "$pid" "$comm"
done
: >"$STARTED"
exit 0
