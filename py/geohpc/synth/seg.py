"""synth_seg: a tiny synthetic segmentation scene (embedding raster + label raster) for tests and demos.

The embedding raster has ``channels`` float32 bands on a UTM grid; each pixel is its class's mean
vector plus noise, so a model can learn the map. The label raster is a crop-type map of blobby
fields, written in another CRS (WGS84 by default) at a finer resolution, so ``geohpc.prep`` has to
reproject it with nearest-neighbour, as with a real Cropland Data Layer raster.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

import numpy as np

from geohpc.errors import ConfigError, run_cli
from geohpc.guards import one_line_errors, sweep_temporaries
from geohpc.synth.fields import jittered_grid
from geohpc.util import atomic_path, redact

DEFAULT_CLASSES = (1, 5, 24, 36)  # CDL-style codes: corn, soybeans, winter wheat, alfalfa
UNLISTED_CLASS = 61  # fallow: present in the labels but not in the class list (becomes ignore)
LABEL_NODATA = 0


def make_seg_scene(
    out_dir: str | Path,
    *,
    size: int = 128,
    channels: int = 16,
    classes: tuple[int, ...] = DEFAULT_CLASSES,
    seed: int = 0,
    noise: float = 0.6,
    label_crs: str = "EPSG:4326",
    field_px: int = 12,
) -> dict[str, str]:
    """Write ``embeddings.tif`` and ``labels.tif`` (and ``scene.json``) into ``out_dir``.

    Parameters
    ----------
    out_dir : path
        Folder to write into (created).
    size : int
        Embedding raster width and height in pixels (10 m, EPSG:32633).
    channels : int
        Number of embedding bands (128 for TESSERA-like data; tests use fewer).
    classes : tuple of int
        Label codes used for the fields; an extra unlisted code and nodata patches are added.
    seed, noise : int, float
        Random seed and per-pixel noise (in units of the class-mean spread).
    label_crs : str
        CRS of the label raster ("EPSG:32633" keeps the embedding grid).
    field_px : int
        Typical field size in embedding pixels.

    Returns
    -------
    dict
        Paths of the written files and the class list string for ``geohpc.prep --classes``.
    """
    from rasterio.transform import from_origin

    if size < 16 or channels < 1:
        raise ConfigError(f"synth_seg: size must be >= 16 and channels >= 1 (got size={size}, channels={channels})")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    codes = list(classes) + [UNLISTED_CLASS]
    labels = jittered_grid(rng, size, size, codes, field_px).astype(np.uint8)
    labels[: size // 10, : size // 10] = LABEL_NODATA  # a nodata corner
    means = {c: rng.normal(0.0, 1.0, channels) for c in codes}
    emb = np.empty((channels, size, size), np.float32)
    for c in codes:
        m = labels == c
        emb[:, m] = means[c][:, None]
    emb[:, labels == LABEL_NODATA] = means[codes[0]][:, None]
    emb += rng.normal(0.0, noise, emb.shape).astype(np.float32)
    emb = emb * 0.5 + 0.1  # not zero-mean, unit-std: prep's stats must matter

    crs, res = "EPSG:32633", 10.0
    transform = from_origin(500000.0, 6000000.0, res, res)
    emb_path = out / "embeddings.tif"
    prof = {"driver": "GTiff", "height": size, "width": size, "count": channels, "dtype": "float32",
            "crs": crs, "transform": transform, "tiled": True, "blockxsize": 64, "blockysize": 64,
            "interleave": "pixel"}
    for name in ("scene.json", "labels.tif", "embeddings.tif"):
        sweep_temporaries(out / name)
    # all three files go to temporaries renamed together at the end (scene.json last): a failed or killed
    # run leaves nothing under a final name
    with contextlib.ExitStack() as outs:
        t_json, t_lab, t_emb = (outs.enter_context(atomic_path(out / n)) for n in ("scene.json", "labels.tif", "embeddings.tif"))
        _write_seg_rasters(t_emb, t_lab, emb, labels, prof, transform, crs, size, label_crs)
        info = {"embeddings": str(emb_path), "labels": str(out / "labels.tif"), "classes": ",".join(map(str, classes)),
                "size": str(size), "channels": str(channels)}
        t_json.write_text(json.dumps(info, indent=2, sort_keys=True, default=str) + "\n")
    return info


def _write_seg_rasters(t_emb: Path, t_lab: Path, emb: np.ndarray, labels: np.ndarray, prof: dict, transform: object,
                       crs: str, size: int, label_crs: str) -> None:
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.warp import calculate_default_transform, reproject

    with rasterio.open(t_emb, "w", **prof) as dst:
        dst.write(emb)
    if label_crs == crs:
        dst_t, w, h, lab = transform, size, size, labels
    else:
        dst_t, w, h = calculate_default_transform(crs, label_crs, size, size,
                                                  *rasterio.transform.array_bounds(size, size, transform),
                                                  resolution=None)
        # finer than the embedding grid, as a 30 m CDL is not: nearest must pick, not invent, codes
        dst_t = dst_t @ dst_t.scale(0.7, 0.7)
        w, h = int(w / 0.7) + 1, int(h / 0.7) + 1
        lab = np.full((h, w), LABEL_NODATA, np.uint8)
        reproject(labels, lab, src_transform=transform, src_crs=crs, dst_transform=dst_t, dst_crs=label_crs,
                  resampling=Resampling.nearest, src_nodata=LABEL_NODATA, dst_nodata=LABEL_NODATA)
    lprof = {"driver": "GTiff", "height": h, "width": w, "count": 1, "dtype": "uint8", "crs": label_crs,
             "transform": dst_t, "nodata": LABEL_NODATA}
    with rasterio.open(t_lab, "w", **lprof) as dst:
        dst.write(lab, 1)


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m geohpc synth-seg --out DIR [--size N] [--channels C]``."""
    p = argparse.ArgumentParser(prog="python -m geohpc synth-seg", description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="folder for embeddings.tif, labels.tif, scene.json")
    p.add_argument("--size", type=int, default=128, help="embedding raster size in pixels (default 128)")
    p.add_argument("--channels", type=int, default=16, help="embedding bands (default 16; TESSERA has 128)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--label-crs", default="EPSG:4326", help="CRS of the label raster (default EPSG:4326)")
    a = p.parse_args(argv)

    def work() -> int:
        out = Path(a.out)
        with one_line_errors(out, fix="check --out (writable, free space)", fresh_dirs=[out]):
            if out.exists() and not out.is_dir():
                raise ConfigError(f"{out}: --out is a file; give a folder for the scene")
            info = make_seg_scene(out, size=a.size, channels=a.channels, seed=a.seed, label_crs=a.label_crs)
        print(redact(info["embeddings"]))
        print(redact(info["labels"]))
        print(f"classes={info['classes']}", file=sys.stderr)
        return 0

    return run_cli(work, "geohpc.synth_seg")


if __name__ == "__main__":
    sys.exit(main())
