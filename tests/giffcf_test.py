"""GiffCF: the smoothing operator, the denoiser, the loss and the reverse
process against float64 NumPy."""

import jax
import numpy as np
import pytest

from configs import giffcf as giffcf_config
from jaxrec.data import batching, synthetic
from jaxrec.models import giffcf


def _model(split, **model):
  c = giffcf_config.get_config('dataset=synthetic,tiny').model
  c.update(model)
  return giffcf.GiffCF(c, split.n_items).bind(split)


def _np_operator(x, ideal_weight, cutoff):
  du, di = x.sum(1), x.sum(0)
  r = x * du[:, None] ** -0.25 * di[None, :] ** -0.5
  _, s, vt = np.linalg.svd(r)
  op = r.T @ r / s[0] ** 2
  if ideal_weight:
    v = vt[:cutoff]
    op = (op + ideal_weight * v.T @ v) / (1 + ideal_weight)
  return op


def _np_denoiser(params, z, c, ac, t, n_items):
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
  silu = lambda v: v / (1 + np.exp(-v))
  dense = lambda h, q: h @ q['kernel'] + q['bias']
  mix = lambda q, *xs: dense(
    silu(dense(np.stack(xs, -1), q['Dense_0'])), q['Dense_1']
  )[..., 0]  # noqa: E501

  def time(q):
    k = np.arange(10)
    ang = np.asarray(t, np.float64)[:, None] * 10000.0 ** (-k / 10)
    e = np.concatenate([np.sin(ang), np.cos(ang)], 1)
    return dense(silu(dense(e, q['Dense_0'])), q['Dense_1'])

  emb = p['item_embed']
  t1, t2 = time(p['TimeEmbed_0']), time(p['TimeEmbed_1'])
  z_emb = z / n_items @ emb
  c_emb = c / np.maximum(np.abs(c).sum(1, keepdims=True), 1) @ emb
  x_emb = mix(p['Mixer_0'], z_emb, c_emb, np.broadcast_to(t1, z_emb.shape))
  x_mid = x_emb @ emb.T
  return mix(p['Mixer_1'], x_mid, c, ac, np.broadcast_to(t2, x_mid.shape))


@pytest.mark.parametrize('ideal_weight', [0.0, 0.5])
def test_operator_matches_numpy(ideal_weight):
  split = synthetic.clustered_split(n_users=40, n_items=15, per_user=6)
  model = _model(split, ideal_weight=ideal_weight, ideal_cutoff=4)
  x = split.train.to_csr(split.n_items).toarray().astype(np.float64)
  want = _np_operator(x, ideal_weight, 4)
  np.testing.assert_allclose(model.operator, want, rtol=1e-5, atol=1e-6)
  # A is normalised to spectral radius 1.
  assert np.isclose(np.linalg.eigvalsh(want).max(), 1.0)
  with pytest.raises(MemoryError, match='GiffCF on 15 items'):
    _model(split, max_dense_bytes=100)


def test_loss_and_ranking_match_numpy():
  split = synthetic.clustered_split(n_users=40, n_items=15, per_user=6)
  model = _model(split, noise_scale=0.1, noise_decay=0.5, steps=3)
  c = model.config
  users = np.arange(12)
  x = batching.dense_rows(split.train, users, split.n_items)
  params = model.init(jax.random.key(0), {'x': x})
  op = model.operator.astype(np.float64)
  flt = lambda v, av, t: v + c.alpha * np.asarray(t)[..., None] / 3 * (av - v)
  n = split.n_items
  # Loss, from the same draws.
  w = np.ones(12, np.float32)
  w[-1] = 0.0
  key = jax.random.key(4)
  loss, _ = jax.jit(model.loss)(params, {'x': x, 'weights': w}, key, 0)
  k_t, k_noise, k_drop = jax.random.split(key, 3)
  t = np.asarray(jax.random.randint(k_t, (12,), 1, 4))
  z = flt(x, x @ op, t) + (0.1 * 0.5 ** (3 - t))[:, None] * np.asarray(
    jax.random.normal(k_noise, x.shape), np.float64
  )
  keep = np.asarray(jax.random.bernoulli(k_drop, 0.5, x.shape))
  cond = np.where(keep, x * 2.0, 0.0)
  x_hat = _np_denoiser(params, z, cond, cond @ op, t, n)
  per = ((x - x_hat) ** 2).sum(1)
  np.testing.assert_allclose(loss, np.sum(per * w) / 11, rtol=1e-4)
  # Ranking: T reverse steps with the noise-decay correction.
  got = np.asarray(jax.jit(model.score)(params, {'x': x}))
  xd = x.astype(np.float64)
  ax = xd @ op
  z = flt(xd, ax, 3)
  for step in (3, 2, 1):
    tt = np.full(12, step)
    x_hat = _np_denoiser(params, z, xd, ax, tt, n)
    a_hat = x_hat @ op
    z = flt(x_hat, a_hat, step - 1) + 0.5 * (z - flt(x_hat, a_hat, step))
  np.testing.assert_allclose(got, z, rtol=1e-4, atol=1e-5)
