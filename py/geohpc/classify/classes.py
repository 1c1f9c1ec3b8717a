"""Class codes, label maps and colours shared by train, classify, validate and the synthetic scene.

A class map stores code 0 as nodata and codes 1..K for the classes; the code -> label table travels in
the raster's tag ``GEOHPC_CLASSES`` (JSON ``{"1": "wheat", ...}``) and in the model's ``labels.json``.
"""

from __future__ import annotations

import json
from typing import Any

from geohpc.errors import InputError

CLASSES_TAG = "GEOHPC_CLASSES"

PALETTE = [
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
    (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (220, 190, 255),
    (170, 110, 40), (255, 250, 200), (128, 0, 0), (170, 255, 195), (128, 128, 0), (255, 215, 180),
    (0, 0, 128), (128, 128, 128),
]


def colour(code: int) -> tuple[int, int, int]:
    """RGB colour for class ``code`` (1-based); code 0 is black/nodata."""
    if code <= 0:
        return (0, 0, 0)
    return PALETTE[(code - 1) % len(PALETTE)]


def colormap(codes: list[int]) -> dict[int, tuple[int, int, int, int]]:
    """A GDAL colour table for ``codes`` (plus 0 transparent)."""
    cmap = {0: (0, 0, 0, 0)}
    for c in codes:
        cmap[int(c)] = (*colour(int(c)), 255)
    return cmap


def label_key(value: Any) -> str:
    """The string form used to compare labels across files (``3`` and ``"3"`` are the same class)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def classes_from_tags(tags: dict[str, str], path: object) -> dict[int, str]:
    """Read the ``GEOHPC_CLASSES`` tag of a class raster into ``{code: label}``."""
    raw = tags.get(CLASSES_TAG)
    if not raw:
        raise InputError(f"{path}: class raster has no {CLASSES_TAG} tag (code -> label); classify it with geohpc.classify")
    try:
        return {int(k): str(v) for k, v in json.loads(raw).items()}
    except (ValueError, AttributeError):
        raise InputError(f"{path}: {CLASSES_TAG} tag is not a JSON object of code -> label; rewrite it") from None


def classes_tag(classes: dict[int, Any]) -> str:
    """The ``GEOHPC_CLASSES`` tag text for ``{code: label}``."""
    return json.dumps({str(k): label_key(v) for k, v in sorted(classes.items())})
