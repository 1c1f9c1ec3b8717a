"""``make run PIPELINE=x SITE=y [DRY_RUN=1]``, ``make cancel PIPELINE=x``: a whole pipeline on Slurm's machinery.

make run reads ``pipelines/<x>.toml``, runs its prepare commands, writes the pipeline run folder
``runs/<x>/<ts>/`` and submits the first steps (those after no other) through make submit's code path, each
followed by a planner job (``afterany`` on its arrays); every later step is planned and submitted by a
planner job once the steps before it are done, so make run returns in seconds and nothing polls on the
login node. ``DRY_RUN=1`` prints the plan (steps, items, arrays, waves, dependencies, estimated cost) and
writes nothing. With the local executor (no sbatch) the steps run in order, in-process.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

from geohpc.core import billing, slurm
from geohpc.core.arrays import plan_chunks
from geohpc.core.jobspec import render
from geohpc.core.packing import pack_params
from geohpc.core.pipelines import RUN_KEYS, Pipeline, Step, load_pipeline, pipeline_file
from geohpc.core.piperun import ENDED, SCHEMA, PipelineRun, now, pipeline_runs
from geohpc.core.runs import new_run, runs_root
from geohpc.core.site import REPO, load_site, parse_makeflags
from geohpc.errors import ConfigError, GeohpcError, run_cli
from geohpc.ops.pipeline_step import advance, write_report
from geohpc.ops.pipeline_waves import wave_size, waves
from geohpc.ops.submit import executor_for, plan_submission
from geohpc.util import redact, work_path, write_json_atomic, write_text_atomic


def run_prepare(pipe: Pipeline, work: Path, out: TextIO) -> None:
    """The pipeline's prepare commands (``python -m geohpc ...`` on this node), each skipped once it created its path."""
    for prep in pipe.prepare:
        if prep.creates and Path(work_path(prep.creates, work)).exists():
            print(f"  prepare: {prep.creates} exists; skipped", file=out)
            continue
        print(f"  prepare: python -m geohpc {redact(' '.join(prep.run))}", file=out, flush=True)
        env = {**os.environ, "PYTHONPATH": f"{REPO / 'py'}:{os.environ.get('PYTHONPATH', '')}".rstrip(":")}
        proc = subprocess.run([sys.executable, "-m", "geohpc", *prep.run], cwd=work, env=env,
                              stdout=subprocess.DEVNULL)
        if proc.returncode != 0:
            raise ConfigError(f"{pipe.file.name}: prepare command {prep.run[0]} failed (exit {proc.returncode}); "
                              "its error is above")


def dry_run(pipe: Pipeline, site_name: str, env: Mapping[str, str], out: TextIO) -> None:
    """Print the plan of every step; submit nothing, write nothing."""
    print(f"DRY_RUN: pipeline {pipe.name} on site {site_name} ({pipe.file}), nothing submitted", file=out)
    if pipe.description:
        print(f"  {pipe.description}", file=out)
    for prep in pipe.prepare:
        print(f"  prepare (on this node): python -m geohpc {redact(' '.join(prep.run))}", file=out)
    total: dict[str, float] = {}
    for name in pipe.order():
        step = pipe.step(name)
        after = ", ".join(step.after) or "nothing (submitted by make run)"
        print(f"step {name}: stage {step.stage}, after {after}; RETRIES={step.retries}", file=out)
        shown = {k: v for k, v in sorted(step.params.items())}
        print("  params: " + " ".join(f"{k}={redact(v)}" for k, v in shown.items()), file=out)
        line, cost = _step_plan(step, site_name, env, bool(pipe.prepare))
        print(f"  {line}", file=out)
        if cost:
            total[cost[1]] = total.get(cost[1], 0.0) + cost[0]
        print(f"  then: a planner job ({'afterany on these arrays' if not step.after else 'started by ' + after}): "
              "retries, next waves, the steps after", file=out)
    est = ", ".join(f"{v:.2f} {k}" for k, v in total.items()) or "n/a"
    print(f"estimated cost of the steps whose items are known now (at their time limits): {est}; steps planned "
          "after an upstream add theirs", file=out)


