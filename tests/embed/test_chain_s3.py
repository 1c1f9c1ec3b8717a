"""End to end: synthetic COGs on a real S3 server (moto) -> download -> stack -> retile -> infer -> stitch."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from geohpc.embed import download, infer, retile, stack, stitch
from geohpc.synth import s12 as synth_s12


@pytest.mark.s3
def test_chain_from_s3_matches_the_local_chain(s3_server, synth, chain, chain_emb, demo_model, tmp_path) -> None:
    coll = synth_s12.upload(copy.deepcopy(synth["collection"]), Path(synth["dir"]), "s3://geohpc-chain/s12",
                            s3_server)
    items = tmp_path / "items.json"
    items.write_text(json.dumps(coll))
    d = {k: tmp_path / k for k in ("download", "stack", "retile", "infer", "stitch")}
    assert download.main(["--items", str(items), "--bbox", str(synth["bbox"]), "--out", str(d["download"])]) == 0
    assert stack.main(["--downloads", str(d["download"]), "--out", str(d["stack"]), "--block", "20"]) == 0
    assert retile.main(["--stack", str(d["stack"]), "--out", str(d["retile"]), "--all", "--block", "32",
                        "--patch", "16"]) == 0
    assert infer.main(["--patches", str(d["retile"]), "--manifest", str(d["retile"] / "patches.txt"),
                       "--model", str(demo_model), "--out", str(d["infer"]), "--dtype", "int8"]) == 0
    out = d["stitch"] / "embeddings.tif"
    assert stitch.main(["--patches", str(d["retile"]), "--emb", str(d["infer"]), "--out", str(out),
                        "--dtype", "int8", "--tile", "16"]) == 0
    ref = tmp_path / "local.tif"
    stitch.stitch(chain["retile"], chain_emb, ref, tile=16)
    with rasterio.open(out) as q, rasterio.open(out.with_name("embeddings_scale.tif")) as s, rasterio.open(ref) as f:
        assert q.transform == f.transform and q.crs == f.crs and q.count == 128
        scale = s.read(1)
        value = q.read().astype(np.float32) * scale[None]
        local = f.read()
    assert np.isfinite(local).all()
    # Same imagery through S3 and through files: the same embeddings, up to int8 rounding.
    assert np.abs(value - local).max() <= np.nanmax(scale) / 2 + 1e-6
