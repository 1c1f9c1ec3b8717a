"""Planting: per field, green-up on the smoothed S2 EVI series, back-dated by thermal time to sowing.

Method (SURE2-NOTES, Emergence and sowing date): clear-field EVI means (SCL-masked, baseline offset
applied, acquisitions with at least ``MIN_CLEAR_SHARE`` of the field clear) are interpolated to a daily
series and smoothed with a centred moving average; green-up is the
first day the smoothed curve crosses ``GREENUP_FRACTION`` of the seasonal amplitude above its pre-season
minimum (TIMESAT-style start of season). Emergence = green-up - ``GREENUP_LAG_DAYS``; sowing is the latest
day from which daily growing degree days reach ``GDD_SUM`` by emergence.

GDD: the averaging method (McMaster & Wilhelm 1997), GDD = max(0, min(Tmean, T_MAX) - T_BASE) with the daily
mean of hourly ERA5-Land 2 m temperature at the field's centroid. Base, cap and sum are WOFOST's temperate
maize sowing -> emergence parameters (TBASEM 4 C, TEFFMX 30 C, TSUMEM 110 C.d; SURE2-NOTES).
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np

from geohpc.errors import InputError, run_cli

T_BASE, T_MAX, GDD_SUM = 4.0, 30.0, 110.0  # WOFOST temperate maize, sowing -> emergence
GREENUP_FRACTION = 0.15  # of the seasonal amplitude (TIMESAT start of season, 0.15-0.25 typical)
# days from emergence to the 15%-amplitude crossing of field-mean EVI. Gao et al. (2021, 2024) find the
# earliest detectable rise ~3 days after emergence; a 15% amplitude crossing sits later on the curve. 8 days
# is the value on the synthetic county's maize curve (canopy logistic, midpoint 15 d, scale 4 d): check it
# against observed emergence dates before relying on it for a real region.
GREENUP_LAG_DAYS = 8
SMOOTH_DAYS = 11
MIN_CLEAR, MAX_GAP_DAYS, MIN_AMPLITUDE = 6, 30, 0.15
# an acquisition counts when this share of the field's pixels is clear (SCL): the field-mean EVI of a tenth of
# a 4 ha field (~40 pixels) is still a good sample, and at 60% cloud a 50% rule left 15% of the fields
# with a date (bench/RESULTS-sure2.md); 10% found every one with a smaller error
MIN_CLEAR_SHARE = 0.1
SEASON = ((3, 15), (7, 31))  # months/days the series is read over
METHOD = (f"EVI moving average {SMOOTH_DAYS} d, green-up at {GREENUP_FRACTION:.0%} amplitude, emergence = green-up - "
          f"{GREENUP_LAG_DAYS} d, sowing back-dated by GDD (daily mean, base {T_BASE:g} C, cap {T_MAX:g} C, "
          f"sum {GDD_SUM:g} C.d: WOFOST temperate maize)")


def gdd(tmean: np.ndarray) -> np.ndarray:
    """Daily growing degree days (averaging method, base T_BASE, capped at T_MAX)."""
    return np.clip(np.minimum(tmean, T_MAX) - T_BASE, 0, None)


def back_date(emergence: dt.date, days: list[dt.date], tmean: np.ndarray) -> dt.date | None:
    """Latest sowing day p with sum(GDD[p..emergence-1]) >= GDD_SUM; None when the series starts too late."""
    try:
        k = days.index(emergence)
    except ValueError:
        return None
    g = gdd(np.asarray(tmean, float))
    total = 0.0
    for j in range(k - 1, -1, -1):
        total += g[j]
        if total >= GDD_SUM:
            return days[j]
    return None


def smooth_daily(dates: list[dt.date], values: np.ndarray) -> tuple[list[dt.date], np.ndarray]:
    """Linear interpolation to days between the first and last observation, then a centred moving average."""
    t = np.array([(d - dates[0]).days for d in dates], float)
    grid = np.arange(int(t[-1]) + 1)
    daily = np.interp(grid, t, values)
    h = SMOOTH_DAYS // 2
    padded = np.concatenate([np.full(h, daily[0]), daily, np.full(h, daily[-1])])
    sm = np.convolve(padded, np.ones(SMOOTH_DAYS) / SMOOTH_DAYS, mode="valid")
    return [dates[0] + dt.timedelta(days=int(i)) for i in grid], sm


def estimate(dates: list[dt.date], values: np.ndarray, wdays: list[dt.date] | None, tmean: np.ndarray | None) -> dict[str, Any]:
    """Planting from a clear-observation EVI series and daily mean temperature; PASS flag with reason."""
    res: dict[str, Any] = {"pass": False, "reason": "", "planting_date": None, "greenup_date": None,
                           "emergence_date": None, "n_clear": len(dates), "max_gap_days": None, "amplitude": None,
                           "method": METHOD}
    if len(dates) < MIN_CLEAR:
        res["reason"] = f"too few clear observations: {len(dates)} < {MIN_CLEAR}"
        return res
    gaps = np.diff([d.toordinal() for d in dates])
    res["max_gap_days"] = int(gaps.max())
    if gaps.max() > MAX_GAP_DAYS:
        res["reason"] = f"gaps too long: {int(gaps.max())} days without a clear observation (limit {MAX_GAP_DAYS})"
        return res
    days, sm = smooth_daily(dates, np.asarray(values, float))
    peak = int(np.argmax(sm))
    base_i = int(np.argmin(sm[: peak + 1]))
    amp = float(sm[peak] - sm[base_i])
    res["amplitude"] = round(amp, 4)
    if amp < MIN_AMPLITUDE:
        res["reason"] = f"no green-up: EVI amplitude {amp:.2f} < {MIN_AMPLITUDE}"
        return res
    above = np.flatnonzero(sm[base_i: peak + 1] >= sm[base_i] + GREENUP_FRACTION * amp)
    g = base_i + int(above[0])
    if base_i == 0 and g <= SMOOTH_DAYS // 2:
        res["reason"] = "no green-up: EVI already rising at the first clear observation"
        return res
    greenup = days[g]
    emergence = greenup - dt.timedelta(days=GREENUP_LAG_DAYS)
    res["greenup_date"], res["emergence_date"] = greenup.isoformat(), emergence.isoformat()
    if wdays is None or tmean is None:
        res["reason"] = "no temperature at the field centroid (ERA5-Land) to back-date by GDD"
        return res
    sowing = back_date(emergence, wdays, tmean)
    if sowing is None:
        res["reason"] = f"temperature series does not reach {GDD_SUM:g} C.d before emergence {emergence}"
        return res
    res.update({"pass": True, "planting_date": sowing.isoformat()})
    return res


def _context(stac: str, weather: str) -> Any:
    def load(fields: list[Any]) -> dict[str, Any]:
        from geohpc.sure2.s2 import load_items
        from geohpc.sure2.weather import load_npz

        wx = {}
        for y in sorted({f.year for f in fields}):
            path = Path(weather) / f"era5land_{y}.npz"
            if not path.is_file():
                raise InputError(f"{path}: missing (run the weather stage for {y} first)")
            wx[y] = load_npz(path)  # one year of the region, in memory once per task
        return {"items": load_items(stac), "weather": wx}

    return load


def planting_field(field: Any, ctx: dict[str, Any]) -> dict[str, Any]:
    """The planting JSON of one field (the contract in ``geohpc.sure2``)."""
    from geohpc.sure2.s2 import read_field
    from geohpc.sure2.weather import cell_index, days_of

    (m0, d0), (m1, d1) = SEASON
    stack = read_field(field, ctx["items"], dt.date(field.year, m0, d0), dt.date(field.year, m1, d1))
    dates, values = stack.field_series(MIN_CLEAR_SHARE)
    w = ctx["weather"][field.year]
    rc = cell_index(w["lat"], w["lon"], *field.centroid)
    res = estimate(dates, values, days_of(w["dates"]) if rc else None, w["t2m"][:, rc[0], rc[1]] if rc else None)
    return {"field_id": field.field_id, "year": field.year, **res}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="geohpc planting", description="planting date per field from S2 EVI + GDD")
    p.add_argument("--fields", required=True, help="fields GeoJSON (field_id, county, year)")
    p.add_argument("--item", default="shard_0000_of_0001", help="shard_IIII_of_NNNN: this task's fields[i::n]")
    p.add_argument("--stac", required=True, help="STAC ItemCollection JSON of Sentinel-2 L2A")
    p.add_argument("--weather", required=True, help="folder of era5land_YYYY.npz (the weather stage)")
    p.add_argument("--out", required=True, help="folder for <field_id>.json")
    p.add_argument("--workers", type=int, default=1, help="processes (never threads)")
    a = p.parse_args(argv)
    from geohpc.sure2.batch import run_shard

    return run_cli(lambda: run_shard("planting", a.fields, a.item, a.out, planting_field, _context(a.stac, a.weather),
                                     a.workers, lambda r: f"pass={r['pass']} {r['planting_date'] or r['reason']}") and 0,
                   "geohpc planting")


if __name__ == "__main__":
    raise SystemExit(main())
