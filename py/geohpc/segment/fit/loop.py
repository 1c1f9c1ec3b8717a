"""The training loop: DDP, autocast, EMA, cosine schedule, checkpoints, resume, validation, metrics."""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader

from geohpc.errors import ConfigError, InputError
from geohpc.segment.fit import ckpt
from geohpc.segment.fit.data import ResumableSampler, ShardChips, load_meta
from geohpc.segment.fit.ema import EMA, unwrap
from geohpc.segment.fit.metrics import (
    append_csv,
    class_weights,
    confusion,
    iou_from_confusion,
    plot_curves,
    seg_loss,
)
from geohpc.segment.fit.model import ARCH_DEFAULTS, UNET_LEVELS, build_model, model_kwargs
from geohpc.segment.fit.setup import (
    FitConfig,
    Runtime,
    StopFlag,
    agree,
    all_sum,
    autocast,
    init_runtime,
    make_scaler,
    wants_sync_bn,
)
from geohpc.util import write_json_atomic


def cosine_with_warmup(total: int, warmup: int, min_frac: float):
    """LambdaLR factor: linear warmup to 1 over ``warmup`` steps, then cosine down to ``min_frac``."""

    def f(step: int) -> float:
        if warmup > 0 and step < warmup:
            return (step + 1) / warmup
        t = min(1.0, (step - warmup) / max(1, total - warmup))
        return min_frac + (1.0 - min_frac) * 0.5 * (1.0 + math.cos(math.pi * t))

    return f


def log(rt: Runtime, msg: str) -> None:
    """Print on rank 0 only (stderr: the job log)."""
    if rt.main:
        print(f"fit: {msg}", file=sys.stderr, flush=True)


