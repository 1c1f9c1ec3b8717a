"""Plans of the embedding stages and their job scripts (argument rendering per site, real local runs)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from geohpc.core.stages import StageContext, get_stage, stage_names
from geohpc.errors import ConfigError
from testutil import job_values_for

REPO = Path(__file__).resolve().parents[2]
BBOX = "600000,4999520,600480,5000000"  # 48 x 48 px


def _ctx(stage: str, work: Path, **params: str) -> StageContext:
    return StageContext(stage=stage, site={}, params=params, repo=REPO, work=work)


def test_stages_are_registered_with_the_right_runtime() -> None:
    assert {"download", "stack", "retile", "infer", "stitch"} <= set(stage_names())
    infer = get_stage("infer")
    assert infer.gpu and infer.runtime == "container" and infer.after == ("retile",)
    assert get_stage("download").downloads and get_stage("stack").runtime == "venv"


def test_manifests_from_items_and_bbox(synth, tmp_path) -> None:
    ids = get_stage("download").build_manifest(_ctx("download", tmp_path, STAC=str(synth["items"])))
    assert len(ids) == 12 and ids[0].startswith("S1A_SYN_2024")
    blocks = get_stage("retile").build_manifest(_ctx("retile", tmp_path, BBOX=BBOX, BLOCK="32", PATCH="16"))
    assert blocks == ["block_r000000_c000000", "block_r000000_c000032", "block_r000032_c000000",
                      "block_r000032_c000032"]
    assert get_stage("infer").build_manifest(_ctx("infer", tmp_path, BBOX=BBOX, BLOCK="32", PATCH="16")) == blocks
    assert get_stage("stack").build_manifest(_ctx("stack", tmp_path)) == ["aoi"]
    with pytest.raises(ConfigError, match="BBOX"):
        get_stage("retile").build_manifest(_ctx("retile", tmp_path))
    with pytest.raises(ConfigError, match="PATCH"):
        get_stage("infer").build_manifest(_ctx("infer", tmp_path, BBOX=BBOX, BLOCK="16", PATCH="32"))


def test_infer_done_means_every_patch_of_the_block(tmp_path) -> None:
    st = get_stage("infer")
    ctx = _ctx("infer", tmp_path, BBOX=BBOX, BLOCK="32", PATCH="16")
    out = tmp_path / "outputs" / "infer" / "block_r000032_c000032"
    out.mkdir(parents=True)
    assert not st.done("block_r000032_c000032", ctx)
    np.save(out / "r000032_c000032.npy", np.zeros((16, 16, 128), np.float32))
    assert st.done("block_r000032_c000032", ctx)  # that block has one patch
    assert not st.done("block_r000000_c000000", ctx)
    assert st.output_bytes is not None and st.output_bytes("block_r000000_c000000", ctx) == 32 * 32 * 128 * 4
    assert get_stage("stitch").output_for("embeddings", _ctx("stitch", tmp_path)).name == "embeddings.tif"


def _job(script: str, work: Path, task: int, extra: dict[str, str], launch: str = "echo") -> subprocess.CompletedProcess[str]:
    man = work / f"{script}.manifest"
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), "GEOHPC_REPO": str(REPO),
           "GEOHPC_STAGE": script, "GEOHPC_MANIFEST": str(man), "GEOHPC_OFFSET": "0", "GEOHPC_WORK": str(work),
           "GEOHPC_OUT": str(work / "outputs" / script), "GEOHPC_LAUNCH": launch,
           "SLURM_ARRAY_TASK_ID": str(task), "SLURM_CPUS_PER_TASK": "2", **extra}
    params = {k: v for k, v in extra.items() if not k.startswith(("SLURM_", "GPU"))}
    env.update(job_values_for(script, work, **params))  # what make submit writes into job.env
    return subprocess.run(["bash", str(REPO / "jobs" / f"{script}.sbatch")], capture_output=True, text=True,
                          env=env, timeout=120)


@pytest.mark.parametrize(("site", "extra", "want"), [
    ("lumi", {"GPU_VENDOR": "rocm", "GEOHPC_GPUS": "8", "SLURM_CPUS_PER_TASK": "56"},
     "--gpus 8 --gpu-vendor rocm --threads 56"),
    ("betzy", {"GPU_VENDOR": "cuda", "GEOHPC_GPUS": "4", "SLURM_CPUS_PER_TASK": "32"},
     "--gpus 4 --gpu-vendor cuda --threads 32"),
    ("saga", {"GPU_VENDOR": "none", "GEOHPC_GPUS": "0", "SLURM_CPUS_PER_TASK": "128"},
     "--cpu-shards 32 --threads 128"),
    ("local", {"GPU_VENDOR": "none", "SLURM_CPUS_PER_TASK": "2"}, "--cpu-shards 1 --threads 2"),
])
def test_infer_job_picks_gpus_or_cpu_shards(tmp_path, site, extra, want) -> None:
    (tmp_path / "infer.manifest").write_text("block_r000000_c000000\n")
    r = _job("infer", tmp_path, 0, {"MODEL": "models/demo.pt", "EMB_DTYPE": "int8", **extra})
    assert r.returncode == 0, r.stderr
    cmd = next(line for line in r.stdout.splitlines() if line.startswith("-m geohpc infer"))
    assert want in cmd and "--block block_r000000_c000000" in cmd and "--dtype int8" in cmd
    assert f"--model {tmp_path}/models/demo.pt" in cmd and f"--patches {tmp_path}/outputs/retile" in cmd


def test_infer_job_without_model_fails_clearly(tmp_path) -> None:
    (tmp_path / "infer.manifest").write_text("block_r000000_c000000\n")
    r = _job("infer", tmp_path, 0, {})
    assert r.returncode == 2 and "MODEL is not set" in r.stderr


def test_download_stack_retile_infer_jobs_run_for_real(synth, chain, demo_model, tmp_path) -> None:
    launch = sys.executable  # the venv running the tests plays the site's venv
    ids = get_stage("download").build_manifest(_ctx("download", tmp_path, STAC=str(synth["items"])))
    (tmp_path / "download.manifest").write_text("\n".join(ids) + "\n")
    r = _job("download", tmp_path, 0, {"STAC": str(synth["items"]), "BBOX": BBOX}, launch)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "outputs" / "download" / ids[0] / "_DONE.json").exists()
    assert not (tmp_path / "outputs" / "download" / ids[1]).exists()  # one item a task
    r = _job("download", tmp_path, 0, {"STAC": "nope.json", "BBOX": BBOX}, launch)
    assert r.returncode == 2 and "ItemCollection not found" in r.stderr
    # stack from the session's downloads, then retile and infer one block, through the job scripts.
    (tmp_path / "stack.manifest").write_text("aoi\n")
    r = _job("stack", tmp_path, 0, {"DOWNLOAD_DIR": str(chain["download"])}, launch)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "outputs" / "stack" / "stack.json").exists()
    (tmp_path / "retile.manifest").write_text("block_r000000_c000000\nblock_r000000_c000032\n")
    r = _job("retile", tmp_path, 1, {"BLOCK": "32", "PATCH": "16"}, launch)
    assert r.returncode == 0, r.stderr
    lines = (tmp_path / "outputs" / "retile" / "block_r000000_c000032" / "patch_list.txt").read_text().split()
    assert lines == ["block_r000000_c000032/r000000_c000032", "block_r000000_c000032/r000016_c000032"]
    (tmp_path / "infer.manifest").write_text("block_r000000_c000032\n")
    r = _job("infer", tmp_path, 0, {"MODEL": str(demo_model), "GPU_VENDOR": "none"}, launch)
    assert r.returncode == 0, r.stderr
    emb = np.load(tmp_path / "outputs" / "infer" / "block_r000000_c000032" / "r000016_c000032.npy")
    assert emb.shape == (16, 16, 128)
    (tmp_path / "stitch.manifest").write_text("embeddings\n")
    r = _job("stitch", tmp_path, 0, {"EMB_DTYPE": "int8"})
    assert r.returncode == 0, r.stderr
    assert f"--out {tmp_path}/outputs/stitch/embeddings.tif --dtype int8" in r.stdout
