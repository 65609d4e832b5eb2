"""Data parallelism over every device JAX sees: one mesh axis, 'data'.

The global batch is sharded along 'data' (`P('data')` on its first axis);
parameters and optimizer state are replicated (`P()`). The train step is a
plain `jax.jit` with these shardings: XLA inserts the gradient all-reduce,
so the same code runs on 1 CPU, 8 GPUs or a TPU slice, and gives the same
numbers as one device up to float summation order. Not `jax.pmap` (kept in
current JAX only as a wrapper over jit + shard_map).

Multi-host: `initialize(config)` calls `jax.distributed.initialize()` when
`config.distributed` is set; every host computes the same epoch order and
feeds its own contiguous slice of each global batch
(`batching.host_slice`), which `shard_batch` assembles into one global array.
"""

from __future__ import annotations

from typing import Any

import jax
import ml_collections as mlc
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

AXIS = 'data'


def initialize(config: mlc.ConfigDict) -> None:
  """Joins a multi-host run when the config asks for it (idempotent)."""
  if config.get('distributed', False) and not jax.distributed.is_initialized():
    jax.distributed.initialize()


def make_mesh() -> jax.sharding.Mesh:
  """A 1-D mesh over all devices of all hosts, axis 'data'."""
  return jax.make_mesh(
    (jax.device_count(),), (AXIS,), axis_types=(jax.sharding.AxisType.Auto,)
  )


def replicated(mesh: jax.sharding.Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharding(mesh: jax.sharding.Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(AXIS))


def check_batch_size(batch_size: int) -> None:
  n = jax.device_count()
  if batch_size % n:
    raise ValueError(
      f'train.batch_size={batch_size} is not divisible by the {n} devices'
    )


def shard_batch(local: Any, mesh: jax.sharding.Mesh) -> Any:
  """This host's rows of a batch (pytree of numpy) -> global sharded arrays."""
  sharding = batch_sharding(mesh)
  n_hosts = jax.process_count()
  if n_hosts == 1:  # one transfer call for the whole tree
    return jax.device_put(jax.tree.map(np.asarray, local), sharding)

  def put(x):
    x = np.asarray(x)
    shape = (x.shape[0] * n_hosts,) + x.shape[1:]
    return jax.make_array_from_process_local_data(sharding, x, shape)

  return jax.tree.map(put, local)
