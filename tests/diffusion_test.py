"""Diffusion core against float64 NumPy references written here."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special

from jaxrec.diffusion import forward, samplers, schedules, timesteps
from tests import reference


def _from_alpha_bar(f, steps):
  out = []
  for i in range(steps):
    out.append(min(1 - f((i + 1) / steps) / f(i / steps), 0.999))
  return np.array(out)


def _ref_betas(name, steps, **kw):
  """Each schedule's formula, written out independently in float64."""
  scale = 1000 / steps
  if name == 'linear':
    return np.linspace(scale * 1e-4, scale * 0.02, steps)
  if name == 'cosine':
    return _from_alpha_bar(
      lambda s: math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2, steps
    )
  if name == 'sqrt':
    return _from_alpha_bar(lambda s: 1 - math.sqrt(s + 0.0001), steps)
  if name == 'trunc_lin':
    end = scale * 0.02 + 0.01
    end = end if end <= 1 else scale * 0.001 + 0.01
    return np.linspace(scale * 0.0001 + 0.01, end, steps)
  if name == 'trunc_cos':
    f = lambda s: math.cos((s + 0.1) / 1.1 * math.pi / 2) ** 2
    out = [min(1 - f(0), 0.999)]
    for i in range(steps - 1):
      out.append(min(1 - f((i + 1) / steps) / f(i / steps), 0.999))
    return np.array(out)
  if name == 'linear_var':
    var = np.linspace(kw['scale'] * kw['low'], kw['scale'] * kw['high'], steps)
    ab = 1 - var
    out = [1 - ab[0]] + [
      min(1 - ab[i] / ab[i - 1], 0.999) for i in range(1, steps)
    ]
    out[0] = 1e-5
    return np.array(out)
  if name == 'beta_cdf':
    f = lambda s: 1 - (1 - 1e-4) * scipy.special.betainc(2.0, 2.0, s)
    return _from_alpha_bar(f, steps)
  if name == 'exp':
    x = np.linspace(1, 2 * steps + 1, steps)
    return 1 - np.exp(-0.1 / steps - x * 0.5 * 9.9 / steps**2)
  raise KeyError(name)


KWARGS = {'linear_var': dict(scale=5e-3, low=5e-3, high=1e-2)}


@pytest.mark.parametrize('steps', [1, 5, 32, 1000])
@pytest.mark.parametrize('name', sorted(schedules.SCHEDULES))
def test_schedule_tables_match_float64_formulas(name, steps):
  kw = KWARGS.get(name, {})
  b = _ref_betas(name, steps, **kw)
  if b.max() >= 1:  # DDPM's scaled linear schedule needs T >= 21
    with pytest.raises(ValueError, match='too few steps'):
      schedules.make(name, steps, **kw)
    return
  s = schedules.make(name, steps, **kw)
  ab = np.cumprod(1 - b)
  ab_prev = np.append(1.0, ab[:-1])
  post_var = b * (1 - ab_prev) / (1 - ab)
  want = {
    'betas': b,
    'alphas_cumprod': ab,
    'sqrt_alphas_cumprod': np.sqrt(ab),
    'sqrt_one_minus_alphas_cumprod': np.sqrt(1 - ab),
    'posterior_variance': post_var,
    'posterior_mean_coef1': b * np.sqrt(ab_prev) / (1 - ab),
    'posterior_mean_coef2': (1 - ab_prev) * np.sqrt(1 - b) / (1 - ab),
  }
  for key, value in want.items():
    got = np.asarray(getattr(s, key), np.float64)
    np.testing.assert_allclose(got, value, rtol=1e-6, atol=1e-6, err_msg=key)
  assert s.steps == steps


def test_truncated_linear_32_reaches_diffurec_alpha_bar():
  ab_t = float(schedules.make('trunc_lin', 32).alphas_cumprod[-1])
  assert abs(ab_t / 9.9e-7 - 1) < 0.01


