"""``make status``: per run, items pending / running / completed / failed / timeout / out-of-memory.

One squeue call and one batched sacct call for all job ids (never one call per task), or the local
executor's state files; an item whose output exists counts as completed whatever Slurm says. Elapsed
time and MaxRSS against the requested memory give a right-sizing hint.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from geohpc.core import slurm
from geohpc.core.jobspec import sbatch_directives
from geohpc.core.local_executor import local_states
from geohpc.core.packing import read_item_records, record_info
from geohpc.core.runs import Run, scan_runs
from geohpc.core.site import REPO
from geohpc.core.slurm import TaskInfo
from geohpc.core.stages import StageContext, get_stage
from geohpc.errors import run_cli
from geohpc.util import human_bytes

CATEGORIES = ("pending", "running", "completed", "failed", "timeout", "oom", "cancelled", "missing")
FAILED_STATES = {"FAILED", "NODE_FAIL", "BOOT_FAIL", "PREEMPTED", "DEADLINE", "REVOKED"}


@dataclass
class RunStatus:
    """The state of every manifest line of a run, and the accounting of its finished tasks."""

    run: Run
    states: list[str]
    tasks: dict[str, TaskInfo] = field(default_factory=dict)
    # packed runs: the item records per "<job>_<task>", and which tasks are packs (their lines are items)
    records: dict[str, dict[int, dict]] = field(default_factory=dict)
    packed: set[str] = field(default_factory=set)
    owner: dict[int, tuple[str, str, str]] | None = None  # run.line_owner(), read once

    def counts(self) -> Counter[str]:
        """Items per category."""
        return Counter(self.states)

    def lines_in(self, *categories: str) -> list[int]:
        """0-based manifest lines whose state is one of ``categories``."""
        return [i for i, s in enumerate(self.states) if s in categories]

    def item_info(self, line: int) -> TaskInfo | None:
        """What was measured for manifest ``line``'s latest attempt (state, exit code, elapsed, MaxRSS, ReqMem).

        The retry rules of a pipeline (OUT_OF_MEMORY -> memory from MaxRSS, TIMEOUT -> time from elapsed) read
        this; None when the line never ran or its task left no accounting yet.
        """
        owner = self._owner().get(line)
        if owner is None:
            return None
        _, job_id, idx = owner
        key = f"{job_id}_{idx}"
        if key in self.packed:
            rec = self.records.get(key, {}).get(line)
            return record_info(rec, key) if rec is not None else None
        return self.tasks.get(key)

    def _owner(self) -> dict[int, tuple[str, str, str]]:
        if self.owner is None:
            self.owner = self.run.line_owner()
        return self.owner

    def finished(self) -> list[TaskInfo]:
        """The accounting of every finished item (packed: the item records; else the array tasks)."""
        if self.packed:
            return [record_info(r, k) for k, per in self.records.items() for r in per.values()
                    if r.get("state") != "DONE_BEFORE"]
        return [t for t in self.tasks.values() if t.state not in ("RUNNING", "PENDING", "UNKNOWN")]


def read_job_env(run: Run) -> dict[str, str]:
    """The ``export K=V`` lines of a run's job.env (``{}`` when it is gone)."""
    return run.job_env() if run.env_file.is_file() else {}


def run_context(run: Run) -> StageContext:
    """Rebuild the StageContext the run was planned with, from its job.env."""
    env = read_job_env(run)
    work = Path(env.get("GEOHPC_WORK", "."))
    params = dict(env)
    params.setdefault("OUT_DIR", env.get("GEOHPC_OUT", ""))
    return StageContext(stage=run.stage, site=env, params=params, repo=Path(env.get("GEOHPC_REPO", REPO)), work=work)


