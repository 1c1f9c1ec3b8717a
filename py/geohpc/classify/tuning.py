"""Helpers for geohpc.train: sample loading, label maps, spatially blocked splits, the Optuna journal, plots."""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from geohpc.embed.rasters import work_path
from geohpc.errors import ConfigError, InputError

FEATURE_RE = re.compile(r"^b\d{3}$")


def sample_files(spec: str) -> list[Path]:
    """The Parquet files a SAMPLES value names (a file, a directory of ``*.parquet`` or a comma list)."""
    files: list[Path] = []
    for part in [s.strip() for s in spec.split(",") if s.strip()]:
        p = work_path(part)
        if p.is_dir():
            files += sorted(q for q in p.glob("*.parquet") if not q.name.startswith("."))
        elif p.is_file():
            files.append(p)
        else:
            raise InputError(f"{p}: samples not found (give SAMPLES=<file.parquet or dir> from the sample stage)")
    if not files:
        raise InputError(f"{spec}: no .parquet samples there (run the sample stage first)")
    return files


def load_samples(spec: str, label_col: str = "label") -> tuple[pd.DataFrame, list[str], list[str]]:
    """Read sample Parquet files (a file, a directory of ``*.parquet`` or a comma list): ``(df, features, crs list)``."""
    import pyarrow.parquet as pq

    files = sample_files(spec)
    frames, crss = [], set()
    for f in files:
        try:
            t = pq.read_table(f)
        except Exception as exc:  # pyarrow raises several types for a bad file
            raise InputError(f"{f}: not a readable Parquet file ({exc}); re-run the sample stage") from None
        meta = json.loads((t.schema.metadata or {}).get(b"geohpc", b"{}"))
        crss.update(meta.get("crs", []))
        frames.append(t.to_pandas())
    df = pd.concat(frames, ignore_index=True)
    if len(df) == 0:
        raise InputError(f"{', '.join(map(str, files))}: 0 samples (the table has no rows); re-run sample with points on the rasters")
    if label_col not in df.columns:
        raise InputError(f"{files[0]}: no label column {label_col!r}; columns are {', '.join(c for c in df.columns if not FEATURE_RE.match(c))} (pass LABEL_COL=)")
    features = [c for c in df.columns if FEATURE_RE.match(c)]
    if not features:
        raise InputError(f"{files[0]}: no band columns b001..; give the output of geohpc.sample")
    if "crs" in df.columns:
        crss.update(df["crs"].dropna().unique().tolist())
    return df, features, sorted(crss)


def label_map(labels: pd.Series, src: str, min_per_class: int, drop_small: bool) -> tuple[list[Any], np.ndarray, dict[str, int]]:
    """Map labels to indices 0..K-1: ``(classes, mask of rows kept, excluded {label: count})``.

    NaN/empty labels, one class, or classes below ``min_per_class`` samples are errors naming the problem;
    with ``drop_small`` the small classes are excluded and reported instead.
    """
    bad = labels.isna() | labels.astype(str).str.strip().isin(["", "nan", "NaN", "None"])
    if bad.any():
        raise InputError(f"{src}: {int(bad.sum())} samples have a NaN or empty label; fix the points and re-run sample")
    counts = labels.value_counts()
    small = {str(k): int(v) for k, v in counts.items() if v < min_per_class}
    if small and not drop_small:
        names = ", ".join(f"{k} ({v})" for k, v in small.items())
        raise InputError(f"{src}: classes with fewer than {min_per_class} samples: {names}; add points, merge them, "
                         "or pass --drop-small-classes (DROP_SMALL=1) to exclude them")
    keep = ~labels.astype(str).isin(list(small))
    classes = sorted(labels[keep].unique().tolist(), key=lambda v: (str(type(v)), v))
    if len(classes) < 2:
        raise InputError(f"{src}: only one class ({classes[0] if classes else 'none'}) to train on; a classifier needs at least two")
    return [c.item() if hasattr(c, "item") else c for c in classes], keep.to_numpy(), small


def spatial_split(x: np.ndarray, y: np.ndarray, group: np.ndarray, cls: np.ndarray, block: float, val_frac: float, seed: int) -> np.ndarray:
    """Train mask for a spatially blocked split: whole ``block`` x ``block`` squares go to validation.

    Blocks are drawn at random until about ``val_frac`` of the points are in validation; a class left with
    no training point gets one of its blocks back, so every class can be learnt.
    """
    if block <= 0:
        raise ConfigError(f"--block-size {block}: give a positive block size in map units (metres)")
    keys = pd.Series(list(zip(group, np.floor(x / block).astype(np.int64), np.floor(y / block).astype(np.int64), strict=True)))
    block_id = pd.factorize(keys)[0]
    rng = np.random.default_rng(seed)
    order = rng.permutation(block_id.max() + 1)
    sizes = np.bincount(block_id)
    val_blocks: list[int] = []
    target = val_frac * len(x)
    n_val = 0
    for b in order:
        if n_val >= target:
            break
        val_blocks.append(int(b))
        n_val += sizes[b]
    train = ~np.isin(block_id, val_blocks)
    for k in np.unique(cls):
        if not train[cls == k].any():
            give_back = block_id[(cls == k)][0]
            train[block_id == give_back] = True
    if train.all() or not train.any():
        raise InputError(f"spatial split with blocks of {block} m leaves no validation or no training points; "
                         "give a smaller BLOCK_SIZE")
    return train


