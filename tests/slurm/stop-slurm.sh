#!/usr/bin/env bash
# Stop the daemons that start-slurm.sh started, and only those: each is listed as
# "PID COMM" in $STATE_DIR/started and is killed by that PID after checking that the
# process still has that command name. Daemons that were already running before
# start-slurm.sh (not listed) are left alone; nothing is matched by name.
# The files of /etc/slurm that start-slurm.sh wrote ("file PATH") are put back as they were
# (removed if there was none), so that sinfo/scontrol do not wait for a controller that is
# gone. Installed packages and the munge key stay.
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

restore() { # restore PATH: the original from etc-backup, or no file if there was none
  local f=$1 b
  b=$STATE_DIR/etc-backup/$(basename "$f")
  if [[ -f $b ]]; then echo "stop-slurm: restoring $f"; cp -p "$b" "$f"; rm -f "$b"
  elif [[ -e $b.absent ]]; then echo "stop-slurm: removing $f"; rm -f "$f" "$b.absent"
  fi
}

# reverse start order: node daemon, controller, accounting, database, munge, then the files
mapfile -t entries < <(tac "$STARTED")
for entry in "${entries[@]}"; do
  read -r first second <<<"$entry"
  if [[ $first == file && -n $second ]]; then
    restore "$second"
  elif [[ $first =~ ^[0-9]+$ && -n $second ]]; then
    stop "$first" "$second"
  fi
done
: >"$STARTED"
exit 0
