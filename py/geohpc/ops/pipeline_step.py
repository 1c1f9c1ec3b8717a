"""The pipeline planner/continuation job: ``python -m geohpc pipeline-step --run <dir> --step <name>``.

One job type (``jobs/pipeline.sbatch``). For a waiting step it plans and submits the first wave through
make submit's own code path; after a wave's jobs end (``afterany:`` on them) it reads the stage run's status,
applies the retry rules (:mod:`geohpc.core.retry`), sends the next attempt (retries grouped by their new
resources, then the next MAX_JOBS wave, one job slot kept for itself) and queues itself again; when the step
is done it starts the planners of the steps after it (the last upstream to finish starts a step, once).
With the local executor the same logic runs in-process, step after step.

This module is the orchestration: :func:`advance` (a step's loop), the planner jobs it queues
(:func:`planner_command`), what happens when a step ends (blocking or starting the steps after, the report)
and :func:`main`. The waves themselves -- the first wave, the retry decisions and next wave, sending an
attempt, the wave arithmetic -- are in :mod:`geohpc.ops.pipeline_waves` (which never imports this module);
``IN_JOB``, ``wave_size``, ``waves`` and ``tasks_of`` stay importable from here.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

from geohpc.core import slurm
from geohpc.core.partitions import candidates
from geohpc.core.pipelines import Pipeline, load_pipeline
from geohpc.core.piperun import ENDED, PipelineRun
from geohpc.core.site import REPO, Site, load_site
from geohpc.errors import GeohpcError, run_cli
from geohpc.ops.pipeline_waves import (
    IN_JOB,
    cancel_if_marked,
    first_wave,
    next_wave,
    tasks_of,
    wave_size,
    waves,
)
from geohpc.ops.submit import executor_for

__all__ = ["IN_JOB", "advance", "main", "pipeline_of", "planner_command", "step_site", "tasks_of", "wave_size",
           "waves", "write_report"]


def pipeline_of(prun: PipelineRun) -> Pipeline:
    """The pipeline as it was run (``pipeline.toml`` of the run folder, with the make line's values)."""
    return load_pipeline(str(prun.path / "pipeline.toml"), prun.meta.get("params", {}))


def step_site(prun: PipelineRun, params: Mapping[str, str]) -> Site:
    """The site of the pipeline run with a step's values (a site key among them wins, as on the make line)."""
    return load_site(prun.meta["site"], cli=params, env=os.environ)


def advance(prun: PipelineRun, name: str, out: TextIO = sys.stdout) -> str:
    """Move step ``name`` on as far as it goes now; its state afterwards (local: run to its end)."""
    pipe = pipeline_of(prun)
    step = pipe.step(name)
    site = step_site(prun, step.params)
    local = executor_for(site, False) == "local"
    while True:
        st = prun.step(name)
        if st["state"] in ENDED:
            return str(st["state"])
        if prun.cancelled:
            prun.set_step(name, step.stage, state="cancelled", message="make cancel PIPELINE=")
            return "cancelled"
        for stream in (out, sys.stdout, sys.stderr):
            stream.flush()  # a check that forks (multiprocessing) would print what is still buffered again
        try:
            if st["state"] in ("waiting", "planning"):
                sent = first_wave(prun, step.name, step.stage, step.params, site, out)
            else:
                sent = next_wave(prun, step.name, step.stage, step.retries, site, out)
        except GeohpcError as exc:  # a step the planner cannot move on ends failed, never stuck running
            print(f"  planner: {exc}", file=out)
            prun.set_step(name, step.stage, state="failed", message=f"planner: {exc}")
            sent = []
        if prun.step(name)["state"] in ENDED:
            end = str(prun.step(name)["state"])
            _after_end(prun, pipe, name, local, out)
            return end
        if not local:
            _queue_continuation(prun, name, site, sent, out)
            return "running"


def _queue_continuation(prun: PipelineRun, name: str, site: Site, after: list[str], out: TextIO) -> str:
    """sbatch jobs/pipeline.sbatch for ``name``: after ``after`` (afterany), or at once when empty."""
    cmd = planner_command(prun, name, site, after)
    job = slurm.sbatch(cmd)
    prun.add_job(job, name, "planner")
    print(f"  planner job {job} for step {name}" + (f" after {len(after)} job(s)" if after else ""), file=out)
    cancel_if_marked(prun, [job])
    return job


def planner_command(prun: PipelineRun, name: str, site: Site, after: list[str]) -> list[str]:
    """The sbatch command line of a planner/continuation job (1 CPU, small memory, the site's CPU partition)."""
    cmd = ["sbatch", "--parsable", f"--job-name=pipeline-{name}"]
    if site.get("ACCOUNT"):
        cmd.append(f"--account={site.get('ACCOUNT')}")
    parts = candidates(site.values, False)
    if parts:
        cmd.append(f"--partition={parts[0]}")
    if after:
        cmd.append("--dependency=afterany:" + ":".join(after))
    cmd += [f"--chdir={REPO}", f"--output={REPO}/logs/pipeline_%j.out", "--export=ALL,GEOHPC_ENV=",
            str(REPO / "jobs" / "pipeline.sbatch"), "--run", str(prun.path), "--step", name]
    return cmd


def _after_end(prun: PipelineRun, pipe: Pipeline, name: str, local: bool, out: TextIO) -> None:
    """A step ended: block what follows a failure; start each next step whose upstreams are all done."""
    st = prun.step(name)
    print(f"step {name}: {st['state']} ({st.get('message', '')})", file=out)
    if st["state"] != "done":
        for d in _descendants(pipe, name):
            if prun.step(d)["state"] not in ENDED:
                prun.set_step(d, pipe.step(d).stage, state="blocked", message=f"step {name} {st['state']}")
    else:
        for d in pipe.downstream(name):
            ups = [prun.step(u)["state"] for u in pipe.step(d).after]
            if all(u == "done" for u in ups) and not local and prun.claim(d):
                site = step_site(prun, pipe.step(d).params)
                job = _queue_continuation(prun, d, site, [], out)
                prun.set_step(d, pipe.step(d).stage, message=f"planner job {job} queued (after {name})")
    if prun.ended():
        write_report(prun, out)


def _descendants(pipe: Pipeline, name: str) -> list[str]:
    out: list[str] = []
    todo = pipe.downstream(name)
    while todo:
        n = todo.pop(0)
        if n not in out:
            out.append(n)
            todo.extend(pipe.downstream(n))
    return out


def write_report(prun: PipelineRun, out: TextIO) -> None:
    """report.html (+ timeline PNGs) at the end of the run, finished or failed."""
    from geohpc.ops.pipeline_report import write_report as report

    try:
        print(f"report {report(prun.path)}", file=out)
    except Exception as exc:  # noqa: BLE001  (the report never turns a finished run into a failure)
        print(f"report not written: {exc}", file=out)


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m geohpc pipeline-step --run <pipeline run folder> --step <name>`` (jobs/pipeline.sbatch)."""
    ap = argparse.ArgumentParser(prog="python -m geohpc pipeline-step", description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, type=Path)
    ap.add_argument("--step", required=True)
    args = ap.parse_args(argv)
    IN_JOB["planner"] = bool(os.environ.get("SLURM_JOB_ID"))
    for key in [k for k in os.environ if k.startswith("SLURM_") and k != "SLURM_CONF"]:
        del os.environ[key]  # this job's own allocation must not leak into what it submits

    def work() -> int:
        prun = PipelineRun(args.run)
        print(f"== pipeline {prun.meta['pipeline']} step {args.step} ({prun.step(args.step)['state']})", flush=True)
        state = advance(prun, args.step)
        print(f"== step {args.step}: {state}")
        return 0

    return run_cli(work, "geohpc.pipeline-step")


if __name__ == "__main__":
    sys.exit(main())
