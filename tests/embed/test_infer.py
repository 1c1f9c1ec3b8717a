"""geohpc.infer + tessera_model: numpy/torch only, sampling, nodata, int8, bad models, shards, kill + resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from geohpc.embed import codec as embed_codec
from geohpc.embed import infer
from geohpc.embed import infer_workers as infer_parallel
from geohpc.embed import model as tm
from geohpc.errors import InputError
from testutil import make_patch

REPO = Path(__file__).resolve().parents[2]
BLOCKED = ("rasterio", "osgeo", "pyproj", "pandas", "geohpc.raster_io", "geohpc.progress")


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(REPO / "py"), GEOHPC_THREADS="1")


def test_infer_runs_with_rasterio_and_gdal_blocked(chain, demo_model, tmp_path) -> None:
    code = ("import sys\n"
            f"for m in {BLOCKED!r}: sys.modules[m] = None\n"
            "from geohpc.embed.infer import main\n"
            "rc = main(sys.argv[1:])\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('rasterio', 'osgeo', 'pyproj', 'affine')"
            " and sys.modules[m] is not None)\n"
            "assert not bad, bad\n"
            "sys.exit(rc)\n")
    r = subprocess.run([sys.executable, "-c", code, "--patches", str(chain["retile"]), "--manifest",
                        str(chain["retile"] / "patches.txt"), "--model", str(demo_model), "--out", str(tmp_path)],
                       capture_output=True, text=True, env=_env(), timeout=120)
    assert r.returncode == 0, r.stderr
    counts = json.loads(r.stdout.strip().splitlines()[-1])
    assert counts["done"] == 9
    emb = np.load(tmp_path / "block_r000000_c000000" / "r000000_c000000.npy")
    assert emb.shape == (16, 16, 128) and emb.dtype == np.float32 and np.isfinite(emb).all()


def test_sampling_takes_clear_observations_first() -> None:
    valid = np.zeros((5, 10), bool)
    valid[:, [1, 4, 7]] = True
    idx, ok = infer.sample_obs(valid, 4, seed=0, patch="p", pix=np.arange(5))
    assert idx.shape == (5, 4)
    assert ok.sum(axis=1).tolist() == [3] * 5
    assert all(set(row[ok_row]) == {1, 4, 7} for row, ok_row in zip(idx, ok, strict=True))
    assert np.all(np.diff(idx, axis=1) > 0)  # in time order
    idx2, ok2 = infer.sample_obs(np.ones((2, 3), bool), 5, 0, "p", np.arange(2))
    assert idx2[:, 3:].tolist() == [[-1, -1], [-1, -1]] and not ok2[:, 3:].any()
    a, _ = infer.sample_obs(np.ones((3, 50), bool), 8, 0, "p", np.arange(3))
    b, _ = infer.sample_obs(np.ones((1, 50), bool), 8, 0, "p", np.array([2]))
    np.testing.assert_array_equal(a[2], b[0])  # per-pixel: independent of the batch it is in
    c, _ = infer.sample_obs(np.ones((1, 50), bool), 8, 1, "p", np.array([2]))
    assert not np.array_equal(b, c)  # the seed matters


def test_all_masked_pixels_are_nodata_and_batching_does_not_matter(tmp_path, demo_model) -> None:
    make_patch(tmp_path / "b" / "p", 12, 10, seed=3)
    a = infer.load_patch(tmp_path / "b" / "p")
    a = {k: np.array(v) for k, v in a.items()}
    a["masks"][:, :4, :3] = 0
    for o in ("ascending", "descending"):
        a[f"sar_{o}"][:, :4, :3] = np.nan
    a["masks"][:, 5, 5] = 0  # S2 all cloudy but S1 valid: still an embedding
    model, cfg = infer.load_model(demo_model)
    e1 = infer.embed_patch(model, cfg, a, "b/p", batch=7)
    e2 = infer.embed_patch(model, cfg, a, "b/p", batch=4096)
    np.testing.assert_allclose(e1, e2, rtol=1e-5, atol=1e-5)
    assert np.isnan(e1[:4, :3]).all() and np.isfinite(e1[5, 5]).all()
    assert np.isfinite(e1).all(axis=-1).sum() == 12 * 10 - 12
    q, scale = embed_codec.quantize(e1)
    assert q.dtype == np.int8 and (q[:4, :3] == -128).all() and np.isnan(scale[:4, :3]).all()
    back = embed_codec.dequantize(q, scale)
    ok = np.isfinite(e1)
    assert np.abs(back[ok] - e1[ok]).max() <= np.nanmax(scale) / 2 + 1e-6 and np.isnan(back[~ok]).all()


def test_wholly_masked_patch_writes_nodata(tmp_path, demo_model) -> None:
    make_patch(tmp_path / "p" / "block_r000000_c000000" / "r000000_c000000", 8, 8, masked=True)
    (tmp_path / "m.txt").write_text("block_r000000_c000000/r000000_c000000\n")
    counts = infer.run_patches(["block_r000000_c000000/r000000_c000000"], tmp_path / "p", tmp_path / "o",
                               demo_model, dtype="int8")
    q = np.load(tmp_path / "o" / "block_r000000_c000000" / "r000000_c000000.npy")
    s = np.load(tmp_path / "o" / "block_r000000_c000000" / "r000000_c000000_scale.npy")
    assert counts["nodata_pixels"] == 64 and (q == -128).all() and np.isnan(s).all()


def test_wrong_models_are_clear_errors(tmp_path, demo_model) -> None:
    with pytest.raises(InputError, match="size mismatch"):
        infer.load_model(demo_model, config="small7m")
    bare = tmp_path / "bare.pt"
    torch.save(tm.build("demo").state_dict(), bare)
    with pytest.raises(InputError, match="--config"):
        infer.load_model(bare)
    infer.load_model(bare, config="demo")  # a bare state dict with its config loads

    class Wrong(torch.nn.Module):
        def forward(self, s2, d2, v2, s1, d1, v1):  # noqa: ANN001, ANN201
            return s2[:, 0, :2].repeat(1, 32)  # (B, 64): not an embedding

    ts = tmp_path / "wrong_ts.pt"
    torch.jit.save(torch.jit.trace(Wrong(), tm.example_inputs(tm.TesseraConfig())), str(ts))
    with pytest.raises(InputError, match=r"outputs \(2, 64\)"):
        infer.load_model(ts)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model")
    with pytest.raises(InputError, match="does not load"):
        infer.load_model(junk)
    good_ts = tmp_path / "good_ts.pt"
    tm.export_torchscript(tm.build("demo"), str(good_ts))
    m, cfg = infer.load_model(good_ts)
    assert cfg == tm.PRESETS["demo"]


def test_missing_patch_and_bad_manifest(chain, demo_model, tmp_path) -> None:
    man = tmp_path / "m.txt"
    man.write_text("block_r000000_c000000/r000000_c000099\n")
    with pytest.raises(InputError, match="patch folder missing"):
        infer.run_patches(infer.read_manifest_lines(chain["retile"], man, None), chain["retile"], tmp_path, demo_model)
    man.write_text("block_r000000_c000000/r000000_c000000\n\n")
    with pytest.raises(InputError, match=":2:"):
        infer.read_manifest_lines(chain["retile"], man, None)


def test_worker_envs_pin_one_device_each() -> None:
    envs = infer_parallel.worker_envs(8, "rocm", {"ROCR_VISIBLE_DEVICES": "0,1,2,3,4,5,6,7",
                                                   "HIP_VISIBLE_DEVICES": "0,1", "SLURM_JOB_ID": "42"})
    assert [e["ROCR_VISIBLE_DEVICES"] for e in envs] == [str(i) for i in range(8)]
    assert all("HIP_VISIBLE_DEVICES" not in e for e in envs) and envs[3]["MIOPEN_USER_DB_PATH"].endswith("42-3")
    envs = infer_parallel.worker_envs(4, "cuda", {})
    assert [e["CUDA_VISIBLE_DEVICES"] for e in envs] == ["0", "1", "2", "3"]
    with pytest.raises(Exception, match="lists 2 device"):
        infer_parallel.worker_envs(4, "cuda", {"CUDA_VISIBLE_DEVICES": "2,3"})


def _patches(root: Path, n: int, h: int = 24) -> Path:
    lines = []
    for i in range(n):
        line = f"block_r000000_c000000/r000000_c{i * h:06d}"
        make_patch(root / line, h, h, t=12, t1=4, seed=i)
        lines.append(line)
    (root / "m.txt").write_text("".join(f"{x}\n" for x in lines))
    return root / "m.txt"


def test_cpu_shards_match_single_process(tmp_path, demo_model) -> None:
    man = _patches(tmp_path / "p", 4)
    ref = infer.run_patches(man.read_text().split(), tmp_path / "p", tmp_path / "ref", demo_model)
    assert ref["done"] == 4
    r = subprocess.run([sys.executable, "-m", "geohpc", "infer", "--patches", str(tmp_path / "p"), "--manifest",
                        str(man), "--model", str(demo_model), "--out", str(tmp_path / "sh"), "--cpu-shards", "2",
                        "--threads", "2"], capture_output=True, text=True, env=_env(), timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.splitlines()[-1]) == {"done": 4, "skipped": 0, "nodata_pixels": 0, "workers": 2}
    assert "[0/2]" in r.stderr and "[1/2]" in r.stderr
    for line in man.read_text().split():
        np.testing.assert_array_equal(np.load(tmp_path / "sh" / f"{line}.npy"), np.load(tmp_path / "ref" / f"{line}.npy"))


def test_killed_run_resumes_only_unfinished_patches(tmp_path) -> None:
    model = tmp_path / "slow.pt"  # a bigger model, so a patch takes a noticeable time
    tm.save_checkpoint(tm.build(tm.TesseraConfig(d_model=64, layers=2, ff=128, n_obs_s2=24)), str(model))
    n = 8
    man = _patches(tmp_path / "p", n, h=32)
    out = tmp_path / "o"
    args = [sys.executable, "-m", "geohpc", "infer", "--patches", str(tmp_path / "p"), "--manifest", str(man),
            "--model", str(model), "--out", str(out), "--batch", "256"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and len(list(out.rglob("r*.npy"))) < 2 and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = {p: p.stat().st_mtime_ns for p in out.rglob("r*.npy")}
    assert 2 <= len(done_before) < n, "the run must be killed mid-way"
    r = subprocess.run(args, capture_output=True, text=True, env=_env(), timeout=120)
    assert r.returncode == 0, r.stderr
    counts = json.loads(r.stdout.splitlines()[-1])
    assert counts["skipped"] == len(done_before) and counts["done"] == n - len(done_before)
    assert all(p.stat().st_mtime_ns == t for p, t in done_before.items())  # finished patches not redone
    redone = {line.split()[1] for line in r.stderr.splitlines() if " px/s" in line}
    assert len(redone) == n - len(done_before)
    assert not redone & {str(p.relative_to(out))[:-4] for p in done_before}
    assert not [p for p in out.rglob(".*") if p.is_file()]  # no temp file of the killed run is left
    for p in out.rglob("r*.npy"):
        assert np.load(p).shape == (32, 32, 128)


def test_bf16_autocast_is_close_to_float32(tmp_path, demo_model) -> None:
    make_patch(tmp_path / "p", 6, 6, seed=5)
    a = infer.load_patch(tmp_path / "p")
    model, cfg = infer.load_model(demo_model)
    f32 = infer.embed_patch(model, cfg, a, "p")
    b16 = infer.embed_patch(model, cfg, a, "p", bf16=True)  # the GPU path's autocast, here on CPU
    assert b16.dtype == np.float32 and np.isfinite(b16).all()
    assert np.abs(b16 - f32).max() < 0.1 * np.abs(f32).max() and not np.array_equal(b16, f32)
