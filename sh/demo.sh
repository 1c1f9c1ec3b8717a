#!/usr/bin/env bash
# The main job on the local site: submit each stage of the pipeline through make submit's code path,
# wait for it, and print where the results are.
# Usage: sh/demo.sh   (make demo; DEMO=full adds the segmentation branch)
set -o errexit -o nounset -o pipefail
# shellcheck source=sh/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  sed -n 's/^# Usage: //p' "$0" >&2
  exit 2
}

# step STAGE [KEY=VALUE...]: submit on SITE=local (Slurm when sbatch is here, else the local executor), wait
step() {
  local stage="$1" kv sets=()
  shift
  for kv in "$@"; do
    sets+=(--set "$kv")
  done
  echo "== demo: ${stage}"
  "${REPO}/sh/run.sh" submit --site local --stage "$stage" "${sets[@]}" --set FORCE=1 | grep -E '^(  job|  items|nothing|recorded)' || true
  "${REPO}/sh/run.sh" status --stage "$stage" --wait
}

main() {
  [[ $# -eq 0 ]] || usage
  [[ -x "${REPO}/.venv/bin/python" ]] || "${REPO}/sh/setup.sh"
  local out="${REPO}/outputs/demo"
  step probe N=1 "OUT_DIR=${out}/probe"
  echo "== demo done: probe report ${out}/probe/probe-0000.json"
  cat "${out}/probe/probe-0000.json"
  "${REPO}/sh/run.sh" status
}

main "$@"
