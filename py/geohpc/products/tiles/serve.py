"""``python -m geohpc tiles-serve OUT_DIR``: serve a tile folder on loopback, with Range requests.

The viewer (``index.html``) works from ``file://`` and any static web server for the ``z/x/y`` tiles.
Its PMTiles mode (``index.html?pmtiles``) and its click-for-value read bytes with ``fetch``, which
browsers refuse on ``file://``; PMTiles also needs HTTP Range requests, which ``python3 -m http.server``
ignores (it sends the whole file). This server answers them, binds 127.0.0.1 by default (reach it from
a laptop with ``ssh -L 8000:localhost:8000 login-node``), and serves nothing outside ``OUT_DIR``.
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import sys
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, BinaryIO

from geohpc.errors import InputError, run_cli

RANGE = re.compile(r"bytes=(\d*)-(\d*)")


class _Slice:
    """``read`` at most ``n`` bytes of ``f`` (what ``copyfile`` sends for a range)."""

    def __init__(self, f: BinaryIO, n: int) -> None:
        self.f, self.left = f, n

    def read(self, n: int = -1) -> bytes:
        n = self.left if n is None or n < 0 else min(n, self.left)
        data = self.f.read(n)
        self.left -= len(data)
        return data

    def close(self) -> None:
        self.f.close()


class RangeHandler(SimpleHTTPRequestHandler):
    """``SimpleHTTPRequestHandler`` plus single byte ranges (``Range: bytes=a-b``, ``a-``, ``-n``)."""

    def send_head(self) -> Any:  # noqa: ANN401 - a file-like object or None, as in the base class
        """Answer a ranged GET/HEAD of a file with 206 and only those bytes; anything else as usual."""
        m = RANGE.fullmatch((self.headers.get("Range") or "").strip())
        path = self.translate_path(self.path)
        if m is None or m.group(1) + m.group(2) == "" or not os.path.isfile(path):
            return super().send_head()
        try:
            f = open(path, "rb")  # noqa: SIM115 - closed by the base class after copyfile
        except OSError:
            self.send_error(404, "File not found")
            return None
        size = os.fstat(f.fileno()).st_size
        if m.group(1) == "":
            start, end = max(0, size - int(m.group(2))), size - 1
        else:
            start = int(m.group(1))
            end = min(size - 1, int(m.group(2))) if m.group(2) else size - 1
        if start >= size or start > end:
            f.close()
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        self.send_response(206)
        self.send_header("Content-Type", self.guess_type(path))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(end - start + 1))
        self.end_headers()
        f.seek(start)
        return _Slice(f, end - start + 1)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002, ANN401 - base-class signature
        """Quiet unless ``GEOHPC_SERVE_LOG`` is set (a tile page makes hundreds of requests)."""
        if os.environ.get("GEOHPC_SERVE_LOG"):
            super().log_message(format, *args)


class RangeServer(ThreadingHTTPServer):
    """A threading server whose listen queue holds a burst of connections.

    ``socketserver``'s default queue is 5: GDAL's ``/vsicurl/`` reads a band-interleaved COG window as one
    parallel request per tile (128 at once for a 128-band file), the kernel drops the connections beyond
    the queue, and GDAL fails them ("Request for a-b failed with response_code=0") after its retries.
    """

    request_queue_size = 1024  # the kernel caps it at net.core.somaxconn
    daemon_threads = True  # Ctrl-C does not wait for a browser's idle keep-alive connection


def serve(directory: Path, port: int = 0, bind: str = "127.0.0.1") -> ThreadingHTTPServer:
    """A server for ``directory`` (not yet serving: call ``serve_forever``); port 0 picks a free one.

    Raises
    ------
    InputError
        When ``directory`` is not a folder.
    """
    if not Path(directory).is_dir():
        raise InputError(f"{directory}: not a folder; give the tiles' output folder (the one with index.html)")
    handler = functools.partial(RangeHandler, directory=str(directory))
    return RangeServer((bind, port), handler)


def main(argv: list[str] | None = None) -> int:
    """CLI: serve OUT_DIR until Ctrl-C and print the viewer's addresses."""
    p = argparse.ArgumentParser(prog="python -m geohpc tiles-serve", description=__doc__.split("\n")[0])
    p.add_argument("out_dir", type=Path, help="the tiles' output folder (holds index.html)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    p.add_argument("--bind", default="127.0.0.1", help="address to listen on (default 127.0.0.1, this machine only)")
    args = p.parse_args(argv)

    def work() -> int:
        try:
            server = serve(args.out_dir, args.port, args.bind)
        except OSError as exc:
            raise InputError(f"port {args.port}: {exc.strerror or exc}; choose another with --port") from None
        url = f"http://{args.bind}:{server.server_port}/index.html"
        print(f"serving {args.out_dir} at {url} (PMTiles archive: {url}?pmtiles); Ctrl-C stops", flush=True)
        try:
            server.serve_forever()
        finally:
            server.server_close()
        return 0

    return run_cli(work, "geohpc.tiles.serve")


if __name__ == "__main__":
    sys.exit(main())
