"""Evaluate a checkpoint; enrol, verify and identify speakers; export embeddings (`--help`)."""

import sys

from gru_jax.cli.eval import main

if __name__ == "__main__":
    sys.exit(main())
