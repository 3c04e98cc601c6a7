"""`python -m gru_jax.synth OUT ...`, the same as the `gru-jax-synth` script."""

import sys

from gru_jax.synth.cli import main

if __name__ == "__main__":
    sys.exit(main())
