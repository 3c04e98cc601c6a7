"""Test-wide set-up: four host CPU devices so multi-device code paths run on a laptop."""

import os

import pytest

# Must happen before JAX initialises its backend (i.e. before any test imports jax).
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


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
