"""What a preflight check sees: :class:`Result` and :class:`PreflightContext`, and how they are built.

A check in ``checks/<name>.py`` gets one :class:`PreflightContext` and returns one :class:`Result`.
Everything a check would otherwise fetch (site values, environment, the probe report, recorded command
outputs, the clock) is a field here, so tests build a context by hand and feed recorded outputs.
"""

from __future__ import annotations

import importlib
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geohpc.core.jobspec import JobSpec, Resources, render, sbatch_directives
from geohpc.core.site import Site
from geohpc.core.slurm import parse_mem_request as parse_mem  # sbatch --mem: bare numbers are MiB
from geohpc.errors import ConfigError, GeohpcError
from geohpc.util import REPO

STATUSES = ("ok", "warn", "fail", "crashed")


@dataclass
class Result:
    """A check's verdict: ``status`` (ok | warn | fail | crashed), a one-line message and a one-line fix."""

    status: str
    message: str
    fix: str = ""
    check: str = ""

    def as_dict(self) -> dict[str, str]:
        """The result as a plain dict (for ``--json``)."""
        return {"check": self.check, "status": self.status, "message": self.message, "fix": self.fix}


def ok(message: str, fix: str = "") -> Result:
    """A passing :class:`Result`."""
    return Result("ok", message, fix)


def warn(message: str, fix: str) -> Result:
    """A warning :class:`Result`: worth reading, does not stop a submit."""
    return Result("warn", message, fix)


def fail(message: str, fix: str) -> Result:
    """A failing :class:`Result`: ``make submit`` stops unless FORCE=1."""
    return Result("fail", message, fix)


@dataclass
class PreflightContext:
    """Everything the checks look at. Build with :func:`build_context` or by hand in tests."""

    site: dict[str, str]
    stage: str | None = None
    site_file: dict[str, str] = field(default_factory=dict)  # values as the site file has them
    make_line: dict[str, str] = field(default_factory=dict)  # values given on the make line (on purpose)
    params: dict[str, str] = field(default_factory=dict)
    items: list[str] = field(default_factory=list)
    pending: int | None = None  # items whose output is missing (None: unknown, take len(items))
    output_bytes: list[int] | None = None  # planned bytes of each pending item's output
    resources: Resources = field(default_factory=Resources)
    launch: str = ""  # GEOHPC_LAUNCH: venv python, or "singularity exec ... python3"
    job_env: dict[str, str] = field(default_factory=dict)  # the rendered job.env (spec.env) the tasks source
    binds: list[str] = field(default_factory=list)
    runtime: str = "venv"
    downloads: bool = False
    gpu: bool = False
    env: dict[str, str] = field(default_factory=dict)
    probe: dict[str, Any] | None = None
    inputs: list[Path] = field(default_factory=list)  # what the stage reads
    outputs: list[Path] = field(default_factory=list)  # where the stage writes
    train_paths: list[Path] = field(default_factory=list)
    config_files: list[Path] = field(default_factory=list)
    mem_estimate: int | None = None  # per-task peak bytes, when the stage knows it
    reads: str = ""  # "raster": each item is a raster read per window (or whole)
    window: int | None = None  # window edge in pixels for raster reads (None: whole raster)
    catboost_dataset: Path | None = None
    quota_output: str | None = None  # recorded quota command output (tests); None: run QUOTA_CMD
    repo: Path = REPO
    now: float = field(default_factory=time.time)
    manifest_error: str = ""

    def site_int(self, key: str, default: int) -> int:
        """A site value as an int (``default`` when unset or not a number)."""
        value = str(self.site.get(key, "")).strip()
        return int(value) if value.isdigit() else default

    def path(self, key: str) -> Path | None:
        """A site path value; relative values are taken from the repo (the local site), None when empty."""
        value = str(self.site.get(key, "")).strip()
        if not value:
            return None
        p = Path(value).expanduser()
        return p if p.is_absolute() else (self.repo / p).resolve()

    @property
    def work(self) -> Path:
        """The site's SCRATCH (where data/ and outputs/ live), relative values taken from the repo."""
        return self.path("SCRATCH") or self.repo

    @property
    def is_local(self) -> bool:
        """True for the embedded ``local`` site."""
        return self.site.get("SITE_NAME", "local") == "local"


# --------------------------------------------------------------------------------------------- loading
def read_site_file(path: Path) -> dict[str, str]:
    """Parse a ``sites/<name>.env`` file (the same strict parser as :mod:`geohpc.site`)."""
    from geohpc.core.site import parse_env_file

    return parse_env_file(path)


def load_site(name: str, repo: Path = REPO, env: Mapping[str, str] | None = None) -> tuple[dict[str, str], dict[str, str]]:
    """``(resolved values, site file values)`` for site ``name``.

    A name is resolved by :func:`geohpc.site.load_site` (make line > site file > shell for empty keys);
    a path to a ``.env`` file (tests, or a site kept elsewhere) is read as is.
    """
    if name.endswith(".env") and Path(name).is_file():
        values = read_site_file(Path(name))
        values.setdefault("SITE_NAME", Path(name).stem)
        return dict(values), values
    from geohpc.core.site import load_site as resolve_site
    from geohpc.core.site import parse_env_file

    site = resolve_site(name, env=os.environ if env is None else env, sites_dir=repo / "sites")
    return dict(site.values), parse_env_file(site.path)


