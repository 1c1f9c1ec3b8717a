"""training_lints: each rule fires on the bug and stays quiet on the fixed code."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from geohpc.preflight.training_lints import lint_paths

CLEAN = """
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

def train(model, loader, dtype=torch.bfloat16):
    scaler = torch.amp.GradScaler(enabled=dtype == torch.float16)
    model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ddp = DDP(model)
    for x, y in loader:
        with torch.autocast("cuda", dtype=dtype):
            loss = ddp(x).sum()
        scaler.scale(loss).backward()
    torch.save(ddp.module.state_dict(), "model.pt")

def update_ema(ema, model, decay=0.999):
    for e, p in zip(ema.parameters(), model.parameters()):
        e.mul_(decay).add_(p.detach(), alpha=1 - decay)
    for e, b in zip(ema.buffers(), model.buffers()):
        e.copy_(b)

net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8))
loader = torch.utils.data.DataLoader([], batch_size=4)

def classify(cb, X):
    return cb.classes_[cb.predict_proba(X).argmax(axis=1)]
"""

BUGS = {
    "gradscaler-bf16": """
        import torch
        scaler = torch.cuda.amp.GradScaler()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            pass
    """,
    "ema-buffers": """
        def ema_update(ema, model, d=0.99):
            for e, p in zip(ema.parameters(), model.parameters()):
                e.mul_(d).add_(p, alpha=1 - d)
    """,
    "ddp-state-dict": """
        import torch
        from torch.nn.parallel import DistributedDataParallel
        model = DistributedDataParallel(model, device_ids=[0])
        torch.save(model.state_dict(), "ckpt.pt")
    """,
    "catboost-labels": """
        import numpy as np
        proba = model.predict_proba(X)
        labels = np.argmax(model.predict_proba(X), axis=1)
    """,
    "batchnorm-small-batch": """
        from torch import nn
        import argparse
        p = argparse.ArgumentParser()
        p.add_argument("--batch-size", type=int, default=4)
        net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8))
    """,
}


def _write(tmp_path: Path, code: str) -> Path:
    f = tmp_path / "train.py"
    f.write_text(textwrap.dedent(code))
    return f


def test_clean_training_code_passes(make_ctx, run_check, tmp_path) -> None:
    f = _write(tmp_path, CLEAN)
    assert lint_paths([f]) == []
    res = run_check("training_lints", make_ctx(train_paths=[tmp_path]))
    assert res.status == "ok" and "1 training files clean" in res.message


@pytest.mark.parametrize("rule", sorted(BUGS))
def test_each_bug_fails_with_its_fix(make_ctx, run_check, tmp_path, rule: str) -> None:
    _write(tmp_path, BUGS[rule])
    res = run_check("training_lints", make_ctx(train_paths=[tmp_path]))
    assert res.status == "fail" and f"[{rule}]" in res.message and "train.py:" in res.message
    assert res.fix


def test_gradscaler_under_an_fp16_branch_is_fine(tmp_path) -> None:
    f = _write(tmp_path, """
        import torch
        precision = "bf16"
        def make_scaler(dtype):
            if dtype is torch.float16:
                return torch.amp.GradScaler("cuda")
            return None
        s2 = torch.amp.GradScaler() if precision == "fp16" else None
    """)
    assert lint_paths([f]) == []
    f.write_text(f.read_text().replace("torch.float16", "torch.bfloat16"))
    assert [x.rule for x in lint_paths([f])] == ["gradscaler-bf16"]


def test_averaged_model_without_buffers(tmp_path) -> None:
    f = _write(tmp_path, "from torch.optim.swa_utils import AveragedModel\nema = AveragedModel(model)\n")
    assert [x.rule for x in lint_paths([f])] == ["ema-buffers"]
    f.write_text("from torch.optim.swa_utils import AveragedModel\nema = AveragedModel(model, use_buffers=True)\n")
    assert lint_paths([f]) == []


@pytest.mark.parametrize("code, bad", [
    # a dict EMA over named_parameters at module level
    ("ema = {k: v.clone() for k, v in model.named_parameters()}\n"
     "for k, p in model.named_parameters():\n    ema[k].mul_(0.99).add_(p, alpha=0.01)\n", True),
    # indexing the state_dict while walking only the parameters
    ("def update_ema(ema_model, model, d=0.99):\n    msd = model.state_dict()\n"
     "    for k, v in ema_model.named_parameters():\n        v.copy_(v * d + (1 - d) * msd[k])\n", True),
    # walking the whole state_dict copies the BatchNorm statistics too
    ("def ema_step(ema, model, d):\n    msd = model.state_dict()\n"
     "    for k, v in ema.state_dict().items():\n        v.copy_(v * d + (1 - d) * msd[k])\n", False),
    ("def update_ema(e, m, d):\n    for a, b in zip(e.parameters(), m.parameters()):\n        a.lerp_(b, 1 - d)\n"
     "    for a, b in zip(e.buffers(), m.buffers()):\n        a.copy_(b)\n", False),
])
def test_ema_forms(tmp_path, code: str, bad: bool) -> None:
    f = _write(tmp_path, code)
    assert [x.rule for x in lint_paths([f])] == (["ema-buffers"] if bad else [])


def test_batch_size_param_overrides_code(make_ctx, run_check, tmp_path) -> None:
    _write(tmp_path, "from torch import nn\nbn = nn.BatchNorm1d(4)\nbatch_size = 64\n")
    assert run_check("training_lints", make_ctx(train_paths=[tmp_path])).status == "ok"
    res = run_check("training_lints", make_ctx(train_paths=[tmp_path], params={"BATCH_SIZE": "2"}))
    assert res.status == "fail" and "per-GPU batch of 2" in res.message


def test_compiled_model_state_dict_warns(make_ctx, run_check, tmp_path) -> None:
    _write(tmp_path, "import torch\nmodel = torch.compile(model)\ntorch.save(model.state_dict(), 'm.pt')\n")
    res = run_check("training_lints", make_ctx(train_paths=[tmp_path]))
    assert res.status == "warn" and "_orig_mod." in res.message


# ---------------------------------------------------------------- issue 11: emb-errors.md's WebDataset and DDP bugs
WDS_BUG = """
import webdataset as wds
train_loader = wds.WebLoader(wds.WebDataset("shards-{000..031}.tar"), batch_size=None, num_workers=4)
steps_per_epoch = len(train_loader)
"""
WDS_FIXED = """
import webdataset as wds
train_loader = wds.WebLoader(wds.WebDataset("shards-{000..031}.tar"), batch_size=None, num_workers=4)
steps_per_epoch = 50000 // 32
"""
DDP_VAL_BUG = """
from torch.nn.parallel import DistributedDataParallel as DDP
model = DDP(net)
metrics = validate(model, val_loader)
"""
DDP_VAL_FIXED = """
from torch.nn.parallel import DistributedDataParallel as DDP
model = DDP(net)
raw = model.module if hasattr(model, "module") else model
metrics = validate(raw, val_loader)
"""


@pytest.mark.parametrize("rule,bug,fixed,severity", [
    ("webdataset-len", WDS_BUG, WDS_FIXED, "fail"),
    ("ddp-validate", DDP_VAL_BUG, DDP_VAL_FIXED, "warn"),
])
def test_guide_training_rules(tmp_path, make_ctx, run_check, rule, bug, fixed, severity) -> None:
    bad, good = tmp_path / "bad.py", tmp_path / "good.py"
    bad.write_text(bug)
    good.write_text(fixed)
    found = lint_paths([bad])
    assert [(f.rule, f.severity) for f in found] == [(rule, severity)]
    assert lint_paths([good]) == []
    r = run_check("training_lints", make_ctx(stage="fit", train_paths=[bad]))
    assert r.status == severity and f"[{rule}]" in r.message
