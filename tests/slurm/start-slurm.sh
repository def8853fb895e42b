#!/usr/bin/env bash
# Stand up a real single-node Slurm cluster on localhost (Debian 12, root, no systemd),
# for lstmscope's workflow test of profiles/slurm (tests/test_slurm.py).
# Idempotent: installs what is missing, (re)writes the config, starts only what is
# not already running, restarts slurmctld/slurmd when the config changed.
#
# Usage:  start-slurm.sh                     # munge + slurmctld + slurmd, no accounting
#         SLURM_GPUS=1 start-slurm.sh        # + a GRES "gpu" count on the node (no device
#                                            #   behind it), so jobs asking for GPUs are scheduled
#         SLURM_ACCOUNTING=1 start-slurm.sh  # + MariaDB + slurmdbd, so sacct works
#         SLURM_CPU_FACTOR=4 start-slurm.sh  # the node declares 4x its CPUs (config_overrides), so
#                                            #   short jobs overlap their start-up latency
#
# Every daemon this script starts is recorded as "PID COMM" in $STATE_DIR/started, every file
# of /etc/slurm it writes as "file PATH" (the original is kept in $STATE_DIR/etc-backup);
# stop-slurm.sh stops exactly those processes, nothing that was running before, and puts the
# files back as they were.
set -euo pipefail

STATE_DIR=${STATE_DIR:-/tmp/lstmscope-slurm}
SLURM_GPUS=${SLURM_GPUS:-0}
SLURM_ACCOUNTING=${SLURM_ACCOUNTING:-0}
SLURM_CPU_FACTOR=${SLURM_CPU_FACTOR:-1}
CLUSTER=${SLURM_CLUSTER_NAME:-localcluster}
PARTITION=${SLURM_PARTITION:-debug}
MYSQL_PORT=${SLURM_MYSQL_PORT:-3306}
CONF=/etc/slurm/slurm.conf
DBDCONF=/etc/slurm/slurmdbd.conf

log() { printf '[start-slurm %(%H:%M:%S)T] %s\n' -1 "$*"; }

# pid_alive PIDFILE COMM -> 0 if the pidfile names a live process whose comm is COMM
pid_alive() {
  local f=$1 comm=$2 pid
  [[ -s $f ]] || return 1
  pid=$(<"$f")
  [[ -r /proc/$pid/comm ]] || return 1
  [[ $(<"/proc/$pid/comm") == "$comm" ]]
}

install -d "$STATE_DIR"
STARTED=$STATE_DIR/started
touch "$STARTED"
# record_started PIDFILE COMM: remember a daemon this script started (after it wrote its pidfile)
record_started() {
  local f=$1 comm=$2 end=$((SECONDS + 15))
  until pid_alive "$f" "$comm"; do
    if (( SECONDS >= end )); then log "$comm did not write $f"; return 1; fi
    sleep 0.2
  done
  echo "$(<"$f") $comm" >>"$STARTED"
}

# remember_file PATH: before this script first writes PATH, keep the original (or the fact that there
# was none) in $STATE_DIR/etc-backup, so that stop-slurm.sh can put it back. A left-over slurm.conf
# naming a controller that is no longer running makes every sinfo/scontrol call (and so every
# Snakemake start with the SLURM plugin installed) wait about 9 s for it.
remember_file() {
  local f=$1 b
  b=$STATE_DIR/etc-backup/$(basename "$f")
  [[ -e $b || -e $b.absent ]] && return 0
  install -d "$STATE_DIR/etc-backup"
  if [[ -f $f ]]; then cp -p "$f" "$b"; else touch "$b.absent"; fi
  echo "file $f" >>"$STARTED"
}

wait_for() { # wait_for SECONDS DESCRIPTION CMD...
  local t=$1 what=$2; shift 2
  local end=$((SECONDS + t))
  until "$@" >/dev/null 2>&1; do
    if (( SECONDS >= end )); then log "timed out waiting for $what"; return 1; fi
    sleep 0.5
  done
}

