#!/usr/bin/env bash
# A real SLURM scheduler in CI: install Debian's slurm + munge, start a one-node cluster on
# localhost in a temporary folder, submit a tiny 2-process DDP training through Hydra's submitit
# SLURM launcher, requeue it once mid-run (`scontrol requeue`), and check that the requeued job
# resumed from its checkpoint and finished. Every daemon this script starts is stopped on exit.
#
#   sudo scripts/slurm/ci_cluster.sh          # or: make test-slurm (as root, as CI runs)
#
# Needs root (apt-get, daemons). Environment: PYTHON (default .venv/bin/python), KEEP=1 keeps
# the temporary folder for inspection.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
EPOCHS=4
START=$(date +%s)

say() { echo "[test-slurm $(($(date +%s) - START))s] $*"; }
fail() { echo "[test-slurm] FAILED: $*" >&2; exit 1; }

# wait_for SECONDS DESCRIPTION COMMAND...: poll until COMMAND succeeds, or fail naming it.
wait_for() {
  local limit=$1 what=$2 t=0
  shift 2
  until "$@" >/dev/null 2>&1; do
    t=$((t + 1))
    [ "$t" -le "$limit" ] || fail "timed out after ${limit}s waiting for: $what"
    sleep 1
  done
}

[ "$(id -u)" -eq 0 ] || fail "run as root (installs packages and starts the SLURM daemons)"
[ -x "$PYTHON" ] || fail "no Python at $PYTHON: run 'make install' first"

# ---------------------------------------------------------------- install
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null ||
   ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
  say "installing slurmd slurmctld slurm-client munge"
  export DEBIAN_FRONTEND=noninteractive
  timeout 600 apt-get update -qq || fail "apt-get update"
  timeout 600 apt-get install -y -qq slurmd slurmctld slurm-client munge >/dev/null ||
    fail "apt-get install slurmd slurmctld slurm-client munge"
fi

