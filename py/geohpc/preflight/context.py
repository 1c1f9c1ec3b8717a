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

from geohpc.core.jobspec import gpus_for, launcher, sbatch_directives
from geohpc.core.site import Site
from geohpc.core.slurm import parse_mem_request as parse_mem  # sbatch --mem: bare numbers are MiB
from geohpc.core.slurm import parse_time_limit as parse_time  # sbatch --time: bare numbers are minutes
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
class Resources:
    """What the job asks Slurm for (``#SBATCH`` lines with make-line overrides applied)."""

    mem_bytes: int | None = None
    time_s: int | None = None
    cpus: int | None = None
    gpus: int | None = None
    array_size: int | None = None
    throttle: int | None = None
    chunked: bool = True  # make submit splits arrays above MAX_ARRAY_SIZE


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
    """Resources from ``#SBATCH`` lines of ``script``, with MEM/TIME/CPUS/THROTTLE make values last."""
    opts = sbatch_directives(script) if script.is_file() else {}
    res = Resources()
    mem = params.get("MEM") or opts.get("mem")
    res.mem_bytes = parse_mem(mem) if mem else None
    tim = params.get("TIME") or opts.get("time")
    res.time_s = parse_time(tim) if tim else None
    cpus = params.get("CPUS") or opts.get("cpus-per-task")
    res.cpus = int(cpus) if cpus and cpus.isdigit() else None
    gpus = opts.get("gpus") or opts.get("gpus-per-node") or opts.get("gpus-per-task")
    res.gpus = int(gpus.split(":")[-1]) if gpus and gpus.split(":")[-1].isdigit() else None
    thr = params.get("THROTTLE", "")
    res.throttle = int(thr) if thr.isdigit() else None
    return res


def read_probe(work: Path, params: Mapping[str, str]) -> dict[str, Any] | None:
    """The probe stage's report (``<SCRATCH>/outputs/probe/probe-0000.json`` or PROBE_REPORT=)."""
    path = Path(params.get("PROBE_REPORT") or work / "outputs" / "probe" / "probe-0000.json")
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


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
) -> PreflightContext:
    """Build the context for ``site_name`` (and ``stage``): site values, manifest, resources, probe.

    ``site_values`` are the resolved values when the caller has them (``make submit``); otherwise
    the site file is read and make-line values (MAKEFLAGS, ``params``) are applied over it.
    ``items`` is the manifest when the caller built it already (else the stage builds it).
    """
    env = dict(os.environ if env is None else env)
    try:
        resolved, site_file = load_site(site_name, repo, env)
    except ConfigError:
        if site_values is None:
            raise
        resolved, site_file = dict(site_values), dict(site_values)
    make_line = make_line_vars(env)
    params = {**{k: v for k, v in make_line.items() if k not in site_file}, **dict(params or {})}
    site = dict(site_values) if site_values is not None else resolved
    for key in site_file:
        if key in make_line and site_values is None:
            site[key] = make_line[key]
    site.setdefault("SITE_NAME", Path(site_name).stem if site_name.endswith(".env") else site_name)
    ctx = PreflightContext(site=site, stage=stage, site_file=site_file, make_line=make_line,
                           params=params, env=env, repo=repo)
    ctx.probe = read_probe(ctx.work, params)
    binds = env.get("SINGULARITY_BIND") or env.get("APPTAINER_BIND") or site.get("CONTAINER_BIND", "")
    ctx.binds = split_binds(binds)
    ctx.train_paths = [Path(p) for p in params["TRAIN_CODE"].split(",")] if params.get("TRAIN_CODE") \
        else _default_train_paths(repo)
    ctx.config_files = [Path(p) for p in params.get("CONFIG_FILES", "").split(",") if p]
    rclone = Path(env.get("HOME", "~")).expanduser() / ".config" / "rclone" / "rclone.conf"
    ctx.config_files += [p for p in [rclone, *sorted((repo / "config").glob("*"))] if p.is_file()]
    if params.get("MEM_ESTIMATE"):
        ctx.mem_estimate = parse_mem(params["MEM_ESTIMATE"])
    if stage:
        _fill_stage(ctx, stage, items)
    elif items is not None:
        ctx.items = list(items)
    return ctx


def _fill_stage(ctx: PreflightContext, name: str, items: list[str] | None = None) -> None:
    from geohpc.core.stages import StageContext, get_stage

    stage = get_stage(name)
    sctx = StageContext(stage=name, site=ctx.site, params=ctx.params, repo=ctx.repo, work=ctx.work)
    ctx.runtime, ctx.downloads, ctx.gpu = stage.runtime, stage.downloads, stage.gpu
    ctx.resources = sbatch_resources(ctx.repo / "jobs" / f"{name}.sbatch", ctx.params)
    ctx.outputs = [sctx.out_dir]
    ctx.inputs = [ctx.work / "outputs" / a for a in stage.after]
    for key, value in ctx.params.items():
        if value and key != "OUT_DIR" and (key.endswith("_DIR") or key in ("INPUT", "INPUTS", "ITEMS")):
            ctx.inputs.append(Path(value) if Path(value).is_absolute() else ctx.work / value)
    extra = dict(stage.extra)
    ctx.reads = extra.get("reads", "")
    win = ctx.params.get("WINDOW") or extra.get("window", "")
    ctx.window = int(win) if str(win).isdigit() else None
    if extra.get("mem_estimate") and ctx.mem_estimate is None:
        ctx.mem_estimate = parse_mem(extra["mem_estimate"])
    if extra.get("catboost_dataset") and ctx.params.get(extra["catboost_dataset"]):
        ctx.catboost_dataset = Path(ctx.params[extra["catboost_dataset"]])
    # the launcher make submit would render (venv python or the container call), unless a job's is given
    site_obj = Site(name=ctx.site.get("SITE_NAME", "local"), path=ctx.repo / "sites" / f"{ctx.site.get('SITE_NAME', 'local')}.env",
                    values=dict(ctx.site), sources={})
    ctx.launch = ctx.env.get("GEOHPC_LAUNCH") or launcher(site_obj, stage, ctx.repo, gpus_for(site_obj, stage, ctx.params))[0]
    try:
        if items is None and ctx.params.get("ITEMS"):  # the manifest make submit would use
            from geohpc.core.stages import read_manifest

            given = Path(ctx.params["ITEMS"])
            items = read_manifest(given if given.is_absolute() else ctx.repo / given)
        ctx.items = list(items) if items is not None else stage.build_manifest(sctx)
    except GeohpcError as exc:
        ctx.manifest_error = str(exc)
        return
    try:
        pending = [it for it in ctx.items if not stage.done(it, sctx)]
        ctx.pending = len(pending)
        ctx.resources.array_size = len(pending)
        if stage.output_bytes is not None:
            ctx.output_bytes = [stage.output_bytes(it, sctx) for it in pending]
        # a plan may declare its per-task peak: def memory_bytes(item, ctx) -> int (in plans/<stage>.py)
        estimator = getattr(importlib.import_module(f"geohpc.plans.{name}"), "memory_bytes", None)
        if estimator is not None and pending and ctx.mem_estimate is None:
            ctx.mem_estimate = max(int(estimator(it, sctx)) for it in pending[:50])
    except (GeohpcError, OSError, ValueError) as exc:
        ctx.manifest_error = f"planning failed: {exc}"
