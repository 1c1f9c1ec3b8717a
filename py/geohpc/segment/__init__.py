"""Segmentation training on embeddings: prep (chips), fit (DDP), predict."""