def _step_plan(step: Step, site_name: str, env: Mapping[str, str],
               prepared: bool) -> tuple[str, tuple[float, str] | None]:
    """One line: items, arrays, waves, resources, cost; or ``planned after <step>`` when its inputs do not exist yet."""
    try:
        plan = plan_submission(step.stage, site_name, {**step.params, "DRY_RUN": "1"}, env, REPO)
    except GeohpcError as exc:
        if step.after:
            return f"items: planned after {', '.join(step.after)} (its inputs come from it: {exc})", None
        if prepared:
            return f"items: planned once the prepare commands ran (now: {exc})", None
        raise
    todo = len(plan.todo) + plan.held
    size = wave_size(plan.site)
    chunks = plan_chunks(plan.todo, plan.site.int("MAX_ARRAY_SIZE") or None) if plan.todo else []
    spec = render(plan.site, plan.stage, REPO, Path("<run>"), plan.params, plan.ctx.out_dir, plan.ctx.work)
    res = spec.resources
    units, unit = billing.estimate(plan.site, res, todo, res.time_s or 0)
    mem = f"{res.mem_bytes >> 20}M" if res.mem_bytes else "default"
    pack = (pack_params(plan.params, plan.stage.defaults) or (1, 1))[0]
    of = f" of {pack} items" if pack > 1 else ""
    line = (f"items: {len(plan.items)} ({todo} to run); arrays: {len(chunks)} in wave 1; waves: "
            f"{waves(todo, size, plan.site.int('MAX_JOBS'), pack)}"
            + (f" ({size} tasks{of}, then {max(1, size - 1)} a wave: MAX_JOBS less the planner jobs)" if size else "")
            + f"; per task: {res.cpus or 1} CPU, {mem}, time {res.time_s or '?'}s, {res.gpus or 0} GPU, partition "
            f"{res.partition or '-'}; estimated cost {units:.2f} {unit}")
    return line, (units, unit)


def start(pipe: Pipeline, site_name: str, params: Mapping[str, str], repo: Path) -> PipelineRun:
    """Write the pipeline run folder: pipeline.json, pipeline.toml, every step waiting."""
    folder = new_run(repo, pipe.name, site_name).path
    prun = PipelineRun(folder)
    write_text_atomic(folder / "pipeline.toml", pipe.text)
    write_json_atomic(folder / "pipeline.json", {
        "schema": SCHEMA, "pipeline": pipe.name, "site": site_name, "started": now(), "file": str(pipe.file),
        "params": dict(params), "steps": [s.to_json() for s in pipe.steps]})
    for s in pipe.steps:
        prun.set_step(s.name, s.stage, state="waiting", message="waiting for " + (", ".join(s.after) or "make run"))
    return prun


def run_pipeline(name: str, site_name: str, cli: Mapping[str, str], env: Mapping[str, str],
                 out: TextIO = sys.stdout, repo: Path = REPO) -> PipelineRun | None:
    """make run: the plan (DRY_RUN), or the run folder with its first steps submitted (Slurm) or run (local)."""
    params = {k: v for k, v in cli.items() if k not in RUN_KEYS}
    pipe = load_pipeline(name, params, repo)
    site = load_site(site_name, cli=params, env=env)
    if cli.get("DRY_RUN", "") not in ("", "0"):
        dry_run(pipe, site_name, env, out)
        return None
    run_prepare(pipe, Path(work_path(site.get("SCRATCH") or ".", repo)), out)
    for step in pipe.steps:  # refuse a bad first step before anything is written
        if not step.after:
            plan_submission(step.stage, site_name, {**step.params, "DRY_RUN": "1"}, env, repo)
    prun = start(pipe, site_name, params, repo)
    print(f"pipeline {pipe.name}: run folder {prun.path}", file=out)
    local = executor_for(load_site(site_name, cli=pipe.steps[0].params, env=env), False) == "local"
    if local:
        for step_name in pipe.order():
            if prun.step(step_name)["state"] == "waiting":
                print(f"== step {step_name}", file=out, flush=True)
                advance(prun, step_name, out)
        return prun
    for step in pipe.steps:
        if not step.after and prun.claim(step.name):
            advance(prun, step.name, out)
    print(f"submitted; you may log out. make status PIPELINE={pipe.name}; make cancel PIPELINE={pipe.name}",
          file=out)
    return prun


def pipeline_name(name: str) -> str:
    """The pipeline's name: ``name`` itself, or the ``name =`` of a pipeline file given by path."""
    if not name.endswith(".toml"):
        return name
    path = pipeline_file(name)
    try:
        return str(tomllib.loads(path.read_text()).get("name", path.stem))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None


