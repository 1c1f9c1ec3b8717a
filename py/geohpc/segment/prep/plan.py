"""Plan the chips: check the inputs, lay a chip grid over each embedding raster, split by spatial blocks.

Everything here is deterministic (a seed drives the block split), so a resumed run plans the very
same shards and only writes the ones that are missing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from geohpc.errors import ConfigError, InputError
from geohpc.raster_io import check_georeferenced, open_raster

IGNORE_INDEX = 255  # label value the loss skips: nodata, unlisted classes, invalid embedding pixels
SPLITS = ("train", "val", "test")
# a readable default palette (CDL-like colours first), cycled for more classes
PALETTE = [
    (255, 211, 0), (38, 112, 0), (168, 112, 0), (255, 168, 227), (0, 168, 228), (112, 168, 0),
    (214, 158, 188), (166, 112, 0), (0, 175, 75), (255, 102, 102), (196, 143, 0), (128, 128, 255),
]


@dataclass(frozen=True)
class ClassSpec:
    """One class: its value in the label raster, its contiguous training index, name and colour."""

    value: int
    index: int
    name: str
    color: tuple[int, int, int]


@dataclass(frozen=True)
class Chip:
    """A chip: which embedding raster, and its upper-left pixel."""

    raster: int
    row: int
    col: int


@dataclass
class Plan:
    """The full plan: inputs, classes, and the chips of each split in a fixed order."""

    embeddings: list[str]
    labels: str
    classes: list[ClassSpec]
    chip: int
    channels: int
    block: int
    splits: dict[str, list[Chip]] = field(default_factory=dict)
    n_blocks: dict[str, int] = field(default_factory=dict)


def parse_classes(text: str) -> list[ClassSpec]:
    """Parse ``"1:corn,5:soybeans,24,36"`` into class specs (index in the given order).

    Raises
    ------
    ConfigError
        On an empty list, a non-integer value, a duplicate, or a value that cannot be a label (<0 or >65535).
    """
    items = [t.strip() for t in (text or "").split(",") if t.strip()]
    if not items:
        raise ConfigError("--classes is empty: give the label values to learn, e.g. --classes 1:corn,5:soybeans")
    specs: list[ClassSpec] = []
    seen: set[int] = set()
    for i, item in enumerate(items):
        val_s, _, name = item.partition(":")
        try:
            val = int(val_s)
        except ValueError:
            raise ConfigError(f"--classes: {val_s!r} is not an integer label value (format VALUE[:NAME],...)") from None
        if val in seen:
            raise ConfigError(f"--classes: value {val} is listed twice")
        if not 0 <= val <= 65535:
            raise ConfigError(f"--classes: value {val} is outside 0..65535")
        if len(items) > 254:
            raise ConfigError("--classes: at most 254 classes (uint8 labels, 255 is the ignore index)")
        seen.add(val)
        specs.append(ClassSpec(val, i, name or f"class_{val}", PALETTE[i % len(PALETTE)]))
    return specs


def _check_label_values(lab, classes: list[ClassSpec], bounds_in_label_crs) -> None:
    """Fail early when none of the listed classes occur in the labels over the embeddings' footprint."""
    from rasterio.windows import from_bounds

    info = np.iinfo(lab.dtypes[0]) if np.issubdtype(np.dtype(lab.dtypes[0]), np.integer) else None
    if info is not None:
        bad = [c.value for c in classes if not info.min <= c.value <= info.max]
        if bad:
            raise InputError(f"{lab.name}: class values {bad} cannot occur in a {lab.dtypes[0]} label raster; "
                             "fix --classes")
    win = from_bounds(*bounds_in_label_crs, transform=lab.transform).round_offsets().round_lengths()
    win = win.intersection(rasterio_window_full(lab))
    scale = max(1, math.ceil(max(win.width, win.height) / 1024))  # a decimated look: bounded memory
    sample = lab.read(1, window=win, out_shape=(max(1, int(win.height // scale)), max(1, int(win.width // scale))))
    values = set(np.unique(sample).tolist())
    if lab.nodata is not None:
        values.discard(int(lab.nodata))
    if not values & {c.value for c in classes}:
        shown = sorted(values)[:12]
        raise InputError(f"{lab.name}: none of the classes {[c.value for c in classes]} occur in the labels over "
                         f"the embeddings (values found: {shown}); fix --classes")


def rasterio_window_full(ds):
    """The window covering all of ``ds``."""
    from rasterio.windows import Window

    return Window(0, 0, ds.width, ds.height)


def make_plan(embeddings: list[str], labels: str, classes: list[ClassSpec], *, chip: int = 256,
              block_chips: int = 4, val_frac: float = 0.15, test_frac: float = 0.15, seed: int = 0) -> Plan:
    """Check the inputs and plan the chips of each split.

    Parameters
    ----------
    embeddings : list of str
        Embedding rasters (same band count; each may have its own CRS).
    labels : str
        Label raster, any CRS; reprojected (nearest) onto each embedding grid chip by chip.
    classes : list of ClassSpec
        The classes to learn (see :func:`parse_classes`).
    chip : int
        Chip size in pixels; chips tile each raster without overlap (partial edge chips are dropped).
    block_chips : int
        Spatial block size in chips; whole blocks go to one split, so neighbouring chips never leak
        between train and validation.
    val_frac, test_frac : float
        Fractions of blocks for validation and test (each at least one block when there are >= 3).
    seed : int
        Seed for the block split.
    """
    from rasterio.coords import disjoint_bounds
    from rasterio.warp import transform_bounds

    if not embeddings:
        raise ConfigError("no embedding rasters given (--embeddings FILE [FILE ...])")
    if chip < 8:
        raise ConfigError(f"--chip {chip} is too small (use 8 or more; 256 is the default)")
    if not (0 <= val_frac < 1 and 0 <= test_frac < 1 and val_frac + test_frac < 1):
        raise ConfigError("--val-frac and --test-frac must be in [0, 1) and sum to less than 1")
    chips: list[tuple[Chip, tuple[int, int, int]]] = []
    channels = 0
    with open_raster(labels) as lab:
        check_georeferenced(lab)
        for r, path in enumerate(embeddings):
            with open_raster(path) as emb:
                check_georeferenced(emb)
                if channels and emb.count != channels:
                    raise InputError(f"{path}: has {emb.count} bands but {embeddings[0]} has {channels}; "
                                     "all embedding rasters must have the same bands")
                channels = emb.count
                if chip > emb.height or chip > emb.width:
                    raise InputError(f"{path}: chip size {chip} is larger than the raster "
                                     f"({emb.width}x{emb.height} px); use --chip {min(emb.width, emb.height)} or less")
                b = transform_bounds(emb.crs, lab.crs, *emb.bounds, densify_pts=21)
                if disjoint_bounds(b, tuple(lab.bounds)):
                    raise InputError(f"{labels}: label raster does not overlap embedding raster {path} "
                                     f"(labels {tuple(round(v, 3) for v in lab.bounds)} in {lab.crs}, "
                                     f"embeddings {tuple(round(v, 3) for v in b)}); give labels covering the area")
                if r == 0:
                    _check_label_values(lab, classes, b)
                bpx = chip * block_chips
                for row in range(0, emb.height - chip + 1, chip):
                    for col in range(0, emb.width - chip + 1, chip):
                        chips.append((Chip(r, row, col), (r, row // bpx, col // bpx)))
    blocks = sorted({b for _, b in chips})
    if len(blocks) < 3 and (val_frac > 0 or test_frac > 0):
        raise InputError(f"{embeddings[0]}: only {len(blocks)} spatial block(s) of {block_chips * chip} px, too few for "
                         f"train/val/test; use a smaller --block-chips (e.g. 1) or --chip, or more rasters")
    order = np.random.default_rng(seed).permutation(len(blocks))
    n = len(blocks)
    n_val = round(val_frac * n)
    n_test = round(test_frac * n)
    if n >= 3:
        n_val = max(n_val, 1 if val_frac > 0 else 0)
        n_test = max(n_test, 1 if test_frac > 0 else 0)
    n_val = min(n_val, max(0, n - 1))
    n_test = min(n_test, max(0, n - 1 - n_val))
    which: dict[tuple[int, int, int], str] = {}
    for k, i in enumerate(order):
        which[blocks[i]] = "val" if k < n_val else "test" if k < n_val + n_test else "train"
    plan = Plan(list(embeddings), labels, classes, chip, channels, block_chips * chip)
    for s in SPLITS:
        plan.splits[s] = [c for c, b in chips if which[b] == s]
        plan.n_blocks[s] = sum(1 for b in blocks if which[b] == s)
    return plan
