"""geohpc.predict: a model trained here over a synthetic scene -> class COG; strips join without seams."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio

sys.path.insert(0, str(Path(__file__).parent))
from geohpc.segment.predict import blend_weights, parse_item, tile_starts  # noqa: E402
from geohpc.segment.predict import main as predict_main  # noqa: E402
from geohpc.synth.seg import make_seg_scene  # noqa: E402
from segment_helpers import make_prepped, run_mod  # noqa: E402


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("pred")
    prep = make_prepped(root, size=96, channels=6, chip=16)
    r = run_mod("geohpc", "fit", "--data", str(prep), "--out", str(root / "run"), "--arch", "mlp", "--width", "32",
                "--epochs", "4", "--batch", "4", "--lr", "0.01", "--log-every", "0")
    assert r.returncode == 0, r.stderr[-2000:]
    # the same embeddings (same seed), with labels on the embedding grid for scoring
    info = make_seg_scene(root / "scene_utm", size=96, channels=6, seed=1, label_crs="EPSG:32633")
    emb = Path(info["embeddings"])
    with rasterio.open(emb) as src:  # plant invalid pixels: they must come out as nodata
        prof, data = src.profile, src.read()
    data[:, -5:, -7:] = np.nan
    holes = root / "holes.tif"
    with rasterio.open(holes, "w", **prof) as dst:
        dst.write(data)
    return {"root": root, "model": root / "run" / "model.pt", "emb": emb, "labels": Path(info["labels"]),
            "holes": holes}


def _predict(t: dict, item: str, out: Path, *extra: str):
    return run_mod("geohpc", "predict", "--model", str(t["model"]), "--item", item, "--out", str(out),
                   "--tile", "32", "--overlap", "8", *extra)


def test_cog_with_colour_table_and_accuracy(trained: dict) -> None:
    from rio_cogeo.cogeo import cog_validate

    out = trained["root"] / "out_cog"
    r = _predict(trained, str(trained["emb"]), out)
    assert r.returncode == 0, r.stderr[-2000:]
    path = Path(r.stdout.strip())
    assert path == out / "embeddings.tif"
    ok, errors, _ = cog_validate(str(path))
    assert ok, errors
    with rasterio.open(path) as ds, rasterio.open(trained["emb"]) as src:
        assert ds.dtypes[0] == "uint8" and ds.nodata == 255 and ds.crs == src.crs and ds.transform == src.transform
        assert ds.colormap(1)[0] == (255, 211, 0, 255)
        pred = ds.read(1)
    lab = rasterio.open(trained["labels"]).read(1)
    lut = {1: 0, 5: 1, 24: 2, 36: 3}
    m = np.isin(lab, list(lut))
    truth = np.vectorize(lambda v: lut.get(int(v), 255))(lab)
    assert (pred[m] == truth[m]).mean() > 0.85
    assert not [p for p in out.iterdir() if "tmp" in p.name]
    from PIL import Image

    png = Image.open(out / "embeddings.png")
    assert png.size == (96, 96) and png.mode == "RGBA" and png.getpixel((0, 0))[3] in (0, 255)


def test_strips_join_without_seams_and_nodata(trained: dict) -> None:
    out = trained["root"] / "out_strips"
    items = [str(trained["holes"])] + [f"{trained['holes']}::{i}/3" for i in range(3)]
    r = run_mod("geohpc", "predict", "--model", str(trained["model"]), "--item", *items, "--out", str(out),
                "--tile", "32", "--overlap", "8", "--format", "gtiff")
    assert r.returncode == 0, r.stderr[-2000:]
    assert len(r.stdout.splitlines()) == 4
    full = rasterio.open(out / "holes.tif").read(1)
    parts = [rasterio.open(out / f"holes.part{i:03d}of003.tif") for i in range(3)]
    assert np.array_equal(np.concatenate([p.read(1) for p in parts]), full)
    assert parts[1].transform.f < parts[0].transform.f  # strips are georeferenced where they belong
    assert (full[-5:, -7:] == 255).all() and (full[:-5] != 255).all()


def test_bad_inputs(trained: dict, tmp_path: Path, make_raster, capsys: pytest.CaptureFixture[str]) -> None:
    wrong = make_raster("wrong.tif", np.ones((3, 40, 40), np.float32))
    out = tmp_path / "out"  # not the inputs' folder: predict refuses an output folder that holds its inputs
    base = ["--model", str(trained["model"]), "--out", str(out), "--tile", "32", "--overlap", "8"]
    assert predict_main([*base, "--item", str(wrong)]) == 2
    err = capsys.readouterr().err
    assert "has 3 bands but the model" in err and err.count("\n") == 1
    assert predict_main([*base, "--item", f"{trained['emb']}::3/2"]) == 2
    assert "0 <= i < n" in capsys.readouterr().err
    assert predict_main(["--model", str(wrong), "--item", str(trained["emb"]), "--out", str(out)]) == 2
    assert "not a readable checkpoint" in capsys.readouterr().err
    assert predict_main([*base, "--item", str(trained["emb"]), "--overlap", "40"]) == 2
    assert "smaller than --tile" in capsys.readouterr().err
    assert not list(tmp_path.rglob("*embeddings*"))


def test_tiling_helpers() -> None:
    assert tile_starts(100, 32, 24) == [0, 24, 48, 68]
    assert tile_starts(20, 32, 24) == [0]
    w = blend_weights(32, 8)
    assert w.shape == (32, 32) and w[16, 16] == pytest.approx(1.0) and 0 < w[0, 0] < 0.05
    assert parse_item("a.tif") == ("a.tif", 0, 1) and parse_item("/x/a.tif::2/4") == ("/x/a.tif", 2, 4)
