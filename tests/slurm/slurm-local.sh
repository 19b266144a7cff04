#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, on loopback only, for testing cluster submission
# for real (tests/test_slurm.py; also handy to try profiles/slurm before using a real site).
# Debian/Ubuntu, as root, with or without systemd (the daemons are started directly).
#
#   tests/slurm/slurm-local.sh start    install if missing, configure, start, health check
#   tests/slurm/slurm-local.sh stop     stop the daemons, each by its PID file
#   tests/slurm/slurm-local.sh status   exit 0 if every daemon runs
#
# What it sets up: munge, MariaDB + slurmdbd (so `sacct` works, which is what
# snakemake-executor-plugin-slurm polls by default), slurmctld, slurmd; one partition `debug`;
# two stand-in GPUs (plain files as gres devices) so that jobs asking for a GPU are scheduled and
# run on the CPU. SLURM_LOCAL_CPUS=N advertises N CPUs (more than the machine has: a stand-in for
# a bigger node). Starting twice is safe; a start that fails stops the daemons it started.
# Exit codes: 2 not root, 3 packages cannot be installed, 4 the cluster did not come up.
set -euo pipefail

PARTITION=debug
CLUSTER=hpalocal
NGPU=2
DB_PASS=hpa-slurm-local   # loopback-only MariaDB, reachable by root and slurm only
RUN=/run/slurm-local
PKGS=(slurm-wlm munge slurmdbd mariadb-server)
declare -A PIDFILE=(
  [munged]=/run/munge/munged.pid [mariadbd]=/run/mysqld/mysqld.pid
  [slurmdbd]=$RUN/slurmdbd.pid [slurmctld]=$RUN/slurmctld.pid [slurmd]=$RUN/slurmd.pid
)
STOP_ORDER=(slurmd slurmctld slurmdbd mariadbd munged)
STARTED=()  # daemons this run started, in order: what a failed start stops again
export DEBIAN_FRONTEND=noninteractive

log() { printf '[slurm-local %s] %s\n' "$(date +%T)" "$*" >&2; }
fail() { local code=$1; shift; log "ERROR: $*"; exit "$code"; }

