#!/usr/bin/env bash
# Run one benchmark from bench/ side by side with the tool a user would pick instead; prints the ratio.
# Usage: sh/bench.sh NAME [ARGS...]   (make bench BENCH=cog; NAME is bench/bench_NAME.py)
set -o errexit -o nounset -o pipefail
# shellcheck source=sh/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  echo "Usage: sh/bench.sh NAME [ARGS...]; NAME one of:" >&2
  find "${REPO}/bench" -name 'bench_*.py' -printf '  %f\n' 2>/dev/null | sed 's/bench_//; s/\.py$//' >&2
  exit 2
}

main() {
  [[ $# -ge 1 && -n "$1" ]] || usage
  local name="$1" py
  shift
  [[ "$name" =~ ^[a-z_]+$ && -f "${REPO}/bench/bench_${name}.py" ]] || usage
  py="$(geohpc_python)"
  cd "$REPO"
  PYTHONPATH="${REPO}/py" exec "$py" "bench/bench_${name}.py" "$@"
}

main "$@"
