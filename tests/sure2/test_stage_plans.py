"""Plans of the Sure2 stages: weather (years, downloads -> refused without internet), climatology, drought, collect."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from geohpc.core.stages import StageContext, get_stage
from geohpc.errors import ConfigError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "core"))
from helpers import make  # noqa: E402


def _ctx(stage: str, tmp_path: Path, **params: str) -> StageContext:
    return StageContext(stage, {}, {"OUT_DIR": str(tmp_path / "out"), **params}, Path("."), tmp_path)


def test_weather_items_are_years_and_done_is_both_npz(tmp_path):
    st = get_stage("weather")
    ctx = _ctx("weather", tmp_path, YEARS="2018-2020,2022", FIELDS="f.geojson")
    assert st.build_manifest(ctx) == ["2018", "2019", "2020", "2022"] and st.downloads
    with pytest.raises(ConfigError, match="YEARS"):
        st.build_manifest(_ctx("weather", tmp_path, YEARS="18-20", FIELDS="f"))
    with pytest.raises(ConfigError, match="FIELDS"):
        st.build_manifest(_ctx("weather", tmp_path, YEARS="2020"))
    out = tmp_path / "out"
    out.mkdir()
    np.savez(out / "era5land_2018.npz", t2m=np.zeros(1), tp=np.zeros(1), swvl1=np.zeros(1))
    assert not st.done("2018", ctx)
    (out / "chirps_2018.npz").write_bytes(b"PK\x03\x04 torn")
    assert not st.done("2018", ctx)
    np.savez(out / "chirps_2018.npz", precip=np.zeros(1))
    assert st.done("2018", ctx)


def test_weather_is_refused_where_nodes_have_no_internet(tmp_path):
    fields = tmp_path / "f.geojson"
    fields.write_text(json.dumps({"features": []}))
    for site in ("saga", "betzy"):
        proc = make("submit", "STAGE=weather", f"SITE={site}", "DRY_RUN=1", "YEARS=2021", f"FIELDS={fields}")
        assert proc.returncode == 2 and "stage weather downloads" in proc.stderr, (site, proc.stderr)
    ok = make("submit", "STAGE=weather", "SITE=lumi", "DRY_RUN=1", "YEARS=2021", f"FIELDS={fields}")
    assert ok.returncode == 0 and "--download" not in ok.stderr, ok.stderr


def test_climatology_and_drought_plans(tmp_path):
    st = get_stage("climatology")
    ctx = _ctx("climatology", tmp_path, YEARS="2018-2022")
    assert st.build_manifest(ctx) == ["climatology"] and not st.done("climatology", ctx)
    fields = tmp_path / "f.geojson"
    fields.write_text(json.dumps({"features": [{"properties": {"field_id": f"F{i}"}} for i in range(3)]}))
    d = get_stage("drought")
    assert d.build_manifest(_ctx("drought", tmp_path, FIELDS=str(fields), SHARDS="8")) == [
        "shard_0000_of_0003", "shard_0001_of_0003", "shard_0002_of_0003"]
    assert get_stage("collect").build_manifest(_ctx("collect", tmp_path)) == ["portfolio"]
