"""tiles-serve under a burst: GDAL's /vsicurl/ reads a 128-band band-interleaved window as 128 parallel requests.

The server used socketserver's listen queue of 5: the kernel dropped the connections past it and GDAL failed
the reads ("Request for a-b failed with response_code=0", "Recv failure: Connection reset by peer") on the
layout bench's 2048² files.
"""

from __future__ import annotations

import socket
import threading
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from geohpc.products.tiles.serve import serve


def test_listen_queue_holds_a_burst_of_connections(tmp_path: Path) -> None:
    server = serve(tmp_path)  # bound and listening, not yet accepting: every connection waits in the queue
    socks = []
    try:
        connected = 0
        for _ in range(150):
            s = socket.socket()
            s.settimeout(0.5)
            socks.append(s)
            try:
                s.connect(("127.0.0.1", server.server_port))
                connected += 1
            except OSError:
                pass
        assert connected == 150  # with the old queue of 5: 6 (the rest were dropped)
    finally:
        for s in socks:
            s.close()
        server.server_close()


def test_parallel_ranged_gets_all_answered(tmp_path: Path) -> None:
    data = bytes(range(256)) * 4096  # 1 MiB
    (tmp_path / "m.tif").write_bytes(data)
    server = serve(tmp_path)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/m.tif"

    def get(i: int) -> tuple[int, bytes]:
        a = i * 8000
        req = urllib.request.Request(url, headers={"Range": f"bytes={a}-{a + 7999}"})
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, r.read()

    try:
        with ThreadPoolExecutor(128) as pool:
            got = list(pool.map(get, range(128)))
        assert [s for s, _ in got] == [206] * 128
        assert b"".join(b for _, b in got) == data[:128 * 8000]
    finally:
        server.shutdown()
        server.server_close()
