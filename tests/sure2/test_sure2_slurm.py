"""Sure2 on the local Slurm: the demo (pipelines/sure2.toml through the runner, S2 through the local S3 server,
weather from the local weather server) reaches collect; a planting batch killed midway
and resubmitted runs only the fields without output."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from geohpc.sure2.weather import normalise
from geohpc.synth.county import make_county
from geohpc.synth.s12 import endpoint_up

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "core"))
from helpers import RUNS_DIR, job_ids_from, make, wait_jobs  # noqa: E402

pytestmark = pytest.mark.slurm


def _valid(out: Path) -> set[str]:
    done = set()
    for p in out.glob("F*.json"):
        try:
            if json.loads(p.read_text()).get("field_id") == p.stem:
                done.add(p.stem)
        except ValueError:
            pass
    return done


@pytest.fixture
def s3_endpoint(monkeypatch):
    """moto's S3 server on a free loopback port, as the demo's GEOHPC_S3_ENDPOINT."""
    import socket

    from moto.server import ThreadedMotoServer

    with socket.socket() as sk:
        sk.bind(("127.0.0.1", 0))
        port = sk.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    monkeypatch.setenv("GEOHPC_S3_ENDPOINT", f"127.0.0.1:{port}")
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_S3_ENDPOINT"):
        monkeypatch.delenv(k, raising=False)
    assert endpoint_up(f"http://127.0.0.1:{port}")
    yield port
    server.stop()


@pytest.mark.s3
def test_demo_runs_pipelines_sure2_to_collect_through_the_runner(tmp_path, monkeypatch, s3_endpoint):
    from geohpc.core.piperun import PipelineRun
    from geohpc.synth.sure2_demo import CHAIN, run_demo

    monkeypatch.setenv("GEOHPC_RUNS_DIR", str(RUNS_DIR))
    res = run_demo(tmp_path / "demo", clusters=2, per=5, shards=2, s3="yes")
    collect = tmp_path / "demo" / "collect"
    assert Path(res["report"]) == collect / "report.html" and res["report"].endswith("report.html")
    assert (collect / "report.html").read_text().rstrip().endswith("</html>")
    assert (collect / "portfolio.parquet").stat().st_size > 0 and (collect / "portfolio.csv").is_file()
    s = res["summary"]
    assert s["fields"] == 20 and s["all"]["pass_rate_pct"] >= 80 and not s["identical_scores"]
    assert s["accuracy"]["planting"]["mae_days"] < 7 and s["accuracy"]["emergence"]["mae_pp"] < 5
    prun = PipelineRun(Path(res["run"]))
    assert prun.meta["pipeline"] == "sure2" and prun.states() == dict.fromkeys(CHAIN, "done")
    # the run's own stage runs, each planned by a planner job once the steps it reads were done
    after = {st["name"]: st["after"] for st in prun.meta["steps"]}
    assert after["drought"] == ["climatology", "planting"] and after["assess"] == ["emergence", "drought"]
    jobs = [ln.split() for ln in (prun.path / "jobs.txt").read_text().splitlines()]
    first = {st: min(i for i, j in enumerate(jobs) if j[1] == st) for st in CHAIN}
    last = {st: max(i for i, j in enumerate(jobs) if j[1] == st and j[2] == "array") for st in CHAIN}
    assert all([st, "array"] in [j[1:] for j in jobs] for st in CHAIN)
    # each step's jobs were sent only after every step it reads had sent its own (planned once they were done)
    for st in CHAIN[1:]:
        assert all(first[st] > last[up] for up in after[st]), (st, jobs)
    runs = {st: Path(prun.step(st)["run"]) for st in CHAIN}
    assert all((runs[st] / "pipeline.txt").read_text().strip() == str(prun.path) for st in CHAIN)
    stac = json.loads((tmp_path / "demo" / "county" / "stac" / "items_s3.json").read_text())
    assert stac["features"][0]["assets"]["red"]["href"].startswith("s3://geohpc-sure2/")
    logs = Path(__file__).resolve().parents[2] / "logs"
    job = {j[1]: j[0] for j in jobs if j[2] == "array"}
    log = (logs / f"planting_{job['planting']}_0.out").read_text()
    assert "items_s3.json" in log and " ok " in log
    weather = "".join(p.read_text() for p in logs.glob(f"weather_{job['weather']}_*.out"))
    assert weather.count("weather: fetched 4 ERA5-Land month(s)") == 5  # 5 years, from the local weather server


def test_killed_batch_resubmitted_runs_only_missing_fields(tmp_path):
    c = make_county(tmp_path / "county", clusters=6, fields_per_cluster=25, clim_years=(2021, 2022), seed=9)
    normalise(c.raw, c.root / "weather", [2021, 2022])
    out = tmp_path / "out"
    args = ("submit", "STAGE=planting", "SITE=local", f"FIELDS={c.fields}", f"STAC={c.stac}",
            f"WEATHER={c.root / 'weather'}", "SHARDS=1", "WORKERS=1", "CPUS=1", "MEM=2G", f"OUT_DIR={out}")
    proc = make(*args)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    job = job_ids_from(proc.stdout)[0]
    deadline = time.time() + 240
    while len(_valid(out)) < 20 and time.time() < deadline:
        time.sleep(0.1)
    subprocess.run(["scancel", job], check=True)
    wait_jobs([job], timeout=120)
    before = _valid(out)
    assert 20 <= len(before) < 300, len(before)  # killed midway
    again = make("resubmit", "STAGE=planting")
    assert again.returncode == 0 and job_ids_from(again.stdout), again.stderr + again.stdout
    wait_jobs(job_ids_from(again.stdout), timeout=300)
    assert len(_valid(out)) == 300
    summary = json.loads((out / "_tasks" / "shard_0000_of_0001.json").read_text())
    assert (summary["skipped"], summary["done"]) == (len(before), 300 - len(before)), summary
    log = (Path(__file__).resolve().parents[2] / "logs" / f"planting_{job_ids_from(again.stdout)[0]}_0.out").read_text()
    assert log.count(" ok ") == 300 - len(before) and "summary:" in log
