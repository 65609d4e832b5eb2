"""DiffRec (Wang et al., SIGIR 2023; YiyanXu/DiffRec).

Diffuses a user's whole binary interaction vector x0 in R^I with a very
small noise (the 'linear_var' schedule: 1 - alpha_bar_t grows linearly from
scale * min to scale * max, the first beta then set to 1e-5). An MLP
denoiser f(x_t, t) predicts x0 (or the noise). Training: t from the
loss-aware sampler (uniform until every timestep holds 10 losses, then
p(t) ~ sqrt(E[L_t^2]) mixed with 0.001 uniform; the loss divided by
T p(t)), MSE averaged over items, reweighted by SNR(t-1) - SNR(t) (1 at
t = 0). Ranking: x_T' = the clean history (T' = `sampling_steps` = 0) or
the history noised to step T' - 1, then every reverse step T-1, ..., 0
along the posterior means (no noise unless `sampling_noise`); the scores
are the last x0.

Facts from the official code (DiffRec/main.py, models/DNN.py,
models/gaussian_diffusion.py):
- the denoiser concatenates [dropout(x_t), Linear(sinusoid(t))] (10-wide
  sinusoid of the integer step, cos then sin, no activation after the
  Linear), then `dims` reversed with tanh, then `dims` forward with tanh
  between layers and none at the output: dims [200, 600] on ML-1M is
  I+10 -> 600 -> 200 -> 600 -> I. Dropout 0.5 on the input (train only).
  Weights N(0, 2 / (fan_in + fan_out)), biases N(0, 0.001).
- AdamW, weight decay 0 on ML-1M; batch 400; validation every 5 epochs on
  Recall@20; stop when 20 epochs passed since the best (3 validations
  without a new best after it).
- `--reweight` is parsed with `type=bool`, so any value given on the command
  line, '0' included, turns it on: every published run reweights.
- The SNR weights are computed from float64 tables (here: precomputed in
  float64, `loss_weights`; the difference of two SNRs near 1e5 cancels
  badly in float32).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np
from flax import linen as nn

from jaxrec.data import batching, types
from jaxrec.diffusion import forward, samplers, schedules, timesteps
from jaxrec.models import prefix


def xavier_normal():
  """PyTorch's xavier_normal_: N(0, 2 / (fan_in + fan_out)), not truncated
  (Flax's `xavier_normal` truncates)."""
  return nn.initializers.variance_scaling(1.0, 'fan_avg', 'normal')


ACTIVATIONS = {'tanh': jnp.tanh, 'sigmoid': jax.nn.sigmoid, 'relu': jax.nn.relu}


class DiffRecNet(nn.Module):
  """f(x_t, t[, cond]) -> [B, n_items]: the official 'DNN' with time (and,
  for DDRM, a condition) concatenated after the input."""

  n_items: int  # output width (DDRM: the embedding width)
  dims: tuple[int, ...]
  emb_size: int
  dropout: float
  norm: bool = False
  bias_init: Callable = nn.initializers.normal(1e-3)  # L-DiffRec: zeros
  act: str = 'tanh'  # DDRM: 'sigmoid' (MF) or 'relu' (LightGCN)

  @nn.compact
  def __call__(self, x, t, train: bool, cond=None):
    dense = lambda n: nn.Dense(
      n, kernel_init=xavier_normal(), bias_init=self.bias_init
    )
    emb = timesteps.sinusoidal_embedding(t, self.emb_size)
    emb = dense(self.emb_size)(
      jnp.broadcast_to(emb, x.shape[:-1] + emb.shape[-1:])
    )
    if self.norm:
      x = x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
    x = nn.Dropout(self.dropout)(x, deterministic=not train)
    h = jnp.concatenate([x, emb] + ([] if cond is None else [cond]), axis=-1)
    act = ACTIVATIONS[self.act]
    for width in self.dims[::-1]:  # the encoder: dims reversed
      h = act(dense(width)(h))
    for width in self.dims[1:]:
      h = act(dense(width)(h))
    return dense(self.n_items)(h)


def loss_weights(betas: np.ndarray, predict: str, reweight: bool):
  """float32[T] per-timestep loss weights, computed in float64.

  x0: SNR(t-1) - SNR(t), and 1 at t = 0; eps: (1 - ab_t) / ((1 - ab_{t-1})^2
  (1 - beta_t)), 1 at t = 0 (DiffRec's reweighting); all ones without it.
  """
  steps = len(betas)
  if not reweight:
    return np.ones(steps, np.float32)
  ab = np.cumprod(1.0 - np.asarray(betas, np.float64))
  ab_prev = np.append(1.0, ab[:-1])
  if predict == 'x0':
    snr = ab / (1.0 - ab)
    w = np.append(1.0, snr[:-1] - snr[1:])
  elif predict == 'eps':
    w = np.ones(steps)
    w[1:] = (1.0 - ab[1:]) / ((1.0 - ab_prev[1:]) ** 2 * (1.0 - betas[1:]))
  else:
    raise ValueError(f"predict={predict!r}; expected 'x0' or 'eps'")
  return w.astype(np.float32)


def linear_var_betas(c: mlc.ConfigDict) -> np.ndarray:
  """float64[T] betas of the config's 'linear_var' schedule (steps,
  noise_scale, noise_min, noise_max, first_beta); DiffRec's and DDRM's."""
  return schedules.betas(
    'linear_var',
    c.steps,
    scale=c.noise_scale,
    low=c.noise_min,
    high=c.noise_max,
    first_beta=c.first_beta,
  )


def check_config(c: mlc.ConfigDict) -> None:
  """Refuses settings DiffRec cannot run, naming the key."""
  if c.noise_scale <= 0:
    raise ValueError(
      f'model.noise_scale={c.noise_scale}: DiffRec needs a positive noise'
      " scale (the official code's noise-free variant is not supported)"
    )
  if not 0 <= c.sampling_steps <= c.steps:
    raise ValueError(
      f'model.sampling_steps={c.sampling_steps} must be in [0, steps ='
      f' {c.steps}]'
    )
  if c.sampler not in ('importance', 'uniform'):
    raise ValueError(
      f"model.sampler={c.sampler!r}; expected 'importance' or 'uniform'"
    )
  if c.predict not in ('x0', 'eps'):
    raise ValueError(f"model.predict={c.predict!r}; expected 'x0' or 'eps'")


def diffusion_terms(c, schedule, betas, denoise, x0, history, k_t, k_noise):
  """One training draw of DiffRec's diffusion loss on rows x0 [B, D].

  Args:
    c: the model config (sampler, uniform_prob, steps, predict, reweight).
    schedule, betas: the tables and their float64 betas.
    denoise: `(x_t, t) -> output` of the denoiser.
    history: the loss-aware sampler's state.
    k_t, k_noise: keys of the timesteps and of the noise.

  Returns:
    (per-example weighted loss [B] (what the history records), 1 / (T p(t))
    [B], t [B], x0_hat [B, D]).
  """
  b = x0.shape[0]
  if c.sampler == 'importance':
    t, inv_p = timesteps.loss_aware(k_t, history, b, c.uniform_prob)
  else:
    t, inv_p = timesteps.uniform(k_t, (b,), c.steps)
  noise = jax.random.normal(k_noise, x0.shape)
  x_t = forward.q_sample(schedule, x0, t, noise)
  out = denoise(x_t, t)
  weight = jnp.asarray(loss_weights(betas, c.predict, c.reweight))[t]
  if c.predict == 'x0':
    return weight * jnp.mean((x0 - out) ** 2, axis=-1), inv_p, t, out
  x0_hat = forward.x0_from_eps(schedule, x_t, t, out)
  per = jnp.mean((noise - out) ** 2, axis=-1)
  if c.reweight:
    likelihood = jnp.mean((x0 - x0_hat) ** 2 / 2.0, axis=-1)
    per = weight * jnp.where(t == 0, likelihood, per)
  return per, inv_p, t, x0_hat


def reverse(c, schedule, denoise, x, users):
  """DiffRec's ranking process: x (the history, or a latent) noised to step
  T' - 1 when T' = `c.sampling_steps` > 0, then every reverse step T-1..0
  (posterior means, or ancestral with `c.sampling_noise`).

  `denoise(x_t, t [B]) -> output`; the noise of user u comes from
  fold_in(key(c.eval_seed), u), so a user's result does not depend on its
  batch.
  """
  draw = prefix.user_normal(users, c.eval_seed)
  if c.sampling_steps > 0:
    t = jnp.full(x.shape[0], c.sampling_steps - 1)
    x = forward.q_sample(schedule, x, t, draw(c.steps, x.shape[1:]))
  return samplers.ddpm(
    lambda x_t, t: denoise(x_t, jnp.full(x_t.shape[0], t)),
    schedule,
    x,
    None,
    predict=c.predict,
    variance='small',
    noise=bool(c.sampling_noise),
    noise_fn=lambda t, shape: draw(t, shape[1:]),
  )


@dataclasses.dataclass(frozen=True)
class UserRows:
  """The training examples: one per user (its train row, densified per
  batch), and the steps of an epoch (L-DiffRec anneals per epoch)."""

  part: types.Part
  steps_per_epoch: int

  def __len__(self) -> int:
    return self.part.n_users


class DenseRows:
  """Host side of models trained on users' dense train rows, one example
  per user (Mult-VAE, GiffCF); needs an `n_items` attribute."""

  n_items: int

  def train_size(self, split: types.Split) -> int:
    return split.n_users

  def train_data(self, split: types.Split, plan: batching.BatchPlan):
    per_epoch = batching.steps_per_epoch(split.n_users, plan.batch_size)
    return UserRows(split.train, per_epoch)

  def train_batch(self, data: UserRows, index, weights) -> dict:
    return {
      'x': batching.dense_rows(data.part, index, self.n_items),
      'weights': weights,
    }

  def make_batch(self, history: types.Part, users: np.ndarray) -> dict:
    return {'x': batching.dense_rows(history, users, self.n_items)}


@dataclasses.dataclass(frozen=True)
class DiffRec(DenseRows):
  """The trainer's model surface (stateful: the loss-aware sampler's
  history is carried between steps, `jaxrec.train.loop.stateful`).

  Attributes:
    config: `config.model`: dims, emb_size, dropout, norm, steps,
      noise_scale, noise_min, noise_max, first_beta, predict ('x0'|'eps'),
      reweight, sampler ('importance'|'uniform'), history, uniform_prob,
      sampling_steps, sampling_noise, eval_seed.
    n_items: items (columns of x0).
  """

  config: mlc.ConfigDict
  n_items: int

  def __post_init__(self):
    check_config(self.config)

  @property
  def net(self) -> DiffRecNet:
    c = self.config
    return DiffRecNet(
      self.n_items, tuple(c.dims), c.emb_size, c.dropout, c.get('norm', False)
    )

  def betas(self) -> np.ndarray:
    return linear_var_betas(self.config)

  @property
  def schedule(self) -> schedules.Schedule:
    return schedules.from_betas(self.betas())

  # Host side (DenseRows; ranking also passes the users) ------------------

  def make_batch(self, history: types.Part, users: np.ndarray) -> dict:
    """'x': the users' dense history rows; 'users' keys their noise."""
    return {
      **DenseRows.make_batch(self, history, users),  # L-DiffRec borrows it
      'users': np.asarray(users, np.int32),
    }

  # Pure functions ----------------------------------------------------------

  def init(self, rng: jax.Array, batch: dict):
    x = batch['x']
    t = jnp.zeros(x.shape[0], jnp.int32)
    return self.net.init(rng, x, t, False, *self.net_inputs(batch))['params']

  def net_inputs(self, batch: dict) -> tuple:
    """The net's inputs after (x_t, t, train): none here; CF-Diff's
    multi-hop rows."""
    del batch
    return ()

  def denoiser(self, params, batch: dict, train: bool, rng=None):
    """`(x_t, t) -> output` of the net on this batch (dropout from `rng`
    when training)."""
    rngs = {'dropout': rng} if train else {}
    net, extra = self.net, self.net_inputs(batch)
    return lambda x_t, t: net.apply(
      {'params': params}, x_t, t, train, *extra, rngs=rngs
    )

  def init_extra(self) -> timesteps.LossHistory:
    return timesteps.loss_history(self.config.steps, self.config.history)

  def loss(self, params, batch: dict, rng: jax.Array, step, extra):
    """Weighted MSE (mean over items) per example, divided by T p(t).

    Returns:
      (mean over the weighted examples, {'loss_sum', 'count', 'extra': the
      loss history with this batch's (t, weighted MSE) appended}).
    """
    del step
    c, schedule = self.config, self.schedule
    x0, w = batch['x'], batch['weights']
    k_t, k_noise, k_drop = jax.random.split(rng, 3)
    denoise = self.denoiser(params, batch, True, k_drop)
    per, inv_p, t, _ = diffusion_terms(
      c, schedule, self.betas(), denoise, x0, extra, k_t, k_noise
    )
    extra = timesteps.update_history(extra, t, per, w > 0)
    total, count = jnp.sum(per * inv_p * w), jnp.sum(w)
    aux = {'loss_sum': total, 'count': count, 'extra': extra}
    return total / jnp.maximum(count, 1.0), aux

  def score(self, params, batch: dict, rng=None) -> jax.Array:
    """float32[B, I]: x0 after every reverse step from the history.

    The noise of user u (at T' > 0 or with `sampling_noise`) comes from
    fold_in(key(eval_seed), u), so a user's scores do not depend on its
    batch.
    """
    del rng
    denoise = self.denoiser(params, batch, False)
    return reverse(
      self.config, self.schedule, denoise, batch['x'], batch['users']
    )
