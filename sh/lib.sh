#!/usr/bin/env bash
# Shared helpers for sh/*.sh: repo root, the project's Python, error exit.
# Usage: source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck shell=bash

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export REPO

# usage: the script's "# Usage:" header lines on stderr, exit 2 (a script may define its own instead)
usage() {
  sed -n 's/^# Usage: //p' "$0" >&2
  exit 2
}

# pid_alive PIDFILE: true when PIDFILE names a running process
pid_alive() {
  [[ -s "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

# port_open HOST PORT: true when something listens on HOST:PORT
port_open() {
  timeout 2 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null
}

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
