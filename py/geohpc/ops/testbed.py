"""Config files for the local Slurm test bed (``make slurm-up``): a one-node cluster on localhost.

Stdlib only: it runs before the venv exists. Two partitions named like LUMI's (``small`` default,
``standard-g``), ``--mem`` enforced (OverMemoryKill), DefMemPerCPU so jobs share the node, a small
MaxArraySize so that array chunking is exercised, accounting through slurmdbd + MariaDB on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from pathlib import Path

MAX_ARRAY_SIZE = 101
DB_PASS_FILE = Path("/etc/slurm/.geohpc-dbpass")


def slurm_conf(cpus: int, mem_mb: int) -> str:
    """slurm.conf for a single node called localhost."""
    return f"""# written by geohpc (sh/slurm.sh): local test bed, not for production
ClusterName=geohpc
SlurmctldHost=localhost
SlurmUser=slurm
AuthType=auth/munge
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=1
JobAcctGatherParams=OverMemoryKill
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobCompType=jobcomp/filetxt
JobCompLoc=/var/log/slurm/jobcomp.log
DefMemPerCPU=512
MaxArraySize={MAX_ARRAY_SIZE}
MinJobAge=600
KillWait=5
InactiveLimit=0
NodeName=localhost NodeHostname=localhost CPUs={cpus} RealMemory={mem_mb} State=UNKNOWN
PartitionName=small Nodes=localhost Default=YES MaxTime=3-00:00:00 State=UP
PartitionName=standard-g Nodes=localhost MaxTime=2-00:00:00 State=UP
"""


def slurmdbd_conf(password: str) -> str:
    """slurmdbd.conf talking to MariaDB on 127.0.0.1."""
    return f"""# written by geohpc (sh/slurm.sh)
AuthType=auth/munge
DbdHost=localhost
SlurmUser=slurm
PidFile=/run/slurm/slurmdbd.pid
LogFile=/var/log/slurm/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=3306
StorageUser=slurm
StoragePass={password}
StorageLoc=slurm_acct_db
"""


def db_password() -> str:
    """The slurmdbd database password, made once and kept root-only."""
    if DB_PASS_FILE.is_file():
        return DB_PASS_FILE.read_text().strip()
    DB_PASS_FILE.parent.mkdir(parents=True, exist_ok=True)
    pw = secrets.token_hex(12)
    DB_PASS_FILE.write_text(pw + "\n")
    DB_PASS_FILE.chmod(0o600)
    return pw


def mem_mb() -> int:
    """90% of this machine's memory in MB (slurmd refuses a node with less than configured)."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return int(total * 0.9) >> 20


def write(etc: Path) -> None:
    """Write slurm.conf, slurmdbd.conf and print the SQL that creates the accounting user."""
    etc.mkdir(parents=True, exist_ok=True)
    cpus = os.cpu_count() or 1
    (etc / "slurm.conf").write_text(slurm_conf(cpus, mem_mb()))
    pw = db_password()
    dbd = etc / "slurmdbd.conf"
    dbd.write_text(slurmdbd_conf(pw))
    dbd.chmod(0o600)
    print(
        "CREATE DATABASE IF NOT EXISTS slurm_acct_db;\n"
        + "".join(
            f"CREATE USER IF NOT EXISTS 'slurm'@'{h}' IDENTIFIED BY '{pw}';\n"
            f"GRANT ALL ON slurm_acct_db.* TO 'slurm'@'{h}';\n"
            for h in ("localhost", "127.0.0.1")
        )
        + "FLUSH PRIVILEGES;"
    )


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python3 -m geohpc testbed --etc /etc/slurm`` writes the configs, prints the SQL."""
    ap = argparse.ArgumentParser(prog="python3 -m geohpc testbed", description=__doc__.splitlines()[0])
    ap.add_argument("--etc", default="/etc/slurm")
    args = ap.parse_args(argv)
    write(Path(args.etc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
