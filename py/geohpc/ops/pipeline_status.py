"""``make status PIPELINE=x [RUN=ts]``: a pipeline run, step by step, from its run record (ARCHITECTURE.md).

For each step: its state, items by state with a progress bar, waves sent and left, the retries and why
(``decisions.jsonl``), CPU efficiency (sacct TotalCPU / (Elapsed x AllocCPUS)) and MaxRSS against what was
requested; then the billing units spent so far against the allocation (:mod:`geohpc.core.billing`). One
squeue and one sacct call for every job of every step together, never one call per task.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from geohpc.core import billing, slurm
from geohpc.core.jobspec import JobSpec
from geohpc.core.runs import Run, load_run, runs_root
from geohpc.core.site import REPO, load_site, parse_makeflags
from geohpc.core.slurm import TaskInfo
from geohpc.errors import ConfigError, GeohpcError, run_cli
from geohpc.ops.status import CATEGORIES, RunStatus, bar, query, run_status
from geohpc.util import human_bytes

NAME_RE = re.compile(r"^[a-z][a-z0-9_-]*$")
SCHEMA = "geohpc.pipeline-run/1"


@dataclass
class Step:
    """One step of a pipeline run: its record (``steps/<step>.json``), its stage run and that run's status."""

    name: str
    stage: str
    record: dict
    run: Run | None = None
    status: RunStatus | None = None
    problem: str = ""  # why the stage run could not be read


@dataclass
class PipelineRun:
    """A pipeline run folder read back: pipeline.json, the steps' records, the decisions."""

    path: Path
    meta: dict
    steps: list[Step]
    decisions: list[dict] = field(default_factory=list)

    @property
    def name(self) -> str:
        """The pipeline's name."""
        return str(self.meta.get("pipeline", self.path.parent.name))


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_jsonl(path: Path) -> list[dict]:
    """The JSON objects of an append-only file, one a line (a torn last line is skipped)."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError):
        return []
    out = []
    for line in text.splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict):
            out.append(obj)
    return out


def find_pipeline_run(repo: Path, pipeline: str, run: str = "") -> Path:
    """``runs/<pipeline>/<run>``, else the pipeline's latest run folder (one holding pipeline.json)."""
    if not NAME_RE.match(pipeline or ""):
        raise ConfigError(f"PIPELINE={pipeline!r} is not a pipeline name (pipelines/<name>.toml)")
    base = runs_root(repo) / pipeline
    if run:
        path = Path(run) if "/" in run else base / run
        if not (path / "pipeline.json").is_file():
            raise ConfigError(f"{path}: no pipeline.json here; runs of {pipeline}: "
                              f"{', '.join(p.parent.name for p in sorted(base.glob('*/pipeline.json'))) or 'none'}")
        return path
    found = sorted(base.glob("*/pipeline.json"))
    if not found:
        raise ConfigError(f"no runs of pipeline {pipeline} under {base}: make run PIPELINE={pipeline} SITE=<site>")
    return found[-1].parent


def load_pipeline(path: Path) -> PipelineRun:
    """Read a pipeline run folder; a step whose record or stage run is unreadable says so (never a traceback)."""
    meta = _read_json(path / "pipeline.json")
    if meta is None:
        raise ConfigError(f"{path}/pipeline.json: unreadable (not a pipeline run folder?)")
    steps = []
    for s in meta.get("steps", []) if isinstance(meta.get("steps"), list) else []:
        name = str(s.get("name", "?")) if isinstance(s, dict) else "?"
        record = _read_json(path / "steps" / f"{name}.json") or {"state": "waiting"}
        step = Step(name=name, stage=str(record.get("stage") or s.get("stage", "")), record=record)
        if record.get("run"):
            try:
                step.run = load_run(Path(str(record["run"])))
            except GeohpcError as exc:
                step.problem = str(exc)
        steps.append(step)
    return PipelineRun(path=path, meta=meta, steps=steps, decisions=read_jsonl(path / "decisions.jsonl"))


def gather(pipe: PipelineRun) -> None:
    """Fill each step's status: one squeue and one sacct call for every job of every step."""
    runs = [s.run for s in pipe.steps if s.run is not None]
    fetched = query(runs)
    for step in pipe.steps:
        if step.run is not None:
            try:
                step.status = run_status(step.run, fetched)
            except (GeohpcError, OSError) as exc:
                step.problem = str(exc)


def wall_s(t: TaskInfo) -> float:
    """A task's elapsed seconds: sacct Elapsed, else its end - start (sub-second local tasks)."""
    return float(t.elapsed_s) or max(t.end - t.start, 0.0)


def cpu_efficiency(status: RunStatus) -> float | None:
    """sum(TotalCPU) / sum(Elapsed x AllocCPUS) over the run's finished tasks; None when unknown."""
    done = [t for t in status.tasks.values() if t.alloc_cpus and wall_s(t) and t.state not in slurm.ACTIVE]
    avail = sum(wall_s(t) * t.alloc_cpus for t in done)
    return sum(t.total_cpu_s for t in done) / avail if avail else None


def run_resources(run: Run) -> JobSpec | None:
    """The run's job spec (``spec.json``), or None when it is gone."""
    data = _read_json(run.spec_file)
    try:
        return JobSpec.from_json(data) if data else None
    except (KeyError, TypeError):
        return None


