#!/usr/bin/env bash
# A loopback Slurm cluster of this one machine, for tests: munged, slurmctld and slurmd
# started by hand (no systemd), everything (slurm.conf, munge key and socket, state, spool,
# logs, PID files) under one state folder. Needs root and the Debian packages slurm-wlm and
# munge (scripts/install-deps.sh). Slurm's clients find the cluster through SLURM_CONF.
#
# Usage: bash scripts/slurm-local.sh start|stop|status
#   ALIGN2_SLURM_DIR  the state folder (default: ${TMPDIR:-/tmp}/align2-slurm); start creates it
#   ALIGN2_SLURM_CPUS the node's CPUs (default: nproc, at least 2)
#   start   writes the configuration, starts the daemons, waits until the node is idle
#           (0.1-0.5 s), prints `export SLURM_CONF=...` on stdout
#   stop    cancels this cluster's jobs, stops the daemons by their PIDs (the folder stays)
#   status  says which daemons run and what sinfo shows; exit 0 when the cluster answers
#
# The node: `hostname -s` at 127.0.0.1, CPUs = nproc (at least 2), RealMemory from /proc/meminfo, one
# partition "debug" (Default=YES). ProctrackType=proctrack/linuxproc and TaskPlugin=task/none
# (no cgroups), SelectType=select/cons_tres, MpiDefault=pmix (Debian's Open MPI 4.1.4 starts
# under `srun --mpi=pmix`; pmi2 and none do not). Ports: the first free pair from 16817 (or
# ALIGN2_SLURM_PORT). One slurmd only: two slurmd on one host run mpirun jobs but not srun+pmix.
set -euo pipefail

state=${ALIGN2_SLURM_DIR:-${TMPDIR:-/tmp}/align2-slurm}
conf=$state/slurm.conf
export SLURM_CONF=$conf

die() { echo "slurm-local: $*" >&2; exit 1; }

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

