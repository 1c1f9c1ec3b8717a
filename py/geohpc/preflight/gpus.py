"""gpu-check: a GPU job that sees fewer devices than it asked for stops at once, never trains on CPU.

Run by jobs/lib.sh at the start of every GPU task on a GPU site, in the stage's own runtime (the container):
``python -m geohpc gpu-check --expect N``. On LUMI a missing bind makes PyTorch see no GPU ("No HIP GPUs
available", lumi.md); without this check the stage would fall back to CPU and run for days.
"""

from __future__ import annotations

import argparse
import os
import sys

from geohpc.errors import ConfigError, run_cli

VISIBLE = ("CUDA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES")


def visible_gpus() -> tuple[int, str]:
    """(devices torch sees, a short description of the backend)."""
    try:
        import torch
    except Exception as exc:  # noqa: BLE001 - a runtime without torch sees no GPU; say why
        return 0, f"torch not importable ({type(exc).__name__}: {exc})"
    backend = f"torch {torch.__version__}, " + (f"HIP {torch.version.hip}" if torch.version.hip else
                                               f"CUDA {torch.version.cuda}" if torch.version.cuda else "CPU build")
    return (torch.cuda.device_count() if torch.cuda.is_available() else 0), backend


def check_gpus(expect: int, seen: int | None = None, backend: str = "") -> str:
    """One line when ``seen`` >= ``expect``; a :class:`ConfigError` otherwise."""
    if seen is None:
        seen, backend = visible_gpus()
    env = " ".join(f"{k}={os.environ[k]}" for k in VISIBLE if k in os.environ) or "no *_VISIBLE_DEVICES set"
    if seen < expect:
        raise ConfigError(f"the job asked {expect} GPU(s) but {backend} sees {seen} ({env}): on LUMI check "
                          "CONTAINER_BIND (make preflight --only rocm_binds) and that --rocm is absent; on CUDA "
                          "sites check --nv; the stage would otherwise run on CPU")
    return f"gpu-check: {seen} GPU(s) visible, {expect} asked ({backend})"


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m geohpc gpu-check --expect N``."""
    ap = argparse.ArgumentParser(prog="geohpc gpu-check", description=__doc__.splitlines()[0])
    ap.add_argument("--expect", type=int, required=True, help="GPUs the job asked for on this node")
    args = ap.parse_args(argv)

    def work() -> int:
        print(check_gpus(args.expect), file=sys.stderr)
        return 0

    return run_cli(work, "geohpc gpu-check")


if __name__ == "__main__":
    sys.exit(main())