def random_split(cls: np.ndarray, val_frac: float, seed: int) -> np.ndarray:
    """Train mask for a stratified random split (each class keeps at least one training point)."""
    rng = np.random.default_rng(seed)
    train = np.ones(len(cls), dtype=bool)
    for k in np.unique(cls):
        idx = rng.permutation(np.flatnonzero(cls == k))
        n_val = min(len(idx) - 1, int(round(val_frac * len(idx))))
        train[idx[:n_val]] = False
    return train


def fingerprint(study: str, features: list[str], classes: list[Any], n: int, block: float, val_frac: float, seed: int, iterations: int) -> str:
    """A short hash of what makes trials comparable: features, classes, data size and split settings."""
    doc = json.dumps({"study": study, "features": features, "classes": [str(c) for c in classes], "n": n,
                      "block": block, "val_frac": val_frac, "seed": seed, "iterations": iterations}, sort_keys=True)
    return hashlib.sha256(doc.encode()).hexdigest()[:16]


def open_study(journal: Path, name: str, fp: str, seed: int) -> Any:
    """Create or resume study ``name`` in the journal file; a journal of another study or data is an error."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    journal.parent.mkdir(parents=True, exist_ok=True)
    try:
        storage = JournalStorage(JournalFileBackend(str(journal)))
        names = optuna.study.get_all_study_names(storage)
    except Exception as exc:  # a corrupt or foreign file
        raise InputError(f"{journal}: not an Optuna journal ({type(exc).__name__}); move it away or give another JOURNAL=") from None
    if names and name not in names:
        raise InputError(f"{journal}: journal belongs to study {', '.join(names)!s}, not {name!r}; give STUDY={names[0]} to "
                         "resume it, or a new JOURNAL= path for this study")
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize", load_if_exists=True)
    # Each trial's draws depend on the seed and the number of complete trials only: a killed study that is
    # resumed proposes the same next trial as an uninterrupted one (parallel tasks differ by their seed).
    study.sampler = resumable_sampler(seed)
    have = study.user_attrs.get("fingerprint")
    if have is None:
        study.set_user_attr("fingerprint", fp)
    elif have != fp:
        raise InputError(f"{journal}: study {name!r} was tuned on other samples or settings (fingerprint {have} != {fp}); "
                         "give a new STUDY= or JOURNAL= for this data")
    return study


def resumable_sampler(seed: int) -> Any:
    """A TPE sampler reseeded before every trial from ``seed`` and the count of complete trials.

    Optuna's own seeded sampler draws from one stream for the life of a process, so a study resumed after
    a kill would propose other trials than an uninterrupted run; this one proposes the same ones.
    """
    import optuna
    from optuna.trial import TrialState

    class ResumableTPESampler(optuna.samplers.TPESampler):
        def before_trial(self, study: Any, trial: Any) -> None:
            n = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
            draw = (seed * 1_000_003 + n) % (2**32)
            self._rng.rng.seed(draw)
            self._random_sampler._rng.rng.seed(draw)
            super().before_trial(study, trial)

    return ResumableTPESampler(seed=seed)


def owner_tag(task_index: int) -> dict[str, Any]:
    """Who runs a trial (stored on it): the array task, the host and the process."""
    return {"task": task_index, "host": socket.gethostname(), "pid": os.getpid()}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover_killed_trials(study: Any, task_index: int, grace_s: float = 2.0) -> int:
    """Mark FAIL the RUNNING trials a killed earlier run of this task left behind; return how many (lost).

    A trial is this task's dead one when its owner is the same array task and it ran on another host
    (Slurm runs one instance of an array task at a time) or its process is gone. Other tasks' trials,
    still running in parallel, are left alone. A trial with no owner at all was killed between its creation
    and its first line (a live run tags its trial within milliseconds): one still untagged after ``grace_s``
    is dead too.
    """
    from optuna.trial import TrialState

    def running() -> list[Any]:
        return study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))

    dead: list[int] = []
    for t in running():
        owner = t.user_attrs.get("owner")
        if not isinstance(owner, dict) or owner.get("task") != task_index:
            continue
        if owner.get("host") == socket.gethostname() and _alive(int(owner.get("pid", 0))) and owner.get("pid") != os.getpid():
            continue
        dead.append(t._trial_id)
    if any("owner" not in t.user_attrs for t in running()):
        time.sleep(grace_s)
        dead += [t._trial_id for t in running() if "owner" not in t.user_attrs]
    for trial_id in dead:
        study._storage.set_trial_state_values(trial_id, TrialState.FAIL)
    return len(dead)


def plot_history(study: Any, path: Path) -> None:
    """Optimisation-history PNG: each complete trial's value and the best so far."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.trial import TrialState

    trials = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    nums = [t.number for t in trials]
    vals = [t.value for t in trials]
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.plot(nums, vals, "o", label="trial (spatial-block accuracy)")
    ax.plot(nums, np.maximum.accumulate(vals) if vals else [], "-", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel("validation accuracy")
    ax.set_title(f"Optuna study {study.study_name}")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


def plot_importance(names: list[str], values: np.ndarray, path: Path, top: int = 25) -> None:
    """Feature-importance PNG of the ``top`` bands."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = np.argsort(values)[::-1][:top]
    fig, ax = plt.subplots(figsize=(6, 0.25 * len(order) + 1), dpi=100)
    ax.barh([names[i] for i in order][::-1], values[order][::-1], color="#3b7dd8")
    ax.set_xlabel("CatBoost feature importance")
    ax.set_title(f"Top {len(order)} bands")
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
