"""proj_mismatch: PROJ_DATA unset in an apptainer job, or PROJ_DATA / PROJ_LIB at an older proj.db.

In containers on Saga and Betzy the users' fix for silently wrong coordinates (sure2.md bug 1, emb-betzy.md,
emb-errors.md, howto-saga.md) is to SET ``PROJ_DATA`` to the container's own rasterio ``proj_data``: unset,
the node's old proj.db (layout minor 2) is used. The site says how: ``PROJ_DATA_FROM=container`` (the job
exports it at start from the container's rasterio) or ``CONTAINER_ENV=PROJ_DATA:<path>``. In a plain venv
the wheels bundle their proj.db, so there unset is right and a set value must not be older.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from geohpc.preflight.context import PreflightContext, Result, fail, ok, warn
from geohpc.preflight.site_facts import probe_answer

NAME = "proj_mismatch"
DESCRIPTION = "PROJ_DATA unset in apptainer jobs; PROJ_DATA/PROJ_LIB proj.db layout vs rasterio's and pyproj's"
STAGES = "all"


def layout(db: Path) -> tuple[int, int, str]:
    """(MAJOR, MINOR, PROJ.VERSION) from a proj.db ``metadata`` table, opened read-only."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        meta = dict(con.execute("SELECT key, value FROM metadata").fetchall())
    finally:
        con.close()
    return (int(meta["DATABASE.LAYOUT.VERSION.MAJOR"]), int(meta["DATABASE.LAYOUT.VERSION.MINOR"]),
            meta.get("PROJ.VERSION", "?"))


def find_db(value: str) -> Path | None:
    """The first proj.db in a PROJ_DATA search path (``:``-separated)."""
    for part in value.split(":"):
        db = Path(part) / "proj.db"
        if part and db.is_file():
            return db
    return None


def bundled(ctx: PreflightContext) -> dict[str, Path]:
    """``{library: its bundled proj.db}`` from the probe report, else from the libraries here."""
    out: dict[str, Path] = {}
    probe = ctx.probe or {}
    for lib, key in (("rasterio", "proj_data"), ("pyproj", "data_dir")):
        d = (probe.get(lib) or {}).get(key)
        if d and (Path(d) / "proj.db").is_file():
            out[lib] = Path(d) / "proj.db"
    if "rasterio" not in out:
        try:
            from rasterio.env import PROJDataFinder

            d = PROJDataFinder().search_wheel()
            if d:
                out["rasterio"] = Path(d) / "proj.db"
        except ImportError:
            pass
    if "pyproj" not in out:
        import importlib.util

        spec = importlib.util.find_spec("pyproj")
        if spec and spec.origin:
            d = Path(spec.origin).parent / "proj_dir" / "share" / "proj"
            if (d / "proj.db").is_file():
                out["pyproj"] = d / "proj.db"
    return out


def apptainer_job(ctx: PreflightContext) -> bool:
    """True when the job runs in an apptainer container (a container stage, or CPU stages in CPU_SIF)."""
    if (ctx.site.get("CONTAINER_RUNTIME") or "none") != "apptainer":
        return False
    return ctx.runtime != "venv" or bool(ctx.site.get("CPU_SIF")) or ctx.stage is None


def container_env(ctx: PreflightContext) -> dict[str, str]:
    """The ``--env`` items of CONTAINER_ENV (``KEY:value`` comma-separated)."""
    items = (i.partition(":") for i in ctx.site.get("CONTAINER_ENV", "").split(",") if ":" in i)
    return {k.strip(): v.strip() for k, _, v in items if k.strip()}


def _container_fix(ctx: PreflightContext) -> str:
    site = ctx.site.get("SITE_NAME", "?")
    return (f"set PROJ_DATA_FROM=container in sites/{site}.env (the job exports PROJ_DATA from the container's "
            "rasterio), or CONTAINER_ENV=PROJ_DATA:<container python>/site-packages/rasterio/proj_data")


