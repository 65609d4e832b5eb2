"""GiffCF (Zhu et al., SIGIR 2024, "Graph Signal Diffusion Model for
Collaborative Filtering"; VinciZhu/GiffCF).

The forward process smooths a user's interaction row x over the item-item
graph instead of adding noise (facts from `models/giff_cf.py` and
`models/denoiser.py`):
- R = D_u^-1/4 X D_i^-1/2 from the binary train matrix X; the operator
  A x = x (R^T R) / sigma_1(R)^2, optionally mixed with the ideal low-pass
  filter of R's top `ideal_cutoff` right singular vectors V:
  smooth(x) = (A x + w x V^T V) / (1 + w). Precomputed here as one dense
  items x items matrix S (float64, stored float32).
- z_t = x + alpha t / T (smooth(x) - x), t in 1..T (the "heat equation"
  filter), plus noise_scale noise_decay^(T - t) N(0, I) when noise_scale > 0.
- Denoiser: item embeddings E [I, d]; z_emb = (z_t / I) E, c_emb = (c /
  max(|c|_1, 1)) E; an embedding mixer (per dimension: [z_emb, c_emb,
  t1] -> Dense(2, swish) -> Dense(1)); x_mid = x_emb E^T; a score mixer
  (per item: [x_mid, c, smooth(c), t2] -> Dense(2, swish) -> Dense(1)).
  t1, t2: 20-wide sinusoids (sin then cos) of t -> Dense(20, swish) ->
  Dense(1), broadcast. c = dropout(x, 0.5) (scaled by 2) in training, x
  at ranking.
- Loss: sum over items of (x - x_hat)^2, mean over users. Adam 1e-3.
- Ranking: z_T from the history, then for t = T..1, s = t - 1:
  x_hat = f(z_t, x, t); z_t <- filter(x_hat, s) + noise_decay^(t - s)
  (z_t - filter(x_hat, t)); scores = z_0.
- Batch 100, validation every 10 epochs on Recall@20 with its own
  denominator min(|GT|, K) (`recall_capped`), patience 20 validations.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from flax import linen as nn

from jaxrec.data import types
from jaxrec.diffusion import timesteps
from jaxrec.models import diffrec
from jaxrec.models.linear import base


def smoothing_operator(
  train: sp.csr_matrix, ideal_weight: float, ideal_cutoff: int, limit: int
) -> np.ndarray:
  """float32[I, I] S with smooth(x) = x @ S (see the module docstring)."""
  x = sp.csr_matrix(train, dtype=np.float64)
  x.sum_duplicates()
  x.data[:] = 1.0
  n = x.shape[1]
  base.check_dense_memory('GiffCF', n, 2, limit)
  du = np.asarray(x.sum(1)).ravel()
  di = np.asarray(x.sum(0)).ravel()
  # Users / items without interactions: zero rows / columns (the official
  # code divides by zero there; ML-1M has none).
  pu = np.where(du > 0, np.maximum(du, 1) ** -0.25, 0.0)
  pi = np.where(di > 0, np.maximum(di, 1) ** -0.5, 0.0)
  r = sp.diags(pu) @ x @ sp.diags(pi)
  cutoff = max(1, int(ideal_cutoff) if ideal_weight else 1)
  _, values, vectors = spla.svds(r, k=cutoff, random_state=0)
  order = np.argsort(values)[::-1]
  values, vectors = values[order], vectors[order]
  op = np.asarray((r.T @ r).todense()) / values[0] ** 2
  if ideal_weight:
    op = (op + ideal_weight * vectors.T @ vectors) / (1.0 + ideal_weight)
  return op.astype(np.float32)


def _dense(n: int) -> nn.Dense:
  """Keras' Dense defaults: Glorot-uniform kernel, zero bias."""
  return nn.Dense(n, kernel_init=nn.initializers.xavier_uniform())


class Mixer(nn.Module):
  """[..., n_in] stacked inputs -> Dense(2, swish) -> Dense(1) -> [...]."""

  @nn.compact
  def __call__(self, *inputs):
    h = jnp.stack(inputs, axis=-1)
    h = jax.nn.silu(_dense(2)(h))
    return _dense(1)(h)[..., 0]


