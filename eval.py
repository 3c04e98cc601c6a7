"""Evaluate a checkpoint; enrol, verify and identify speakers; export embeddings (`--help`)."""

from gru_jax.cli import main_guard
from gru_jax.eval_cli import main

if __name__ == "__main__":
    main_guard(main)
