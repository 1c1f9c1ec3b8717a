"""classify + validate: shards on one grid, colour table, resume, compatibility errors, metrics, HTML report."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import rasterio
from cls_fixtures import model_dir, samples, scene  # noqa: F401
from geohpc.classify import classify as classify_mod
from geohpc.classify import validate as validate_mod
from geohpc.classify.classify import classify
from geohpc.classify.metrics import confusion, summarise
from geohpc.classify.validate import validate
from testutil import write_raster


def _item(scene, i, n):  # noqa: F811
    return f"{scene['embedding']}::{i}/{n}"


def test_shards_share_the_grid_and_match_one_piece(scene, model_dir, tmp_path):  # noqa: F811
    whole = classify(model_dir, _item(scene, 0, 1), tmp_path / "one", confidence=True)
    parts = [classify(model_dir, _item(scene, i, 2), tmp_path / "two") for i in range(2)]
    with rasterio.open(whole["out"]) as ds:
        full = ds.read(1)
        assert ds.dtypes == ("uint8", "uint8") and ds.nodata == 0 and ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert ds.colormap(1)[1][:3] != (0, 0, 0) and json.loads(ds.tags()["GEOHPC_CLASSES"])["1"] == "barley"
        conf = ds.read(2)
        assert conf.min() >= 1 and conf.max() <= 100
    vrt = tmp_path / "mosaic.vrt"
    subprocess.run(["gdalbuildvrt", "-q", str(vrt), *[p["out"] for p in parts]], check=True)
    with rasterio.open(vrt) as ds:
        np.testing.assert_array_equal(ds.read(1), full)
    assert (full > 0).all()


def test_existing_shard_is_skipped(scene, model_dir, tmp_path):  # noqa: F811
    first = classify(model_dir, _item(scene, 1, 2), tmp_path)
    mtime = Path(first["out"]).stat().st_mtime_ns
    again = classify(model_dir, _item(scene, 1, 2), tmp_path)
    assert again["skipped"] and Path(first["out"]).stat().st_mtime_ns == mtime


def test_shard_beyond_the_block_rows_leaves_an_empty_marker(scene, model_dir, tmp_path):  # noqa: F811
    res = classify(model_dir, _item(scene, 2, 3), tmp_path)  # 2 block rows, 3 shards: one is empty
    assert res.get("empty") or Path(res["out"]).exists()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names in (["embedding_shard002of003.empty"], ["embedding_shard002of003.tif"])


@pytest.mark.parametrize("case, message", [
    ("fewer_bands", "8 bands but the model was trained on 16"),
    ("other_crs", "differs from the training data"),
])
def test_incompatible_raster_exit_2_nothing_written(model_dir, tmp_path, capsys, case, message):  # noqa: F811
    bands, crs = (8, "EPSG:32635") if case == "fewer_bands" else (16, "EPSG:32634")
    tif = write_raster(tmp_path / "in" / "x.tif", np.ones((bands, 32, 32), np.float32), crs=crs)
    out = tmp_path / "out"
    rc = classify_mod.main(["--model", str(model_dir), "--item", f"{tif}::0/1", "--out-dir", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and message in err[0], err
    assert not out.exists() or not any(out.iterdir())


def test_metrics_against_hand_computed_values():
    cm = confusion(np.array([0, 0, 0, 1, 1, 2]), np.array([0, 0, 1, 1, 1, 0]), 3)
    assert cm.tolist() == [[2, 1, 0], [0, 2, 0], [1, 0, 0]]
    s = summarise(cm, ["a", "b", "c"])
    assert s["overall_accuracy"] == pytest.approx(4 / 6)
    pe = (3 * 3 + 2 * 3 + 1 * 0) / 36
    assert s["kappa"] == pytest.approx((4 / 6 - pe) / (1 - pe))
    assert s["per_class"]["a"] == pytest.approx({"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "support": 3})
    assert s["per_class"]["c"]["f1"] == 0.0


def test_validate_points_and_truth_report(scene, model_dir, tmp_path):  # noqa: F811
    for i in range(2):
        classify(model_dir, _item(scene, i, 2), tmp_path / "map")
    res = validate(str(tmp_path / "map"), tmp_path / "val", points=Path(scene["val_points"]), truth=Path(scene["truth"]))
    assert res["points"]["n"] == 150 and res["points"]["unmapped_points"] == 0
    assert res["truth"]["n"] == 128 * 128
    assert sum(res["area_ha"].values()) == pytest.approx(128 * 128 * 100 / 1e4)
    page = (tmp_path / "val" / "report.html").read_text()
    assert f"{res['points']['overall_accuracy']:.3f}" in page and "data:image/png;base64," in page
    for png in ("preview.png", "confusion_points.png", "confusion_truth.png"):
        assert (tmp_path / "val" / png).read_bytes()[:4] == b"\x89PNG"
    # points straight from the truth raster: the map's accuracy on them equals its pixel accuracy there
    assert 0 < res["points"]["overall_accuracy"] <= 1


def test_validate_map_in_another_crs_and_missing_reference(scene, tmp_path, capsys):  # noqa: F811
    rc = validate_mod.main(["--map", scene["truth"], "--out-dir", str(tmp_path / "v")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "nothing to validate against" in err[0]
    other = write_raster(tmp_path / "t.tif", np.ones((1, 16, 16), np.uint8), crs="EPSG:4326", res=0.001, origin=(27.0, 46.0))
    with rasterio.open(other, "r+") as ds:
        ds.update_tags(GEOHPC_CLASSES=json.dumps({"1": "wheat"}))
    rc = validate_mod.main(["--map", scene["truth"], "--truth", str(other), "--out-dir", str(tmp_path / "v")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "not on the map's grid" in err[0]
    assert not (tmp_path / "v" / "report.html").exists()


def test_int8_scene_with_scale_sidecar_classifies_like_float(scene, model_dir, tmp_path):  # noqa: F811
    from geohpc.synth.scene import make_scene

    q = make_scene(tmp_path / "q", size=128, bands=16, n_classes=5, train_points=50, val_points=10, block=64, seed=3,
                   separation=1.0, dtype="int8")
    assert Path(q["embedding"]).with_name("embedding_scale.tif").exists()
    a = classify(model_dir, _item(scene, 0, 1), tmp_path / "f")
    b = classify(model_dir, f"{q['embedding']}::0/1", tmp_path / "i")
    with rasterio.open(a["out"]) as fa, rasterio.open(b["out"]) as fb:
        assert (fa.read(1) == fb.read(1)).mean() > 0.95
