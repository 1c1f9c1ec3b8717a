#!/usr/bin/env bash
# Install and start everything the tests need on a fresh machine, then run pytest.
# Usage: sh/test.sh [PYTEST_ARGS...]   (make test; as root it apt-installs Slurm, sshd, GDAL CLI, chromium)
set -o errexit -o nounset -o pipefail
# shellcheck source=sh/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# what each test needs, as "file-or-command:debian-package"
NEEDS=(/usr/sbin/sshd:openssh-server rsync:rsync gdal_translate:gdal-bin chromium:chromium
  /usr/share/proj/proj.db:proj-data npm:npm /usr/bin/time:time objdump:binutils chattr:e2fsprogs)

main() {
  [[ "${1:-}" != "-h" && "${1:-}" != "--help" ]] || usage
  need_root "make test"
  apt_need "${NEEDS[@]}"
  "${REPO}/sh/setup.sh"
  "${REPO}/sh/slurm.sh" up
  "${REPO}/sh/sshd_test.sh" up
  cd "$REPO"
  # a pytest temp folder of this checkout's own: another checkout's run cannot clean it away
  export PYTEST_DEBUG_TEMPROOT="${REPO}/build/tmp"
  mkdir -p "$PYTEST_DEBUG_TEMPROOT"
  "${REPO}/.venv/bin/python" -m pytest "$@"
}

main "$@"
