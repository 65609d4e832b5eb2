"""Registered noise schedules -> `Schedule`, a pytree of float32[T] tables.

Betas are built in float64 and every derived table (cumulative products,
posterior coefficients, log variances) is computed in float64 before the
cast to float32, as DDPM, DiffuRec and DiffRec do.

Registered (`SCHEDULES`; `make(name, steps, **kwargs)`):
  linear       Ho et al. (DDPM), scaled to any T: beta from 1e-4 * 1000/T to
               0.02 * 1000/T.
  cosine       Nichol & Dhariwal: alpha_bar(s) = cos((s + 0.008)/1.008 pi/2)^2,
               betas capped at 0.999.
  sqrt         Li et al. (Diffusion-LM): alpha_bar(s) = 1 - sqrt(s + 1e-4).
  trunc_lin    DiffuRec / ADRec (`trunc_lin` in their code): DDPM's linear
               schedule shifted up by 0.01 (T=32: alpha_bar_T = 9.9e-7).
  trunc_cos    DiffuRec's truncated cosine: cos((s + 0.1)/1.1 pi/2)^2, its
               first beta from alpha_bar(0).
  linear_var   DiffRec's 'linear-var': the variance 1 - alpha_bar grows
               linearly from scale * min to scale * max; DiffRec then
               overwrites the first beta with 1e-5 (`first_beta`).
  beta_cdf     alpha_bar(s) = 1 - I_s(a, b), the regularised incomplete beta
               function (a Beta(a, b) distribution of the noise level).
  exp          DreamRec's default ('exp'): the discretised VP-SDE with beta(s)
               linear from beta_min = 0.1 to beta_max = 10.
"""

from __future__ import annotations

import math
from typing import Callable

import flax
import jax.numpy as jnp
import numpy as np
import scipy.special

MAX_BETA = 0.999


@flax.struct.dataclass
class Schedule:
  """float32[T] tables indexed by the 0-based timestep t (t = 0: one step).

  Attributes follow DDPM's names: `alphas_cumprod` is alpha_bar_t,
  `alphas_cumprod_prev` is alpha_bar_{t-1} (1 at t = 0), posterior_* are
  those of q(x_{t-1} | x_t, x_0); `log_variance_large` is DDPM's fixed-large
  choice (beta_t, with the posterior variance at t = 0 as in DiffuRec).
  """

  betas: jnp.ndarray
  alphas_cumprod: jnp.ndarray
  alphas_cumprod_prev: jnp.ndarray
  sqrt_alphas_cumprod: jnp.ndarray
  sqrt_one_minus_alphas_cumprod: jnp.ndarray
  sqrt_recip_alphas_cumprod: jnp.ndarray
  sqrt_recipm1_alphas_cumprod: jnp.ndarray
  posterior_variance: jnp.ndarray
  posterior_log_variance_clipped: jnp.ndarray
  posterior_mean_coef1: jnp.ndarray
  posterior_mean_coef2: jnp.ndarray
  log_variance_large: jnp.ndarray

  @property
  def steps(self) -> int:
    return self.betas.shape[0]


def tables(betas: np.ndarray) -> dict[str, np.ndarray]:
  """Every derived table of `betas`, in float64."""
  betas = np.asarray(betas, np.float64)
  if betas.ndim != 1 or not ((betas > 0) & (betas < 1)).all():
    raise ValueError(
      f'betas must be 1-D and in (0, 1); got min {betas.min()}, max'
      f' {betas.max()} (too few steps for this schedule?)'
    )
  alphas = 1.0 - betas
  ac = np.cumprod(alphas)
  ac_prev = np.append(1.0, ac[:-1])
  post_var = betas * (1.0 - ac_prev) / (1.0 - ac)
  # At t = 0 the posterior variance is 0; DDPM clips its log with t = 1's.
  post_var_1 = post_var[1] if len(betas) > 1 else betas[0]
  return {
    'betas': betas,
    'alphas_cumprod': ac,
    'alphas_cumprod_prev': ac_prev,
    'sqrt_alphas_cumprod': np.sqrt(ac),
    'sqrt_one_minus_alphas_cumprod': np.sqrt(1.0 - ac),
    'sqrt_recip_alphas_cumprod': np.sqrt(1.0 / ac),
    'sqrt_recipm1_alphas_cumprod': np.sqrt(1.0 / ac - 1.0),
    'posterior_variance': post_var,
    'posterior_log_variance_clipped': np.log(
      np.append(post_var_1, post_var[1:])
    ),
    'posterior_mean_coef1': betas * np.sqrt(ac_prev) / (1.0 - ac),
    'posterior_mean_coef2': (1.0 - ac_prev) * np.sqrt(alphas) / (1.0 - ac),
    'log_variance_large': np.log(np.append(post_var_1, betas[1:])),
  }


