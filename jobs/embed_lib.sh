#!/usr/bin/env bash
# Helpers for the embedding-chain job scripts (download, stack, retile, infer, stitch).
# Usage: source "${GEOHPC_REPO}/jobs/embed_lib.sh" after jobs/lib.sh.
# shellcheck shell=bash

# stage_dir STAGE VAR: the output folder of an earlier STAGE: $VAR when set on the make line,
# else <SCRATCH>/outputs/STAGE (the same rule as geohpc/plans/_embed.py).
stage_dir() {
  local stage="$1" var="$2"
  if [[ -n "${!var:-}" ]]; then
    work_path "${!var}"
  else
    printf '%s/outputs/%s\n' "${GEOHPC_WORK:?}" "$stage"
  fi
}
