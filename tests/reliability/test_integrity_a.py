"""Hostile walk of cog, tiles, mosaic, download, stack, retile, infer and stitch: bad inputs and kills.

Every bad case runs the real program as a subprocess and must end in one line
``geohpc.<cmd>: error: <file>: <what> (<fix>)`` on stderr, exit 2, no traceback, and nothing new on disk.
Every kill case SIGKILLs the program once its first temporary appears, reruns it, and asserts no
temporary is left and the output equals a clean run's.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import integrity_a_inputs as inp
import numpy as np
import pytest

pytestmark = pytest.mark.reliability
REPO = Path(__file__).resolve().parents[2]
Record = Callable[[str, str, str, bool], None]

ENV = dict(os.environ, PYTHONPATH=str(REPO / "py"), GEOHPC_THREADS="1")
ERROR_LINE = re.compile(r"^geohpc[ .][a-z-]+: error: \S")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("world")
    return {"p": inp.products(root / "products"), "c": inp.chain(root / "chain")}


def run(cmd: str, argv: list[str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "geohpc", cmd, *map(str, argv)], capture_output=True, text=True,
                          env=ENV, timeout=timeout)


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir()}


def ballast(full: Path, leave: int) -> None:
    """Fill the tiny disk but ``leave`` bytes."""
    free = shutil.disk_usage(full).free
    with open(full / "ballast", "wb") as f:
        f.write(b"\0" * max(0, free - leave))


def copy(src: Path, dst: Path) -> Path:
    (shutil.copytree if src.is_dir() else shutil.copyfile)(src, dst)
    return dst


# ---------------------------------------------------------------- the table of bad cases
# each builder gets (tmp folder, world, full disk, read-only folder) and returns the argv

Case = Callable[[Path, dict[str, Any], Path, Path], list[Any]]


def _cog(src_key: str) -> Case:
    return lambda t, w, full, ro: [w["p"][src_key], t / "o.tif"]


def _tiles(src_key: str) -> Case:
    return lambda t, w, full, ro: [w["p"][src_key], t / "tiles", "--zoom", "10-13", "--processes", "1"]


def _hard_link_cog(t: Path, w: dict[str, Any], full: Path, ro: Path) -> list[Any]:
    a = copy(w["p"]["cls"], t / "a.tif")
    os.link(a, t / "b.tif")
    return [a, t / "b.tif"]


def _stitch_grid(text: str) -> Case:
    def build(t: Path, w: dict[str, Any], full: Path, ro: Path) -> list[Any]:
        (t / "patches").mkdir()
        (t / "patches" / "grid.json").write_text(text)
        return ["--patches", t / "patches", "--emb", w["c"]["emb"], "--out", t / "o.tif"]
    return build


def _stitch_truncated(t: Path, w: dict[str, Any], full: Path, ro: Path) -> list[Any]:
    emb = copy(w["c"]["emb"], t / "emb")
    npy = sorted(emb.rglob("*.npy"))[-1]
    npy.write_bytes(npy.read_bytes()[:1000])
    return ["--patches", w["c"]["retile"], "--emb", emb, "--out", t / "o.tif"]


def _stitch(out: Callable[[Path, Path, Path], Path], *extra: str, emb: str = "emb") -> Case:
    def build(t: Path, w: dict[str, Any], full: Path, ro: Path) -> list[Any]:
        if out(t, full, ro).parent == full:
            ballast(full, 64 << 10)
        e = w["c"][emb] if emb in w["c"] else t / emb
        e.mkdir(exist_ok=True)
        return ["--patches", w["c"]["retile"], "--emb", e, "--out", out(t, full, ro), *extra]
    return build


def _download(items: Callable[[Path, dict[str, Any]], Path], out: Callable[[Path, Path, Path], Path]) -> Case:
    def build(t: Path, w: dict[str, Any], full: Path, ro: Path) -> list[Any]:
        o = out(t, full, ro)
        if o.parent == full:
            ballast(full, 16 << 10)
        return ["--items", items(t, w), "--bbox", w["c"]["bbox"], "--out", o, "--retries", "1", "--backoff", "0"]
    return build


def _items_text(text: bytes) -> Callable[[Path, dict[str, Any]], Path]:
    def make(t: Path, w: dict[str, Any]) -> Path:
        (t / "items.json").write_bytes(text)
        return t / "items.json"
    return make


def _stack(damage: Callable[[Path], None] | None, out: Callable[[Path, Path, Path], Path]) -> Case:
    def build(t: Path, w: dict[str, Any], full: Path, ro: Path) -> list[Any]:
        dl = w["c"]["download"]
        if damage is not None:
            dl = copy(dl, t / "dl")
            damage(dl)
        o = out(t, full, ro)
        if o.parent == full:
            ballast(full, 8 << 10)
        return ["--downloads", dl, "--out", o, "--block", "16"]
    return build


def _bad_marker(dl: Path) -> None:
    next(iter(sorted(dl.glob("*/_DONE.json")))).write_text('{"id": ')


def _corrupt_band(dl: Path) -> None:
    band = sorted(dl.glob("*/B04.tif"))[0]
    inp.corrupt_body(band, band.with_name("x.tif"))
    os.replace(band.with_name("x.tif"), band)


def _retile(damage: Callable[[Path], None] | None, out: Callable[[Path, Path, Path], Path]) -> Case:
    def build(t: Path, w: dict[str, Any], full: Path, ro: Path) -> list[Any]:
        st = w["c"]["stack"]
        if damage is not None:
            st = copy(st, t / "st")
            damage(st)
        o = out(t, full, ro)
        if o.parent == full:
            ballast(full, 8 << 10)
        return ["--stack", st, "--out", o, "--block-id", w["c"]["block"], "--block", "32", "--patch", "16"]
    return build


def _infer(model: Callable[[Path, dict[str, Any]], Path] | None, patches: Callable[[Path, dict[str, Any]], Path] | None,
           out: Callable[[Path, Path, Path], Path]) -> Case:
    def build(t: Path, w: dict[str, Any], full: Path, ro: Path) -> list[Any]:
        o = out(t, full, ro)
        if o.parent == full:
            ballast(full, 16 << 10)
        return ["--patches", patches(t, w) if patches else w["c"]["retile"], "--block", w["c"]["block"],
                "--model", model(t, w) if model else w["c"]["model"], "--out", o, "--threads", "1", "--device", "cpu"]
    return build


def _bad_model(t: Path, w: dict[str, Any]) -> Path:
    data = w["c"]["model"].read_bytes()
    (t / "bad.pt").write_bytes(data[: len(data) // 2])
    return t / "bad.pt"


def _truncated_patch(t: Path, w: dict[str, Any]) -> Path:
    rt = copy(w["c"]["retile"], t / "rt")
    npy = rt / w["c"]["patch"] / "bands.npy"
    npy.write_bytes(npy.read_bytes()[:200])
    return rt


def _truncate_npy(name: str) -> Callable[[Path], None]:
    def damage(st: Path) -> None:
        p = st / name
        p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    return damage


def _tmp(name: str) -> Callable[[Path, Path, Path], Path]:
    return lambda t, full, ro: t / name


def _full(name: str) -> Callable[[Path, Path, Path], Path]:
    return lambda t, full, ro: full / name


def _ro(name: str) -> Callable[[Path, Path, Path], Path]:
    return lambda t, full, ro: ro / name


BAD: list[tuple[str, str, Case]] = [
    ("cog", "corrupt raster body", _cog("corrupt")),
    ("cog", "truncated file", _cog("truncated")),
    ("cog", "0-byte file", _cog("empty")),
    ("cog", "all-nodata raster", _cog("nodata")),
    ("cog", "missing file", lambda t, w, full, ro: [t / "nope.tif", t / "o.tif"]),
    ("cog", "output is a hard link of the input", _hard_link_cog),
    ("cog", "read-only output folder", lambda t, w, full, ro: [w["p"]["cls"], ro / "o.tif"]),
    ("cog", "full disk", lambda t, w, full, ro: [w["p"]["cont"], full / "o.tif"]),
    ("tiles", "corrupt raster body", _tiles("corrupt")),
    ("tiles", "truncated file", _tiles("truncated")),
    ("tiles", "0-byte file", _tiles("empty")),
    ("tiles", "all-nodata raster", _tiles("nodata")),
    ("tiles", "missing file", lambda t, w, full, ro: [t / "nope.tif", t / "tiles"]),
    ("tiles", "output folder is a file", lambda t, w, full, ro: [w["p"]["cls"], copy(w["p"]["cont"], t / "f.tif")]),
    ("tiles", "read-only output folder", lambda t, w, full, ro: [w["p"]["cls"], ro / "tiles", "--zoom", "10-12"]),
    ("tiles", "output folder is the source", lambda t, w, full, ro: [copy(w["p"]["cls"], t / "c.tif")] * 2),
    ("mosaic", "corrupt raster body", lambda t, w, full, ro: ["--out", t / "m.vrt", "--cog", t / "m.tif",
                                                             w["p"]["corrupt"], w["p"]["cls2"]]),
    ("mosaic", "truncated file", lambda t, w, full, ro: ["--out", t / "m.vrt", "--cog", t / "m.tif",
                                                        w["p"]["truncated"], w["p"]["cls2"]]),
    ("mosaic", "missing file", lambda t, w, full, ro: ["--out", t / "m.vrt", t / "nope.tif", w["p"]["cls"]]),
    ("mosaic", "output is an input", lambda t, w, full, ro: ["--out", t / "m.vrt", "--cog", copy(w["p"]["cls"], t / "c.tif"),
                                                            t / "c.tif", w["p"]["cls2"]]),
    ("mosaic", "read-only output folder", lambda t, w, full, ro: ["--out", ro / "m.vrt", w["p"]["cls"], w["p"]["cls2"]]),
    ("mosaic", "full disk", lambda t, w, full, ro: ["--out", full / "m.vrt", "--cog", full / "m.tif",
                                                   w["p"]["cont"], w["p"]["cont"]]),
    ("mosaic", "binary input list", lambda t, w, full, ro: ["--out", t / "m.vrt", "--list",
                                                           (t / "l.txt", (t / "l.txt").write_bytes(b"\xff\xfe\x00"))[0]]),
    ("mosaic", "output path is a folder", lambda t, w, full, ro: ["--out", t, w["p"]["cls"], w["p"]["cls2"]]),
    ("stitch", "grid.json not JSON", _stitch_grid("{not json")),
    ("stitch", "grid.json without the grid", _stitch_grid('{"grid": {}, "block": 32}')),
    ("stitch", "missing grid.json", lambda t, w, full, ro: ["--patches", t, "--emb", w["c"]["emb"], "--out", t / "o.tif"]),
    ("stitch", "truncated embedding", _stitch_truncated),
    ("stitch", "read-only output folder", _stitch(lambda t, full, ro: ro / "o.tif")),
    ("stitch", "full disk", _stitch(lambda t, full, ro: full / "o.tif")),
    ("stitch", "output path is a folder", _stitch(lambda t, full, ro: t / "x" / "..")),
    ("stitch", "output is the grid.json", lambda t, w, full, ro: ["--patches", w["c"]["retile"], "--emb", w["c"]["emb"],
                                                                 "--out", w["c"]["retile"] / "grid.json"]),
    ("stitch", "no embedding at all (all nodata)", _stitch(lambda t, full, ro: t / "o.tif", "--allow-missing", emb="none")),
    ("download", "items file not JSON", _download(_items_text(b"{oops"), _tmp("dl"))),
    ("download", "0-byte items file", _download(_items_text(b""), _tmp("dl"))),
    ("download", "binary items file", _download(_items_text(b"\xff\xfe\x00\x01"), _tmp("dl"))),
    ("download", "read-only output folder", _download(lambda t, w: w["c"]["items"], _ro("dl"))),
    ("download", "full disk", _download(lambda t, w: w["c"]["items"], _full("dl"))),
    ("download", "AOI outside every item (empty)", lambda t, w, full, ro: [
        "--items", w["c"]["items"], "--bbox", "100000,100000,100320,100320", "--out", t / "dl", "--retries", "1"]),
    ("download", "output is the items file", _download(lambda t, w: copy(w["c"]["items"], t / "i.json"), _tmp("i.json"))),
    ("stack", "unreadable done marker", _stack(_bad_marker, _tmp("st"))),
    ("stack", "corrupt band body", _stack(_corrupt_band, _tmp("st"))),
    ("stack", "read-only output folder", _stack(None, _ro("st"))),
    ("stack", "full disk", _stack(None, _full("st"))),
    ("stack", "output is the download folder", lambda t, w, full, ro: ["--downloads", w["c"]["download"],
                                                                       "--out", w["c"]["download"]]),
    ("retile", "stack.json not JSON", _retile(lambda st: (st / "stack.json").write_text("[1,"), _tmp("rt"))),
    ("retile", "truncated stack array", _retile(_truncate_npy("bands.npy"), _tmp("rt"))),
    ("retile", "read-only output folder", _retile(None, _ro("rt"))),
    ("retile", "full disk", _retile(None, _full("rt"))),
    ("infer", "damaged model", _infer(_bad_model, None, _tmp("inf"))),
    ("infer", "truncated patch array", _infer(None, _truncated_patch, _tmp("inf"))),
    ("infer", "read-only output folder", _infer(None, None, _ro("inf"))),
    ("infer", "full disk", _infer(None, None, _full("inf"))),
]


def check_one_line(r: subprocess.CompletedProcess[str]) -> list[str]:
    """What is wrong with a failed run's exit and stderr (empty when it is one line and exit 2)."""
    problems = []
    if r.returncode != 2:
        problems.append(f"exit {r.returncode}")
    if "Traceback" in r.stderr:
        problems.append("traceback")
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ERROR_LINE.match(ln)]
    if len(errors) != 1 or not lines or lines[-1] != errors[0]:
        problems.append(f"not one error line: {lines[-3:]}")
    return problems


