"""The embedding pipeline: download -> stack -> retile -> infer -> stitch, and the embedding raster layout."""
