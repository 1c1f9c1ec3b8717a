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

# MODULES (rarely needed: every stage runs in the site's venv or container) load after a purge; a job
# that needs them on a node without 'module' stops here (LUMI compute nodes: lua5.3 missing).
load_modules() {
  local mods=() mod
  [[ -n "${GEOHPC_MODULES:-${MODULES:-}}" ]] || return 0
  IFS=',' read -r -a mods <<< "${GEOHPC_MODULES:-${MODULES:-}}"
  command -v module >/dev/null 2>&1 || die "MODULES=${mods[*]} but 'module' does not work on this node: leave MODULES empty and run the stage in the site's container (CPU_SIF/PYTORCH_SIF)"
  module purge
  for mod in "${mods[@]}"; do
    module load "$mod"
  done
  module list 2>&1 || true
}

# The site's GPU_ENV (job.env): %u and %j become the user and the job id; MIOpen caches are made per job.
gpu_env_start() {
  local name value
  [[ -n "${GEOHPC_GPU_ENV:-}" ]] || return 0
  for name in ${GEOHPC_GPU_ENV//,/ }; do
    value="${!name//%u/${USER:-geohpc}}"
    value="${value//%j/${SLURM_JOB_ID:-$$}}"
    export "${name}=${value}"
    [[ "$name" != MIOPEN_* || "$value" != /* ]] || mkdir -p "$value"
    echo "== ${name}=${value}"
  done
}

job_start() {
  require_env GEOHPC_REPO GEOHPC_STAGE GEOHPC_LAUNCH
  echo "== geohpc ${GEOHPC_STAGE} job ${SLURM_ARRAY_JOB_ID:-${SLURM_JOB_ID:-?}}_${SLURM_ARRAY_TASK_ID:-0} on $(hostname) at $(date -Is)"
  echo "== restart count ${SLURM_RESTART_COUNT:-0}, cpus ${SLURM_CPUS_PER_TASK:-?}, launch: ${GEOHPC_LAUNCH}"
  echo "== runtime: ${GEOHPC_RUNTIME:-?}"
  cd "$GEOHPC_REPO" || die "cannot cd to $GEOHPC_REPO"
  load_modules
  export PYTHONPATH="${GEOHPC_REPO}/py${GEOHPC_DEPS:+:${GEOHPC_DEPS}}${GEOHPC_CONTAINER_PYTHONPATH:+:${GEOHPC_CONTAINER_PYTHONPATH}}${PYTHONPATH:+:${PYTHONPATH}}"
  export PYTHONUNBUFFERED=1
  if [[ -n "${JOB_TMPDIR:-}" ]]; then  # the site's tmp on the right filesystem (Betzy's /tmp is 1.5 GB)
    export TMPDIR="${JOB_TMPDIR}/geohpc-${SLURM_JOB_ID:-$$}" CPL_TMPDIR="${JOB_TMPDIR}/geohpc-${SLURM_JOB_ID:-$$}"
    mkdir -p "$TMPDIR"
  fi
  gpu_env_start
  # a GPU stage on a GPU site that sees fewer devices than it asked stops now, never runs on CPU
  if (( ${GEOHPC_GPUS:-0} > 0 )) && [[ "${GPU_VENDOR:-none}" == cuda || "${GPU_VENDOR:-none}" == rocm ]]; then
    run_py gpu-check --expect "$GEOHPC_GPUS"
  fi
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
  local launch=() extra=() name
  read -r -a launch <<< "$GEOHPC_LAUNCH"
  if [[ "${GEOHPC_ISOLATED:-}" == 1 ]]; then
    # --containall --cleanenv: the job-time variables reach the container only through an env file
    local envfile="${TMPDIR:-/tmp}/geohpc-env-${SLURM_JOB_ID:-$$}-${SLURM_ARRAY_TASK_ID:-0}"
    (umask 077 && printf 'GEOHPC_JOB_LOG=1\n' > "$envfile")
    for name in $(compgen -e | grep -E '^(SLURM_|GEOHPC_|OMP_NUM_THREADS$|TMPDIR$|CPL_TMPDIR$|PYTHONUNBUFFERED$)' | grep -vx GEOHPC_LAUNCH) ${GEOHPC_GPU_ENV//,/ } ${GEOHPC_JOB_ENV//,/ }; do
      printf '%s=%q\n' "$name" "${!name}" >> "$envfile"
    done
    launch=("${launch[@]:0:${#launch[@]}-2}" --env-file "$envfile" "${launch[@]: -2}")
  fi
  [[ -z "${GEOHPC_ARGS:-}" ]] || read -r -a extra <<< "$GEOHPC_ARGS"
  local argv=(-m geohpc "$@")
  [[ "$1" != "-m" ]] || argv=("$@")
  # python -m geohpc prints the '== <ts> python -m geohpc ...' log line itself, through geohpc.util.redact
  GEOHPC_JOB_LOG=1 "${launch[@]}" "${argv[@]}" "${extra[@]}"
}