def make_line_vars(env: Mapping[str, str]) -> dict[str, str]:
    """Variables given on the make command line, read from MAKEFLAGS (``... -- KEY=value``)."""
    from geohpc.core.site import parse_makeflags

    return parse_makeflags(env.get("MAKEFLAGS", ""))


def sbatch_resources(script: Path, params: Mapping[str, str]) -> Resources:
    """Resources from ``#SBATCH`` lines of ``script`` with MEM/TIME/CPUS/THROTTLE make values last.

    The same merge as :attr:`geohpc.core.jobspec.JobSpec.resources` (one parser for both).
    """
    spec = JobSpec(stage=script.stem, site="", script=str(script), chdir="", options={},
                   directives=sbatch_directives(script) if script.is_file() else {}, env={})
    spec, _ = spec.with_overrides({k: v for k, v in params.items() if k in ("MEM", "TIME", "CPUS") and v})
    res = spec.resources
    thr = params.get("THROTTLE", "")
    res.throttle = int(thr) if thr.isdigit() else None
    return res


def read_probe(work: Path, params: Mapping[str, str], stage: str | None = None) -> dict[str, Any] | None:
    """The site's last probe report: PROBE_REPORT=, else the newest ``<SCRATCH>/outputs/probe/*.json``,
    preferring one probed for ``stage`` (``make submit STAGE=probe FOR=<stage>``)."""
    if params.get("PROBE_REPORT"):
        paths = [Path(params["PROBE_REPORT"])]
    else:
        folder = work / "outputs" / "probe"
        paths = sorted(folder.glob("probe-*.json"), key=lambda p: p.stat().st_mtime, reverse=True) \
            if folder.is_dir() else []
    reports = []
    for path in paths:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            reports.append(data)
    for data in reports:
        if stage and data.get("for") == stage:
            return data
    return reports[0] if reports else None


def split_binds(text: str) -> list[str]:
    """``/pfs,/scratch:/scratch:ro`` -> the host-side paths ``['/pfs', '/scratch']``."""
    return [b.split(":", 1)[0].strip() for b in text.split(",") if b.strip()]


def _default_train_paths(repo: Path) -> list[Path]:
    pkg = repo / "py" / "geohpc"
    found = [pkg / f"{name}{suffix}" for name in ("train", "fit", "classify", "predict") for suffix in (".py", "")]
    return [p for p in found if p.exists()]


def build_context(
    site_name: str,
    stage: str | None = None,
    params: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
    repo: Path = REPO,
    site_values: Mapping[str, str] | None = None,
    items: list[str] | None = None,
    *,
    site: Site | None = None,
    spec: JobSpec | None = None,
    throttle: int | None = None,
) -> PreflightContext:
    """Build the context for ``site_name`` (and ``stage``): site values, manifest, resources, probe.

    From ``make submit`` (the gate): ``site`` is the resolved :class:`Site`, ``spec`` the rendered job
    spec that will be submitted, ``items`` the items about to run and ``throttle`` the ``%N`` it sends;
    nothing is reloaded or re-parsed, and the checks judge exactly what Slurm will receive.
    From ``make preflight``: the site is resolved here (make line > site file > shell) and the stage is
    rendered by the same :func:`geohpc.core.jobspec.render`.
    """
    env = dict(os.environ if env is None else env)
    if site is not None:
        resolved, site_file, make_line = dict(site.values), dict(site.file_values), dict(site.cli)
        resolved.setdefault("SITE_NAME", site.name)
    else:
        resolved, site_file, make_line = _resolve(site_name, repo, env, site_values)
    params = {**{k: v for k, v in make_line.items() if k not in site_file}, **dict(params or {})}
    resolved.setdefault("SITE_NAME", Path(site_name).stem if site_name.endswith(".env") else site_name)
    ctx = PreflightContext(site=resolved, stage=stage, site_file=site_file, make_line=make_line,
                           params=params, env=env, repo=repo)
    ctx.probe = read_probe(ctx.work, params, stage)
    binds = env.get("SINGULARITY_BIND") or env.get("APPTAINER_BIND") or resolved.get("CONTAINER_BIND", "")
    ctx.binds = split_binds(binds)
    ctx.train_paths = [Path(p) for p in params["TRAIN_CODE"].split(",")] if params.get("TRAIN_CODE") \
        else _default_train_paths(repo)
    ctx.config_files = [Path(p) for p in params.get("CONFIG_FILES", "").split(",") if p]
    rclone = Path(env.get("HOME", "~")).expanduser() / ".config" / "rclone" / "rclone.conf"
    ctx.config_files += [p for p in [rclone, *sorted((repo / "config").glob("*"))] if p.is_file()]
    if params.get("MEM_ESTIMATE"):
        ctx.mem_estimate = parse_mem(params["MEM_ESTIMATE"])
    if stage:
        _fill_stage(ctx, stage, items, site, spec, throttle)
    elif items is not None:
        ctx.items = list(items)
    return ctx


