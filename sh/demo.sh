#!/usr/bin/env bash
# The main job on the local site, raw imagery to a validated crop map: make run PIPELINE=demo SITE=local
# (pipelines/demo.toml: synthetic Sentinel-1/2, from the local S3 server when one answers, else files ->
# download ... stitch -> cog -> sample ... validate -> mosaic -> tiles), a wait for it to end, the summary.
# Usage: sh/demo.sh   (make demo; DEMO=full adds the segmentation branch, pipelines/demo-seg.toml)
set -o errexit -o nounset -o pipefail
# shellcheck source=sh/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

OUT=outputs/demo      # the demo pipeline's OUT (pipelines/demo.toml), relative to the local site's SCRATCH

usage() {
  sed -n 's/^# Usage: //p' "$0" >&2
  exit 2
}

# s3_up: true when something accepts connections at GEOHPC_S3_ENDPOINT; then the AWS/GDAL variables point at
# it (the pipeline's jobs inherit them)
s3_up() {
  local endpoint="${GEOHPC_S3_ENDPOINT:-127.0.0.1:9000}"
  endpoint="${endpoint#*://}"
  timeout 2 bash -c "exec 3<>/dev/tcp/${endpoint%:*}/${endpoint##*:}" 2>/dev/null || return 1
  export AWS_S3_ENDPOINT="$endpoint" AWS_HTTPS=NO AWS_VIRTUAL_HOSTING=FALSE
  export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-testing}" AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-testing}"
  export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}"
}

# pipeline NAME: make run PIPELINE=NAME SITE=local (returns at once on Slurm), then wait for its run to end
pipeline() {
  echo "== demo: make run PIPELINE=$1 SITE=local"
  "${REPO}/sh/run.sh" run --pipeline "$1" --site local
  "${REPO}/sh/run.sh" run --wait --pipeline "$1"
}

summary() {
  echo "   embeddings as a COG ${REPO}/${OUT}/cog/embeddings.tif"
  echo "   crop map as a COG ${REPO}/${OUT}/mosaic/cropmap.tif, tiles and viewer ${REPO}/${OUT}/tiles/cropmap/index.html"
  "$(geohpc_python)" -c 'import json, sys; m = json.load(open(sys.argv[1]))
p, t = m.get("points", {}), m.get("truth")
print("overall accuracy %.3f, kappa %.3f on %d held-out points" % (m["overall_accuracy"], m["kappa"], p.get("n", 0)))
if t: print("against the truth raster: overall accuracy %.3f, kappa %.3f on %d pixels" % (t["overall_accuracy"], t["kappa"], t["n"]))' \
    "${OUT}/validate/report/metrics.json"
}

main() {
  [[ $# -eq 0 ]] || usage
  [[ -x "${REPO}/.venv/bin/python" ]] || "${REPO}/sh/setup.sh"
  cd "$REPO"
  local start=$SECONDS
  if s3_up; then
    echo "== demo: imagery on the local S3 server http://${AWS_S3_ENDPOINT} (s3://geohpc-demo/s12)"
  else
    echo "== demo: no S3 server answers (make s3-up starts one); the imagery is read from files"
  fi
  pipeline demo
  if [[ "${DEMO:-}" == full ]]; then
    pipeline demo-seg
    echo "== demo: training curves ${REPO}/outputs/demo-seg/fit/demo/curves.png, maps ${REPO}/outputs/demo-seg/predict/"
  fi
  "${REPO}/sh/run.sh" status
  echo "== demo done in $(( SECONDS - start )) s: report ${REPO}/${OUT}/validate/report/report.html"
  summary
}

main "$@"
