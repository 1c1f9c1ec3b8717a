"""prep: embedding rasters + a label raster -> sharded training chips, channel statistics, class frequencies.

Labels (any CRS) are reprojected with nearest-neighbour onto the embedding grid chip by chip;
label values outside the class list, label nodata and invalid embedding pixels become the ignore
index 255 (``IGNORE_INDEX``; class indices are 0..K-1 in the order of ``--classes``). Chips are
split into train/val/test by spatial blocks. See :mod:`geohpc.prep.shards` for the file layout.
"""

from __future__ import annotations

from geohpc.segment.prep.plan import IGNORE_INDEX, ClassSpec, Plan, make_plan, parse_classes
from geohpc.segment.prep.shards import META_NAME, prepare

__all__ = ["IGNORE_INDEX", "META_NAME", "ClassSpec", "Plan", "make_plan", "parse_classes", "prepare"]
