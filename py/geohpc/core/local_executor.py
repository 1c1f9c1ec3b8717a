"""Run a stage's job script without Slurm: the same ``jobs/<stage>.sbatch``, with SLURM_* set.

Used on a machine with no ``sbatch`` (SITE=local). At most ``throttle`` tasks run at once; each task's
log goes where Slurm would put it (``logs/%x_%A_%a.out``) and its final state, exit code, elapsed time
and peak RSS go to ``<run>/local/<job>_<task>.json`` so ``make status`` works the same.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from geohpc.core.arrays import Chunk
from geohpc.core.jobspec import Resources, sbatch_directives
from geohpc.core.slurm import TaskInfo, parse_time_limit
from geohpc.util import write_json_atomic

_lock = threading.Lock()
_last_id = 0


def new_job_id() -> str:
    """A numeric job id for a local array (unique within this machine's clock)."""
    global _last_id
    with _lock:
        candidate = int(time.time() * 1000) % 10**10
        _last_id = max(candidate, _last_id + 1)
        return str(_last_id)


def _log_path(repo: Path, pattern: str, name: str, job_id: str, task: int) -> Path:
    path = pattern.replace("%x", name).replace("%A", job_id).replace("%a", str(task)).replace("%j", job_id)
    p = Path(path)
    return p if p.is_absolute() else repo / p


def run_task(script: Path, repo: Path, env_file: Path, run_dir: Path, job_id: str, task: int, offset: int = 0,
             resources: Resources | None = None, extra_env: Mapping[str, str] | None = None) -> TaskInfo:
    """Run one array task of ``script`` and record its outcome (time limit and CPUs from ``resources``)."""
    directives = sbatch_directives(script)
    res = resources or Resources()
    name = directives.get("job-name", script.stem)
    log = _log_path(repo, directives.get("output", "logs/%x_%A_%a.out"), name, job_id, task)
    log.parent.mkdir(parents=True, exist_ok=True)
    limit = res.time_s or (parse_time_limit(directives["time"]) if directives.get("time") else None)
    cpus = str(res.cpus) if res.cpus else directives.get("cpus-per-task", "1")
    env = dict(os.environ)
    env.update(
        {
            "GEOHPC_ENV": str(env_file),
            "GEOHPC_REPO": str(repo),
            "GEOHPC_OFFSET": str(offset),
            "SLURM_ARRAY_JOB_ID": job_id,
            "SLURM_ARRAY_TASK_ID": str(task),
            "SLURM_JOB_ID": f"{job_id}{task:04d}",
            "SLURM_JOB_NAME": name,
            "SLURM_CPUS_PER_TASK": cpus,
            "SLURM_SUBMIT_DIR": str(repo),
            "SLURM_RESTART_COUNT": "0",
            "GEOHPC_EXECUTOR": "local",
            **(extra_env or {}),
        }
    )
    state_file = run_dir / "local" / f"{job_id}_{task}.json"
    write_json_atomic(state_file, {"state": "RUNNING", "log": str(log)})
    start, wall_start = time.monotonic(), time.time()
    with open(log, "ab") as fh:
        proc = subprocess.Popen(
            ["bash", str(script)], cwd=repo, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True
        )
    state = "COMPLETED"
    # os.wait4 (not proc.wait) so the child's peak RSS comes back with its exit status
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if limit and time.monotonic() - start > limit:
            os.killpg(proc.pid, signal.SIGKILL)
            state = "TIMEOUT"
            pid, status, usage = os.wait4(proc.pid, 0)
            break
        time.sleep(0.1)
    proc.returncode = code = os.waitstatus_to_exitcode(status)
    if state != "TIMEOUT" and code != 0:
        state = "FAILED"
    info = TaskInfo(
        job_id=f"{job_id}_{task}",
        state=state,
        exit_code=f"{max(code, 0)}:{-code if code < 0 else 0}",
        elapsed_s=int(time.monotonic() - start),
        max_rss=usage.ru_maxrss * 1024,
        alloc_cpus=int(cpus) if cpus.isdigit() else 0,
        total_cpu_s=round(usage.ru_utime + usage.ru_stime, 3),  # os.wait4: the task and what it waited for
        start=wall_start,
        end=time.time(),
    )
    write_json_atomic(state_file, info.__dict__ | {"log": str(log)})
    print(f"[local] {name} task {job_id}_{task}: {state} ({info.elapsed_s}s) log {log}", file=sys.stderr)
    return info


def run_chunk(script: Path, repo: Path, env_file: Path, run_dir: Path, chunk: Chunk, throttle: int | None,
              resources: Resources | None = None, extra_env: Mapping[str, str] | None = None) -> str:
    """Run every task of ``chunk`` with at most ``throttle`` at once; return the local job id."""
    job_id = new_job_id()
    chunk.job_id = job_id
    workers = max(1, throttle or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(lambda i: run_task(script, repo, env_file, run_dir, job_id, i, chunk.offset, resources, extra_env),
                      chunk.indices))
    return job_id


def local_states(run_dir: Path) -> dict[str, TaskInfo]:
    """The recorded outcome of every local task of a run, keyed ``<job>_<task>``."""
    out: dict[str, TaskInfo] = {}
    for f in (run_dir / "local").glob("*.json"):
        try:
            d = json.loads(f.read_text())
        except (OSError, UnicodeDecodeError, ValueError):
            continue  # a damaged state file: that task counts as missing, and resubmit runs it again
        if not isinstance(d, dict):
            continue
        jid = f.stem
        out[jid] = TaskInfo(
            job_id=jid,
            state=d.get("state", "UNKNOWN"),
            exit_code=d.get("exit_code", ""),
            elapsed_s=d.get("elapsed_s", 0),
            max_rss=d.get("max_rss", 0),
            total_cpu_s=float(d.get("total_cpu_s", 0) or 0),
            alloc_cpus=int(d.get("alloc_cpus", 0) or 0),
            start=float(d.get("start", 0) or 0),
            end=float(d.get("end", 0) or 0),
        )
    return out
