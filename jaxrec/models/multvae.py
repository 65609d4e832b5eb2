"""Mult-VAE (Liang et al., WWW 2018, "Variational Autoencoders for
Collaborative Filtering"; dawenl/vae_cf).

x: a user's binary train row, L2-normalised, dropout 0.5 (train only);
encoder I -> 600 (tanh) -> 2 x 200 (mu, log var); z = mu + sigma eps in
training, mu at ranking; decoder 200 -> 600 (tanh) -> I logits. Loss per
user: -sum_i x_i log softmax(logits)_i + beta KL(q(z|x) || N(0, I)), beta
annealed linearly from 0 to `anneal_cap` over `anneal_steps` updates (the
paper: 0.2 over 200,000). Scores are the logits.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections as mlc
from flax import linen as nn

from jaxrec.models import diffrec


class MultVAENet(nn.Module):
  """(logits [B, I], mu, log var [B, latent]) of rows x [B, I]."""

  n_items: int
  hidden: int
  latent: int
  dropout: float

  @nn.compact
  def __call__(self, x, train: bool, rng=None):
    dense = lambda n: nn.Dense(n, kernel_init=nn.initializers.xavier_uniform())
    norm = jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
    h = nn.Dropout(self.dropout)(x / norm, deterministic=not train)
    h = jnp.tanh(dense(self.hidden)(h))
    stats = dense(2 * self.latent)(h)
    mu, log_var = stats[:, : self.latent], stats[:, self.latent :]
    z = mu
    if train:
      z = mu + jnp.exp(0.5 * log_var) * jax.random.normal(rng, mu.shape)
    h = jnp.tanh(dense(self.hidden)(z))
    return dense(self.n_items)(h), mu, log_var


@dataclasses.dataclass(frozen=True)
class MultVAE(diffrec.DenseRows):
  """The trainer's model surface.

  Attributes:
    config: `config.model`: hidden, latent, dropout, anneal_cap,
      anneal_steps.
    n_items: items.
  """

  config: mlc.ConfigDict
  n_items: int

  @property
  def net(self) -> MultVAENet:
    c = self.config
    return MultVAENet(self.n_items, c.hidden, c.latent, c.dropout)

  # Pure functions ----------------------------------------------------------

  def init(self, rng: jax.Array, batch: dict):
    return self.net.init(rng, batch['x'], False)['params']

  def beta(self, step):
    c = self.config
    return jnp.minimum(c.anneal_cap, step / max(c.anneal_steps, 1))

  def loss(self, params, batch: dict, rng: jax.Array, step):
    """Weighted mean over users of the multinomial NLL + beta KL."""
    k_drop, k_z = jax.random.split(rng)
    x, w = batch['x'], batch['weights']
    logits, mu, log_var = self.net.apply(
      {'params': params}, x, True, k_z, rngs={'dropout': k_drop}
    )
    nll = -jnp.sum(jax.nn.log_softmax(logits) * x, axis=-1)
    kl = 0.5 * jnp.sum(jnp.exp(log_var) + mu**2 - 1.0 - log_var, axis=-1)
    per = nll + self.beta(step) * kl
    total, count = jnp.sum(per * w), jnp.sum(w)
    aux = {'loss_sum': total, 'count': count}
    return total / jnp.maximum(count, 1.0), aux

  def score(self, params, batch: dict, rng=None) -> jax.Array:
    del rng
    return self.net.apply({'params': params}, batch['x'], False)[0]