# ---------------------------------------------------------------- cleanup, whatever happens
TMP=$(mktemp -d /tmp/test-slurm.XXXXXX)
chmod 755 "$TMP"
STARTED_MUNGE=0
LAUNCHER_PID=""
cleanup() {
  local rc=$?
  set +e
  if [ -n "$LAUNCHER_PID" ] && kill -0 "$LAUNCHER_PID" 2>/dev/null; then kill "$LAUNCHER_PID"; fi
  if [ -f "$TMP/slurmctld.pid" ]; then
    scancel --full --quiet --user=root 2>/dev/null
    for _ in $(seq 30); do [ -z "$(squeue -h 2>/dev/null)" ] && break; sleep 1; done
  fi
  for daemon in slurmd slurmctld; do
    if [ -f "$TMP/$daemon.pid" ]; then kill "$(cat "$TMP/$daemon.pid")" 2>/dev/null; fi
  done
  if [ "$STARTED_MUNGE" = 1 ] && [ -f /run/munge/munged.pid ]; then
    kill "$(cat /run/munge/munged.pid)" 2>/dev/null
  fi
  if [ "$rc" -ne 0 ]; then
    for log in "$TMP"/slurmctld.log "$TMP"/slurmd.log "$TMP"/sweep/.submitit/*/*.out "$TMP"/sweep/.submitit/*/*.err "$TMP"/launcher.log; do
      [ -f "$log" ] && { echo "----- $log (last 40 lines)"; tail -n 40 "$log"; }
    done
  fi
  if [ "${KEEP:-0}" = 1 ]; then echo "kept $TMP"; else rm -rf "$TMP"; fi
  echo "[test-slurm] $([ "$rc" -eq 0 ] && echo passed || echo failed) in $(($(date +%s) - START))s"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- munge
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  say "starting munged"
  mkdir -p /run/munge /var/log/munge /var/lib/munge /etc/munge
  [ -f /etc/munge/munge.key ] || { mungekey --create 2>/dev/null || create-munge-key -f; }
  chown munge:munge /run/munge /var/log/munge /var/lib/munge /etc/munge /etc/munge/munge.key
  chmod 0400 /etc/munge/munge.key
  runuser -u munge -- /usr/sbin/munged || fail "munged did not start"
  STARTED_MUNGE=1
  wait_for 20 "munge to answer" bash -c 'munge -n | unmunge'
fi

# ---------------------------------------------------------------- a one-node cluster
mkdir -p "$TMP/state" "$TMP/spool"
chown slurm:slurm "$TMP/state"
touch "$TMP/slurmctld.log" && chown slurm:slurm "$TMP/slurmctld.log"
CPUS=$(nproc)
export SLURM_CONF=$TMP/slurm.conf
cat >"$SLURM_CONF" <<EOF
ClusterName=ci
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=16817
SlurmdPort=16818
AuthType=auth/munge
CredType=cred/munge
SlurmUser=slurm
SlurmdUser=root
StateSaveLocation=$TMP/state
SlurmdSpoolDir=$TMP/spool
SlurmctldPidFile=$TMP/slurmctld.pid
SlurmdPidFile=$TMP/slurmd.pid
SlurmctldLogFile=$TMP/slurmctld.log
SlurmdLogFile=$TMP/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
KillWait=5
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$CPUS Boards=1 SocketsPerBoard=1 CoresPerSocket=$CPUS ThreadsPerCore=1 RealMemory=4000 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
say "starting slurmctld and slurmd ($TMP)"
slurmctld -f "$SLURM_CONF" || fail "slurmctld did not start (see $TMP/slurmctld.log)"
slurmd -f "$SLURM_CONF" -N localhost || fail "slurmd did not start (see $TMP/slurmd.log)"
wait_for 60 "the node to be idle" bash -c '[ "$(sinfo -h -N -o %T | head -1)" = idle ]'

# ---------------------------------------------------------------- submit through Hydra
SWEEP=$TMP/sweep
RUN=$SWEEP/0
say "submitting a 2-process DDP run through hydra/launcher=slurm"
export HF_HUB_OFFLINE=1
"$PYTHON" train.py -m hydra/launcher=slurm hydra.sweep.dir="$SWEEP" \
  trainer=ddp trainer.accelerator=cpu trainer.devices=2 trainer.num_nodes=1 \
  hydra.launcher.gpus_per_node=null hydra.launcher.cpus_per_task=1 hydra.launcher.mem_gb=1 \
  hydra.launcher.timeout_min=20 \
  model.backbone=test_resnet model.input_size=64 model.pretrained=false \
  data.batch_size=8 data.generator.image_size=64 data.generator.num_train=48 \
  data.generator.num_val=15 data.generator.num_test=15 data.augment=[] \
  paths.data_dir="$TMP/data" paths.log_dir="$TMP/logs" \
  trainer.max_epochs=$EPOCHS trainer.num_sanity_val_steps=0 print_config=false \
  callbacks.rich_progress_bar=null callbacks.rich_model_summary=null \
  callbacks.sample_images=null callbacks.weight_histograms=null logger.tensorboard.log_graph=false \
  +callbacks.slow._target_=tests.helpers.slow_batches.Slow +callbacks.slow.seconds=1.0 \
  >"$TMP/launcher.log" 2>&1 &
LAUNCHER_PID=$!

job_id() { ls "$SWEEP/.submitit" 2>/dev/null | grep -E '^[0-9]+$' | head -1; }
submitted() { [ -n "$(job_id)" ]; }
wait_for 120 "the job to be submitted" submitted
JOB=$(job_id)
say "job $JOB submitted; waiting for its first checkpoint"
wait_for 300 "job $JOB to write $RUN/checkpoints/last.ckpt" test -f "$RUN/checkpoints/last.ckpt"
squeue -h -j "$JOB" -o %T | grep -q RUNNING || fail "job $JOB is not running after its first checkpoint"

say "requeueing job $JOB mid-run"
scontrol requeue "$JOB" || fail "scontrol requeue $JOB"
wait_for 120 "job $JOB to be requeued (Restarts=1)" \
  bash -c "scontrol show job $JOB | grep -q 'Restarts=1'"
# SLURM holds a requeued job back for a while (BeginTime); start it as soon as it is pending.
wait_for 120 "job $JOB to be pending again" \
  bash -c "squeue -h -j $JOB -o %T | grep -qE 'PENDING|RUNNING'"
scontrol update JobId="$JOB" StartTime=now 2>/dev/null || true

say "waiting for the requeued job to finish"
for _ in $(seq 600); do kill -0 "$LAUNCHER_PID" 2>/dev/null || break; sleep 1; done
kill -0 "$LAUNCHER_PID" 2>/dev/null && fail "the launcher did not return within 600 s"
wait "$LAUNCHER_PID" || fail "python train.py -m hydra/launcher=slurm exited non-zero (see $TMP/launcher.log)"
LAUNCHER_PID=""

# ---------------------------------------------------------------- what must hold
LOG=$(ls "$SWEEP"/.submitit/"$JOB"/*_0_log.out 2>/dev/null | head -1)
[ -n "$LOG" ] || fail "no submitit log for job $JOB"
grep -q "Resuming from $RUN/checkpoints/last.ckpt" "$LOG" ||
  fail "the requeued job did not resume from $RUN/checkpoints/last.ckpt (see $LOG)"
"$PYTHON" - "$RUN" "$EPOCHS" "$TMP/logs/history.sqlite" <<'EOF' || fail "the finished run is not complete"
import sys
from pathlib import Path

from trainer.checkpoint.read import load_checkpoint

run, epochs = Path(sys.argv[1]), int(sys.argv[2])
last = load_checkpoint(run / "checkpoints" / "last.ckpt")
assert last["epoch"] == epochs - 1, f"last.ckpt is of epoch {last['epoch']}, not {epochs - 1}"
steps = epochs * 48 // (8 * 2)  # 48 images, 8 per process, 2 processes
assert last["global_step"] == steps, f"global_step {last['global_step']}, expected {steps}"
folders = sorted(p.name for p in run.parent.iterdir() if p.is_dir() and p.name[0] != ".")
assert folders == ["0"], f"one run folder expected in the sweep, found {folders}"
print(f"last.ckpt: epoch {last['epoch']}, global_step {last['global_step']}")
# the end of training under DDP (test=true, the default): test of the best checkpoint, report
# with the operating point written into it, one history row
import json

from trainer.history.store import RunHistory

report = json.loads((run / "metrics.json").read_text())  # rank zero's own pass over test
best = Path(report["checkpoint"])
assert "threshold" in load_checkpoint(best)["trainer_metadata"]["operating_point"]
rows = RunHistory(sys.argv[3]).runs(task="train")
assert len(rows) == 1 and rows[0]["checkpoint"] == str(best), rows
# the history holds the test step's figures, computed by both processes on 8 + 7 images: the
# same as one process on all 15 (a padding sampler would have scored one image twice)
for key in ("test/acc", "test/f1", "test/loss"):
    if key in report["metrics"]:
        assert abs(rows[0]["metrics"][key] - report["metrics"][key]) < 1e-6, key
print(f"test/acc {rows[0]['metrics']['test/acc']:.3f} on 2 processes = one process; one row")
EOF
say "job $JOB: requeued once, resumed from its checkpoint, finished all $EPOCHS epochs"
