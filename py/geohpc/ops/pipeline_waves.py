"""A pipeline step's waves: the first through make submit, then after each the retries and the next wave.

Used by the planner (:mod:`geohpc.ops.pipeline_step`, which imports this module; this module never imports it).
:func:`first_wave` plans and submits a waiting step through make submit's own code path (MAX_JOBS less the
planner slots, :func:`wave_size`). :func:`next_wave` reads the stage run's status after a wave, applies the retry
rules (:mod:`geohpc.core.retry`) to each failed item (``decisions.jsonl``) and sends one new attempt of the stage
run: retries grouped by their new resources, then the next MAX_JOBS wave of unsent items, counted in array tasks
(with ``PACK=n`` a task holds n items); or it ends the step. :func:`waves` and :func:`tasks_of` are the arithmetic
DRY_RUN's plan shares.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

from geohpc.core import slurm
from geohpc.core.arrays import plan_chunks
from geohpc.core.jobspec import node_mem_mb, sbatch_directives
from geohpc.core.packing import attempt_export, is_packed, plan_packs, with_item_overrides, write_packs
from geohpc.core.partitions import node_caps, partition_facts, time_s
from geohpc.core.piperun import PipelineRun
from geohpc.core.retry import decide, fmt_time
from geohpc.core.runs import Attempt, Run, load_run
from geohpc.core.site import REPO, Site
from geohpc.errors import ConfigError
from geohpc.ops.jobctl import run_spec
from geohpc.ops.status import RunStatus, run_status
from geohpc.ops.submit import launch_chunks, submit
from geohpc.util import write_text_atomic

SHOWN = ("  job", "  items", "  wave", "  warning", "recorded", "nothing to submit")

# set by pipeline_step.main(): this process is itself a planner job, holding one of the MAX_JOBS
IN_JOB = {"planner": False}


def wave_size(site: Site) -> int | None:
    """Tasks one wave may send (None: no cap): MAX_JOBS less the slot of the continuation job it queues, and
    inside a planner job less its own slot too (Slurm counts it until it exits: MaxSubmitJobs would refuse the
    continuation's sbatch)."""
    max_jobs = site.int("MAX_JOBS")
    return max(1, max_jobs - 1 - IN_JOB["planner"]) if max_jobs else None


def first_wave(prun: PipelineRun, name: str, stage: str, params: Mapping[str, str], site: Site,
               out: TextIO) -> list[str]:
    """Plan and submit the step's stage run (its first wave); the job ids sent (none: the step ended)."""
    prun.set_step(name, stage, state="planning", message="planning")
    cli = dict(params)
    size = wave_size(site)
    if size:
        cli["MAX_JOBS"] = str(size)
    buf, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stderr(err):  # the preflight table: its ok rows stay out of the way
            run = submit(stage, prun.meta["site"], cli=cli, env=os.environ, out=buf)
    except ConfigError as exc:
        print(f"  planning failed: {exc}", file=out)
        prun.set_step(name, stage, state="failed", message=f"planning failed: {exc}")
        return []
    finally:
        print("".join(ln + "\n" for ln in err.getvalue().splitlines() if not ln.startswith(("ok ", "STATUS "))),
              end="", file=sys.stderr)
        print("".join(ln + "\n" for ln in buf.getvalue().splitlines() if ln.startswith(SHOWN)), end="", file=out)
    if run is None:
        prun.set_step(name, stage, state="done", message="every item's output was already there")
        return []
    write_text_atomic(run.path / "pipeline.txt", f"{prun.path}\n")
    ids = run.job_ids()
    for job in ids:
        prun.add_job(job, name, "array")
    cancel_if_marked(prun, ids)
    n = len(run.items())
    sent = len(run.line_owner())  # items: a packed task holds PACK of them
    held = re.search(r"wave: (\d+) item\(s\) held back", buf.getvalue())
    todo = sent + (int(held.group(1)) if held else 0)
    pack = (is_packed(run_spec(run, REPO, {}, dict(os.environ), out)) or (1, 1))[0]
    prun.set_step(name, stage, state="running", run=str(run.path), items=n, waves_sent=1,
                  waves_total=waves(todo, size, site.int("MAX_JOBS"), pack), message=f"wave 1: {sent} of {n} items sent")
    return ids


def waves(todo: int, first: int | None, max_jobs: int, pack: int = 1) -> int:
    """How many waves ``todo`` items take: ``first`` array tasks in the first, then MAX_JOBS-2 a planner job
    (None: one wave); with PACK=n a task holds n items, so the waves are counted in tasks of n."""
    if todo <= 0:
        return 0
    if not first or not max_jobs:
        return 1
    tasks = -(-todo // max(1, pack))
    return 1 + -(-max(0, tasks - first) // max(1, max_jobs - 2))


def tasks_of(groups: Mapping[object, list[int]], pack: int) -> int:
    """Array tasks the lines of ``groups`` take: each group is packed on its own, n lines a task."""
    return sum(-(-len(lines) // max(1, pack)) for lines in groups.values())


def cancel_if_marked(prun: PipelineRun, ids: list[str]) -> None:
    """A make cancel that came while we submitted: cancel what was just sent."""
    if ids and prun.cancelled and slurm.have_slurm():
        with contextlib.suppress(Exception):
            slurm.scancel(ids)


def _status(run: Run) -> RunStatus:
    """The run's status; a line that ran but has no accounting yet (sacct lags) is asked again, briefly."""
    status = run_status(run)
    owner = run.line_owner()
    for _ in range(5):
        late = [i for i in status.lines_in("missing") if i in owner and status.item_info(i) is None]
        if not late or run.attempts[-1].executor == "local":
            break
        time.sleep(3)
        status = run_status(run)
    return status


def _current(run: Run, line: int, base: Mapping[str, str], packed: bool) -> dict[str, str]:
    """--mem and --time of the latest attempt that ran ``line`` (its recorded command), else the base spec;
    packed: the item's share and time limit (its attempt's GEOHPC_PACK_ITEM_MEM/_TIME export)."""
    res = dict(base)
    for _, command in run.ran(line):
        for arg in command:
            for key in ("mem", "time"):
                if not packed and arg.startswith(f"--{key}="):
                    res[key] = arg.split("=", 1)[1]
                m = re.search(rf"GEOHPC_PACK_ITEM_{key.upper()}=(\d+)", arg) if packed else None
                if m:
                    res[key] = f"{int(m.group(1)) >> 20}M" if key == "mem" else fmt_time(int(m.group(1)))
    return res


def _attempt_of(run: Run, line: int) -> int:
    return ([n for n, _ in run.ran(line)] or [0])[-1]


def _log_tail(run: Run, line: int, lines: int = 5) -> str:
    owner = run.line_owner().get(line)
    if owner is None:
        return ""
    _, job, idx = owner
    d = sbatch_directives(REPO / "jobs" / f"{run.stage}.sbatch")
    pattern = d.get("output", "logs/%x_%A_%a.out")
    path = pattern.replace("%x", d.get("job-name", run.stage)).replace("%A", job).replace("%a", idx)
    p = Path(path) if Path(path).is_absolute() else REPO / path
    try:
        return " | ".join(p.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""


def next_wave(prun: PipelineRun, name: str, stage: str, retries: int, site: Site, out: TextIO) -> list[str]:
    """After a wave: decide on each failed item, send the next attempt; or end the step.

    Returns the job ids the continuation waits for (those just sent and those of earlier attempts still busy).
    """
    st = prun.step(name)
    run = load_run(Path(st["run"]))
    status = _status(run)
    owner = run.line_owner()
    busy = status.lines_in("pending", "running")
    spec = run_spec(run, REPO, {}, dict(os.environ), out)
    merged = {**spec.directives, **spec.options}
    base = {"mem": merged.get("mem", ""), "time": merged.get("time", "")}
    part = spec.resources.partition
    mem_cap = ((node_caps(site.values, part)[1] or node_mem_mb(site)) << 20) or None
    time_cap = time_s((partition_facts(site.values, part) or {}).get("maxtime", ""))
    packing = is_packed(spec)
    pack = packing[0] if packing else 1
    if packing:  # retries size an item: its share of the task (the task grows to share x WORKERS), its own limit
        item_mem, item_time = int(spec.env.get("GEOHPC_ITEM_MEM") or 0), int(spec.env.get("GEOHPC_ITEM_TIME") or 0)
        base = {"mem": f"{item_mem >> 20}M" if item_mem else "", "time": fmt_time(item_time) if item_time else ""}
        mem_cap = mem_cap // packing[1] if mem_cap else None
        time_cap = time_cap // -(-pack // packing[1]) if time_cap else None
    past = prun.decisions(name)
    groups: dict[tuple[str, str, str], list[int]] = {}
    gave_up = 0
    failed = [i for i in status.lines_in("failed", "timeout", "oom", "cancelled", "missing") if i in owner]
    size = wave_size(site)
    busy_tasks = len({owner[i][1:] for i in busy if i in owner}) if packing else len(busy)
    budget = size - busy_tasks if size else None  # in array tasks: retries count against MAX_JOBS too
    for line in failed:
        if budget is not None and tasks_of(groups, pack) >= budget and all(len(g) % pack == 0 for g in groups.values()):
            break
        attempt = _attempt_of(run, line)
        mine = [d for d in past if d.get("line") == line]
        if any(d.get("action") == "give-up" for d in mine):
            gave_up += 1
            continue
        if any(d.get("attempt") == attempt for d in mine):
            continue  # decided already (its retry is the attempt after)
        info = status.item_info(line)
        cur = _current(run, line, base, bool(packing))
        req_mem = slurm.parse_mem_request(cur["mem"]) if cur["mem"] else (info.req_mem if info else 0)
        req_time = slurm.parse_time_limit(cur["time"]) if cur["time"] else None
        dec = decide(info, status.states[line], req_mem=req_mem, req_time_s=req_time, mem_cap=mem_cap,
                     time_cap_s=time_cap, retries_used=sum(d.get("action") == "retry" for d in mine),
                     retries=retries, requeues_used=sum(d.get("action") == "requeue" for d in mine),
                     log_tail=_log_tail(run, line))
        new = {"mem": f"{dec.mem_mb}M" if dec.mem_mb else cur["mem"],
               "time": fmt_time(dec.time_s) if dec.time_s else cur["time"]}
        key = ("retry", new["mem"], new["time"])
        if budget is not None and dec.action != "give-up" and \
                tasks_of({**groups, key: [*groups.get(key, []), line]}, pack) > budget:
            break  # no task left for it in this wave: decided after the next
        record = {"step": name, "line": line, "item": run.items()[line], "attempt": attempt,
                  "state": info.state if info else status.states[line],
                  "measured": {"max_rss": info.max_rss if info else 0, "elapsed_s": info.elapsed_s if info else 0,
                               "req_mem": req_mem, "time_s": req_time},
                  "action": dec.action, "new": new if dec.action != "give-up" else {}, "why": dec.why}
        prun.add_decision(record)
        print(f"  decision: line {line + 1} {record['item']}: {dec.action}: {dec.why}", file=out)
        if dec.action == "give-up":
            gave_up += 1
        else:
            groups.setdefault(key, []).append(line)
    room = (size - busy_tasks - tasks_of(groups, pack)) if size else None  # tasks, each of PACK items
    unsent = [i for i in status.lines_in("missing") if i not in owner]
    if unsent and (room is None or room > 0):
        groups.setdefault(("array", base["mem"], base["time"]), []).extend(unsent[:room * pack] if room else unsent)
    if not groups and not busy:
        n = len(status.states)
        done = status.counts()["completed"]
        state = "done" if done == n else "failed"
        prun.set_step(name, stage, state=state, message=f"{done} of {n} items completed" +
                      (f", {gave_up} given up (see decisions.jsonl)" if gave_up else ""))
        return []
    if prun.cancelled:
        return []
    ids = _send(prun, name, run, spec, groups, base, out)
    waves = st.get("waves_sent", 1) + (1 if any(k[0] == "array" for k in groups) else 0)
    prun.set_step(name, stage, waves_sent=waves, message=f"attempt {len(run.attempts)}: "
                  + ", ".join(f"{len(v)} {k[0]}" for k, v in groups.items()))
    return ids + [c.job_id for a in run.attempts[:-1] for c in a.chunks
                  if c.job_id and any(c.offset + i in busy for i in c.indices)]


def _send(prun: PipelineRun, name: str, run: Run, spec, groups: dict[tuple[str, str, str], list[int]],  # noqa: ANN001
          base: Mapping[str, str], out: TextIO) -> list[str]:
    """One new attempt of the stage run: an array per (kind, --mem, --time), replaying spec.json."""
    executor = run.attempts[-1].executor if run.attempts else "slurm"
    packing = is_packed(spec)
    attempt = Attempt(executor=executor, throttle=run.attempts[0].throttle if run.attempts else None, chunks=[])
    packs: list[list[int]] = []  # packed: one packs file for the attempt, each group's packs after the last's
    if packing:
        for lines in groups.values():
            packs += plan_packs(lines, packing[0])
        attempt.packs = write_packs(run.path, len(run.attempts), packs)
    run.attempts.append(attempt)
    ids: list[str] = []
    first = 0
    for (kind, mem, tm), lines in groups.items():
        asked = {k: v for k, v in (("MEM", mem), ("TIME", tm)) if v and v != base[k.lower()]}
        if packing:  # the values are an item's: its share (the task grows to fit WORKERS of them) and its limit
            s, _ = with_item_overrides(spec, {f"ITEM_{k}": v for k, v in asked.items()})
            n = len(plan_packs(lines, packing[0]))
            todo, first = list(range(first, first + n)), first + n
        else:
            (s, _), todo = spec.with_overrides(asked), lines
        extra = attempt_export(s, run.path / attempt.packs) if packing else None
        chunks = plan_chunks(todo, int(run.job_env().get("MAX_ARRAY_SIZE", "0") or 0) or None)
        for c in chunks:
            c.command = s.command(run.env_file, c.array_spec(attempt.throttle), [], c.offset, extra)
        launch_chunks(run, attempt, chunks, REPO, s, out)
        for c in chunks:
            if executor == "slurm":
                prun.add_job(c.job_id, name, kind)
                ids.append(c.job_id)
    cancel_if_marked(prun, ids)
    return ids
