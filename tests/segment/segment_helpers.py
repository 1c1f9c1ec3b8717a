"""Shared helpers for tests/segment: run geohpc modules in subprocesses, build a tiny prepared dataset."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CLASSES = "1:corn,5:soy,24:wheat,36:alfalfa"


def env() -> dict[str, str]:
    """The environment for child processes: this checkout's py/ first, no Slurm/geohpc leftovers."""
    e = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "GEOHPC_"))}
    e["PYTHONPATH"] = str(REPO / "py") + (os.pathsep + e["PYTHONPATH"] if e.get("PYTHONPATH") else "")
    e["OMP_NUM_THREADS"] = "1"
    e["GEOHPC_THREADS"] = "1"
    return e


def run_mod(module: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``python -m module args`` with this checkout on the path."""
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, env=env(),
                          timeout=timeout, cwd=REPO)


def torchrun(nproc: int, module: str, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """``python -m torch.distributed.run --standalone --nproc_per_node=N -m module args`` (real DDP)."""
    return run_mod("torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", "-m", module, *args,
                   timeout=timeout)


def make_prepped(root: Path, *, size: int = 96, channels: int = 6, chip: int = 16, dtype: str = "float32") -> Path:
    """A synthetic scene prepared into chips under ``root/prep`` (returns that folder)."""
    from geohpc.segment.prep import make_plan, parse_classes, prepare
    from geohpc.synth.seg import make_seg_scene

    info = make_seg_scene(root / "scene", size=size, channels=channels, seed=1)
    plan = make_plan([info["embeddings"]], info["labels"], parse_classes(CLASSES), chip=chip, block_chips=1)
    prepare(plan, root / "prep", shard_chips=8, x_dtype=dtype)
    return root / "prep"
