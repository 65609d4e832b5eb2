"""Reverse processes under `lax.scan`.

`model_fn(x_t, t) -> output` is the denoiser with its conditioning closed
over; `t` is a scalar int32 (the sampler's current step; the model
broadcasts it). The output is x_0 (`predict='x0'`, DiffuRec, DiffRec,
DreamRec) or the noise (`predict='eps'`).

  ddpm   ancestral sampling through every step, variance 'small' (the
         posterior's, clipped at t = 0) or 'large' (beta_t, DiffuRec);
         `noise=False` follows the posterior means only: DiffRec's
         x0-iterative inference.
  ddim   deterministic (eta = 0) or stochastic DDIM over a subsequence of
         `steps` timesteps: fewer-step inference.
  classifier_free  combines conditional and unconditional outputs as
         (1 + w) f(x, t | c) - w f(x, t | null) (DreamRec).

Noise at step t is `normal(fold_in(rng, t))`, so a sampler's draws do not
depend on the loop structure (tests compare against a plain loop).
"""

from __future__ import annotations

from typing import Callable, Literal

import jax
import jax.numpy as jnp
import numpy as np

from jaxrec.diffusion import forward
from jaxrec.diffusion.schedules import Schedule

ModelFn = Callable[[jax.Array, jax.Array], jax.Array]


def _x0(schedule, model_fn, x, t, predict):
  out = model_fn(x, t)
  if predict == 'x0':
    return out
  if predict == 'eps':
    return forward.x0_from_eps(schedule, x, t, out)
  raise ValueError(f"predict={predict!r}; expected 'x0' or 'eps'")


def ddpm(
  model_fn: ModelFn,
  schedule: Schedule,
  x_start: jax.Array,
  rng: jax.Array | None,
  predict: Literal['x0', 'eps'] = 'x0',
  variance: Literal['small', 'large'] = 'small',
  noise: bool = True,
  noise_fn: Callable[[jax.Array, tuple], jax.Array] | None = None,
) -> jax.Array:
  """x_0 from x_{T-1} = `x_start` through steps T-1, ..., 0.

  Args:
    model_fn: the denoiser.
    schedule: the tables.
    x_start: the starting sample (pure noise, or DiffRec's noised history).
    rng: key for the step noise (unused when `noise` is False).
    predict: what the model outputs.
    variance: 'small' (posterior) or 'large' (beta_t).
    noise: add noise at t > 0 (ancestral); False follows the means.
    noise_fn: `(t, shape) -> standard normal draws` for step t; default
      `normal(fold_in(rng, t), shape)`. Models pass per-example streams so
      that an example's sample does not depend on its batch.
  """
  if variance not in ('small', 'large'):
    raise ValueError(f"variance={variance!r}; expected 'small' or 'large'")

  def step(x, t):
    x0 = _x0(schedule, model_fn, x, t, predict)
    mean, _, log_var = forward.q_posterior(schedule, x0, x, t)
    if not noise:
      return mean, None
    if variance == 'large':
      log_var = forward.extract(schedule.log_variance_large, t, x.ndim)
    if noise_fn is None:
      z = jax.random.normal(jax.random.fold_in(rng, t), x.shape, x.dtype)
    else:
      z = noise_fn(t, x.shape)
    return mean + jnp.where(t > 0, jnp.exp(0.5 * log_var), 0.0) * z, None

  ts = jnp.arange(schedule.steps - 1, -1, -1, dtype=jnp.int32)
  return jax.lax.scan(step, x_start, ts)[0]


def ddim_timesteps(total: int, steps: int) -> np.ndarray:
  """`steps` timesteps evenly spaced over 0..total-1, descending."""
  if not 1 <= steps <= total:
    raise ValueError(f'steps={steps} must be in [1, {total}]')
  return np.round(np.linspace(total - 1, 0, steps)).astype(np.int32)


def ddim(
  model_fn: ModelFn,
  schedule: Schedule,
  x_start: jax.Array,
  rng: jax.Array | None,
  steps: int,
  eta: float = 0.0,
  predict: Literal['x0', 'eps'] = 'x0',
) -> jax.Array:
  """DDIM (Song et al. 2021) over `steps` of the schedule's timesteps."""
  ts = ddim_timesteps(schedule.steps, steps)
  prev = np.append(ts[1:], -1).astype(np.int32)  # -1: alpha_bar = 1
  ab_all = jnp.append(schedule.alphas_cumprod, 1.0)  # index -1 -> 1.0

  def step(x, tp):
    t, t_prev = tp
    x0 = _x0(schedule, model_fn, x, t, predict)
    eps = forward.eps_from_x0(schedule, x, t, x0)
    ab, ab_prev = ab_all[t], ab_all[t_prev]
    sigma = eta * jnp.sqrt((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev))
    x = jnp.sqrt(ab_prev) * x0 + jnp.sqrt(1 - ab_prev - sigma**2) * eps
    if eta:
      z = jax.random.normal(jax.random.fold_in(rng, t), x.shape, x.dtype)
      x = x + sigma * z
    return x, None

  return jax.lax.scan(step, x_start, (jnp.asarray(ts), jnp.asarray(prev)))[0]


def classifier_free(
  cond_fn: ModelFn, uncond_fn: ModelFn, weight: float
) -> ModelFn:
  """(1 + w) cond - w uncond: DreamRec's guidance (w = 0: conditional)."""

  def model_fn(x, t):
    return (1.0 + weight) * cond_fn(x, t) - weight * uncond_fn(x, t)

  return model_fn
