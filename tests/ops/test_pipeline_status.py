"""make status PIPELINE=, the pipeline report and the billing rule, on a pipeline run folder written by hand
in the run record's format (ARCHITECTURE.md) around real stage runs of the local executor."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "core"))
from geohpc.core import billing  # noqa: E402
from geohpc.core.jobspec import Resources  # noqa: E402
from geohpc.core.site import load_site  # noqa: E402
from geohpc.ops.pipeline_report import write_report  # noqa: E402
from helpers import REPO, RUNS_DIR, make  # noqa: E402  (the core tests' make helper)


def _stage_run(tmp_path: Path, name: str, items: list[str], *extra: str) -> Path:
    out = tmp_path / name
    listing = tmp_path / f"{name}.txt"
    listing.write_text("\n".join(items) + "\n")
    proc = make("submit", "STAGE=noop", "SITE=local", "EXECUTOR=local", "FORCE=1", f"ITEMS={listing}",
                f"OUT_DIR={out}", *extra)
    assert proc.returncode == 0, proc.stderr
    line = next(x for x in proc.stdout.splitlines() if x.startswith("recorded in "))
    return Path(line.split("recorded in ", 1)[1].strip())


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("pipe")
    first = _stage_run(tmp, "first", ["ok-1", "fail-2"])
    second = _stage_run(tmp, "second", ["ok-3", "ok-4", "fail-5"], "PACK=3", "WORKERS=2")
    (tmp / "first" / "report").mkdir()
    (tmp / "first" / "report" / "report.html").write_text("<html></html>")
    (tmp / "first" / "map.tif").write_bytes(b"II*\x00")
    run_dir = RUNS_DIR / "handpipe" / "20261207-120000"
    (run_dir / "steps").mkdir(parents=True)
    steps = [{"name": "first", "stage": "noop", "after": [], "retries": 1, "pack": 0, "workers": 0},
             {"name": "second", "stage": "noop", "after": ["first"], "retries": 2, "pack": 3, "workers": 2},
             {"name": "third", "stage": "noop", "after": ["second"], "retries": 0, "pack": 0, "workers": 0},
             {"name": "purged", "stage": "noop", "after": [], "retries": 0, "pack": 0, "workers": 0}]
    (run_dir / "pipeline.json").write_text(json.dumps({
        "schema": "geohpc.pipeline-run/1", "pipeline": "handpipe", "site": "local", "started": "2026-12-07T12:00:00",
        "file": "pipelines/handpipe.toml", "params": {}, "steps": steps}))
    records = {"first": ("failed", first, 1, 1), "second": ("running", second, 1, 3),
               "purged": ("done", tmp / "gone" / "20261201-000000", 1, 1)}  # its stage run purged since
    for name, (state, run, sent, total) in records.items():
        (run_dir / "steps" / f"{name}.json").write_text(json.dumps({
            "step": name, "stage": "noop", "state": state, "run": str(run), "items": 3, "waves_sent": sent,
            "waves_total": total, "updated": "2026-12-07T12:01:00", "message": ""}))
    decisions = [
        {"time": "2026-12-07T12:02:00", "step": "second", "line": 2, "item": "fail-5", "attempt": 1,
         "state": "OUT_OF_MEMORY", "measured": {"max_rss": 300 << 20, "elapsed_s": 3, "req_mem": 256 << 20},
         "action": "retry", "new": {"mem": "600M"}, "why": "OUT_OF_MEMORY at 300M: 2x the measured MaxRSS"},
        {"time": "2026-12-07T12:03:00", "step": "first", "line": 1, "item": "fail-2", "attempt": 2,
         "state": "FAILED", "measured": {}, "action": "give-up", "new": {}, "why": "RETRIES=1 spent; exit 3"},
    ]
    (run_dir / "decisions.jsonl").write_text("".join(json.dumps(d) + "\n" for d in decisions) + '{"torn": ')
    return run_dir


def test_make_status_pipeline_shows_steps_waves_retries_efficiency_and_cost(pipeline_run: Path) -> None:
    proc = make("status", "PIPELINE=handpipe")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "pipeline handpipe  20261207-120000  site=local" in out
    assert "first (noop): failed  waves 1/1 sent" in out and "second (noop): running  waves 1/3 sent, 2 left" in out
    assert "third (noop): waiting" in out
    assert "purged (noop): done" in out and "gone/20261201-000000: no plan.json here" in out
    assert "1/2" in out and "2/3" in out and "(packed)" in out and "failed=1" in out, out
    assert "decisions: 1 (retry 1)" in out and "fail-5 (attempt 1, OUT_OF_MEMORY) -> retry mem=600M" in out
    assert "decisions: 1 (give-up 1)" in out and "RETRIES=1 spent" in out
    assert out.count("cpu efficiency ") == 2 and "cpu efficiency n/a" not in out and "MaxRSS " in out
    assert "cpu-hours spent" in out and "allocation unknown here" in out  # the local site has no billing rule
    same = make("status", "PIPELINE=handpipe", "RUN=20261207-120000")
    assert same.stdout == out
    for bad in ("PIPELINE=nope", "PIPELINE=x;ls"):
        proc = make("status", bad)
        assert proc.returncode == 2 and proc.stderr.startswith("geohpc.status: error: "), proc.stderr
        assert "Traceback" not in proc.stderr
    missing = make("status", "PIPELINE=handpipe", "RUN=19990101-000000")
    assert missing.returncode == 2 and "no pipeline.json" in missing.stderr


def test_report_has_timelines_failures_cost_and_product_links(pipeline_run: Path) -> None:
    report = write_report(pipeline_run)
    assert report == pipeline_run / "report.html"
    text = report.read_text()
    for png in ("timeline.png", "timeline-first.png", "timeline-second.png"):
        assert (pipeline_run / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
        assert f'src="{png}"' in text
    assert "2x the measured MaxRSS" in text and "RETRIES=1 spent" in text  # failures and their fixes
    assert "still failing: 1 item(s)" in text and "fail-2" in text and "fails on purpose" in text
    assert "spent" in text and "cost" in text
    links = [h.split('"')[0] for h in text.split('href="')[1:]]
    assert any(h.endswith("first/report/report.html") for h in links) and any(h.endswith("map.tif") for h in links)
    for h in links:  # relative, and they resolve from the report's folder
        assert not h.startswith("/") and (pipeline_run / h).is_file(), h
    cli = subprocess.run([sys.executable, "-m", "geohpc", "pipeline-report", "--run", str(pipeline_run)],
                         capture_output=True, text=True, cwd=REPO, env={"PYTHONPATH": str(REPO / "py"), "PATH": "/usr/bin:/bin"})
    assert cli.returncode == 0 and cli.stdout.strip() == str(report), cli.stderr
    bad = subprocess.run([sys.executable, "-m", "geohpc", "pipeline-report", "--run", str(pipeline_run / "steps")],
                         capture_output=True, text=True, cwd=REPO, env={"PYTHONPATH": str(REPO / "py"), "PATH": "/usr/bin:/bin"})
    assert bad.returncode == 2 and "no pipeline.json" in bad.stderr


def test_billing_rules_from_the_guide() -> None:
    lumi, saga, betzy = (load_site(s, cli={}, env={}).values for s in ("lumi", "saga", "betzy"))
    # LUMI: GCDs x wall hours on -g partitions (emb-lumi.md: 1 wall-hour of 8 GCDs = 8 GPU-hours)
    assert billing.estimate(lumi, Resources(gpus=8, partition="small-g", cpus=56), 1, 3600) == (8.0, "gpu-hours")
    assert billing.estimate(lumi, Resources(gpus=2, partition="small-g"), 3, 1800) == (3.0, "gpu-hours")
    # standard-g is billed whole: every GCD of the node
    assert billing.estimate(lumi, Resources(gpus=2, partition="standard-g"), 1, 3600) == (8.0, "gpu-hours")
    assert billing.estimate(lumi, Resources(cpus=4, partition="small"), 2, 1800) == (4.0, "cpu-hours")
    assert billing.allocation(lumi) == (100000.0, "gpu-hours") and billing.allocation(saga) is None
    # NRIS: billing hours; a whole-node partition bills every core of the node
    assert billing.estimate(saga, Resources(cpus=4, partition="normal"), 1, 3600) == (4.0, "billing-hours")
    assert billing.estimate(betzy, Resources(cpus=1, partition="normal", nodes=4), 1, 3600) == (512.0, "billing-hours")
    used = billing.spent(lumi, Resources(gpus=8, partition="small-g"), [1800, 1800])
    assert "8.00 gpu-hours spent; 8.00 of 100,000 gpu-hours allocated" in billing.against_allocation(lumi, used)


def test_make_logs_of_an_unpacked_run(pipeline_run: Path) -> None:
    first = Path(json.loads((pipeline_run / "steps" / "first.json").read_text())["run"])
    proc = make("logs", "STAGE=noop", f"RUN={first.name}", "TAIL=3")
    assert proc.returncode == 0, proc.stderr
    assert "1 failed item(s)" in proc.stdout and "== fail-2 (line 2, failed, exit 3:0" in proc.stdout, proc.stdout
    log = next(x for x in proc.stdout.splitlines() if x.strip().startswith("log ")).split("log ", 1)[1]
    assert Path(log).is_file() and "_1.out" in log  # the array task's own log (logs/noop_<job>_1.out)
    assert "   | noop: fail-2 fails on purpose" in proc.stdout
    assert len([x for x in proc.stdout.splitlines() if x.startswith("   | ")]) <= 3
    assert make("logs", "STAGE=noop", f"RUN={first.name}", "TAIL=x").returncode == 2