class TimeEmbed(nn.Module):
  """t [B] -> [B, 1]: 20 sinusoids (sin, cos) -> Dense(20, swish) -> 1."""

  @nn.compact
  def __call__(self, t):
    e = timesteps.sinusoidal_embedding(t, 20, sin_first=True)
    h = jax.nn.silu(_dense(20)(e))  # named Dense_0: created first
    return _dense(1)(h)


class GiffDenoiser(nn.Module):
  n_items: int
  dim: int

  @nn.compact
  def __call__(self, z_t, c, c_smooth, t):
    emb = self.param(
      'item_embed', nn.initializers.xavier_uniform(), (self.n_items, self.dim)
    )
    t1, t2 = TimeEmbed()(t), TimeEmbed()(t)
    z_emb = (z_t / self.n_items) @ emb
    norm = jnp.maximum(jnp.sum(jnp.abs(c), -1, keepdims=True), 1.0)
    c_emb = (c / norm) @ emb
    x_emb = Mixer()(z_emb, c_emb, jnp.broadcast_to(t1, z_emb.shape))
    x_mid = x_emb @ emb.T
    return Mixer()(x_mid, c, c_smooth, jnp.broadcast_to(t2, x_mid.shape))


@dataclasses.dataclass(frozen=True, eq=False)
class GiffCF(diffrec.DenseRows):
  """The trainer's model surface.

  Attributes:
    config: `config.model`: dim, steps (T), alpha, ideal_weight,
      ideal_cutoff, noise_scale, noise_decay, dropout, max_dense_bytes.
    n_items: items.
    operator: S, set by `bind` from the train matrix.
  """

  config: mlc.ConfigDict
  n_items: int
  operator: np.ndarray | None = None

  def bind(self, split: types.Split) -> GiffCF:
    c = self.config
    op = smoothing_operator(
      split.train.to_csr(self.n_items),
      c.ideal_weight,
      c.ideal_cutoff,
      c.max_dense_bytes,
    )
    return dataclasses.replace(self, operator=op)

  @property
  def net(self) -> GiffDenoiser:
    return GiffDenoiser(self.n_items, self.config.dim)

  def smooth(self, x):
    return x @ self.operator

  def filter(self, x, ax, t):
    """x + alpha t / T (A x - x); t [B] or a scalar."""
    c = self.config
    t = jnp.asarray(t, jnp.float32)
    t = t[:, None] if t.ndim else t
    return x + c.alpha * t / c.steps * (ax - x)

  # Pure functions ----------------------------------------------------------

  def init(self, rng: jax.Array, batch: dict):
    x = batch['x']
    t = jnp.ones(x.shape[0], jnp.int32)
    return self.net.init(rng, x, x, x, t)['params']

  def loss(self, params, batch: dict, rng: jax.Array, step):
    del step
    c = self.config
    k_t, k_noise, k_drop = jax.random.split(rng, 3)
    x, w = batch['x'], batch['weights']
    t = jax.random.randint(k_t, x.shape[:1], 1, c.steps + 1)
    z_t = self.filter(x, self.smooth(x), t)
    if c.noise_scale > 0:
      sigma = c.noise_scale * c.noise_decay ** (c.steps - t)
      z_t = z_t + sigma[:, None] * jax.random.normal(k_noise, x.shape)
    keep = jax.random.bernoulli(k_drop, 1.0 - c.dropout, x.shape)
    cond = jnp.where(keep, x / (1.0 - c.dropout), 0.0)
    x_hat = self.net.apply({'params': params}, z_t, cond, self.smooth(cond), t)
    per = jnp.sum((x - x_hat) ** 2, axis=-1)
    total, count = jnp.sum(per * w), jnp.sum(w)
    return total / jnp.maximum(count, 1.0), {'loss_sum': total, 'count': count}

  def score(self, params, batch: dict, rng=None) -> jax.Array:
    """z_0 after the T reverse steps from the history."""
    del rng
    c = self.config
    x = batch['x']
    ax = self.smooth(x)
    net = self.net

    def step(z, t):
      x_hat = net.apply({'params': params}, z, x, ax, jnp.full(x.shape[:1], t))
      ax_hat = self.smooth(x_hat)
      z_s = self.filter(x_hat, ax_hat, t - 1)
      if c.noise_decay > 0:
        z_s = z_s + c.noise_decay * (z - self.filter(x_hat, ax_hat, t))
      return z_s, None

    ts = jnp.arange(c.steps, 0, -1, dtype=jnp.int32)
    return jax.lax.scan(step, self.filter(x, ax, c.steps), ts)[0]
