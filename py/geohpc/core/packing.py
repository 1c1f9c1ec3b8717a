"""Packing (``PACK=n WORKERS=w``): many manifest items in one array task, each still its own item.

The items to run are split by stride into ``ceil(len/n)`` packs (task k of T gets ``todo[k::T]``), written to
``packs/<attempt>.txt`` (line k+1: the pack's 0-based manifest lines); the array runs ``jobs/pack.sbatch``,
whose pack runner (``geohpc.ops.pack_run``) runs every item of its pack as ``jobs/<stage>.sbatch``, w at
once. A task asks the per-item CPUs and memory times w (capped at the node) and time for ``ceil(n/w)``
items (capped at the partition's limit). Each finished item appends one JSON line to
``items/<job>_<task>.jsonl``; :func:`read_item_records` reads them back for status, logs and resubmit.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Collection, Mapping
from dataclasses import replace
from pathlib import Path

from geohpc.core.jobspec import JobSpec, node_cpus, node_mem_mb, sbatch_directives
from geohpc.core.partitions import node_caps, partition_facts, time_s
from geohpc.core.site import Site
from geohpc.core.slurm import TaskInfo, parse_mem_request, parse_time_limit
from geohpc.errors import ConfigError
from geohpc.util import REPO, write_text_atomic

PACK_PARAMS = ("PACK", "WORKERS", "ITEM_MEM", "ITEM_TIME")
ITEM_STATES = ("COMPLETED", "FAILED", "OUT_OF_MEMORY", "TIMEOUT", "DONE_BEFORE")


def _positive(key: str, value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise ConfigError(f"{key}={value!r} is not a positive whole number (e.g. PACK=50 WORKERS=4)")
    return int(value)


def pack_params(params: Mapping[str, str], own: Collection[str] = ()) -> tuple[int, int] | None:
    """(PACK, WORKERS) from the make line; None when not packing. WORKERS defaults to 1.

    ``own`` are the stage's own parameters: a stage that runs its own process pool (the Sure2 stages' WORKERS)
    takes WORKERS without PACK as its pool size.
    """
    if not params.get("PACK"):
        if params.get("WORKERS") and "WORKERS" not in own:
            raise ConfigError("WORKERS= needs PACK=<items a task> (WORKERS alone would change nothing)")
        return None
    pack = _positive("PACK", params["PACK"])
    workers = _positive("WORKERS", params.get("WORKERS") or "1")
    return pack, min(workers, pack)


def plan_packs(lines: list[int], pack: int) -> list[list[int]]:
    """``lines`` in ``ceil(len/pack)`` packs by stride: pack k of T gets ``lines[k::T]``."""
    n_tasks = math.ceil(len(lines) / pack) if lines else 0
    return [lines[k::n_tasks] for k in range(n_tasks)]


def write_packs(run_dir: Path, attempt: int, packs: list[list[int]]) -> str:
    """Write ``packs/<attempt>.txt`` atomically; the path relative to the run folder (for plan.json)."""
    rel = f"packs/{attempt}.txt"
    (run_dir / "packs").mkdir(parents=True, exist_ok=True)
    write_text_atomic(run_dir / rel, "".join(" ".join(map(str, p)) + "\n" for p in packs))
    return rel


def pack_spec(spec: JobSpec, site: Site, params: Mapping[str, str], pack: int, workers: int) -> JobSpec:
    """The spec of a packed run: ``jobs/pack.sbatch`` with w items' CPUs and memory and n/w items' time.

    ``MEM=``/``TIME=`` on the make line are the task's (then an item's memory share is MEM / WORKERS);
    ``ITEM_MEM=``/``ITEM_TIME=`` set an item's share and its own time limit. What was capped is in the notes.
    """
    res = spec.resources
    if res.gpus:
        raise ConfigError(f"PACK= packs CPU items; stage {spec.stage} asks {res.gpus} GPU(s) a task: submit it "
                          "without PACK (one item a task)")
    part_cpus, part_mem = node_caps(site.values, res.partition)
    cap_cpus, cap_mem = part_cpus or node_cpus(site), part_mem or node_mem_mb(site)
    options, notes = dict(spec.options), list(spec.notes)
    item_cpus = res.cpus or 1
    task_cpus = item_cpus * workers
    if cap_cpus and task_cpus > cap_cpus:
        notes.append(f"--cpus-per-task {task_cpus} ({workers} workers x {item_cpus}) capped at the node's {cap_cpus}")
        task_cpus = cap_cpus
    options["cpus-per-task"] = str(task_cpus)
    env = dict(spec.env)
    if res.mem_bytes:
        task_mem = res.mem_bytes if params.get("MEM") else res.mem_bytes * workers
        if cap_mem and task_mem >> 20 > cap_mem:
            notes.append(f"--mem {task_mem >> 20}M capped at the node's {cap_mem}M")
            task_mem = cap_mem << 20
        options["mem"] = f"{max(task_mem >> 20, 1)}M"
        share = parse_mem_request(params["ITEM_MEM"]) if params.get("ITEM_MEM") else task_mem // workers
        env["GEOHPC_ITEM_MEM"] = str(share)
    elif params.get("ITEM_MEM"):
        env["GEOHPC_ITEM_MEM"] = str(parse_mem_request(params["ITEM_MEM"]))
    item_time = parse_time_limit(params["ITEM_TIME"]) if params.get("ITEM_TIME") else None
    if item_time:
        env["GEOHPC_ITEM_TIME"] = str(item_time)
    if not params.get("TIME") and (item_time or res.time_s):
        rounds = math.ceil(pack / workers)
        want = task_time(rounds, item_time or res.time_s or 0)
        facts = partition_facts(site.values, res.partition) or {}
        limit = time_s(facts.get("maxtime", ""))
        if limit and want > limit:
            notes.append(f"--time for {rounds} rounds of items ({want}s) capped at partition {res.partition}'s "
                         f"limit {facts['maxtime']}: give ITEM_TIME= or a smaller PACK= if items run long")
            want = limit
        options["time"] = _slurm_time(want)
    options["job-name"] = spec.stage
    env.update({"GEOHPC_PACK": str(pack), "GEOHPC_WORKERS": str(workers),
                "GEOHPC_ITEM_CPUS": str(max(1, task_cpus // workers)), "GEOHPC_PACK_SCRIPT": spec.script})
    script = str(Path(spec.script).with_name("pack.sbatch"))
    return replace(spec, script=script, options=options, notes=notes, env=env,
                   directives=sbatch_directives(REPO / "jobs" / "pack.sbatch"))


def task_time(rounds: int, item_s: int) -> int:
    """A pack task's walltime: ``rounds`` items one after another, plus a minute for the task's start and its
    records, in whole minutes (an item's own limit must strike before the task's)."""
    return math.ceil((rounds * item_s + 60) / 60) * 60


def _slurm_time(seconds: int) -> str:
    days, rest = divmod(int(seconds), 86400)
    hms = f"{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
    return f"{days}-{hms}" if days else hms


def attempt_export(spec: JobSpec, packs_file: Path | str) -> dict[str, str]:
    """What a packed attempt's tasks get through ``--export`` (job.env is the run's, shared by its attempts):
    its packs file and its item limits (a resubmit may raise them: ITEM_MEM=, ITEM_TIME=, MEM=)."""
    out = {"GEOHPC_PACKS": str(packs_file)}
    for key in ("GEOHPC_ITEM_MEM", "GEOHPC_ITEM_TIME"):
        if spec.env.get(key):
            out[key.replace("GEOHPC_ITEM_", "GEOHPC_PACK_ITEM_")] = spec.env[key]
    return out


def is_packed(spec: JobSpec) -> tuple[int, int] | None:
    """(PACK, WORKERS) a rendered spec packs with; None for one item a task."""
    if not spec.env.get("GEOHPC_PACK"):
        return None
    return int(spec.env["GEOHPC_PACK"]), int(spec.env.get("GEOHPC_WORKERS", "1"))


def records_dir(run_dir: Path) -> Path:
    """Where pack tasks append their item records: ``<run>/items/``."""
    return run_dir / "items"


def read_item_records(run_dir: Path) -> dict[str, dict[int, dict]]:
    """Every item record of a run: ``{"<job>_<task>": {line: record}}``, the last record of a line winning.

    A torn or damaged line (a task killed mid-write) is skipped: that item counts as not recorded.
    """
    out: dict[str, dict[int, dict]] = {}
    folder = records_dir(run_dir)
    try:
        names = os.listdir(folder)
    except OSError:
        return out
    for name in names:
        if not name.endswith(".jsonl"):
            continue
        per = out.setdefault(name[: -len(".jsonl")], {})
        try:
            text = (folder / name).read_text()
        except (OSError, UnicodeDecodeError):
            continue
        for line in text.splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict) and isinstance(rec.get("line"), int):
                per[rec["line"]] = rec
    return out


def record_info(rec: Mapping[str, object], key: str) -> TaskInfo:
    """One item record as the accounting of that item (what the retry rules and status read)."""
    rc = rec.get("rc")
    rc = rc if isinstance(rc, int) else 0
    state = str(rec.get("state", "UNKNOWN"))
    return TaskInfo(job_id=key, state="COMPLETED" if state == "DONE_BEFORE" else state,
                    exit_code=f"{max(rc, 0)}:{-rc if rc < 0 else 0}", elapsed_s=int(float(rec.get("elapsed_s") or 0)),
                    max_rss=int(rec.get("max_rss") or 0), req_mem=int(rec.get("req_mem") or 0),
                    start=float(rec.get("start") or 0), end=float(rec.get("end") or 0))


def with_item_overrides(spec: JobSpec, params: Mapping[str, str]) -> tuple[JobSpec, list[str]]:
    """A packed spec with the make line's ITEM_MEM= / MEM= / ITEM_TIME= applied to the items (resubmit, retries).

    ITEM_MEM= is an item's share (the task's --mem grows to share x WORKERS when that is more); MEM= is the
    task's memory, shared by WORKERS; ITEM_TIME= an item's time limit (the task's --time grows to fit its rounds).
    """
    packing = is_packed(spec)
    if packing is None:
        return spec, []
    pack, workers = packing
    env, options, changed = dict(spec.env), dict(spec.options), []
    share = 0
    if params.get("ITEM_MEM"):
        share = parse_mem_request(params["ITEM_MEM"])
        task = parse_mem_request(options["mem"]) if options.get("mem") else 0
        if share * workers > task:
            options["mem"] = f"{(share * workers) >> 20}M"
    elif params.get("MEM"):
        share = parse_mem_request(params["MEM"]) // workers
    if share and str(share) != env.get("GEOHPC_ITEM_MEM"):
        changed.append(f"item memory share: {env.get('GEOHPC_ITEM_MEM', '(none)')} -> {share} bytes")
        env["GEOHPC_ITEM_MEM"] = str(share)
    if params.get("ITEM_TIME"):
        item_time = parse_time_limit(params["ITEM_TIME"])
        changed.append(f"item time limit: {env.get('GEOHPC_ITEM_TIME', '(none)')} -> {item_time}s")
        env["GEOHPC_ITEM_TIME"] = str(item_time)
        want = task_time(math.ceil(pack / workers), item_time)
        have = parse_time_limit(options["time"]) if options.get("time") else 0
        if not params.get("TIME") and want > have:
            options["time"] = _slurm_time(want)
    return replace(spec, env=env, options=options), changed
