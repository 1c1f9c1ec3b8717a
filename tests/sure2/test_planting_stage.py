"""The planting stage CLI: one shard with a process pool, resumable field by field, one-line errors."""

from __future__ import annotations

import json

import pytest
from geohpc.sure2.planting import main
from geohpc.sure2.weather import normalise
from geohpc.synth.county import make_county


@pytest.fixture(scope="module")
def county(tmp_path_factory):
    c = make_county(tmp_path_factory.mktemp("county"), clusters=2, fields_per_cluster=5, clim_years=(2021, 2022), seed=5)
    normalise(c.raw, c.root / "weather", [2021, 2022])
    return c


def _args(c, out, item="shard_0001_of_0002"):
    return ["--fields", str(c.fields), "--item", item, "--stac", str(c.stac), "--weather", str(c.root / "weather"),
            "--out", str(out), "--workers", "2"]


def test_shard_runs_its_fields_then_resumes_only_missing(county, tmp_path, capsys):
    out = tmp_path / "planting"
    assert main(_args(county, out)) == 0
    ids = [f["properties"]["field_id"] for f in json.loads(county.fields.read_text())["features"]][1::2]
    assert sorted(p.stem for p in out.glob("*.json")) == sorted(ids)
    doc = json.loads((out / f"{ids[0]}.json").read_text())
    assert doc["field_id"] == ids[0] and "GDD" in doc["method"] and isinstance(doc["pass"], bool)
    err = capsys.readouterr().err
    assert sum(f" {i} ok " in err for i in ids) == len(ids) and "summary:" in err
    (out / f"{ids[2]}.json").write_text("{torn")  # a killed write: not done
    (out / f"{ids[3]}.json").unlink()
    assert main(_args(county, out)) == 0
    summary = json.loads((out / "_tasks" / "shard_0001_of_0002.json").read_text())
    assert (summary["done"], summary["skipped"]) == (2, len(ids) - 2)
    assert json.loads((out / f"{ids[2]}.json").read_text())["field_id"] == ids[2]


def test_bad_item_is_one_line_exit_2(county, tmp_path, capsys):
    assert main(_args(county, tmp_path / "p", item="shard_5_of_2")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "shard_IIII_of_NNNN" in err[0]
