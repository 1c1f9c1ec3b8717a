"""geohpc.stack and geohpc.retile: TESSERA order and shapes, sorted dates, masks, patches that tile the stack."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from geohpc.embed import retile, stack
from geohpc.embed.layout import DONE_MARKER, PATCH_LIST, S2_BANDS
from geohpc.errors import InputError


def test_stack_shapes_order_and_sorted_dates(chain, synth) -> None:
    s = chain["stack"]
    bands, masks, doys = (np.load(s / f"{n}.npy") for n in ("bands", "masks", "doys"))
    assert bands.shape == (6, 48, 48, 10) and bands.dtype == np.uint16
    assert masks.shape == (6, 48, 48) and doys.shape == (6,)
    assert np.all(np.diff(doys) > 0), "the ItemCollection is newest-first; the stack must be sorted"
    info = json.loads((s / "stack.json").read_text())
    assert info["band_order"] == list(S2_BANDS)
    first = chain["download"] / info["items"]["s2"][0]
    for b, name in enumerate(S2_BANDS):  # band b of the stack is exactly that band's file: TESSERA order
        with rasterio.open(first / f"{name}.tif") as ds:
            np.testing.assert_array_equal(bands[0, :, :, b], ds.read(1))
    with rasterio.open(first / "SCL.tif") as ds:
        scl = ds.read(1)
    np.testing.assert_array_equal(masks[0].astype(bool), np.isin(scl, [4, 5, 6, 7, 11]))
    assert 0 < masks.mean() < 1
    for orbit in ("ascending", "descending"):
        sar = np.load(s / f"sar_{orbit}.npy")
        sdoy = np.load(s / f"sar_{orbit}_doy.npy")
        assert sar.shape == (3, 48, 48, 2) and sar.dtype == np.float32 and sdoy.shape == (3,)
        assert np.all(np.diff(sdoy) > 0) and -40 < np.nanmean(sar) < 5  # dB
    assert not list(s.glob(".*"))  # no temp files left


def _copy_downloads(chain, tmp_path: Path) -> Path:
    d = tmp_path / "dl"
    shutil.copytree(chain["download"], d)
    return d


def test_same_timestamp_and_year_wrap_are_errors(chain, tmp_path) -> None:
    d = _copy_downloads(chain, tmp_path)
    metas = sorted(d.glob(f"S2*/{DONE_MARKER}"))
    m0, m1 = (json.loads(p.read_text()) for p in metas[:2])
    m1["datetime"] = m0["datetime"]
    metas[1].write_text(json.dumps(m1))
    with pytest.raises(InputError, match="same timestamp"):
        stack.build_stack(d, tmp_path / "s")
    m1["datetime"] = "2025-01-03T09:30:00Z"
    metas[1].write_text(json.dumps(m1))
    with pytest.raises(InputError, match="span years"):
        stack.build_stack(d, tmp_path / "s")
    assert not (tmp_path / "s" / "stack.json").exists()


def test_unfinished_download_is_an_error(chain, tmp_path) -> None:
    d = _copy_downloads(chain, tmp_path)
    next(d.glob(f"S2*/{DONE_MARKER}")).unlink()
    with pytest.raises(InputError, match="rerun the download"):
        stack.build_stack(d, tmp_path / "s")


def test_stack_cli_bad_input(tmp_path) -> None:
    rc = stack.main(["--downloads", str(tmp_path / "none"), "--out", str(tmp_path / "s")])
    assert rc == 2


def test_patches_reassemble_the_stack(chain) -> None:
    r, s = chain["retile"], chain["stack"]
    lines = (r / "patches.txt").read_text().splitlines()
    assert len(lines) == 9  # 48x48 in blocks of 32 (2x2 blocks) with patches of 16: 4+2+2+1
    assert json.loads((r / "grid.json").read_text())["patch"] == 16
    bands = np.load(s / "bands.npy")
    sar = np.load(s / "sar_descending.npy")
    rebuilt = np.zeros_like(bands)
    for line in lines:
        meta = json.loads((r / line / "patch.json").read_text())
        y, x, h, w = meta["row"], meta["col"], meta["height"], meta["width"]
        rebuilt[:, y:y + h, x:x + w] = np.load(r / line / "bands.npy")
        np.testing.assert_array_equal(np.load(r / line / "sar_descending.npy"), sar[:, y:y + h, x:x + w])
        np.testing.assert_array_equal(np.load(r / line / "doys.npy"), np.load(s / "doys.npy"))
    np.testing.assert_array_equal(rebuilt, bands)
    block_lines = (r / "block_r000000_c000000" / PATCH_LIST).read_text().splitlines()
    assert block_lines == [ln for ln in lines if ln.startswith("block_r000000_c000000/")] and len(block_lines) == 4


def test_retile_bad_block_and_size_change(chain, tmp_path) -> None:
    with pytest.raises(InputError, match="not a block"):
        retile.retile_block(chain["stack"], chain["retile"], "block_r000005_c000000", 32, 16)
    assert retile.main(["--stack", str(chain["stack"]), "--out", str(chain["retile"]), "--all",
                        "--block", "40", "--patch", "20"]) == 2  # grid.json was written for 32/16
    assert retile.main(["--stack", str(tmp_path / "nostack"), "--out", str(tmp_path / "p"), "--all"]) == 2


_MEM = """
import sys, tracemalloc
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from geohpc.embed import stack
tracemalloc.start()
stack.build_stack(Path(sys.argv[2]), Path(sys.argv[4]) / "warm", block=16)  # first use imports lazily
peaks = []
for dl, name in ((sys.argv[2], "t6"), (sys.argv[3], "t12")):
    tracemalloc.reset_peak()
    stack.build_stack(Path(dl), Path(sys.argv[4]) / name, block=16)
    peaks.append(tracemalloc.get_traced_memory()[1])
print(*peaks)
"""


def test_stack_memory_does_not_grow_with_the_series(chain, tmp_path) -> None:
    import datetime as dt
    import subprocess
    import sys

    d12 = _copy_downloads(chain, tmp_path)  # the same AOI with twice the Sentinel-2 dates
    for sub in sorted(d12.glob("S2*")):
        twin = d12 / f"{sub.name}_B"
        shutil.copytree(sub, twin)
        meta = json.loads((twin / DONE_MARKER).read_text())
        when = dt.datetime.fromisoformat(meta["datetime"].replace("Z", "+00:00")) + dt.timedelta(days=2)
        meta.update(id=twin.name, datetime=when.isoformat())
        (twin / DONE_MARKER).write_text(json.dumps(meta))
    repo = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}  # no boto3 session in the numbers
    r = subprocess.run([sys.executable, "-c", _MEM, str(repo / "py"), str(chain["download"]), str(d12),
                        str(tmp_path / "s")], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    p6, p12 = (int(v) for v in r.stdout.split()[-2:])
    assert np.load(tmp_path / "s" / "t12" / "bands.npy").shape[0] == 12
    pixels6 = 6 * 48 * 48 * (10 * 2 + 1)  # bytes of 6 more dates of bands + masks
    assert p12 - p6 < pixels6 / 5, (p6, p12)  # twice the series, (about) the same peak
    assert p12 < 6 * 48 * 48 * 10 * 2  # below even the 6-date bands array
