#!/usr/bin/env bash
# Shared helpers for sh/*.sh: repo root, the project's Python, error exit.
# Usage: source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck shell=bash

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export REPO

die() {
  echo "$(basename "$0"): error: $*" >&2
  exit 2
}

# The Python that runs geohpc: the repo's venv when present, else python3 from PATH.
geohpc_python() {
  if [[ -x "${REPO}/.venv/bin/python" ]]; then
    printf '%s\n' "${REPO}/.venv/bin/python"
  else
    command -v python3 || die "no python3 on PATH and no .venv: run make setup"
  fi
}

# apt_need "file-or-command:debian-package"...: apt-get install the packages whose file or command is missing
apt_need() {
  local missing=() need
  for need in "$@"; do
    [[ -e "${need%%:*}" ]] || command -v "${need%%:*}" >/dev/null 2>&1 || missing+=("${need##*:}")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  echo "$(basename "$0"): installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

need_root() {
  [[ "$(id -u)" == 0 ]] || die "$1 needs root (apt-get, daemons): run it as root"
}
