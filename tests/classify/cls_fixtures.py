"""Shared builders for the crop-classification tests: one small scene, its samples and a model per process.

Imported by the test modules (``from cls_fixtures import scene, samples, model_dir``); the builders are
cached so every module gets the same files however many modules import the fixtures.
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import pytest
from geohpc.classify.points import read_points
from geohpc.classify.sample import sample
from geohpc.classify.train import train
from geohpc.synth.scene import make_scene


@functools.cache
def _scene() -> dict:
    out = Path(tempfile.mkdtemp(prefix="geohpc-cls-"))
    return make_scene(out / "scene", size=128, bands=16, n_classes=5, train_points=300, val_points=150, block=64, seed=3, separation=1.0)


@functools.cache
def _samples() -> Path:
    sc = _scene()
    out = Path(sc["embedding"]).parent.parent / "samples.parquet"
    sample(read_points(sc["train_points"]), [Path(sc["embedding"])], out)
    return out


@functools.cache
def _model() -> Path:
    out = _samples().parent / "model"
    train(str(_samples()), out, trials=2, iterations=40, block_size=300)
    return out


@pytest.fixture
def scene() -> dict:
    """A 128x128, 16-band, 5-class scene (64 px tiles) with 300 training and 150 validation points."""
    return _scene()


@pytest.fixture
def samples() -> Path:
    """The scene's training points sampled into Parquet."""
    return _samples()


@pytest.fixture
def model_dir() -> Path:
    """A model trained on the samples (2 trials of 40 iterations)."""
    return _model()
