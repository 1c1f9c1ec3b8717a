"""train: a CatBoost crop classifier tuned by Optuna on the sample stage's Parquet table.

The Optuna study lives in a journal file, so several array tasks can tune in parallel and a killed job
resumes where it stopped (``--trials`` counts complete trials of the whole study). Trials are scored on a
spatially blocked split; the best parameters are then reported on that split and on a random split, and
the final model is fitted on all samples. ``model.cbm`` is written last and marks the stage done.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from geohpc.classify.classify import file_sha256
from geohpc.classify.metrics import confusion, summarise
from geohpc.classify.tuning import (
    fingerprint,
    label_map,
    load_samples,
    open_study,
    owner_tag,
    plot_history,
    plot_importance,
    random_split,
    recover_killed_trials,
    sample_files,
    spatial_split,
)
from geohpc.embed.rasters import work_path
from geohpc.errors import ConfigError, InputError, run_cli
from geohpc.guards import one_line_errors, refuse_overwrite, sweep_temporaries
from geohpc.util import atomic_path, cpu_threads, redact


def gpu_params(use_gpu: bool) -> dict[str, Any]:
    """CatBoost device settings: GPU only when asked for and the site has CUDA GPUs."""
    if not use_gpu:
        return {"task_type": "CPU"}
    vendor = os.environ.get("GPU_VENDOR", "")
    if vendor and vendor != "cuda":
        raise ConfigError(f"GPU=1 but this site's GPU_VENDOR is {vendor!r}: CatBoost trains on CUDA GPUs only; drop GPU=1 to train on CPU")
    if shutil.which("nvidia-smi") is None:
        raise ConfigError("GPU=1 but no NVIDIA GPU is visible here (no nvidia-smi); drop GPU=1 or submit to a CUDA GPU partition")
    return {"task_type": "GPU", "devices": "0"}


def _fit(params: dict[str, Any], X: np.ndarray, y: np.ndarray, Xv: np.ndarray | None = None, yv: np.ndarray | None = None) -> Any:
    from catboost import CatBoostClassifier

    # Plain boosting: CatBoost picks the much slower Ordered scheme on small data sets by default.
    model = CatBoostClassifier(loss_function="MultiClass", verbose=False, allow_writing_files=False, boosting_type="Plain",
                               border_count=64, **params)
    if Xv is not None:
        model.fit(X, y, eval_set=(Xv, yv), early_stopping_rounds=max(20, int(params.get("iterations", 300)) // 10), use_best_model=True)
    else:
        model.fit(X, y)
    return model


def _evaluate(model: Any, X: np.ndarray, y: np.ndarray, classes: list[Any]) -> dict[str, Any]:
    pred = np.asarray(model.predict(X)).astype(np.int64).ravel()
    return summarise(confusion(y, pred, len(classes)), classes)


def train(samples: str, out_dir: Path, *, trials: int = 20, iterations: int = 300, block_size: float = 1000.0,
          val_frac: float = 0.2, study_name: str = "geohpc-train", journal: Path | None = None, min_per_class: int = 10,
          drop_small: bool = False, use_gpu: bool = False, seed: int = 0, label_col: str = "label", task_index: int = 0) -> dict[str, Any]:
    """Tune, evaluate and fit the classifier; write model.cbm, labels.json, model.json, best_params.json,
    metrics.json, feature_importance.png and optimisation_history.png into ``out_dir``. Returns the metrics."""
    import optuna
    from optuna.trial import TrialState

    df, features, crss = load_samples(samples, label_col)
    classes, keep, excluded = label_map(df[label_col], samples, min_per_class, drop_small)
    df = df[keep].reset_index(drop=True)
    index = {str(c): i for i, c in enumerate(classes)}
    y = df[label_col].astype(str).map(index).to_numpy(np.int64)
    X = df[features].to_numpy(np.float32)
    group = df["crs"].astype(str).to_numpy() if "crs" in df.columns else np.zeros(len(df), dtype=object)
    sp_train = spatial_split(df["x"].to_numpy(float), df["y"].to_numpy(float), group, y, block_size, val_frac, seed)
    rn_train = random_split(y, val_frac, seed)
    device = gpu_params(use_gpu)
    base: dict[str, Any] = {"iterations": iterations, "thread_count": cpu_threads(), "random_seed": seed, **device}
    journal = journal or out_dir / "study.journal"
    fp = fingerprint(study_name, features, classes, len(df), block_size, val_frac, seed, iterations)
    study = open_study(journal, study_name, fp, seed + 7919 * task_index)
    lost = recover_killed_trials(study, task_index)
    owner = owner_tag(task_index)

    def objective(trial: optuna.Trial) -> float:
        trial.set_user_attr("owner", owner)  # a rerun after a kill finds its dead trial by this
        params = {**base, "depth": trial.suggest_int("depth", 3, 6),
                  "learning_rate": trial.suggest_float("learning_rate", 0.02, 0.3, log=True),
                  "l2_leaf_reg": trial.suggest_float("l2_leaf_reg", 1.0, 10.0, log=True)}
        model = _fit(params, X[sp_train], y[sp_train], X[~sp_train], y[~sp_train])
        trial.set_user_attr("best_iteration", int(model.get_best_iteration() or iterations - 1))
        res = _evaluate(model, X[~sp_train], y[~sp_train], classes)
        trial.set_user_attr("confusion", res["confusion"])  # the spatial-block report reuses the best trial's
        acc = res["overall_accuracy"]
        print(f"geohpc.train: trial {trial.number} accuracy {acc:.4f} {trial.params}", file=sys.stderr, flush=True)
        return float(acc)

    done = sum(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False))
    if done or lost:
        print(f"geohpc.train: resumed study {study_name}: {done} trial(s) complete, {lost} lost to a killed run "
              "(re-run)", file=sys.stderr, flush=True)
    if done < trials:
        stop = optuna.study.MaxTrialsCallback(trials, states=(TrialState.COMPLETE,))
        study.optimize(objective, n_trials=trials - done, callbacks=[stop])
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    best = study.best_trial
    best_params = {**best.params, "iterations": iterations}
    params = {**base, **best.params}
    random_model = _fit(params, X[rn_train], y[rn_train], X[~rn_train], y[~rn_train])
    final_iters = max(10, int(best.user_attrs.get("best_iteration", iterations - 1)) + 1)
    final = _fit({**params, "iterations": final_iters}, X, y)
    metrics = {
        "spatial_block": {**summarise(np.array(best.user_attrs["confusion"]), classes), "block_size": block_size,
                          "n_train": int(sp_train.sum()), "n_val": int((~sp_train).sum())},
        "random": {**_evaluate(random_model, X[~rn_train], y[~rn_train], classes), "n_train": int(rn_train.sum()), "n_val": int((~rn_train).sum())},
        "excluded_classes": excluded, "trials_complete": len(complete), "best_trial": best.number,
        # a resumed study says so, and how many in-flight trials the kill cost (they were run again)
        "resumed": bool(done or lost), "trials_complete_at_start": done, "trials_lost": lost,
        # a killed task leaves its in-flight trial RUNNING in the journal (journals have no heartbeat); it never counts
        "trials_running_or_stale": sum(t.state == TrialState.RUNNING for t in study.get_trials(deepcopy=False)),
        "best_value": best.value, "final_iterations": final_iters, "study": study_name, "journal": str(journal),
        "samples": samples, "n_samples": int(len(df)), "thread_count": base["thread_count"], "task_type": device["task_type"],
    }
    codes = {str(i + 1): c for i, c in enumerate(classes)}
    # every output goes to its temporary; they are renamed together at the end, model.cbm last (it marks the
    # stage done) and model.json just before it with the model's size and checksum, so a failed or killed
    # run leaves no output under a final name and the done-check tells a whole model from a truncated one
    # TASKS=k array tasks share these outputs: the sweep of a killed run's temporaries and the writes happen
    # under one lock on the folder, so no task ever removes a temporary another task is still writing
    with _folder_lock(out_dir), contextlib.ExitStack() as outs:
        for name in OUTPUT_FILES:
            sweep_temporaries(out_dir / name)
        tmps = {name: outs.enter_context(atomic_path(out_dir / name)) for name in OUTPUT_FILES[::-1]}
        plot_importance(features, np.asarray(final.get_feature_importance()), tmps["feature_importance.png"])
        plot_history(study, tmps["optimisation_history.png"])
        for name, doc in (("labels.json", {"labels": classes, "codes": codes}), ("best_params.json", best_params),
                          ("metrics.json", metrics)):
            tmps[name].write_text(json.dumps(doc, indent=2, sort_keys=True, default=str) + "\n")
        final.save_model(str(tmps["model.cbm"]))
        model_meta = {"features": features, "bands": len(features), "crs": crss, "labels": classes, "codes": codes,
                      "study": study_name, "fingerprint": fp, "model_bytes": tmps["model.cbm"].stat().st_size,
                      "model_sha256": file_sha256(tmps["model.cbm"])}
        tmps["model.json"].write_text(json.dumps(model_meta, indent=2, sort_keys=True, default=str) + "\n")
    return metrics


@contextlib.contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    """An exclusive flock on ``folder`` (skipped where the file system has no flock, e.g. some Lustre mounts)."""
    import fcntl

    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder, os.O_RDONLY)
    try:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


OUTPUT_FILES = ("feature_importance.png", "optimisation_history.png", "labels.json", "best_params.json", "metrics.json",
                "model.json", "model.cbm")


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m geohpc train --samples S --out-dir DIR [--trials N]``."""
    ap = argparse.ArgumentParser(prog="geohpc.train", description=__doc__.splitlines()[0])
    ap.add_argument("--samples", required=True, help="Parquet from geohpc.sample (file, directory or comma list)")
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--trials", type=int, default=20, help="complete Optuna trials the study should reach (all tasks together)")
    ap.add_argument("--iterations", type=int, default=300, help="CatBoost boosting iterations per fit (early stopping on validation)")
    ap.add_argument("--block-size", type=float, default=1000.0, help="spatial validation block side in map units (m)")
    ap.add_argument("--val-frac", type=float, default=0.2)
    ap.add_argument("--study", default="geohpc-train", help="Optuna study name")
    ap.add_argument("--journal", default="", help="Optuna journal file (default <out-dir>/study.journal)")
    ap.add_argument("--min-per-class", type=int, default=10)
    ap.add_argument("--drop-small-classes", action="store_true", help="exclude (and report) classes below --min-per-class")
    ap.add_argument("--gpu", action="store_true", help="train on a CUDA GPU (the site must have one)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--label-col", default="label")
    args = ap.parse_args(argv)

    def work() -> int:
        if args.trials < 1 or args.iterations < 1 or not 0 < args.val_frac < 1:
            raise ConfigError("--trials and --iterations must be >= 1 and --val-frac in (0, 1)")
        out = work_path(args.out_dir)
        task = int(os.environ.get("SLURM_ARRAY_TASK_ID", "0") or 0)
        with one_line_errors(out, fix="check --out-dir (writable, free space) and the samples", fresh_dirs=[out]):
            if out.exists() and not out.is_dir():
                raise InputError(f"{out}: --out-dir is a file; give a folder for the model")
            outputs = [out / name for name in OUTPUT_FILES]
            refuse_overwrite(sample_files(args.samples), outputs, fix="give --out-dir a folder of its own")
            m = _train_args(args, out, task)  # it sweeps the temporaries of its outputs right before writing them
        print(redact(f"geohpc.train: spatial-block OA {m['spatial_block']['overall_accuracy']:.3f}, random-split OA "
                     f"{m['random']['overall_accuracy']:.3f} after {m['trials_complete']} trials; model in {out / 'model.cbm'}"), file=sys.stderr)
        print(redact(json.dumps({"model": str(out / "model.cbm"), "spatial_oa": m["spatial_block"]["overall_accuracy"],
                                 "random_oa": m["random"]["overall_accuracy"], "trials": m["trials_complete"]})))
        return 0

    return run_cli(work, "geohpc.train")


def _train_args(args: argparse.Namespace, out: Path, task: int) -> dict[str, Any]:
    return train(args.samples, out, trials=args.trials, iterations=args.iterations, block_size=args.block_size,
                 val_frac=args.val_frac, study_name=args.study, journal=work_path(args.journal) if args.journal else None,
                 min_per_class=args.min_per_class, drop_small=args.drop_small_classes, use_gpu=args.gpu, seed=args.seed,
                 label_col=args.label_col, task_index=task)


if __name__ == "__main__":
    sys.exit(main())
