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
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    meta = load_meta(cfg.data)
    k, ignore, in_ch = len(meta["classes"]), int(meta["ignore_index"]), int(meta["channels"])
    if cfg.arch == "unet" and (int(meta["chip"]) % (2**UNET_LEVELS) or int(meta["chip"]) < 2 ** (UNET_LEVELS + 1)):
        raise InputError(f"{cfg.data}/meta.json: chip {meta['chip']} must be a multiple of {2**UNET_LEVELS} and at "
                         f"least {2 ** (UNET_LEVELS + 1)} for the U-Net (its bottleneck BatchNorm needs 2x2 pixels); "
                         "rerun geohpc.prep with e.g. --chip 256, or use --arch mlp")
    per_rank = cfg.batch // rt.world
    train_ds = ShardChips(cfg.data, meta, "train", augment=cfg.augment, seed=cfg.seed)
    val_ds = ShardChips(cfg.data, meta, "val")
    sampler = ResumableSampler(len(train_ds), rt.rank, rt.world, per_rank, seed=cfg.seed)
    steps_per_epoch = sampler.batches_per_epoch()
    if steps_per_epoch == 0:
        raise InputError(f"{cfg.data}: the train split has {len(train_ds)} chips, fewer than one global batch "
                         f"({cfg.batch}); lower --batch or prepare more chips")
    if len(val_ds) == 0:
        raise InputError(f"{cfg.data}: the val split is empty; rerun geohpc.prep with a larger area or --val-frac")
    workers = cfg.workers if cfg.workers >= 0 else (min(4, max(0, torch.get_num_threads() - 1))
                                                   if rt.device.type == "cuda" else 0)
    pin = rt.device.type == "cuda"
    train_dl = DataLoader(train_ds, batch_size=per_rank, sampler=sampler, num_workers=workers, pin_memory=pin,
                          drop_last=True, persistent_workers=workers > 0)
    val_idx = list(range(rt.rank, len(val_ds), rt.world))
    val_dl = DataLoader(torch.utils.data.Subset(val_ds, val_idx), batch_size=per_rank, num_workers=workers,
                        pin_memory=pin)

    kw = model_kwargs(cfg.arch, in_ch, k, cfg.width)
    model = build_model(cfg.arch, in_ch, k, kw["width"], mean=meta["mean"], std=meta["std"])
    ema = EMA(model, cfg.ema_decay)
    lr = cfg.lr or ARCH_DEFAULTS[cfg.arch]["lr"]
    wd = cfg.weight_decay if cfg.weight_decay is not None else ARCH_DEFAULTS[cfg.arch]["weight_decay"]
    total = cfg.epochs * steps_per_epoch
    state: dict[str, Any] = {"step": 0, "epoch": 0, "batch_in_epoch": 0, "attempted": 0, "taken": 0,
                             "loss_sum": 0.0, "loss_n": 0, "resumed_from": None}
    last = out / ckpt.LAST
    saved: dict[str, Any] | None = None
    if last.exists():
        saved = ckpt.read(last)
        ckpt.check_arch(saved, kw, last)
        old_batch = int(saved.get("config", {}).get("batch", cfg.batch))
        if old_batch != cfg.batch:
            raise ConfigError(f"{last}: checkpoint was trained with global --batch {old_batch}; resume with "
                              f"--batch {old_batch} (any world size that divides it) or use a fresh --out folder")
        model.load_state_dict(saved["train_model"], strict=True)
        ema.module.load_state_dict(saved["model"], strict=True)
        ema.updates = int(saved["ema"]["updates"])
        state.update({key: saved["state"][key] for key in state if key in saved["state"]})
        state["resumed_from"] = state["step"]
        restarts = os.environ.get("SLURM_RESTART_COUNT", "0")
        log(rt, f"resumed from {last} at step {state['step']} (epoch {state['epoch']}, "
                f"batch {state['batch_in_epoch']}; SLURM_RESTART_COUNT={restarts})")
    sync_bn, why = wants_sync_bn(rt, per_rank)
    if sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    log(rt, f"world {rt.world} ({rt.backend or 'no process group'}), device {rt.device}, precision {cfg.precision}"
            f"{' + GradScaler' if cfg.precision == 'fp16' else ' (no GradScaler)'}, {why}")
    model.to(rt.device)
    ema.module.to(rt.device)
    ddp = nn.parallel.DistributedDataParallel(model, device_ids=[rt.device] if rt.device.type == "cuda" else None) \
        if rt.world > 1 else model
    opt = torch.optim.AdamW(ddp.parameters(), lr=lr, weight_decay=wd)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, cosine_with_warmup(total, int(cfg.warmup_frac * total),
                                                                      cfg.min_lr_frac))
    scaler = make_scaler(rt, cfg.fp16_init_scale)
    if saved is not None:
        opt.load_state_dict(saved["optimizer"])
        sched.load_state_dict(saved["scheduler"])
        if scaler is not None and saved.get("scaler"):
            scaler.load_state_dict(saved["scaler"])
        del saved
    weight = class_weights(meta["class_freq"], cfg.class_weights)
    weight = weight.to(rt.device) if weight is not None else None
    stop = StopFlag(out / "STOP")
    names = [c["name"] for c in meta["classes"]]
    extra = {"classes": meta["classes"], "ignore_index": ignore, "chip": meta["chip"], "arch": cfg.arch,
             "config": asdict(cfg)}
    log(rt, f"{len(train_ds)} train / {len(val_ds)} val chips, global batch {cfg.batch} ({per_rank}/rank), "
            f"{steps_per_epoch} steps/epoch, {total} steps, lr {lr:g} ({cfg.arch} default "
            f"{ARCH_DEFAULTS[cfg.arch]['lr']:g}), cosine with {int(cfg.warmup_frac * total)} warmup steps")

    def save_last() -> None:
        if rt.main:
            payload = {"format": ckpt.FORMAT, "model_kwargs": kw, "model": ckpt.clean_state(ema.module.state_dict()),
                       "train_model": ckpt.clean_state(unwrap(ddp).state_dict()), "ema": {"updates": ema.updates},
                       "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                       "scaler": scaler.state_dict() if scaler is not None else None, "state": dict(state), **extra}
            ckpt.save(last, payload)
        if rt.world > 1:
            dist.barrier()

    def status(kind: str) -> dict[str, Any]:
        frac = state["taken"] / state["attempted"] if state["attempted"] else 1.0
        s = {"state": kind, "step": state["step"], "epoch": state["epoch"], "total_steps": total,
             "steps_attempted": state["attempted"], "steps_taken": state["taken"], "step_fraction": frac,
             "resumed_from": state["resumed_from"], "world_size": rt.world, "precision": cfg.precision,
             "sync_batchnorm": sync_bn, "slurm_restart_count": int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0)}
        if rt.main:
            write_json_atomic(out / "status.json", s)
        return s

    t_epoch, chips_done = time.monotonic(), 0
    while state["epoch"] < cfg.epochs:
        sampler.set_epoch(state["epoch"], state["batch_in_epoch"])
        ddp.train()
        for x, y in train_dl:
            x, y = x.to(rt.device, non_blocking=True), y.to(rt.device, non_blocking=True)
            opt.zero_grad(set_to_none=True)
            with autocast(rt):
                logits = ddp(x)
            loss = seg_loss(logits, y, ignore_index=ignore, weight=weight, kind=cfg.loss)
            if scaler is not None:  # fp16: scale, unscale for clipping, step; a skipped step lowers the scale
                before = scaler.get_scale()
                scaler.scale(loss).backward()
                scaler.unscale_(opt)
                nn.utils.clip_grad_norm_(ddp.parameters(), cfg.grad_clip)
                scaler.step(opt)
                scaler.update()
                took = scaler.get_scale() >= before
            else:  # bf16/fp32: every step is taken
                loss.backward()
                nn.utils.clip_grad_norm_(ddp.parameters(), cfg.grad_clip)
                opt.step()
                took = True
            sched.step()
            if took:
                ema.update(ddp)
            state["attempted"] += 1
            state["taken"] += int(took)
            state["step"] += 1
            state["batch_in_epoch"] += 1
            state["loss_sum"] += float(loss.detach())
            state["loss_n"] += 1
            chips_done += cfg.batch
            if cfg.check_sync_every and state["step"] % cfg.check_sync_every == 0:
                _check_sync(rt, ddp, out, state["step"])
            if rt.main and cfg.log_every and state["step"] % cfg.log_every == 0:
                log(rt, f"step {state['step']}/{total} epoch {state['epoch'] + 1} loss {float(loss.detach()):.4f} "
                        f"lr {sched.get_last_lr()[0]:.2e} steps taken {state['taken']}/{state['attempted']}")
            want_stop = stop.requested() or (cfg.stop_at_step and state["step"] >= cfg.stop_at_step)
            if agree(rt, bool(want_stop)):
                save_last()
                if rt.main and (out / "metrics.csv").exists():
                    plot_curves(out / "metrics.csv", out / "curves.png")
                s = status("stopped")
                log(rt, f"stopped at step {state['step']} (walltime signal/stop request); checkpoint {last}; "
                        "a requeued or repeated run resumes from it")
                return s
            if cfg.ckpt_every and state["step"] % cfg.ckpt_every == 0:
                save_last()
        # end of epoch: mean train loss over ranks, EMA validation, CSV + PNG, checkpoint
        dt = time.monotonic() - t_epoch  # training time only: chips/s excludes validation and plotting
        ls = all_sum(rt, torch.tensor([state["loss_sum"], float(state["loss_n"])], dtype=torch.float64)).cpu()
        ev = validate(rt, ema.module, val_dl, k, ignore, weight)
        frac = state["taken"] / max(1, state["attempted"])
        row: dict[str, Any] = {"epoch": state["epoch"] + 1, "step": state["step"], "lr": sched.get_last_lr()[0],
                               "train_loss": float(ls[0] / max(1.0, float(ls[1]))), "val_loss": ev["val_loss"],
                               "val_miou": ev["val_miou"], "val_acc": ev["val_acc"]}
        row.update({f"iou_{n}": (f"{v:.4f}" if np.isfinite(v) else "nan") for n, v in zip(names, ev["iou"], strict=True)})
        row.update({"step_fraction": f"{frac:.4f}", "chips_per_s": round(chips_done / max(dt, 1e-9), 2),
                    "epoch_s": round(dt, 2)})
        if rt.main:
            append_csv(out / "metrics.csv", row)
            if row["epoch"] == cfg.epochs or (cfg.plot_every and row["epoch"] % cfg.plot_every == 0):
                plot_curves(out / "metrics.csv", out / "curves.png")
            log(rt, f"epoch {row['epoch']}/{cfg.epochs} train loss {row['train_loss']:.4f} val loss "
                    f"{row['val_loss']:.4f} mIoU {row['val_miou']:.3f} steps taken {state['taken']}/"
                    f"{state['attempted']} ({frac:.3f}) {row['chips_per_s']} chips/s")
        state.update({"epoch": state["epoch"] + 1, "batch_in_epoch": 0, "loss_sum": 0.0, "loss_n": 0})
        save_last()
        t_epoch, chips_done = time.monotonic(), 0
    test_ds = ShardChips(cfg.data, meta, "test")
    test = None
    if len(test_ds):  # the held-out blocks, once, with the EMA model that is saved
        test_dl = DataLoader(torch.utils.data.Subset(test_ds, list(range(rt.rank, len(test_ds), rt.world))),
                             batch_size=per_rank, num_workers=0)
        ev = validate(rt, ema.module, test_dl, k, ignore, weight)
        test = {"test_miou": ev["val_miou"], "test_acc": ev["val_acc"], "test_loss": ev["val_loss"], "chips": len(test_ds),
                "iou": {n: (float(v) if np.isfinite(v) else None) for n, v in zip(names, ev["iou"], strict=True)}}
        if rt.main:
            write_json_atomic(out / "test_metrics.json", test)
            log(rt, f"test split ({len(test_ds)} chips, EMA model): mIoU {test['test_miou']:.3f} "
                    f"accuracy {test['test_acc']:.3f}")
    if rt.main:  # model.pt last: its existence is the stage's "done"
        ckpt.export_model(out / ckpt.MODEL, ema.module, kw, extra)
    s = status("done")
    if test is not None:
        s["test_miou"] = test["test_miou"]
    if s["step_fraction"] < 1.0:
        log(rt, f"warning: {state['attempted'] - state['taken']} of {state['attempted']} optimiser steps were skipped "
                "by the GradScaler (inf/NaN gradients); use --precision bf16 (no GradScaler) if the GPU has it")
    log(rt, f"done: {state['step']} steps, optimiser steps taken {state['taken']}/{state['attempted']} "
            f"(fraction {s['step_fraction']:.3f}); model {out / ckpt.MODEL}")
    if rt.main:
        write_json_atomic(out / "summary.json", s)
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
