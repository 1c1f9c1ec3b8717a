"""A real 2-process DDP fit (torchrun, gloo, CPU, bf16 autocast) on a tiny synthetic dataset.

The first run is jobs/fit.sbatch itself, stopped by SIGUSR1 to its shell (the walltime signal);
the second resumes it; the checks read what a
user reads: status.json, metrics.csv, curves.png, the per-rank weight digests, model.pt.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from geohpc.segment.fit import build_model  # noqa: E402
from geohpc.segment.fit.ckpt import load_model  # noqa: E402
from geohpc.segment.fit.cli import main as fit_main  # noqa: E402
from segment_helpers import REPO, env, make_prepped  # noqa: E402

ARGS = ["--arch", "mlp", "--width", "32", "--epochs", "4", "--batch", "4", "--lr", "0.01", "--log-every", "1",
        "--check-sync-every", "1", "--precision", "bf16", "--plot-every", "0"]


def _fit_job_until_usr1(root: Path, prep: Path) -> str:
    """Run jobs/fit.sbatch as Slurm would (bash, SLURM_* set, 2 gloo ranks); SIGUSR1 the shell after step 2."""
    manifest = root / "manifest.txt"
    manifest.write_text("run\n")
    e = env()
    e.update({"GEOHPC_REPO": str(REPO), "GEOHPC_STAGE": "fit", "GEOHPC_LAUNCH": sys.executable,
              "GEOHPC_MANIFEST": str(manifest), "GEOHPC_OUT": str(root), "GEOHPC_WORK": str(root),
              "SLURM_ARRAY_TASK_ID": "0", "SLURM_CPUS_PER_TASK": "2", "GPU_VENDOR": "none", "DATA": str(prep),
              "ARCH": "mlp", "EPOCHS": "4", "BATCH": "4",
              # the rest of ARGS; --stop-at-step is only a safety net should the signal come late
              "GEOHPC_ARGS": " ".join(ARGS[2:4] + ARGS[8:] + ["--stop-at-step", "20"])})
    p = subprocess.Popen(["bash", str(REPO / "jobs" / "fit.sbatch")], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, env=e, cwd=root)
    assert p.stdout is not None
    lines, deadline = [], time.monotonic() + 120
    for line in p.stdout:
        lines.append(line)
        if line.startswith("fit: step 2/") or time.monotonic() > deadline:
            break
    os.kill(p.pid, signal.SIGUSR1)  # what '#SBATCH --signal=B:USR1@300' does: signal the batch shell only
    lines += p.stdout.readlines()
    log = "".join(lines)
    assert p.wait(timeout=120) == 0, log[-3000:]
    return log


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("fit")
    prep = make_prepped(root)
    out = root / "run"
    first = _fit_job_until_usr1(root, prep)
    status1 = json.loads((out / "status.json").read_text())
    e = env()
    e["SLURM_RESTART_COUNT"] = "1"  # as in a requeued job
    second = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                             "-m", "geohpc", "fit", "--data", str(prep), "--out", str(out), *ARGS],
                            capture_output=True, text=True, env=e, timeout=180, cwd=REPO)
    assert second.returncode == 0, second.stderr[-3000:]
    return {"root": root, "prep": prep, "out": out, "first": first, "second": second, "status1": status1}


def test_job_usr1_checkpoints_and_stops(ddp_run: dict) -> None:
    log, s1 = ddp_run["first"], ddp_run["status1"]
    assert "== ranks 2" in log and "world 2 (gloo)" in log
    assert "SIGUSR1 (walltime near)" in log and "resubmit to resume" in log
    assert s1["state"] == "stopped" and 2 <= s1["step"] <= 20 and s1["world_size"] == 2
    assert not (ddp_run["out"] / "STOP").exists()


def test_stop_then_resume_continues_from_its_step(ddp_run: dict) -> None:
    k = ddp_run["status1"]["step"]
    err = ddp_run["second"].stderr
    assert f"at step {k} " in err and "SLURM_RESTART_COUNT=1" in err
    s2 = json.loads((ddp_run["out"] / "status.json").read_text())
    assert s2["state"] == "done" and s2["resumed_from"] == k and s2["step"] == s2["total_steps"]
    assert s2["slurm_restart_count"] == 1
    # the resumed run logged steps k+1.. only: no step was repeated or skipped
    steps = [int(line.split()[2].split("/")[0]) for line in err.splitlines() if line.startswith("fit: step ")]
    assert steps == list(range(k + 1, s2["total_steps"] + 1))


def test_step_fraction_is_one_under_bf16(ddp_run: dict) -> None:
    s = json.loads((ddp_run["out"] / "status.json").read_text())
    assert s["precision"] == "bf16" and s["step_fraction"] == 1.0 and s["steps_taken"] == s["steps_attempted"]
    assert "no GradScaler" in ddp_run["first"]
    rows = list(csv.DictReader((ddp_run["out"] / "metrics.csv").open()))
    assert [float(r["step_fraction"]) for r in rows] == [1.0] * 4


def test_loss_falls_and_curves_written(ddp_run: dict) -> None:
    rows = list(csv.DictReader((ddp_run["out"] / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert float(rows[-1]["train_loss"]) < 0.8 * float(rows[0]["train_loss"])
    assert float(rows[-1]["val_miou"]) > 0.5
    test = json.loads((ddp_run["out"] / "test_metrics.json").read_text())
    assert test["chips"] > 0 and test["test_miou"] > 0.5 and set(test["iou"]) == {"corn", "soy", "wheat", "alfalfa"}
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


def test_checkpoint_from_other_architecture_is_refused(ddp_run: dict, capsys: pytest.CaptureFixture[str]) -> None:
    before = (ddp_run["out"] / "last.pt").read_bytes()
    rc = fit_main(["--data", str(ddp_run["prep"]), "--out", str(ddp_run["out"]), "--arch", "unet",
                   "--width", "4", "--batch", "4", "--epochs", "5"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.strip().count("\n") == 0 and "different architecture" in err and "arch" in err
    assert (ddp_run["out"] / "last.pt").read_bytes() == before


def test_world_size_not_dividing_batch(ddp_run: dict, tmp_path: Path) -> None:
    # as torchrun would start rank 0 of 2 (the check runs before the process group is set up)
    e = env()
    e.update({"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1"})
    r = subprocess.run([sys.executable, "-m", "geohpc", "fit", "--data", str(ddp_run["prep"]), "--out",
                        str(tmp_path / "r"), "--batch", "3", "--arch", "mlp", "--width", "8"],
                       capture_output=True, text=True, env=e, timeout=60)
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "geohpc.fit: error: --batch 3 is not divisible by the world size 2" in r.stderr
    assert not (tmp_path / "r" / "last.pt").exists()


def test_sigusr1_saves_and_stops(ddp_run: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sig"

    def fire() -> None:  # SIGUSR1 to this process once the run has taken a few steps
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            st = out / "sync" / "rank0.jsonl"
            if st.exists() and len(st.read_text().splitlines()) >= 3:
                break
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGUSR1)

    t = threading.Thread(target=fire)
    t.start()
    rc = fit_main(["--data", str(ddp_run["prep"]), "--out", str(out), "--arch", "mlp", "--width", "8",
                   "--epochs", "500", "--batch", "4", "--check-sync-every", "1", "--plot-every", "0"])
    t.join()
    err = capsys.readouterr().err
    assert rc == 0
    s = json.loads((out / "status.json").read_text())
    assert s["state"] == "stopped" and 3 <= s["step"] < s["total_steps"]
    assert "SIGUSR1 received" in err
    assert (out / "last.pt").exists() and not (out / "model.pt").exists()
    load_model(out / "last.pt")  # the stopped checkpoint is whole and loadable
    assert not [f for f in out.iterdir() if ".tmp" in f.name]


def test_fp16_gradscaler_skips_are_counted(ddp_run: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = fit_main(["--data", str(ddp_run["prep"]), "--out", str(tmp_path / "f16"), "--arch", "mlp", "--width", "8",
                   "--epochs", "1", "--batch", "4", "--precision", "fp16", "--fp16-init-scale", "1e30"])
    err = capsys.readouterr().err
    assert rc == 0, err[-2000:]
    s = json.loads((tmp_path / "f16" / "status.json").read_text())
    assert s["steps_taken"] < s["steps_attempted"] and s["step_fraction"] < 1.0
    assert "were skipped by the GradScaler" in err and "+ GradScaler" in err


def test_resume_with_another_global_batch_is_refused(ddp_run: dict, capsys: pytest.CaptureFixture[str]) -> None:
    rc = fit_main(["--data", str(ddp_run["prep"]), "--out", str(ddp_run["out"]), "--arch", "mlp", "--width", "32",
                   "--batch", "8", "--epochs", "5"])
    err = capsys.readouterr().err
    assert rc == 2 and "trained with global --batch 4" in err and err.strip().count("\n") == 0
