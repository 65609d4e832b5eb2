"""Dropout from 16-bit uniforms: two masks per random 32-bit word.

`flax.linen.Dropout` draws a float32 uniform per element through
`jax.random.bernoulli`; on CPU, threefry makes that about 14 ns per element,
which was a third of a DiffuRec training step (120 M dropout elements per
batch). Comparing 16-bit halves of `jax.random.bits` words against
round(keep * 2^16) draws half the bits: about 6x cheaper. The keep
probability is exact to 2^-16 (1.5e-5).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn


def keep_mask(rng: jax.Array, keep: float, shape) -> jax.Array:
  """bool[shape], True with probability round(keep * 2^16) / 2^16."""
  n = int(np.prod(shape))
  words = jax.random.bits(rng, ((n + 1) // 2,), jnp.uint32)
  halves = jnp.concatenate([words & 0xFFFF, words >> 16])[:n]
  threshold = jnp.uint32(round(keep * 65536))
  return (halves < threshold).reshape(shape)


def apply(x, rate: float, rng: jax.Array | None, deterministic: bool):
  """Inverted dropout of `x` at `rate` (identity when deterministic)."""
  if deterministic or rate == 0.0:
    return x
  if rate >= 1.0:
    return jnp.zeros_like(x)
  keep = 1.0 - rate
  mask = keep_mask(rng, keep, x.shape)
  scale = 65536.0 / round(keep * 65536)  # the exact inverse keep rate
  return jnp.where(mask, x * jnp.asarray(scale, x.dtype), 0.0)


class Dropout(nn.Module):
  """Drop-in for `nn.Dropout` drawing from the 'dropout' rng collection."""

  rate: float

  @nn.compact
  def __call__(self, x, deterministic: bool):
    if deterministic or self.rate == 0.0:
      return x
    return apply(x, self.rate, self.make_rng('dropout'), False)
