#!/usr/bin/env bash
# Run one geohpc command with the repo's venv and sources: the bridge from Make to py/.
# Usage: sh/run.sh COMMAND [ARGS...]   e.g. sh/run.sh submit --site lumi --stage probe (python -m geohpc --help)
set -o errexit -o nounset -o pipefail
# shellcheck source=sh/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

main() {
  [[ $# -ge 1 ]] || usage
  local command="$1" py
  shift
  [[ "$command" =~ ^[a-z0-9_-]+$ ]] || die "bad command name '$command'"
  py="$(geohpc_python)"
  export PYTHONPATH="${REPO}/py${PYTHONPATH:+:${PYTHONPATH}}"
  exec "$py" -m geohpc "$command" "$@"
}

main "$@"