def check(ctx: PreflightContext) -> Result:
    """Fail when an apptainer job leaves PROJ_DATA unset, or the proj.db pointed at is older than rasterio's."""
    container = apptainer_job(ctx)
    env_vals = dict(ctx.env)
    env_vals.update({k: v for k, v in ((ctx.probe or {}).get("env") or {}).items() if isinstance(v, str)})
    env_vals.update({k: v for k, v in container_env(ctx).items() if k in ("PROJ_DATA", "PROJ_LIB")})
    set_vars = [(k, env_vals[k]) for k in ("PROJ_DATA", "PROJ_LIB") if env_vals.get(k)]
    from_container = (ctx.site.get("PROJ_DATA_FROM") or "").strip().lower() == "container"
    wrong = [probe_answer(ctx.probe, q) for q in ("utm_rasterio", "utm_pyproj", "epsg_lookup")]
    wrong = [a for a in wrong if a.get("ok") is False]
    if wrong:  # the probe ran the known transform where the job runs: the silent bug, seen
        return fail(f"probe on {(ctx.probe or {}).get('host', 'the node')}: {wrong[0].get('detail', 'wrong answer')} "
                    f"({len(wrong)} of 3 PROJ answers wrong; sure2.md bug 1)",
                    _container_fix(ctx) if container else "unset PROJ_DATA/PROJ_LIB in the job, rerun the probe")
    if not set_vars:
        if container and from_container:
            return ok("PROJ_DATA is set at job start from the container's rasterio proj_data (PROJ_DATA_FROM=container)")
        if container:
            return fail("PROJ_DATA is unset for an apptainer job: rasterio/pyproj may use the node's old proj.db "
                        "(layout minor 2) and transforms come out silently wrong (sure2.md bug 1)", _container_fix(ctx))
        return ok("PROJ_DATA/PROJ_LIB unset: rasterio and pyproj use their bundled proj.db")
    var, value = set_vars[0]
    db = find_db(value)
    if db is None:
        if container and value.rstrip("/").endswith("rasterio/proj_data"):
            return ok(f"{var}={value}: the container's rasterio proj_data (a path inside the image)")
        return warn(f"{var}={value} has no proj.db", _container_fix(ctx) if container else f"unset {var}")
    major, minor, ver = layout(db)
    fix = _container_fix(ctx) if container else \
        f"unset {var} (the wheels bundle their own proj.db); in a container: --env {var}=<its rasterio proj_data>"
    refs = bundled(ctx)
    if not refs:
        return warn(f"{var}={value} (PROJ {ver}, layout {major}.{minor}) set, and no rasterio/pyproj here to "
                    "compare with", f"make submit STAGE=probe SITE={ctx.site.get('SITE_NAME', '')} (the probe "
                    "reports their data dirs), then rerun; or unset " + var)
    hard, soft = [], []
    expect = "..."
    for lib, ref in refs.items():
        want_major, want_minor, want_ver = layout(ref)
        if major != want_major or minor < want_minor:
            hard.append(f"{lib} (PROJ {want_ver}) needs layout {want_major}.{want_minor}+")
            expect = str(want_minor) if lib == "rasterio" else expect
        elif minor != want_minor and lib == "rasterio":  # pyproj wheels prefer their own data dir
            soft.append(f"{lib} has PROJ {want_ver}")
    if hard and any(h.startswith("rasterio") for h in hard):
        return fail(f"{var}={value}: proj.db layout {major}.{minor} (PROJ {ver}), but {'; '.join(hard)}: "
                    f"'DATABASE.LAYOUT.VERSION.MINOR = {minor} whereas a number >= {expect} is expected'", fix)
    if hard or soft:
        return warn(f"{var}={value}: proj.db from PROJ {ver} (layout {major}.{minor}); {'; '.join(hard + soft)}", fix)
    return ok(f"{var}={value}: proj.db layout {major}.{minor} matches the bundled PROJ")
