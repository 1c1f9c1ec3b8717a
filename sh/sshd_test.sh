#!/usr/bin/env bash
# A throwaway sshd on 127.0.0.1 for the deploy tests, reached through the ssh Host alias geohpc-loopback.
# Usage: sh/sshd_test.sh up|down   (keys and config in $GEOHPC_SSHD_DIR, default /tmp/geohpc-sshd)
set -o errexit -o nounset -o pipefail
# shellcheck source=sh/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DIR="${GEOHPC_SSHD_DIR:-/tmp/geohpc-sshd}"
PORT="${GEOHPC_SSHD_PORT:-2222}"

up() {
  need_root "sshd_test.sh up"
  apt_need /usr/sbin/sshd:openssh-server rsync:rsync
  mkdir -p "$DIR" /run/sshd
  chmod 700 "$DIR"
  [[ -f "$DIR/host_key" ]] || ssh-keygen -q -t ed25519 -N '' -f "$DIR/host_key"
  [[ -f "$DIR/client_key" ]] || ssh-keygen -q -t ed25519 -N '' -f "$DIR/client_key"
  cp "$DIR/client_key.pub" "$DIR/authorized_keys"
  cat > "$DIR/sshd_config" <<CONF
Port ${PORT}
ListenAddress 127.0.0.1
HostKey ${DIR}/host_key
PidFile ${DIR}/sshd.pid
AuthorizedKeysFile ${DIR}/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
CONF
  cat > "$DIR/ssh_config" <<CONF
Host geohpc-loopback
  HostName 127.0.0.1
  Port ${PORT}
  User $(id -un)
  IdentityFile ${DIR}/client_key
  IdentitiesOnly yes
  StrictHostKeyChecking no
  UserKnownHostsFile /dev/null
  LogLevel ERROR
CONF
  if pid_alive "$DIR/sshd.pid"; then
    echo "sshd already up on 127.0.0.1:${PORT}"
  else
    /usr/sbin/sshd -f "$DIR/sshd_config" </dev/null >/dev/null 2>&1
    echo "sshd up on 127.0.0.1:${PORT}; ssh -F $DIR/ssh_config geohpc-loopback"
  fi
}

down() {
  [[ -s "$DIR/sshd.pid" ]] && kill "$(cat "$DIR/sshd.pid")" 2>/dev/null && echo "sshd stopped"
  return 0
}

main() {
  [[ $# -eq 1 ]] || usage
  case "$1" in
    up) up ;;
    down) down ;;
    *) usage ;;
  esac
}

main "$@"
