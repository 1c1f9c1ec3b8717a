"""The Sure2 portfolio report: map.png (fields coloured by decision), by_year.png, report.html embedding both."""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path
from typing import Any

from geohpc.util import atomic_path, write_text_atomic

COLOURS = {"claim": "#d7301f", "claim_no_drought": "#fc8d59", "no_claim": "#1a9850", "not_assessable": "#969696"}
_CSS = ("body{font-family:sans-serif;margin:2em;max-width:70em}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#eee}img{max-width:100%}")


def _plt():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    _plt().close(fig)


def plot_map(rows: list[dict[str, Any]], path: Path) -> None:
    """Field centroids, one panel a year, coloured by decision."""
    plt = _plt()
    years = sorted({r["year"] for r in rows})
    fig, axes = plt.subplots(1, len(years), figsize=(4.5 * len(years), 4.2), squeeze=False)
    for ax, y in zip(axes[0], years, strict=True):
        for code, col in COLOURS.items():
            sel = [r for r in rows if r["year"] == y and r["decision"] == code]
            if sel:
                ax.scatter([r["lon"] for r in sel], [r["lat"] for r in sel], s=14, marker="s", c=col,
                           label=f"{code} ({len(sel)})")
        ax.set_title(str(y))
        ax.set_xlabel("lon")
        ax.set_ylabel("lat")
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    _save(fig, path)


def plot_years(by_year: list[dict[str, Any]], path: Path) -> None:
    """Per-year PASS, claim and drought-gate rates, and mean D."""
    plt = _plt()
    ys = [r for r in by_year if r["year"] != "all"]
    x = list(range(len(ys)))
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    for k, (key, label) in enumerate((("pass_rate_pct", "S2 PASS"), ("claim_rate_pct", "claim (of PASS)"),
                                      ("drought_gate_rate_pct", "drought gate"))):
        a.bar([i + 0.27 * (k - 1) for i in x], [r[key] or 0 for r in ys], width=0.27, label=label)
    a.set_xticks(x, [str(r["year"]) for r in ys])
    a.set_ylabel("% of fields")
    a.legend(fontsize=8)
    b.bar(x, [r["mean_D"] or 0 for r in ys], color="#8c510a")
    b.axhline(0.5, color="k", ls="--", lw=1, label="gate D > 0.5")
    b.set_xticks(x, [str(r["year"]) for r in ys])
    b.set_ylabel("mean drought score D")
    b.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)


def _table(rows: list[dict[str, Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(k))}</th>" for k in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in r.values()) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return str(v)


def _img(path: Path) -> str:
    return f'<img alt="{path.name}" src="data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}">'


def write_report(out: Path, rows: list[dict[str, Any]], by_year: list[dict[str, Any]], by_county: list[dict[str, Any]],
                 acc: dict[str, Any] | None, guard: list[str]) -> Path:
    """Write map.png, by_year.png and report.html (last) into ``out``."""
    plot_map(rows, out / "map.png")
    plot_years(by_year, out / "by_year.png")
    parts = [f"<h1>Sure2 portfolio: {len(rows)} field-years</h1>",
             "<p>Decision: <b>claim</b> = at least 30% of the field not emerged 30 days after planting and drought "
             "gate open (D &gt; 0.5); <b>claim_no_drought</b> = eligible but gate shut or D unknown (inspect); "
             "<b>not_assessable</b> = no S2 planting date or no not-emerged share. Claim rate is of PASS fields, "
             "as sure2.md counts it.</p>",
             "<h2>By year</h2>", _table(by_year), _img(out / "by_year.png"),
             "<h2>Fields by decision</h2>", _img(out / "map.png"), "<h2>By county</h2>", _table(by_county)]
    if guard:
        parts.append(f"<h2>Warning</h2><p>Identical on every field of a year (sure2.md bug 8's symptom: a shared-data "
                     f"bug?): {html.escape(', '.join(guard))}</p>")
    if acc:
        flat = [{"measure": f"{grp}: {k}", "value": v} for grp, d in acc.items() for k, v in d.items()]
        parts += ["<h2>Measured against the truth</h2>", _table(flat)]
    page = (f"<!doctype html><html><head><meta charset=utf-8><title>Sure2 portfolio</title><style>{_CSS}</style>"
            f"</head><body>{''.join(parts)}</body></html>")
    write_text_atomic(out / "report.html", page)
    return out / "report.html"
