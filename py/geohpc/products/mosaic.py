"""mosaic: many GeoTIFFs/COGs on one grid -> a VRT (XML written directly) and optionally one COG.

Only headers are read, one file at a time (open, read metadata, close), so 10,000+ inputs work
under a low open-file limit; the VRT lists each input with its size and block shape so GDAL never
has to open them all either. Inputs must share CRS, resolution, band count, data type and pixel
grid; the first one that differs is named in the error with the fix. Per-input nodata is kept
(pixels equal to an input's nodata do not paint over others) and the mosaic's nodata is the
first input's. With ``--cog`` the VRT is then turned into one COG by :mod:`geohpc.cog`, window by
window.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from geohpc.errors import ConfigError, InputError, run_cli
from geohpc.guards import refuse_overwrite, sweep_temporaries
from geohpc.progress import progress
from geohpc.util import atomic_path, parse_size, write_text_atomic

_GDAL_TYPES = {"uint8": "Byte", "int8": "Int8", "uint16": "UInt16", "int16": "Int16", "uint32": "UInt32",
               "int32": "Int32", "uint64": "UInt64", "int64": "Int64", "float32": "Float32", "float64": "Float64"}
_TOL = 1e-6  # relative tolerance on resolution and grid alignment (in pixels)


@dataclass(frozen=True)
class Header:
    """What the mosaic needs from one input, read without its pixels."""

    path: str
    crs_wkt: str
    transform: tuple[float, float, float, float, float, float]  # a, b, c, d, e, f
    width: int
    height: int
    count: int
    dtype: str
    nodata: float | None
    block: tuple[int, int]  # (rows, cols)
    colormap: dict[int, tuple[int, int, int, int]] | None
    colorinterp: tuple[str, ...]
    tags: tuple[tuple[str, str], ...] = ()  # dataset metadata (the class legend GEOHPC_CLASSES, ...)
    descriptions: tuple[str, ...] = ()


def read_header(path: str | os.PathLike[str]) -> Header:
    """Open ``path``, read its georeferencing and layout, close it; :class:`InputError` when unusable."""
    from geohpc.raster_io import check_georeferenced, open_raster

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no-geotransform warnings: check_georeferenced reports them
        with open_raster(path) as ds:
            check_georeferenced(ds)
            try:
                cmap = ds.colormap(1)
            except ValueError:
                cmap = None
            t = ds.transform
            return Header(str(path), ds.crs.to_wkt(), (t.a, t.b, t.c, t.d, t.e, t.f), ds.width, ds.height,
                          ds.count, ds.dtypes[0], ds.nodata, tuple(ds.block_shapes[0]), cmap,
                          tuple(ci.name for ci in ds.colorinterp), tuple(sorted(ds.tags().items())),
                          tuple(d or "" for d in ds.descriptions))


def check_compatible(ref: Header, h: Header, ref_crs: object, *, reproject: bool = False) -> bool:
    """Raise :class:`InputError` naming ``h.path`` when it cannot join a mosaic started by ``ref``.

    With ``reproject`` a different CRS, resolution or pixel grid is allowed: the result is then
    True (the input must be warped first). Band count and data type must always match.
    """
    if h.count != ref.count:
        raise InputError(f"{h.path}: {h.count} bands, {ref.path} has {ref.count}; select the same bands in every input")
    if h.dtype != ref.dtype:
        raise InputError(f"{h.path}: data type {h.dtype}, {ref.path} has {ref.dtype}; convert it (rio convert --dtype)")
    try:
        _check_grid(ref, h, ref_crs)
    except InputError:
        if reproject:
            return True
        raise
    return False


def _check_grid(ref: Header, h: Header, ref_crs: object) -> None:
    fix = "add --reproject (REPROJECT=yes) to warp it onto the grid of the first, or leave it out"
    if h.crs_wkt != ref.crs_wkt:
        from rasterio.crs import CRS

        if CRS.from_wkt(h.crs_wkt) != ref_crs:
            name = CRS.from_wkt(h.crs_wkt).to_string()
            raise InputError(f"{h.path}: CRS {name} differs from {ref.path} ({ref_crs}); {fix}")
    a, e = ref.transform[0], ref.transform[4]
    if not (math.isclose(h.transform[0], a, rel_tol=_TOL) and math.isclose(h.transform[4], e, rel_tol=_TOL)):
        raise InputError(f"{h.path}: resolution {h.transform[0]:g} x {-h.transform[4]:g} differs from "
                         f"{ref.path} ({a:g} x {-e:g}); {fix}")
    for off, res in ((h.transform[2] - ref.transform[2], a), (h.transform[5] - ref.transform[5], e)):
        px = off / res
        if abs(px - round(px)) > 1e-3:
            raise InputError(f"{h.path}: origin is {px - math.floor(px):.3f} px off the pixel grid of {ref.path}; {fix}")


def read_headers(paths: list[str], *, reproject: bool = False, warp_dir: Path | None = None,
                 nodata: float | None = None) -> list[Header]:
    """Headers of every input, one file open at a time, checked against the first.

    With ``reproject``, inputs off the first one's grid are warped onto it into ``warp_dir``
    and their warped copies take their place.
    """
    if not paths:
        raise ConfigError("no inputs: give files, --list FILE or --input-dir DIR")
    import rasterio
    from rasterio.crs import CRS

    headers: list[Header] = []
    ref_crs = None
    with rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR"):
        for p in progress(paths, total=len(paths), desc="mosaic headers"):
            h = read_header(p)
            if not headers:
                ref_crs = CRS.from_wkt(h.crs_wkt)
            elif check_compatible(headers[0], h, ref_crs, reproject=reproject):
                from geohpc.products.mosaic_warp import warp_to_grid, warped_name

                ref = headers[0]
                fill = nodata if nodata is not None else ref.nodata
                out = warp_to_grid(p, ref.crs_wkt, ref.transform, warped_name(warp_dir or Path("."), len(headers), p),
                                   fill)
                h = read_header(out)
                check_compatible(ref, h, ref_crs)
            headers.append(h)
    return headers


def _num(v: float) -> str:
    return "nan" if math.isnan(v) else repr(float(v)) if not float(v).is_integer() else str(int(v))


def vrt_xml(headers: list[Header], vrt_path: Path, nodata: float | None = None) -> str:
    """The VRT document placing every input at its pixel offset in the union of their extents.

    ``nodata`` (default: the first input's) fills the gaps and marks the mosaic's empty pixels.
    """
    ref = headers[0]
    mosaic_nodata = nodata if nodata is not None else ref.nodata
    a, e = ref.transform[0], ref.transform[4]
    minx = min(h.transform[2] for h in headers)
    maxy = max(h.transform[5] for h in headers)
    maxx = max(h.transform[2] + h.width * a for h in headers)
    miny = min(h.transform[5] + h.height * e for h in headers)
    width, height = round((maxx - minx) / a), round((miny - maxy) / e)
    gtype = _GDAL_TYPES.get(ref.dtype)
    if gtype is None:
        raise InputError(f"{ref.path}: data type {ref.dtype} cannot go into a VRT mosaic; convert it first")
    folder = vrt_path.parent.resolve()
    out = [f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">',
           f'  <SRS dataAxisToSRSAxisMapping="1,2">{escape(ref.crs_wkt)}</SRS>',
           f"  <GeoTransform>{minx!r}, {a!r}, 0, {maxy!r}, 0, {e!r}</GeoTransform>"]
    # metadata every input agrees on (the class legend of a class map) travels to the mosaic and its COG
    common = set(ref.tags).intersection(*(set(h.tags) for h in headers[1:]))
    if common:
        out.append("  <Metadata>")
        out += [f"    <MDI key={quoteattr(k)}>{escape(v)}</MDI>" for k, v in sorted(common)]
        out.append("  </Metadata>")
    places = []
    for h in headers:
        xoff, yoff = round((h.transform[2] - minx) / a), round((h.transform[5] - maxy) / e)
        src = os.path.relpath(Path(h.path).resolve(), folder)
        places.append((h, xoff, yoff, quoteattr(src)))
    for b in range(1, ref.count + 1):
        out.append(f'  <VRTRasterBand dataType="{gtype}" band="{b}">')
        if len(ref.descriptions) >= b and ref.descriptions[b - 1]:
            out.append(f"    <Description>{escape(ref.descriptions[b - 1])}</Description>")
        if mosaic_nodata is not None:
            out.append(f"    <NoDataValue>{_num(mosaic_nodata)}</NoDataValue>")
        if b == 1 and ref.colormap:
            out.append("    <ColorInterp>Palette</ColorInterp>\n    <ColorTable>")
            top = max(ref.colormap)
            for i in range(top + 1):
                c = ref.colormap.get(i, (0, 0, 0, 0))
                out.append(f'      <Entry c1="{c[0]}" c2="{c[1]}" c3="{c[2]}" c4="{c[3]}"/>')
            out.append("    </ColorTable>")
        elif ref.colorinterp[b - 1] not in ("undefined", "gray") or b == 1:
            out.append(f"    <ColorInterp>{ref.colorinterp[b - 1].capitalize()}</ColorInterp>")
        for h, xoff, yoff, src in places:
            kind = "ComplexSource" if h.nodata is not None else "SimpleSource"
            out.append(
                f"    <{kind}><SourceFilename relativeToVRT=\"1\">{escape(src[1:-1])}</SourceFilename>"
                f"<SourceBand>{b}</SourceBand>"
                f'<SourceProperties RasterXSize="{h.width}" RasterYSize="{h.height}" DataType="{gtype}" '
                f'BlockXSize="{h.block[1]}" BlockYSize="{h.block[0]}"/>'
                f'<SrcRect xOff="0" yOff="0" xSize="{h.width}" ySize="{h.height}"/>'
                f'<DstRect xOff="{xoff}" yOff="{yoff}" xSize="{h.width}" ySize="{h.height}"/>'
                + (f"<NODATA>{_num(h.nodata)}</NODATA>" if h.nodata is not None else "")
                + f"</{kind}>"
            )
        out.append("  </VRTRasterBand>")
    out.append("</VRTDataset>")
    return "\n".join(out) + "\n"


def _osgeo_gdal():  # type: ignore[no-untyped-def]
    try:
        from osgeo import gdal  # noqa: PLC0415
    except ImportError:
        return None
    return gdal


def build_mosaic(
    inputs: list[str],
    vrt: str | os.PathLike[str],
    *,
    cog: str | os.PathLike[str] | None = None,
    blocksize: int = 512,
    mem_budget: int = 1 << 30,
    threads: int | None = None,
    force: bool = False,
    reproject: bool = False,
    nodata: float | None = None,
) -> Path:
    """Check ``inputs`` share one grid, write the VRT ``vrt`` and, if asked, the COG ``cog``.

    Parameters
    ----------
    inputs:
        Raster paths (COGs or any GeoTIFFs), all with the same CRS, resolution, band count,
        data type and pixel grid.
    vrt:
        The VRT to write (atomically; rewritten only when its content changes, so a rerun of
        the COG step can skip).
    cog:
        Optional COG to build from the VRT with :func:`geohpc.cog.make_cog`.
    blocksize, mem_budget, threads, force:
        Passed to :func:`geohpc.cog.make_cog`.
    reproject:
        Warp inputs whose CRS, resolution or pixel grid differ from the first input's onto its grid
        (into ``<vrt stem>.warped/`` beside the VRT) instead of refusing them.
    nodata:
        The mosaic's nodata value (default: the first input's); also fills around warped inputs.

    Returns
    -------
    Path
        The COG when one was asked for, else the VRT.
    """
    vrt = Path(vrt)
    outputs = {Path(p).resolve() for p in (vrt, cog) if p is not None}
    clash = next((p for p in inputs if Path(p).resolve() in outputs), None)
    if clash is not None:
        raise InputError(f"{clash}: is both an input and the mosaic's output; write the mosaic elsewhere (--out/--cog)")
    refuse_overwrite(inputs, [p for p in (vrt, cog) if p is not None],  # hard links and symlinks too
                     fix="write the mosaic elsewhere (--out/--cog)")
    for p in (vrt, cog):
        if p is not None and Path(p).is_dir():
            raise InputError(f"{p}: is a folder; give the mosaic's file path (e.g. {Path(p) / 'mosaic.vrt'})")
    headers = read_headers(inputs, reproject=reproject, warp_dir=vrt.parent / f"{vrt.stem}.warped", nodata=nodata)
    text = _vrt_text(headers, vrt, nodata)
    for p in (vrt, cog):
        if p is not None:
            sweep_temporaries(p)
    print(f"[mosaic] {vrt}: {len(headers)} inputs", file=sys.stderr, flush=True)
    same = vrt.is_file() and vrt.read_text() == text
    if cog is None:
        if not same:
            write_text_atomic(vrt, text)
        return vrt
    if same:  # unchanged inputs: the COG step may skip a valid COG newer than the VRT
        return _cog_from(vrt, Path(cog), blocksize, mem_budget, threads, force)
    # the VRT gets its final name only once the COG is built: a failed COG step leaves neither
    with atomic_path(vrt) as tmp:
        tmp.write_text(text)
        return _cog_from(tmp, Path(cog), blocksize, mem_budget, threads, True)


def _vrt_text(headers: list[Header], vrt: Path, nodata: float | None) -> str:
    gdal = _osgeo_gdal()
    if gdal is None:
        return vrt_xml(headers, vrt, nodata)
    # GDAL's Python bindings are present: let BuildVRT write it
    vrt.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(vrt.with_name(f"{vrt.name}.buildvrt")) as tmp:
        extra = {"VRTNodata": nodata} if nodata is not None else {}
        ds = gdal.BuildVRT(str(tmp), [h.path for h in headers], **extra)
        if ds is None:
            raise InputError(f"{vrt}: gdal.BuildVRT failed: {gdal.GetLastErrorMsg()}")
        ds = None
        text = tmp.read_text()
        tmp.unlink()
    return text


def _cog_from(vrt: Path, cog: Path, blocksize: int, mem_budget: int, threads: int | None, force: bool) -> Path:
    from geohpc.products.cog import make_cog

    # GDAL keeps at most this many VRT sources open: stay well under this process's open-file limit.
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    given = os.environ.get("GDAL_MAX_DATASET_POOL_SIZE", "")
    pool = max(8, min(int(given) if given.isdigit() else 100, soft // 4))
    os.environ["GDAL_MAX_DATASET_POOL_SIZE"] = str(pool)
    try:
        return make_cog(vrt, cog, blocksize=blocksize, mem_budget=mem_budget, threads=threads, force=force)
    finally:
        if given:
            os.environ["GDAL_MAX_DATASET_POOL_SIZE"] = given
        else:
            os.environ.pop("GDAL_MAX_DATASET_POOL_SIZE", None)


def _inputs(args: argparse.Namespace) -> list[str]:
    paths = list(args.inputs)
    if args.list:
        lst = Path(args.list)
        if not lst.is_file():
            raise InputError(f"{lst}: input list not found (one raster path a line)")
        try:
            paths += [ln.strip() for ln in lst.read_text().splitlines() if ln.strip()]
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"{lst}: unreadable input list ({exc}); give a text file with one raster path a line") from None
    if args.input_dir:
        d = Path(args.input_dir)
        if not d.is_dir():
            raise InputError(f"{d}: --input-dir is not a folder")
        outs = {Path(p).resolve() for p in (args.out, args.cog) if p}
        paths += sorted(str(p) for p in d.iterdir()
                        if p.suffix.lower() in (".tif", ".tiff") and not p.name.startswith(".") and p.resolve() not in outs)
    return paths


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m geohpc mosaic --out X.vrt [--cog X.tif] INPUTS... | --list FILE | --input-dir DIR``."""
    ap = argparse.ArgumentParser(prog="python -m geohpc mosaic",
                                 description="Mosaic many rasters on one grid into a VRT and optionally one COG.")
    ap.add_argument("inputs", nargs="*", help="input rasters")
    ap.add_argument("--out", required=True, help="VRT to write")
    ap.add_argument("--cog", default=None, help="also write this COG from the VRT")
    ap.add_argument("--list", default=None, help="file with one input path a line")
    ap.add_argument("--input-dir", default=None, help="use every *.tif/*.tiff in this folder")
    ap.add_argument("--blocksize", type=int, default=512, help="COG tile size (default 512)")
    ap.add_argument("--mem", default="1G", help="COG memory budget (default 1G)")
    ap.add_argument("--threads", type=int, default=None, help="COG threads (default: the job's CPUs)")
    ap.add_argument("--force", action="store_true", help="rebuild the COG even if it is valid and current")
    ap.add_argument("--reproject", action="store_true",
                    help="warp inputs on another CRS/resolution/grid onto the first input's grid instead of refusing")
    ap.add_argument("--nodata", type=float, default=None, help="mosaic nodata (default: the first input's)")
    args = ap.parse_args(argv)

    def work() -> int:
        try:
            budget = parse_size(args.mem)
        except ValueError as exc:
            raise ConfigError(f"--mem: {exc}") from None
        from geohpc.guards import one_line_errors

        with one_line_errors(args.cog or args.out, fix="check the output folder and free space"):
            out = build_mosaic(_inputs(args), args.out, cog=args.cog, blocksize=args.blocksize, mem_budget=budget,
                               threads=args.threads, force=args.force, reproject=args.reproject, nodata=args.nodata)
        print(out)
        return 0

    return run_cli(work, "geohpc.mosaic")


if __name__ == "__main__":
    sys.exit(main())
