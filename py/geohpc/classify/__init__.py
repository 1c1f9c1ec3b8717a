"""Classification: sample embeddings at points -> CatBoost + Optuna -> wall-to-wall map -> validation."""
