#!/usr/bin/env bash
# Create .venv and install geohpc with its test extras; install the tile viewer's JS from the npm registry.
# Usage: sh/setup.sh   (make setup; reruns are quick: nothing is reinstalled unless pyproject.toml changed)
set -o errexit -o nounset -o pipefail
# shellcheck source=sh/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

python_venv() {
  local stamp want
  stamp="${REPO}/.venv/.geohpc-installed"
  want="$(sha256sum "${REPO}/pyproject.toml" | cut -c1-16)"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    echo "setup: .venv is up to date"
    return 0
  fi
  [[ -x "${REPO}/.venv/bin/python" ]] || python3 -m venv "${REPO}/.venv"
  "${REPO}/.venv/bin/python" -m pip install -q --upgrade pip
  # torch==2.13.0 is pinned in pyproject.toml: pip takes the local CPU wheel, not a multi-GB CUDA build
  "${REPO}/.venv/bin/python" -m pip install -q -e "${REPO}[test]"
  printf '%s\n' "$want" > "$stamp"
  echo "setup: .venv ready ($("${REPO}/.venv/bin/python" --version))"
}

viewer_js() {
  local stamp want
  [[ -f "${REPO}/viewer/package.json" ]] || return 0
  # reinstall when package-lock.json changes (a new package such as pmtiles), not only when missing
  stamp="${REPO}/viewer/node_modules/.geohpc-installed"
  want="$(sha256sum "${REPO}/viewer/package-lock.json" | cut -c1-16)"
  [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]] && return 0
  if ! command -v npm >/dev/null 2>&1; then
    echo "setup: warning: npm not found, so the tile viewer has no Leaflet (apt-get install npm, then make setup)" >&2
    return 0
  fi
  npm ci --prefix "${REPO}/viewer" --no-audit --no-fund --silent
  printf '%s\n' "$want" > "$stamp"
  echo "setup: viewer assets installed"
}

main() {
  [[ $# -eq 0 ]] || usage
  python_venv
  viewer_js
}

main "$@"
