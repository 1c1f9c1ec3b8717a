"""geohpc.stitch: values on the AOI grid, tiled + compressed, int8 + scale, missing patches, flat memory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import rasterio
from geohpc.embed import stitch
from geohpc.embed.layout import iter_patches

REPO = Path(__file__).resolve().parents[2]


def test_stitch_float32_on_the_aoi_grid(chain, chain_emb, tmp_path) -> None:
    out = tmp_path / "emb.tif"
    assert stitch.main(["--patches", str(chain["retile"]), "--emb", str(chain_emb), "--out", str(out),
                        "--tile", "32", "--preview"]) == 0
    with rasterio.open(out) as ds:
        assert (ds.count, ds.width, ds.height, ds.dtypes[0]) == (128, 48, 48, "float32")
        assert ds.crs.to_epsg() == 32635 and (ds.transform.c, ds.transform.f, ds.transform.a) == (600000, 5000000, 10)
        assert ds.block_shapes[0] == (32, 32) and ds.compression.name == "zstd"
        data = ds.read()
    for line in (chain["retile"] / "patches.txt").read_text().split():
        meta = json.loads((chain["retile"] / line / "patch.json").read_text())
        e = np.load(chain_emb / f"{line}.npy")
        r, c = meta["row"], meta["col"]
        np.testing.assert_array_equal(np.moveaxis(data[:, r:r + e.shape[0], c:c + e.shape[1]], 0, -1), e)
    assert out.with_suffix(".png").stat().st_size > 100


def test_stitch_int8_with_scale_file(chain, chain_emb, tmp_path) -> None:
    out = tmp_path / "emb8.tif"
    res = stitch.stitch(chain["retile"], chain_emb, out, dtype="int8", tile=32)
    ref = tmp_path / "ref.tif"
    stitch.stitch(chain["retile"], chain_emb, ref, tile=32)
    with rasterio.open(out) as q, rasterio.open(res["scale"]) as s, rasterio.open(ref) as f:
        assert q.dtypes[0] == "int8" and q.nodata == -128 and s.count == 1 and s.dtypes[0] == "float32"
        scale = s.read(1)
        value = q.read().astype(np.float32) * scale[None]
        assert np.abs(value - f.read()).max() <= np.nanmax(scale) / 2 + 1e-6


def test_missing_patch_is_an_error_or_nodata(chain, chain_emb, tmp_path) -> None:
    emb = tmp_path / "emb"
    import shutil

    shutil.copytree(chain_emb, emb)
    (emb / "block_r000032_c000032" / "r000032_c000032.npy").unlink()
    out = tmp_path / "m.tif"
    r = subprocess.run([sys.executable, "-m", "geohpc", "stitch", "--patches", str(chain["retile"]), "--emb", str(emb),
                        "--out", str(out), "--tile", "16"], capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=str(REPO / "py")), timeout=60)
    assert r.returncode == 2 and "rerun infer" in r.stderr and "block_r000032_c000032/r000032_c000032" in r.stderr
    assert not out.exists() and not list(tmp_path.glob(".m.tif*"))
    stitch.stitch(chain["retile"], emb, out, tile=16, allow_missing=True)
    with rasterio.open(out) as ds:
        data = ds.read()
    assert np.isnan(data[:, 32:, 32:]).all() and np.isfinite(data[:, :32, :32]).all()


_MEM_SCRIPT = """
import json, sys, tracemalloc
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from geohpc.embed import stitch
tracemalloc.start()
stitch.stitch(Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]), tile=32, cache_mb=4)
hwm = next(int(ln.split()[1]) for ln in open("/proc/self/status") if ln.startswith("VmHWM:")) * 1024
print(json.dumps({"peak": tracemalloc.get_traced_memory()[1], "hwm": hwm}))
"""


def _fake_map(root: Path, size: int) -> tuple[Path, Path]:
    patches, emb = root / "patches", root / "emb"
    patches.mkdir(parents=True)
    grid = {"crs": "EPSG:32635", "x0": 600000.0, "y0": 5000000.0, "res": 10.0, "width": size, "height": size}
    (patches / "grid.json").write_text(json.dumps({"grid": grid, "block": 64, "patch": 32}))
    rng = np.random.default_rng(0)
    for b, p, _, _, h, w in iter_patches(size, size, 64, 32):
        (emb / b).mkdir(parents=True, exist_ok=True)
        np.save(emb / b / f"{p}.npy", rng.standard_normal((h, w, 128), dtype=np.float32))
    return patches, emb


def test_peak_memory_does_not_grow_with_the_map(tmp_path) -> None:
    peaks, hwm = {}, {}
    for size in (64, 256):  # 16x more pixels
        patches, emb = _fake_map(tmp_path / str(size), size)
        r = subprocess.run([sys.executable, "-c", _MEM_SCRIPT, str(REPO / "py"), str(patches), str(emb),
                            str(tmp_path / f"{size}.tif")], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        res = json.loads(r.stdout.splitlines()[-1])
        peaks[size], hwm[size] = res["peak"], res["hwm"]
    map_bytes = 256 * 256 * 128 * 4  # 32 MiB; the small map is 2 MiB
    assert peaks[256] < 1.3 * peaks[64] + (256 << 10), peaks
    assert peaks[256] < map_bytes / 8, peaks  # far below holding the map
    assert hwm[256] - hwm[64] < map_bytes / 4, hwm  # process RSS (GDAL's cache included) stays flat too
