"""The synthetic scene end to end (scene -> sample -> train -> classify -> validate) and the stage plans."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from geohpc.classify.classify import classify
from geohpc.classify.points import read_points
from geohpc.classify.sample import sample
from geohpc.classify.train import train
from geohpc.classify.validate import validate
from geohpc.core.stages import StageContext, get_stage, stage_names
from geohpc.errors import ConfigError
from geohpc.synth.scene import make_scene


def test_synthetic_scene_end_to_end_accuracy_above_0_9(tmp_path):
    sc = make_scene(tmp_path / "scene", size=256, n_classes=6, train_points=600, val_points=300, seed=11)
    import rasterio

    with rasterio.open(sc["embedding"]) as ds:
        assert (ds.count, ds.crs.to_epsg(), ds.block_shapes[0], ds.dtypes[0]) == (128, 32635, (256, 256), "float32")
    labels = {f["properties"]["label"] for f in json.loads(Path(sc["train_points"]).read_text())["features"]}
    assert len(labels) == 6 and all(isinstance(v, str) for v in labels)
    sample(read_points(sc["train_points"]), [Path(sc["embedding"])], tmp_path / "samples.parquet")
    m = train(str(tmp_path / "samples.parquet"), tmp_path / "model", trials=2, iterations=100, block_size=500)
    assert m["spatial_block"]["overall_accuracy"] > 0.8
    for i in range(2):
        classify(tmp_path / "model", f"{sc['embedding']}::{i}/2", tmp_path / "map")
    res = validate(str(tmp_path / "map"), tmp_path / "report", points=Path(sc["val_points"]), truth=Path(sc["truth"]))
    assert res["points"]["overall_accuracy"] > 0.9, res["points"]["overall_accuracy"]
    assert res["truth"]["overall_accuracy"] > 0.9
    assert res["points"]["kappa"] > 0.85


def _ctx(tmp_path: Path, stage: str, **params: str) -> StageContext:
    return StageContext(stage=stage, site={}, params=params, repo=Path(__file__).resolve().parents[2], work=tmp_path)


def test_stage_plans_build_manifests_and_outputs(tmp_path):
    assert {"scene", "sample", "train", "classify", "validate"} <= set(stage_names())
    sc = get_stage("scene")
    assert sc.build_manifest(_ctx(tmp_path, "scene")) == ["demo"]
    assert sc.output_for("demo", _ctx(tmp_path, "scene")) == tmp_path / "outputs/scene/demo/scene.json"
    sa = get_stage("sample")
    ctx = _ctx(tmp_path, "sample", POINTS="p.geojson", RASTERS="r.tif")
    assert sa.build_manifest(ctx) == ["samples"] and sa.output_for("samples", ctx) == tmp_path / "outputs/sample/samples.parquet"
    tr = get_stage("train")
    ctx = _ctx(tmp_path, "train", SAMPLES="outputs/sample", TASKS="3")
    assert tr.build_manifest(ctx) == ["tune-000", "tune-001", "tune-002"]
    assert {tr.output_for(i, ctx) for i in tr.build_manifest(ctx)} == {tmp_path / "outputs/train/model.cbm"}
    (tmp_path / "rasters").mkdir()
    for name in ("a.tif", "b.tif", "a_scale.tif"):
        (tmp_path / "rasters" / name).touch()
    cl = get_stage("classify")
    ctx = _ctx(tmp_path, "classify", RASTERS="rasters", MODEL="outputs/train", SHARDS="2")
    items = cl.build_manifest(ctx)
    assert items == [f"{tmp_path}/rasters/a.tif::0/2", f"{tmp_path}/rasters/a.tif::1/2",
                     f"{tmp_path}/rasters/b.tif::0/2", f"{tmp_path}/rasters/b.tif::1/2"]
    assert cl.output_for(items[1], ctx) == tmp_path / "outputs/classify/a_shard001of002.tif"
    assert not cl.done(items[1], ctx)
    (tmp_path / "outputs/classify").mkdir(parents=True)
    (tmp_path / "outputs/classify/a_shard001of002.empty").touch()
    assert cl.done(items[1], ctx)
    va = get_stage("validate")
    assert va.build_manifest(_ctx(tmp_path, "validate", POINTS="v.geojson")) == ["report"]


@pytest.mark.parametrize("stage, params, key", [
    ("sample", {"RASTERS": "r.tif"}, "POINTS"),
    ("train", {}, "SAMPLES"),
    ("classify", {"MODEL": "m"}, "RASTERS"),
    ("validate", {}, "POINTS"),
])
def test_plans_name_the_missing_parameter(tmp_path, stage, params, key):
    with pytest.raises(ConfigError, match=key):
        get_stage(stage).build_manifest(_ctx(tmp_path, stage, **params))


def test_job_scripts_follow_the_template(repo):
    for stage in ("scene", "sample", "train", "classify", "validate"):
        text = (repo / "jobs" / f"{stage}.sbatch").read_text()
        head = [ln for ln in text.splitlines()[1:] if ln.startswith("#SBATCH")]
        assert head[0] == f"#SBATCH --job-name={stage}" and "#SBATCH --output=logs/%x_%A_%a.out" in head
        assert f"run_py {stage}" in text and "$" not in "".join(head)


def _make(*args: str):
    import subprocess

    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/root"}
    return subprocess.run(["make", "-s", *args], cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.parametrize("stage, params, needles", [
    ("train", ["SAMPLES=outputs/sample", "TASKS=4", "TRIALS=40"], ["--array=0-3", "jobs/train.sbatch", "export TRIALS=40"]),
    ("classify", ["MODEL=outputs/train", "RASTERS=/scratch/emb/a.tif,/scratch/emb/b.tif", "SHARDS=3"],
     ["--array=0-5", "jobs/classify.sbatch", "export SHARDS=3"]),
    ("sample", ["POINTS=p.gpkg", "RASTERS=emb.vrt"], ["--array=0", "export POINTS=/scratch/project_465002500/romcrop/p.gpkg"]),
])
def test_dry_run_on_lumi_renders_the_array(stage, params, needles):
    proc = _make("submit", f"STAGE={stage}", "SITE=lumi", "DRY_RUN=1", *params)
    assert proc.returncode == 0, proc.stderr
    for needle in needles:
        assert needle in proc.stdout, (needle, proc.stdout)
