"""Unit checks of the training parts: EMA buffers, unwrapped state dicts, the LR schedule, losses, sampler."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
from geohpc.segment.fit.ckpt import clean_state
from geohpc.segment.fit.data import ResumableSampler
from geohpc.segment.fit.ema import EMA
from geohpc.segment.fit.loop import cosine_with_warmup
from geohpc.segment.fit.metrics import seg_loss
from geohpc.segment.fit.model import build_model
from torch import nn


def test_ema_copies_buffers_and_averages_params() -> None:
    torch.manual_seed(0)
    model = build_model("mlp", 4, 3, 8)
    ema = EMA(model, decay=0.9)
    model.train()
    with torch.no_grad():
        model(torch.randn(2, 4, 5, 5) * 3 + 2)  # moves BatchNorm running stats
        for p in model.parameters():
            p.add_(1.0)
    ema.update(model)
    bn_live, bn_ema = model.net[1], ema.module.net[1]
    assert torch.equal(bn_ema.running_mean, bn_live.running_mean)
    assert torch.equal(bn_ema.running_var, bn_live.running_var)
    assert int(bn_ema.num_batches_tracked) == 1
    w_live, w_ema = model.net[0].weight, ema.module.net[0].weight
    assert not torch.equal(w_ema, w_live)  # averaged, not copied
    assert not w_ema.requires_grad


def test_clean_state_refuses_wrapper_prefix() -> None:
    with pytest.raises(RuntimeError, match="unwrapped"):
        clean_state({"module.net.0.weight": torch.zeros(1)})
    assert list(clean_state({"net.0.weight": torch.zeros(1)})) == ["net.0.weight"]


def test_cosine_with_warmup_shape() -> None:
    f = cosine_with_warmup(100, 10, 0.01)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0) and f(55) == pytest.approx(0.505, abs=1e-3)
    assert f(100) == pytest.approx(0.01)
    assert all(f(i) >= f(i + 1) for i in range(10, 100))


def test_loss_ignores_index_and_focal_is_smaller() -> None:
    logits = torch.randn(2, 3, 4, 4)
    y = torch.randint(0, 3, (2, 4, 4))
    y2 = y.clone()
    y2[:, 0] = 255
    a = seg_loss(logits, y2, ignore_index=255, weight=None)
    b = nn.functional.cross_entropy(logits, y2, ignore_index=255)
    assert a.item() == pytest.approx(b.item(), rel=1e-5)
    f = seg_loss(logits, y2, ignore_index=255, weight=None, kind="focal")
    assert 0 < f.item() < a.item()
    w = torch.tensor([1.0, 2.0, 3.0])
    assert seg_loss(logits, y2, ignore_index=255, weight=w).item() == pytest.approx(
        nn.functional.cross_entropy(logits, y2, weight=w, ignore_index=255).item(), rel=1e-5)


def test_sampler_ranks_disjoint_and_resumable() -> None:
    a = ResumableSampler(23, 0, 2, 3, seed=1)
    b = ResumableSampler(23, 1, 2, 3, seed=1)
    a.set_epoch(4)
    b.set_epoch(4)
    ia, ib = list(a), list(b)
    assert len(ia) == len(ib) == 9 and not set(ia) & set(ib) and a.batches_per_epoch() == 3
    a.set_epoch(4, start_batch=2)
    assert list(a) == ia[6:]
    assert all(i // 23 == 4 for i in ia)  # the epoch rides along in the index (for the workers)


def test_planted_bf16_scaler_fixture_has_the_bug() -> None:
    src = (Path(__file__).parent / "fixtures" / "bad_train_bf16_scaler.py").read_text()
    tree = ast.parse(src)
    names = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    assert {"GradScaler", "bfloat16", "scale"} <= names
    # and our own training loop never builds a GradScaler outside the fp16 path
    setup = (Path(__file__).parents[2] / "py" / "geohpc" / "segment" / "fit" / "setup.py").read_text()
    assert "if rt.amp_dtype is torch.float16:\n        return torch.amp.GradScaler" in setup


def test_training_lint_fires_on_planted_example_and_passes_fit() -> None:
    from geohpc.preflight.training_lints import lint_paths

    root = Path(__file__).parents[2]
    bad = lint_paths([Path(__file__).parent / "fixtures" / "bad_train_bf16_scaler.py"], None)
    assert [f.rule for f in bad] == ["gradscaler-bf16"] and bad[0].severity == "fail"
    assert lint_paths([root / "py" / "geohpc" / "segment" / "fit", root / "py" / "geohpc" / "segment" / "predict.py"], 2) == []


def test_checkpoint_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from geohpc.segment.fit import ckpt

    target = tmp_path / "last.pt"
    ckpt.save(target, {"model": {"w": torch.ones(2)}, "model_kwargs": {}})
    before = target.read_bytes()

    def dying_save(obj, f) -> None:  # writes half a file, then the job is killed
        Path(f).write_bytes(b"PK\x03\x04 half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save(target, {"model": {"w": torch.zeros(2)}, "model_kwargs": {}})
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]
