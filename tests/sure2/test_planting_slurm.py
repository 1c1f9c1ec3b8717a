"""planting through make submit on the local Slurm: two shard tasks, every field done; a resubmit submits nothing."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from geohpc.core.stages import StageContext, get_stage
from geohpc.sure2.weather import normalise
from geohpc.synth.county import make_county

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "core"))
from helpers import job_ids_from, make, wait_jobs  # noqa: E402


def _county(tmp_path: Path):
    c = make_county(tmp_path / "county", clusters=2, fields_per_cluster=5, clim_years=(2021, 2022), seed=7)
    normalise(c.raw, c.root / "weather", [2021, 2022])
    return c


def test_plan_shards_and_done_check(tmp_path):
    c = _county(tmp_path)
    ctx = StageContext("planting", {}, {"FIELDS": str(c.fields), "STAC": str(c.stac), "WEATHER": "w",
                                        "SHARDS": "3", "OUT_DIR": str(tmp_path / "out")}, Path("."), tmp_path)
    st = get_stage("planting")
    items = st.build_manifest(ctx)
    assert items == ["shard_0000_of_0003", "shard_0001_of_0003", "shard_0002_of_0003"]
    assert not st.done(items[0], ctx)


@pytest.mark.slurm
def test_make_submit_planting_on_local_slurm(tmp_path):
    c = _county(tmp_path)
    out = tmp_path / "out"
    args = ("submit", "STAGE=planting", "SITE=local", f"FIELDS={c.fields}", f"STAC={c.stac}",
            f"WEATHER={c.root / 'weather'}", "SHARDS=2", f"OUT_DIR={out}")
    proc = make(*args)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    wait_jobs(job_ids_from(proc.stdout), timeout=240)
    ids = [f["properties"]["field_id"] for f in json.loads(c.fields.read_text())["features"]]
    assert sorted(p.stem for p in out.glob("F*.json")) == sorted(ids)
    assert {json.loads((out / "_tasks" / f"shard_000{i}_of_0002.json").read_text())["done"] for i in (0, 1)} == {10}
    again = make(*args)
    assert again.returncode == 0 and not job_ids_from(again.stdout), again.stdout