listening_ports() {  # TCP ports in state LISTEN (IPv4 and IPv6), one per line, in decimal
  local sl local_address rest
  for f in /proc/net/tcp /proc/net/tcp6; do
    [ -r "$f" ] || continue
    while read -r sl local_address _ st rest; do
      [ "$st" = 0A ] && echo $((16#${local_address##*:}))
    done < <(tail -n +2 "$f")
  done
}

write_conf() {
  local host cpus mem port
  host=$(hostname -s)
  cpus=${ALIGN2_SLURM_CPUS:-$(nproc)}
  [ "$cpus" -ge 2 ] || cpus=2  # the tests run 2 ranks; config_overrides lets slurmd accept more CPUs than it has
  mem=$(awk '/^MemTotal:/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
  port=${ALIGN2_SLURM_PORT:-16817}
  if [ -z "${ALIGN2_SLURM_PORT:-}" ]; then
    local busy
    busy=" $(listening_ports | tr '\n' ' ') "
    while [[ "$busy" == *" $port "* || "$busy" == *" $((port + 1)) "* ]]; do
      port=$((port + 2))
      [ "$port" -lt 17817 ] || die "no free port pair in 16817..17816"
    done
  fi
  mkdir -p "$state/state" "$state/spool" "$state/log" "$state/run" "$state/munge"
  chmod 700 "$state/munge"
  cat > "$conf" <<EOF
# Loopback Slurm written by scripts/slurm-local.sh (test use only).
ClusterName=align2-local
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire=5: a requeued job may start again 6 s later (Slurm's default is 120 s).
AuthInfo=socket=$state/munge/munge.socket,cred_expire=5
StateSaveLocation=$state/state
SlurmdSpoolDir=$state/spool
SlurmctldPidFile=$state/run/slurmctld.pid
SlurmdPidFile=$state/run/slurmd.pid
SlurmctldLogFile=$state/log/slurmctld.log
SlurmdLogFile=$state/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=pmix
SwitchType=switch/none
LaunchType=launch/slurm
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
# Look at pending jobs every second (default 60 s / 30 s), so a requeued job starts at once.
SchedulerParameters=sched_interval=1,bf_interval=1
MailProg=/bin/true
ReturnToService=2
SlurmdParameters=config_overrides
SlurmdTimeout=300
SlurmctldTimeout=120
InactiveLimit=0
KillWait=10
MinJobAge=600
MaxJobCount=10000
PlugStackConfig=$state/plugstack.conf
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
  : > "$state/plugstack.conf"
  if [ ! -s "$state/munge/munge.key" ]; then
    if command -v mungekey > /dev/null; then
      mungekey --create --keyfile="$state/munge/munge.key" --force
    else
      dd if=/dev/urandom of="$state/munge/munge.key" bs=1024 count=1 status=none
    fi
  fi
  chmod 400 "$state/munge/munge.key"
}

wait_ready() {
  local deadline=$((SECONDS + 30))
  until [ "$(sinfo -h -n "$(hostname -s)" -o %T 2>/dev/null)" = idle ]; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "slurm-local: the node is not idle after 30 s; logs:" >&2
      tail -n 20 "$state/log/slurmctld.log" "$state/log/slurmd.log" >&2 || true
      sinfo -R >&2 || true
      exit 1
    fi
    sleep 0.05
  done
}

t0=0
phase() { [ -z "${ALIGN2_SLURM_VERBOSE:-}" ] || echo "slurm-local: $(( ($(date +%s%N) - t0) / 1000000 )) ms $1" >&2; }

start() {
  command -v slurmctld > /dev/null && command -v munged > /dev/null ||
    die "slurm-wlm and munge are not installed (bash scripts/install-deps.sh)"
  [ "$(id -u)" = 0 ] || die "needs root (SlurmUser=root)"
  if pid_alive "$state/run/slurmctld.pid" || pid_alive "$state/run/slurmd.pid" || pid_alive "$state/run/munged.pid"; then
    die "already running under $state (bash scripts/slurm-local.sh stop first)"
  fi
  # A daemon that exits deletes its PID file, and munged its socket: a second cluster started
  # over a running one's folder would lose both when the first one stops.
  [ ! -S "$state/munge/munge.socket" ] ||
    die "$state/munge/munge.socket exists: a cluster may run on this folder (stop it; or delete the socket if stale)"
  t0=$(date +%s%N)
  write_conf
  phase "configured"
  munged --key-file="$state/munge/munge.key" --socket="$state/munge/munge.socket" \
    --pid-file="$state/run/munged.pid" --log-file="$state/log/munged.log" \
    --seed-file="$state/munge/munged.seed" --force
  phase "munged"
  slurmctld -i -f "$conf"   # -i: ignore state files (a fresh cluster every time)
  phase "slurmctld"
  slurmd -f "$conf" -N "$(hostname -s)"
  phase "slurmd"
  wait_ready
  phase "idle"
  local ms=$((($(date +%s%N) - t0) / 1000000))
  echo "slurm-local: up in $ms ms: node $(hostname -s), $(grep -o " CPUs=[0-9]*" "$conf" | cut -d= -f2) CPUs, ports $(awk -F= '/^SlurmctldPort=/ {print $2}' "$conf")/$(awk -F= '/^SlurmdPort=/ {print $2}' "$conf"), state $state" >&2
  echo "export SLURM_CONF=$conf"
}

stop_daemons() {  # SIGTERM to every daemon at once (each takes ~2 s to exit), SIGKILL after 15 s
  local n pids=() files=() i
  for n in slurmd slurmctld munged; do
    if pid_alive "$state/run/$n.pid"; then
      pids+=("$(cat "$state/run/$n.pid")")
      files+=("$state/run/$n.pid")
    fi
  done
  ((${#pids[@]})) || return 0
  kill "${pids[@]}" 2>/dev/null || true
  for i in $(seq 300); do
    kill -0 "${pids[@]}" 2>/dev/null || break  # true while any is alive
    sleep 0.05
  done
  for n in "${pids[@]}"; do
    if kill -0 "$n" 2>/dev/null; then
      echo "slurm-local: pid $n ignores SIGTERM; SIGKILL" >&2
      kill -9 "$n" 2>/dev/null || true
    fi
  done
  rm -f "${files[@]}"
}

stop() {
  t0=$(date +%s%N)
  if [ -f "$conf" ] && pid_alive "$state/run/slurmctld.pid"; then
    scancel --user="$(id -un)" 2>/dev/null || true
    local i
    for i in $(seq 200); do  # up to 10 s for the jobs' steps to end
      [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break
      sleep 0.05
    done
  fi
  phase "jobs ended"
  stop_daemons
  echo "slurm-local: stopped in $((($(date +%s%N) - t0) / 1000000)) ms (state and logs stay in $state)" >&2
}

status() {
  local n rc=0
  for n in munged slurmctld slurmd; do
    if pid_alive "$state/run/$n.pid"; then echo "$n: running (pid $(cat "$state/run/$n.pid"))"; else echo "$n: not running"; rc=1; fi
  done
  if [ -f "$conf" ]; then
    echo "SLURM_CONF=$conf"
    scontrol ping 2>&1 | sed 's/^/  /' || rc=1
    sinfo 2>&1 | sed 's/^/  /' || rc=1
  fi
  return $rc
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: bash scripts/slurm-local.sh start|stop|status   (state folder: ALIGN2_SLURM_DIR, default $state)" >&2; exit 2 ;;
esac
