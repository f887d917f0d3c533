#!/usr/bin/env bash
# `make check-scale` (not in `make check`): the README's Slurm array job script, taken from
# the README unchanged, run by `sbatch --array=1-4` on a one-node Slurm (Debian slurm-wlm +
# munge) that this test starts as root and stops again; the merged part files must hold the
# single run's records and give its exact `eval` report, and a resubmission must leave them
# as they are. The node claims 32 CPUs (SlurmdParameters=config_overrides) so that the
# script's `--cpus-per-task=8` fits on a small machine.
source tests/testlib.sh
SLURM=$TMP/slurm
export SLURM_CONF=$SLURM/slurm.conf
STARTED_MUNGE=

stop_daemons() {
    local pidfile
    for pidfile in "$SLURM/slurmd.pid" "$SLURM/slurmctld.pid" ${STARTED_MUNGE:+/run/munge/munged.pid}; do
        [ -s "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null
    done
    sleep 1
    chmod -R u+rwx "$TMP" 2>/dev/null
    rm -rf "$TMP"
}
trap stop_daemons EXIT

if [ "$(id -u)" != 0 ]; then
    fail "check-scale runs as root (it starts munged, slurmctld and slurmd)"; finish; exit
fi
for cmd in munged slurmctld slurmd sbatch squeue sinfo; do
    command -v $cmd >/dev/null || { fail "$cmd is missing: apt-get install slurm-wlm munge"; finish; exit; }
done
if pgrep -x slurmctld >/dev/null || pgrep -x slurmd >/dev/null; then
    fail "a Slurm is already running on this machine; this test starts its own"; finish; exit
fi

# ---- munge: started unless one is running ---------------------------------------------------
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    install -d -o munge -g munge -m 755 /run/munge
    install -d -o munge -g munge -m 700 /var/lib/munge /var/log/munge
    if [ ! -s /etc/munge/munge.key ]; then
        install -d -o munge -g munge -m 700 /etc/munge
        head -c 1024 /dev/urandom >/etc/munge/munge.key
        chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
    fi
    su -s /bin/sh munge -c munged && STARTED_MUNGE=1
fi
expect "munge works (munge -n | unmunge)" sh -c 'munge -n | unmunge | grep -q "STATUS: *Success"'

# ---- a one-node Slurm -------------------------------------------------------------------------
mkdir -p "$SLURM/state" "$SLURM/spool"
node=$(hostname -s)
cat >"$SLURM_CONF" <<EOF
ClusterName=emote-check
SlurmctldHost=$node
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$SLURM/state
SlurmdSpoolDir=$SLURM/spool
SlurmctldPidFile=$SLURM/slurmctld.pid
SlurmdPidFile=$SLURM/slurmd.pid
SlurmctldLogFile=$SLURM/slurmctld.log
SlurmdLogFile=$SLURM/slurmd.log
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
SlurmdParameters=config_overrides
NodeName=$node CPUs=32 RealMemory=2000 State=UNKNOWN
PartitionName=main Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
slurmctld && slurmd
for _ in $(seq 30); do
    sinfo -h -o %T 2>/dev/null | grep -qx idle && break
    sleep 1
done
expect "one-node Slurm up: the node is idle" sh -c 'sinfo -h -o %T | grep -qx idle'

# ---- the README's script, unchanged ------------------------------------------------------------
RUN=$TMP/run
mkdir -p "$RUN" "$TMP/bin"
awk '/^Slurm array job/ {found = 1} found && /^```sh$/ {copy = 1; next} copy && /^```$/ {exit} copy' \
    README.md >"$RUN/label.sbatch"
expect "README has the Slurm script (#!/bin/sh, #SBATCH lines, emote --shard)" \
    sh -c "head -1 '$RUN/label.sbatch' | grep -qx '#!/bin/sh' && grep -q '^#SBATCH' '$RUN/label.sbatch' && grep -q 'emote .*--shard' '$RUN/label.sbatch'"
ln -s "$EMOTE" "$TMP/bin/emote"
export PATH=$TMP/bin:$PATH EMOTE_MODEL=$TEST_MODEL

TREE=$TMP/tree
/usr/bin/python3 - "$TREE" <<'PY'
import os, sys, numpy as np
from PIL import Image
for i in range(120):
    folder = os.path.join(sys.argv[1], "c%d" % (i % 7))
    os.makedirs(folder, exist_ok=True)
    pixels = np.random.default_rng(i).integers(0, 256, (24, 24), dtype=np.uint8)
    Image.fromarray(pixels).save(os.path.join(folder, "img %03d.png" % i))
PY
find "$TREE" -type f -print0 >"$RUN/files.list0"

# submit: runs the array job from $RUN and waits for it; $JOB is its id.
submit() {
    JOB=$(cd "$RUN" && sbatch --parsable --array=1-4 label.sbatch) || return 1
    for _ in $(seq 120); do
        [ -z "$(squeue -h -j "$JOB" 2>/dev/null)" ] && return 0
        sleep 1
    done
    return 1
}
expect "sbatch --array=1-4 label.sbatch: every task ends within 2 minutes" submit
expect "four part files" test "$(ls "$RUN"/part-*.jsonl 2>/dev/null | wc -l)" = 4
expect "tasks logged nothing (emote -q)" sh -c "! cat '$RUN'/emote-*.log | grep -q ."

"$EMOTE" -0 -q -f jsonl - <"$RUN/files.list0" | sort >"$TMP/single.jsonl"
cat "$RUN"/part-*.jsonl | sort >"$TMP/merged.jsonl"
expect "merged parts = a single run's records (120)" \
    sh -c "cmp -s '$TMP/merged.jsonl' '$TMP/single.jsonl' && test \$(wc -l <'$TMP/single.jsonl') = 120"
run "$EMOTE" eval -q "$TREE"
cp "$TMP/out" "$TMP/report-single"
run "$EMOTE" eval -q --predictions "$RUN/part-*.jsonl"
expect "eval --predictions over the parts = eval over the tree" cmp -s "$TMP/out" "$TMP/report-single"

cat "$RUN"/part-*.jsonl >"$TMP/before"
expect "resubmitted after success: every task ends" submit
expect "... and the part files are unchanged" sh -c "cat '$RUN'/part-*.jsonl | cmp -s - '$TMP/before'"
finish
