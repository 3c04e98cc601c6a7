"""Scoring embeddings: trial and identification metrics, reports, the enrolled-speaker database."""
