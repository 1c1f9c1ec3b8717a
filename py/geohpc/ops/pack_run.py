"""``python -m geohpc pack-run``: the pack runner inside one array task of a packed run (jobs/pack.sbatch).

Runs every manifest line of its pack as its own process (``bash jobs/<stage>.sbatch`` with
SLURM_ARRAY_TASK_ID=<line>, GEOHPC_OFFSET=0 and its share of the CPUs), WORKERS at once; processes, never
threads (GDAL under threads segfaulted in the users' container). An item whose output is already done is
skipped (the stage's done-check: a requeued or resubmitted pack redoes nothing it finished). Each item logs to
its own file and appends one JSON line to ``items/<job>_<task>.jsonl`` (state, rc, elapsed_s, max_rss from
``os.wait4``, log). An item whose process group's RSS passes its memory share is killed (OUT_OF_MEMORY, with
the measured max_rss); one that passes ITEM_TIME is killed (TIMEOUT). Exit 1 when any item did not complete.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from geohpc.core.jobspec import sbatch_directives
from geohpc.core.packing import records_dir
from geohpc.core.runs import PRIVATE, Run
from geohpc.core.stages import get_stage
from geohpc.errors import ConfigError, run_cli
from geohpc.ops.status import run_context
from geohpc.util import human_bytes, write_text_atomic

PAGE = os.sysconf("SC_PAGE_SIZE")
POLL_S = 0.1
SAMPLE_S = 0.25


@dataclass
class Item:
    """One running item: its process (a new session: the group is killed whole) and what was measured."""

    line: int
    name: str
    log: Path
    proc: subprocess.Popen[bytes]
    start: float = field(default_factory=time.time)
    peak: int = 0  # bytes, the process group's sampled RSS
    killed: str = ""  # OUT_OF_MEMORY or TIMEOUT when the runner killed it


def group_rss() -> dict[int, int]:
    """RSS in bytes summed per process group, from one pass over /proc."""
    out: dict[int, int] = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 21:
            pgrp = int(fields[2])
            out[pgrp] = out.get(pgrp, 0) + int(fields[21]) * PAGE
    return out


def item_log(stage_script: Path, stage: str, job: str, task: str, line: int, repo: Path) -> Path:
    """``logs/<stage>_<job>_<task>/<line>.out``: beside where the stage's own log pattern puts a task's log."""
    pattern = sbatch_directives(stage_script).get("output", "logs/%x_%A_%a.out")
    name = sbatch_directives(stage_script).get("job-name", stage)
    path = Path(pattern.replace("%x", name).replace("%A", job).replace("%a", task).replace("%j", job))
    path = path if path.is_absolute() else repo / path
    return path.with_suffix("") / f"{line}.out"


def item_env(job_env: Path, run_dir: Path, key: str) -> Path:
    """The job environment the items of this pack source: the run's job.env, then this runner's own
    interpreter as the launcher (it sources job.env: no copy of its values is made).

    The runner already runs in the stage's runtime (jobs/pack.sbatch starts it through run_py, in the
    container where the stage has one): its items' run_py must not start the container again from inside it.
    """
    if not job_env.is_file():
        raise ConfigError(f"job environment {job_env} is missing (was runs/ deleted?)")
    target = run_dir / "packs" / f"{key}.env"
    write_text_atomic(target, f"source {shlex.quote(str(job_env))}\nexport GEOHPC_LAUNCH={shlex.quote(sys.executable)}\n"
                      "export GEOHPC_ISOLATED=0\n", mode=PRIVATE)
    return target


def run_pack(packs: Path, task: int, env: Mapping[str, str]) -> int:
    """Run pack ``task`` of ``packs``; 0 when every item completed (or was done before), else 1."""
    for key in ("GEOHPC_RUN_DIR", "GEOHPC_STAGE", "GEOHPC_PACK_SCRIPT"):
        if not env.get(key):
            raise ConfigError(f"{key} is not set: pack-run runs inside a packed array task (make submit PACK=n)")
    run_dir = Path(env["GEOHPC_RUN_DIR"])
    try:
        lines_by_task = [ln.split() for ln in packs.read_text().splitlines()]
        lines = [int(x) for x in lines_by_task[task]] if 0 <= task < len(lines_by_task) else None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"{packs}: not a packs file (one line of manifest line numbers a task): {exc}") from None
    if lines is None:
        raise ConfigError(f"{packs}: no pack {task} (it has {len(lines_by_task)})")
    run = Run(path=run_dir, stage=env.get("GEOHPC_STAGE", ""), site=env.get("GEOHPC_SITE", ""))
    stage = get_stage(run.stage)
    ctx = run_context(run)
    items = run.items()
    workers = max(1, int(env.get("GEOHPC_WORKERS") or 1))
    # this attempt's item limits (--export) win over the run's job.env (the first submit's)
    mem_share = int(env.get("GEOHPC_PACK_ITEM_MEM") or env.get("GEOHPC_ITEM_MEM") or 0)
    time_limit = float(env.get("GEOHPC_PACK_ITEM_TIME") or env.get("GEOHPC_ITEM_TIME") or 0)
    script = Path(env["GEOHPC_PACK_SCRIPT"])
    repo = Path(env.get("GEOHPC_REPO") or ".")
    job, idx = env.get("SLURM_ARRAY_JOB_ID", "0"), env.get("SLURM_ARRAY_TASK_ID", "0")
    record_file = records_dir(run_dir) / f"{job}_{idx}.jsonl"
    record_file.parent.mkdir(parents=True, exist_ok=True)
    base = dict(env)
    base.update({"GEOHPC_OFFSET": "0", "SLURM_CPUS_PER_TASK": env.get("GEOHPC_ITEM_CPUS", "1"),
                 "GEOHPC_PACK_TASK": f"{job}_{idx}"})
    if mem_share:
        base["SLURM_MEM_PER_NODE"] = str(max(1, mem_share >> 20))
    if env.get("GEOHPC_ENV"):
        base["GEOHPC_ENV"] = str(item_env(Path(env["GEOHPC_ENV"]), run_dir, f"{job}_{idx}"))
    print(f"== pack {job}_{idx}: {len(lines)} item(s), {workers} at once, memory share "
          f"{human_bytes(mem_share) if mem_share else 'none'}, item time limit {time_limit or 'none'}", flush=True)
    pending = list(reversed(lines))
    running: dict[int, Item] = {}

    def stop(signum: int, _frame: object) -> None:  # scancel / the task's time limit: the items go with the task
        for pid in running:
            with _quiet():
                os.killpg(pid, signal.SIGKILL)
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    bad = 0
    last_sample = 0.0

    def record(rec: dict[str, object]) -> None:
        data = (json.dumps(rec, sort_keys=True) + "\n").encode()
        fd = os.open(record_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, data)  # one write a line, O_APPEND: records of concurrent writers never interleave
        finally:
            os.close(fd)
        print(f"[pack] line {rec['line']} {rec['item']}: {rec['state']} rc={rec['rc']} {rec['elapsed_s']}s "
              f"max_rss {human_bytes(int(rec['max_rss']))} log {rec['log']}", flush=True)

    while pending or running:
        while pending and len(running) < workers:
            line = pending.pop()
            name = items[line]
            log = item_log(script, run.stage, job, idx, line, repo)
            if stage.done(name, ctx):
                now = time.time()
                record({"line": line, "item": name, "state": "DONE_BEFORE", "rc": 0, "elapsed_s": 0, "max_rss": 0,
                        "req_mem": mem_share, "log": str(log), "start": now, "end": now})
                continue
            log.parent.mkdir(parents=True, exist_ok=True)
            with open(log, "ab") as fh:
                proc = subprocess.Popen(["bash", str(script)], cwd=repo, stdout=fh, stderr=subprocess.STDOUT,
                                        env={**base, "SLURM_ARRAY_TASK_ID": str(line)}, start_new_session=True)
            running[proc.pid] = Item(line, name, log, proc)
        now = time.time()
        if now - last_sample >= SAMPLE_S and (mem_share or time_limit):
            last_sample = now
            rss = group_rss() if mem_share else {}
            for pid, it in running.items():
                it.peak = max(it.peak, rss.get(pid, 0))
                if it.killed:
                    continue
                if mem_share and it.peak > mem_share:
                    it.killed = "OUT_OF_MEMORY"
                elif time_limit and now - it.start > time_limit:
                    it.killed = "TIMEOUT"
                if it.killed:
                    with _quiet():
                        os.killpg(pid, signal.SIGKILL)
        for pid in list(running):
            done, status, usage = os.wait4(pid, os.WNOHANG)
            if not done:
                continue
            it = running.pop(pid)
            with _quiet():
                os.killpg(pid, signal.SIGKILL)  # what the item left running in its group goes with it
            rc = os.waitstatus_to_exitcode(status)
            state = it.killed or ("COMPLETED" if rc == 0 else "FAILED")
            bad += state != "COMPLETED"
            end = time.time()
            record({"line": it.line, "item": it.name, "state": state, "rc": rc, "elapsed_s": round(end - it.start, 2),
                    "max_rss": max(it.peak, usage.ru_maxrss * 1024), "req_mem": mem_share, "log": str(it.log),
                    "start": round(it.start, 3), "end": round(end, 3)})
        time.sleep(POLL_S)
    return 1 if bad else 0


class _quiet:
    """Ignore ProcessLookupError/PermissionError (a group already gone)."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: object, tb: object) -> bool:
        return isinstance(exc, (ProcessLookupError, PermissionError))


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m geohpc pack-run --packs <run>/packs/<a>.txt --task K`` (jobs/pack.sbatch calls this)."""
    ap = argparse.ArgumentParser(prog="python -m geohpc pack-run", description=__doc__.splitlines()[0])
    ap.add_argument("--packs", required=True, type=Path)
    ap.add_argument("--task", required=True, type=int, help="the pack: GEOHPC_OFFSET + SLURM_ARRAY_TASK_ID")
    args = ap.parse_args(argv)
    return run_cli(lambda: run_pack(args.packs, args.task, os.environ), "geohpc.pack-run")


if __name__ == "__main__":
    sys.exit(main())
