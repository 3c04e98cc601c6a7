"""Train a GRU speaker-embedding model (`python train.py --help`)."""

import sys

from gru_jax.cli.train import main

if __name__ == "__main__":
    sys.exit(main())