# ---------------------------------------------------------------- 1. packages
pkgs=(munge slurmctld slurmd slurm-client)
[[ $SLURM_ACCOUNTING == 1 ]] && pkgs+=(slurmdbd mariadb-server)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if (( ${#missing[@]} )); then
  log "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # policy-rc.d on these machines stops postinst from starting services; we start them by hand.
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# ---------------------------------------------------------------- 2. munge
if [[ ! -s /etc/munge/munge.key ]]; then
  log "creating munge key"
  install -d -o munge -g munge -m 0700 /etc/munge
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
  chown munge:munge /etc/munge/munge.key; chmod 0400 /etc/munge/munge.key
fi
install -d -o munge -g munge -m 0755 /run/munge
if ! pid_alive /run/munge/munged.pid munged; then
  log "starting munged"
  rm -f /run/munge/munged.pid
  runuser -u munge -- /usr/sbin/munged --force   # --force: ignore a stale socket
  record_started /run/munge/munged.pid munged
fi
wait_for 10 munge bash -c 'munge -n | unmunge'

# ---------------------------------------------------------------- 3. MariaDB + slurmdbd (optional)
if [[ $SLURM_ACCOUNTING == 1 ]]; then
  M=$STATE_DIR/mysql
  install -d -o mysql -g mysql "$M" "$M/data"
  if [[ ! -d $M/data/mysql ]]; then
    log "initialising MariaDB datadir $M/data"
    mariadb-install-db --no-defaults --user=mysql --datadir="$M/data" \
      --auth-root-authentication-method=socket --skip-test-db >"$M/install-db.log" 2>&1
  fi
  if ! pid_alive "$M/mysqld.pid" mariadbd; then
    log "starting mariadbd on 127.0.0.1:$MYSQL_PORT"
    setsid /usr/sbin/mariadbd --no-defaults --user=mysql --datadir="$M/data" \
      --socket="$M/mysqld.sock" --pid-file="$M/mysqld.pid" \
      --bind-address=127.0.0.1 --port="$MYSQL_PORT" --log-error="$M/mysqld.err" \
      --innodb-buffer-pool-size=128M --innodb-lock-wait-timeout=900 \
      </dev/null >/dev/null 2>&1 &
    record_started "$M/mysqld.pid" mariadbd
  fi
  wait_for 60 mariadb mariadb --no-defaults -S "$M/mysqld.sock" -uroot -e 'select 1'
  mariadb --no-defaults -S "$M/mysqld.sock" -uroot <<'SQL'
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm';
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurm';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
FLUSH PRIVILEGES;
SQL
  new_dbd=$(cat <<EOF
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=6819
SlurmUser=root
LogFile=/var/log/slurm/slurmdbd.log
PidFile=/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$MYSQL_PORT
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
EOF
)
  if [[ ! -f $DBDCONF || $(<"$DBDCONF") != "$new_dbd" ]]; then
    printf '%s\n' "$new_dbd" >"$DBDCONF"; chmod 600 "$DBDCONF"
    if pid_alive /run/slurmdbd.pid slurmdbd; then kill "$(</run/slurmdbd.pid)"; sleep 1; fi
  fi
  if ! pid_alive /run/slurmdbd.pid slurmdbd; then
    log "starting slurmdbd"
    /usr/sbin/slurmdbd
    record_started /run/slurmdbd.pid slurmdbd
  fi
  wait_for 60 slurmdbd bash -c 'exec 3<>/dev/tcp/127.0.0.1/6819'
  acct_lines="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30"
else
  acct_lines="AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none"
fi

# ---------------------------------------------------------------- 4. slurm.conf (+ gres.conf)
restart=0
HOST=$(hostname -s)
CPUS=$(( $(nproc) * SLURM_CPU_FACTOR ))
# more CPUs than the machine has: slurmd must take the configured count instead of draining the node
override_lines=""
if (( SLURM_CPU_FACTOR > 1 )); then override_lines="SlurmdParameters=config_overrides"; fi
# slurmd -C reports what slurmd will see; configure 95% of it so the node is
# never drained for "Low RealMemory".
MEM=$(slurmd -C 2>/dev/null | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
MEM=$(( ${MEM:-$(awk '/MemTotal/{print int($2/1024)}' /proc/meminfo)} * 95 / 100 ))
GRES_CONF=/etc/slurm/gres.conf
if (( SLURM_GPUS > 0 )); then
  # A GRES "gpu" backed by character devices that are not GPUs (/dev/null, /dev/zero, ...):
  # Slurm schedules --gpus/--gres=gpu requests against it, the job itself sees no CUDA
  # device (training.device: auto then falls back to the CPU).
  devs=(/dev/null /dev/zero /dev/full /dev/random /dev/urandom)
  (( SLURM_GPUS <= ${#devs[@]} )) || { log "SLURM_GPUS at most ${#devs[@]}"; exit 1; }
  gres_lines="GresTypes=gpu"
  node_gres=" Gres=gpu:$SLURM_GPUS"
  new_gres=""
  for ((i = 0; i < SLURM_GPUS; i++)); do
    new_gres+="NodeName=$HOST Name=gpu File=${devs[i]}"$'\n'
  done
  new_gres=${new_gres%$'\n'}
else
  gres_lines=""
  node_gres=""
  new_gres=""
fi
if [[ ! -f $GRES_CONF || $(<"$GRES_CONF") != "$new_gres" ]]; then
  remember_file "$GRES_CONF"
  printf '%s\n' "$new_gres" >"$GRES_CONF"
  restart=1
fi

new_conf=$(cat <<EOF
# Single-node test cluster on localhost - generated by start-slurm.sh
ClusterName=$CLUSTER
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
$override_lines
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
JobCompType=jobcomp/none
MailProg=/bin/true
EnforcePartLimits=ALL
$acct_lines
$gres_lines
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
# keep finished jobs visible to squeue for 5 min (the Snakemake plugin's
# squeue status mode requires MinJobAge >= 3 * init-seconds-before-status-checks)
MinJobAge=300
KillWait=5
Waittime=0
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM$node_gres State=UNKNOWN
PartitionName=$PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
)
if [[ ! -f $CONF || $(<"$CONF") != "$new_conf" ]]; then
  log "writing $CONF"
  remember_file "$CONF"
  printf '%s\n' "$new_conf" >"$CONF"
  restart=1
fi

# ---------------------------------------------------------------- 5. slurmctld + slurmd
stop_daemon() { # stop_daemon PIDFILE COMM
  if pid_alive "$1" "$2"; then
    local pid; pid=$(<"$1"); kill "$pid"
    for _ in $(seq 1 40); do [[ -d /proc/$pid ]] || break; sleep 0.25; done
  fi
}
if (( restart )); then
  stop_daemon /run/slurmd.pid slurmd
  stop_daemon /run/slurmctld.pid slurmctld
fi
install -d /var/lib/slurm/slurmctld /var/lib/slurm/slurmd /var/log/slurm
if ! pid_alive /run/slurmctld.pid slurmctld; then
  log "starting slurmctld"
  /usr/sbin/slurmctld -i          # daemonises, writes /run/slurmctld.pid
  record_started /run/slurmctld.pid slurmctld
fi
wait_for 30 slurmctld bash -c 'scontrol ping | grep -q UP'
if ! pid_alive /run/slurmd.pid slurmd; then
  log "starting slurmd"
  /usr/sbin/slurmd                # daemonises, writes /run/slurmd.pid
  record_started /run/slurmd.pid slurmd
fi
node_ready() {
  local st; st=$(sinfo -h -n "$HOST" -o %T 2>/dev/null | head -1)
  case $st in
    idle|mixed|allocated|completing) return 0 ;;
    down*|drain*|fail*) scontrol update NodeName="$HOST" State=RESUME >/dev/null 2>&1 || true; return 1 ;;
    *) return 1 ;;
  esac
}
wait_for 60 "node $HOST idle" node_ready
log "cluster up: $(sinfo -h -o '%P %a %D %T %N' | tr '\n' ' ')"
if [[ $SLURM_ACCOUNTING == 1 ]]; then
  wait_for 30 "cluster registered in slurmdbd" bash -c "sacctmgr -n -P list cluster format=cluster | grep -qx $CLUSTER"
  log "accounting: $(sacctmgr -n -P list cluster format=cluster,controlhost,controlport)"
fi
