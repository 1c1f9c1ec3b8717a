"""canary: tiny items that check a site and the pipeline runner: ``ok-001`` writes its output, ``mem-400``
first allocates and touches 400 MB, ``sleep-70`` first sleeps 70 s, ``fail-1`` fails with exit 1.

Items: ``CANARY=ok-001,mem-400`` (a comma list), else ``FROM=<folder>`` (one item a ``*.txt`` there: a step
planned from the step before's outputs), else ``N`` items ``ok-001`` ... Output: ``<out_dir>/<item>.txt``.
"""

from __future__ import annotations

import re
from pathlib import Path

from geohpc.core.stages import Stage, StageContext
from geohpc.errors import ConfigError, InputError

ITEM_RE = re.compile(r"^(ok|mem|sleep|fail)-[0-9]+$")


def _manifest(ctx: StageContext) -> list[str]:
    if ctx.param("CANARY"):
        items = [i.strip() for i in ctx.param("CANARY").split(",") if i.strip()]
    elif ctx.param("FROM"):
        folder = ctx.path_param("FROM")
        if not folder.is_dir():
            raise InputError(f"{folder}: FROM is not a folder (give the folder of an earlier canary run)")
        items = sorted(p.stem for p in folder.glob("*.txt"))
    else:
        n = ctx.param("N")
        if not n.isdigit():
            raise ConfigError(f"N={n!r} is not a number of canary items")
        items = [f"ok-{i:03d}" for i in range(1, int(n) + 1)]
    for item in items:
        if not ITEM_RE.match(item):
            raise InputError(f"canary item {item!r}: use ok-<n>, mem-<MB>, sleep-<seconds> or fail-<n>")
    return items


def _output(item: str, ctx: StageContext) -> Path:
    return ctx.out_dir / f"{item}.txt"


STAGE = Stage(
    name="canary",
    summary="tiny test items (ok-, mem-<MB>, sleep-<s>, fail-) to check a site and the pipeline runner",
    build_manifest=_manifest,
    output_for=_output,
    defaults={"CANARY": "", "N": "4"},
    paths=("FROM",),
)
