"""A pipeline run's ``report.html``: a timeline per stage, failures and their fixes, cost, links to the products.

``write_report(run_dir)`` (the pipeline's last planner calls it; ``python -m geohpc pipeline-report --run
<dir>`` by hand) reads the run record (ARCHITECTURE.md, "Pipelines: the run record") and each step's stage
run: tasks are bars from sacct Start/End (or the local executor's records), a packed run's items from their
item records. Writes ``timeline.png`` (every step), ``timeline-<step>.png`` and ``report.html`` beside
pipeline.json, each through a temporary and a rename. Links to the products (reports, COGs, viewers) found
under the steps' OUT_DIRs are relative, so the folder can be fetched and opened anywhere.
"""

from __future__ import annotations

import argparse
import html
import os
import sys
from pathlib import Path

from geohpc.core import billing
from geohpc.errors import ConfigError, run_cli
from geohpc.ops.logs import BAD, log_path, tail
from geohpc.ops.pipeline_status import (
    PipelineRun,
    Step,
    cpu_efficiency,
    gather,
    load_pipeline,
    memory_line,
    run_resources,
    site_values,
    step_spent,
)
from geohpc.util import atomic_path, write_text_atomic

COLOURS = {"COMPLETED": "#2e7d32", "FAILED": "#c62828", "OUT_OF_MEMORY": "#ef6c00", "TIMEOUT": "#6a1b9a",
           "CANCELLED": "#757575", "RUNNING": "#1565c0"}
PRODUCTS = (("report", ("report.html",)), ("viewer", ("index.html",)), ("COG", (".tif",)))
MAX_LINKS = 30
MAX_FAILED = 50


def bars(step: Step) -> list[tuple[str, float, float, str]]:
    """(row label, start, end, state) per task (or per item of a packed run), epoch seconds."""
    status = step.status
    if status is None:
        return []
    out = []
    if status.packed:
        for key, per in status.records.items():
            for rec in per.values():
                if rec.get("state") != "DONE_BEFORE" and rec.get("start") and rec.get("end"):
                    out.append((key, float(rec["start"]), float(rec["end"]), str(rec.get("state"))))
    else:
        for key, t in status.tasks.items():
            if t.start:
                out.append((key, t.start, t.end or t.start, "RUNNING" if not t.end else t.state.split()[0]))
    return sorted(out, key=lambda b: b[1])


def draw(rows: list[tuple[str, list[tuple[str, float, float, str]]]], t0: float, path: Path, title: str) -> None:
    """One horizontal bar chart: a row per (label, bars); colours by state."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    n = max(len(rows), 1)
    fig, ax = plt.subplots(figsize=(10, min(2 + 0.25 * n, 14)))
    for y, (_, bs) in enumerate(rows):
        by_state: dict[str, list[tuple[float, float]]] = {}
        for _, s, e, state in bs:
            by_state.setdefault(state, []).append((s - t0, max(e - s, 0.5)))
        for state, spans in by_state.items():
            ax.broken_barh(spans, (y - 0.4, 0.8), facecolors=COLOURS.get(state, "#9e9e9e"))
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([label for label, _ in rows] if len(rows) <= 60 else [""] * len(rows), fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("seconds since the first task started")
    ax.set_title(title)
    seen = {state for _, bs in rows for _, _, _, state in bs}
    ax.legend(handles=[Patch(color=COLOURS.get(s, "#9e9e9e"), label=s) for s in sorted(seen)], fontsize=7,
              loc="lower right")
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)


def timelines(pipe: PipelineRun) -> dict[str, str]:
    """Draw timeline.png and one timeline-<step>.png per step with bars; {step: png name} ("" = overall)."""
    per_step = {s.name: bars(s) for s in pipe.steps}
    starts = [b[1] for bs in per_step.values() for b in bs]
    if not starts:
        return {}
    t0 = min(starts)
    names: dict[str, str] = {}
    draw([(name, bs) for name, bs in per_step.items()], t0, pipe.path / "timeline.png", f"pipeline {pipe.name}")
    names[""] = "timeline.png"
    for name, bs in per_step.items():
        if not bs:
            continue
        rows: dict[str, list] = {}
        for b in bs:
            rows.setdefault(b[0], []).append(b)
        png = f"timeline-{name}.png"
        draw(list(rows.items()), t0, pipe.path / png, f"{name}: {len(bs)} {'items' if len(rows) < len(bs) else 'tasks'}")
        names[name] = png
    return names


def products(step: Step, base: Path) -> list[tuple[str, str]]:
    """(kind, relative link) of the reports, viewers and COGs under the step's OUT_DIR."""
    if step.run is None:
        return []
    try:
        out_dir = Path(step.run.job_env().get("GEOHPC_OUT", ""))
    except OSError:
        return []
    if not out_dir.is_dir():
        return []
    found: list[tuple[str, str]] = []
    for root, _, files in os.walk(out_dir):
        for f in sorted(files):
            for kind, ends in PRODUCTS:
                if f in ends or (kind == "COG" and f.endswith(ends)):
                    found.append((kind, os.path.relpath(Path(root) / f, base)))
        if len(found) > 3 * MAX_LINKS:
            break
    order = {k: i for i, (k, _) in enumerate(PRODUCTS)}
    return sorted(found, key=lambda kf: (order[kf[0]], kf[1]))[:MAX_LINKS]


def _e(value: object) -> str:
    return html.escape(str(value))


