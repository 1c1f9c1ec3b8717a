"""One file a stage: ``STAGE = Stage(...)``. See :mod:`geohpc.stages`."""
