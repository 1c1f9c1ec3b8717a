"""A real 2-process DDP fit (torchrun, gloo, CPU, bf16 autocast) on a tiny synthetic dataset.

One run is stopped at step 5 (as the walltime signal would) and resumed; the checks read what a
user reads: status.json, metrics.csv, curves.png, the per-rank weight digests, model.pt.
"""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from geohpc.fit import build_model  # noqa: E402
from geohpc.fit.ckpt import load_model  # noqa: E402
from train_helpers import env, make_prepped, run_mod, torchrun  # noqa: E402

ARGS = ["--arch", "mlp", "--width", "32", "--epochs", "4", "--batch", "4", "--lr", "0.01", "--log-every", "1",
        "--check-sync-every", "1", "--precision", "bf16"]


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("fit")
    prep = make_prepped(root)
    out = root / "run"
    first = torchrun(2, "geohpc.fit", "--data", str(prep), "--out", str(out), *ARGS, "--stop-at-step", "5")
    assert first.returncode == 0, first.stderr[-3000:]
    status1 = json.loads((out / "status.json").read_text())
    second = torchrun(2, "geohpc.fit", "--data", str(prep), "--out", str(out), *ARGS)
    assert second.returncode == 0, second.stderr[-3000:]
    return {"root": root, "prep": prep, "out": out, "first": first, "second": second, "status1": status1}


def test_stop_then_resume_continues_from_its_step(ddp_run: dict) -> None:
    s1 = ddp_run["status1"]
    assert s1["state"] == "stopped" and s1["step"] == 5 and s1["world_size"] == 2
    assert "resumed from" in ddp_run["second"].stderr and "at step 5" in ddp_run["second"].stderr
    s2 = json.loads((ddp_run["out"] / "status.json").read_text())
    assert s2["state"] == "done" and s2["resumed_from"] == 5 and s2["step"] == s2["total_steps"]
    # the resumed run logged steps 6.. only: no step was repeated
    steps = [int(line.split()[2].split("/")[0]) for line in ddp_run["second"].stderr.splitlines()
             if line.startswith("fit: step ")]
    assert steps and steps[0] == 6 and steps[-1] == s2["total_steps"]


def test_step_fraction_is_one_under_bf16(ddp_run: dict) -> None:
    s = json.loads((ddp_run["out"] / "status.json").read_text())
    assert s["precision"] == "bf16" and s["step_fraction"] == 1.0 and s["steps_taken"] == s["steps_attempted"]
    assert "no GradScaler" in ddp_run["first"].stderr
    rows = list(csv.DictReader((ddp_run["out"] / "metrics.csv").open()))
    assert [float(r["step_fraction"]) for r in rows] == [1.0] * 4


