"""Calls to sbatch, squeue, sacct, scontrol and scancel, and parsers for what they print.

Status is gathered with one squeue call and one batched sacct call for all job ids of a run, never one
call per array task.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass

from geohpc.errors import ConfigError, ServiceError

ACTIVE = {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "RESIZING", "SUSPENDED"}


@dataclass
class TaskInfo:
    """What Slurm knows of one array task."""

    job_id: str  # e.g. "1234_5"
    state: str = "UNKNOWN"
    exit_code: str = ""
    elapsed_s: int = 0
    max_rss: int = 0  # bytes
    req_mem: int = 0  # bytes
    total_cpu_s: float = 0.0  # sacct TotalCPU (user + system) of the task
    alloc_cpus: int = 0
    start: float = 0.0  # epoch seconds (0: not started / unknown)
    end: float = 0.0


def have_slurm() -> bool:
    """True when ``sbatch`` is on PATH."""
    return shutil.which("sbatch") is not None


def _run(cmd: Sequence[str], what: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=120)
    except FileNotFoundError as exc:
        raise ServiceError(f"{cmd[0]} not found: is Slurm installed here (make slurm-up)?") from exc
    except subprocess.TimeoutExpired as exc:
        raise ServiceError(f"{what}: {cmd[0]} did not answer in 120 s (is slurmctld up?)") from exc
    if check and proc.returncode != 0:
        msg = (proc.stderr or proc.stdout).strip().splitlines()
        raise ServiceError(f"{what}: {' '.join(cmd[:2])} failed: {msg[-1] if msg else f'exit {proc.returncode}'}")
    return proc


def sbatch(cmd: Sequence[str]) -> str:
    """Run an ``sbatch --parsable ...`` command line and return the job id."""
    out = _run(cmd, "submit").stdout.strip()
    job_id = out.split(";", 1)[0]
    if not job_id.isdigit():
        raise ServiceError(f"submit: sbatch printed {out!r}, expected a job id")
    return job_id


def parse_duration(text: str) -> int:
    """Slurm ``[D-]HH:MM:SS`` / ``MM:SS.mmm`` -> whole seconds."""
    return int(parse_seconds(text))


def parse_seconds(text: str) -> float:
    """Slurm ``[D-]HH:MM:SS`` / ``MM:SS.mmm`` (sacct TotalCPU keeps milliseconds) -> seconds."""
    text = text.strip()
    if not text or text in ("UNLIMITED", "INVALID", "Partition_Limit"):
        return 0.0
    days = 0
    if "-" in text:
        d, text = text.split("-", 1)
        days = int(d)
    parts = [float(p) for p in text.split(":")]
    while len(parts) < 3:
        parts.insert(0, 0.0)
    h, m, s = parts[-3:]
    return days * 86400 + h * 3600 + m * 60 + s


def parse_mem(text: str) -> int:
    """Slurm memory (``1234K``, ``2G``, ``4000Mn``, ``1Gc``) -> bytes."""
    m = re.fullmatch(r"([0-9.]+)([KMGTP]?)[nc]?", text.strip())
    if not m:
        return 0
    mult = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50}[m.group(2)]
    if m.group(2) == "" and text.strip().endswith(("n", "c")):
        mult = 1 << 20  # ReqMem without a unit is MB
    return int(float(m.group(1)) * mult)


_REQ_UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_mem_request(text: str) -> int:
    """Slurm ``--mem`` (``8G``, ``500M``, ``16000`` = MiB) into bytes."""
    m = re.fullmatch(r"\s*([0-9.]+)\s*([KMGT]?)B?\s*", text, re.I)
    if not m:
        raise ConfigError(f"--mem={text!r} is not a size (use e.g. 8G)")
    return int(float(m.group(1)) * _REQ_UNITS.get(m.group(2).upper() or "M"))


def parse_time_limit(text: str) -> int:
    """Slurm ``--time`` (``MM``, ``MM:SS``, ``HH:MM:SS``, ``D-HH[:MM[:SS]]``) into seconds."""
    text = text.strip()
    days = 0
    if "-" in text:
        d, text = text.split("-", 1)
        days = int(d)
        parts = [int(p) for p in text.split(":")] + [0, 0]
        return days * 86400 + parts[0] * 3600 + parts[1] * 60 + parts[2]
    parts = [int(p) for p in text.split(":")]
    if len(parts) == 1:
        return parts[0] * 60
    if len(parts) == 2:
        return parts[0] * 60 + parts[1]
    return parts[0] * 3600 + parts[1] * 60 + parts[2]


def parse_squeue(text: str) -> dict[str, str]:
    """``squeue -h -r -o '%i|%T'`` output -> {"1234_5": "RUNNING"}."""
    out = {}
    for line in text.splitlines():
        if "|" in line:
            jid, state = line.strip().split("|", 1)
            out[jid] = state.strip()
    return out


SACCT_FORMAT = "JobID,State,ExitCode,Elapsed,MaxRSS,ReqMem,TotalCPU,AllocCPUS,Start,End"


def parse_sacct_time(text: str) -> float:
    """sacct ``Start``/``End`` (``2026-12-07T12:01:02``, local time) -> epoch seconds; 0 for Unknown/None."""
    try:
        return time.mktime(time.strptime(text.strip(), "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return 0.0


def parse_sacct(text: str) -> dict[str, TaskInfo]:
    """``sacct -n -P --format=`` :data:`SACCT_FORMAT` (or its first six fields) -> per-task info.

    Allocation lines (``1234_5``) give state, exit code, TotalCPU, AllocCPUS, start and end; step lines
    (``1234_5.batch``) carry MaxRSS, which is folded into the task.
    """
    tasks: dict[str, TaskInfo] = {}
    for line in text.splitlines():
        fields = line.strip().split("|")
        if len(fields) < 6 or not fields[0]:
            continue
        jid, state, exit_code, elapsed, max_rss, req_mem = fields[:6]
        base, _, step = jid.partition(".")
        info = tasks.setdefault(base, TaskInfo(job_id=base))
        if not step:
            info.state = state.split()[0]  # "CANCELLED by 0" -> "CANCELLED"
            info.exit_code = exit_code
            info.elapsed_s = parse_duration(elapsed)
            info.req_mem = parse_mem(req_mem) or info.req_mem
            if len(fields) >= 10:
                info.total_cpu_s = parse_seconds(fields[6])
                info.alloc_cpus = int(fields[7]) if fields[7].isdigit() else 0
                info.start, info.end = parse_sacct_time(fields[8]), parse_sacct_time(fields[9])
        else:
            info.max_rss = max(info.max_rss, parse_mem(max_rss))
    return tasks


def squeue(job_ids: Sequence[str]) -> dict[str, str]:
    """Pending/running tasks of ``job_ids`` (one squeue call)."""
    if not job_ids:
        return {}
    proc = _run(["squeue", "-h", "-r", "-j", ",".join(job_ids), "-o", "%i|%T"], "status", check=False)
    return parse_squeue(proc.stdout) if proc.returncode == 0 else {}


def sacct(job_ids: Sequence[str], since: str = "") -> dict[str, TaskInfo]:
    """Accounting for every task of ``job_ids`` in one sacct call (``since``: sacct -S, e.g. 2026-11-28)."""
    if not job_ids or not shutil.which("sacct"):
        return {}
    cmd = ["sacct", "-n", "-P", "-j", ",".join(job_ids), f"--format={SACCT_FORMAT}"]
    if since:
        cmd += ["-S", since]
    proc = _run(cmd, "status", check=False)
    return parse_sacct(proc.stdout) if proc.returncode == 0 else {}


def job_exists(job_id: str) -> bool:
    """True when Slurm knows ``job_id`` (queued, running or recently finished)."""
    proc = _run(["scontrol", "show", "job", job_id], "lookup", check=False)
    return proc.returncode == 0 and f"JobId={job_id.split('_')[0]}" in proc.stdout


def throttle(job_id: str, n: int) -> None:
    """Change a running array's ``%N`` (scontrol update ArrayTaskThrottle)."""
    _run(["scontrol", "update", f"JobId={job_id}", f"ArrayTaskThrottle={n}"], "throttle")


def scancel(job_ids: Sequence[str]) -> None:
    """Cancel ``job_ids``."""
    if job_ids:
        _run(["scancel", *job_ids], "cancel")
