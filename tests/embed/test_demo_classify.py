"""Raw imagery to a validated crop map, as make demo runs it: the synthetic series' embeddings (from the
untrained demo model) -> sample -> train -> classify -> validate, with the series' own labelled points."""

from __future__ import annotations

from pathlib import Path

import rasterio
from geohpc.classify.classify import classify
from geohpc.classify.points import read_points
from geohpc.classify.sample import sample
from geohpc.classify.train import train
from geohpc.classify.validate import validate
from geohpc.embed import stitch
from geohpc.synth import s12 as synth_s12


def test_embeddings_of_the_synthetic_series_classify_above_0_9(synth, chain, chain_emb, tmp_path: Path) -> None:
    emb = tmp_path / "embeddings.tif"
    stitch.stitch(chain["retile"], chain_emb, emb, tile=16)
    with rasterio.open(Path(str(synth["dir"])) / "truth.tif") as ds:
        truth = ds.read(1)
    pts = synth_s12.write_points(tmp_path, truth, 240, 120, seed=1)
    assert pts == {"train_points": 240, "val_points": 120}
    sample(read_points(str(tmp_path / "train_points.geojson")), [emb], tmp_path / "samples.parquet")
    train(str(tmp_path / "samples.parquet"), tmp_path / "model", trials=1, iterations=100, block_size=120)
    classify(tmp_path / "model", f"{emb}::0/1", tmp_path / "map")
    res = validate(str(tmp_path / "map"), tmp_path / "report", points=tmp_path / "val_points.geojson",
                   truth=Path(str(synth["dir"])) / "truth.tif")
    assert set(res["points"]["per_class"]) == set(synth_s12.CLASS_NAMES)
    assert res["points"]["overall_accuracy"] > 0.9, res["points"]["overall_accuracy"]
    assert res["truth"]["overall_accuracy"] > 0.9, res["truth"]["overall_accuracy"]
