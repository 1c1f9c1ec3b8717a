"""Fixtures for the embedding chain: a synthetic S1/S2 series, its download/stack/retile, a moto S3 server."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "py"))

SIZE = 48  # AOI side in pixels: small enough for 2 shared cores


@pytest.fixture(scope="session")
def synth(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A synthetic series on local files: items.json, the AOI bbox string and the folder."""
    from geohpc.synth import s12 as synth_s12
    from geohpc.util import write_json_atomic

    out = tmp_path_factory.mktemp("synth")
    coll = synth_s12.make_series(out, size=SIZE, s2_dates=6, s1_dates=3, seed=1)
    write_json_atomic(out / "items.json", coll)
    bbox = ",".join(str(v) for v in synth_s12.aoi_bbox(SIZE))
    return {"dir": out, "items": out / "items.json", "bbox": bbox, "collection": coll}


@pytest.fixture(scope="session")
def chain(synth: dict[str, object], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """download (local files) -> stack -> retile (block 32, patch 16) of the synthetic series."""
    from geohpc.embed import download, retile, stack
    from geohpc.embed.layout import grid_from_bbox, parse_bbox

    root = tmp_path_factory.mktemp("chain")
    grid = grid_from_bbox(parse_bbox(str(synth["bbox"])), "EPSG:32635", 10)
    download.download(Path(str(synth["items"])), grid, root / "download", backoff=0.01)
    stack.build_stack(root / "download", root / "stack", block=20)
    retile.retile_all(root / "stack", root / "retile", block=32, patch=16)
    return {"root": root, "download": root / "download", "stack": root / "stack", "retile": root / "retile"}


@pytest.fixture(scope="session")
def demo_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo-size model as a checkpoint."""
    from geohpc.embed import model as tm

    path = tmp_path_factory.mktemp("model") / "demo.pt"
    tm.save_checkpoint(tm.build("demo", seed=0), str(path))
    return path


@pytest.fixture(scope="session")
def chain_emb(chain: dict[str, Path], demo_model: Path) -> Path:
    """Embeddings (float32) of every patch of ``chain`` with the demo model."""
    from geohpc.embed import infer

    out = chain["root"] / "infer"
    lines = (chain["retile"] / "patches.txt").read_text().split()
    infer.run_patches(lines, chain["retile"], out, demo_model)
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """moto's S3 server on loopback, with the AWS/GDAL variables set in os.environ (rasterio.Env refuses them)."""
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {"AWS_S3_ENDPOINT": f"127.0.0.1:{port}", "AWS_HTTPS": "NO", "AWS_VIRTUAL_HOSTING": "FALSE",
           "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing-secret",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
