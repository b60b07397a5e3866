#!/usr/bin/env bash
# Stop the one-node SLURM that setup.sh started in STATE_DIR: only the daemons named by its pid files,
# and the /etc/slurm/slurm.conf symlink only if setup.sh made it. Safe to run twice.
#
#   cluster/local-slurm/teardown.sh [STATE_DIR]   (default /tmp/xttsflow-slurm)
#   KEEP_STATE=1 keeps STATE_DIR (logs) for a post-mortem.
set -uo pipefail

STATE="$(realpath -m "${1:-${XTTSFLOW_SLURM_DIR:-/tmp/xttsflow-slurm}}")"
[ -d "$STATE" ] || exit 0
[ -f "$STATE/local-slurm.state" ] || { echo "local-slurm teardown: $STATE is no local-slurm folder" >&2; exit 1; }

stop() {  # stop the process in pid file $1, waiting up to 10 s before SIGKILL
  local pidfile="$STATE/$1" pid
  [ -s "$pidfile" ] || return 0
  pid="$(cat "$pidfile")"
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null
  for _ in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.2
  done
  kill -KILL "$pid" 2>/dev/null || true
}

# Jobs first (they would otherwise outlive slurmd), then the daemons in reverse start order.
if [ -f "$STATE/slurm.conf" ] && [ -s "$STATE/slurmctld.pid" ]; then
  SLURM_CONF="$STATE/slurm.conf" timeout 10 scancel --quiet --state=RUNNING,PENDING -u root 2>/dev/null || true
fi
stop slurmd.pid
stop slurmctld.pid
stop munged.pid

if [ -f "$STATE/created-etc-symlink" ]; then
  link="$(cat "$STATE/created-etc-symlink")"
  [ "$(readlink "$link" || true)" = "$STATE/slurm.conf" ] && rm -f "$link"
fi
[ "${KEEP_STATE:-0}" = 1 ] || rm -rf "$STATE"
exit 0
