"""Drought: score D in [0, 1] per field from pre-loaded weather, gate D > 0.5 (sure2.md, Drought V2).

Two components over the emergence window [planting, planting + 30 d):
- soil moisture: ERA5-Land swvl1 anomaly z against the ERA5-Land climatology; score clip(-z / 2, 0, 1);
- rain deficit: CHIRPS precipitation against the CHIRPS climatology (never ERA5's: sure2.md bug 8);
  score clip(1 - rain / normal, 0, 1).
Weights 0.5 each (Sure2 had four sources; SMAP's 25% was dropped when missing, bug 6): a missing source's
weight goes to the others and ``sources_missing`` and ``warnings`` say so. Weather is loaded once per task
(one year of the region per source, bounded by ``MEM_LIMIT``) and each field is a centroid lookup (bug 4).
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np

from geohpc.errors import InputError, run_cli
from geohpc.sure2.weather import cell_index, load_npz

WEIGHTS = {"era5land_swvl1": 0.5, "chirps_precip": 0.5}
WINDOW_DAYS, GATE = 30, 0.5
MEM_LIMIT = 2 << 30  # bytes of weather a task may hold


def _window(dates: np.ndarray, start: dt.date) -> tuple[np.ndarray, np.ndarray]:
    d = dates.astype("datetime64[D]")
    s = np.datetime64(start, "D")
    sel = (d >= s) & (d < s + np.timedelta64(WINDOW_DAYS, "D"))
    doy = (d[sel] - d[sel].astype("datetime64[Y]").astype("datetime64[D]")).astype(int)
    return sel, doy


def score(lon: float, lat: float, start: dt.date, era5: dict | None, chirps: dict | None,
          era5_clim: dict | None, chirps_clim: dict | None) -> dict[str, Any]:
    """The drought JSON body for a centroid and window start (pure numpy on pre-loaded arrays)."""
    comps: dict[str, float] = {}
    res: dict[str, Any] = {"soil_moisture_anomaly": None, "rain_deficit": None, "warnings": [], "window_start": start.isoformat()}
    if era5 is not None and era5_clim is not None and (rc := cell_index(era5["lat"], era5["lon"], lon, lat)):
        sel, doy = _window(era5["dates"], start)
        obs = era5["swvl1"][sel, rc[0], rc[1]]
        mu, sd = era5_clim["swvl1_mean"][doy, rc[0], rc[1]], era5_clim["swvl1_std"][doy, rc[0], rc[1]]
        if obs.size and np.isfinite(mu).all() and np.nanmean(sd) > 0:
            z = float((obs.mean() - mu.mean()) / np.nanmean(sd))
            res["soil_moisture_anomaly"] = round(z, 4)
            comps["era5land_swvl1"] = float(np.clip(-z / 2, 0, 1))
    if chirps is not None and chirps_clim is not None and (rc := cell_index(chirps["lat"], chirps["lon"], lon, lat)):
        sel, doy = _window(chirps["dates"], start)
        rain = chirps["precip"][sel, rc[0], rc[1]]
        normal = chirps_clim["precip_mean"][doy, rc[0], rc[1]]
        if rain.size and np.isfinite(rain).all() and np.isfinite(normal).all() and normal.sum() > 0:
            deficit = float(np.clip(1 - rain.sum() / normal.sum(), 0, 1))
            res["rain_deficit"] = round(deficit, 4)
            comps["chirps_precip"] = deficit
    missing = [k for k in WEIGHTS if k not in comps]
    total = sum(WEIGHTS[k] for k in comps)
    res["weights"] = {k: round(WEIGHTS[k] / total, 4) for k in comps} if total else {}
    res["sources_missing"] = missing
    if missing and comps:
        res["warnings"].append(f"no {', '.join(missing)} at the centroid for this window: weight redistributed to "
                               f"{', '.join(comps)}")
    d = sum(res["weights"][k] * v for k, v in comps.items()) if comps else None
    res["D"] = round(d, 4) if d is not None else None
    res["gate"] = bool(d is not None and d > GATE)
    if d is None:
        res["warnings"].append("no weather source at the centroid: D unknown")
    return res


def _opt(path: Path) -> dict | None:
    return load_npz(path) if path.is_file() else None


def _context(weather: str, clim: str, planting: str) -> Any:
    def load(fields: list[Any]) -> dict[str, Any]:
        w, c = Path(weather), Path(clim)
        ctx: dict[str, Any] = {"era5": {}, "chirps": {}, "planting": Path(planting) if planting else None,
                               "era5_clim": _opt(c / "era5land_clim.npz"), "chirps_clim": _opt(c / "chirps_clim.npz")}
        for y in sorted({f.year for f in fields}):
            ctx["era5"][y], ctx["chirps"][y] = _opt(w / f"era5land_{y}.npz"), _opt(w / f"chirps_{y}.npz")
        held = sum(a.nbytes for src in ("era5", "chirps") for z in ctx[src].values() if z for a in z.values())
        if held > MEM_LIMIT:
            raise InputError(f"weather of this task is {held >> 20} MiB > {MEM_LIMIT >> 20} MiB: crop it to the region")
        return ctx

    return load


def drought_field(field: Any, ctx: dict[str, Any]) -> dict[str, Any]:
    """The drought JSON of one field; the window starts at its planting date (May 1 when unknown)."""
    import json

    start, warn = dt.date(field.year, 5, 1), "planting date unknown: window starts on May 1"
    p = ctx["planting"] / f"{field.field_id}.json" if ctx["planting"] else None
    try:
        doc = json.loads(p.read_text()) if p is not None else {}
    except (OSError, ValueError):
        doc = {}  # missing or torn planting output: the May 1 window, said in the warnings
    if isinstance(doc, dict):
        if doc.get("planting_date"):
            start, warn = dt.date.fromisoformat(doc["planting_date"]), ""
    res = score(*field.centroid, start, ctx["era5"].get(field.year), ctx["chirps"].get(field.year),
                ctx["era5_clim"], ctx["chirps_clim"])
    if warn:
        res["warnings"].insert(0, warn)
    return {"field_id": field.field_id, "year": field.year, **res}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="geohpc drought", description="drought score D per field from pre-loaded weather")
    p.add_argument("--fields", required=True)
    p.add_argument("--item", default="shard_0000_of_0001")
    p.add_argument("--weather", required=True, help="folder of era5land_YYYY.npz and chirps_YYYY.npz")
    p.add_argument("--climatology", required=True, help="folder of era5land_clim.npz and chirps_clim.npz")
    p.add_argument("--planting", default="", help="planting stage output folder (window start)")
    p.add_argument("--out", required=True)
    p.add_argument("--workers", type=int, default=1)
    a = p.parse_args(argv)
    from geohpc.sure2.batch import run_shard

    return run_cli(lambda: run_shard("drought", a.fields, a.item, a.out, drought_field,
                                     _context(a.weather, a.climatology, a.planting), a.workers,
                                     lambda r: f"D={r['D']} gate={r['gate']}") and 0, "geohpc drought")


if __name__ == "__main__":
    raise SystemExit(main())
