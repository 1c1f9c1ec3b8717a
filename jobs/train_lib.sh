#!/usr/bin/env bash
# Helpers for the training jobs (prep, fit, predict): paths, process count, GPU runtime settings,
# and a requeue-aware launcher for the walltime signal.
# Usage: source "${GEOHPC_REPO}/jobs/train_lib.sh" after jobs/lib.sh, inside a job from 'make submit'.
# shellcheck shell=bash

usage() {
  echo "Usage: source jobs/train_lib.sh (after jobs/lib.sh, inside a job submitted by 'make submit')" >&2
}

# train_nproc: processes for torchrun: NPROC if given; on a GPU site the GPUs Slurm gave this node
# (SLURM_GPUS_ON_NODE, which follows GPUS= on the make line), else GEOHPC_GPUS (the count make submit
# rendered); 2 on CPU (gloo).
train_nproc() {
  if [[ -n "${NPROC:-}" ]]; then
    printf '%s\n' "$NPROC"
  elif [[ "${GPU_VENDOR:-none}" == cuda || "${GPU_VENDOR:-none}" == rocm ]] && [[ -n "${SLURM_GPUS_ON_NODE:-}" ]]; then
    printf '%s\n' "$SLURM_GPUS_ON_NODE"
  elif [[ "${GPU_VENDOR:-none}" == cuda || "${GPU_VENDOR:-none}" == rocm ]]; then
    printf '%s\n' "${GEOHPC_GPUS:?GEOHPC_GPUS is not set: submit with make submit}"
  else
    printf '%s\n' 2
  fi
}

# gpu_runtime_env NPROC: thread counts per rank. The GPU settings (allocator, MIOpen cache, RCCL/NCCL,
# wandb) are the site's GPU_ENV, exported by job_start for every GPU job: one place per site.
gpu_runtime_env() {
  local nproc="$1" cpus
  cpus="$(nproc)"  # the CPUs this process may really use (the local executor does not pin)
  if [[ -n "${SLURM_CPUS_PER_TASK:-}" ]] && (( SLURM_CPUS_PER_TASK < cpus )); then
    cpus="$SLURM_CPUS_PER_TASK"
  fi
  export OMP_NUM_THREADS=$(( cpus / nproc > 0 ? cpus / nproc : 1 ))
  echo "== ranks ${nproc}, OMP_NUM_THREADS=${OMP_NUM_THREADS}, GPU_VENDOR=${GPU_VENDOR:-none}" \
    "${MIOPEN_USER_DB_PATH:+MIOPEN_USER_DB_PATH=${MIOPEN_USER_DB_PATH}} ${NCCL_SOCKET_IFNAME:+NCCL_SOCKET_IFNAME=${NCCL_SOCKET_IFNAME}}"
}

_GEOHPC_STOP_FILE=""
_GEOHPC_SIGNALLED=0

_on_usr1() {
  _GEOHPC_SIGNALLED=1
  echo "== $(date -Is) SIGUSR1 (walltime near): asking the trainer to checkpoint and stop"
  touch "$_GEOHPC_STOP_FILE"
}

# run_py_requeueable RUN_DIR ARGS... (as run_py): run_py in the background so the batch shell can take
# SIGUSR1 (#SBATCH --signal=B:USR1@300) while Python runs; the trap touches RUN_DIR/STOP, every rank
# sees it, rank 0 saves last.pt, and the job is requeued; the next start resumes from last.pt.
run_py_requeueable() {
  local run_dir="$1" pid rc
  shift
  mkdir -p "$run_dir"
  _GEOHPC_STOP_FILE="${run_dir}/STOP"
  rm -f "$_GEOHPC_STOP_FILE"  # a stale STOP from the previous (requeued) run would end this one at once
  trap _on_usr1 USR1
  run_py "$@" &
  pid=$!
  rc=0
  while true; do
    wait "$pid" && rc=0 || rc=$?
    # wait returns >128 when a trapped signal interrupts it; the child is still running then
    if kill -0 "$pid" 2>/dev/null; then
      continue
    fi
    break
  done
  # the trap stays: a USR1 arriving after Python ended must not kill the shell (default action)
  rm -f "$_GEOHPC_STOP_FILE"
  if (( _GEOHPC_SIGNALLED )); then
    local job="${SLURM_ARRAY_JOB_ID:+${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}}"
    job="${job:-${SLURM_JOB_ID:-}}"
    if [[ -n "$job" ]] && command -v scontrol >/dev/null 2>&1; then
      echo "== requeueing ${job} (restart count ${SLURM_RESTART_COUNT:-0}); it resumes from ${run_dir}/last.pt"
      scontrol requeue "$job"
    else
      echo "== stopped for walltime; resubmit to resume from ${run_dir}/last.pt"
    fi
    return 0
  fi
  if (( rc != 0 )); then
    echo "== $(date -Is) ${GEOHPC_STAGE:-job} failed with exit ${rc}: the 'error:' line above the launcher's traceback names the cause" >&2
  fi
  return "$rc"
}
