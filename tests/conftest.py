"""Test-wide set-up: four host CPU devices so multi-device code paths run on a laptop."""

import logging
import os
import tempfile

import pytest

# Must happen before JAX initialises its backend (i.e. before any test imports jax).
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# pytest-xdist workers compile librosa's cached numba gufuncs at the same moment on a fresh install,
# and numba's cache can then pair files of two compilations and crash (numba/numba#10128): one
# cache directory per worker (before numba is imported).
if "PYTEST_XDIST_WORKER" in os.environ:
    os.environ.setdefault(
        "NUMBA_CACHE_DIR",
        os.path.join(tempfile.gettempdir(), "gru-jax-numba", os.environ["PYTEST_XDIST_WORKER"]),
    )


@pytest.fixture(autouse=True)
def _restore_root_logging():
    """A CLI run in-process points the root logger at the test's captured stderr, which pytest
    closes after the test: later tests would log into a closed file and see its INFO level."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(scope="session")
def run(tmp_path_factory):
    """One small trained and evaluated run, shared by the export/evaluation/enrolment/CLI tests."""
    from tests._trained import train_and_evaluate

    return train_and_evaluate(tmp_path_factory.mktemp("trained"))


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """A feature store of 12 synthetic speakers (3 held out), for the training and CLI tests."""
    from tests.train._tiny import synthetic_training_data

    return synthetic_training_data(tmp_path_factory.mktemp("tiny"), 12, seed=3, n_val_speakers=3)
