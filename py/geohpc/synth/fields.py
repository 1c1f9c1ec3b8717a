"""The synthetic field layouts and labelled points every scene maker shares (scene, s12, seg, county).

Three layouts, each kept as the demo and the tests were built on it (the demo's accuracy depends on
its layout): a recursive split into rectangles (:func:`field_map`), a grid of square fields
(:func:`square_grid`) and a grid with jittered edges (:func:`jittered_grid`). Points are drawn by
:func:`stratified_points` and written by :func:`write_points_geojson`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from geohpc.util import write_text_atomic


def field_map(size: int, n_classes: int, rng: np.random.Generator, min_field: int = 24) -> tuple[np.ndarray, np.ndarray]:
    """Split a ``size`` x ``size`` grid into rectangular fields: ``(field_id, class_code 1..K)`` grids."""
    fields = np.zeros((size, size), dtype=np.int32)
    rects = [(0, 0, size, size)]
    done: list[tuple[int, int, int, int]] = []
    while rects:
        r0, c0, r1, c1 = rects.pop()
        h, w = r1 - r0, c1 - c0
        if max(h, w) < 2 * min_field or (max(h, w) < 5 * min_field and rng.random() < 0.3):
            done.append((r0, c0, r1, c1))
            continue
        if h >= w:
            cut = int(rng.integers(r0 + min_field, r1 - min_field + 1))
            rects += [(r0, c0, cut, c1), (cut, c0, r1, c1)]
        else:
            cut = int(rng.integers(c0 + min_field, c1 - min_field + 1))
            rects += [(r0, c0, r1, cut), (r0, cut, r1, c1)]
    codes = np.zeros((size, size), dtype=np.uint8)
    order = rng.permutation(len(done))
    for i, k in enumerate(order):
        r0, c0, r1, c1 = done[k]
        fields[r0:r1, c0:c1] = i
        codes[r0:r1, c0:c1] = 1 + i % n_classes  # cycle so every class gets fields
    return fields, codes


def square_grid(size: int, step: int, n_classes: int, rng: np.random.Generator) -> np.ndarray:
    """Class raster (size, size) uint8 in 1..n_classes: square fields of ``step`` px, every class on some field."""
    cls = np.zeros((size, size), np.uint8)
    cells = [(r, c) for r in range(0, size, step) for c in range(0, size, step)]
    codes = 1 + rng.permutation(len(cells)) % n_classes  # cycle so every class gets fields
    for (r, c), k in zip(cells, codes, strict=True):
        cls[r:r + step, c:c + step] = k
    return cls


def jittered_grid(rng: np.random.Generator, height: int, width: int, codes: list[int], field_px: int) -> np.ndarray:
    """Rectangular 'fields' of random codes on a grid with jittered edges."""
    gy = -(-height // field_px) + 1
    gx = -(-width // field_px) + 1
    cells = rng.choice(np.asarray(codes), size=(gy, gx))
    ys = (np.arange(height)[:, None] + rng.integers(0, field_px // 2 + 1, size=(1, width))) // field_px
    xs = (np.arange(width)[None, :] + rng.integers(0, field_px // 2 + 1, size=(height, 1))) // field_px
    return cells[np.clip(ys, 0, gy - 1), np.clip(xs, 0, gx - 1)]


def stratified_points(flat: np.ndarray, n: int, n_classes: int, picked: np.ndarray,
                      rng: np.random.Generator) -> np.ndarray:
    """``n`` pixel indices of ``flat`` (classes 1..n_classes) stratified by class, none in ``picked``.

    Marks them in ``picked`` (so a second draw never shares a pixel); a class with fewer free pixels than
    its share gets what there is.
    """
    idx = []
    for k in range(n_classes):
        pool = np.flatnonzero((flat == k + 1) & ~picked)
        share = n // n_classes + (1 if k < n % n_classes else 0)
        idx.append(rng.choice(pool, size=min(share, len(pool)), replace=False))
    sel = np.concatenate(idx).astype(np.int64)
    picked[sel] = True
    return rng.permutation(sel)


def write_points_geojson(path: Path, x: np.ndarray, y: np.ndarray, labels: list[str], crs: str | None, start: int) -> None:
    """Labelled points as a GeoJSON FeatureCollection (ids from ``start``; ``crs`` named unless WGS84)."""
    write_text_atomic(path, points_geojson(x, y, labels, crs, start))


def points_geojson(x: np.ndarray, y: np.ndarray, labels: list[str], crs: str | None, start: int) -> str:
    """The text :func:`write_points_geojson` writes."""
    feats = [{"type": "Feature", "geometry": {"type": "Point", "coordinates": [round(float(a), 7), round(float(b), 7)]},
              "properties": {"id": start + i, "label": lab}} for i, (a, b, lab) in enumerate(zip(x, y, labels, strict=True))]
    doc: dict[str, object] = {"type": "FeatureCollection", "features": feats}
    if crs:
        doc["crs"] = {"type": "name", "properties": {"name": f"urn:ogc:def:crs:EPSG::{crs.split(':')[1]}"}}
    return json.dumps(doc)


