"""The forward process and its posterior, for timesteps of any shape.

`t` may be a scalar `[]`, one per example `[B]`, or one per token `[B, L]`
(ADRec); a table value `table[t]` gets trailing singleton axes until it
broadcasts against `x` (whose leading axes are those of `t`).
"""

from __future__ import annotations

import jax.numpy as jnp

from jaxrec.diffusion.schedules import Schedule


def extract(table: jnp.ndarray, t: jnp.ndarray, ndim: int) -> jnp.ndarray:
  """table[t] with trailing axes added up to rank `ndim`."""
  t = jnp.asarray(t)
  value = table[t]
  return value.reshape(t.shape + (1,) * (ndim - t.ndim))


def q_sample(schedule: Schedule, x0, t, noise):
  """x_t ~ q(x_t | x_0) = sqrt(ab_t) x_0 + sqrt(1 - ab_t) noise."""
  return (
    extract(schedule.sqrt_alphas_cumprod, t, x0.ndim) * x0
    + extract(schedule.sqrt_one_minus_alphas_cumprod, t, x0.ndim) * noise
  )


def q_posterior(schedule: Schedule, x0, xt, t):
  """Mean, variance and clipped log variance of q(x_{t-1} | x_t, x_0)."""
  n = xt.ndim
  mean = (
    extract(schedule.posterior_mean_coef1, t, n) * x0
    + extract(schedule.posterior_mean_coef2, t, n) * xt
  )
  var = extract(schedule.posterior_variance, t, n)
  log_var = extract(schedule.posterior_log_variance_clipped, t, n)
  return mean, var, log_var


def x0_from_eps(schedule: Schedule, xt, t, eps):
  """x_0 = (x_t - sqrt(1 - ab_t) eps) / sqrt(ab_t)."""
  n = xt.ndim
  return (
    extract(schedule.sqrt_recip_alphas_cumprod, t, n) * xt
    - extract(schedule.sqrt_recipm1_alphas_cumprod, t, n) * eps
  )


def eps_from_x0(schedule: Schedule, xt, t, x0):
  """eps = (x_t / sqrt(ab_t) - x_0) / sqrt(1 / ab_t - 1)."""
  n = xt.ndim
  return (
    extract(schedule.sqrt_recip_alphas_cumprod, t, n) * xt - x0
  ) / extract(schedule.sqrt_recipm1_alphas_cumprod, t, n)


def snr(schedule: Schedule, t):
  """Signal-to-noise ratio ab_t / (1 - ab_t) at `t` (DiffRec's reweighting)."""
  ab = schedule.alphas_cumprod[jnp.asarray(t)]
  return ab / (1.0 - ab)
