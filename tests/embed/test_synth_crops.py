"""The synthetic S1/S2 series as the demo uses it: six crops with distinct signatures, labelled points."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from geohpc.classify.classes import CLASSES_TAG, classes_from_tags
from geohpc.synth import s12 as synth_s12
from pyproj import Transformer

REPO = Path(__file__).resolve().parents[2]


def _points(path: Path) -> tuple[np.ndarray, np.ndarray, list[str], dict]:
    doc = json.loads(path.read_text())
    xy = np.array([f["geometry"]["coordinates"] for f in doc["features"]], dtype=float)
    return xy[:, 0], xy[:, 1], [f["properties"]["label"] for f in doc["features"]], doc


def _pixels(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    col = np.floor((x - synth_s12.ORIGIN[0]) / 10).astype(int)
    row = np.floor((synth_s12.ORIGIN[1] - y) / 10).astype(int)
    return row, col


@pytest.fixture(scope="module")
def series(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("crops")
    coll = synth_s12.make_series(out, size=48, s2_dates=8, s1_dates=2, seed=3, train_points=240, val_points=120)
    return out, coll


def test_truth_has_six_named_crops_on_fields(series) -> None:
    out, _ = series
    with rasterio.open(out / "truth.tif") as ds:
        truth = ds.read(1)
        names = classes_from_tags(ds.tags(), out / "truth.tif")
        assert ds.crs.to_epsg() == 32635 and ds.nodata == 0 and CLASSES_TAG in ds.tags()
    assert names == {k + 1: n for k, n in enumerate(synth_s12.CLASS_NAMES)} and len(names) >= 5
    assert set(np.unique(truth)) == set(names)  # every class is on some field


def test_points_carry_string_labels_that_match_the_truth(series) -> None:
    out, _ = series
    truth = rasterio.open(out / "truth.tif").read(1)
    lon, lat, tr_labels, tr_doc = _points(out / "train_points.geojson")
    assert "crs" not in tr_doc and np.all((lon > 20) & (lon < 30) & (lat > 40) & (lat < 50))  # WGS84 lon/lat
    x, y = Transformer.from_crs("EPSG:4326", synth_s12.CRS, always_xy=True).transform(lon, lat)
    tr_rc = _pixels(np.asarray(x), np.asarray(y))
    vx, vy, va_labels, va_doc = _points(out / "val_points.geojson")
    assert va_doc["crs"]["properties"]["name"].endswith("32635")
    va_rc = _pixels(vx, vy)
    assert len(tr_labels) == 240 and len(va_labels) == 120
    for (r, c), labels in ((tr_rc, tr_labels), (va_rc, va_labels)):
        assert [synth_s12.CLASS_NAMES[k - 1] for k in truth[r, c]] == labels
        assert {labels.count(n) for n in synth_s12.CLASS_NAMES} == {len(labels) // 6}  # stratified
        assert not np.any((r >= 45) & (c >= 45))  # never in the always-cloudy corner
    assert not {(int(r), int(c)) for r, c in zip(*tr_rc, strict=True)} & {(int(r), int(c)) for r, c in zip(*va_rc, strict=True)}


def test_each_crop_has_its_own_sentinel2_season(series) -> None:
    """Per-class mean NIR (B08) over the dates on clear pixels: every pair of classes differs clearly."""
    out, coll = series
    truth = np.pad(rasterio.open(out / "truth.tif").read(1), synth_s12.MARGIN, mode="edge")
    curves = []
    s2 = sorted((f for f in coll["features"] if f["collection"] == "sentinel-2-l2a"),
                key=lambda f: f["properties"]["datetime"])
    for feat in s2:
        nir = rasterio.open(feat["assets"]["B08"]["href"]).read(1).astype(float)
        scl = np.repeat(np.repeat(rasterio.open(feat["assets"]["SCL"]["href"]).read(1), 2, 0), 2, 1)
        clear = scl[:nir.shape[0], :nir.shape[1]] != 9
        curves.append([nir[(truth == k) & clear].mean() for k in range(1, 7)])
    curves = np.array(curves).T  # (classes, dates)
    gaps = [np.abs(curves[a] - curves[b]).max() for a in range(6) for b in range(a + 1, 6)]
    assert min(gaps) > 400, (min(gaps), np.round(curves))


def test_cli_writes_points_and_names_them(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "geohpc", "synth-s12", "--out", str(tmp_path), "--size", "24",
                        "--s2-dates", "2", "--s1-dates", "1", "--train-points", "60", "--val-points", "30"],
                       capture_output=True, text=True, env={"PYTHONPATH": str(REPO / "py"), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["classes"] == list(synth_s12.CLASS_NAMES)
    assert len(json.loads(Path(info["train_points"]).read_text())["features"]) == 60
    assert len(json.loads(Path(info["val_points"]).read_text())["features"]) == 30


def test_negative_point_count_is_a_one_line_error(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "geohpc", "synth-s12", "--out", str(tmp_path / "o"), "--size", "16",
                        "--train-points", "-1"], capture_output=True, text=True,
                       env={"PYTHONPATH": str(REPO / "py"), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "points" in r.stderr
    assert not (tmp_path / "o" / "items.json").exists()
