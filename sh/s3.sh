#!/usr/bin/env bash
# Local S3 server for the demo: moto's server mode on loopback, with a pid file (make s3-up / s3-down).
# Usage: sh/s3.sh up|down|status   (address from GEOHPC_S3_ENDPOINT, default 127.0.0.1:9000)
set -o errexit -o nounset -o pipefail
# shellcheck source=sh/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ENDPOINT="${GEOHPC_S3_ENDPOINT:-127.0.0.1:9000}"
ENDPOINT="${ENDPOINT#*://}"
HOST="${ENDPOINT%:*}"
PORT="${ENDPOINT##*:}"
PIDFILE="${REPO}/logs/s3/moto_server.pid"
LOGFILE="${REPO}/logs/s3/moto_server.log"

alive() {
  pid_alive "$PIDFILE"
}

listening() {
  port_open "$HOST" "$PORT"
}

up() {
  if alive; then
    echo "s3: already up at http://${HOST}:${PORT} (pid $(cat "$PIDFILE"))"
    return 0
  fi
  listening && die "something else listens on ${HOST}:${PORT}; set GEOHPC_S3_ENDPOINT=127.0.0.1:<free port>"
  local server="${REPO}/.venv/bin/moto_server" tries=0
  [[ -x "$server" ]] || server="$(command -v moto_server)" || die "no moto_server: run make setup (moto[server])"
  mkdir -p "$(dirname "$PIDFILE")"
  nohup "$server" -H "$HOST" -p "$PORT" >"$LOGFILE" 2>&1 &
  echo $! >"$PIDFILE"
  until listening; do
    tries=$(( tries + 1 ))
    if [[ $tries -ge 40 ]] || ! alive; then
      rm -f "$PIDFILE"
      die "moto_server did not come up on ${HOST}:${PORT}; see ${LOGFILE}"
    fi
    sleep 0.25
  done
  echo "s3: up at http://${HOST}:${PORT} (pid $(cat "$PIDFILE"), log ${LOGFILE}); data lives in memory"
}

down() {
  if ! alive; then
    rm -f "$PIDFILE"
    echo "s3: not running (no live pid in ${PIDFILE})"
    return 0
  fi
  local pid
  pid="$(cat "$PIDFILE")"
  kill "$pid"
  rm -f "$PIDFILE"
  echo "s3: stopped pid ${pid}"
}

status() {
  if alive; then
    echo "s3: up at http://${HOST}:${PORT} (pid $(cat "$PIDFILE"))"
  elif listening; then
    echo "s3: ${HOST}:${PORT} answers, but not a server this script started"
  else
    echo "s3: down"
  fi
}

main() {
  [[ $# -eq 1 ]] || usage
  [[ "$PORT" =~ ^[0-9]+$ ]] || die "GEOHPC_S3_ENDPOINT=${ENDPOINT}: give host:port, e.g. 127.0.0.1:9000"
  case "$1" in
    up) up ;;
    down) down ;;
    status) status ;;
    *) usage ;;
  esac
}

main "$@"