def find_pipeline_run(name: str, run: str = "", repo: Path = REPO) -> PipelineRun:
    """RUN=<ts or path> of pipeline ``name``, else its latest run."""
    if run:
        path = Path(run) if "/" in run else runs_root(repo) / name / run
        if not (path / "pipeline.json").is_file():
            raise ConfigError(f"{path}: not a pipeline run folder (pick one under {runs_root(repo) / name})")
        return PipelineRun(path)
    runs = pipeline_runs(runs_root(repo), name)
    if not runs:
        raise ConfigError(f"no runs of pipeline {name} under {runs_root(repo) / name}: make run PIPELINE={name} first")
    return PipelineRun(runs[-1])


def cancel(prun: PipelineRun, out: TextIO = sys.stdout) -> list[str]:
    """Write ``cancelled``, scancel every job in jobs.txt (planners included), mark the open steps cancelled."""
    (prun.path / "cancelled").touch()
    ids = prun.job_ids()
    if ids and slurm.have_slurm():  # only what is still queued or running: scancel refuses finished jobs
        queued = {k.split("_")[0] for k in slurm.squeue(ids)}
        ids = [i for i in ids if i in queued]
        slurm.scancel(ids)
    for s in prun.meta["steps"]:
        if prun.step(s["name"])["state"] not in ENDED:
            prun.set_step(s["name"], s["stage"], state="cancelled", message="make cancel PIPELINE=")
    print(f"{prun.path}: cancelled {len(ids)} job(s)" + (f": {', '.join(ids)}" if ids else ""), file=out)
    write_report(prun, out)
    return ids


def wait(prun: PipelineRun, timeout_s: float = 6 * 3600, poll_s: float = 5.0, out: TextIO = sys.stderr) -> int:
    """Block until every step ended (the demo's wait only; a user logs out instead); 0 when all are done."""
    deadline = time.monotonic() + timeout_s
    last = ""
    while True:
        states = prun.states()
        line = "  ".join(f"{k}={v}" for k, v in states.items())
        if line != last:
            print(f"[{time.strftime('%H:%M:%S')}] {line}", file=out, flush=True)
            last = line
        if all(v in ENDED for v in states.values()):
            # the last planner writes report.html just after the last state: give it a moment to land
            settle = time.monotonic() + 60
            while not (prun.path / "report.html").exists() and time.monotonic() < min(settle, deadline):
                time.sleep(min(poll_s, 1.0))
            return 0 if all(v == "done" for v in states.values()) else 1
        if time.monotonic() > deadline:
            print(f"{prun.path}: still running after {timeout_s:.0f}s", file=out)
            return 1
        time.sleep(poll_s)


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m geohpc run --pipeline X --site S`` (make run); ``--cancel``; ``--wait``."""
    ap = argparse.ArgumentParser(prog="python -m geohpc run", description=__doc__.splitlines()[0])
    ap.add_argument("--pipeline", required=True, help="a name in pipelines/ or a path to a .toml file")
    ap.add_argument("--site", default="local")
    ap.add_argument("--run", default="", help="with --cancel/--wait: the run (timestamp or folder); default latest")
    ap.add_argument("--cancel", action="store_true", help="make cancel PIPELINE=: stop everything of the run")
    ap.add_argument("--wait", action="store_true", help="wait until the run ended (exit 1 when a step did not finish)")
    ap.add_argument("--timeout", type=float, default=6 * 3600)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="as if given on the make line")
    args = ap.parse_args(argv)

    def work() -> int:
        name = args.pipeline
        if args.cancel or args.wait:
            pname = pipeline_name(name)
            prun = find_pipeline_run(pname, args.run)
            if args.cancel:
                cancel(prun)
                return 0
            return wait(prun, args.timeout)
        cli = parse_makeflags(os.environ.get("MAKEFLAGS", ""))
        for kv in args.set:
            k, sep, v = kv.partition("=")
            if not sep:
                raise ConfigError(f"--set {kv!r}: use KEY=VALUE")
            cli[k] = v
        prun = run_pipeline(name, args.site, cli, os.environ)
        if prun is not None and prun.ended():  # the local executor ran it all: say how it ended
            return 0 if set(prun.states().values()) == {"done"} else 1
        return 0

    return run_cli(work, "geohpc.run")


if __name__ == "__main__":
    sys.exit(main())
