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
  local stage="$1" kv out sets=()
  shift
  for kv in "$@"; do
    sets+=(--set "$kv")
  done
  echo "== demo: ${stage}"
  out="$("${REPO}/sh/run.sh" submit --site local --stage "$stage" "${sets[@]}")"
  grep -E '^(  job|  items|nothing|recorded)' <<< "$out" || true
  grep -q '^nothing to submit' <<< "$out" || "${REPO}/sh/run.sh" status --stage "$stage" --wait
}

classification() {
  local scene="outputs/scene/demo"
  step scene NAME=demo SIZE=512
  step sample "POINTS=${scene}/train_points.geojson" "RASTERS=${scene}/embedding.tif"
  step train SAMPLES=outputs/sample/samples.parquet TRIALS=4 ITERATIONS=200 BLOCK_SIZE=1000
  step classify MODEL=outputs/train "RASTERS=${scene}/embedding.tif" SHARDS=2
  step validate MAP=outputs/classify "POINTS=${scene}/val_points.geojson" "TRUTH=${scene}/truth.tif"
}

main() {
  [[ $# -eq 0 ]] || usage
  [[ -x "${REPO}/.venv/bin/python" ]] || "${REPO}/sh/setup.sh"
  cd "$REPO"
  step probe N=1
  classification
  "${REPO}/sh/run.sh" status
  echo "== demo done: report ${REPO}/outputs/validate/report/report.html"
  "$(geohpc_python)" -c 'import json, sys; m = json.load(open(sys.argv[1]))
print("overall accuracy %.3f, kappa %.3f on held-out points" % (m["overall_accuracy"], m["kappa"]))' \
    outputs/validate/report/metrics.json
}

main "$@"
