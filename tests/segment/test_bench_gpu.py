"""bench/bench_gpu.py at toy size on CPU: every figure it promises is printed and sane, so it cannot rot before a GPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_bench_gpu_toy_runs_and_reports_every_figure(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO / "py"), CUDA_VISIBLE_DEVICES="", HIP_VISIBLE_DEVICES="")
    out = tmp_path / "r.json"
    run = subprocess.run([sys.executable, str(REPO / "bench" / "bench_gpu.py"), "--toy", "--out", str(tmp_path), "--json", str(out)],
                         capture_output=True, text=True, env=env, timeout=240)
    assert run.returncode == 0, run.stderr[-2000:]
    r = json.loads(out.read_text())
    assert r["device"]["kind"] == "cpu" and r["device"]["torch"]
    assert {(i["model"], i["precision"]) for i in r["infer"]} == {(m, p) for m in ("demo", "small7m") for p in ("fp32", "bf16")}
    assert all(i["px_per_s"] > 0 for i in r["infer"])
    assert next(i for i in r["infer"] if i["model"] == "small7m")["params"] > 5_000_000  # the 7M model, not a stand-in
    assert [f["ranks"] for f in r["fit"]] == [1, 2]  # one rank, then DDP (gloo ranks on CPU)
    assert all(f["chips_per_s"] > 0 and f["step_fraction"] == 1.0 and f["precision"] == "bf16" for f in r["fit"])
    assert r["predict"]["tiles"] >= 4 and r["predict"]["tiles_per_s"] > 0
    for line in ("device:", "infer demo", "infer small7m", "fit unet bf16 on 1", "fit unet bf16 on 2", "predict:"):
        assert line in run.stdout


def test_bench_gpu_refuses_full_size_without_a_device(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO / "py"), CUDA_VISIBLE_DEVICES="", HIP_VISIBLE_DEVICES="")
    run = subprocess.run([sys.executable, str(REPO / "bench" / "bench_gpu.py"), "--out", str(tmp_path)],
                         capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 2 and "--toy" in run.stderr
