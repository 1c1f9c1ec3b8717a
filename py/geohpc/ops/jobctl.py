"""``make throttle``, ``make cancel`` and ``make resubmit``: act on submitted runs.

Resubmit re-plans from the run's own manifest: only the items that failed, timed out, ran out of memory,
were cancelled or never produced their output are sent again, as a compact array list per chunk
(``--array=3,7,12-15%4``), replaying the run's rendered job spec (``spec.json``: resources, account,
partition) and job environment, with the run's throttle; a make-line value overrides, and is printed.
Damaged run folders are named and skipped; resubmitting a damaged run is a one-line error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TextIO

from geohpc.core import slurm
from geohpc.core.arrays import effective_throttle, parse_throttle, plan_chunks
from geohpc.core.jobspec import JOB_ID_RE, JobSpec, render
from geohpc.core.packing import attempt_export, is_packed, plan_packs, with_item_overrides, write_packs
from geohpc.core.runs import Attempt, DamagedRun, Run, find_run, list_runs
from geohpc.core.site import REPO, load_site, parse_makeflags
from geohpc.core.stages import get_stage
from geohpc.errors import ConfigError, run_cli
from geohpc.ops.status import run_context, run_status
from geohpc.ops.submit import collect_params, launch_chunks, run_preflight_gate
from geohpc.util import redact

RETRY = ("failed", "timeout", "oom", "cancelled", "missing")


def _check_job(job: str) -> None:
    if not JOB_ID_RE.match(job or ""):
        raise ConfigError(f"JOB={job!r} is not a job id (see make status)")
    if not slurm.job_exists(job):
        raise ConfigError(f"JOB={job}: no such job in Slurm (see make status / squeue)")


def throttle(job: str, n: str) -> None:
    """Set an array's ``%N`` to ``n`` (scontrol update ArrayTaskThrottle)."""
    value = parse_throttle(n)
    if value is None:
        raise ConfigError("N= is required: make throttle JOB=<array job id> N=<tasks at once>")
    _check_job(job)
    slurm.throttle(job, value)
    print(f"job {job}: at most {value} tasks at once")


def cancel(repo: Path, job: str = "", stage: str = "") -> list[str]:
    """Cancel one job, or every job of a stage's latest run (or of every stage's latest run)."""
    if job:
        _check_job(job)
        ids = [job]
    else:
        runs = [find_run(repo, stage)] if stage else list_runs(repo)
        ids = [c.job_id for r in runs for a in r.attempts if a.executor == "slurm" for c in a.chunks if c.job_id]
        if not ids:
            print("nothing to cancel")
            return []
    slurm.scancel(ids)
    print(f"cancelled {', '.join(ids)}")
    return ids


def run_spec(run: Run, repo: Path, cli: dict[str, str], env: dict[str, str], out: TextIO = sys.stdout) -> JobSpec:
    """The job spec the run was submitted with (``spec.json``); runs recorded before it existed re-render."""
    if run.spec_file.is_file():
        return JobSpec.from_json(json.loads(run.spec_file.read_text()))
    print(f"  {run.path.name} has no spec.json (recorded before it existed): re-rendered from {run.site}.env "
          "and this make line", file=out)
    site = load_site(run.site, cli=cli, env=env)
    params, _ = collect_params(site, cli, env)
    ctx = run_context(run)
    return render(site, get_stage(run.stage), repo, run.path, params, Path(ctx.params.get("OUT_DIR") or "."),
                  ctx.work)


def resubmit(repo: Path, stage_name: str, run_name: str, cli: dict[str, str], env: dict[str, str],
             out: TextIO | None = None) -> Run:
    """Send again only the failed or missing items of a run, replaying the run's job spec.

    Resources, account, partition and the job environment are the original run's; a value given on the
    make line (MEM=, TIME=, CPUS=, ACCOUNT=, PARTITION_*=, THROTTLE=) overrides it, and is printed.
    """
    out = out or sys.stdout
    stage = get_stage(stage_name)
    damaged: list[DamagedRun] = []
    run = find_run(repo, stage.name, run_name, report=damaged)
    for bad in damaged:
        print(bad.skipped(), file=out)
    status = run_status(run)
    lines = status.lines_in(*RETRY)
    if not lines:
        print(f"{run.path.name}: nothing to resubmit ({len(status.states)} items, none failed or missing)", file=out)
        return run
    site = load_site(run.site, cli=cli, env=env)
    params, _ = collect_params(site, cli, env)
    spec, changed = run_spec(run, repo, cli, env, out).with_overrides(cli)
    spec, item_changed = with_item_overrides(spec, cli)
    changed += item_changed
    packing = is_packed(spec)
    recorded = run.job_env()  # the site values the run was submitted with (make-line ones included)

    def limit(key: str) -> int | None:
        value = cli.get(key) or recorded.get(key, "")
        return int(value) if value.isdigit() and int(value) > 0 else (site.int(key) or None)

    packs = plan_packs(lines, packing[0]) if packing else []  # only the failed items, repacked
    chunks = plan_chunks(list(range(len(packs))) if packing else lines, limit("MAX_ARRAY_SIZE"))
    packs_rel = f"packs/{len(run.attempts)}.txt" if packing else ""
    first = run.attempts[0].throttle if run.attempts else None
    given = parse_throttle(params.get("THROTTLE"))
    if given and given != first:
        changed.append(f"throttle: {first or '(none)'} -> {given}")
    for line in changed:
        print(f"  override from the make line: {line}", file=out)
    thr = effective_throttle(given or first, limit("MAX_JOBS"), len(chunks))
    executor = run.attempts[-1].executor if run.attempts else "slurm"
    for c in chunks:
        c.command = spec.command(run.env_file, c.array_spec(thr), [], c.offset,
                                 attempt_export(spec, run.path / packs_rel) if packing else None)
    print(f"resubmitting {len(lines)} item(s) of {run.path.name}"
          + (f" in {len(packs)} pack(s) of up to {packing[0]}" if packing else ""), file=out)
    if params.get("FORCE", "") in ("", "0"):  # the same preflight gate as make submit
        items = run.items()
        run_preflight_gate(site, stage, [items[i] for i in lines], params, env, spec, thr)
    if params.get("DRY_RUN", "") not in ("", "0"):
        for c in chunks:
            print("  " + redact(" ".join(c.command)), file=out)
        return run
    attempt = Attempt(executor=executor, throttle=thr, chunks=[],
                      packs=write_packs(run.path, len(run.attempts), packs) if packing else "")
    run.attempts.append(attempt)
    launch_chunks(run, attempt, chunks, repo, spec, out)
    return run


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m geohpc jobctl throttle|cancel|resubmit ...``."""
    ap = argparse.ArgumentParser(prog="python -m geohpc jobctl", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("throttle")
    t.add_argument("--job", default="")
    t.add_argument("--n", default="")
    c = sub.add_parser("cancel")
    c.add_argument("--job", default="")
    c.add_argument("--stage", default="")
    r = sub.add_parser("resubmit")
    r.add_argument("--stage", required=True)
    r.add_argument("--run", default="")
    args = ap.parse_args(argv)

    def work() -> int:
        if args.cmd == "throttle":
            throttle(args.job, args.n)
        elif args.cmd == "cancel":
            cancel(REPO, args.job, args.stage)
        else:
            cli = parse_makeflags(os.environ.get("MAKEFLAGS", ""))
            resubmit(REPO, args.stage, args.run, cli, dict(os.environ))
        return 0

    return run_cli(work, "geohpc.jobctl")


if __name__ == "__main__":
    sys.exit(main())
