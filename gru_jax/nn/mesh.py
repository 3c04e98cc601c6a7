"""The device mesh and the one place host arrays become sharded device arrays.

Data parallelism is `jax.jit` over a 1-D mesh with a ``data`` axis spanning every device of every
process: parameters replicated, batch rows split. Each process holds only its own rows of a
global batch; `put_rows` assembles them into global arrays.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

DATA_AXIS = "data"


def data_mesh(devices: list[jax.Device] | None = None) -> jax.sharding.Mesh:
    """A 1-D mesh over `devices` (default: all devices of all processes) with one ``data`` axis."""
    devices = jax.devices() if devices is None else devices
    return jax.make_mesh(
        (len(devices),), (DATA_AXIS,), axis_types=(jax.sharding.AxisType.Auto,), devices=devices
    )


def replicated(mesh: jax.sharding.Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def row_sharded(mesh: jax.sharding.Mesh) -> NamedSharding:
    return NamedSharding(mesh, P(DATA_AXIS))


def put_rows(mesh: jax.sharding.Mesh, arrays: Mapping[str, np.ndarray]) -> dict[str, jax.Array]:
    """This process's rows of a global batch -> device arrays sharded by rows over the mesh."""
    rows = row_sharded(mesh)
    n_global = len(next(iter(arrays.values()))) * jax.process_count()
    return {
        name: jax.make_array_from_process_local_data(rows, value, (n_global, *value.shape[1:]))
        for name, value in arrays.items()
    }
