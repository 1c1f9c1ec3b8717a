"""``make submit``: write the manifest, plan the arrays, render sbatch from the site, submit, record.

Planning refuses two items that map to one output, however the items were given. Only items whose output
is missing, and that no earlier run still has queued for the same output, are submitted; arrays are chunked below the site's MAX_ARRAY_SIZE and
throttled with ``%N``; everything (manifest, job environment, exact command lines, job ids) is recorded
under ``runs/<stage>/<timestamp>/``. ``DRY_RUN=1`` prints the command lines and the job environment and
submits nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shlex
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from geohpc.core import slurm
from geohpc.core.arrays import effective_throttle, parse_throttle, plan_chunks
from geohpc.core.jobspec import JOB_ID_RE, JobSpec, env_file_text, render
from geohpc.core.local_executor import run_chunk
from geohpc.core.packing import PACK_PARAMS, attempt_export, pack_params, pack_spec, plan_packs, write_packs
from geohpc.core.runs import PRIVATE, Attempt, DamagedRun, Run, find_run, new_run, scan_runs
from geohpc.core.runtime import resolve_path
from geohpc.core.site import REPO, SRC_CLI, Site, load_site, parse_makeflags
from geohpc.core.stages import Stage, StageContext, get_stage, read_manifest
from geohpc.errors import ConfigError, InputError, run_cli
from geohpc.ops.status import run_context
from geohpc.util import redact, write_json_atomic, write_text_atomic

# make variables that are not site keys but steer a submission; read from the make line or the shell
GENERIC_PARAMS = ("THROTTLE", "ITEMS", "AFTER", "DRY_RUN", "FORCE", "MEM", "TIME", "ARGS", "N", "RERUN", "OUT_DIR", "GPUS", "CPUS",
                  *PACK_PARAMS)


def collect_params(site: Site, cli: Mapping[str, str], env: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """Make-line variables that are not site keys, plus generic ones from the shell; with their sources."""
    params: dict[str, str] = {}
    sources: dict[str, str] = {}
    for key in GENERIC_PARAMS:
        if key in env and key not in cli and env[key] != "":
            # a stray THROTTLE/MEM/... in the shell must not steer a submit silently: say so, ignore it
            print(f"  warning: shell variable {key}={redact(env[key])} ignored (put {key}= on the make line to use it)",
                  file=sys.stderr)
    for key, value in cli.items():
        if key in site.values or key in ("SITE", "STAGE"):
            continue
        params[key], sources[key] = value, SRC_CLI
    return params, sources


def executor_for(site: Site, dry_run: bool) -> str:
    """``slurm`` or ``local``: EXECUTOR=auto picks slurm when sbatch is on PATH (always for a dry run)."""
    choice = site.get("EXECUTOR", "auto")
    if choice == "auto":
        return "slurm" if dry_run or site.name != "local" or slurm.have_slurm() else "local"
    return choice


def resolve_after(repo: Path, after: str, executor: str) -> list[str]:
    """AFTER=<jobid>[:<jobid>...] or AFTER=<stage> (its latest run's job ids) -> job ids."""
    ids: list[str] = []
    for part in filter(None, re.split(r"[:,]", after)):
        if JOB_ID_RE.match(part):
            if executor == "slurm" and slurm.have_slurm() and not slurm.job_exists(part):
                raise ConfigError(f"AFTER={part}: no such job (check squeue/sacct for the job id)")
            ids.append(part)
        elif re.fullmatch(r"[a-z][a-z0-9_-]*", part):
            ids.extend(find_run(repo, part).job_ids() if executor == "slurm" else [])
        else:
            raise ConfigError(f"AFTER={part!r} is neither a job id nor a stage name")
    return ids


def output_key(stage: Stage, item: str, ctx: StageContext) -> str:
    """Where ``item`` writes, as an absolute normalised path: with the item, its identity in a run."""
    try:
        out = stage.output_for(item, ctx)
    except ValueError as exc:
        raise InputError(f"stage {stage.name}: item {item!r} is not valid here ({exc})") from None
    return os.path.normpath(os.path.abspath(out))


def check_outputs_unique(stage: Stage, items: list[str], ctx: StageContext) -> None:
    """Refuse two items that map to one output (ITEMS file, folder, glob, comma list: every way of giving them).

    A stage whose items share one output by design (``extra={"shared_output": "yes"}``, e.g. train's tuning
    tasks) is exempt.
    """
    if stage.extra.get("shared_output") == "yes":
        return
    seen: dict[str, str] = {}
    for item in items:
        out = output_key(stage, item, ctx)
        if out in seen and seen[out] != item:
            raise InputError(f"items {seen[out]} and {item} would both write {out}; rename one, or submit them "
                             "apart with another OUT_DIR=")
        if out in seen:
            raise InputError(f"item {item} is listed twice (both would write {out}); list each item once")
        seen[out] = item


def in_flight_items(repo: Path, stage: Stage, damaged: list[DamagedRun] | None = None) -> set[tuple[str, str]]:
    """(item, output) pairs of earlier runs of ``stage`` that Slurm still has pending or running (one squeue call).

    An item's identity is its input and its output: the same items with another OUT_DIR are other work.
    Damaged run folders are appended to ``damaged`` and skipped.
    """
    owners: dict[str, tuple[str, str]] = {}
    runs, bad = scan_runs(repo, stage.name)
    if damaged is not None:
        damaged.extend(bad)
    for run in runs:
        items, ctx = run.items(), run_context(run)
        for line, (executor, job_id, idx) in run.line_owner().items():
            if executor == "slurm" and job_id and line < len(items):
                try:
                    owners[f"{job_id}_{idx}"] = (items[line], output_key(stage, items[line], ctx))
                except (InputError, ConfigError):
                    continue
    if not owners:
        return set()
    active = slurm.squeue(sorted({k.split("_")[0] for k in owners}))
    return {owners[k] for k in active if k in owners}


@dataclass
class Submission:
    """Everything one ``make submit`` decided, before anything is sent."""

    site: Site
    stage: Stage
    params: dict[str, str]
    param_sources: dict[str, str]
    executor: str
    dry_run: bool
    ctx: StageContext
    items: list[str]
    todo: list[int]  # manifest lines to run now
    queued: list[int] = field(default_factory=list)  # still queued or running in earlier runs
    held: int = 0  # held back by MAX_JOBS for a later wave
    problems: list[str] = field(default_factory=list)
    damaged: list[DamagedRun] = field(default_factory=list)  # earlier run folders that could not be read


def plan_submission(stage_name: str, site_name: str, cli: Mapping[str, str], env: Mapping[str, str],
                    repo: Path) -> Submission:
    """Resolve the site and the stage, build the manifest and decide which items run now."""
    site = load_site(site_name, cli=cli, env=env)
    stage = get_stage(stage_name)
    params, param_sources = collect_params(site, cli, env)
    dry_run = params.get("DRY_RUN", "") not in ("", "0")
    executor = executor_for(site, dry_run)
    problems: list[str] = []
    work_value = resolve_path(repo, site.get("SCRATCH"))
    if not work_value:
        problems.append(f"SCRATCH is empty in {site.path.name}: pass SCRATCH=/path/to/work")
        work_value = "/SCRATCH-UNSET"
    if not site.get("ACCOUNT") and site.name != "local":
        problems.append(f"ACCOUNT is empty in {site.path.name}: pass ACCOUNT=<your project account>")
    ctx = StageContext(stage=stage.name, site=site.values, params=params, repo=repo, work=Path(work_value))
    items = read_manifest(_items_path(params["ITEMS"], repo)) if params.get("ITEMS") else stage.build_manifest(ctx)
    if not items:
        raise InputError(f"stage {stage.name} built an empty manifest: check its inputs "
                         f"(see python -m geohpc {stage.name} --help)")
    if any(not i.strip() for i in items):
        raise InputError(f"stage {stage.name}: manifest has a blank line; every line must name one item")
    check_outputs_unique(stage, items, ctx)  # before anything is written or submitted, DRY_RUN included
    plan = Submission(site, stage, params, param_sources, executor, dry_run, ctx, items, [], problems=problems)
    _choose_items(plan, repo)
    return plan


def _choose_items(plan: Submission, repo: Path) -> None:
    """Fill ``todo``, ``queued`` and ``held``: missing outputs, minus items in flight, capped by MAX_JOBS."""
    rerun = plan.params.get("RERUN", "") not in ("", "0")
    todo = [i for i, item in enumerate(plan.items) if rerun or not plan.stage.done(item, plan.ctx)]
    if plan.executor == "slurm" and not plan.dry_run:
        busy = in_flight_items(repo, plan.stage, plan.damaged)
    else:
        busy, plan.damaged = set(), scan_runs(repo, plan.stage.name)[1]
    key = {i: (plan.items[i], output_key(plan.stage, plan.items[i], plan.ctx)) for i in todo} if busy else {}
    plan.queued = [i for i in todo if busy and key[i] in busy]
    todo = [i for i in todo if not busy or key[i] not in busy]
    max_jobs = plan.site.int("MAX_JOBS") * ((pack_params(plan.params, plan.stage.defaults) or (1, 1))[0])
    if max_jobs and len(todo) > max_jobs:  # every array task counts as a job against the site's cap
        plan.held, todo = len(todo) - max_jobs, todo[:max_jobs]
    plan.todo = todo


def print_plan(plan: Submission, out: TextIO) -> None:
    """What will be submitted and where every value came from."""
    site, params = plan.site, plan.params
    print(f"geohpc submit: stage {plan.stage.name} on site {site.name} ({plan.executor})", file=out)
    print(redact(site.report()), file=out)
    for bad in plan.damaged:
        print(f"  {bad.skipped()}", file=out)
    for key in sorted(params):
        print(f"  {key}={redact(params[key])}  ({plan.param_sources[key]})", file=out)
    done_n = len(plan.items) - len(plan.todo) - len(plan.queued) - plan.held
    print(f"  items: {len(plan.items)} in manifest, {done_n} already done, {len(plan.queued)} still queued or "
          f"running in earlier runs, {len(plan.todo)} to run", file=out)
    if plan.held:
        print(f"  wave: {plan.held} item(s) held back by MAX_JOBS={site.int('MAX_JOBS')} (every array task counts "
              "as a job); run the same make submit again when these finish to send the next wave", file=out)


def print_dry_run(spec: JobSpec, commands: list[list[str]], site: Site, out: TextIO) -> None:
    """DRY_RUN=1: the sbatch command lines and the job environment, secrets redacted."""
    print(f"DRY_RUN: {len(commands)} array(s), nothing submitted. sbatch command line(s):", file=out)
    for cmd in commands:
        print("  " + redact(shlex.join(cmd)), file=out)
    print(f"python launcher: {redact(spec.env['GEOHPC_LAUNCH'])}", file=out)
    print(f"runtime: {spec.env.get('GEOHPC_RUNTIME', '')}", file=out)
    print("job environment (job.env):", file=out)
    print("".join("  " + redact(line) for line in env_file_text(spec.env).splitlines(True)), end="", file=out)


def submit(
    stage_name: str,
    site_name: str,
    *,
    cli: Mapping[str, str],
    env: Mapping[str, str],
    repo: Path = REPO,
    out: TextIO = sys.stdout,
) -> Run | None:
    """Plan and submit (or, with DRY_RUN=1, print) one stage on one site. Returns the run, if any."""
    plan = plan_submission(stage_name, site_name, cli, env, repo)
    site, stage, params = plan.site, plan.stage, plan.params
    print_plan(plan, out)
    if not plan.todo:
        print("nothing to submit: every item's output exists (RERUN=1 runs them again)", file=out)
        return None
    after = resolve_after(repo, params.get("AFTER", ""), plan.executor)
    packing = pack_params(params, stage.defaults)
    packs = plan_packs(plan.todo, packing[0]) if packing else []
    chunks = plan_chunks(list(range(len(packs))) if packing else plan.todo, site.int("MAX_ARRAY_SIZE") or None)
    thr = effective_throttle(parse_throttle(params.get("THROTTLE")), site.int("MAX_JOBS") or None, len(chunks))
    # a dry run for a remote site renders the paths the job will see there (the deployed repo)
    remote = plan.dry_run and site.name != "local" and site.get("REMOTE_DIR")
    site_repo = Path(site.get("REMOTE_DIR")) if remote else repo
    run = _prepare_run(site_repo, stage, site, plan.dry_run)
    spec = render(site, stage, site_repo, run.path, params, plan.ctx.out_dir, plan.ctx.work)
    if packing:
        spec = pack_spec(spec, site, params, *packing)
        print(f"  packed: {len(plan.todo)} item(s) in {len(packs)} array task(s) of up to {packing[0]}, "
              f"{packing[1]} at once (split by stride; status, logs and resubmit per item)", file=out)
    problems = plan.problems + spec.warnings
    extra = attempt_export(spec, run.path / "packs" / "0.txt") if packing else None
    for chunk in chunks:
        chunk.command = spec.command(run.env_file, chunk.array_spec(thr), after, chunk.offset, extra)
    for problem in problems:
        print(f"  warning: {problem}", file=out)
    if spec.env.get("GEOHPC_PARTITION_WHY"):
        print(f"  partition {spec.options.get('partition')}: {spec.env['GEOHPC_PARTITION_WHY']}", file=out)
    for note in spec.notes:
        print(f"  adjusted: {note}", file=out)
    if plan.dry_run:
        print_dry_run(spec, [c.command for c in chunks], site, out)
        return None
    try:
        if problems:
            raise ConfigError(problems[0])
        # only the items about to run: their done-check is a cheap miss, finished ones are not checked twice
        run_preflight_gate(site, stage, [plan.items[i] for i in plan.todo], params, env, spec, thr)
    except ConfigError:
        with contextlib.suppress(OSError):
            run.path.rmdir()  # the run folder is still empty: a refused submit leaves nothing behind
        raise
    record_run(run, plan, spec, repo)
    attempt = Attempt(executor=plan.executor, throttle=thr, chunks=[],
                      packs=write_packs(run.path, 0, packs) if packing else "")
    run.attempts.append(attempt)
    launch_chunks(run, attempt, chunks, repo, spec, out)
    print(f"recorded in {run.path}", file=out)
    print(f"chain the next stage with AFTER={':'.join(run.job_ids())} (or AFTER={stage.name})", file=out)
    return run


def record_run(run: Run, plan: Submission, spec: JobSpec, repo: Path) -> None:
    """Write the run folder: manifest, job.env, the spec, where each value came from."""
    run.path.mkdir(parents=True, exist_ok=True)
    write_text_atomic(run.manifest, "\n".join(plan.items) + "\n")
    # the job needs the real values: job.env and spec.json keep them, readable by the owner only
    write_text_atomic(run.env_file, env_file_text(spec.env), mode=PRIVATE)
    write_json_atomic(run.spec_file, spec.to_json(), mode=PRIVATE)
    write_text_atomic(run.path / "sources.txt", redact(plan.site.report()) + "\n", mode=PRIVATE)
    (repo / "logs").mkdir(exist_ok=True)
    plan.ctx.out_dir.mkdir(parents=True, exist_ok=True)


def launch_chunks(run: Run, attempt: Attempt, chunks: list, repo: Path, spec: JobSpec, out: TextIO) -> None:
    """Submit (slurm) or run (local) each chunk, saving the plan after each one."""
    script = repo / "jobs" / Path(spec.script).name  # jobs/pack.sbatch for a packed run
    extra = attempt_export(spec, run.path / attempt.packs) if attempt.packs else None
    record = run.path / "commands.sh"
    before = record.read_text() if record.is_file() else ""
    write_text_atomic(record, before + "".join(redact(shlex.join(c.command)) + "\n" for c in chunks), mode=PRIVATE)
    for chunk in chunks:
        attempt.chunks.append(chunk)
        if attempt.executor == "slurm":
            chunk.job_id = slurm.sbatch(chunk.command)
        else:
            run_chunk(script, repo, run.env_file, run.path, chunk, attempt.throttle, spec.resources, extra)
        run.save()
        lines = chunk.lines()
        what = "packs" if attempt.packs else "manifest lines"
        print(f"  job {chunk.job_id}: --array={chunk.array_spec(attempt.throttle)} ({what} "
              f"{lines[0] + 1}-{lines[-1] + 1}, {len(lines)} tasks)", file=out)


def _items_path(value: str, repo: Path) -> Path:
    p = Path(value)
    return p if p.is_absolute() else repo / p


def _prepare_run(repo: Path, stage: Stage, site: Site, dry_run: bool) -> Run:
    if dry_run:
        return Run(path=repo / "runs" / stage.name / "<timestamp>", stage=stage.name, site=site.name)
    return new_run(repo, stage.name, site.name)


def run_preflight_gate(site: Site, stage: Stage, items: list[str], params: Mapping[str, str],
                       env: Mapping[str, str], spec: JobSpec, throttle: int | None) -> None:
    """Stop on a failing preflight check for this stage unless FORCE=1 (the checks judge ``spec``)."""
    if params.get("FORCE", "") not in ("", "0"):
        return
    from geohpc.preflight.runner import gate

    gate(site, stage, items, params, env, spec=spec, throttle=throttle)


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m geohpc submit --site S --stage X [--set KEY=VALUE ...]`` (make submit calls this)."""
    ap = argparse.ArgumentParser(prog="python -m geohpc submit", description=__doc__.splitlines()[0])
    ap.add_argument("--site", default="local")
    ap.add_argument("--stage", required=True)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="as if given on the make line")
    args = ap.parse_args(argv)

    def work() -> int:
        cli = parse_makeflags(os.environ.get("MAKEFLAGS", ""))
        for kv in args.set:
            if "=" not in kv:
                raise ConfigError(f"--set {kv!r}: use KEY=VALUE")
            k, v = kv.split("=", 1)
            cli[k] = v
        submit(args.stage, args.site, cli=cli, env=os.environ)
        return 0

    return run_cli(work, "geohpc.submit")


if __name__ == "__main__":
    sys.exit(main())
