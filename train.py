"""Train a GRU speaker-embedding model (`python train.py --help`)."""

from gru_jax.cli import main_guard, train_main

if __name__ == "__main__":
    main_guard(train_main)