def param_digest(model: nn.Module) -> str:
    """sha256 of all parameters (bitwise: equal digests mean equal weights).

    BatchNorm running statistics are left out: each rank updates them from its own batch and DDP
    re-broadcasts rank 0's at the next forward, so they legitimately differ between steps.
    """
    h = hashlib.sha256()
    for name, t in sorted(unwrap(model).named_parameters()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


@torch.no_grad()
def validate(rt: Runtime, model: nn.Module, loader: DataLoader, k: int, ignore: int, weight) -> dict[str, Any]:
    """Loss and confusion matrix of ``model`` over this rank's val chips, summed over ranks."""
    model.eval()
    cm = torch.zeros(k, k, dtype=torch.int64)
    loss_sum = torch.zeros(2, dtype=torch.float64)
    for x, y in loader:
        x, y = x.to(rt.device, non_blocking=True), y.to(rt.device, non_blocking=True)
        with autocast(rt):
            logits = model(x)
        loss_sum += torch.tensor([float(seg_loss(logits, y, ignore_index=ignore, weight=weight)) * len(x), len(x)],
                                 dtype=torch.float64)
        cm += confusion(logits.argmax(1), y, k, ignore).cpu()
    cm = all_sum(rt, cm).cpu()
    loss_sum = all_sum(rt, loss_sum).cpu()
    iou, miou, acc = iou_from_confusion(cm.numpy())
    return {"val_loss": float(loss_sum[0] / max(1.0, float(loss_sum[1]))), "val_miou": miou, "val_acc": acc, "iou": iou}


def train(cfg: FitConfig) -> dict[str, Any]:
    """Train one model as described by ``cfg``; returns the run summary (also ``summary.json`` on rank 0).

    Resumes from ``<out>/last.pt`` when it exists. Stops early, after saving, when SIGUSR1 arrives,
    when ``<out>/STOP`` appears (the job script's trap) or at ``cfg.stop_at_step``.
    """
    rt = init_runtime(cfg)
    try:
        return _train(cfg, rt)
    finally:
        if rt.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def _train(cfg: FitConfig, rt: Runtime) -> dict[str, Any]:
    run = _Run(cfg, rt)
    run.resume()
    run.prepare()
    while run.state["epoch"] < cfg.epochs:
        stopped = run.epoch()
        if stopped is not None:
            return stopped
    return run.finish()


class _Run:
    """One training run, in named steps: data, model, resume, prepare, epoch (steps + end), finish."""

    def __init__(self, cfg: FitConfig, rt: Runtime) -> None:
        self.cfg, self.rt = cfg, rt
        self.out = Path(cfg.out)
        self.out.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(cfg.seed)
        self.meta = load_meta(cfg.data)
        self.k, self.ignore = len(self.meta["classes"]), int(self.meta["ignore_index"])
        self.names = [c["name"] for c in self.meta["classes"]]
        self.per_rank = cfg.batch // rt.world
        self._data()
        self._model()
        self.state: dict[str, Any] = {"step": 0, "epoch": 0, "batch_in_epoch": 0, "attempted": 0, "taken": 0,
                                      "loss_sum": 0.0, "loss_n": 0, "resumed_from": None}
        self.last = self.out / ckpt.LAST
        self.saved: dict[str, Any] | None = None
        self.extra = {"classes": self.meta["classes"], "ignore_index": self.ignore, "chip": self.meta["chip"],
                      "arch": cfg.arch, "config": asdict(cfg)}

    def _data(self) -> None:
        """Check the chips fit the architecture; the train sampler and loaders."""
        cfg, rt, meta = self.cfg, self.rt, self.meta
        chip = int(meta["chip"])
        if cfg.arch == "unet" and (chip % (2**UNET_LEVELS) or chip < 2 ** (UNET_LEVELS + 1)):
            raise InputError(f"{cfg.data}/meta.json: chip {meta['chip']} must be a multiple of {2**UNET_LEVELS} and "
                             f"at least {2 ** (UNET_LEVELS + 1)} for the U-Net (its bottleneck BatchNorm needs 2x2 "
                             "pixels); rerun geohpc.prep with e.g. --chip 256, or use --arch mlp")
        self.train_ds = ShardChips(cfg.data, meta, "train", augment=cfg.augment, seed=cfg.seed)
        self.val_ds = ShardChips(cfg.data, meta, "val")
        self.sampler = ResumableSampler(len(self.train_ds), rt.rank, rt.world, self.per_rank, seed=cfg.seed)
        self.steps_per_epoch = self.sampler.batches_per_epoch()
        if self.steps_per_epoch == 0:
            raise InputError(f"{cfg.data}: the train split has {len(self.train_ds)} chips, fewer than one global "
                             f"batch ({cfg.batch}); lower --batch or prepare more chips")
        if len(self.val_ds) == 0:
            raise InputError(f"{cfg.data}: the val split is empty; rerun geohpc.prep with a larger area or --val-frac")
        workers = cfg.workers if cfg.workers >= 0 else (min(4, max(0, torch.get_num_threads() - 1))
                                                       if rt.device.type == "cuda" else 0)
        pin = rt.device.type == "cuda"
        self.train_dl = DataLoader(self.train_ds, batch_size=self.per_rank, sampler=self.sampler, num_workers=workers,
                                   pin_memory=pin, drop_last=True, persistent_workers=workers > 0)
        val_idx = list(range(rt.rank, len(self.val_ds), rt.world))
        self.val_dl = DataLoader(torch.utils.data.Subset(self.val_ds, val_idx), batch_size=self.per_rank,
                                 num_workers=workers, pin_memory=pin)
        self.total = cfg.epochs * self.steps_per_epoch

    def _model(self) -> None:
        """The model (channel stats inside), its EMA, learning rate and weight decay."""
        cfg, meta = self.cfg, self.meta
        in_ch = int(meta["channels"])
        self.kw = model_kwargs(cfg.arch, in_ch, self.k, cfg.width)
        self.model = build_model(cfg.arch, in_ch, self.k, self.kw["width"], mean=meta["mean"], std=meta["std"])
        self.ema = EMA(self.model, cfg.ema_decay)
        self.lr = cfg.lr or ARCH_DEFAULTS[cfg.arch]["lr"]
        self.wd = cfg.weight_decay if cfg.weight_decay is not None else ARCH_DEFAULTS[cfg.arch]["weight_decay"]

    def resume(self) -> None:
        """Load ``last.pt`` (model, EMA, counters) when it exists; optimiser state waits for :meth:`prepare`."""
        if not self.last.exists():
            return
        cfg, last = self.cfg, self.last
        saved = ckpt.read(last)
        ckpt.check_arch(saved, self.kw, last)
        old_batch = int(saved.get("config", {}).get("batch", cfg.batch))
        if old_batch != cfg.batch:
            raise ConfigError(f"{last}: checkpoint was trained with global --batch {old_batch}; resume with "
                              f"--batch {old_batch} (any world size that divides it) or use a fresh --out folder")
        self.model.load_state_dict(saved["train_model"], strict=True)
        self.ema.module.load_state_dict(saved["model"], strict=True)
        self.ema.updates = int(saved["ema"]["updates"])
        self.state.update({key: saved["state"][key] for key in self.state if key in saved["state"]})
        self.state["resumed_from"] = self.state["step"]
        restarts = os.environ.get("SLURM_RESTART_COUNT", "0")
        log(self.rt, f"resumed from {last} at step {self.state['step']} (epoch {self.state['epoch']}, "
                     f"batch {self.state['batch_in_epoch']}; SLURM_RESTART_COUNT={restarts})")
        self.saved = saved

    def prepare(self) -> None:
        """SyncBatchNorm, devices, DDP, optimiser, schedule, scaler, class weights, the stop flag."""
        cfg, rt = self.cfg, self.rt
        self.sync_bn, why = wants_sync_bn(rt, self.per_rank)
        if self.sync_bn:
            self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        log(rt, f"world {rt.world} ({rt.backend or 'no process group'}), device {rt.device}, precision "
                f"{cfg.precision}{' + GradScaler' if cfg.precision == 'fp16' else ' (no GradScaler)'}, {why}")
        self.model.to(rt.device)
        self.ema.module.to(rt.device)
        self.ddp = nn.parallel.DistributedDataParallel(
            self.model, device_ids=[rt.device] if rt.device.type == "cuda" else None) if rt.world > 1 else self.model
        self.opt = torch.optim.AdamW(self.ddp.parameters(), lr=self.lr, weight_decay=self.wd)
        warmup = int(cfg.warmup_frac * self.total)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, cosine_with_warmup(self.total, warmup, cfg.min_lr_frac))
        self.scaler = make_scaler(rt, cfg.fp16_init_scale)
        if self.saved is not None:
            self.opt.load_state_dict(self.saved["optimizer"])
            self.sched.load_state_dict(self.saved["scheduler"])
            if self.scaler is not None and self.saved.get("scaler"):
                self.scaler.load_state_dict(self.saved["scaler"])
            self.saved = None
        weight = class_weights(self.meta["class_freq"], cfg.class_weights)
        self.weight = weight.to(rt.device) if weight is not None else None
        self.stop = StopFlag(self.out / "STOP")
        log(rt, f"{len(self.train_ds)} train / {len(self.val_ds)} val chips, global batch {cfg.batch} "
                f"({self.per_rank}/rank), {self.steps_per_epoch} steps/epoch, {self.total} steps, lr {self.lr:g} "
                f"({cfg.arch} default {ARCH_DEFAULTS[cfg.arch]['lr']:g}), cosine with {warmup} warmup steps")

    def save_last(self) -> None:
        """``last.pt`` on rank 0 (unwrapped model, EMA, optimiser, schedule, scaler, counters); all ranks wait."""
        if self.rt.main:
            payload = {"format": ckpt.FORMAT, "model_kwargs": self.kw,
                       "model": ckpt.clean_state(self.ema.module.state_dict()),
                       "train_model": ckpt.clean_state(unwrap(self.ddp).state_dict()),
                       "ema": {"updates": self.ema.updates}, "optimizer": self.opt.state_dict(),
                       "scheduler": self.sched.state_dict(),
                       "scaler": self.scaler.state_dict() if self.scaler is not None else None,
                       "state": dict(self.state), **self.extra}
            ckpt.save(self.last, payload)
        if self.rt.world > 1:
            dist.barrier()

    def status(self, kind: str) -> dict[str, Any]:
        """The run's status (``status.json`` on rank 0): steps, the fraction of optimiser steps taken."""
        st, rt = self.state, self.rt
        frac = st["taken"] / st["attempted"] if st["attempted"] else 1.0
        s = {"state": kind, "step": st["step"], "epoch": st["epoch"], "total_steps": self.total,
             "steps_attempted": st["attempted"], "steps_taken": st["taken"], "step_fraction": frac,
             "resumed_from": st["resumed_from"], "world_size": rt.world, "precision": self.cfg.precision,
             "sync_batchnorm": self.sync_bn, "slurm_restart_count": int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0)}
        if rt.main:
            write_json_atomic(self.out / "status.json", s)
        return s

    def step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One optimiser step (fp16: through the GradScaler, which may skip it); the EMA follows taken steps."""
        cfg, opt, ddp = self.cfg, self.opt, self.ddp
        x, y = x.to(self.rt.device, non_blocking=True), y.to(self.rt.device, non_blocking=True)
        opt.zero_grad(set_to_none=True)
        with autocast(self.rt):
            logits = ddp(x)
        loss = seg_loss(logits, y, ignore_index=self.ignore, weight=self.weight, kind=cfg.loss)
        if self.scaler is not None:  # fp16: scale, unscale for clipping, step; a skipped step lowers the scale
            before = self.scaler.get_scale()
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(opt)
            nn.utils.clip_grad_norm_(ddp.parameters(), cfg.grad_clip)
            self.scaler.step(opt)
            self.scaler.update()
            took = self.scaler.get_scale() >= before
        else:  # bf16/fp32: every step is taken
            loss.backward()
            nn.utils.clip_grad_norm_(ddp.parameters(), cfg.grad_clip)
            opt.step()
            took = True
        self.sched.step()
        if took:
            self.ema.update(ddp)
        st = self.state
        st["attempted"] += 1
        st["taken"] += int(took)
        st["step"] += 1
        st["batch_in_epoch"] += 1
        st["loss_sum"] += float(loss.detach())
        st["loss_n"] += 1
        return loss

    def epoch(self) -> dict[str, Any] | None:
        """One epoch (from where a resume left it); the status when a stop was requested, else None."""
        cfg, rt, st = self.cfg, self.rt, self.state
        t_epoch, chips_done = time.monotonic(), 0
        self.sampler.set_epoch(st["epoch"], st["batch_in_epoch"])
        self.ddp.train()
        for x, y in self.train_dl:
            loss = self.step(x, y)
            chips_done += cfg.batch
            if cfg.check_sync_every and st["step"] % cfg.check_sync_every == 0:
                _check_sync(rt, self.ddp, self.out, st["step"])
            if rt.main and cfg.log_every and st["step"] % cfg.log_every == 0:
                log(rt, f"step {st['step']}/{self.total} epoch {st['epoch'] + 1} loss {float(loss.detach()):.4f} "
                        f"lr {self.sched.get_last_lr()[0]:.2e} steps taken {st['taken']}/{st['attempted']}")
            want_stop = self.stop.requested() or (cfg.stop_at_step and st["step"] >= cfg.stop_at_step)
            if agree(rt, bool(want_stop)):
                return self._stopped()
            if cfg.ckpt_every and st["step"] % cfg.ckpt_every == 0:
                self.save_last()
        self._end_epoch(time.monotonic() - t_epoch, chips_done)
        return None

    def _stopped(self) -> dict[str, Any]:
        self.save_last()
        if self.rt.main and (self.out / "metrics.csv").exists():
            plot_curves(self.out / "metrics.csv", self.out / "curves.png")
        s = self.status("stopped")
        log(self.rt, f"stopped at step {self.state['step']} (walltime signal/stop request); checkpoint {self.last}; "
                     "a requeued or repeated run resumes from it")
        return s

    def _end_epoch(self, dt: float, chips_done: int) -> None:
        """Mean train loss over ranks, EMA validation, CSV + PNG, checkpoint (dt: training time only)."""
        cfg, rt, st = self.cfg, self.rt, self.state
        ls = all_sum(rt, torch.tensor([st["loss_sum"], float(st["loss_n"])], dtype=torch.float64)).cpu()
        ev = validate(rt, self.ema.module, self.val_dl, self.k, self.ignore, self.weight)
        frac = st["taken"] / max(1, st["attempted"])
        row: dict[str, Any] = {"epoch": st["epoch"] + 1, "step": st["step"], "lr": self.sched.get_last_lr()[0],
                               "train_loss": float(ls[0] / max(1.0, float(ls[1]))), "val_loss": ev["val_loss"],
                               "val_miou": ev["val_miou"], "val_acc": ev["val_acc"]}
        row.update({f"iou_{n}": (f"{v:.4f}" if np.isfinite(v) else "nan")
                    for n, v in zip(self.names, ev["iou"], strict=True)})
        row.update({"step_fraction": f"{frac:.4f}", "chips_per_s": round(chips_done / max(dt, 1e-9), 2),
                    "epoch_s": round(dt, 2)})
        if rt.main:
            append_csv(self.out / "metrics.csv", row)
            if row["epoch"] == cfg.epochs or (cfg.plot_every and row["epoch"] % cfg.plot_every == 0):
                plot_curves(self.out / "metrics.csv", self.out / "curves.png")
            log(rt, f"epoch {row['epoch']}/{cfg.epochs} train loss {row['train_loss']:.4f} val loss "
                    f"{row['val_loss']:.4f} mIoU {row['val_miou']:.3f} steps taken {st['taken']}/"
                    f"{st['attempted']} ({frac:.3f}) {row['chips_per_s']} chips/s")
        st.update({"epoch": st["epoch"] + 1, "batch_in_epoch": 0, "loss_sum": 0.0, "loss_n": 0})
        self.save_last()

    def _test(self) -> dict[str, Any] | None:
        """The held-out blocks, once, with the EMA model that is saved."""
        rt = self.rt
        test_ds = ShardChips(self.cfg.data, self.meta, "test")
        if not len(test_ds):
            return None
        test_dl = DataLoader(torch.utils.data.Subset(test_ds, list(range(rt.rank, len(test_ds), rt.world))),
                             batch_size=self.per_rank, num_workers=0)
        ev = validate(rt, self.ema.module, test_dl, self.k, self.ignore, self.weight)
        test = {"test_miou": ev["val_miou"], "test_acc": ev["val_acc"], "test_loss": ev["val_loss"], "chips": len(test_ds),
                "iou": {n: (float(v) if np.isfinite(v) else None) for n, v in zip(self.names, ev["iou"], strict=True)}}
        if rt.main:
            write_json_atomic(self.out / "test_metrics.json", test)
            log(rt, f"test split ({len(test_ds)} chips, EMA model): mIoU {test['test_miou']:.3f} "
                    f"accuracy {test['test_acc']:.3f}")
        return test

    def finish(self) -> dict[str, Any]:
        """Test split, export model.pt (last: its existence is the stage's "done"), summary."""
        rt, st = self.rt, self.state
        test = self._test()
        if rt.main:
            ckpt.export_model(self.out / ckpt.MODEL, self.ema.module, self.kw, self.extra)
        s = self.status("done")
        if test is not None:
            s["test_miou"] = test["test_miou"]
        if s["step_fraction"] < 1.0:
            log(rt, f"warning: {st['attempted'] - st['taken']} of {st['attempted']} optimiser steps were skipped by "
                    "the GradScaler (inf/NaN gradients); use --precision bf16 (no GradScaler) if the GPU has it")
        log(rt, f"done: {st['step']} steps, optimiser steps taken {st['taken']}/{st['attempted']} "
                f"(fraction {s['step_fraction']:.3f}); model {self.out / ckpt.MODEL}")
        if rt.main:
            write_json_atomic(self.out / "summary.json", s)
        return s


def _check_sync(rt: Runtime, model: nn.Module, out: Path, step: int) -> None:
    """Each rank records its weight digest; rank 0 compares them and fails loudly if ranks diverged."""
    digest = param_digest(model)
    d = out / "sync"
    d.mkdir(exist_ok=True)
    with (d / f"rank{rt.rank}.jsonl").open("a") as fh:
        fh.write(json.dumps({"step": step, "sha256": digest}) + "\n")
    if rt.world > 1:
        got: list[Any] = [None] * rt.world
        dist.all_gather_object(got, digest)
        if len(set(got)) != 1:
            raise ConfigError(f"ranks hold different weights at step {step}: DDP is not synchronising "
                              "(check that every rank runs the same number of steps)")
