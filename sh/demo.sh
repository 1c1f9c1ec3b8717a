#!/usr/bin/env bash
# The main job on the local site, raw imagery to a validated crop map: synthetic Sentinel-1/2 (from the
# local S3 server when one answers, else files) -> download ... stitch -> cog -> sample ... validate ->
# mosaic -> tiles, each stage submitted through make submit's code path and waited for.
# Usage: sh/demo.sh   (make demo; DEMO=full adds the segmentation branch)
set -o errexit -o nounset -o pipefail
# shellcheck source=sh/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

OUT=outputs/demo      # every demo output, relative to the local site's SCRATCH (the repo)
DATA=data/demo        # the synthetic imagery, its points and the demo model
SIZE=64               # AOI side in 10 m pixels
BBOX=600000,4999360,600640,5000000  # that AOI in EPSG:32635 (synth-s12's grid)
# The light steps ask for one CPU each so two run at once on a small machine (the AOI is 64 x 64 pixels)
small=(CPUS=1 MEM=2G)

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

# s3_up: true when something accepts connections at GEOHPC_S3_ENDPOINT; then the AWS/GDAL variables point at it
s3_up() {
  local endpoint="${GEOHPC_S3_ENDPOINT:-127.0.0.1:9000}"
  endpoint="${endpoint#*://}"
  timeout 2 bash -c "exec 3<>/dev/tcp/${endpoint%:*}/${endpoint##*:}" 2>/dev/null || return 1
  export AWS_S3_ENDPOINT="$endpoint" AWS_HTTPS=NO AWS_VIRTUAL_HOSTING=FALSE
  export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-testing}" AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-testing}"
  export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}"
}

imagery() {
  local upload=()
  if s3_up; then
    echo "== demo: imagery on the local S3 server http://${AWS_S3_ENDPOINT} (s3://geohpc-demo/s12)"
    upload=(--upload s3://geohpc-demo/s12 --upload-if-up)
  else
    echo "== demo: no S3 server answers (make s3-up starts one); the imagery is read from files"
  fi
  "${REPO}/sh/run.sh" synth_s12 --out "${DATA}/s12" --size "$SIZE" \
    --train-points 600 --val-points 300 "${upload[@]}"
  "${REPO}/sh/run.sh" tessera_model --preset demo --out "${DATA}/tessera_demo.pt" >/dev/null
}

embeddings() {
  local c=("BBOX=${BBOX}" BLOCK=32 PATCH=16 "DOWNLOAD_DIR=${OUT}/download" "STACK_DIR=${OUT}/stack"
           "PATCH_DIR=${OUT}/retile" "EMB_DIR=${OUT}/infer")
  step download "STAC=${DATA}/s12/items.json" "BBOX=${BBOX}" "OUT_DIR=${OUT}/download" "${small[@]}"
  step stack "${c[@]}" "OUT_DIR=${OUT}/stack" "${small[@]}"
  step retile "${c[@]}" "OUT_DIR=${OUT}/retile" "${small[@]}"
  step infer "${c[@]}" "MODEL=${DATA}/tessera_demo.pt" EMB_DTYPE=int8 CPUS=2 MEM=4G "OUT_DIR=${OUT}/infer"
  step stitch "${c[@]}" EMB_DTYPE=int8 "OUT_DIR=${OUT}/stitch" "${small[@]}"
  step cog "INPUT_DIR=${OUT}/stitch" "OUT_DIR=${OUT}/cog" CPUS=1 MEM=3G
}

classification() {
  local emb="${OUT}/cog/embeddings.tif"  # int8 + its scale sidecar (embeddings_scale.tif)
  step sample "POINTS=${DATA}/s12/train_points.geojson" "RASTERS=${emb}" "OUT_DIR=${OUT}/sample" "${small[@]}"
  step train "SAMPLES=${OUT}/sample/samples.parquet" TRIALS=4 ITERATIONS=200 BLOCK_SIZE=160 "OUT_DIR=${OUT}/train" \
    CPUS=2 MEM=2G
  step classify "MODEL=${OUT}/train" "RASTERS=${emb}" SHARDS=2 "OUT_DIR=${OUT}/classify" "${small[@]}"
  step validate "MAP=${OUT}/classify" "POINTS=${DATA}/s12/val_points.geojson" "TRUTH=${DATA}/s12/truth.tif" \
    "OUT_DIR=${OUT}/validate" "${small[@]}"
}

products() {
  step mosaic "INPUT_DIR=${OUT}/classify" NAME=cropmap "OUT_DIR=${OUT}/mosaic" "${small[@]}"
  step tiles "SRC=${OUT}/mosaic/cropmap.tif" SHARDS=2 ZOOM=10-16 MODE=classes NAME=cropmap "OUT_DIR=${OUT}/tiles" \
    "${small[@]}"
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
  local start=$SECONDS
  step probe N=1
  imagery
  embeddings
  classification
  products
  [[ "${DEMO:-}" != full ]] || segmentation
  "${REPO}/sh/run.sh" status
  echo "== demo done in $(( SECONDS - start )) s: report ${REPO}/${OUT}/validate/report/report.html"
  echo "   embeddings as a COG ${REPO}/${OUT}/cog/embeddings.tif"
  echo "   crop map as a COG ${REPO}/${OUT}/mosaic/cropmap.tif, tiles and viewer ${REPO}/${OUT}/tiles/cropmap/index.html"
  "$(geohpc_python)" -c 'import json, sys; m = json.load(open(sys.argv[1]))
p, t = m.get("points", {}), m.get("truth")
print("overall accuracy %.3f, kappa %.3f on %d held-out points" % (m["overall_accuracy"], m["kappa"], p.get("n", 0)))
if t: print("against the truth raster: overall accuracy %.3f, kappa %.3f on %d pixels" % (t["overall_accuracy"], t["kappa"], t["n"]))' \
    "${OUT}/validate/report/metrics.json"
}

main "$@"