def classify(info: TaskInfo | None, active: str | None) -> str:
    """Map Slurm's view of one task to a status category."""
    if active:
        return "pending" if active in ("PENDING", "REQUEUED", "SUSPENDED") else "running"
    if info is None:
        return "missing"
    state = info.state
    if state == "COMPLETED":
        return "completed"
    if state == "OUT_OF_MEMORY" or (state == "FAILED" and info.exit_code.endswith(":9") and info.req_mem
                                    and info.max_rss >= 0.9 * info.req_mem):
        return "oom"
    if state == "TIMEOUT":
        return "timeout"
    if state.startswith("CANCELLED"):
        return "cancelled"
    if state in FAILED_STATES:
        return "failed"
    if state in slurm.ACTIVE:
        return "running" if state == "RUNNING" else "pending"
    return "missing"


def slurm_job_ids(run: Run) -> list[str]:
    """The Slurm job ids of every attempt of ``run``."""
    return [c.job_id for a in run.attempts if a.executor == "slurm" for c in a.chunks if c.job_id]


def query(runs: list[Run]) -> tuple[dict[str, str], dict[str, TaskInfo]]:
    """One squeue call and one batched sacct call for every job of ``runs`` (never one call per task)."""
    ids = [j for r in runs for j in slurm_job_ids(r)]
    if not ids:
        return {}, {}
    since = min((a.submitted[:10] for r in runs for a in r.attempts), default="")
    return slurm.squeue(ids), slurm.sacct(ids, since=since)


ITEM_CATEGORY = {"COMPLETED": "completed", "DONE_BEFORE": "completed", "FAILED": "failed", "OUT_OF_MEMORY": "oom",
                 "TIMEOUT": "timeout"}


def run_status(run: Run, fetched: tuple[dict[str, str], dict[str, TaskInfo]] | None = None) -> RunStatus:
    """Query Slurm (or the local state files) once for the whole run and classify each item.

    ``fetched``: squeue and sacct answers already gathered by :func:`query` for several runs at once.
    A packed run's items are classified from their item records; an item its pack never recorded takes
    its pack task's state (running, or the task's timeout / out-of-memory / cancel).
    """
    stage = get_stage(run.stage)
    ctx = run_context(run)
    items = run.items()
    owner = run.line_owner()
    active, tasks = fetched if fetched is not None else query([run])
    tasks = dict(tasks)
    if any(a.executor == "local" for a in run.attempts):
        tasks.update(local_states(run.path))
    packed = {f"{c.job_id}_{i}" for a in run.attempts if a.packs for c in a.chunks for i in c.indices}
    records = read_item_records(run.path) if packed else {}
    states = []
    for i, item in enumerate(items):
        if stage.done(item, ctx):
            states.append("completed")
            continue
        if i not in owner:
            states.append("missing")
            continue
        _, job_id, idx = owner[i]
        key = f"{job_id}_{idx}"
        rec = records.get(key, {}).get(i) if key in packed else None
        if rec is not None:
            state = ITEM_CATEGORY.get(str(rec.get("state")), "failed")
        else:
            state = classify(tasks.get(key), active.get(key))
        states.append("failed" if state == "completed" else state)  # finished without its output
    return RunStatus(run=run, states=states, tasks=tasks, records=records, packed=packed, owner=owner)


def bar(done: int, total: int, width: int = 30) -> str:
    """``[#########.....]  45%``."""
    frac = done / total if total else 1.0
    n = int(round(frac * width))
    return f"[{'#' * n}{'.' * (width - n)}] {frac * 100:3.0f}%"


def sizing_hint(status: RunStatus) -> str:
    """Elapsed and MaxRSS of finished tasks against the requested memory, with a --mem suggestion."""
    finished = status.finished()
    if not finished:
        return ""
    elapsed = [t.elapsed_s for t in finished]
    peak = max(t.max_rss for t in finished)
    req = max((t.req_mem for t in finished), default=0)
    if not req:
        directives = sbatch_directives(REPO / "jobs" / f"{status.run.stage}.sbatch")
        req = slurm.parse_mem(directives.get("mem", "")) if directives.get("mem") else 0
    rss = human_bytes(peak) if peak else "n/a (tasks shorter than the accounting interval)"
    line = f"  elapsed median {statistics.median(elapsed):.0f}s max {max(elapsed)}s; MaxRSS max {rss}"
    if req:
        line += f" of {human_bytes(req)} requested"
        want = 2 * peak
        if status.counts()["oom"] and status.packed:  # an item's share: 2x what the killed item had reached
            line += f" -> out of memory: resubmit with ITEM_MEM={max(2 * max(peak, req) >> 20, 1)}M"
        elif status.counts()["oom"]:
            line += f" -> out of memory: resubmit with MEM={max(2 * req >> 20, 1)}M"
        elif peak and want < req / 2:
            line += f" -> MEM={max(int(want) >> 20, 64)}M would do (2x peak)"
        elif peak and peak > 0.8 * req:
            line += f" -> close to the limit: MEM={int(want) >> 20}M is safer"
    return line


