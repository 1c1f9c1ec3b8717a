"""validate: a class map against held-out points and/or a ground-truth raster -> metrics, PNGs, an HTML report.

Reports overall accuracy, Cohen's kappa, per-class precision/recall/F1 and the mapped area per class
(hectares), writes ``metrics.json``, ``confusion.png`` (one per reference), ``preview.png`` (the map with
its colour table) and a self-contained ``report.html``; prints the report path on stdout.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import html
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from geohpc.classify.classes import CLASSES_TAG, classes_from_tags, colour, label_key
from geohpc.classify.metrics import confusion, plot_confusion, summarise
from geohpc.classify.points import read_points
from geohpc.classify.sample import points_to_pixels, read_cells_block
from geohpc.embed.rasters import expand_rasters, work_path
from geohpc.errors import InputError, run_cli
from geohpc.guards import one_line_errors, refuse_overwrite, sweep_temporaries
from geohpc.raster_io import DEFAULT_MEM_BUDGET, gdal_env, iter_block_windows, open_raster
from geohpc.util import atomic_path, redact


def map_files(spec: str) -> list[Path]:
    """The class-map rasters a MAP value names (``.empty`` shard notes left out)."""
    return [p for p in expand_rasters(spec) if p.suffix.lower() != ".empty"]


def _map_files(spec: str) -> tuple[list[Path], dict[int, str]]:
    files = map_files(spec)
    classes: dict[int, str] | None = None
    for f in files:
        with open_raster(f) as ds:
            c = classes_from_tags(ds.tags(), f)
        if classes is not None and c != classes:
            raise InputError(f"{f}: its classes differ from {files[0]}; validate maps of one model together")
        classes = c
    assert classes is not None
    return files, classes


def _names(classes: dict[int, str], extra: list[str]) -> list[str]:
    return [classes[k] for k in sorted(classes)] + [e for e in extra if e not in classes.values()]


def against_points(files: list[Path], classes: dict[int, str], points_path: Path, *, allow_empty: bool = False,
                   **kw: Any) -> dict[str, Any]:
    """Confusion of the map against labelled points (points off the map or on nodata are counted apart).

    No point on mapped pixels is an :class:`InputError` unless ``allow_empty``.
    """
    pts = read_points(points_path, **kw)
    code = np.zeros(len(pts), dtype=np.int64)
    for f in files:
        todo = np.flatnonzero(code == 0)
        if not len(todo):
            break
        with open_raster(f) as ds:
            sub = type(pts)(pts.ids[todo], pts.labels[todo], pts.x[todo], pts.y[todo], pts.crs, pts.source)
            _, _, row, col = points_to_pixels(sub, ds)
            inside = (row >= 0) & (row < ds.height) & (col >= 0) & (col < ds.width)
            if inside.any():
                code[todo[inside]] = read_cells_block(ds, row[inside], col[inside], DEFAULT_MEM_BUDGET)[0]
    truth = [label_key(v) for v in pts.labels]
    names = _names(classes, sorted(set(truth)))
    index = {n: i for i, n in enumerate(names)}
    ok = code > 0
    if not ok.any() and not allow_empty:
        raise InputError(f"{points_path}: none of its {len(pts)} points falls on a mapped pixel of {', '.join(map(str, files))}, "
                         "so there is nothing to score; check the points' CRS (--crs) and the map, or pass --allow-empty")
    unknown = sorted(set(np.unique(code[ok]).tolist()) - set(classes))
    if unknown:
        raise InputError(f"{files[0]}: map codes {unknown} are not in its {CLASSES_TAG} tag; re-run classify")
    t = np.array([index[v] for v in truth], dtype=np.int64)[ok]
    p = np.array([index[classes[int(c)]] for c in code[ok]], dtype=np.int64)
    res = summarise(confusion(t, p, len(names)), names)
    res.update(reference=str(points_path), unmapped_points=int((~ok).sum()), points=len(pts))
    return res


def against_truth(files: list[Path], classes: dict[int, str], truth_path: Path, *, allow_empty: bool = False) -> dict[str, Any]:
    """Pixel confusion of the map against a ground-truth class raster on the same grid (block by block)."""
    from rasterio.windows import from_bounds

    with open_raster(truth_path) as tds:
        tclasses = classes_from_tags(tds.tags(), truth_path)
        names = _names(classes, [tclasses[k] for k in sorted(tclasses)])
        index = {n: i for i, n in enumerate(names)}
        tmap = np.zeros(256, dtype=np.int64) - 1
        for k, v in tclasses.items():
            tmap[k] = index[label_key(v)]
        pmap = np.zeros(256, dtype=np.int64) - 1
        for k, v in classes.items():
            pmap[k] = index[v]
        cm = np.zeros((len(names), len(names)), dtype=np.int64)
        for f in files:
            with open_raster(f) as ds:
                if ds.crs != tds.crs or not np.allclose([ds.res[0], ds.res[1]], [tds.res[0], tds.res[1]]):
                    raise InputError(f"{truth_path}: truth raster is not on the map's grid ({f}); warp it to the map (gdalwarp -tr/-te)")
                for win in iter_block_windows(ds.height, ds.width, 512):
                    tw = from_bounds(*ds.window_bounds(win), transform=tds.transform)
                    tw = tw.round_offsets().round_lengths()
                    pred = ds.read(1, window=win)
                    ref = tds.read(1, window=tw, boundless=True, fill_value=0)
                    if ref.shape != pred.shape:
                        raise InputError(f"{truth_path}: truth raster is not aligned with {f}; warp it to the map grid")
                    pi = pmap[np.clip(pred, 0, 255)] if pred.dtype.kind in "iu" else np.full(pred.shape, -1)
                    ti = np.where((ref >= 0) & (ref <= 255), tmap[np.clip(ref, 0, 255).astype(np.int64)], -1)
                    ok = (pi >= 0) & (ti >= 0)
                    cm += confusion(ti[ok], pi[ok], len(names))
    if cm.sum() == 0 and not allow_empty:
        raise InputError(f"{truth_path}: no pixel is classed in both the truth raster and the map, so there is nothing to score; "
                         "check that they cover the same area, or pass --allow-empty")
    res = summarise(cm, names)
    res.update(reference=str(truth_path))
    return res


def mapped_area(files: list[Path], classes: dict[int, str]) -> dict[str, float]:
    """Hectares per class over the map files (block by block; needs a projected CRS in metres)."""
    area: dict[str, float] = {v: 0.0 for v in classes.values()}
    for f in files:
        with open_raster(f) as ds:
            if ds.crs is None or not ds.crs.is_projected:
                raise InputError(f"{f}: map is not in a projected CRS, so pixel areas are unknown; warp it to UTM first")
            px_ha = abs(ds.transform.a * ds.transform.e) * ds.crs.linear_units_factor[1] ** 2 / 1e4
            counts = np.zeros(256, dtype=np.int64)
            for win in iter_block_windows(ds.height, ds.width, 1024):
                counts += np.bincount(ds.read(1, window=win).ravel(), minlength=256)
            for k, v in classes.items():
                area[v] += float(counts[k]) * px_ha
    return area


def preview(files: list[Path], path: Path, max_px: int = 800, *, direct: bool = False) -> None:
    """A PNG of the map(s) in their colour table, at most ``max_px`` on the long side (decimated reads).

    Written through a temporary file, or straight into ``path`` when ``direct``.
    """
    from PIL import Image

    bounds = []
    for f in files:
        with open_raster(f) as ds:
            bounds.append((ds.bounds, ds.res))
    left = min(b.left for b, _ in bounds)
    right = max(b.right for b, _ in bounds)
    bottom = min(b.bottom for b, _ in bounds)
    top = max(b.top for b, _ in bounds)
    res = max((right - left), (top - bottom)) / max_px
    res = max(res, min(r[0] for _, r in bounds))
    w, h = max(1, int(round((right - left) / res))), max(1, int(round((top - bottom) / res)))
    canvas = np.zeros((h, w), dtype=np.uint8)
    for f in files:
        with open_raster(f) as ds:
            b = ds.bounds
            c0, r0 = int((b.left - left) / res), int((top - b.top) / res)
            cw, rh = max(1, int(round((b.right - b.left) / res))), max(1, int(round((b.top - b.bottom) / res)))
            cw, rh = min(cw, w - c0), min(rh, h - r0)
            arr = ds.read(1, out_shape=(rh, cw))
            slot = canvas[r0:r0 + rh, c0:c0 + cw]
            slot[arr > 0] = arr[arr > 0]
    lut = np.array([colour(i) for i in range(256)], dtype=np.uint8)
    if direct:  # ``path`` is already a temporary of the caller's
        Image.fromarray(lut[canvas]).save(path, format="PNG")
        return
    with atomic_path(path) as tmp:
        Image.fromarray(lut[canvas]).save(tmp, format="PNG")


_CSS = ("body{font-family:sans-serif;max-width:1000px;margin:2em auto}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td:first-child{text-align:left}"
        ".sw{display:inline-block;width:1em;height:1em;margin:0 4px 0 12px;vertical-align:middle}.big{font-size:1.2em}"
        "img{max-width:100%;image-rendering:pixelated}")


def _img(path: Path) -> str:
    name = path.name.split(".tmp")[0].lstrip(".").rsplit(".", 1)[0] if ".tmp" in path.name else path.name
    return f'<img alt="{name}" src="data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}">'


def _table(res: dict[str, Any], area: dict[str, float]) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{v['precision']:.3f}</td><td>{v['recall']:.3f}</td><td>{v['f1']:.3f}</td>"
        f"<td>{v['support']}</td><td>{area.get(k, 0.0):,.1f}</td></tr>" for k, v in res["per_class"].items())
    return ("<table><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th><th>mapped area (ha)</th></tr>"
            f"{rows}</table>")


OUTPUT_FILES = ("preview.png", "confusion_points.png", "confusion_truth.png", "metrics.json", "report.html")


def validate(map_spec: str, out_dir: Path, *, points: Path | None = None, truth: Path | None = None, allow_empty: bool = False,
             **point_kw: Any) -> dict[str, Any]:
    """Validate the map(s) in ``map_spec``; write metrics.json, PNGs and report.html (last) into ``out_dir``.

    No output may be an input; a map with no mapped pixel, or no reference on mapped pixels, is an
    :class:`InputError` unless ``allow_empty``.
    """
    if points is None and truth is None:
        raise InputError("nothing to validate against: give POINTS=<held-out points> and/or TRUTH=<class raster>")
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir}: --out-dir is a file; give a folder for the report")
    outputs = [out_dir / name for name in OUTPUT_FILES]
    refuse_overwrite([*map_files(map_spec), *(p for p in (points, truth) if p is not None)], outputs,
                     fix="give --out-dir a folder of its own")
    for target in outputs:
        sweep_temporaries(target)
    files, classes = _map_files(map_spec)
    # every output goes to its temporary; they are renamed together at the end (report.html last), so a
    # failed or killed run leaves no output under a final name
    with contextlib.ExitStack() as outs:
        names = ["report.html", "metrics.json", *(f"confusion_{k}.png" for k, v in (("points", points), ("truth", truth))
                                                  if v is not None), "preview.png"]
        tmps = {name: outs.enter_context(atomic_path(out_dir / name)) for name in names}
        return _validate(files, classes, tmps, points=points, truth=truth, allow_empty=allow_empty, **point_kw)


def _validate(files: list[Path], classes: dict[int, str], tmps: dict[str, Path], *, points: Path | None,
              truth: Path | None, allow_empty: bool, **point_kw: Any) -> dict[str, Any]:
    result: dict[str, Any] = {"map": [str(f) for f in files], "classes": {str(k): v for k, v in classes.items()}}
    with gdal_env():
        if points is not None:
            result["points"] = against_points(files, classes, points, allow_empty=allow_empty, **point_kw)
        if truth is not None:
            result["truth"] = against_truth(files, classes, truth, allow_empty=allow_empty)
        result["area_ha"] = mapped_area(files, classes)
        if not any(result["area_ha"].values()) and not allow_empty:
            raise InputError(f"{files[0]}: the map has no classed pixel (all nodata); re-run classify, or pass --allow-empty")
        preview(files, tmps["preview.png"], direct=True)
    sections = []
    for key, title in (("points", "Held-out points"), ("truth", "Ground-truth raster (pixels)")):
        if key not in result:
            continue
        r = result[key]
        png = tmps[f"confusion_{key}.png"]
        plot_confusion(np.array(r["confusion"]), r["labels"], str(png), title=f"{title}: OA {r['overall_accuracy']:.3f}")
        extra = f"; {r['unmapped_points']} of {r['points']} points off the map or on nodata (left out)" if key == "points" else ""
        sections.append(f"<h2>{title}</h2><p>reference: <code>{html.escape(r['reference'])}</code>{extra}</p>"
                        f"<p class=big>overall accuracy <b>{r['overall_accuracy']:.3f}</b> &middot; Cohen's kappa <b>{r['kappa']:.3f}</b>"
                        f" &middot; macro F1 <b>{r['macro_f1']:.3f}</b> &middot; n = {r['n']}</p>{_table(r, result['area_ha'])}{_img(png)}")
    primary = result.get("points") or result.get("truth")
    result["overall_accuracy"], result["kappa"] = primary["overall_accuracy"], primary["kappa"]
    legend = "".join(f'<span class=sw style="background:rgb{colour(k)}"></span>{html.escape(v)} ' for k, v in sorted(classes.items()))
    page = (f"<!doctype html><html><head><meta charset=utf-8><title>geohpc validation</title><style>{_CSS}</style></head>"
            f"<body><h1>Crop map validation</h1><p>map: {html.escape(', '.join(result['map']))}</p>"
            f"{''.join(sections)}<h2>Map preview</h2><p>{legend}</p>{_img(tmps['preview.png'])}</body></html>")
    tmps["metrics.json"].write_text(json.dumps(result, indent=2, sort_keys=True, default=str) + "\n")
    tmps["report.html"].write_text(page)
    return result


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m geohpc validate --map MAP --points P [--truth T] --out-dir DIR``."""
    ap = argparse.ArgumentParser(prog="geohpc.validate", description=__doc__.splitlines()[0])
    ap.add_argument("--map", required=True, help="class map: a file, a directory of shards, a VRT or a comma list")
    ap.add_argument("--points", default="", help="held-out labelled points (.gpkg/.geojson/.parquet/.csv)")
    ap.add_argument("--truth", default="", help="ground-truth class raster with a GEOHPC_CLASSES tag, on the map's grid")
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--label-col", default="label")
    ap.add_argument("--id-col", default="id")
    ap.add_argument("--crs", default="", help="CRS of CSV point coordinates")
    ap.add_argument("--allow-empty", action="store_true", help="report even when no reference falls on mapped pixels")
    args = ap.parse_args(argv)

    def work() -> int:
        out = work_path(args.out_dir)
        with one_line_errors(out, fix="check --out-dir (writable, free space), the map and the references", fresh_dirs=[out]):
            res = validate(args.map, out, points=work_path(args.points) if args.points else None,
                           truth=work_path(args.truth) if args.truth else None, allow_empty=args.allow_empty,
                           label_col=args.label_col, id_col=args.id_col, crs=args.crs)
        print(redact(f"geohpc.validate: overall accuracy {res['overall_accuracy']:.3f}, kappa {res['kappa']:.3f}; "
                     f"report: {out / 'report.html'}"), file=sys.stderr)
        print(redact(json.dumps({"report": str(out / "report.html"), "overall_accuracy": res["overall_accuracy"], "kappa": res["kappa"]})))
        return 0

    return run_cli(work, "geohpc.validate")


if __name__ == "__main__":
    sys.exit(main())
