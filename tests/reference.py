"""Float64 references shared by several tests."""

from typing import Callable

import numpy as np


def ancestral_f64(
  betas: np.ndarray,
  x_start: np.ndarray,
  x0_fn: Callable[[np.ndarray, int], np.ndarray],
  noise_fn: Callable[[int], np.ndarray],
  variance: str,
) -> np.ndarray:
  """DDPM's ancestral reverse process as a plain loop in float64.

  From x_{T-1} = `x_start` through t = T-1, ..., 0: x0 = x0_fn(x, t), then
  the posterior mean of q(x_{t-1} | x_t, x0) plus, at t > 0, noise_fn(t)
  scaled by the posterior's standard deviation ('small') or sqrt(beta_t)
  ('large').
  """
  betas = np.asarray(betas, np.float64)
  ab = np.cumprod(1.0 - betas)
  ab_prev = np.append(1.0, ab[:-1])
  coef1 = betas * np.sqrt(ab_prev) / (1.0 - ab)
  coef2 = (1.0 - ab_prev) * np.sqrt(1.0 - betas) / (1.0 - ab)
  var = {'small': betas * (1.0 - ab_prev) / (1.0 - ab), 'large': betas}
  x = np.asarray(x_start, np.float64)
  for t in range(len(betas) - 1, -1, -1):
    x0 = np.asarray(x0_fn(x, t), np.float64)
    x = coef1[t] * x0 + coef2[t] * x
    if t > 0:
      x = x + np.sqrt(var[variance][t]) * np.asarray(noise_fn(t), np.float64)
  return x
