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

products() {
  step mosaic INPUT_DIR=outputs/classify NAME=cropmap
  step tiles SRC=outputs/mosaic/cropmap.tif SHARDS=2 ZOOM=8-15 MODE=classes NAME=cropmap
}

segmentation() {
  local seg="outputs/demo-seg"
  "${REPO}/sh/run.sh" synth_seg --out "${seg}/scene" --size 192 --channels 32
  step prep "EMBEDDINGS=${seg}/scene/embeddings.tif" "LABELS=${seg}/scene/labels.tif" \
    CLASSES=1:corn,5:soybeans,24:wheat,36:alfalfa CHIP=32 BLOCK_CHIPS=1 "OUT_DIR=${seg}/prep" CPUS=1 MEM=2G
  step fit RUN=demo "DATA=${seg}/prep" ARCH=unet EPOCHS=10 BATCH=8 "OUT_DIR=${seg}/fit" CPUS=2 MEM=4G TIME=00:30:00
  step predict "EMBEDDINGS=${seg}/scene/embeddings.tif" "MODEL=${seg}/fit/demo/model.pt" SHARDS=2 TILE=64 \
    OVERLAP=16 "OUT_DIR=${seg}/predict" CPUS=1 MEM=2G
  echo "== demo: training curves ${REPO}/${seg}/fit/demo/curves.png, maps ${REPO}/${seg}/predict/"
}

main() {
  [[ $# -eq 0 ]] || usage
  [[ -x "${REPO}/.venv/bin/python" ]] || "${REPO}/sh/setup.sh"
  cd "$REPO"
  step probe N=1
  classification
  products
  [[ "${DEMO:-}" != full ]] || segmentation
  "${REPO}/sh/run.sh" status
  echo "== demo done: report ${REPO}/outputs/validate/report/report.html"
  echo "   crop map as a COG ${REPO}/outputs/mosaic/cropmap.tif, tiles and viewer ${REPO}/outputs/tiles/cropmap/index.html"
  "$(geohpc_python)" -c 'import json, sys; m = json.load(open(sys.argv[1]))
print("overall accuracy %.3f, kappa %.3f on held-out points" % (m["overall_accuracy"], m["kappa"]))' \
    outputs/validate/report/metrics.json
}

main "$@"
