#!/usr/bin/env bash
# Local Slurm test bed: a one-node cluster on localhost (munged, mariadbd, slurmdbd, slurmctld, slurmd).
# Usage: sh/slurm.sh up|down|status   (make slurm-up / make slurm-down; needs root, no systemd)
set -o errexit -o nounset -o pipefail
# shellcheck source=sh/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NEEDS=(/usr/sbin/slurmctld:slurm-wlm /usr/sbin/slurmdbd:slurmdbd /usr/sbin/munged:munge /usr/sbin/mariadbd:mariadb-server)

wait_for() {
  local what="$1" tries=0
  shift
  until "$@" >/dev/null 2>&1; do
    tries=$(( tries + 1 ))
    [[ $tries -lt 60 ]] || die "$what did not come up; see /var/log/slurm/ and /var/log/mysql/"
    sleep 0.5
  done
}

start_db() {
  install -d -o mysql -g mysql /run/mysqld
  [[ -d /var/lib/mysql/mysql ]] || mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
  pid_alive /run/mysqld/mysqld.pid || setsid runuser -u mysql -- mariadbd --bind-address=127.0.0.1 \
    --pid-file=/run/mysqld/mysqld.pid --socket=/run/mysqld/mysqld.sock >/dev/null 2>&1 < /dev/null &
  wait_for mariadbd mariadb -e 'select 1'
}

up() {
  need_root "make slurm-up"
  apt_need "${NEEDS[@]}"
  install -d -o slurm -g slurm /run/slurm /var/lib/slurm /var/lib/slurm/slurmctld /var/lib/slurm/slurmd /var/log/slurm
  install -d -o munge -g munge -m 0755 /run/munge
  [[ -s /etc/munge/munge.key ]] || { dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none; chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key; }
  pid_alive /run/munge/munged.pid || runuser -u munge -- munged </dev/null >/dev/null 2>&1
  start_db
  PYTHONPATH="${REPO}/py" python3 -m geohpc testbed --etc /etc/slurm | mariadb
  chown slurm:slurm /etc/slurm/slurmdbd.conf
  pid_alive /run/slurm/slurmdbd.pid || slurmdbd </dev/null >/dev/null 2>&1
  wait_for slurmdbd sacctmgr -n list cluster
  sacctmgr -i -Q add cluster geohpc >/dev/null 2>&1 || true
  pid_alive /run/slurm/slurmctld.pid || slurmctld </dev/null >/dev/null 2>&1
  pid_alive /run/slurm/slurmd.pid || slurmd -N localhost </dev/null >/dev/null 2>&1
  wait_for slurmctld sinfo -h
  sinfo
}

down() {
  local name pidfile
  for name in slurmd slurmctld slurmdbd mysqld munged; do
    case "$name" in
      mysqld) pidfile=/run/mysqld/mysqld.pid ;;
      munged) pidfile=/run/munge/munged.pid ;;
      *) pidfile="/run/slurm/${name}.pid" ;;
    esac
    if pid_alive "$pidfile"; then
      kill "$(cat "$pidfile")"
      echo "stopped $name"
    fi
  done
}

main() {
  [[ $# -eq 1 ]] || usage
  case "$1" in
    up) up ;;
    down) down ;;
    status) sinfo && squeue ;;
    *) usage ;;
  esac
}

main "$@"