def test_unknown_schedule_and_bad_betas():
  with pytest.raises(KeyError, match='unknown schedule'):
    schedules.make('nope', 10)
  with pytest.raises(ValueError, match='betas'):
    schedules.from_betas(np.array([0.1, 1.5]))


def test_q_sample_per_token_equals_a_per_element_loop():
  s = schedules.make('trunc_lin', 32)
  rng = np.random.default_rng(0)
  x0 = rng.standard_normal((3, 5, 4)).astype(np.float32)
  noise = rng.standard_normal((3, 5, 4)).astype(np.float32)
  ab = np.cumprod(1 - _ref_betas('trunc_lin', 32))
  for t in (np.int32(7), rng.integers(0, 32, 3), rng.integers(0, 32, (3, 5))):
    got = np.asarray(forward.q_sample(s, x0, jnp.asarray(t), noise))
    tt = np.broadcast_to(
      np.reshape(t, np.shape(t) + (1,) * (2 - np.ndim(t))), (3, 5)
    )
    for b in range(3):
      for i in range(5):
        a = ab[tt[b, i]]
        want = np.sqrt(a) * x0[b, i] + np.sqrt(1 - a) * noise[b, i]
        np.testing.assert_allclose(got[b, i], want, rtol=1e-5, atol=1e-6)


def test_posterior_and_parameterisations():
  s = schedules.make('linear', 40)
  b = _ref_betas('linear', 40)
  ab = np.cumprod(1 - b)
  ab_prev = np.append(1.0, ab[:-1])
  rng = np.random.default_rng(1)
  x0, xt = rng.standard_normal((2, 6, 3))
  t = rng.integers(0, 40, 6)
  mean, var, log_var = forward.q_posterior(s, x0, xt, t)
  c1 = b * np.sqrt(ab_prev) / (1 - ab)
  c2 = (1 - ab_prev) * np.sqrt(1 - b) / (1 - ab)
  want = c1[t, None] * x0 + c2[t, None] * xt
  np.testing.assert_allclose(mean, want, rtol=1e-5, atol=1e-6)
  post = b * (1 - ab_prev) / (1 - ab)
  np.testing.assert_allclose(var[:, 0], post[t], rtol=1e-5)
  clipped = np.log(np.append(post[1], post[1:]))
  np.testing.assert_allclose(log_var[:, 0], clipped[t], rtol=1e-5)
  eps = forward.eps_from_x0(s, xt, t, x0)
  np.testing.assert_allclose(
    forward.x0_from_eps(s, xt, t, eps), x0, rtol=1e-4, atol=1e-4
  )
  np.testing.assert_allclose(forward.snr(s, t), ab[t] / (1 - ab[t]), rtol=1e-5)


def test_sinusoidal_embedding():
  t = np.array([[0, 3], [7, 31]])
  got = np.asarray(timesteps.sinusoidal_embedding(t, 7))
  freqs = np.exp(-math.log(10000) * np.arange(3) / 3)
  args = t[..., None] * freqs
  want = np.concatenate([np.cos(args), np.sin(args), np.zeros((2, 2, 1))], -1)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  # DreamRec's variant: sin first, frequencies over half - 1.
  got = timesteps.sinusoidal_embedding(t, 8, sin_first=True, freq_shift=1)
  freqs = np.exp(-math.log(10000) * np.arange(4) / 3)
  args = t[..., None] * freqs
  want = np.concatenate([np.sin(args), np.cos(args)], -1)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def _ref_ddpm(s, model, x, rng, variance, noise, predict='x0'):
  """The same reverse process as a plain Python loop in float64, from this
  file's own trunc_lin betas (`reference.ancestral_f64`); with `noise`
  False the steps follow the posterior means."""
  b = _ref_betas('trunc_lin', s.steps)
  ab = np.cumprod(1 - b)

  def x0_fn(x, t):
    out = np.asarray(
      model(jnp.asarray(x, jnp.float32), jnp.int32(t)), np.float64
    )
    if predict == 'x0':
      return out
    return (x - np.sqrt(1 - ab[t]) * out) / np.sqrt(ab[t])

  def noise_fn(t):
    z = np.asarray(jax.random.normal(jax.random.fold_in(rng, t), x.shape))
    return z if noise else np.zeros_like(z)

  return reference.ancestral_f64(b, x, x0_fn, noise_fn, variance)