@pytest.mark.parametrize(("cmd", "case", "build"), BAD, ids=[f"{c}: {k}" for c, k, _ in BAD])
def test_bad_input_is_one_line_and_leaves_nothing(cmd: str, case: str, build: Case, world: dict[str, Any],
                                                  tmp_path: Path, full_disk: Path, readonly_dir: Path,
                                                  record: Record) -> None:
    t = tmp_path / "t"
    t.mkdir()
    argv = build(t, world, full_disk, readonly_dir)
    before, world_before = files_under(tmp_path), files_under(world["c"]["root"]) | files_under(world["p"]["cls"].parent)
    r = run(cmd, argv)
    problems = check_one_line(r)
    new = files_under(tmp_path) - before
    if new:
        problems.append(f"new files {sorted(new)[:5]}")
    if files_under(world["c"]["root"]) | files_under(world["p"]["cls"].parent) != world_before:
        problems.append("the inputs' folders changed")
    record("bad_input", cmd, case, not problems)
    assert not problems, f"{cmd} {case}: {problems}\n{r.stderr[-2000:]}"


SECRET_CASES = [("cog", lambda t: [f"/vsicurl/http://127.0.0.1:9/x.tif?{inp.SIG}", t / "o.tif"]),
                ("tiles", lambda t: [f"/vsicurl/http://127.0.0.1:9/x.tif?{inp.SIG}", t / "tiles"]),
                ("mosaic", lambda t: ["--out", t / "m.vrt", f"/vsicurl/http://127.0.0.1:9/x.tif?{inp.SIG}"])]