def format_status(status: RunStatus) -> str:
    """The lines make status prints for one run."""
    run, counts = status.run, status.counts()
    total = len(status.states)
    head = f"{run.stage}  {run.path.name}  site={run.site}  jobs={','.join(run.job_ids()) or '-'}"
    if status.packed:
        head += f"  packed: {len(status.packed)} task(s), items recorded one by one"
    cats = "  ".join(f"{c}={counts[c]}" for c in CATEGORIES if counts[c] or c in ("pending", "running", "failed"))
    lines = [head, f"  {bar(counts['completed'], total)} {counts['completed']}/{total}  {cats}"]
    hint = sizing_hint(status)
    if hint:
        lines.append(hint)
    bad = status.lines_in("failed", "timeout", "oom", "cancelled")
    if bad:
        lines.append(f"  {len(bad)} to retry: make resubmit STAGE={run.stage} RUN={run.path.name}")
    return "\n".join(lines)


def wait(stage: str, poll_s: float = 3.0, timeout_s: float = 6 * 3600) -> int:
    """Block until the latest run of ``stage`` has nothing pending or running; 1 if any item failed."""
    import time

    runs, damaged = scan_runs(REPO, stage or None)
    for bad in damaged:
        print(bad.skipped(), file=sys.stderr)
    if not runs:
        print(f"no runs of {stage or 'any stage'} yet: make submit STAGE=<stage> SITE=<site>", file=sys.stderr)
        return 1
    run = runs[-1]
    deadline = time.monotonic() + timeout_s
    last = ""
    while True:
        status = run_status(run)
        counts = status.counts()
        line = format_status(status).splitlines()[1]
        if line != last:
            print(line.strip(), file=sys.stderr, flush=True)
            last = line
        if not counts["pending"] and not counts["running"]:
            time.sleep(poll_s)  # sacct lags squeue
            status = run_status(run)
            break
        if time.monotonic() > deadline:
            print(f"{run.stage}: still running after {timeout_s:.0f}s", file=sys.stderr)
            return 1
        time.sleep(poll_s)
    print(format_status(status))
    return 1 if status.lines_in("failed", "timeout", "oom", "cancelled", "missing") else 0


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m geohpc status [--stage X] [--all]``."""
    ap = argparse.ArgumentParser(prog="python -m geohpc status", description=__doc__.splitlines()[0])
    ap.add_argument("--stage", default="")
    ap.add_argument("--all", action="store_true", help="every run, not only the latest of each stage")
    ap.add_argument("--wait", action="store_true", help="wait until nothing is pending or running; exit 1 on failures")
    args = ap.parse_args(argv)

    def work() -> int:
        if args.wait:
            return wait(args.stage)
        runs, damaged = scan_runs(REPO, args.stage or None)
        for bad in damaged:  # a damaged or half-purged run folder is named, never a traceback
            print(bad.skipped())
        if not args.all:
            latest: dict[str, Run] = {}
            for r in runs:
                latest[r.stage] = r
            runs = list(latest.values())
        if not runs:
            print("no runs yet: make submit STAGE=<stage> SITE=<site>")
            return 0
        for r in runs:
            print(format_status(run_status(r)))
        return 0

    return run_cli(work, "geohpc.status")


if __name__ == "__main__":
    sys.exit(main())
