"""Collect: the portfolio of assessments -> Parquet + CSV, summaries by year and county, an HTML report.

Reads every ``<field_id>.json`` of the assess folder (schema ``sure2.assessment/1``; another schema, a torn
file or a field id that is not the file's name is refused with a one-line error naming the file). The
summaries are those of sure2.md's results: fields, S2 planting PASS rate, claim rate (>= 30% not emerged,
of PASS fields, as sure2.md counts it), drought-gate rate (of fields with a score), mean D, and the
``claim`` decisions (eligible and gate open). ``report.html`` embeds a map of the fields coloured by
decision and the per-year charts (PNGs beside it); with ``--truth`` it adds the errors against it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from geohpc.errors import InputError, run_cli
from geohpc.sure2.assess import DECISIONS, SCHEMA
from geohpc.util import atomic_path, write_json_atomic

COLUMNS = ("field_id", "year", "county", "lon", "lat", "planting_pass", "planting_reason", "planting_date",
           "not_emerged_share", "claim_eligible", "D", "drought_gate", "soil_moisture_anomaly", "rain_deficit",
           "sources_missing", "decision", "decision_reason", "n_warnings")


def read_assessments(folder: str | Path) -> list[dict[str, Any]]:
    """Every assessment of ``folder`` as a portfolio row, sorted by year and field id."""
    rows = []
    for p in sorted(Path(folder).glob("*.json")):
        try:
            doc = json.loads(p.read_text())
        except (OSError, ValueError) as exc:
            raise InputError(f"{p}: not a readable assessment JSON ({exc}); rerun the assess stage for it") from exc
        if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
            got = doc.get("schema") if isinstance(doc, dict) else type(doc).__name__
            raise InputError(f"{p}: schema {got!r}, expected {SCHEMA!r} (an assessment of another version?)")
        if doc.get("field_id") != p.stem:
            raise InputError(f"{p}: holds field {doc.get('field_id')!r}, not {p.stem!r}")
        pl, em, dr = doc["planting"], doc["emergence"], doc["drought"]
        rows.append({"field_id": doc["field_id"], "year": int(doc["year"]), "county": doc.get("county", ""),
                     "lon": doc["centroid"][0], "lat": doc["centroid"][1], "planting_pass": bool(pl.get("pass")),
                     "planting_reason": pl.get("reason") or "", "planting_date": pl.get("planting_date"),
                     "not_emerged_share": _num(em.get("not_emerged_share")), "claim_eligible": bool(em.get("claim_eligible")),
                     "D": _num(dr.get("D")), "drought_gate": bool(dr.get("gate")),
                     "soil_moisture_anomaly": _num(dr.get("soil_moisture_anomaly")), "rain_deficit": _num(dr.get("rain_deficit")),
                     "sources_missing": ",".join(dr.get("sources_missing") or []), "decision": doc["decision"]["code"],
                     "decision_reason": doc["decision"]["reason"], "n_warnings": len(doc.get("warnings", []))})
    if not rows:
        raise InputError(f"{folder}: no assessment JSON (run the assess stage first)")
    return sorted(rows, key=lambda r: (r["year"], r["field_id"]))


def _num(v: Any) -> float:
    return float("nan") if v is None else float(v)


def summarise(rows: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """One summary row per value of ``key`` (year or county) plus an ``all`` row; rates in percent."""
    import math

    out = []
    groups = sorted({r[key] for r in rows}) + ["all"]
    for g in groups:
        sel = rows if g == "all" else [r for r in rows if r[key] == g]
        passed = [r for r in sel if r["planting_pass"]]
        scored = [r for r in sel if not math.isnan(r["D"])]
        judged = [r for r in passed if not math.isnan(r["not_emerged_share"])]
        pct = lambda a, b: round(100 * len(a) / len(b), 1) if b else None  # noqa: E731
        out.append({key: g, "fields": len(sel), "pass_rate_pct": pct(passed, sel),
                    "claim_rate_pct": pct([r for r in judged if r["claim_eligible"]], judged),
                    "drought_gate_rate_pct": pct([r for r in scored if r["drought_gate"]], scored),
                    "mean_D": round(sum(r["D"] for r in scored) / len(scored), 3) if scored else None,
                    **{f"n_{d}": sum(r["decision"] == d for r in sel) for d in DECISIONS}})
    return out


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    import csv

    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def collect(assess_dir: str | Path, out: str | Path, truth: str | Path | None = None) -> dict[str, Any]:
    """Write the portfolio, the summaries and the report into ``out``; return the paths and the totals."""
    import pandas as pd

    from geohpc.sure2.accuracy import accuracy, identical_scores, read_truth
    from geohpc.sure2.report import write_report

    out = Path(out)
    rows = read_assessments(assess_dir)
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    with atomic_path(out / "portfolio.parquet") as tmp:
        df.to_parquet(tmp, index=False)
    _write_csv(out / "portfolio.csv", rows)
    by_year, by_county = summarise(rows, "year"), summarise(rows, "county")
    _write_csv(out / "summary_by_year.csv", by_year)
    _write_csv(out / "summary_by_county.csv", by_county)
    acc = accuracy(rows, read_truth(truth)) if truth else None
    guard = identical_scores(rows)
    result = {"fields": len(rows), "all": by_year[-1], "identical_scores": guard, "accuracy": acc,
              "portfolio": str(out / "portfolio.parquet"), "report": str(out / "report.html")}
    write_json_atomic(out / "summary.json", result)
    write_report(out, rows, by_year, by_county, acc, guard)  # last: the report's presence means collect finished
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="geohpc collect", description="Sure2 portfolio, summaries and report")
    p.add_argument("--assess", required=True, help="assess stage output folder")
    p.add_argument("--out", required=True, help="folder for portfolio.parquet/.csv, summaries and report.html")
    p.add_argument("--truth", default="", help="truth.csv of a synthetic county: adds the errors to the report")
    a = p.parse_args(argv)

    def _run() -> int:
        res = collect(a.assess, a.out, a.truth or None)
        s = res["all"]
        print(f"collect: {res['fields']} fields, PASS {s['pass_rate_pct']}%, claims {s['claim_rate_pct']}%, drought gate "
              f"{s['drought_gate_rate_pct']}%, mean D {s['mean_D']}; report: {res['report']}", file=sys.stderr)
        if res["identical_scores"]:
            print(f"collect: WARNING identical on every field (sure2.md bug 8?): {', '.join(res['identical_scores'])}",
                  file=sys.stderr)
        print(json.dumps({"report": res["report"], "fields": res["fields"]}))
        return 0

    return run_cli(_run, "geohpc collect")


if __name__ == "__main__":
    raise SystemExit(main())
