"""The prep/fit/predict stage plans: manifests, outputs, and agreement with the modules' own naming."""

from __future__ import annotations

from pathlib import Path

import pytest
from geohpc.core.stages import StageContext, get_stage
from geohpc.errors import ConfigError
from geohpc.segment.predict import output_name, parse_item


def _ctx(stage: str, tmp_path: Path, **params: str) -> StageContext:
    return StageContext(stage=stage, site={}, params=params, repo=Path("."), work=tmp_path)


def test_prep_plan(tmp_path: Path) -> None:
    st = get_stage("prep")
    with pytest.raises(ConfigError, match="LABELS"):
        st.build_manifest(_ctx("prep", tmp_path, EMBEDDINGS="a.tif"))
    ctx = _ctx("prep", tmp_path, EMBEDDINGS="a.tif", LABELS="l.tif", CLASSES="1")
    assert st.build_manifest(ctx) == ["prep"]
    assert st.output_for("prep", ctx) == tmp_path / "outputs" / "prep" / "meta.json"
    assert not st.done("prep", ctx)


def test_fit_plan(tmp_path: Path) -> None:
    st = get_stage("fit")
    assert st.gpu and st.runtime == "container" and st.after == ("prep",)
    ctx = _ctx("fit", tmp_path, RUN="exp-1")
    assert st.build_manifest(ctx) == ["exp-1"]
    assert st.output_for("exp-1", ctx) == tmp_path / "outputs" / "fit" / "exp-1" / "model.pt"
    with pytest.raises(ConfigError, match="RUN"):
        st.build_manifest(_ctx("fit", tmp_path, RUN="a b"))


def test_predict_plan_matches_module_naming(tmp_path: Path) -> None:
    for name in ("a.tif", "b.tif"):
        (tmp_path / name).write_bytes(b"")
    st = get_stage("predict")
    ctx = _ctx("predict", tmp_path, EMBEDDINGS="*.tif", SHARDS="2")
    items = st.build_manifest(ctx)
    assert items == [f"{tmp_path}/a.tif::0/2", f"{tmp_path}/a.tif::1/2", f"{tmp_path}/b.tif::0/2", f"{tmp_path}/b.tif::1/2"]
    for item in items + [f"{tmp_path}/a.tif"]:
        raster, i, n = parse_item(item)
        assert st.output_for(item, ctx).name == output_name(raster, i, n)
    with pytest.raises(ConfigError, match="SHARDS"):
        st.build_manifest(_ctx("predict", tmp_path, EMBEDDINGS="*.tif", SHARDS="0"))
    with pytest.raises(ConfigError, match="matches no file"):
        st.build_manifest(_ctx("predict", tmp_path, EMBEDDINGS="*.nope"))