def render_html(pipe: PipelineRun, pngs: dict[str, str]) -> str:
    """The report's HTML (standalone: PNGs beside it, no scripts)."""
    site = site_values(pipe)
    total = billing.Spent({})
    rows, sections = [], []
    for step in pipe.steps:
        st = step.status
        counts = st.counts() if st else {}
        spent = step_spent(site, step, total)
        eff = cpu_efficiency(st) if st else None
        mem = memory_line(st, run_resources(step.run)) if st and step.run else ""
        done = counts.get("completed", 0) if st else 0
        n = len(st.states) if st else step.record.get("items", "")
        rows.append(f"<tr><td>{_e(step.name)}</td><td>{_e(step.stage)}</td><td>{_e(step.record.get('state', '?'))}</td>"
                    f"<td>{done}/{_e(n)}</td><td>{_e(', '.join(f'{k} {v}' for k, v in sorted(counts.items())))}</td>"
                    f"<td>{f'{eff:.0%}' if eff is not None else 'n/a'}</td><td>{_e(mem)}</td><td>{_e(spent.text())}</td></tr>")
        parts = [f"<h2>{_e(step.name)} <small>({_e(step.stage)})</small></h2>"]
        if step.problem:
            parts.append(f"<p class=bad>{_e(step.problem)}</p>")
        if step.name in pngs:
            parts.append(f'<img src="{_e(pngs[step.name])}" alt="timeline of {_e(step.name)}">')
        if st and step.run:
            bad = st.lines_in(*BAD)
            items = step.run.items()
            if bad:
                parts.append(f"<h3>still failing: {len(bad)} item(s)</h3><ul>")
                for line in bad[:MAX_FAILED]:
                    path = log_path(st, line, Path(step.run.job_env().get("GEOHPC_REPO", ".")))
                    last = tail(path, 5) if path and path.is_file() else []
                    parts.append(f"<li><b>{_e(items[line])}</b> {_e(st.states[line])}, log <code>{_e(path)}</code>"
                                 + (f"<pre>{_e(chr(10).join(last))}</pre>" if last else "") + "</li>")
                parts.append("</ul>")
        links = products(step, pipe.path)
        if links:
            parts.append("<h3>products</h3><ul>" + "".join(f'<li>{_e(k)}: <a href="{_e(h)}">{_e(h)}</a></li>'
                                                           for k, h in links) + "</ul>")
        sections.append("\n".join(parts))
    decisions = "".join(
        f"<tr><td>{_e(d.get('time', ''))}</td><td>{_e(d.get('step', ''))}</td><td>{_e(d.get('item', ''))}</td>"
        f"<td>{_e(d.get('attempt', ''))}</td><td>{_e(d.get('state', ''))}</td><td>{_e(d.get('measured', ''))}</td>"
        f"<td>{_e(d.get('action', ''))}</td><td>{_e(d.get('new', ''))}</td><td>{_e(d.get('why', ''))}</td></tr>"
        for d in pipe.decisions)
    overall = f'<img src="{pngs[""]}" alt="timeline">' if "" in pngs else "<p>no task has started yet</p>"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>pipeline {_e(pipe.name)} {_e(pipe.path.name)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 6px;font-size:90%;vertical-align:top}}img{{max-width:100%}}
.bad{{color:#c62828}}pre{{background:#f4f4f4;padding:4px;font-size:80%}}</style></head><body>
<h1>pipeline {_e(pipe.name)}</h1>
<p>run {_e(pipe.path.name)} on site {_e(pipe.meta.get('site', '?'))}, started {_e(pipe.meta.get('started', '?'))}
{'<b class=bad>cancelled</b>' if (pipe.path / 'cancelled').exists() else ''}</p>
<h2>cost</h2><p>{_e(billing.against_allocation(site, total))} (billing rule: {_e(billing.rule(site) or 'none')})</p>
<h2>steps</h2><table><tr><th>step</th><th>stage</th><th>state</th><th>done</th><th>items by state</th>
<th>cpu efficiency</th><th>memory</th><th>spent</th></tr>{''.join(rows)}</table>
<h2>timeline</h2>{overall}
<h2>failures and their fixes</h2>
{'<table><tr><th>time</th><th>step</th><th>item</th><th>attempt</th><th>state</th><th>measured</th><th>action</th>'
 '<th>new</th><th>why</th></tr>' + decisions + '</table>' if decisions else '<p>no retries were needed</p>'}
{''.join(sections)}
</body></html>
"""


def write_report(run_dir: Path) -> Path:
    """Write ``report.html`` (+ timeline PNGs) for the pipeline run folder ``run_dir``; its path."""
    run_dir = Path(run_dir)
    pipe = load_pipeline(run_dir)
    gather(pipe)
    pngs = timelines(pipe)
    target = run_dir / "report.html"
    write_text_atomic(target, render_html(pipe, pngs))
    return target


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m geohpc pipeline-report --run runs/<pipeline>/<ts>``."""
    ap = argparse.ArgumentParser(prog="python -m geohpc pipeline-report", description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, type=Path, help="the pipeline run folder (holding pipeline.json)")
    args = ap.parse_args(argv)

    def work() -> int:
        if not (args.run / "pipeline.json").is_file():
            raise ConfigError(f"{args.run}: no pipeline.json here (give a runs/<pipeline>/<ts> folder)")
        print(write_report(args.run))
        return 0

    return run_cli(work, "geohpc.pipeline-report")


if __name__ == "__main__":
    sys.exit(main())
