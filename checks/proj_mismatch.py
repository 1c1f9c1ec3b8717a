"""proj_mismatch: PROJ_DATA / PROJ_LIB pointing at a proj.db from another PROJ than rasterio's."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from geohpc.preflight.context import PreflightContext, Result, fail, ok, warn

NAME = "proj_mismatch"
DESCRIPTION = "PROJ_DATA/PROJ_LIB proj.db layout vs the proj.db bundled with rasterio and pyproj"
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


def check(ctx: PreflightContext) -> Result:
    """Fail when the proj.db the environment points at has another layout than a library expects."""
    env_vals = dict(ctx.env)
    env_vals.update({k: v for k, v in ((ctx.probe or {}).get("env") or {}).items() if isinstance(v, str)})
    set_vars = [(k, env_vals[k]) for k in ("PROJ_DATA", "PROJ_LIB") if env_vals.get(k)]
    if not set_vars:
        return ok("PROJ_DATA/PROJ_LIB unset: rasterio and pyproj use their bundled proj.db")
    var, value = set_vars[0]
    db = find_db(value)
    if db is None:
        return warn(f"{var}={value} has no proj.db", f"unset {var}")
    major, minor, ver = layout(db)
    fix = f"unset {var} (the wheels bundle their own proj.db); in a container: apptainer exec --cleanenv or --env {var}="
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