class SamplerTest(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  @pytest.mark.filterwarnings('ignore')
  def test_ddpm_scan_equals_a_loop(self):
    s = schedules.make('trunc_lin', 8)
    w = jnp.asarray(np.random.default_rng(2).standard_normal((4, 4)) * 0.3)
    model = lambda x, t: jnp.tanh(x @ w) * (1.0 + 0.1 * t)
    x = jax.random.normal(jax.random.key(0), (3, 4))
    rng = jax.random.key(1)
    for variance, noise, predict in (
      ('small', True, 'x0'),
      ('large', True, 'x0'),
      ('small', False, 'x0'),
      ('small', True, 'eps'),
    ):
      got = self.variant(
        lambda x, r, v=variance, n=noise, p=predict: samplers.ddpm(
          model, s, x, r, predict=p, variance=v, noise=n
        )
      )(x, rng)
      want = _ref_ddpm(s, model, x, rng, variance, noise, predict)
      np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)

  @chex.variants(with_jit=True, without_jit=True)
  def test_ddim_with_an_exact_denoiser_returns_x0(self):
    s = schedules.make('cosine', 50)
    x0 = jax.random.normal(jax.random.key(3), (5, 3))
    oracle = lambda x, t: x0
    xt = forward.q_sample(
      s, x0, 49, jax.random.normal(jax.random.key(4), (5, 3))
    )
    for steps, eta in ((50, 0.0), (10, 0.0), (7, 1.0)):
      got = self.variant(
        lambda x, st=steps, e=eta: samplers.ddim(
          oracle, s, x, jax.random.key(5), st, eta=e
        )
      )(xt)
      np.testing.assert_allclose(got, x0, atol=1e-5)


def test_ddim_timesteps_and_guidance():
  assert samplers.ddim_timesteps(10, 4).tolist() == [9, 6, 3, 0]
  with pytest.raises(ValueError):
    samplers.ddim_timesteps(10, 11)
  f = samplers.classifier_free(lambda x, t: 2 * x, lambda x, t: x, 3.0)
  np.testing.assert_allclose(f(jnp.ones(2), 0), 5 * np.ones(2))


def test_loss_aware_sampler_matches_diffrec_rule():
  steps, hist = 4, 3
  state = timesteps.loss_history(steps, hist)
  t, w = timesteps.loss_aware(jax.random.key(0), state, 5000)
  assert np.all(np.asarray(w) == 1.0)  # uniform until every row is full
  ts = np.array([0, 0, 1, 2, 3, 3, 0, 1, 2, 3, 1, 2, 0, 0])
  losses = np.arange(1.0, 15.0)
  state = jax.jit(timesteps.update_history)(state, ts, losses)
  ref = {i: [] for i in range(steps)}
  for ti, li in zip(ts, losses, strict=True):
    ref[ti] = (ref[ti] + [li])[-hist:]
  np.testing.assert_array_equal(state.counts, [3, 3, 3, 3])
  for i in range(steps):
    np.testing.assert_allclose(state.losses[i], ref[i])
  rms = np.sqrt(np.mean(np.array([ref[i] for i in range(steps)]) ** 2, 1))
  p = rms / rms.sum() * (1 - 1e-3) + 1e-3 / steps
  t, w = timesteps.loss_aware(jax.random.key(1), state, 20000)
  freq = np.bincount(np.asarray(t), minlength=steps) / 20000
  np.testing.assert_allclose(freq, p, atol=0.015)
  np.testing.assert_allclose(w, 1 / (steps * p[np.asarray(t)]), rtol=1e-5)
