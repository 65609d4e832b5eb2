"""DiffRec: schedule, weights and denoiser against float64 NumPy; the
loss-aware sampler's state through the loop; batch-free ranking."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import diffrec as diffrec_config
from jaxrec.data import batching, synthetic
from jaxrec.diffusion import timesteps
from jaxrec.models import diffrec
from jaxrec.train import loop


def _config(**model):
  c = diffrec_config.get_config('dataset=synthetic,tiny')
  c.dataset = 'synthetic'
  c.model.update(model)
  return c


def _np_betas(steps, scale, low, high, first=1e-5):
  """DiffRec's linear-variance betas, from its formula, in float64."""
  var = np.linspace(scale * low, scale * high, steps)
  ab = 1.0 - var
  betas = [1.0 - ab[0]] + [
    min(1.0 - ab[i] / ab[i - 1], 0.999) for i in range(1, steps)
  ]
  betas[0] = first
  return np.array(betas)


def _np_forward(params, x, t, emb_size, cond=None, act=np.tanh):
  """float64 forward of the official DNN: [x, Linear(sinusoid t)(, cond)]
  -> dims reversed (act) -> dims forward (act between) -> output."""
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
  half = emb_size // 2
  freqs = np.exp(-np.log(10000.0) * np.arange(half) / half)
  args = np.asarray(t, np.float64)[:, None] * freqs
  emb = np.concatenate([np.cos(args), np.sin(args)], axis=1)
  layers = [p[f'Dense_{i}'] for i in range(len(p))]
  emb = emb @ layers[0]['kernel'] + layers[0]['bias']
  h = np.concatenate(
    [np.asarray(x, np.float64), emb] + ([] if cond is None else [cond]), 1
  )
  for i, layer in enumerate(layers[1:]):
    h = h @ layer['kernel'] + layer['bias']
    if i < len(layers) - 2:
      h = act(h)
  return h


def test_betas_and_snr_weights_match_numpy_float64():
  config = diffrec_config.get_config().model  # ML-1M clean: T = 40
  model = diffrec.DiffRec(config, 50)
  want = _np_betas(40, 0.005, 0.005, 0.01)
  np.testing.assert_allclose(model.betas(), want, rtol=1e-12)
  ab = np.cumprod(1.0 - want)
  snr = ab / (1.0 - ab)
  weights = [1.0] + [snr[t - 1] - snr[t] for t in range(1, 40)]
  got = diffrec.loss_weights(model.betas(), 'x0', True)
  np.testing.assert_allclose(got, weights, rtol=1e-6)
  # The same difference from float32 tables is off by far more than 1e-6:
  # why the weights are precomputed in float64.
  ab32 = np.asarray(model.schedule.alphas_cumprod, np.float64)
  snr32 = ab32 / (1.0 - ab32)
  assert np.max(np.abs(snr32[:-1] - snr32[1:]) / weights[1:] - 1) > 1e-3
  eps = diffrec.loss_weights(model.betas(), 'eps', True)
  ab_prev = np.append(1.0, ab[:-1])
  ref = (1 - ab[1:]) / ((1 - ab_prev[1:]) ** 2 * (1 - want[1:]))
  np.testing.assert_allclose(eps[1:], ref, rtol=1e-6)
  assert eps[0] == 1.0
  assert np.all(diffrec.loss_weights(model.betas(), 'x0', False) == 1.0)


def test_denoiser_matches_numpy_forward():
  config = _config(dims=(6, 9), emb_size=4, dropout=0.0).model
  model = diffrec.DiffRec(config, 12)
  rng = np.random.default_rng(0)
  x = (rng.uniform(size=(5, 12)) < 0.3).astype(np.float32)
  params = model.init(jax.random.key(0), {'x': x})
  shapes = [params[f'Dense_{i}']['kernel'].shape for i in range(5)]
  # time Linear, then 12+4 -> 9 -> 6 -> 9 -> 12
  assert shapes == [(4, 4), (16, 9), (9, 6), (6, 9), (9, 12)]
  t = np.array([0, 1, 2, 3, 4])
  got = model.net.apply({'params': params}, x, t, False)
  np.testing.assert_allclose(
    got, _np_forward(params, x, t, 4), rtol=1e-5, atol=1e-5
  )


def test_loss_is_the_reweighted_mse_and_updates_the_history():
  config = _config(dims=(6,), emb_size=4, dropout=0.0, sampler='uniform')
  model = diffrec.DiffRec(config.model, 10)
  rng = np.random.default_rng(1)
  x = (rng.uniform(size=(6, 10)) < 0.4).astype(np.float32)
  w = np.array([1, 1, 1, 1, 1, 0], np.float32)  # a padding row
  params = model.init(jax.random.key(0), {'x': x})
  key = jax.random.key(3)
  extra = model.init_extra()
  loss, aux = model.loss(params, {'x': x, 'weights': w}, key, 0, extra)
  # The draws, as the loss takes them from its key.
  k_t, k_noise, _ = jax.random.split(key, 3)
  t = np.asarray(jax.random.randint(k_t, (6,), 0, config.model.steps))
  noise = np.asarray(jax.random.normal(k_noise, x.shape), np.float64)
  ab = np.cumprod(1.0 - _np_betas(5, 0.005, 0.005, 0.01))
  x_t = np.sqrt(ab[t])[:, None] * x + np.sqrt(1 - ab[t])[:, None] * noise
  out = _np_forward(params, x_t, t, 4)
  snr = ab / (1 - ab)
  weight = np.where(t == 0, 1.0, snr[np.maximum(t - 1, 0)] - snr[t])
  per = weight * np.mean((x - out) ** 2, axis=1)
  np.testing.assert_allclose(loss, np.sum(per * w) / 5, rtol=2e-4)
  # The history holds the weighted losses of the 5 real rows, in order.
  hist = aux['extra']
  assert int(hist.counts.sum()) == 5
  for step in range(5):
    row = [per[i] for i in range(5) if t[i] == step]
    n = int(hist.counts[step])
    assert n == len(row)
    np.testing.assert_allclose(hist.losses[step, :n], row, rtol=2e-4)


