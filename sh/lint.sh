#!/usr/bin/env bash
# Lint: shellcheck on sh/ and jobs/, ruff on py/, tests/, checks/ and bench/.
# Usage: sh/lint.sh   (make lint; needs make setup for ruff and shellcheck)
set -o errexit -o nounset -o pipefail
# shellcheck source=sh/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

main() {
  [[ $# -eq 0 ]] || usage
  local bin="${REPO}/.venv/bin" targets=()
  [[ -x "$bin/ruff" ]] || die "ruff not installed: run make setup"
  cd "$REPO"
  "$bin/shellcheck" -x sh/*.sh jobs/lib.sh jobs/*.sbatch
  for d in py tests checks bench; do
    [[ -d "$d" ]] && targets+=("$d")
  done
  "$bin/ruff" check "${targets[@]}"
  echo "lint: clean"
}

main "$@"
