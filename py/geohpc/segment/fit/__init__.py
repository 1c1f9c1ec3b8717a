"""fit: segmentation training on prep chips with DDP done right.

bf16 autocast without GradScaler, SyncBatchNorm for small per-GPU batches, EMA that copies
buffers, checkpoints from the unwrapped model written atomically, auto-resume, SIGUSR1 stop.
Parts: :mod:`.model`, :mod:`.ema`, :mod:`.ckpt`, :mod:`.data`, :mod:`.metrics`, :mod:`.setup`, :mod:`.loop`.
"""

from __future__ import annotations

from geohpc.segment.fit.ckpt import load_model
from geohpc.segment.fit.ema import EMA, unwrap
from geohpc.segment.fit.model import ARCH_DEFAULTS, build_model

__all__ = ["ARCH_DEFAULTS", "EMA", "build_model", "load_model", "unwrap"]