def memory_line(status: RunStatus, spec: JobSpec | None) -> str:
    """``MaxRSS 1.2 GiB of 4.0 GiB requested (30%)`` over the run's finished items."""
    finished = status.finished()
    peak = max((t.max_rss for t in finished), default=0)
    req = max((t.req_mem for t in finished), default=0)
    if not req and spec is not None:
        req = spec.resources.mem_bytes or 0
        if status.packed and spec.env.get("GEOHPC_ITEM_MEM"):
            req = int(spec.env["GEOHPC_ITEM_MEM"])
    if not peak:
        return "MaxRSS n/a"
    what = "an item's share" if status.packed else "requested"
    return f"MaxRSS {human_bytes(peak)}" + (f" of {human_bytes(req)} {what} ({peak / req:.0%})" if req else "")


def step_spent(site: Mapping[str, str], step: Step, total: billing.Spent) -> billing.Spent:
    """Billing units the step's tasks spent (their elapsed x the rate of what they asked), added to ``total``."""
    mine = billing.Spent({})
    if step.status is None or step.run is None:
        return mine
    spec = run_resources(step.run)
    if spec is None:
        return mine
    elapsed = [wall_s(t) for t in step.status.tasks.values()]
    billing.spent(site, spec.resources, elapsed, mine)
    for unit, v in mine.units.items():
        total.add(v, unit)
    return mine


def retry_lines(pipe: PipelineRun, step: str, limit: int = 5) -> list[str]:
    """``retries: 3 (retry 2, give-up 1)`` and the latest decisions with their why."""
    mine = [d for d in pipe.decisions if d.get("step") == step]
    if not mine:
        return []
    counts = Counter(str(d.get("action", "?")) for d in mine)
    out = [f"    decisions: {len(mine)} ({', '.join(f'{k} {v}' for k, v in sorted(counts.items()))})"]
    for d in mine[-limit:]:
        new = d.get("new") or {}
        new_text = " ".join(f"{k}={v}" for k, v in new.items() if v) if isinstance(new, dict) else ""
        out.append(f"      {d.get('item', '?')} (attempt {d.get('attempt', '?')}, {d.get('state', '?')}) -> "
                   f"{d.get('action', '?')}{' ' + new_text if new_text else ''}: {d.get('why', '')}")
    if len(mine) > limit:
        out.append(f"      ... {len(mine) - limit} earlier decision(s) in {pipe.path / 'decisions.jsonl'}")
    return out


def site_values(pipe: PipelineRun) -> dict[str, str]:
    """The pipeline's site values (for the billing rule); ``{}`` when the site file is gone."""
    try:
        return load_site(str(pipe.meta.get("site", "local")), cli={}, env={}).values
    except GeohpcError:
        return {}


def format_pipeline(pipe: PipelineRun) -> str:
    """The lines ``make status PIPELINE=`` prints."""
    site = site_values(pipe)
    lines = [f"pipeline {pipe.name}  {pipe.path.name}  site={pipe.meta.get('site', '?')}  "
             f"started {pipe.meta.get('started', '?')}"]
    if (pipe.path / "cancelled").exists():
        lines.append("  cancelled (make cancel PIPELINE=): nothing new is sent")
    total = billing.Spent({})
    for step in pipe.steps:
        rec = step.record
        sent, waves = rec.get("waves_sent"), rec.get("waves_total")
        wave = f"  waves {sent}/{waves} sent" + (f", {int(waves) - int(sent)} left" if isinstance(sent, int)
                                                  and isinstance(waves, int) and waves > sent else "") \
            if sent is not None and waves is not None else ""
        lines.append(f"  {step.name} ({step.stage}): {rec.get('state', '?')}{wave}"
                     + (f"  {rec['message']}" if rec.get("message") else ""))
        if step.problem:
            lines.append(f"    {step.problem}")
        if step.status is None:
            continue
        counts, n = step.status.counts(), len(step.status.states)
        cats = "  ".join(f"{c}={counts[c]}" for c in CATEGORIES if counts[c])
        lines.append(f"    {bar(counts['completed'], n)} {counts['completed']}/{n}  {cats}  run {step.run.path.name}"
                     + ("  (packed)" if step.status.packed else ""))
        eff = cpu_efficiency(step.status)
        spent = step_spent(site, step, total)
        lines.append(f"    cpu efficiency {f'{eff:.0%}' if eff is not None else 'n/a (no sacct TotalCPU yet)'}; "
                     f"{memory_line(step.status, run_resources(step.run))}; spent {spent.text()}")
        lines.extend(retry_lines(pipe, step.name))
    lines.append(f"  billing ({billing.rule(site) or 'no rule'}): {billing.against_allocation(site, total)}")
    return "\n".join(lines)


def pipeline_status(repo: Path, pipeline: str, run: str = "") -> str:
    """Find, read and format a pipeline run (the latest unless ``run`` names one)."""
    pipe = load_pipeline(find_pipeline_run(repo, pipeline, run))
    gather(pipe)
    return format_pipeline(pipe)


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m geohpc pipeline-status [--pipeline NAME] [--run TS]`` (make status PIPELINE= [RUN=])."""
    ap = argparse.ArgumentParser(prog="python -m geohpc pipeline-status", description=__doc__.splitlines()[0])
    ap.add_argument("--pipeline", default=None, help="the pipeline (default: PIPELINE= from the make line)")
    ap.add_argument("--run", default=None, help="its run folder (default: RUN= from the make line, else the latest)")
    args = ap.parse_args(argv)

    def work() -> int:
        make = parse_makeflags(os.environ.get("MAKEFLAGS", ""))  # values never pass through the shell
        name = args.pipeline if args.pipeline is not None else make.get("PIPELINE", "")
        print(pipeline_status(REPO, name, args.run if args.run is not None else make.get("RUN", "")))
        return 0

    return run_cli(work, "geohpc.status")


if __name__ == "__main__":
    sys.exit(main())
