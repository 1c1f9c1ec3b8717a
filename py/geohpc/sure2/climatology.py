"""Climatology: per-cell day-of-year baselines (mean, std over a +-15 day window) from the years given.

Each year's npz is loaded eagerly into memory before the years are stacked (sure2.md bug 2: a lazy
concatenation of many files crashed HDF5). Index = day of year - 1 (366 rows); days with no data are NaN.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from geohpc.errors import InputError, run_cli
from geohpc.sure2.weather import load_npz
from geohpc.util import atomic_path

WINDOW = 15  # days either side of a day of year


def _by_doy(dates: np.ndarray, data: np.ndarray) -> np.ndarray:
    """(D,H,W) daily values -> (366,H,W) with NaN on days not present."""
    out = np.full((366,) + data.shape[1:], np.nan, np.float32)
    doy = (dates.astype("datetime64[D]") - dates.astype("datetime64[Y]").astype("datetime64[D]")).astype(int)
    out[doy] = data
    return out


def window_stats(stack: np.ndarray, window: int = WINDOW) -> tuple[np.ndarray, np.ndarray]:
    """(Y,366,H,W) with NaN gaps -> mean and std (366,H,W) over all years and days within +-window (circular)."""
    valid = np.isfinite(stack)
    x = np.where(valid, stack, 0.0).astype(np.float64)
    s1, s2, n = x.sum(0), (x * x).sum(0), valid.sum(0).astype(np.float64)
    pad = lambda a: np.concatenate([a[-window:], a, a[:window]])  # noqa: E731
    c1, c2, cn = (np.cumsum(pad(a), axis=0) for a in (s1, s2, n))
    z = np.zeros((1,) + s1.shape[1:])
    c1, c2, cn = (np.concatenate([z, c]) for c in (c1, c2, cn))
    w = 2 * window + 1
    t1, t2, tn = (c[w:] - c[:-w] for c in (c1, c2, cn))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(tn > 0, t1 / tn, np.nan)
        var = np.where(tn > 1, (t2 - tn * mean * mean) / np.maximum(tn - 1, 1), np.nan)
    return mean.astype(np.float32), np.sqrt(np.clip(var, 0, None)).astype(np.float32)


def build_climatology(weather: str | Path, years: list[int], out: str | Path) -> list[Path]:
    """``era5land_clim.npz`` and ``chirps_clim.npz`` in ``out`` from ``weather/<source>_<Y>.npz``."""
    weather, out = Path(weather), Path(out)
    written = []
    for source, fields in (("era5land", ("swvl1", "tp")), ("chirps", ("precip",))):
        files = [weather / f"{source}_{y}.npz" for y in years]
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise InputError(f"{weather}: {', '.join(missing)} missing (run the weather stage for those years first)")
        loaded = [load_npz(f) for f in files]  # eager, before any stacking (bug 2)
        lat, lon = loaded[0]["lat"], loaded[0]["lon"]
        res: dict[str, np.ndarray] = {"lat": lat, "lon": lon, "years": np.array(years)}
        for name in fields:
            stack = np.stack([_by_doy(z["dates"], z[name]) for z in loaded])
            mean, std = window_stats(stack)
            res[f"{name}_mean"] = mean
            if name != "tp":
                res[f"{name}_std"] = std
        target = out / f"{source}_clim.npz"
        with atomic_path(target, suffix=".npz") as tmp:
            np.savez(tmp, **res)
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="geohpc climatology", description="per-cell day-of-year weather baselines")
    p.add_argument("--weather", required=True, help="folder of era5land_YYYY.npz and chirps_YYYY.npz")
    p.add_argument("--years", required=True, help="baseline years: comma list or range, e.g. 2018-2022")
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    from geohpc.sure2.weather import _ints

    def _run() -> None:
        try:
            years = _ints(a.years)
        except ValueError as exc:
            raise InputError(f"--years {a.years!r}: give years like 2018-2022 or 2021,2022") from exc
        for f in build_climatology(a.weather, years, a.out):
            print(f)

    return run_cli(_run, "geohpc climatology")


if __name__ == "__main__":
    raise SystemExit(main())