def test_scores_follow_the_posterior_means_and_do_not_depend_on_the_batch():
  config = _config(dims=(6,), emb_size=4, dropout=0.0).model
  split = synthetic.clustered_split(n_users=20, n_items=15)
  model = diffrec.DiffRec(config, split.n_items)
  users = np.arange(8)
  batch = model.make_batch(split.train, users)
  params = model.init(jax.random.key(0), batch)
  got = np.asarray(jax.jit(model.score)(params, batch))
  # x0-iterative: x <- coef1[t] f(x, t) + coef2[t] x, t = T-1 .. 0.
  betas = _np_betas(5, 0.005, 0.005, 0.01)
  ab = np.cumprod(1.0 - betas)
  ab_prev = np.append(1.0, ab[:-1])
  coef1 = betas * np.sqrt(ab_prev) / (1 - ab)
  coef2 = (1 - ab_prev) * np.sqrt(1 - betas) / (1 - ab)
  x = batching.dense_rows(split.train, users, split.n_items).astype(np.float64)
  for t in range(4, -1, -1):
    f = _np_forward(params, x, np.full(len(users), t), 4)
    x = coef1[t] * f + coef2[t] * x
  np.testing.assert_allclose(got, x, rtol=1e-4, atol=1e-5)
  # With noise (T' > 0 and ancestral steps): a user's scores are the same
  # in any batch.
  noisy = diffrec.DiffRec(
    _config(dims=(6,), emb_size=4, sampling_steps=3, sampling_noise=True).model,
    split.n_items,
  )
  score = jax.jit(noisy.score)
  a = score(params, noisy.make_batch(split.train, users))
  b = score(params, noisy.make_batch(split.train, users[::-1]))
  np.testing.assert_allclose(a, np.asarray(b)[::-1], rtol=1e-6, atol=1e-6)
  assert not np.allclose(a, got, atol=1e-3)


def test_bad_settings_are_refused_by_name():
  with pytest.raises(ValueError, match='sampling_steps=6'):
    diffrec.DiffRec(_config(sampling_steps=6).model, 10)
  with pytest.raises(ValueError, match='noise_scale=0'):
    diffrec.DiffRec(_config(noise_scale=0.0).model, 10)
  with pytest.raises(ValueError, match="sampler='loss'"):
    diffrec.DiffRec(_config(sampler='loss').model, 10)


def test_loss_history_is_trained_state_that_resumes_exactly(tmp_path):
  # 3 steps per epoch of 80 users; an interrupted run resumed from its
  # checkpoint ends where one uninterrupted run does, the sampler's history
  # included.
  def config(steps):
    c = _config()
    c.max_users = 80
    c.train.update(steps=steps, eval_every=4, batch_size=32)
    return c

  whole = loop.train_and_evaluate(config(12), tmp_path / 'whole')
  loop.train_and_evaluate(config(8), tmp_path / 'cut')
  (tmp_path / 'cut' / 'results.json').unlink()
  (tmp_path / 'cut' / 'config.json').unlink()
  resumed = loop.train_and_evaluate(config(12), tmp_path / 'cut')
  assert resumed['params_sha256'] == whole['params_sha256']
  assert resumed['valid_curve'] == whole['valid_curve']

  run = loop._Setup.build(config(12), loop.fit_linear.load_split(config(12)))
  state = run.init_state()
  assert isinstance(state, loop.StatefulTrainState)
  assert isinstance(state.extra, timesteps.LossHistory)
  ckpt = loop.checkpoint.Checkpoints(tmp_path / 'whole' / 'checkpoints')
  restored, _ = ckpt.restore_latest(run.abstract)
  ckpt.close()
  # 320 real rows over 5 timesteps: every history is full (10 losses), so
  # the later steps drew t by importance.
  np.testing.assert_array_equal(restored.extra.counts, [10] * 5)
  assert np.all(np.asarray(restored.extra.losses) > 0)


def test_update_history_skips_masked_pairs():
  state = timesteps.loss_history(3, 2)
  t = jnp.array([0, 1, 0, 2, 0])
  losses = jnp.array([1.0, 2.0, 3.0, 4.0, 5.0])
  keep = jnp.array([True, True, False, True, True])
  state = timesteps.update_history(state, t, losses, keep)
  np.testing.assert_array_equal(state.counts, [2, 1, 1])
  np.testing.assert_allclose(state.losses[0], [1.0, 5.0])
  np.testing.assert_allclose(state.losses[1], [2.0, 0.0])
