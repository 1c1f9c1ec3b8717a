"""Done means valid, for integrity-B's stages: each done-check passes a real output and fails it cut short.

Also the shared verifiers (``verify_table``, ``verify_json``, ``verify_raster``) and ``one_line_errors``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from geohpc.core.stages import StageContext, get_stage
from geohpc.errors import InputError
from geohpc.guards import one_line_errors
from geohpc.raster_io import verify_raster
from geohpc.util import verify_json, verify_table

pytestmark = pytest.mark.reliability


def _ctx(tmp: Path, stage: str, out_dir: Path, **params: str) -> StageContext:
    return StageContext(stage=stage, site={}, params={"OUT_DIR": str(out_dir), **params}, repo=tmp, work=tmp)


def _cut(p: Path, keep: float = 0.6) -> None:
    data = p.read_bytes()
    p.write_bytes(data[: int(len(data) * keep)])


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from geohpc.classify.classify import classify
    from geohpc.classify.points import read_points
    from geohpc.classify.sample import sample
    from geohpc.classify.train import train
    from geohpc.classify.validate import validate
    from geohpc.synth.scene import make_scene

    root = tmp_path_factory.mktemp("done")
    sc = make_scene(root / "scene" / "demo", size=64, bands=8, n_classes=3, train_points=120, val_points=60, block=32,
                    seed=5, separation=1.5)
    sample(read_points(sc["train_points"]), [Path(sc["embedding"])], root / "sample" / "samples.parquet")
    train(str(root / "sample" / "samples.parquet"), root / "train", trials=1, iterations=20, block_size=200, min_per_class=5)
    classify(root / "train", sc["embedding"], root / "classify")
    validate(str(root / "classify"), root / "validate" / "report", points=Path(sc["val_points"]))
    return {"root": root, "emb": Path(sc["embedding"])}


def _fresh_copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize("stage,item,damaged", [
    ("scene", "demo", "demo/embedding.tif"),
    ("sample", "samples", "samples.parquet"),
    ("train", "tune-000", "model.cbm"),
    ("classify", "{emb}", "embedding.tif"),
    ("validate", "report", "report/report.html"),
])
def test_done_check_passes_the_output_and_fails_it_cut_short(made: dict[str, Path], tmp_path: Path, stage: str,
                                                             item: str, damaged: str) -> None:
    out = _fresh_copy(made["root"] / stage, tmp_path / stage)
    st = get_stage(stage)
    item = item.format(emb=made["emb"])
    ctx = _ctx(tmp_path, stage, out)
    assert st.done(item, ctx)
    _cut(out / damaged)
    assert not st.done(item, ctx)
    (out / damaged).write_bytes(b"")
    assert not st.done(item, ctx)


def test_prep_done_compares_every_part_with_meta(tmp_path: Path) -> None:
    from geohpc.segment.prep import make_plan, parse_classes, prepare
    from geohpc.synth.seg import make_seg_scene

    info = make_seg_scene(tmp_path / "scene", size=64, channels=4, seed=1)
    plan = make_plan([info["embeddings"]], info["labels"], parse_classes("1:corn,5:soy,24:wheat,36:alfalfa"), chip=16,
                     block_chips=1)
    prepare(plan, tmp_path / "prep", shard_chips=8, x_dtype="float32")
    st, ctx = get_stage("prep"), _ctx(tmp_path, "prep", tmp_path / "prep")
    assert st.done("prep", ctx)
    _cut(sorted((tmp_path / "prep").glob("*.Y.npy"))[-1], 0.9)
    assert not st.done("prep", ctx)


def test_fit_done_reads_the_model_archive(tmp_path: Path) -> None:
    import torch

    run = tmp_path / "fit" / "run1"
    run.mkdir(parents=True)
    torch.save({"model": {"w": torch.zeros(3)}}, run / "model.pt")
    st, ctx = get_stage("fit"), _ctx(tmp_path, "fit", tmp_path / "fit", RUN="run1")
    assert st.done("run1", ctx)
    _cut(run / "model.pt", 0.8)
    assert not st.done("run1", ctx)


def test_predict_done_reads_the_last_block(made: dict[str, Path], tmp_path: Path) -> None:
    out = _fresh_copy(made["root"] / "classify", tmp_path / "predict")
    (out / "embedding.tif").rename(out / "emb.tif")
    st, ctx = get_stage("predict"), _ctx(tmp_path, "predict", out, EMBEDDINGS="emb.tif")
    assert st.done(str(tmp_path / "emb.tif"), ctx)
    _cut(out / "emb.tif", 0.9)
    assert not st.done(str(tmp_path / "emb.tif"), ctx)


def test_verify_table(tmp_path: Path) -> None:
    import pandas as pd

    good = tmp_path / "t.csv"
    good.write_text("id,x\n1,2\n3,4\n")
    assert verify_table(good) is None
    (tmp_path / "h.csv").write_text("id,x\n")
    assert "no rows" in verify_table(tmp_path / "h.csv")
    (tmp_path / "z.csv").write_bytes(b"")
    assert "0 bytes" in verify_table(tmp_path / "z.csv")
    (tmp_path / "cut.csv").write_text("id,x,y\n1,2,3\n4,5")
    assert "fields" in verify_table(tmp_path / "cut.csv")
    pq = tmp_path / "t.parquet"
    pd.DataFrame({"a": np.arange(100)}).to_parquet(pq)
    assert verify_table(pq) is None
    pd.DataFrame({"a": np.arange(0)}).to_parquet(tmp_path / "e.parquet")
    assert "no rows" in verify_table(tmp_path / "e.parquet")
    _cut(pq)
    assert "not a readable Parquet" in verify_table(pq)
    assert "no such file" in verify_table(tmp_path / "missing.csv")


def test_verify_json_and_raster(made: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text('{"a": 1}')
    assert verify_json(tmp_path / "a.json") is None
    (tmp_path / "b.json").write_text('{"a": ')
    assert "not valid JSON" in verify_json(tmp_path / "b.json")
    assert verify_raster(made["emb"]) is None
    cut = tmp_path / "cut.tif"
    cut.write_bytes(made["emb"].read_bytes()[:-2000])
    why = verify_raster(cut)
    assert why is not None and ("truncated" in why or "not a readable raster" in why)


def test_one_line_errors_names_the_file_redacts_and_keeps_geohpc_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError) as e, one_line_errors(tmp_path / "o.tif", fix="free some space"):
        raise OSError(28, "No space left on device", "/vsicurl/https://h/x.tif?sig=SECRET1")
    # a known errno says what it means and its own fix; the file keeps its name, its signature redacted
    assert str(e.value) == "/vsicurl/https://h/x.tif?sig=REDACTED: no space left on the device (free space or write elsewhere)"
    with pytest.raises(InputError) as e, one_line_errors(tmp_path):
        raise InputError("https://h/a.tif?sv=1&sig=SECRET2: bad")
    assert "SECRET2" not in str(e.value)
    with pytest.raises(KeyError), one_line_errors(tmp_path):  # a bug stays a bug, with its traceback
        raise KeyError("x")
    fresh = tmp_path / "new" / "deeper"
    with pytest.raises(InputError), one_line_errors(fresh, fresh_dirs=[tmp_path / "new"]):
        fresh.mkdir(parents=True)
        raise OSError(30, "Read-only file system", str(fresh / "x"))
    assert not (tmp_path / "new").exists()
