"""The stage registry: a stage name -> its job script, command, manifest builder and done-check.

Each stage declares itself in ``geohpc/plans/<stage>.py`` as ``STAGE = Stage(...)``; the registry
discovers those files, so adding a stage never edits a shared list. Plans import only the standard
library at module level (planning must stay fast and must not need torch or GDAL).
"""

from __future__ import annotations

import functools
import importlib
import os
import pkgutil
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from geohpc.errors import ConfigError, InputError
from geohpc.util import work_path, work_paths

NAME_RE = re.compile(r"^[a-z][a-z0-9_-]*$")


@dataclass
class StageContext:
    """What a manifest builder and a done-check may look at.

    ``site`` holds the resolved site values; ``params`` the other make variables (``N``, ``INPUT``, …);
    ``work`` is the site's SCRATCH (data/ and outputs/ live under it); ``repo`` the checkout.
    """

    stage: str
    site: Mapping[str, str]
    params: Mapping[str, str]
    repo: Path
    work: Path

    @functools.cached_property
    def out_dir(self) -> Path:
        """Where this stage's outputs go: ``<work>/outputs/<stage>`` unless OUT_DIR is given (computed once:
        a done-check over 100,000 items asks it for each)."""
        given = self.params.get("OUT_DIR", "")
        return Path(given) if given else self.work / "outputs" / self.stage

    def param(self, key: str, default: str = "") -> str:
        """A stage parameter from the make line, else ``default``, else the stage's declared default."""
        value = self.params.get(key, "")
        if value != "":
            return value
        if default != "":
            return default
        return stage_default(self.stage, key)

    def path_param(self, key: str, default: str = "") -> Path:
        """A path parameter, relative paths taken from the work dir (:func:`geohpc.util.work_path`)."""
        value = self.param(key, default)
        if not value:
            raise ConfigError(f"stage {self.stage} needs {key}=<path> on the make line")
        return Path(work_path(value, self.work))


def _default_done(item: str, ctx: StageContext, output_for: Callable[[str, StageContext], Path]) -> bool:
    return output_for(item, ctx).exists()


@dataclass(frozen=True)
class Stage:
    """One pipeline stage: ``jobs/<name>.sbatch`` running ``python -m geohpc <name>`` over a manifest."""

    name: str
    summary: str
    build_manifest: Callable[[StageContext], list[str]]
    output_for: Callable[[str, StageContext], Path]
    is_done: Callable[[str, StageContext], bool] | None = None
    gpu: bool = False
    runtime: str = "venv"  # "venv": the site's venv; "container": the site's PyTorch container
    downloads: bool = False  # needs internet from compute nodes
    after: tuple[str, ...] = ()  # stages whose outputs it reads (for docs and preflight)
    # the one home of the stage's parameter defaults: plans read them through StageContext.param and
    # make submit writes them (and every path parameter, resolved under the work dir) into job.env
    defaults: Mapping[str, str] = field(default_factory=dict)
    paths: tuple[str, ...] = ()  # parameters that are paths (comma lists and globs allowed)
    derived: Callable[[StageContext], Mapping[str, str]] | None = None  # values computed from others
    output_bytes: Callable[[str, StageContext], int] | None = None  # planned size of one item's output
    extra: Mapping[str, str] = field(default_factory=dict)

    def done(self, item: str, ctx: StageContext) -> bool:
        """True when ``item``'s output exists and passes the stage's check."""
        if self.is_done is not None:
            return self.is_done(item, ctx)
        return _default_done(item, ctx, self.output_for)


def stage_default(stage: str, key: str) -> str:
    """The declared default of parameter ``key`` of ``stage`` ("" when none, or no such stage)."""
    try:
        return get_stage(stage).defaults.get(key, "")
    except ConfigError:
        return ""


def job_values(stage: Stage, ctx: StageContext) -> dict[str, str]:
    """The stage's parameters as its job sees them: defaults filled in, paths absolute, derived values."""
    values = {k: ctx.param(k) for k in stage.defaults}
    values.update({k: ctx.params[k] for k in stage.paths if ctx.params.get(k)})
    if stage.derived is not None:
        values.update({k: v for k, v in stage.derived(ctx).items() if not ctx.params.get(k)})
    for key in stage.paths:
        if values.get(key):
            values[key] = work_paths(values[key], ctx.work)
    return values


def stage_names() -> list[str]:
    """All stages with a plan in ``geohpc/plans``."""
    from geohpc import plans

    return sorted(m.name for m in pkgutil.iter_modules(plans.__path__) if not m.name.startswith("_"))


def get_stage(name: str) -> Stage:
    """The :class:`Stage` called ``name``; a clear :class:`ConfigError` listing valid names otherwise."""
    names = stage_names()
    if not NAME_RE.match(name or "") or name not in names:
        raise ConfigError(f"unknown STAGE {name!r}: valid stages are {', '.join(names)}")
    mod = importlib.import_module(f"geohpc.plans.{name}")
    stage: Stage = mod.STAGE
    return stage


def read_manifest(path: str | os.PathLike[str]) -> list[str]:
    """Read a manifest: one item a line; a missing/empty file or a blank line is an :class:`InputError`."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: manifest not found (give ITEMS=<file with one item a line>)")
    lines = p.read_text().splitlines()
    if not lines:
        raise InputError(f"{p}: manifest is empty (it needs one item a line)")
    for n, line in enumerate(lines, 1):
        if not line.strip():
            raise InputError(f"{p}:{n}: blank manifest line (remove it: array task N takes line N)")
    return lines
