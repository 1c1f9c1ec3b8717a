"""Run configuration, process group, device, precision and the walltime signal.

Backend: "nccl" on CUDA and on ROCm (PyTorch's ROCm build maps it to RCCL), "gloo" on CPU.
Precision: bf16 autocast without a GradScaler (bf16 has fp32's exponent range: nothing to scale,
and ``scaler.step`` would silently skip steps on inf/NaN); fp16 autocast with a GradScaler;
fp32 without either.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from geohpc.errors import ConfigError

SYNC_BN_BELOW = 8  # per-GPU batch under which BatchNorm statistics are synchronised across ranks


@dataclass
class FitConfig:
    """Everything a fit run needs; see ``python -m geohpc fit --help`` for the meaning of each."""

    data: str
    out: str
    arch: str = "unet"
    width: int | None = None
    epochs: int = 10
    batch: int = 16
    lr: float | None = None
    warmup_frac: float = 0.05
    min_lr_frac: float = 0.01
    weight_decay: float | None = None
    precision: str = "bf16"
    loss: str = "ce"
    class_weights: str = "sqrt"
    ema_decay: float = 0.999
    ckpt_every: int = 200
    log_every: int = 20
    plot_every: int = 1
    workers: int = -1
    seed: int = 0
    device: str = "auto"
    stop_at_step: int = 0
    check_sync_every: int = 0
    augment: bool = True
    grad_clip: float = 1.0
    fp16_init_scale: float = 65536.0


@dataclass
class Runtime:
    """Where this process runs: rank, world size, device, autocast settings."""

    rank: int
    world: int
    local_rank: int
    local_world: int
    device: torch.device
    backend: str | None
    amp_dtype: torch.dtype | None

    @property
    def main(self) -> bool:
        """True on rank 0 (the one that writes files and logs)."""
        return self.rank == 0


def init_runtime(cfg: FitConfig) -> Runtime:
    """Read torchrun's RANK/WORLD_SIZE/LOCAL_RANK, check the batch, pick the device, init the process group."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    if cfg.batch < 1 or cfg.batch % world:
        raise ConfigError(f"--batch {cfg.batch} is not divisible by the world size {world}: "
                          f"use a multiple of {world} (e.g. --batch {max(1, cfg.batch // world) * world or world})")
    want = cfg.device
    if want == "auto":
        want = "cuda" if torch.cuda.is_available() else "cpu"
    if want == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("--device cuda but no GPU is visible (check --gpus / CUDA_VISIBLE_DEVICES / ROCR_VISIBLE_DEVICES)")
        device = torch.device("cuda", local_rank % max(1, torch.cuda.device_count()))
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    backend = None
    if world > 1:
        backend = "nccl" if device.type == "cuda" else "gloo"
        kwargs: dict[str, Any] = {"backend": backend}
        if device.type == "cuda":
            kwargs["device_id"] = device
        dist.init_process_group(**kwargs)
    threads = max(1, _cpu_threads() // max(1, local_world))
    torch.set_num_threads(threads)
    amp = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}.get(cfg.precision, "bad")
    if amp == "bad":
        raise ConfigError(f"--precision {cfg.precision!r}: choose bf16, fp16 or fp32")
    if amp is torch.bfloat16 and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError("this GPU has no bfloat16: use --precision fp16 (keeps a GradScaler) or fp32")
    return Runtime(rank, world, local_rank, local_world, device, backend, amp)


def _cpu_threads() -> int:
    """SLURM_CPUS_PER_TASK (or GEOHPC_THREADS), but never more than the CPUs this process may run on:
    oversubscribed intra-op threads were 6-10x slower on a shared VM (bench/RESULTS-train.md)."""
    from geohpc.util import cpu_threads

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        usable = os.cpu_count() or 1
    return max(1, min(cpu_threads(), usable))


def make_scaler(rt: Runtime, init_scale: float = 65536.0) -> torch.amp.GradScaler | None:
    """A GradScaler for the fp16 path only; bf16 and fp32 take every optimiser step unscaled."""
    if rt.amp_dtype is torch.float16:
        return torch.amp.GradScaler(rt.device.type, init_scale=init_scale)
    return None


def autocast(rt: Runtime) -> contextlib.AbstractContextManager:
    """The autocast context for this run (a no-op for fp32)."""
    if rt.amp_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=rt.device.type, dtype=rt.amp_dtype)


def wants_sync_bn(rt: Runtime, per_rank_batch: int) -> tuple[bool, str]:
    """Whether to convert BatchNorm to SyncBatchNorm, and why (for the log)."""
    if rt.world == 1:
        return False, "single process: plain BatchNorm"
    if per_rank_batch >= SYNC_BN_BELOW:
        return False, f"per-rank batch {per_rank_batch} >= {SYNC_BN_BELOW}: plain BatchNorm"
    if rt.device.type != "cuda":
        return False, (f"per-rank batch {per_rank_batch} < {SYNC_BN_BELOW} but SyncBatchNorm needs a GPU: "
                       "plain BatchNorm on CPU (DDP broadcasts rank 0's buffers)")
    return True, f"per-rank batch {per_rank_batch} < {SYNC_BN_BELOW}: SyncBatchNorm across {rt.world} ranks"


class StopFlag:
    """Set by SIGUSR1 (Slurm's ``--signal=USR1@300``) or by a stop file the job script touches."""

    def __init__(self, stop_file: Path | None):
        self.flag = False
        self.stop_file = stop_file
        with contextlib.suppress(ValueError):  # not the main thread (e.g. some test runners)
            signal.signal(signal.SIGUSR1, self._handler)

    def _handler(self, signum, frame) -> None:  # noqa: ARG002 - signal API
        self.flag = True  # only a flag: the loop saves at the next step boundary, never inside a handler
        print("fit: SIGUSR1 received: will checkpoint and stop at the next step", file=sys.stderr, flush=True)

    def requested(self) -> bool:
        """True once a stop was asked for here (signal or stop file)."""
        return self.flag or (self.stop_file is not None and self.stop_file.exists())


def agree(rt: Runtime, local: bool) -> bool:
    """All ranks agree on a boolean (True if any rank says True)."""
    if rt.world == 1:
        return local
    t = torch.tensor([1.0 if local else 0.0], device=rt.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def all_sum(rt: Runtime, t: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over ranks (returns it unchanged for one process)."""
    if rt.world > 1:
        t = t.to(rt.device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t
