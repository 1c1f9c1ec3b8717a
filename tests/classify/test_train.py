"""train: outputs, label maps, spatial vs random metrics, Optuna journal resume (also after a kill), bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cls_fixtures import model_dir, samples, scene  # noqa: F401
from geohpc.classify import train as train_mod
from geohpc.classify.train import train

REPO = Path(__file__).resolve().parents[2]


def _complete(journal: Path, study: str = "geohpc-train") -> int:
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    from optuna.trial import TrialState

    s = optuna.load_study(study_name=study, storage=JournalStorage(JournalFileBackend(str(journal))))
    return sum(t.state == TrialState.COMPLETE for t in s.trials)


def test_outputs_label_map_and_metrics(model_dir):  # noqa: F811
    for name in ("model.cbm", "labels.json", "model.json", "best_params.json", "metrics.json",
                 "feature_importance.png", "optimisation_history.png", "study.journal"):
        assert (model_dir / name).stat().st_size > 0, name
    labels = json.loads((model_dir / "labels.json").read_text())
    assert labels["labels"] == sorted(["wheat", "maize", "barley", "rapeseed", "sunflower"])
    m = json.loads((model_dir / "metrics.json").read_text())
    assert m["trials_complete"] == 2 and m["spatial_block"]["block_size"] == 300
    for split in ("spatial_block", "random"):
        assert 0.5 < m[split]["overall_accuracy"] <= 1 and set(m[split]["per_class"]) == set(labels["labels"])
    assert (model_dir / "feature_importance.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    meta = json.loads((model_dir / "model.json").read_text())
    assert meta["bands"] == 16 and meta["crs"] == ["EPSG:32635"]


def test_predictions_come_back_as_original_integer_labels(samples, tmp_path):  # noqa: F811
    from catboost import CatBoostClassifier

    df = pd.read_parquet(samples)
    codes = {lab: 10 * (i + 1) for i, lab in enumerate(sorted(df["label"].unique()))}
    df["label"] = df["label"].map(codes).astype("int64")
    df.to_parquet(tmp_path / "int.parquet")
    train(str(tmp_path / "int.parquet"), tmp_path / "m", trials=1, iterations=20, block_size=300)
    labels = json.loads((tmp_path / "m" / "labels.json").read_text())["labels"]
    assert labels == [10, 20, 30, 40, 50]
    model = CatBoostClassifier().load_model(str(tmp_path / "m" / "model.cbm"))
    pred = np.asarray(labels)[np.asarray(model.predict(df.filter(regex=r"^b\d{3}$").to_numpy())).ravel().astype(int)]
    assert (pred == df["label"].to_numpy()).mean() > 0.5


def test_rerun_continues_the_same_study(samples, tmp_path):  # noqa: F811
    j = tmp_path / "study.journal"
    train(str(samples), tmp_path / "m", trials=1, iterations=20, block_size=300, journal=j)
    assert _complete(j) == 1
    m = train(str(samples), tmp_path / "m", trials=3, iterations=20, block_size=300, journal=j)
    assert _complete(j) == 3 and m["trials_complete"] == 3


def test_killed_job_resumes_its_study(samples, tmp_path):  # noqa: F811
    out, j = tmp_path / "m", tmp_path / "study.journal"
    cmd = [sys.executable, "-m", "geohpc", "train", "--samples", str(samples), "--out-dir", str(out), "--journal", str(j),
           "--trials", "50", "--iterations", "20", "--block-size", "300"]
    env = {**os.environ, "PYTHONPATH": str(REPO / "py")}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 90
    try:
        while time.monotonic() < deadline:
            if j.exists() and _complete(j) >= 1:
                break
            time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    done = _complete(j)
    assert done >= 1 and not (out / "model.cbm").exists()  # killed mid-study: nothing that looks finished
    cmd[cmd.index("--trials") + 1] = str(done + 1)
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert _complete(j) == done + 1 and (out / "model.cbm").exists()
    assert json.loads((out / "metrics.json").read_text())["trials_complete"] == done + 1


def _run(capsys, args):
    rc = train_mod.main(args)
    err = capsys.readouterr().err.strip().splitlines()
    return rc, [e for e in err if not e.startswith("geohpc.train: trial")]


def test_journal_from_another_study_or_data_is_refused(samples, tmp_path, capsys):  # noqa: F811
    j = tmp_path / "j.journal"
    base = ["--samples", str(samples), "--out-dir", str(tmp_path / "m"), "--journal", str(j), "--trials", "1", "--iterations", "10",
            "--block-size", "300"]
    assert _run(capsys, [*base, "--study", "first"])[0] == 0
    (tmp_path / "m" / "model.cbm").unlink()
    rc, err = _run(capsys, [*base, "--study", "second"])
    assert rc == 2 and len(err) == 1 and "belongs to study first" in err[0]
    rc, err = _run(capsys, [*base, "--study", "first", "--block-size", "500"])
    assert rc == 2 and len(err) == 1 and "tuned on other samples or settings" in err[0]
    assert not (tmp_path / "m" / "model.cbm").exists()


@pytest.mark.parametrize("case, message", [
    ("single_class", "only one class"),
    ("small_class", "fewer than 10 samples: tiny (3)"),
    ("empty_label", "NaN or empty label"),
    ("missing_label", "no label column 'crop'"),
])
def test_bad_samples_exit_2_one_line_nothing_written(samples, tmp_path, capsys, case, message):  # noqa: F811
    df = pd.read_parquet(samples)
    extra: list[str] = []
    if case == "single_class":
        df["label"] = "wheat"
    elif case == "small_class":
        df.loc[df.index[:3], "label"] = "tiny"
    elif case == "empty_label":
        df.loc[df.index[5], "label"] = " "
    else:
        extra = ["--label-col", "crop"]
    df.to_parquet(tmp_path / "bad.parquet")
    out = tmp_path / "m"
    rc, err = _run(capsys, ["--samples", str(tmp_path / "bad.parquet"), "--out-dir", str(out), "--trials", "1", "--iterations", "10", *extra])
    assert rc == 2 and len(err) == 1 and message in err[0], err
    assert not out.exists() or not any(out.iterdir())


def test_small_class_can_be_excluded_explicitly(samples, tmp_path):  # noqa: F811
    df = pd.read_parquet(samples)
    df.loc[df.index[:3], "label"] = "tiny"
    df.to_parquet(tmp_path / "s.parquet")
    m = train(str(tmp_path / "s.parquet"), tmp_path / "m", trials=1, iterations=10, block_size=300, drop_small=True)
    assert m["excluded_classes"] == {"tiny": 3}
    assert "tiny" not in json.loads((tmp_path / "m" / "labels.json").read_text())["labels"]


def test_gpu_request_without_cuda_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("GPU_VENDOR", "rocm")
    with pytest.raises(Exception, match="CUDA GPUs only"):
        train_mod.gpu_params(True)
    assert train_mod.gpu_params(False) == {"task_type": "CPU"}


def test_parallel_tasks_share_one_study(samples, tmp_path):  # noqa: F811
    out, j = tmp_path / "m", tmp_path / "study.journal"
    env = {**os.environ, "PYTHONPATH": str(REPO / "py")}
    procs = []
    for task in range(2):
        cmd = [sys.executable, "-m", "geohpc", "train", "--samples", str(samples), "--out-dir", str(out), "--journal", str(j),
               "--trials", "4", "--iterations", "15", "--block-size", "300"]
        procs.append(subprocess.Popen(cmd, env={**env, "SLURM_ARRAY_TASK_ID": str(task)}, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE, text=True))
    errs = [p.communicate(timeout=180)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    assert 4 <= _complete(j) <= 5  # each task stops once the study holds 4 complete trials
    assert (out / "model.cbm").exists()


def test_a_trial_killed_before_it_was_tagged_is_recovered(tmp_path: Path) -> None:
    """A kill between a trial's creation and its owner tag leaves an untagged RUNNING trial: it is marked FAIL;
    a live task's tagged trial and another task's are left alone."""
    from geohpc.classify.tuning import open_study, owner_tag, recover_killed_trials
    from optuna.trial import TrialState

    study = open_study(tmp_path / "s.journal", "s", "fp", 0)
    untagged = study.ask()
    other = study.ask()
    other.set_user_attr("owner", {**owner_tag(1), "host": "elsewhere"})
    mine_live = study.ask()
    mine_live.set_user_attr("owner", {**owner_tag(0), "pid": 1})  # pid 1 is alive on any host
    assert recover_killed_trials(study, 0, grace_s=0.05) == 1
    states = {t.number: t.state for t in study.get_trials()}
    assert states == {untagged.number: TrialState.FAIL, other.number: TrialState.RUNNING,
                      mine_live.number: TrialState.RUNNING}
