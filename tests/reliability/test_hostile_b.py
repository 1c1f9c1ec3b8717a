"""The hostile walk over integrity-B's programs: sample, train, classify, validate, prep, fit, predict, the scene makers.

Every case runs ``python -m geohpc <command>`` as a subprocess with one bad thing (a corrupt raster body, a
truncated file, bad JSON, a 0-byte CSV, a read-only or directory output, a full disk, a missing file, a damaged
model, an output equal to an input, an empty result, a signed URL) and asserts one ``error:`` line on stderr,
exit 2, no traceback, nothing new or changed on disk (and no secret in clear). The kill tests SIGKILL each
program once its first temporary appears, rerun it, and compare with a clean run.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from relutil import fill, kill_at_first_temporary, one_line_error, record, run_geohpc, snapshot, temporaries

pytestmark = pytest.mark.reliability

SECRET = "s3cr3tSIGvalue"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A small compressed scene, its samples and a model, built once for the module."""
    from geohpc.classify.points import read_points
    from geohpc.classify.sample import sample
    from geohpc.classify.train import train
    from geohpc.synth.scene import make_scene

    root = tmp_path_factory.mktemp("world")
    sc = make_scene(root / "scene", size=64, bands=8, n_classes=3, train_points=120, val_points=60, block=32, seed=5,
                    separation=1.5, compress="deflate")
    samples = root / "samples.parquet"
    sample(read_points(sc["train_points"]), [Path(sc["embedding"])], samples)
    model = root / "model"
    train(str(samples), model, trials=1, iterations=20, block_size=200, min_per_class=5)
    return {"root": root, "emb": Path(sc["embedding"]), "truth": Path(sc["truth"]), "train": Path(sc["train_points"]),
            "val": Path(sc["val_points"]), "samples": samples, "model": model}


CLASSES = "1:corn,5:soy,24:wheat,36:alfalfa"
FIT = ["--arch", "mlp", "--width", "8", "--epochs", "2", "--batch", "4", "--device", "cpu", "--plot-every", "0",
       "--workers", "0", "--ckpt-every", "2"]


