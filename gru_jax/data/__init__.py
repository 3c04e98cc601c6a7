"""Host-side data path, NumPy only: corpora -> audio -> features -> feature store -> batches."""
