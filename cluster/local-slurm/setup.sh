#!/usr/bin/env bash
# Start a one-node SLURM on localhost (munged + slurmctld + slurmd), for the cluster test and for trying
# profiles/slurm on one machine. Needs root and Debian's slurm-wlm + munge (`make system-deps`).
#
#   cluster/local-slurm/setup.sh [STATE_DIR]      (default /tmp/xttsflow-slurm)
#
# Everything it writes lives in STATE_DIR, except the /etc/slurm/slurm.conf symlink that job steps need
# (the slurm jobstep plugin drops SLURM_CONF); an existing /etc/slurm/slurm.conf is never replaced.
# On success it prints shell lines to `eval`: SLURM_CONF=..., XTTSFLOW_SLURM_PARTITION=...,
# XTTSFLOW_SLURM_GPU_PARTITION=...
# cluster/local-slurm/teardown.sh STATE_DIR stops exactly the daemons started here (by pid file).
# Knobs (environment): SLURM_NODE_CPUS (16), SLURM_NODE_MEM_MB (65536), SLURM_NODE_GPUS (1),
# SLURM_PARTITION (local), SLURM_GPU_PARTITION (local-gpu), SLURM_CTLD_PORT (16817), SLURM_SLURMD_PORT (16818).
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
STATE="$(realpath -m "${1:-${XTTSFLOW_SLURM_DIR:-/tmp/xttsflow-slurm}}")"
CPUS="${SLURM_NODE_CPUS:-16}"
MEM_MB="${SLURM_NODE_MEM_MB:-65536}"
GPUS="${SLURM_NODE_GPUS:-1}"
PARTITION="${SLURM_PARTITION:-local}"
GPU_PARTITION="${SLURM_GPU_PARTITION:-local-gpu}"
CTLD_PORT="${SLURM_CTLD_PORT:-16817}"
SLURMD_PORT="${SLURM_SLURMD_PORT:-16818}"
NODE="$(hostname -s)"
ETC_CONF=/etc/slurm/slurm.conf

die() { echo "local-slurm setup: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "needs root (it starts munged, slurmctld and slurmd as root); run it with sudo"
for bin in munged slurmctld slurmd sinfo scontrol mknod; do
  command -v "$bin" >/dev/null || die "'$bin' not found: install Debian's slurm-wlm and munge (make system-deps)"
done
for pidfile in munged.pid slurmctld.pid slurmd.pid; do
  if [ -s "$STATE/$pidfile" ] && kill -0 "$(cat "$STATE/$pidfile")" 2>/dev/null; then
    die "a daemon from an earlier setup still runs ($STATE/$pidfile); run teardown.sh $STATE first"
  fi
done
# A dangling symlink is a leftover of a setup whose state is gone (e.g. a crashed test): not a live SLURM.
if [ -L "$ETC_CONF" ] && [ ! -e "$ETC_CONF" ]; then rm -f "$ETC_CONF"; fi
if [ -e "$ETC_CONF" ]; then
  [ "$(readlink "$ETC_CONF" || true)" = "$STATE/slurm.conf" ] ||
    die "$ETC_CONF exists and is not this setup's symlink; this host has its own SLURM - use that one"
fi

# A fresh state directory: private, since munged refuses key and socket paths others can write. Only an
# empty folder or an earlier state of this script is ever emptied.
if [ -d "$STATE" ] && [ -n "$(ls -A "$STATE")" ] && [ ! -f "$STATE/local-slurm.state" ]; then
  die "$STATE is not empty and not a local-slurm folder; give an empty or new folder"
fi
rm -rf "$STATE"
mkdir -p "$STATE"/{munge,ctld,slurmd,log,dev}
chmod 700 "$STATE" "$STATE/munge"
echo "state of cluster/local-slurm/setup.sh; stop with teardown.sh $STATE" >"$STATE/local-slurm.state"
trap 'echo "local-slurm setup failed; stop what it started: $HERE/teardown.sh $STATE" >&2' ERR

# munged with its own key, socket and pid file, so a munged the host may run is left alone.
dd if=/dev/urandom of="$STATE/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$STATE/munge/munge.key"
munged --force --key-file="$STATE/munge/munge.key" --socket="$STATE/munge/munge.socket" \
  --pid-file="$STATE/munged.pid" --log-file="$STATE/log/munged.log" --seed-file="$STATE/munge/munged.seed"

# Stand-in GPU device files for gres.conf (SLURM wants character devices there).
for ((i = 0; i < GPUS; i++)); do mknod "$STATE/dev/gpu$i" c 1 3; done

fill() {
  sed -e "s|@STATE@|$STATE|g" -e "s|@HOST@|$NODE|g" -e "s|@NODE@|$NODE|g" -e "s|@CPUS@|$CPUS|g" \
    -e "s|@MEM_MB@|$MEM_MB|g" -e "s|@GPUS@|$GPUS|g" -e "s|@LAST_GPU@|$((GPUS - 1))|g" \
    -e "s|@PARTITION@|$PARTITION|g" -e "s|@GPU_PARTITION@|$GPU_PARTITION|g" \
    -e "s|@CTLD_PORT@|$CTLD_PORT|g" -e "s|@SLURMD_PORT@|$SLURMD_PORT|g" \
    -e "s|@DEF_MEM_PER_CPU@|$((MEM_MB / CPUS))|g" "$1" >"$2"
}
fill "$HERE/slurm.conf.in" "$STATE/slurm.conf"
fill "$HERE/gres.conf.in" "$STATE/gres.conf"

# Job steps read /etc/slurm/slurm.conf (the jobstep plugin drops SLURM_CONF). Past the checks above it is
# absent or already this setup's own link; either way teardown.sh removes it.
if [ ! -L "$ETC_CONF" ]; then
  mkdir -p /etc/slurm
  ln -s "$STATE/slurm.conf" "$ETC_CONF"
fi
echo "$ETC_CONF" >"$STATE/created-etc-symlink"

export SLURM_CONF="$STATE/slurm.conf"
# -c: start from an empty job state; -f: absolute config path (the daemons resolve gres.conf beside it).
slurmctld -c -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF" -N "$NODE"

# Ready when the node is idle (about 1 s after the start on a 2-core VM).
for _ in $(seq 1 100); do
  state="$(sinfo -h -N -o %t 2>/dev/null | sort -u || true)"
  [ "$state" = "idle" ] && break
  sleep 0.2
done
if [ "$state" != "idle" ]; then
  tail -n 20 "$STATE"/log/*.log >&2 || true
  die "node $NODE did not come up idle (state '${state:-none}'); logs above, all in $STATE/log;" \
    "stop what started: $HERE/teardown.sh $STATE"
fi

echo "export SLURM_CONF=$SLURM_CONF"
echo "export XTTSFLOW_SLURM_PARTITION=$PARTITION"
echo "export XTTSFLOW_SLURM_GPU_PARTITION=$GPU_PARTITION"