@pytest.mark.parametrize(("cmd", "build"), SECRET_CASES, ids=[c for c, _ in SECRET_CASES])
def test_signed_url_is_never_printed(cmd: str, build: Callable[[Path], list[Any]], tmp_path: Path,
                                     record: Record) -> None:
    r = run(cmd, build(tmp_path), timeout=120)
    secret = inp.SIG.split("=", 1)[1]
    ok = secret not in r.stderr and secret not in r.stdout and not check_one_line(r)
    record("secret", cmd, "signed /vsicurl/ URL in an error", ok)
    assert ok, r.stderr


# ---------------------------------------------------------------- kill -9 mid-write, rerun, same output

def temporaries(root: Path) -> list[Path]:
    """The temporaries under ``root``; walked again when the running program renames one mid-walk."""
    while True:
        try:
            return [p for p in root.rglob("*") if p.name.startswith(".") and ".tmp" in p.name]
        except FileNotFoundError:  # a temporary folder renamed into place while rglob was inside it
            continue


def kill_mid_write(cmd: str, argv: list[Any], watch: Path, timeout: float = 120, sig: int = signal.SIGKILL) -> bool:
    """Start the program, send ``sig`` once a temporary appears under ``watch``; True when it was stopped so.

    The signal goes to the program's whole process group, as Slurm's scancel and time limit signal every
    process of a job step (and a node failure takes them all): a pool worker never outlives the kill and
    writes on while the rerun runs.
    """
    proc = subprocess.Popen([sys.executable, "-m", "geohpc", cmd, *map(str, argv)], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + timeout
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if watch.exists() and temporaries(watch):
                os.killpg(proc.pid, sig)
                return proc.wait() != 0
            time.sleep(0.001)
        return False
    finally:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # what is left of the group (workers still shutting down)
        proc.wait()


def same_tree(a: Path, b: Path, exact: Callable[[Path], bool] = lambda p: True) -> list[str]:
    """Files that differ between two output trees (pixels for rasters, bytes otherwise; JSON/text summaries
    and the tiles' shard bookkeeping only by name)."""
    import rasterio

    fa, fb = files_under(a), files_under(b)
    diff = sorted(fa ^ fb)
    for rel in sorted(fa & fb):
        pa, pb = a / rel, b / rel
        if rel.startswith(".shards/"):
            continue  # run bookkeeping (tiles written vs skipped), not output
        if pa.suffix == ".tif" and not exact(pa):
            with rasterio.open(pa) as x, rasterio.open(pb) as y:
                if not np.array_equal(x.read(), y.read(), equal_nan=True):
                    diff.append(rel)
        elif pa.suffix not in (".json", ".txt", ".html") and pa.read_bytes() != pb.read_bytes():
            diff.append(rel)
    return diff


def _world_kill_inputs(world: dict[str, Any], t: Path) -> dict[str, Any]:
    big = inp.float_raster(t / "big.tif", size=1200, bands=4, seed=9, tiled=False, compress=None)
    return {"big": big}


KILLS: list[tuple[str, Callable[[dict[str, Any], Path, Path], tuple[list[Any], Path]]]] = [
    ("cog", lambda w, t, o: ([t / "big.tif", o / "big.tif", "--blocksize", "256"], o)),
    ("mosaic", lambda w, t, o: (["--out", o / "m.vrt", "--cog", o / "m.tif", t / "big.tif"], o)),
    ("tiles", lambda w, t, o: ([w["p"]["cls"], o, "--zoom", "12-16", "--processes", "1", "--pmtiles"], o)),
    ("stitch", lambda w, t, o: (["--patches", w["c"]["retile"], "--emb", w["c"]["emb"], "--out", o / "e.tif",
                                 "--tile", "16", "--dtype", "int8"], o)),
    ("download", lambda w, t, o: (["--items", w["c"]["items"], "--bbox", w["c"]["bbox"], "--out", o], o)),
    ("stack", lambda w, t, o: (["--downloads", w["c"]["download"], "--out", o, "--block", "8"], o)),
    ("retile", lambda w, t, o: (["--stack", w["c"]["stack"], "--out", o, "--all", "--block", "32", "--patch", "8"], o)),
    ("infer", lambda w, t, o: (["--patches", w["c"]["retile"], "--block", w["c"]["block"], "--model", w["c"]["model"],
                                "--out", o, "--threads", "1", "--device", "cpu"], o)),
]


KILL_CASES = [(c, b, signal.SIGKILL) for c, b in KILLS] + [
    (c, b, signal.SIGTERM) for c, b in KILLS if c in ("stitch", "tiles")]


@pytest.mark.parametrize(("cmd", "build", "sig"), KILL_CASES,
                         ids=[f"{c}-{signal.Signals(s).name}" for c, _, s in KILL_CASES])
def test_kill_mid_write_then_rerun_gives_the_same_output(cmd: str, build: Callable[..., tuple[list[Any], Path]],
                                                         sig: int, world: dict[str, Any], tmp_path: Path,
                                                         record: Record) -> None:
    _world_kill_inputs(world, tmp_path)
    ref_argv, ref = build(world, tmp_path, tmp_path / "clean")
    r = run(cmd, ref_argv)
    assert r.returncode == 0, r.stderr
    argv, out = build(world, tmp_path, tmp_path / "killed")
    killed = left_by_kill = False
    for _ in range(20):  # a temporary may be renamed between the poll and the kill: try again from scratch
        shutil.rmtree(out, ignore_errors=True)
        killed = kill_mid_write(cmd, argv, out, sig=sig)
        if (left_by_kill := killed and bool(temporaries(out))):
            break
    r = run(cmd, argv)
    leftovers = temporaries(out)
    diff = same_tree(ref, out) if r.returncode == 0 else ["rerun failed"]
    # SIGKILL must leave the temporary it caught (so the sweep is exercised); under SIGTERM a program may
    # get to tidy up first, and a kill that leaves nothing is as good
    caught = killed and (left_by_kill or sig == signal.SIGTERM)
    ok = caught and r.returncode == 0 and not leftovers and not diff
    record("kill", cmd, f"{signal.Signals(sig).name} at the first temporary, rerun", ok)
    assert caught, "the program was not caught mid-write"
    assert r.returncode == 0, r.stderr
    assert leftovers == [] and diff == [], (leftovers, diff)


# ---------------------------------------------------------------- done means valid

def _ctx(stage: str, work: Path, **params: str) -> Any:
    from geohpc.core.stages import StageContext

    return StageContext(stage, {}, params, REPO, work)


def _chop(p: Path) -> None:
    p.write_bytes(p.read_bytes()[: p.stat().st_size * 2 // 3])


def test_done_means_valid_not_present(world: dict[str, Any], tmp_path: Path) -> None:
    """Each stage's done-check accepts a whole output and refuses the same output truncated."""
    from geohpc.core.stages import get_stage
    from geohpc.embed.stitch import stitch
    from geohpc.products.cog import make_cog
    from geohpc.products.mosaic import build_mosaic

    c, p = world["c"], world["p"]
    cases: list[tuple[str, str, Any, Path]] = []
    make_cog(p["cls"], tmp_path / "cog" / "cls.tif")
    cases.append(("cog", str(p["cls"]), _ctx("cog", tmp_path, OUT_DIR=str(tmp_path / "cog")), tmp_path / "cog" / "cls.tif"))
    build_mosaic([str(p["cls"]), str(p["cls2"])], tmp_path / "mos" / "m.vrt", cog=tmp_path / "mos" / "m.tif")
    cases.append(("mosaic", "m", _ctx("mosaic", tmp_path, OUT_DIR=str(tmp_path / "mos")), tmp_path / "mos" / "m.tif"))
    stitch(c["retile"], c["emb"], tmp_path / "st" / "embeddings.tif", dtype="int8", tile=16)
    ctx = _ctx("stitch", tmp_path, OUT_DIR=str(tmp_path / "st"), EMB_DTYPE="int8")
    cases.append(("stitch", "embeddings", ctx, tmp_path / "st" / "embeddings_scale.tif"))
    cases.append(("stitch", "embeddings", ctx, tmp_path / "st" / "embeddings.tif"))
    copy(c["stack"], tmp_path / "stack")
    cases.append(("stack", "aoi", _ctx("stack", tmp_path, OUT_DIR=str(tmp_path / "stack")), tmp_path / "stack" / "masks.npy"))
    copy(c["retile"], tmp_path / "rt")
    rctx = _ctx("retile", tmp_path, OUT_DIR=str(tmp_path / "rt"), STACK_DIR=str(c["stack"]), BLOCK="32", PATCH="16")
    cases.append(("retile", c["block"], rctx, tmp_path / "rt" / c["patch"] / "bands.npy"))
    copy(c["emb"], tmp_path / "inf")
    ictx = _ctx("infer", tmp_path, OUT_DIR=str(tmp_path / "inf"), STACK_DIR=str(c["stack"]), BLOCK="32", PATCH="16")
    cases.append(("infer", c["block"], ictx, tmp_path / "inf" / f"{c['patch']}.npy"))
    copy(c["download"], tmp_path / "dl")
    item = sorted(d.parent.name for d in (tmp_path / "dl").glob("*/B04.tif"))[0]
    cases.append(("download", item, _ctx("download", tmp_path, OUT_DIR=str(tmp_path / "dl")), tmp_path / "dl" / item / "B04.tif"))
    for stage, item_, ctx_, _whole in cases:
        assert get_stage(stage).done(item_, ctx_), f"{stage}: a whole output is not done"
    for stage, item_, ctx_, damaged in cases:
        _chop(damaged)
        assert not get_stage(stage).done(item_, ctx_), f"{stage}: truncated {damaged.name} still counts as done"


def test_mosaic_keeps_the_class_legend_and_colours(world: dict[str, Any], tmp_path: Path) -> None:
    import rasterio
    from geohpc.products.mosaic import build_mosaic

    out = build_mosaic([str(world["p"]["cls"]), str(world["p"]["cls2"])], tmp_path / "m.vrt", cog=tmp_path / "m.tif")
    with rasterio.open(out) as ds:
        assert ds.tags()["GEOHPC_CLASSES"] == inp.CLASSES
        assert ds.colormap(1)[2] == inp.COLOURS[2]
    assert sorted(q.name for q in tmp_path.iterdir()) == ["m.tif", "m.vrt"]


def test_tiles_on_a_full_disk_is_one_line_and_never_looks_finished(world: dict[str, Any], full_disk: Path,
                                                                    record: Record) -> None:
    """Finished tiles stay for the rerun (a pyramid is hours of work), but nothing says the set is complete."""
    ballast(full_disk, 48 << 10)
    out = full_disk / "tiles"
    r = run("tiles", [world["p"]["cls"], out, "--zoom", "10-16", "--processes", "1", "--pmtiles"])
    problems = check_one_line(r)
    finished = [p.name for p in (out / ".shards" / "finalized", out / "index.html", out / "cls.pmtiles") if p.exists()]
    record("bad_input", "tiles", "full disk", not problems and not finished)
    assert not problems and not finished, (problems, finished, r.stderr[-1500:])


def test_tiles_of_a_signed_url_keep_the_signature_out_of_what_is_published(world: dict[str, Any], tmp_path: Path,
                                                                           record: Record) -> None:
    """tiles.json, the viewer and the archive sit beside the tiles (often on a web server): no signature there."""
    import threading

    from geohpc.products.tiles.serve import serve

    server = serve(world["p"]["cls"].parent)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"/vsicurl/http://127.0.0.1:{server.server_address[1]}/cls.tif?{inp.SIG}&se=2031-01-01T00:00:00.000Z"
        r = run("tiles", [url, tmp_path / "t", "--zoom", "10-12", "--processes", "1", "--pmtiles"])
    finally:
        server.shutdown()
    secret = inp.SIG.split("=", 1)[1]
    leaked = [str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
    ok = r.returncode == 0 and not leaked and secret not in r.stdout + r.stderr
    record("secret", "tiles", "signed /vsicurl/ source: published files", ok)
    assert r.returncode == 0, r.stderr[-1500:]
    assert leaked == [] and secret not in r.stdout + r.stderr


def test_cog_rebuilds_a_truncated_output_instead_of_skipping_it(world: dict[str, Any], tmp_path: Path) -> None:
    from geohpc.products.cog import make_cog
    from geohpc.raster_io import verify_raster

    src = inp.float_raster(tmp_path / "s.tif", size=700)
    out = make_cog(src, tmp_path / "o.tif")
    _chop(out)
    assert verify_raster(out) is not None
    make_cog(src, out)
    assert verify_raster(out) is None


def test_tiles_done_needs_a_whole_archive(world: dict[str, Any], tmp_path: Path) -> None:
    from geohpc.core.stages import get_stage

    r = run("tiles", [world["p"]["cls"], tmp_path / "cls", "--zoom", "10-12", "--processes", "1", "--pmtiles"])
    assert r.returncode == 0, r.stderr
    ctx = _ctx("tiles", tmp_path, SRC=str(world["p"]["cls"]), OUT_DIR=str(tmp_path), SHARDS="1")
    assert get_stage("tiles").done("0/1", ctx)
    _chop(tmp_path / "cls" / "cls.pmtiles")
    assert not get_stage("tiles").done("0/1", ctx)
