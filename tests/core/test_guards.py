"""guards: an output that is an input is refused before anything is read; killed writes' temporaries are swept."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from geohpc.errors import InputError
from geohpc.guards import refuse_overwrite, sweep_temporaries, temporaries_of
from geohpc.util import atomic_path


def test_same_path_symlink_and_hard_link_are_refused(tmp_path: Path) -> None:
    src = tmp_path / "points.csv"
    src.write_text("x,y\n")
    (tmp_path / "link.csv").symlink_to(src)
    os.link(src, tmp_path / "hard.csv")
    for out in (src, tmp_path / "sub" / ".." / "points.csv", tmp_path / "link.csv", tmp_path / "hard.csv"):
        with pytest.raises(InputError, match="output is the input"):
            refuse_overwrite([src], [out])
    refuse_overwrite([src], [tmp_path / "other.csv"])  # a new name is fine
    assert src.read_text() == "x,y\n"


def test_output_folder_holding_the_inputs_is_refused(tmp_path: Path) -> None:
    rasters = tmp_path / "emb"
    rasters.mkdir()
    (rasters / "a.tif").write_bytes(b"x")
    (tmp_path / "alias").symlink_to(rasters)
    for folder in (rasters, tmp_path / "alias"):
        with pytest.raises(InputError, match="output folder holds the input"):
            refuse_overwrite([rasters / "a.tif"], [], folders=[folder])
    refuse_overwrite([rasters / "a.tif"], [], folders=[tmp_path / "maps"])


def test_remote_inputs_are_not_compared(tmp_path: Path) -> None:
    refuse_overwrite(["/vsicurl/https://x/a.tif?sig=abc", "s3://b/a.tif"], [tmp_path / "a.tif"])


def test_sweep_removes_only_this_targets_temporaries(tmp_path: Path) -> None:
    target = tmp_path / "map.tif"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        os.link(tmp, tmp_path / f"{tmp.name}.keep")  # what a kill -9 would leave: the temp file survives
        raise RuntimeError
    left = tmp_path / f"{tmp.name}.keep"
    os.replace(left, tmp)
    (tmp_path / ".map.tif.x1.tmp.d").mkdir()
    (tmp_path / ".map.tif.x1.tmp.d" / "part").write_bytes(b"p")
    (tmp_path / "map.tif.aux.xml").write_text("keep")
    (tmp_path / ".other.tif.x.tmp.tif").write_bytes(b"other")
    assert len(temporaries_of(target)) == 2
    removed = sweep_temporaries(target)
    assert len(removed) == 2 and not temporaries_of(target)
    assert (tmp_path / "map.tif.aux.xml").exists() and (tmp_path / ".other.tif.x.tmp.tif").exists()