# Running and not a zombie: under some sandboxes a killed daemon stays a zombie for a while,
# so `kill -0` alone would report it alive.
running() {
  local pf=${PIDFILE[$1]} pid state
  [ -s "$pf" ] || return 1
  pid=$(cat "$pf" 2>/dev/null) || return 1
  state=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1) || return 1
  [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

# Start a daemon unless it runs, remembering that this run started it.
start_daemon() { # name command...
  local name=$1; shift
  running "$name" && return 0
  "$@"
  STARTED+=("$name")
}

# On a failed start, stop (newest first) the daemons this run started, so that a half-up
# cluster does not linger; those that were up before stay up.
stop_started_on_failure() {
  local rc=$? i
  [ "$rc" = 0 ] || [ ${#STARTED[@]} = 0 ] && return 0
  log "start failed (exit $rc): stopping what this run started: ${STARTED[*]}"
  for ((i = ${#STARTED[@]} - 1; i >= 0; i--)); do stop_daemon "${STARTED[i]}"; done
  exit "$rc"
}

wait_until() { # seconds description command...
  local seconds=$1 what=$2 i; shift 2
  for ((i = 0; i < seconds * 2; i++)); do "$@" >/dev/null 2>&1 && return 0; sleep 0.5; done
  fail 4 "no $what after ${seconds}s (logs: /var/log/slurm-local/)"
}

install_packages() {
  local missing=() p
  for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  command -v apt-get >/dev/null || fail 3 "no apt-get: install ${missing[*]} by hand"
  log "installing ${missing[*]}"
  # The package index may be stale or empty on a fresh image: update once, then retry.
  timeout 600 apt-get install -y --no-install-recommends "${missing[@]}" >/tmp/slurm-local-apt.log 2>&1 \
    || { timeout 300 apt-get update >>/tmp/slurm-local-apt.log 2>&1 \
         && timeout 600 apt-get install -y --no-install-recommends "${missing[@]}" >>/tmp/slurm-local-apt.log 2>&1; } \
    || fail 3 "apt-get install ${missing[*]} failed: $(tail -3 /tmp/slurm-local-apt.log | tr '\n' ' ')"
}

# Install a generated file, reporting (exit 0) whether it changed.
put() { # path mode owner  <content
  local tmp; tmp=$(mktemp)
  cat >"$tmp"
  if cmp -s "$tmp" "$1"; then rm -f "$tmp"; return 1; fi
  install -m "$2" -o "$3" -g "$3" "$tmp" "$1"; rm -f "$tmp"
}

configure() {
  local host cpus mem changed=0 i
  host=$(hostname -s)
  # Daemons find their own entries by the short host name: it must resolve (to loopback here).
  getent hosts "$host" >/dev/null || echo "127.0.0.1 $host" >>/etc/hosts
  cpus=${SLURM_LOCAL_CPUS:-$(nproc)}
  # RealMemory above what slurmd detects makes the node INVAL; stay well below.
  mem=$(awk '/MemTotal/ {m = int($2 / 1024 * 0.85); print (m > 20000 ? 20000 : m)}' /proc/meminfo)
  mkdir -p /etc/slurm /etc/mysql/conf.d "$RUN" /run/munge /run/mysqld /var/log/slurm-local \
    /var/lib/slurm-local/ctld /var/lib/slurm-local/d
  chown slurm:slurm "$RUN" /var/log/slurm-local /var/lib/slurm-local/ctld
  chown munge:munge /run/munge; chown mysql:mysql /run/mysqld
  for ((i = 0; i < NGPU; i++)); do touch "/var/lib/slurm-local/gpu$i"; done
  if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 2>/dev/null
  fi
  chown munge:munge /etc/munge/munge.key; chmod 0400 /etc/munge/munge.key

  put /etc/slurm/slurm.conf 0644 root <<EOF && changed=1
# Written by tests/slurm/slurm-local.sh: one node, loopback only.
ClusterName=$CLUSTER
SlurmctldHost=$host(127.0.0.1)
# Bind to the address the host name resolves to (127.0.0.1), not to every interface.
CommunicationParameters=NoInAddrAny,NoCtldInAddrAny
AuthType=auth/munge
SlurmUser=slurm
$(if [ "$cpus" -gt "$(nproc)" ]; then
  echo "# More CPUs than the machine has (SLURM_LOCAL_CPUS): slurmd trusts this file, not the hardware."
  echo "SlurmdParameters=config_overrides"
fi)
StateSaveLocation=/var/lib/slurm-local/ctld
SlurmdSpoolDir=/var/lib/slurm-local/d
SlurmctldPidFile=${PIDFILE[slurmctld]}
SlurmdPidFile=${PIDFILE[slurmd]}
SlurmctldLogFile=/var/log/slurm-local/slurmctld.log
SlurmdLogFile=/var/log/slurm-local/slurmd.log
# No cgroups in containers: plain process tracking, no task binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Without it a job that gives no --mem would take the whole node.
DefMemPerCPU=1000
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStorageTRES=gres/gpu
# Keep sbatch --comment (Snakemake puts the rule name there) in the job records.
AccountingStoreFlags=job_comment
JobAcctGatherType=jobacct_gather/linux
MpiDefault=none
ReturnToService=2
MinJobAge=300
KillWait=5
GresTypes=gpu
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem Gres=gpu:$NGPU State=UNKNOWN
PartitionName=$PARTITION Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
  # A GPU gres needs device files; nothing opens them (no cgroups), the jobs run on the CPU.
  put /etc/slurm/gres.conf 0644 root <<EOF && changed=1
NodeName=$host Name=gpu File=/var/lib/slurm-local/gpu[0-$((NGPU - 1))]
EOF
  put /etc/slurm/slurmdbd.conf 0600 slurm <<EOF && changed=1
AuthType=auth/munge
CommunicationParameters=NoInAddrAny
DbdAddr=127.0.0.1
DbdHost=localhost
SlurmUser=slurm
PidFile=${PIDFILE[slurmdbd]}
LogFile=/var/log/slurm-local/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
  if [ "$changed" = 1 ]; then # a running daemon would keep the old configuration
    for d in slurmd slurmctld slurmdbd; do stop_daemon "$d"; done
  fi
}

start_mariadbd() {
  setsid nohup /usr/sbin/mariadbd --user=mysql --bind-address=127.0.0.1 --skip-name-resolve \
    --pid-file="${PIDFILE[mariadbd]}" >/var/log/slurm-local/mariadbd.log 2>&1 </dev/null &
}

start_daemons() {
  start_daemon munged runuser -u munge -- /usr/sbin/munged
  wait_until 20 munge sh -c 'munge -n | unmunge'

  [ -d /var/lib/mysql/mysql ] || mariadb-install-db --user=mysql >/var/log/slurm-local/mariadb-install.log 2>&1
  start_daemon mariadbd start_mariadbd
  wait_until 60 MariaDB mariadb-admin ping
  # ALTER as well as CREATE: a slurm user left by an earlier install keeps its own password
  # otherwise, and slurmdbd (which logs in with DB_PASS) is refused.
  mariadb -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
    CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
    ALTER USER 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"

  start_daemon slurmdbd /usr/sbin/slurmdbd
  wait_until 60 slurmdbd sacctmgr -n list cluster
  sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER" || sacctmgr -i add cluster "$CLUSTER" >/dev/null

  start_daemon slurmctld /usr/sbin/slurmctld
  wait_until 30 slurmctld scontrol ping
  start_daemon slurmd /usr/sbin/slurmd
  wait_until 30 "registered node" sh -c "sinfo -h -N -o %T | grep -qv '^unk'"
  # A node left down by an unclean stop comes back.
  sinfo -h -N -o %T | grep -qE 'down|drain' && scontrol update NodeName="$(hostname -s)" State=RESUME
  wait_until 30 "idle node" sh -c "sinfo -h -N -o %T | grep -qE '^(idle|mixed|allocated)'"
}

health_check() {
  local job
  job=$(sbatch --parsable -t 1 --mem=50 --gpus=1 -o /dev/null --wrap true) || fail 4 "sbatch refused a 1-GPU job"
  wait_until 60 "completed test job $job" sh -c "scontrol show job -o $job | grep -q JobState=COMPLETED"
  # The accounting record (state, GPU request) reaches slurmdbd a moment after the job ends.
  wait_until 60 "sacct record of job $job with its GPU request" \
    sh -c "sacct -X -n -P -j $job -o State,ReqTRES | grep -q '^COMPLETED|.*gres/gpu=1'"
  log "up: sbatch, GPU gres and sacct work (test job $job)"
}

stop_daemon() {
  local name=$1 pid i
  if running "$name"; then
    pid=$(cat "${PIDFILE[$name]}")
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 60; i++)); do running "$name" || break; sleep 0.5; done
    if running "$name"; then log "$name ignored TERM: KILL"; kill -KILL "$pid" 2>/dev/null || true; fi
  fi
  rm -f "${PIDFILE[$name]}"
}

status() {
  local name rc=0
  for name in "${STOP_ORDER[@]}"; do
    if running "$name"; then echo "$name: running (pid $(cat "${PIDFILE[$name]}"))"; else echo "$name: stopped"; rc=1; fi
  done
  return $rc
}

[ "$(id -u)" = 0 ] || fail 2 "must run as root (it installs packages and starts daemons)"
case "${1:-start}" in
  start) trap stop_started_on_failure EXIT; install_packages; configure; start_daemons; health_check ;;
  stop) for d in "${STOP_ORDER[@]}"; do stop_daemon "$d"; done ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 1 ;;
esac
