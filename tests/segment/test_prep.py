"""geohpc.prep on a real synthetic scene: shards, train-only statistics, spatial split, resume, bad input."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from geohpc.segment.prep import IGNORE_INDEX  # noqa: E402
from segment_helpers import CLASSES, make_prepped, run_mod  # noqa: E402


@pytest.fixture(scope="module")
def prepped(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_prepped(tmp_path_factory.mktemp("prep"))


def _load(prep: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    meta = json.loads((prep / "meta.json").read_text())
    xs = [np.load(prep / f"{n}.X.npy") for n in meta["shards"][split]]
    ys = [np.load(prep / f"{n}.Y.npy") for n in meta["shards"][split]]
    return np.concatenate(xs), np.concatenate(ys)


def test_shards_layout_and_labels(prepped: Path) -> None:
    meta = json.loads((prepped / "meta.json").read_text())
    assert meta["ignore_index"] == IGNORE_INDEX == 255
    assert [c["value"] for c in meta["classes"]] == [1, 5, 24, 36]
    x, y = _load(prepped, "train")
    assert x.shape[1:] == (6, 16, 16) and x.dtype == np.float32
    assert y.dtype == np.uint8 and set(np.unique(y)) <= {0, 1, 2, 3, 255}
    # the unlisted class (61) and label nodata became the ignore index, so some pixels are ignored
    assert (y == 255).any()
    # few files, not one per chip: 8 chips per shard
    n_files = len(list(prepped.glob("*.npy")))
    assert n_files < sum(meta["n_chips"].values())
    assert sum(meta["n_chips"].values()) == sum(len(np.load(prepped / f"{n}.Y.npy"))
                                                 for s in meta["shards"] for n in meta["shards"][s])


def test_stats_from_train_split_only(prepped: Path) -> None:
    meta = json.loads((prepped / "meta.json").read_text())
    x, y = _load(prepped, "train")
    pix = x.transpose(1, 0, 2, 3).reshape(x.shape[1], -1).astype(np.float64)  # every embedding pixel is valid here
    np.testing.assert_allclose(meta["mean"], pix.mean(1), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(meta["std"], pix.std(1), rtol=1e-6)
    counts = np.bincount(y[y != 255], minlength=4)
    np.testing.assert_allclose(meta["class_freq"], counts / counts.sum())
    xv, yv = _load(prepped, "val")
    allpix = np.concatenate([pix, xv.transpose(1, 0, 2, 3).reshape(6, -1)], axis=1)
    assert not np.allclose(meta["mean"], allpix.mean(1), rtol=1e-6)  # val pixels are not in the stats


def test_split_by_spatial_blocks_is_disjoint(prepped: Path) -> None:
    seen: dict[tuple, str] = {}
    for p in prepped.glob("*-[0-9][0-9][0-9][0-9].json"):
        split = p.name.split("-")[0]
        for r, row, col in json.loads(p.read_text())["chips"]:
            assert (r, row, col) not in seen
            seen[(r, row, col)] = split
    assert {"train", "val", "test"} <= set(seen.values())


def test_resume_rewrites_only_missing_shard(tmp_path: Path) -> None:
    prep = make_prepped(tmp_path)
    meta1 = (prep / "meta.json").read_text()
    kept = prep / "train-0000.X.npy"
    stamp = kept.stat().st_mtime_ns
    for suffix in (".X.npy", ".Y.npy", ".json"):
        (prep / f"train-0001{suffix}").unlink()
    (prep / "meta.json").unlink()
    scene = tmp_path / "scene"
    r = run_mod("geohpc", "prep", "--embeddings", str(scene / "embeddings.tif"), "--labels", str(scene / "labels.tif"),
                "--classes", CLASSES, "--out", str(prep), "--chip", "16", "--block-chips", "1", "--shard-chips", "8",
                "--dtype", "float32")
    assert r.returncode == 0, r.stderr
    assert "already done" in r.stderr
    assert kept.stat().st_mtime_ns == stamp
    assert (prep / "train-0001.X.npy").exists()
    assert json.loads((prep / "meta.json").read_text()) == json.loads(meta1)
    assert not [p for p in os.listdir(prep) if ".tmp" in p]


def _cli(tmp: Path, emb: Path, lab: Path, classes: str = CLASSES, chip: str = "16"):
    return run_mod("geohpc", "prep", "--embeddings", str(emb), "--labels", str(lab), "--classes", classes,
                   "--out", str(tmp / "out"), "--chip", chip)


def test_bad_label_raster_not_overlapping(tmp_path: Path, make_raster) -> None:
    emb = make_raster("emb.tif", np.ones((3, 32, 32), np.float32))
    lab = make_raster("lab.tif", np.ones((32, 32), np.uint8), origin=(900000.0, 1000000.0))
    r = _cli(tmp_path, emb, lab)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "does not overlap" in r.stderr and "lab.tif" in r.stderr
    assert not (tmp_path / "out" / "meta.json").exists()


def test_bad_class_list(tmp_path: Path, make_raster) -> None:
    emb = make_raster("emb.tif", np.ones((3, 32, 32), np.float32))
    lab = make_raster("lab.tif", np.full((32, 32), 7, np.uint8))
    r = _cli(tmp_path, emb, lab, classes="1,5")
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "none of the classes" in r.stderr and "values found: [7]" in r.stderr
    r = _cli(tmp_path, emb, lab, classes="7,300")
    assert r.returncode == 2 and "cannot occur in a uint8" in r.stderr
    assert not (tmp_path / "out").exists()


def test_bad_chip_larger_than_raster(tmp_path: Path, make_raster) -> None:
    emb = make_raster("emb.tif", np.ones((3, 32, 40), np.float32))
    lab = make_raster("lab.tif", np.ones((32, 40), np.uint8))
    r = _cli(tmp_path, emb, lab, classes="1", chip="64")
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "larger than the raster" in r.stderr and "--chip 32" in r.stderr


def test_bad_too_few_blocks_for_a_split(tmp_path: Path, make_raster) -> None:
    emb = make_raster("emb.tif", np.ones((3, 64, 64), np.float32))
    lab = make_raster("lab.tif", np.ones((64, 64), np.uint8))
    r = _cli(tmp_path, emb, lab, classes="1", chip="16")  # default 4-chip blocks: one block of 64 px
    assert r.returncode == 2 and "only 1 spatial block" in r.stderr and "--block-chips" in r.stderr