def test_loss_falls_and_curves_written(ddp_run: dict) -> None:
    rows = list(csv.DictReader((ddp_run["out"] / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert float(rows[-1]["train_loss"]) < 0.8 * float(rows[0]["train_loss"])
    assert float(rows[-1]["val_miou"]) > 0.5
    assert {"iou_corn", "iou_soy", "iou_wheat", "iou_alfalfa"} <= set(rows[0])
    png = (ddp_run["out"] / "curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_both_ranks_hold_equal_weights(ddp_run: dict) -> None:
    sync = ddp_run["out"] / "sync"
    r0 = [json.loads(x) for x in (sync / "rank0.jsonl").read_text().splitlines()]
    r1 = [json.loads(x) for x in (sync / "rank1.jsonl").read_text().splitlines()]
    assert len(r0) == len(r1) >= 10
    assert r0 == r1
    assert len({d["sha256"] for d in r0}) == len(r0)  # the weights did change from step to step


def test_checkpoint_loads_into_plain_model(ddp_run: dict) -> None:
    data = torch.load(ddp_run["out"] / "model.pt", map_location="cpu", weights_only=False)
    assert not [k for k in data["model"] if k.startswith(("module.", "_orig_mod."))]
    kw = data["model_kwargs"]
    plain = build_model(kw["arch"], kw["in_ch"], kw["n_classes"], kw["width"])
    plain.load_state_dict(data["model"], strict=True)
    # the EMA's BatchNorm statistics were copied from training, not left at their initial 0/1
    assert not torch.allclose(data["model"]["net.1.running_mean"], torch.zeros_like(data["model"]["net.1.running_mean"]))
    last = torch.load(ddp_run["out"] / "last.pt", map_location="cpu", weights_only=False)
    assert not [k for k in last["train_model"] if k.startswith("module.")]
    model, info = load_model(ddp_run["out"] / "model.pt")
    assert info["ignore_index"] == 255 and [c["value"] for c in info["classes"]] == [1, 5, 24, 36]
    assert model(torch.zeros(1, kw["in_ch"], 8, 8)).shape == (1, 4, 8, 8)


def test_checkpoint_from_other_architecture_is_refused(ddp_run: dict) -> None:
    before = (ddp_run["out"] / "last.pt").read_bytes()
    r = run_mod("geohpc.fit", "--data", str(ddp_run["prep"]), "--out", str(ddp_run["out"]), "--arch", "unet",
                "--width", "4", "--batch", "4", "--epochs", "5")
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "different architecture" in r.stderr and "arch" in r.stderr
    assert (ddp_run["out"] / "last.pt").read_bytes() == before


def test_world_size_not_dividing_batch(ddp_run: dict, tmp_path: Path) -> None:
    r = torchrun(2, "geohpc.fit", "--data", str(ddp_run["prep"]), "--out", str(tmp_path / "r"), "--batch", "3",
                 "--arch", "mlp", "--width", "8")
    assert r.returncode != 0
    assert "geohpc.fit: error: --batch 3 is not divisible by the world size 2" in r.stderr
    assert not (tmp_path / "r" / "last.pt").exists()


def test_sigusr1_saves_and_stops(ddp_run: dict, tmp_path: Path) -> None:
    out = tmp_path / "sig"
    p = subprocess.Popen([sys.executable, "-m", "geohpc.fit", "--data", str(ddp_run["prep"]), "--out", str(out),
                          "--arch", "mlp", "--width", "8", "--epochs", "500", "--batch", "4", "--log-every", "1"],
                         stderr=subprocess.PIPE, text=True, env=env())
    assert p.stderr is not None
    deadline = time.monotonic() + 60
    for line in p.stderr:
        if line.startswith("fit: step 3/") or time.monotonic() > deadline:
            break
    p.send_signal(signal.SIGUSR1)
    rest = p.stderr.read()
    assert p.wait(timeout=60) == 0
    s = json.loads((out / "status.json").read_text())
    assert s["state"] == "stopped" and 3 <= s["step"] < s["total_steps"]
    assert "SIGUSR1 received" in rest
    assert (out / "last.pt").exists() and not (out / "model.pt").exists()
    model, _ = load_model(out / "last.pt")  # the stopped checkpoint is whole and loadable
    assert not [f for f in out.iterdir() if ".tmp" in f.name]


def test_fp16_gradscaler_skips_are_counted(ddp_run: dict, tmp_path: Path) -> None:
    r = run_mod("geohpc.fit", "--data", str(ddp_run["prep"]), "--out", str(tmp_path / "f16"), "--arch", "mlp",
                "--width", "8", "--epochs", "1", "--batch", "4", "--precision", "fp16", "--fp16-init-scale", "1e30")
    assert r.returncode == 0, r.stderr[-2000:]
    s = json.loads((tmp_path / "f16" / "status.json").read_text())
    assert s["steps_taken"] < s["steps_attempted"] and s["step_fraction"] < 1.0
    assert "were skipped by the GradScaler" in r.stderr and "+ GradScaler" in r.stderr
