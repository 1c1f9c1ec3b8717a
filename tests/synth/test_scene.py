"""scene: the synthetic embedding scene the classification demo and tests start from (python -m geohpc scene)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import rasterio

REPO = Path(__file__).resolve().parents[2]


def scene(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO / "py")}
    return subprocess.run([sys.executable, "-m", "geohpc", "scene", *args], capture_output=True, text=True,
                          env=env, timeout=120)


def test_scene_is_seeded_georeferenced_and_labelled(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for out in (a, b):
        run = scene("--out-dir", str(out), "--size", "64", "--bands", "8", "--block", "32", "--seed", "3")
        assert run.returncode == 0, run.stderr
    meta = json.loads((a / "scene.json").read_text())
    assert meta["bands"] == 8 and meta["crs"] == "EPSG:32635" and len(meta["classes"]) == 6
    with rasterio.open(a / "embedding.tif") as ds, rasterio.open(b / "embedding.tif") as ds2:
        assert ds.count == 8 and ds.crs.to_epsg() == 32635 and ds.block_shapes[0] == (32, 32)
        assert (ds.read() == ds2.read()).all()  # same seed, same pixels
    with rasterio.open(a / "truth.tif") as truth:
        classes = set(map(int, truth.read(1).ravel())) - {0}
    assert classes and classes <= set(map(int, meta["classes"]))
    points = json.loads((a / "train_points.geojson").read_text())["features"]
    assert points and all(f["geometry"]["type"] == "Point" for f in points)


def test_bad_scene_arguments_are_one_line_errors(tmp_path: Path) -> None:
    run = scene("--out-dir", str(tmp_path / "x"), "--size", "30")
    assert run.returncode == 2 and len(run.stderr.strip().splitlines()) == 1 and "16" in run.stderr
    assert not (tmp_path / "x" / "embedding.tif").exists()
