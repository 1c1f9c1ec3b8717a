"""Emergence: the share of a field not emerged 30 days after planting, and claim eligibility (>= 30%).

Per pixel, the EVI of its clear acquisition nearest to DAP30 within +-``WINDOW_DAYS`` (a per-pixel
composite: clouds come in cells, failed patches in blocks, so judging only the pixels clear on one date
samples the field unevenly), minus the pixel's bare-soil EVI: the median of its clear acquisitions before
planting, else the field's bare-soil median before planting, else the field's 10th percentile on its
earliest clear date. Only dates on which the field shows a canopy count (the field's 90th-percentile rise
reaches ``MIN_RISE``): a cold spring can leave a healthy canopy invisible at DAP30 (a few days after
emergence), and a field with no canopy on any date of the window is wholly not emerged. A pixel has emerged
when its rise reaches max(``MIN_RISE``, ``RISE_FRACTION`` x that date's 90th-percentile rise): relative, so an
even but late canopy is not a failure, with a floor so a bare field is.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path
from typing import Any

import numpy as np

from geohpc.errors import run_cli
from geohpc.sure2.s2 import FieldStack

DAP, WINDOW_DAYS, MIN_CLEAR = 30, 10, 0.6
MIN_RISE, RISE_FRACTION, CLAIM_SHARE = 0.05, 0.4, 0.30


def _baseline(stack: FieldStack, planting: dt.date) -> np.ndarray:
    """Per-pixel bare-soil EVI (the fallbacks of the module docstring)."""
    npx = stack.evi.shape[1]
    masked = np.where(stack.clear, stack.evi, np.nan)
    before = [k for k, d in enumerate(stack.dates) if d <= planting]
    base = np.full(npx, np.nan)
    if before and np.isfinite(masked[before]).any():
        pre = masked[before]
        seen = np.isfinite(pre).any(axis=0)
        base[seen] = np.nanmedian(pre[:, seen], axis=0)
        field_soil = float(np.nanmedian(pre))
    else:
        first = next((k for k in range(len(stack.dates)) if stack.clear[k].any()), None)
        field_soil = float(np.percentile(stack.evi[first][stack.clear[first]], 10)) if first is not None else np.nan
    return np.where(np.isfinite(base), base, field_soil)


def not_emerged(stack: FieldStack, planting: dt.date) -> dict[str, Any]:
    """The emergence JSON body (without field_id) from a field's per-pixel stack and its planting date."""
    target = planting + dt.timedelta(days=DAP)
    res: dict[str, Any] = {"dap30_date": target.isoformat(), "obs_date": None, "obs_dates": [],
                           "not_emerged_share": None, "claim_eligible": False, "n_pixels": 0, "reason": ""}
    if not stack.dates:
        res["reason"] = "no acquisition covers the field"
        return res
    share = stack.clear.mean(axis=1)
    window = sorted((k for k, d in enumerate(stack.dates) if abs((d - target).days) <= WINDOW_DAYS and share[k] > 0),
                    key=lambda k: (abs((stack.dates[k] - target).days), -share[k]))
    if not window:
        res["reason"] = f"no clear pixel within {WINDOW_DAYS} days of DAP30"
        return res
    base = _baseline(stack, planting)
    rise = stack.evi - base[None]
    p90 = {k: float(np.percentile(rise[k][stack.clear[k]], 90)) for k in window}
    visible = [k for k in window if p90[k] >= MIN_RISE]
    npx = stack.evi.shape[1]
    emerged = np.zeros(npx, bool)
    judged = np.zeros(npx, bool)
    used: dict[int, int] = {}
    for k in visible:  # nearest to DAP30 first: each pixel takes its nearest clear date with a canopy in view
        take = stack.clear[k] & ~judged
        if take.any():
            emerged[take] = rise[k][take] >= max(MIN_RISE, RISE_FRACTION * p90[k])
            judged |= take
            used[k] = int(take.sum())
    if not visible:  # no canopy anywhere in the window: every clear pixel is bare
        judged = stack.clear[window].any(axis=0)
        used = {window[0]: int(judged.sum())}
        res["reason"] = f"no canopy on any date within {WINDOW_DAYS} days of DAP30"
    if judged.mean() < MIN_CLEAR:
        res["reason"] = f"only {judged.mean():.0%} of the field clear within {WINDOW_DAYS} days of DAP30 (< {MIN_CLEAR:.0%})"
        return res
    frac = float((~emerged[judged]).mean())
    main_k = max(used, key=lambda k: used[k])
    res.update({"obs_date": stack.dates[main_k].isoformat(), "obs_dates": sorted(stack.dates[k].isoformat() for k in used),
                "not_emerged_share": round(frac, 4), "claim_eligible": frac >= CLAIM_SHARE, "n_pixels": int(judged.sum())})
    return res


def _context(stac: str, planting: str) -> Any:
    def load(fields: list[Any]) -> dict[str, Any]:
        from geohpc.sure2.s2 import load_items

        return {"items": load_items(stac), "planting": Path(planting)}

    return load


def emergence_field(field: Any, ctx: dict[str, Any]) -> dict[str, Any]:
    """The emergence JSON of one field; a field without a PASS planting date gets a reason, no share."""
    from geohpc.sure2.s2 import read_field

    p = ctx["planting"] / f"{field.field_id}.json"
    try:
        doc = json.loads(p.read_text())
    except (OSError, ValueError):
        doc = {}  # missing or torn: this field has no planting date (the planting stage's resubmit redoes it)
    doc = doc if isinstance(doc, dict) else {}
    out = {"field_id": field.field_id, "year": field.year}
    if not doc.get("pass") or not doc.get("planting_date"):
        return {**out, "dap30_date": None, "obs_date": None, "obs_dates": [], "not_emerged_share": None, "claim_eligible": False,
                "n_pixels": 0, "reason": f"no planting date ({doc.get('reason') or 'planting output missing'})"}
    planting = dt.date.fromisoformat(doc["planting_date"])
    stack = read_field(field, ctx["items"], planting - dt.timedelta(days=40), planting + dt.timedelta(days=DAP + WINDOW_DAYS))
    return {**out, **not_emerged(stack, planting)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="geohpc emergence", description="not-emerged share at DAP30 per field")
    p.add_argument("--fields", required=True)
    p.add_argument("--item", default="shard_0000_of_0001")
    p.add_argument("--stac", required=True)
    p.add_argument("--planting", required=True, help="planting stage output folder")
    p.add_argument("--out", required=True)
    p.add_argument("--workers", type=int, default=1)
    a = p.parse_args(argv)
    from geohpc.sure2.batch import run_shard

    return run_cli(lambda: run_shard("emergence", a.fields, a.item, a.out, emergence_field, _context(a.stac, a.planting),
                                     a.workers, lambda r: f"share={r['not_emerged_share']} claim={r['claim_eligible']}")
                   and 0, "geohpc emergence")


if __name__ == "__main__":
    raise SystemExit(main())
