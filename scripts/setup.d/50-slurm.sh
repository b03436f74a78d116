#!/usr/bin/env bash
# A real one-node Slurm cluster on this machine (Debian's slurm-wlm + munge) for the Slurm
# backend's tests: installs only what is missing, writes the munge key and slurm.conf only when
# they are absent or stale, starts munged, slurmctld and slurmd only when they do not answer
# (PIDs in $PFCON_STATE_DIR), and waits until the node is idle. No stdin is needed.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

conf_dir=/etc/slurm
conf="$conf_dir/slurm.conf"
node="$(hostname -s)"
partition=pfcon

need_packages=()
command -v slurmctld >/dev/null || need_packages+=(slurm-wlm)
command -v munged >/dev/null || need_packages+=(munge)
apt_install "${need_packages[@]}"

# -- munge: a key owned by munge, and munged running as munge ---------------------------------
if ! munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
  require_root "munge does not answer"
  if [[ ! -s /etc/munge/munge.key ]]; then
    mungekey -c -f -k /etc/munge/munge.key
  fi
  chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
  install -d -o munge -g munge -m 0755 /run/munge
  install -d -o munge -g munge -m 0700 /var/lib/munge /var/log/munge
  echo "starting munged ..."
  # munged forks into the background itself; its PID is in /run/munge/munged.pid
  setsid runuser -u munge -- munged --force </dev/null >"$PFCON_STATE_DIR/munged.log" 2>&1
  wait_until 20 "munge -n </dev/null | unmunge" || { echo "munged did not start" >&2; exit 1; }
  cp /run/munge/munged.pid "$PFCON_STATE_DIR/munged.pid" 2>/dev/null || true
fi

# -- slurm.conf: this machine as the controller and the only node -----------------------------
# RealMemory is what slurmd itself measures, so the node is never drained for "low memory".
real_memory="$(slurmd -C 2>/dev/null | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' | head -n1)"
[[ -n "$real_memory" ]] || real_memory=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 ))
cpus=$(nproc); ((cpus <= 2)) || cpus=2  # two CPUs, as on the project's machines
wanted="$(cat <<EOF
# written by pfcon's scripts/setup.d/50-slurm.sh: a one-node test cluster
ClusterName=pfcon
SlurmctldHost=$node
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=256
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ReturnToService=2
MinJobAge=300
KillWait=10
MessageTimeout=10
NodeName=$node CPUs=$cpus RealMemory=$real_memory State=UNKNOWN
PartitionName=$partition Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
)"
changed=no
if [[ ! -f "$conf" ]] || [[ "$(cat "$conf")" != "$wanted" ]]; then
  require_root "slurm.conf is missing or stale"
  mkdir -p "$conf_dir"
  printf '%s\n' "$wanted" >"$conf"
  changed=yes
fi
mkdir -p /var/spool/slurmctld /var/spool/slurmd /var/log/slurm

# -- daemons -----------------------------------------------------------------------------------
start_daemon() {  # start_daemon NAME — runs it in the foreground of its own session
  echo "starting $1 ..."
  setsid "$1" -D </dev/null >"$PFCON_STATE_DIR/$1.log" 2>&1 &
  echo $! >"$PFCON_STATE_DIR/$1.pid"
}
if ! scontrol ping 2>/dev/null | grep -q 'is UP'; then
  require_root "slurmctld does not answer"
  start_daemon slurmctld
  wait_until 30 "scontrol ping | grep -q 'is UP'" || {
    echo "slurmctld did not start; see $PFCON_STATE_DIR/slurmctld.log" >&2; exit 1; }
elif [[ "$changed" == yes ]]; then
  scontrol reconfigure
fi
if ! pgrep -x slurmd >/dev/null; then
  require_root "slurmd is not running"
  start_daemon slurmd
fi
# a node left down or drained by an earlier run comes back
if sinfo -h -n "$node" -o %T 2>/dev/null | grep -Eq 'down|drain|fail'; then
  scontrol update NodeName="$node" State=RESUME || true
fi
wait_until 60 "sinfo -h -n '$node' -o %T | grep -Eq '^(idle|mixed|allocated)'" || {
  echo "node $node did not become available: $(sinfo -h -N -o '%N %T %E' 2>&1)" >&2; exit 1; }
echo "slurm: node $node $(sinfo -h -n "$node" -o %T) in partition $partition"
