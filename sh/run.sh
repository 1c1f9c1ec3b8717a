#!/usr/bin/env bash
# Run one geohpc Python program with the repo's venv and sources: the bridge from Make to py/.
# Usage: sh/run.sh MODULE [ARGS...]   e.g. sh/run.sh submit --site lumi --stage probe
set -o errexit -o nounset -o pipefail
# shellcheck source=sh/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  sed -n 's/^# Usage: //p' "$0" >&2
  exit 2
}

main() {
  [[ $# -ge 1 ]] || usage
  local module="$1" py
  shift
  [[ "$module" =~ ^[a-z0-9_]+$ ]] || die "bad module name '$module'"
  py="$(geohpc_python)"
  export PYTHONPATH="${REPO}/py${PYTHONPATH:+:${PYTHONPATH}}"
  exec "$py" -m "geohpc.${module}" "$@"
}

main "$@"
