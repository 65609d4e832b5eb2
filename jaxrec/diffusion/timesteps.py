"""Timestep embeddings and timestep samplers (uniform, loss-aware).

The loss-aware sampler is DiffRec's importance sampling as pure state: the
last `history` losses of every timestep; once every timestep has a full
history, t is drawn with probability proportional to sqrt(E[L_t^2]), mixed
with `uniform_prob` of the uniform distribution, and the loss is divided by
T * p(t) so its expectation is unchanged. Before that, t is uniform.
"""

from __future__ import annotations

import math

import flax
import jax
import jax.numpy as jnp


def sinusoidal_embedding(
  t,
  dim: int,
  max_period: float = 10000.0,
  sin_first: bool = False,
  freq_shift: int = 0,
):
  """[..., dim] embedding of timesteps `t` (any shape, may be fractional).

  Frequencies max_period^(-i / (half - freq_shift)), i < half = dim // 2.
  By default cos then sin over them (improved DDPM, DiffuRec, DiffRec);
  DreamRec uses sin first and freq_shift = 1. An odd `dim` gets a zero
  column.
  """
  half = dim // 2
  freqs = jnp.exp(
    -math.log(max_period)
    * jnp.arange(half, dtype=jnp.float32)
    / (half - freq_shift)
  )
  args = jnp.asarray(t, jnp.float32)[..., None] * freqs
  parts = (
    [jnp.sin(args), jnp.cos(args)]
    if sin_first
    else [
      jnp.cos(args),
      jnp.sin(args),
    ]
  )
  emb = jnp.concatenate(parts, axis=-1)
  if dim % 2:
    emb = jnp.concatenate([emb, jnp.zeros_like(emb[..., :1])], axis=-1)
  return emb


def uniform(rng: jax.Array, shape, steps: int):
  """(t int32[shape], weight float32[shape] = 1): t ~ U{0..T-1}."""
  t = jax.random.randint(rng, shape, 0, steps)
  return t, jnp.ones(shape, jnp.float32)


@flax.struct.dataclass
class LossHistory:
  """The last `H` losses per timestep (float32[T, H]) and how many (int[T])."""

  losses: jnp.ndarray
  counts: jnp.ndarray


def loss_history(steps: int, history: int = 10) -> LossHistory:
  return LossHistory(
    jnp.zeros((steps, history), jnp.float32), jnp.zeros(steps, jnp.int32)
  )


def loss_aware(
  rng: jax.Array,
  state: LossHistory,
  batch_size: int,
  uniform_prob: float = 1e-3,
):
  """(t int32[B], weight float32[B] = 1 / (T p(t))) from `state`."""
  steps, history = state.losses.shape
  rms = jnp.sqrt(jnp.mean(state.losses**2, axis=1))
  p = rms / jnp.sum(rms) * (1.0 - uniform_prob) + uniform_prob / steps
  full = jnp.all(state.counts == history)
  p = jnp.where(full, p, jnp.full(steps, 1.0 / steps))
  t = jax.random.choice(rng, steps, (batch_size,), p=p)
  return t.astype(jnp.int32), 1.0 / (steps * p[t])


def update_history(state: LossHistory, t, losses, keep=None) -> LossHistory:
  """Appends each (t, loss) in order; a full row drops its oldest loss.

  `keep` (bool, like `t`): which pairs to append (False: a padding row).
  """
  if keep is None:
    keep = jnp.ones(jnp.shape(t), bool)

  def one(state, tlk):
    ti, li, ki = tlk
    row, n = state.losses[ti], state.counts[ti]
    cap = row.shape[0]
    shifted = jnp.append(row[1:], li)
    filled = row.at[jnp.minimum(n, cap - 1)].set(li)
    row = jnp.where(ki, jnp.where(n >= cap, shifted, filled), row)
    n = jnp.where(ki, jnp.minimum(n + 1, cap), n)
    return LossHistory(
      state.losses.at[ti].set(row), state.counts.at[ti].set(n)
    ), None

  xs = (jnp.asarray(t), jnp.asarray(losses), jnp.asarray(keep))
  return jax.lax.scan(one, state, xs)[0]
