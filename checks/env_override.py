"""env_override: shell variables that silently shadow site values (a stray export in ~/.bashrc)."""

from __future__ import annotations

import os
from pathlib import Path

from geohpc.preflight.context import PreflightContext, Result, fail, ok, warn
from geohpc.util import redact

NAME = "env_override"
DESCRIPTION = "shell variables shadowing site values (SCRATCH, PYTORCH_SIF, PYBIN_PREPROC, PROJ_DATA, GDAL_DATA, ...)"
STAGES = "all"
# Read by the libraries themselves: set in the shell they override the venv's bundled data.
DATA_VARS = ("PROJ_DATA", "PROJ_LIB", "GDAL_DATA", "PYTHONHOME")


def expected(ctx: PreflightContext) -> dict[str, str]:
    """What each watched variable should be: the site file's values plus derived ones."""
    want = {k: v for k, v in ctx.site_file.items() if v}  # empty keys may be filled from the shell
    venv = ctx.site.get("VENV", "")
    if venv:
        want.setdefault("PYBIN_PREPROC", f"{venv.rstrip('/')}/bin/python3")
    return want


def _same_path(a: str, b: str, ctx: PreflightContext) -> bool:
    """``.venv`` in the site file and ``/repo/.venv`` in the shell are the same place."""
    if "/" not in a + b or not a or not b:
        return False
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    pa = pa if pa.is_absolute() else ctx.repo / pa
    pb = pb if pb.is_absolute() else ctx.repo / pb
    return os.path.normpath(pa) == os.path.normpath(pb)


def check(ctx: PreflightContext) -> Result:
    """Fail on a site value shadowed by a different shell value; warn on data-path variables."""
    clashes = []
    for key, want in expected(ctx).items():
        have = ctx.env.get(key)
        if have is None or have == want or key in ctx.make_line or _same_path(have, want, ctx):
            continue
        if key == "PYBIN_PREPROC" and _same_path(have.rstrip("3"), want.rstrip("3"), ctx):
            continue
        clashes.append(f"{key}={redact(have)!r} in the shell, site says {redact(want)!r}")
    if clashes:
        first = clashes[0].split("=", 1)[0]
        return fail(f"{len(clashes)} shell variable(s) shadow site values: {'; '.join(clashes)}",
                    f"unset {first} (check ~/.bashrc), or pass {first}=... on the make line to override on purpose")
    # apptainer jobs SET PROJ_DATA/GDAL_DATA to the container's rasterio data (sure2.md): proj_mismatch judges them
    judged = ("PROJ_DATA", "PROJ_LIB", "GDAL_DATA") if ctx.site.get("CONTAINER_RUNTIME") == "apptainer" else ()
    data = [f"{k}={ctx.env[k]!r} (the venv's wheels bring their own)" for k in DATA_VARS
            if ctx.env.get(k) and k not in judged]
    if data:
        first = data[0].split("=", 1)[0]
        return warn(f"{'; '.join(data)}", f"unset {first} unless you know it matches rasterio/pyproj (see check proj_mismatch)")
    return ok(f"no shell variable shadows the {len(ctx.site_file)} site values")
