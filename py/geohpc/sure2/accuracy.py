"""Sure2 against a known truth (the synthetic county's ``truth.csv``): planting, emergence and drought errors.

Planting: error = estimated - true planting date in days over fields with a PASS date (mean, MAE, RMSE) and
the detection rate (PASS fields / all). Emergence: not-emerged share error in percentage points (MAE, bias)
and claim agreement. Drought: gate agreement (D > 0.5 vs the truth's drought flag). Identical-score guard
(bug 8's symptom): a score with the same value on every field of a year with more than one field.
"""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np

from geohpc.errors import InputError


def read_truth(path: str | Path) -> dict[str, dict[str, str]]:
    """truth.csv rows by field_id."""
    try:
        with open(path, newline="") as fh:
            return {r["field_id"]: r for r in csv.DictReader(fh)}
    except (OSError, KeyError, csv.Error) as exc:
        raise InputError(f"{path}: not a truth table with field_id ({exc})") from exc


def planting_errors(rows: list[dict[str, Any]], truth: dict[str, dict[str, str]]) -> dict[str, Any]:
    """rows: portfolio rows (field_id, planting_pass, planting_date)."""
    errs = [(dt.date.fromisoformat(r["planting_date"]) - dt.date.fromisoformat(truth[r["field_id"]]["planting_date"])).days
            for r in rows if r["field_id"] in truth and r.get("planting_pass") and r.get("planting_date")]
    n = sum(r["field_id"] in truth for r in rows)
    e = np.array(errs, float)
    return {"fields": n, "detected": len(errs), "detection_rate": round(len(errs) / n, 4) if n else None,
            "mean_days": round(float(e.mean()), 2) if e.size else None,
            "mae_days": round(float(np.abs(e).mean()), 2) if e.size else None,
            "rmse_days": round(float(np.sqrt((e ** 2).mean())), 2) if e.size else None}


def emergence_errors(rows: list[dict[str, Any]], truth: dict[str, dict[str, str]]) -> dict[str, Any]:
    got = [(r["not_emerged_share"], float(truth[r["field_id"]]["not_emerged_share"]), bool(r["claim_eligible"]),
            truth[r["field_id"]]["claim_true"] == "True")
           for r in rows if r["field_id"] in truth and r.get("not_emerged_share") is not None
           and np.isfinite(r["not_emerged_share"])]
    if not got:
        return {"fields": 0, "mae_pp": None, "bias_pp": None, "claim_agreement": None}
    err = np.array([a - b for a, b, _, _ in got]) * 100
    return {"fields": len(got), "mae_pp": round(float(np.abs(err).mean()), 2), "bias_pp": round(float(err.mean()), 2),
            "claim_agreement": round(float(np.mean([a == b for _, _, a, b in got])), 4)}


def drought_agreement(rows: list[dict[str, Any]], truth: dict[str, dict[str, str]]) -> dict[str, Any]:
    got = [(bool(r["drought_gate"]), truth[r["field_id"]]["drought_true"] == "True") for r in rows
           if r["field_id"] in truth and r.get("D") is not None and np.isfinite(r["D"])]
    return {"fields": len(got), "gate_agreement": round(float(np.mean([a == b for a, b in got])), 4) if got else None}


def identical_scores(rows: list[dict[str, Any]], keys: tuple[str, ...] = ("D", "rain_deficit", "soil_moisture_anomaly",
                                                                         "not_emerged_share")) -> list[str]:
    """'<key> <year>' for each score identical on every field of a year (bug 8: a shared-data bug)."""
    out = []
    for y in sorted({r["year"] for r in rows}):
        for k in keys:
            vals = {r[k] for r in rows if r["year"] == y and r.get(k) is not None and np.isfinite(r[k])}
            n = sum(1 for r in rows if r["year"] == y and r.get(k) is not None and np.isfinite(r[k]))
            if n > 1 and len(vals) == 1:
                out.append(f"{k} {y}")
    return out


def accuracy(rows: list[dict[str, Any]], truth: dict[str, dict[str, str]]) -> dict[str, Any]:
    """All of the above in one dict (the report's "measured against the truth" table)."""
    return {"planting": planting_errors(rows, truth), "emergence": emergence_errors(rows, truth),
            "drought": drought_agreement(rows, truth)}
