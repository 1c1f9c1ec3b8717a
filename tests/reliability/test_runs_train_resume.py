"""A train killed with SIGKILL mid-study resumes its Optuna journal and reaches the uninterrupted run's best trial."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from relutil import record

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(400)]
REPO = Path(__file__).resolve().parents[2]
TRIALS = 12  # past TPE's 10 random start-up trials, so the resumed study's model-based proposals count too


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from geohpc.classify.points import read_points
    from geohpc.classify.sample import sample
    from geohpc.synth.scene import make_scene

    out = tmp_path_factory.mktemp("train-resume")
    sc = make_scene(out / "scene", size=128, bands=16, n_classes=4, train_points=600, val_points=30, block=64, seed=5,
                    separation=0.6)
    table = out / "samples.parquet"
    sample(read_points(sc["train_points"]), [Path(sc["embedding"])], table)
    return table


def _cmd(samples: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "geohpc", "train", "--samples", str(samples), "--out-dir", str(out),
            "--trials", str(TRIALS), "--iterations", "300", "--block-size", "300", "--seed", "4"]


def _complete(journal: Path) -> int:
    return journal.read_text().count('"state":1') if journal.exists() else 0  # TrialState.COMPLETE


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GEOHPC_", "SLURM_"))}
    return {**env, "PYTHONPATH": str(REPO / "py"), "GEOHPC_THREADS": "1"}


def test_killed_train_resumes_to_the_same_best_trial(samples: Path, tmp_path: Path) -> None:
    clean = subprocess.run(_cmd(samples, tmp_path / "clean"), env=_env(), capture_output=True, text=True, timeout=300)
    assert clean.returncode == 0, clean.stderr
    killed = tmp_path / "killed"
    proc = subprocess.Popen(_cmd(samples, killed), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 200
    try:
        while time.monotonic() < deadline and proc.poll() is None and _complete(killed / "study.journal") < 4:
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (killed / "model.cbm").exists()  # killed mid-study: nothing that looks finished
    rerun = subprocess.run(_cmd(samples, killed), env=_env(), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert "resumed study geohpc-train" in rerun.stderr
    a = json.loads((tmp_path / "clean" / "metrics.json").read_text())
    b = json.loads((killed / "metrics.json").read_text())
    same = (json.loads((tmp_path / "clean" / "best_params.json").read_text())
            == json.loads((killed / "best_params.json").read_text()) and a["best_value"] == b["best_value"])
    record("kill", "train", "kill -9 mid-study, rerun: same best params and value", same)
    assert same, (a, b)
    assert b["resumed"] is True and b["trials_complete"] == a["trials_complete"] == TRIALS
    assert a["resumed"] is False and a["trials_lost"] == 0
    assert b["trials_lost"] in (0, 1) and b["trials_running_or_stale"] == 0  # the dead trial is not left RUNNING
