"""Assess: one versioned assessment JSON a field from its planting, emergence and drought outputs.

Schema ``sure2.assessment/1`` (``SCHEMA``; ``collect`` refuses any other):

- ``schema``, ``field_id``, ``year``, ``county``, ``centroid`` [lon, lat], ``created`` (UTC ISO time);
- ``inputs``: per stage (planting, emergence, drought) the file read and its modification time (null when
  missing), and the data dates used: planting and green-up dates, DAP30 and the S2 acquisitions judged,
  the drought window start;
- ``planting``: pass, reason, planting_date, greenup_date, n_clear, max_gap_days;
- ``emergence``: not_emerged_share, claim_eligible, obs_date, n_pixels, reason;
- ``drought``: D, gate, soil_moisture_anomaly, rain_deficit, weights, sources_missing;
- ``decision``: ``code`` and ``reason``. Codes: ``not_assessable`` (no PASS planting date, or no
  not-emerged share), ``no_claim`` (share < 30%), ``claim`` (share >= 30% and drought gate D > 0.5: the
  emergence failure is attributed to drought), ``claim_no_drought`` (share >= 30% but the gate is shut or
  D unknown: not paid automatically, refer for inspection);
- ``warnings``: every stage's warnings and reasons, and any missing input.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path
from typing import Any

from geohpc.errors import ConfigError, run_cli

SCHEMA = "sure2.assessment/1"
DECISIONS = ("claim", "claim_no_drought", "no_claim", "not_assessable")
STAGES = ("planting", "emergence", "drought")
KEEP = {
    "planting": ("pass", "reason", "planting_date", "greenup_date", "n_clear", "max_gap_days"),
    "emergence": ("not_emerged_share", "claim_eligible", "obs_date", "n_pixels", "reason"),
    "drought": ("D", "gate", "soil_moisture_anomaly", "rain_deficit", "weights", "sources_missing"),
}


def _read(folder: Path | None, fid: str) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """A stage's JSON of field ``fid`` (None when missing, torn or another field's) and its input record."""
    if folder is None:
        return None, {"path": None, "modified": None}
    p = folder / f"{fid}.json"
    rec: dict[str, Any] = {"path": str(p), "modified": None}
    try:
        doc = json.loads(p.read_text())
        rec["modified"] = dt.datetime.fromtimestamp(p.stat().st_mtime, dt.UTC).isoformat(timespec="seconds")
    except (OSError, ValueError):
        return None, rec
    return (doc if isinstance(doc, dict) and doc.get("field_id") == fid else None), rec


def decide(planting: dict | None, emergence: dict | None, drought: dict | None) -> dict[str, str]:
    """The claim decision (codes in the module docstring) with its reason."""
    if not planting or not planting.get("pass"):
        why = (planting or {}).get("reason") or "planting output missing"
        return {"code": "not_assessable", "reason": f"no S2 planting date: {why}"}
    share = (emergence or {}).get("not_emerged_share")
    if share is None:
        why = (emergence or {}).get("reason") or "emergence output missing"
        return {"code": "not_assessable", "reason": f"no not-emerged share: {why}"}
    if share < 0.30:
        return {"code": "no_claim", "reason": f"{share:.0%} not emerged at DAP30 (< 30%)"}
    d = (drought or {}).get("D")
    if d is not None and (drought or {}).get("gate"):
        return {"code": "claim", "reason": f"{share:.0%} not emerged at DAP30 (>= 30%) and drought gate open (D {d:.2f} > 0.5)"}
    gate = "drought score unknown" if d is None else f"drought gate shut (D {d:.2f} <= 0.5)"
    return {"code": "claim_no_drought", "reason": f"{share:.0%} not emerged at DAP30 (>= 30%) but {gate}: refer for inspection"}


def assess_field(field: Any, ctx: dict[str, Path | None]) -> dict[str, Any]:
    """The assessment JSON of one field (schema ``SCHEMA``)."""
    docs, inputs, warnings = {}, {}, []
    for st in STAGES:
        docs[st], inputs[st] = _read(ctx.get(st), field.field_id)
        if docs[st] is None:
            warnings.append(f"{st}: output missing or unreadable ({inputs[st]['path'] or f'no {st} folder given'})")
    p, e, d = docs["planting"], docs["emergence"], docs["drought"]
    inputs["planting"].update({"planting_date": (p or {}).get("planting_date"), "greenup_date": (p or {}).get("greenup_date")})
    inputs["emergence"].update({"dap30_date": (e or {}).get("dap30_date"), "s2_dates": (e or {}).get("obs_dates") or []})
    inputs["drought"].update({"window_start": (d or {}).get("window_start")})
    for st, doc in docs.items():
        if doc and doc.get("reason") and st != "planting":
            warnings.append(f"{st}: {doc['reason']}")
        warnings.extend(f"{st}: {w}" for w in (doc or {}).get("warnings", []))
    if p and not p.get("pass"):
        warnings.append(f"planting: FAIL ({p.get('reason')})")
    lon, lat = field.centroid
    return {"schema": SCHEMA, "field_id": field.field_id, "year": field.year, "county": field.county,
            "centroid": [round(lon, 6), round(lat, 6)],
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "inputs": inputs,
            **{st: {k: (docs[st] or {}).get(k) for k in KEEP[st]} for st in STAGES},
            "decision": decide(p, e, d), "warnings": warnings}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="geohpc assess", description="one sure2.assessment/1 JSON per field")
    p.add_argument("--fields", required=True, help="fields GeoJSON (field_id, county, year)")
    p.add_argument("--item", default="shard_0000_of_0001", help="shard_IIII_of_NNNN: this task's fields[i::n]")
    p.add_argument("--planting", required=True, help="planting stage output folder")
    p.add_argument("--emergence", required=True, help="emergence stage output folder")
    p.add_argument("--drought", default="", help="drought stage output folder (without it no claim is confirmed)")
    p.add_argument("--out", required=True, help="folder for <field_id>.json")
    p.add_argument("--workers", type=int, default=1, help="processes (never threads)")
    a = p.parse_args(argv)
    from geohpc.sure2.batch import run_shard

    def _run() -> int:
        dirs = {"planting": Path(a.planting), "emergence": Path(a.emergence), "drought": Path(a.drought) if a.drought else None}
        for k, v in dirs.items():
            if v is not None and not v.is_dir():
                raise ConfigError(f"--{k} {v}: no such folder (run the {k} stage first)")
        run_shard("assess", a.fields, a.item, a.out, assess_field, lambda fields: dirs, a.workers,
                  lambda r: r["decision"]["code"])
        return 0

    return run_cli(_run, "geohpc assess")


if __name__ == "__main__":
    raise SystemExit(main())