def _resolve(site_name: str, repo: Path, env: Mapping[str, str],
             site_values: Mapping[str, str] | None) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """(resolved values, site file values, make-line values) for a site named or given by path."""
    try:
        resolved, site_file = load_site(site_name, repo, env)
    except ConfigError:
        if site_values is None:
            raise
        resolved, site_file = dict(site_values), dict(site_values)
    make_line = make_line_vars(env)
    if site_values is not None:
        return dict(site_values), site_file, make_line
    for key in site_file:
        if key in make_line:
            resolved[key] = make_line[key]
    return resolved, site_file, make_line


def _site_of(ctx: PreflightContext) -> Site:
    name = ctx.site.get("SITE_NAME", "local")
    return Site(name=name, path=ctx.repo / "sites" / f"{name}.env", values=dict(ctx.site), sources={})


def _fill_stage(ctx: PreflightContext, name: str, items: list[str] | None, site: Site | None,
                spec: JobSpec | None, throttle: int | None) -> None:
    from geohpc.core.stages import StageContext, get_stage

    stage = get_stage(name)
    sctx = StageContext(stage=name, site=ctx.site, params=ctx.params, repo=ctx.repo, work=ctx.work)
    ctx.runtime, ctx.downloads, ctx.gpu = stage.runtime, stage.downloads, stage.gpu
    if spec is None:  # make preflight: render what make submit would send
        spec = render(site or _site_of(ctx), stage, ctx.repo, ctx.repo / "runs" / name / "<preflight>",
                      ctx.params, sctx.out_dir, ctx.work)
    ctx.resources = spec.resources
    thr = ctx.params.get("THROTTLE", "")
    ctx.resources.throttle = throttle if throttle is not None else (int(thr) if thr.isdigit() else None)
    ctx.launch = ctx.env.get("GEOHPC_LAUNCH") or spec.env.get("GEOHPC_LAUNCH", "")
    bind = spec.env.get("SINGULARITY_BIND") or spec.env.get("APPTAINER_BIND")
    if bind and not (ctx.env.get("SINGULARITY_BIND") or ctx.env.get("APPTAINER_BIND")):
        ctx.binds = split_binds(bind)
    ctx.outputs = [sctx.out_dir]
    ctx.inputs = [ctx.work / "outputs" / a for a in stage.after]
    ctx.job_env = dict(spec.env)
    for key, value in ctx.params.items():
        if value and key != "OUT_DIR" and (key.endswith("_DIR") or key in ("INPUT", "INPUTS", "ITEMS")):
            ctx.inputs.append(Path(value) if Path(value).is_absolute() else ctx.work / value)
    _fill_extra(ctx, stage)
    try:
        if items is None and ctx.params.get("ITEMS"):  # the manifest make submit would use
            from geohpc.core.stages import read_manifest

            given = Path(ctx.params["ITEMS"])
            items = read_manifest(given if given.is_absolute() else ctx.repo / given)
        ctx.items = list(items) if items is not None else stage.build_manifest(sctx)
    except GeohpcError as exc:
        ctx.manifest_error = str(exc)
        return
    _fill_pending(ctx, stage, sctx, about_to_run=site is not None)


def _fill_extra(ctx: PreflightContext, stage) -> None:  # noqa: ANN001 - a geohpc.core.stages.Stage
    extra = dict(stage.extra)
    ctx.reads = extra.get("reads", "")
    win = ctx.params.get("WINDOW") or extra.get("window", "")
    ctx.window = int(win) if str(win).isdigit() else None
    if extra.get("mem_estimate") and ctx.mem_estimate is None:
        ctx.mem_estimate = parse_mem(extra["mem_estimate"])
    if extra.get("catboost_dataset") and ctx.params.get(extra["catboost_dataset"]):
        ctx.catboost_dataset = Path(ctx.params[extra["catboost_dataset"]])


def _fill_pending(ctx: PreflightContext, stage, sctx, about_to_run: bool) -> None:  # noqa: ANN001
    """Items still to run (all of them when make submit hands over the items it is about to send)."""
    try:
        pending = ctx.items if about_to_run else [it for it in ctx.items if not stage.done(it, sctx)]
        ctx.pending = len(pending)
        ctx.resources.array_size = len(pending)
        if stage.output_bytes is not None:
            ctx.output_bytes = [stage.output_bytes(it, sctx) for it in pending]
        # a plan may declare its per-task peak: def memory_bytes(item, ctx) -> int (in plans/<stage>.py)
        estimator = getattr(importlib.import_module(f"geohpc.plans.{stage.name}"), "memory_bytes", None)
        if estimator is not None and pending and ctx.mem_estimate is None:
            ctx.mem_estimate = max(int(estimator(it, sctx)) for it in pending[:50])
    except (GeohpcError, OSError, ValueError) as exc:
        ctx.manifest_error = f"planning failed: {exc}"