@pytest.fixture(scope="module")
def seg(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A small segmentation scene, its prepared chips and a fit model, built once for the module."""
    from geohpc.segment.prep import make_plan, parse_classes, prepare
    from geohpc.synth.seg import make_seg_scene

    root = tmp_path_factory.mktemp("seg")
    info = make_seg_scene(root / "scene", size=64, channels=4, seed=1)
    plan = make_plan([info["embeddings"]], info["labels"], parse_classes(CLASSES), chip=16, block_chips=1)
    prepare(plan, root / "prep", shard_chips=8, x_dtype="float32")
    r = run_geohpc("fit", "--data", root / "prep", "--out", root / "run", *FIT)
    assert r.returncode == 0, r.stderr
    return {"root": root, "emb": Path(info["embeddings"]), "labels": Path(info["labels"]), "prep": root / "prep",
            "model": root / "run" / "model.pt"}


def _prep_copy(s: dict[str, Path], tmp: Path, damage: str) -> Path:
    d = tmp / "prep"
    shutil.copytree(s["prep"], d)
    if damage == "meta":
        (d / "meta.json").write_text('{"mean": [0.1, ')
    else:
        x = sorted(d.glob("train-*.X.npy"))[0]
        truncate(s["prep"] / x.name, x)
    return d


SEG_CASES: dict[tuple[str, str], Callable[[dict[str, Path], Path, dict[str, Path]], list[object]]] = {
    ("prep", "truncated labels"): lambda s, t, d: [
        "prep", "--embeddings", s["emb"], "--labels", truncate(s["labels"], t / "lab.tif"), "--classes", CLASSES,
        "--chip", "16", "--out", t / "p"],
    ("prep", "truncated embeddings"): lambda s, t, d: [
        "prep", "--embeddings", truncate(s["emb"], t / "emb.tif"), "--labels", s["labels"], "--classes", CLASSES,
        "--chip", "16", "--out", t / "p"],
    ("prep", "no listed class in the labels"): lambda s, t, d: [
        "prep", "--embeddings", s["emb"], "--labels", s["labels"], "--classes", "99:none", "--chip", "16", "--out", t / "p"],
    ("prep", "--out is a file"): lambda s, t, d: [
        "prep", "--embeddings", s["emb"], "--labels", s["labels"], "--classes", CLASSES, "--chip", "16",
        "--out", _touch(t / "p")],
    ("prep", "labels are the output meta.json"): lambda s, t, d: [
        "prep", "--embeddings", s["emb"], "--labels", _copy(s["labels"], t / "p" / "meta.json"), "--classes", CLASSES,
        "--chip", "16", "--out", t / "p"],
    ("prep", "read-only --out"): lambda s, t, d: [
        "prep", "--embeddings", s["emb"], "--labels", s["labels"], "--classes", CLASSES, "--chip", "16", "--out", d["ro"]],
    ("prep", "full disk"): lambda s, t, d: [
        "prep", "--embeddings", s["emb"], "--labels", s["labels"], "--classes", CLASSES, "--chip", "16",
        "--out", _full(d["full"]) / "p"],
    ("fit", "bad meta.json"): lambda s, t, d: ["fit", "--data", _prep_copy(s, t, "meta"), "--out", t / "run", *FIT],
    ("fit", "truncated chip shard"): lambda s, t, d: ["fit", "--data", _prep_copy(s, t, "shard"), "--out", t / "run", *FIT],
    ("fit", "missing --data"): lambda s, t, d: ["fit", "--data", t / "nope", "--out", t / "run", *FIT],
    ("fit", "--out is a file"): lambda s, t, d: ["fit", "--data", s["prep"], "--out", _touch(t / "run"), *FIT],
    ("fit", "damaged last.pt"): lambda s, t, d: [
        "fit", "--data", s["prep"], "--out", truncate(s["model"], _mkdir(t / "run") / "last.pt").parent, *FIT],
    ("fit", "read-only --out"): lambda s, t, d: ["fit", "--data", s["prep"], "--out", d["ro"], *FIT],
    ("fit", "full disk"): lambda s, t, d: ["fit", "--data", s["prep"], "--out", _full(d["full"]) / "run", *FIT],
    ("predict", "truncated model"): lambda s, t, d: [
        "predict", "--model", truncate(s["model"], t / "model.pt"), "--item", s["emb"], "--out", t / "o", "--tile", "32",
        "--overlap", "8"],
    ("predict", "truncated raster"): lambda s, t, d: [
        "predict", "--model", s["model"], "--item", truncate(s["emb"], t / "emb.tif"), "--out", t / "o", "--tile", "32",
        "--overlap", "8"],
    ("predict", "--out is the raster's folder"): lambda s, t, d: [
        "predict", "--model", s["model"], "--item", _copy(s["emb"], t / "r" / "emb.tif"), "--out", t / "r", "--tile", "32",
        "--overlap", "8"],
    ("predict", "all-nodata raster"): lambda s, t, d: [
        "predict", "--model", s["model"], "--item", all_nodata(s["emb"], t / "nd.tif"), "--out", t / "o", "--tile", "32",
        "--overlap", "8"],
    ("predict", "read-only --out"): lambda s, t, d: [
        "predict", "--model", s["model"], "--item", s["emb"], "--out", d["ro"], "--tile", "32", "--overlap", "8"],
    ("predict", "full disk"): lambda s, t, d: [
        "predict", "--model", s["model"], "--item", s["emb"], "--out", _full(d["full"]), "--tile", "32", "--overlap", "8"],
    ("synth-seg", "--out is a file"): lambda s, t, d: ["synth-seg", "--out", _touch(t / "s"), "--size", "32"],
    ("synth-seg", "read-only --out"): lambda s, t, d: ["synth-seg", "--out", d["ro"], "--size", "32"],
    ("synth-seg", "full disk"): lambda s, t, d: ["synth-seg", "--out", _full(d["full"]) / "s", "--size", "256"],
}


def corrupt_body(src: Path, dst: Path) -> Path:
    """Copy ``src`` to ``dst`` and overwrite the middle of its last tile with garbage (the header stays intact)."""
    import rasterio

    shutil.copy(src, dst)
    with rasterio.open(dst) as ds:
        nbx = -(-ds.width // ds.block_shapes[0][1])
        nby = -(-ds.height // ds.block_shapes[0][0])
        off = int(ds.get_tag_item(f"BLOCK_OFFSET_{nbx - 1}_{nby - 1}", "TIFF", bidx=1))
        size = int(ds.get_tag_item(f"BLOCK_SIZE_{nbx - 1}_{nby - 1}", "TIFF", bidx=1))
    with open(dst, "r+b") as fh:
        fh.seek(off + size // 4)
        fh.write(np.random.default_rng(0).integers(0, 256, size // 2, dtype=np.uint8).tobytes())
    return dst


def truncate(src: Path, dst: Path) -> Path:
    """Copy ``src`` to ``dst`` cut to 60 % of its bytes."""
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * 0.6)])
    return dst


def all_nodata(src: Path, dst: Path) -> Path:
    """A raster on ``src``'s grid with every pixel nodata."""
    import rasterio

    with rasterio.open(src) as ds:
        prof = ds.profile
        with rasterio.open(dst, "w", **prof) as out:
            for _, win in ds.block_windows(1):
                out.write(np.full((ds.count, int(win.height), int(win.width)), np.nan, np.float32), window=win)
    return dst


# each case: (world, a scratch folder, {"full": a full file system, "ro": a read-only one}) -> the command line
Case = Callable[[dict[str, Path], Path, dict[str, Path]], list[object]]


def _model_copy(w: dict[str, Path], tmp: Path, damage: str) -> Path:
    m = tmp / "model"
    shutil.copytree(w["model"], m)
    if damage == "cbm":
        truncate(w["model"] / "model.cbm", m / "model.cbm")
    else:
        (m / "model.json").write_text("{not json")
    return m


CASES: dict[tuple[str, str], Case] = {
    ("sample", "corrupt raster body"): lambda w, t, d: [
        "sample", "--points", w["train"], "--rasters", corrupt_body(w["emb"], t / "bad.tif"), "--out", t / "o.parquet"],
    ("sample", "truncated raster"): lambda w, t, d: [
        "sample", "--points", w["train"], "--rasters", truncate(w["emb"], t / "cut.tif"), "--out", t / "o.parquet"],
    ("sample", "0-byte CSV points"): lambda w, t, d: [
        "sample", "--points", _touch(t / "p.csv"), "--crs", "EPSG:32635", "--rasters", w["emb"], "--out", t / "o.parquet"],
    ("sample", "bad JSON points"): lambda w, t, d: [
        "sample", "--points", _write(t / "p.geojson", '{"type": "FeatureCollection", "features": [{"geom'),
        "--rasters", w["emb"], "--out", t / "o.parquet"],
    ("sample", "missing points file"): lambda w, t, d: [
        "sample", "--points", t / "nope.geojson", "--rasters", w["emb"], "--out", t / "o.parquet"],
    ("sample", "all-nodata raster (0 samples)"): lambda w, t, d: [
        "sample", "--points", w["train"], "--rasters", all_nodata(w["emb"], t / "nd.tif"), "--out", t / "o.parquet"],
    ("sample", "--out equal to --points"): lambda w, t, d: [
        "sample", "--points", _copy(w["samples"], t / "pts.parquet"), "--crs", "EPSG:32635", "--rasters", w["emb"],
        "--out", t / "pts.parquet"],
    ("sample", "--out a hard link of --points"): lambda w, t, d: [
        "sample", "--points", _copy(w["samples"], t / "pts.parquet"), "--crs", "EPSG:32635", "--rasters", w["emb"],
        "--out", _link(t / "pts.parquet", t / "o.parquet", hard=True)],
    ("classify", "output name a symlink to the raster"): lambda w, t, d: [
        "classify", "--model", w["model"], "--item", _copy(w["emb"], t / "r" / "embedding.tif"), "--out-dir", t / "o",
        "--force", *_noargs(_link(t / "r" / "embedding.tif", t / "o" / "embedding.tif"))],
    ("sample", "read-only output folder"): lambda w, t, d: [
        "sample", "--points", w["train"], "--rasters", w["emb"], "--out", d["ro"] / "o.parquet"],
    ("sample", "output is a directory"): lambda w, t, d: [
        "sample", "--points", w["train"], "--rasters", w["emb"], "--out", _mkdir(t / "o.parquet")],
    ("sample", "full disk"): lambda w, t, d: [
        "sample", "--points", w["train"], "--rasters", w["emb"], "--out", _full(d["full"]) / "o.parquet"],
    ("train", "0-row samples"): lambda w, t, d: [
        "train", "--samples", _empty_parquet(w["samples"], t / "s.parquet"), "--out-dir", t / "m", "--trials", "1"],
    ("train", "truncated samples"): lambda w, t, d: [
        "train", "--samples", truncate(w["samples"], t / "s.parquet"), "--out-dir", t / "m", "--trials", "1"],
    ("train", "out-dir is a file"): lambda w, t, d: [
        "train", "--samples", w["samples"], "--out-dir", _touch(t / "m"), "--trials", "1"],
    ("train", "read-only out-dir"): lambda w, t, d: [
        "train", "--samples", w["samples"], "--out-dir", d["ro"], "--trials", "1", "--iterations", "10",
        "--min-per-class", "5"],
    ("train", "out-dir holds the samples"): lambda w, t, d: [
        "train", "--samples", _copy(w["samples"], t / "m" / "metrics.json"), "--out-dir", t / "m", "--trials", "1"],
    ("classify", "out-dir is the rasters' folder"): lambda w, t, d: [
        "classify", "--model", w["model"], "--item", _copy(w["emb"], t / "r" / "emb.tif"), "--out-dir", t / "r", "--force"],
    ("classify", "corrupt raster body"): lambda w, t, d: [
        "classify", "--model", w["model"], "--item", corrupt_body(w["emb"], t / "bad.tif"), "--out-dir", t / "o"],
    ("classify", "truncated model.cbm"): lambda w, t, d: [
        "classify", "--model", _model_copy(w, t, "cbm"), "--item", w["emb"], "--out-dir", t / "o"],
    ("classify", "bad model.json"): lambda w, t, d: [
        "classify", "--model", _model_copy(w, t, "json"), "--item", w["emb"], "--out-dir", t / "o"],
    ("classify", "all-nodata raster"): lambda w, t, d: [
        "classify", "--model", w["model"], "--item", all_nodata(w["emb"], t / "nd.tif"), "--out-dir", t / "o"],
    ("classify", "read-only out-dir"): lambda w, t, d: [
        "classify", "--model", w["model"], "--item", w["emb"], "--out-dir", d["ro"]],
    ("classify", "full disk"): lambda w, t, d: [
        "classify", "--model", w["model"], "--item", w["emb"], "--out-dir", _full(d["full"])],
    ("classify", "bad shard item"): lambda w, t, d: [
        "classify", "--model", w["model"], "--item", f"{w['emb']}::3/2", "--out-dir", t / "o"],
    ("validate", "0-byte CSV points"): lambda w, t, d: [
        "validate", "--map", w["truth"], "--points", _touch(t / "p.csv"), "--crs", "EPSG:32635", "--out-dir", t / "v"],
    ("validate", "no point on the map"): lambda w, t, d: [
        "validate", "--map", w["truth"], "--points", _far_points(t / "far.csv"), "--crs", "EPSG:32635", "--out-dir", t / "v"],
    ("validate", "truncated map"): lambda w, t, d: [
        "validate", "--map", truncate(w["truth"], t / "map.tif"), "--points", w["val"], "--out-dir", t / "v"],
    ("validate", "out-dir is a file"): lambda w, t, d: [
        "validate", "--map", w["truth"], "--points", w["val"], "--out-dir", _touch(t / "v")],
    ("validate", "points are an output"): lambda w, t, d: [
        "validate", "--map", w["truth"], "--points", _copy(w["val"], t / "v" / "metrics.json"), "--out-dir", t / "v"],
    ("validate", "full disk"): lambda w, t, d: [
        "validate", "--map", w["truth"], "--points", w["val"], "--out-dir", _full(d["full"]) / "v"],
    ("validate", "read-only out-dir"): lambda w, t, d: [
        "validate", "--map", w["truth"], "--points", w["val"], "--out-dir", d["ro"]],
    ("scene", "out-dir is a file"): lambda w, t, d: ["scene", "--out-dir", _touch(t / "s"), "--size", "64", "--bands", "4"],
    ("scene", "full disk"): lambda w, t, d: ["scene", "--out-dir", _full(d["full"]) / "s", "--size", "256", "--bands", "16"],
    ("scene", "read-only out-dir"): lambda w, t, d: ["scene", "--out-dir", d["ro"], "--size", "64", "--bands", "4"],
    ("synth-s12", "--out is a file"): lambda w, t, d: ["synth-s12", "--out", _touch(t / "s"), "--size", "32"],
    ("synth-s12", "read-only --out"): lambda w, t, d: ["synth-s12", "--out", d["ro"], "--size", "32"],
    ("synth-s12", "full disk"): lambda w, t, d: ["synth-s12", "--out", _full(d["full"]) / "s", "--size", "64"],
}


def _touch(p: Path) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(b"")
    return p


def _write(p: Path, text: str) -> Path:
    p.write_text(text)
    return p


def _copy(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(src, dst)
    return dst


def _link(src: Path, dst: Path, hard: bool = False) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if hard:
        dst.hardlink_to(src)
    else:
        dst.symlink_to(src)
    return dst


def _noargs(_: object) -> list[object]:
    return []


def _mkdir(p: Path) -> Path:
    p.mkdir(parents=True)
    return p


def _full(mnt: Path) -> Path:
    fill(mnt)
    return mnt


def _empty_parquet(src: Path, dst: Path) -> Path:
    import pyarrow.parquet as pq

    t = pq.read_table(src)
    pq.write_table(t.slice(0, 0), dst)
    return dst


def _far_points(p: Path) -> Path:
    p.write_text("id,x,y,label\n1,100.0,100.0,wheat\n2,200.0,200.0,maize\n")
    return p


def _walk(cases: dict, data: dict[str, Path], tmp_path: Path, full_disk: Path, read_only_dir: Path,
          command: str, case: str) -> None:
    """Run one hostile case: one line, exit 2, and nothing new or changed on disk."""
    scratch = tmp_path / "case"
    scratch.mkdir()
    args = cases[(command, case)](data, scratch, {"full": full_disk, "ro": read_only_dir})
    before = snapshot(scratch, full_disk, data["root"])
    r = run_geohpc(*args)
    why = one_line_error(r)
    after = snapshot(scratch, full_disk, data["root"])
    if not why and after != before:
        why = f"files changed: new {sorted(set(after) - set(before))}, changed {[k for k in before if after.get(k) != before[k]]}"
    record("bad_input", command, case, not why)
    assert not why, why


@pytest.mark.parametrize("command,case", sorted(CASES), ids=[f"{c}: {k}" for c, k in sorted(CASES)])
def test_bad_case_is_one_line_exit_2_nothing_new(world: dict[str, Path], tmp_path: Path, full_disk: Path,
                                                 read_only_dir: Path, command: str, case: str) -> None:
    _walk(CASES, world, tmp_path, full_disk, read_only_dir, command, case)


@pytest.mark.parametrize("command,case", sorted(SEG_CASES), ids=[f"{c}: {k}" for c, k in sorted(SEG_CASES)])
def test_segment_bad_case_is_one_line_exit_2_nothing_new(seg: dict[str, Path], tmp_path: Path, full_disk: Path,
                                                         read_only_dir: Path, command: str, case: str) -> None:
    _walk(SEG_CASES, seg, tmp_path, full_disk, read_only_dir, command, case)


SIGNED = f"/vsicurl/https://example.invalid/emb.tif?sv=2024&sig={SECRET}"


@pytest.mark.parametrize("command", ["sample", "classify", "validate"])
def test_signed_url_is_never_printed(world: dict[str, Path], tmp_path: Path, command: str) -> None:
    args = {"sample": ["sample", "--points", world["train"], "--rasters", SIGNED, "--out", tmp_path / "o.parquet"],
            "classify": ["classify", "--model", world["model"], "--item", SIGNED, "--out-dir", tmp_path / "o"],
            "validate": ["validate", "--map", SIGNED, "--points", world["val"], "--out-dir", tmp_path / "v"]}[command]
    r = run_geohpc(*args)
    ok = SECRET not in r.stderr + r.stdout and not one_line_error(r)
    record("secret", command, "signed /vsicurl/ URL", ok)
    assert SECRET not in r.stderr + r.stdout, r.stderr
    assert not one_line_error(r), one_line_error(r)
    assert list(tmp_path.iterdir()) == []


def _kill_rerun_compare(command: str, args: Callable[[Path], list[object]], tmp_path: Path, outputs: list[str],
                        same: Callable[[Path, Path], bool] | None = None) -> Path:
    """Clean run into ``clean/``; run into ``out/`` killed at its first temporary, rerun; compare the outputs."""
    out, clean_dir = tmp_path / "out", tmp_path / "clean"
    clean = run_geohpc(*args(clean_dir))
    assert clean.returncode == 0, clean.stderr
    killed = any(kill_at_first_temporary(args(out), out) for _ in range(3))
    assert killed, f"{command} ended before a temporary appeared; the kill test caught nothing"
    rerun = run_geohpc(*args(out))
    leftovers = temporaries(out)
    equal = {name: (out / name).read_bytes() == (clean_dir / name).read_bytes() for name in outputs}
    if same is not None:
        equal["(content)"] = same(out, clean_dir)
    ok = rerun.returncode == 0 and not leftovers and all(equal.values())
    record("kill", command, "SIGKILL at the first temporary, rerun", ok)
    assert rerun.returncode == 0, rerun.stderr
    assert leftovers == []
    assert equal == {name: True for name in equal}
    return out


def test_kill_sample(tmp_path: Path) -> None:
    from geohpc.synth.scene import make_scene

    big = make_scene(tmp_path / "big", size=256, bands=32, n_classes=3, train_points=20000, val_points=10, block=64, seed=1)
    _kill_rerun_compare("sample", lambda o: ["sample", "--points", big["train_points"], "--rasters", big["embedding"],
                                             "--out", o / "s.parquet"], tmp_path, ["s.parquet", "s.dropped.csv"])


def _same_pixels(a: Path, b: Path) -> bool:
    import rasterio

    with rasterio.open(a / "embedding.tif") as x, rasterio.open(b / "embedding.tif") as y:
        return bool(np.array_equal(x.read(), y.read()))


def test_kill_classify(world: dict[str, Path], tmp_path: Path) -> None:
    _kill_rerun_compare("classify", lambda o: ["classify", "--model", world["model"], "--item", world["emb"], "--out-dir", o,
                                               "--confidence"], tmp_path, ["embedding.tif"], _same_pixels)


def test_kill_train(world: dict[str, Path], tmp_path: Path) -> None:
    import pyarrow.parquet as pq
    from catboost import CatBoostClassifier

    X = pq.read_table(world["samples"]).to_pandas().filter(regex=r"^b\d{3}$").to_numpy(np.float32)

    def same_predictions(a: Path, b: Path) -> bool:  # a CatBoost model file holds a random model_guid: compare predictions
        ma, mb = CatBoostClassifier(), CatBoostClassifier()
        ma.load_model(str(a / "model.cbm"))
        mb.load_model(str(b / "model.cbm"))
        return bool(np.array_equal(ma.predict_proba(X), mb.predict_proba(X)))

    _kill_rerun_compare("train", lambda o: ["train", "--samples", world["samples"], "--out-dir", o, "--trials", "1",
                                            "--iterations", "20", "--block-size", "200", "--min-per-class", "5"],
                        tmp_path, ["labels.json", "best_params.json"], same_predictions)


def test_kill_validate(world: dict[str, Path], tmp_path: Path) -> None:
    out = _kill_rerun_compare("validate", lambda o: ["validate", "--map", world["truth"], "--points", world["val"],
                                                     "--truth", world["truth"], "--out-dir", o],
                              tmp_path, ["report.html", "metrics.json", "preview.png"])
    assert json.loads((out / "metrics.json").read_text())["points"]["n"] > 0


def test_kill_scene(tmp_path: Path) -> None:
    _kill_rerun_compare("scene", lambda o: ["scene", "--out-dir", o, "--size", "256", "--bands", "32", "--block", "64",
                                            "--train-points", "50", "--val-points", "20"],
                        tmp_path, ["embedding.tif", "truth.tif", "train_points.geojson", "val_points.geojson"])


def test_kill_prep(seg: dict[str, Path], tmp_path: Path) -> None:
    from geohpc.synth.seg import make_seg_scene

    info = make_seg_scene(tmp_path / "big", size=256, channels=16, seed=2)
    out = _kill_rerun_compare("prep", lambda o: ["prep", "--embeddings", info["embeddings"], "--labels", info["labels"],
                                                 "--classes", CLASSES, "--chip", "32", "--shard-chips", "4", "--out", o],
                              tmp_path, ["meta.json"],
                              lambda a, b: all((a / q.name).read_bytes() == q.read_bytes() for q in b.glob("*-*")))
    assert len(list(out.glob("*.X.npy"))) > 2


def test_kill_predict(seg: dict[str, Path], tmp_path: Path) -> None:
    from geohpc.synth.seg import make_seg_scene

    info = make_seg_scene(tmp_path / "big", size=512, channels=4, seed=3)
    _kill_rerun_compare("predict", lambda o: ["predict", "--model", seg["model"], "--item", info["embeddings"], "--out", o,
                                              "--tile", "64", "--overlap", "16", "--device", "cpu"],
                        tmp_path, ["embeddings.tif", "embeddings.png"])


def test_kill_fit(seg: dict[str, Path], tmp_path: Path) -> None:
    import torch

    def same_weights(a: Path, b: Path) -> bool:
        wa = torch.load(a / "model.pt", map_location="cpu", weights_only=False)["model"]
        wb = torch.load(b / "model.pt", map_location="cpu", weights_only=False)["model"]
        return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)

    _kill_rerun_compare("fit", lambda o: ["fit", "--data", seg["prep"], "--out", o, *FIT], tmp_path, [], same_weights)


def test_kill_synth_seg(tmp_path: Path) -> None:
    _kill_rerun_compare("synth-seg", lambda o: ["synth-seg", "--out", o, "--size", "512", "--channels", "16"], tmp_path,
                        ["embeddings.tif", "labels.tif"])


def test_kill_synth_s12(tmp_path: Path) -> None:
    out = _kill_rerun_compare("synth-s12", lambda o: ["synth-s12", "--out", o, "--size", "96", "--s2-dates", "4",
                                                      "--s1-dates", "2"], tmp_path, ["truth.tif", "train_points.geojson"],
                              lambda a, b: all((a / q.relative_to(b)).read_bytes() == q.read_bytes()
                                               for q in (b / "cogs").rglob("*.tif")))
    assert (out / "items.json").is_file()


NEARLY_FULL: dict[str, Callable[[dict[str, Path], dict[str, Path], Path], list[object]]] = {
    "sample": lambda w, s, o: ["sample", "--points", w["train"], "--rasters", w["emb"], "--out", o / "x.parquet"],
    "train": lambda w, s, o: ["train", "--samples", w["samples"], "--out-dir", o, "--trials", "1", "--iterations", "20",
                              "--block-size", "200", "--min-per-class", "5"],
    "classify": lambda w, s, o: ["classify", "--model", w["model"], "--item", w["emb"], "--out-dir", o, "--confidence"],
    "validate": lambda w, s, o: ["validate", "--map", w["truth"], "--points", w["val"], "--truth", w["truth"], "--out-dir", o],
    "scene": lambda w, s, o: ["scene", "--out-dir", o, "--size", "64", "--bands", "8"],
    "prep": lambda w, s, o: ["prep", "--embeddings", s["emb"], "--labels", s["labels"], "--classes", CLASSES, "--chip", "16",
                             "--shard-chips", "2", "--out", o],
    "predict": lambda w, s, o: ["predict", "--model", s["model"], "--item", s["emb"], "--out", o, "--tile", "32",
                                "--overlap", "8"],
    "synth-seg": lambda w, s, o: ["synth-seg", "--out", o, "--size", "64", "--channels", "4"],
}


@pytest.mark.parametrize("leave", [24 << 10, 160 << 10], ids=["24KiB", "160KiB"])
@pytest.mark.parametrize("command", sorted(NEARLY_FULL))
def test_nearly_full_disk_is_all_or_nothing(world: dict[str, Path], seg: dict[str, Path], full_disk: Path,
                                            command: str, leave: int) -> None:
    """With a little room left a run either succeeds or fails in one line leaving nothing at all behind."""
    fill(full_disk, leave)
    out = full_disk / "out"
    before = snapshot(full_disk)
    r = run_geohpc(*NEARLY_FULL[command](world, seg, out))
    if r.returncode == 0:
        ok, why = not temporaries(full_disk), f"leftover temporaries {temporaries(full_disk)}"
    else:
        after = snapshot(full_disk)
        if command == "train":  # the Optuna journal is the study's resume state: its finished trials are kept
            after = {k: v for k, v in after.items() if not k.endswith(("study.journal", "/out/"))}
        why = one_line_error(r) or (f"left {sorted(set(after) - set(before))}" if after != before else "")
        ok = not why
    record("bad_input", command, f"nearly full disk ({leave >> 10} KiB free)", ok)
    assert ok, why