def from_betas(betas: np.ndarray) -> Schedule:
  """A `Schedule` of float32 tables computed in float64 from `betas`."""
  return Schedule(
    **{k: jnp.asarray(v, jnp.float32) for k, v in tables(betas).items()}
  )


def betas_for_alpha_bar(
  steps: int, alpha_bar: Callable[[float], float], max_beta: float = MAX_BETA
) -> np.ndarray:
  """beta_t = 1 - alpha_bar((t+1)/T) / alpha_bar(t/T), capped at max_beta."""
  s = np.arange(steps + 1, dtype=np.float64) / steps
  ab = np.array([alpha_bar(x) for x in s], np.float64)
  return np.minimum(1.0 - ab[1:] / ab[:-1], max_beta)


def _linear(steps: int) -> np.ndarray:
  scale = 1000.0 / steps
  return np.linspace(scale * 1e-4, scale * 0.02, steps, dtype=np.float64)


def _cosine(steps: int) -> np.ndarray:
  return betas_for_alpha_bar(
    steps, lambda s: math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2
  )


def _sqrt(steps: int) -> np.ndarray:
  return betas_for_alpha_bar(steps, lambda s: 1.0 - math.sqrt(s + 1e-4))


def _trunc_lin(steps: int) -> np.ndarray:
  scale = 1000.0 / steps
  start, end = scale * 1e-4 + 0.01, scale * 0.02 + 0.01
  if end > 1:  # few steps: DiffuRec falls back to a gentler end
    end = scale * 1e-3 + 0.01
  return np.linspace(start, end, steps, dtype=np.float64)


def _trunc_cos(steps: int) -> np.ndarray:
  alpha_bar = lambda s: math.cos((s + 0.1) / 1.1 * math.pi / 2) ** 2
  first = min(1.0 - alpha_bar(0.0), MAX_BETA)
  return np.append(first, betas_for_alpha_bar(steps, alpha_bar)[:-1])


def _linear_var(
  steps: int,
  scale: float,
  low: float,
  high: float,
  first_beta: float | None = 1e-5,
) -> np.ndarray:
  variance = np.linspace(scale * low, scale * high, steps, dtype=np.float64)
  alpha_bar = 1.0 - variance
  betas = np.append(
    1.0 - alpha_bar[0],
    np.minimum(1.0 - alpha_bar[1:] / alpha_bar[:-1], MAX_BETA),
  )
  if first_beta is not None:
    betas[0] = first_beta
  return betas


def _beta_cdf(steps: int, a: float = 2.0, b: float = 2.0) -> np.ndarray:
  eps = 1e-4  # keeps alpha_bar(1) > 0
  return betas_for_alpha_bar(
    steps, lambda s: 1.0 - (1 - eps) * scipy.special.betainc(a, b, s)
  )


def _exp(steps: int, beta_min: float = 0.1, beta_max: float = 10.0):
  x = np.linspace(1, 2 * steps + 1, steps, dtype=np.float64)
  return 1.0 - np.exp(
    -beta_min / steps - x * 0.5 * (beta_max - beta_min) / steps**2
  )


SCHEDULES: dict[str, Callable[..., np.ndarray]] = {
  'linear': _linear,
  'cosine': _cosine,
  'sqrt': _sqrt,
  'trunc_lin': _trunc_lin,
  'trunc_cos': _trunc_cos,
  'linear_var': _linear_var,
  'beta_cdf': _beta_cdf,
  'exp': _exp,
}


def betas(name: str, steps: int, **kwargs) -> np.ndarray:
  """float64[T] betas of the registered schedule `name`."""
  if name not in SCHEDULES:
    raise KeyError(f'unknown schedule {name!r}; known: {sorted(SCHEDULES)}')
  if steps < 1:
    raise ValueError(f'steps={steps} must be >= 1')
  return SCHEDULES[name](steps, **kwargs)


def make(name: str, steps: int, **kwargs) -> Schedule:
  """The `Schedule` of `name` with T = `steps`."""
  return from_betas(betas(name, steps, **kwargs))
