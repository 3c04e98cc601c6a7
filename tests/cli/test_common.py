"""The CLIs' CPU device set-up: one XLA device per core unless the user set XLA_FLAGS."""

from __future__ import annotations

import os
import subprocess
import sys

import jax
import pytest

from gru_jax.cli.common import MAX_CPU_DEVICES, cpu_device_flags, training_devices


def test_cpu_device_flags_one_device_per_core_up_to_the_cap():
    flags = cpu_device_flags({}, cores=2)
    assert flags == "--xla_force_host_platform_device_count=2 --xla_cpu_multi_thread_eigen=false"
    assert f"count={MAX_CPU_DEVICES} " in cpu_device_flags({}, cores=96)


@pytest.mark.parametrize("environ, cores", [({"XLA_FLAGS": ""}, 8), ({}, 1)])
def test_cpu_device_flags_leave_user_flags_and_single_cores_alone(environ, cores):
    assert cpu_device_flags(environ, cores) is None


@pytest.mark.parametrize("batch_size, expected", [(64, 4), (6, 3), (7, 1), (2, 2)])
def test_training_devices_are_the_most_that_divide_the_batch(batch_size, expected):
    assert jax.device_count() == 4  # tests/conftest.py
    assert training_devices(batch_size) == jax.devices()[:expected]


def test_entry_point_sets_the_flags_before_jax_loads():
    code = (
        "from gru_jax.cli.common import use_every_cpu_core\n"
        "applied = use_every_cpu_core()\n"
        "import jax\n"
        "print(applied, jax.device_count(), use_every_cpu_core())\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["JAX_PLATFORMS"] = "cpu"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    cores = min(len(os.sched_getaffinity(0)), MAX_CPU_DEVICES)
    # applied on a multi-core machine; a second call, after JAX loaded, does nothing
    assert out == ([str(cores > 1), str(cores), "False"])
