"""training_lints: GradScaler+bf16, EMA without buffers, DDP state_dict, BatchNorm with tiny batches."""

from __future__ import annotations

from geohpc.preflight.context import PreflightContext, Result, fail, ok, warn
from geohpc.preflight.training_lints import lint_paths, python_files

NAME = "training_lints"
DESCRIPTION = ("static scan of training code: GradScaler+bf16, EMA buffers, DDP 'module.' keys, BatchNorm "
               "batch<8, CatBoost predict_proba argmax labels, len() of a WebLoader, DDP model in validation")
STAGES = ("train", "fit", "classify", "predict")
FIXES = {
    "gradscaler-bf16": "drop GradScaler under bf16 (use it only for float16: GradScaler(enabled=dtype == torch.float16))",
    "ema-buffers": "copy buffers too: for b, eb in zip(model.buffers(), ema.buffers()): eb.copy_(b) "
                   "(or AveragedModel(..., use_buffers=True))",
    "ddp-state-dict": "save the unwrapped model: model.module.state_dict() (torch.compile: model._orig_mod)",
    "batchnorm-small-batch": "nn.SyncBatchNorm.convert_sync_batchnorm(model) before DDP, or GroupNorm, or a batch >= 8",
    "catboost-labels": "map indices through the model: model.classes_[proba.argmax(axis=1)] (or use model.predict)",
    "webdataset-len": "IterableDatasets have no len(): steps_per_epoch = train_samples // batch_size",
    "ddp-validate": "validate the unwrapped model: raw = model.module if hasattr(model, 'module') else model",
}


def check(ctx: PreflightContext) -> Result:
    """Fail on any failing lint; warn on the softer ones (torch.compile keys)."""
    files = python_files(ctx.train_paths)
    if not files:
        return ok("no training code to scan")
    batch = ctx.params.get("BATCH_SIZE", "")
    findings = lint_paths(ctx.train_paths, int(batch) if batch.isdigit() else None)
    if not findings:
        return ok(f"{len(files)} training files clean")
    worst = [f for f in findings if f.severity == "fail"] or findings
    f = worst[0]
    more = f" (+{len(findings) - 1} more)" if len(findings) > 1 else ""
    msg = f"{f.path.name}:{f.line}: {f.message} [{f.rule}]{more}"
    return (fail if f.severity == "fail" else warn)(msg, FIXES[f.rule])
