#!/usr/bin/env bash
# Shared helpers for jobs/*.sbatch: read the manifest line, run Python in the venv or container.
# Usage: source "${GEOHPC_REPO}/jobs/lib.sh" from a job script; make submit exports the GEOHPC_* variables.
# Sourcing defines functions and reads the run's job environment ($GEOHPC_ENV, written by make submit:
# site values, stage parameters with their defaults, absolute paths); nothing else runs until job_start.
# shellcheck shell=bash

usage() {
  echo "Usage: source jobs/lib.sh (inside a job submitted by 'make submit')" >&2
}

die() {
  echo "geohpc job: error: $*" >&2
  exit 2
}

require_env() {
  local name
  for name in "$@"; do
    [[ -n "${!name:-}" ]] || die "$name is not set: submit this job with 'make submit', not plain sbatch"
  done
}

# The manifest line for this array task: line GEOHPC_OFFSET + SLURM_ARRAY_TASK_ID (0-based) of GEOHPC_MANIFEST.
manifest_item() {
  require_env GEOHPC_MANIFEST SLURM_ARRAY_TASK_ID
  local index line
  index=$(( ${GEOHPC_OFFSET:-0} + SLURM_ARRAY_TASK_ID ))
  line=$(sed -n "$(( index + 1 ))p" "$GEOHPC_MANIFEST")
  [[ -n "${line// /}" ]] || die "$GEOHPC_MANIFEST: line $(( index + 1 )) is empty or missing (task $SLURM_ARRAY_TASK_ID)"
  printf '%s\n' "$line"
}

load_modules() {
  local mods=() mod
  [[ -n "${GEOHPC_MODULES:-}" ]] || return 0
  IFS=',' read -r -a mods <<< "$GEOHPC_MODULES"
  if ! command -v module >/dev/null 2>&1; then
    echo "geohpc job: no 'module' command here; skipping modules ${GEOHPC_MODULES}" >&2
    return 0
  fi
  for mod in "${mods[@]}"; do
    module load "$mod"
  done
  module list 2>&1 || true
}

job_start() {
  require_env GEOHPC_REPO GEOHPC_STAGE GEOHPC_LAUNCH
  echo "== geohpc ${GEOHPC_STAGE} job ${SLURM_ARRAY_JOB_ID:-${SLURM_JOB_ID:-?}}_${SLURM_ARRAY_TASK_ID:-0} on $(hostname) at $(date -Is)"
  echo "== restart count ${SLURM_RESTART_COUNT:-0}, cpus ${SLURM_CPUS_PER_TASK:-?}, launch: ${GEOHPC_LAUNCH}"
  cd "$GEOHPC_REPO" || die "cannot cd to $GEOHPC_REPO"
  load_modules
  # container stages may add a deps venv built with the container's python (rasterio for predict)
  export PYTHONPATH="${GEOHPC_REPO}/py${GEOHPC_CONTAINER_PYTHONPATH:+:${GEOHPC_CONTAINER_PYTHONPATH}}${PYTHONPATH:+:${PYTHONPATH}}"
  export PYTHONUNBUFFERED=1
}

# the run's job environment (site values, GEOHPC_* paths), written by make submit
if [[ -n "${GEOHPC_ENV:-}" ]]; then
  [[ -r "$GEOHPC_ENV" ]] || die "job environment $GEOHPC_ENV is missing (was runs/ deleted?)"
  # shellcheck source=/dev/null
  source "$GEOHPC_ENV"
fi

# run_py COMMAND ARGS...: python -m geohpc COMMAND through the launcher chosen at submit time (venv or container).
# run_py -m MODULE ARGS... runs another module (torch.distributed.run for fit).
run_py() {
  local launch=() extra=()
  read -r -a launch <<< "$GEOHPC_LAUNCH"
  local i
  for i in "${!launch[@]}"; do
    # LUMI: the PyTorch container path comes from 'module load pytorch/...' as SING_IMAGE
    [[ "${launch[$i]}" != "@SIF@" ]] || launch[i]="${PYTORCH_SIF:-${SING_IMAGE:?no SING_IMAGE: load the PyTorch module (PYTORCH_MODULES)}}"
  done
  [[ -z "${GEOHPC_ARGS:-}" ]] || read -r -a extra <<< "$GEOHPC_ARGS"
  local argv=(-m geohpc "$@")
  [[ "$1" != "-m" ]] || argv=("$@")
  # python -m geohpc prints the '== <ts> python -m geohpc ...' log line itself, through geohpc.util.redact
  GEOHPC_JOB_LOG=1 "${launch[@]}" "${argv[@]}" "${extra[@]}"
}
