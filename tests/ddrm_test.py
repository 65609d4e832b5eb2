"""DDRM: its loss and its ranking process against float64 NumPy; the
backbone stays what pre-training selected."""

import jax
import numpy as np
import pytest
import diffrec_test

from configs import ddrm as ddrm_config
from jaxrec.data import batching, synthetic
from jaxrec.models import ddrm, lightgcn
from jaxrec.train import checkpoint, fit_linear, loop


def _model(split, **model):
  c = ddrm_config.get_config('dataset=synthetic,tiny')
  c.model.update(dropout=0.0, **model)
  return ddrm.DDRM(c.model, split.n_items).bind(split)


def _np_tables(c):
  var = np.linspace(
    c.noise_scale * c.noise_min, c.noise_scale * c.noise_max, c.steps
  )
  ab = 1.0 - var
  betas = np.append(1.0 - ab[0], 1.0 - ab[1:] / ab[:-1])
  betas[0] = c.first_beta
  ab = np.cumprod(1.0 - betas)
  ab_prev = np.append(1.0, ab[:-1])
  coef1 = betas * np.sqrt(ab_prev) / (1 - ab)
  coef2 = (1 - ab_prev) * np.sqrt(1 - betas) / (1 - ab)
  return ab, coef1, coef2


def _np_net(params, x, t, cond, emb_size, act):
  """float64 official DNN with the condition after the time embedding."""
  f = {'sigmoid': lambda v: 1 / (1 + np.exp(-v)), 'tanh': np.tanh}[act]
  return diffrec_test._np_forward(params, x, t, emb_size, cond, f)


def _np_backbone(model, params, split):
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
  e = np.concatenate([p['user_emb'], p['item_emb']])
  k = model.config.backbone_layers
  if k:
    a = lightgcn.Graph.build(split.train, split.n_items).dense()
    total, layer = e.copy(), e
    for _ in range(k):
      layer = a @ layer
      total += layer
    e = total / (k + 1)
  return np.split(e, [split.n_users])


@pytest.mark.parametrize('layers', [0, 2])
def test_loss_matches_numpy_from_the_same_draws(layers):
  split = synthetic.clustered_split(n_users=16, n_items=12, per_user=5)
  model = _model(split, backbone_layers=layers, beta=1.0, alpha=0.4)
  c = model.config
  raw = model.init(jax.random.key(0), None)
  params = model.from_pretrained(raw)  # the rows propagated once
  batch = {
    'users': np.array([0, 5, 9, 15, 2], np.int32),
    'pos': np.array([1, 3, 11, 0, 7], np.int32),
    'neg': np.array([4, 2, 5, 9, 1], np.int32),
    'weights': np.array([1, 1, 1, 1, 0], np.float32),
  }
  key = jax.random.key(7)
  loss, aux = jax.jit(model.loss)(params, batch, key, 0)
  k_t, k_u, k_p, _, _ = jax.random.split(key, 5)
  t = np.asarray(jax.random.randint(k_t, (5,), 0, c.steps))
  z_u = np.asarray(jax.random.normal(k_u, (5, c.dim)), np.float64)
  z_p = np.asarray(jax.random.normal(k_p, (5, c.dim)), np.float64)
  users, items = _np_backbone(model, raw, split)
  u0, p0 = users[batch['users']], items[batch['pos']]
  n0 = items[batch['neg']]
  ab, _, _ = _np_tables(c)
  s, r = np.sqrt(ab[t])[:, None], np.sqrt(1 - ab[t])[:, None]
  net = lambda name, x, cond: _np_net(
    params[name], x, t, cond, c.emb_size, c.act
  )
  u_hat = net('user_den', s * u0 + r * z_u, p0)
  p_hat = net('item_den', s * p0 + r * z_p, u0)
  s_pos = np.sum(u_hat * p_hat, 1)
  bpr = np.log1p(np.exp(np.sum(u_hat * n0, 1) - s_pos))
  recon = (np.mean((u0 - u_hat) ** 2, 1) + np.mean((p0 - p_hat) ** 2, 1)) / 2
  weight = (1 / (1 + np.exp(-s_pos))) ** c.beta
  per = (0.6 * bpr + 0.4 * recon) * weight
  w = batch['weights']
  np.testing.assert_allclose(loss, np.sum(per * w) / 4, rtol=1e-4)
  np.testing.assert_allclose(aux['bpr_sum'], np.sum(bpr * w), rtol=1e-4)
  # The backbone gets no gradient.
  grads = jax.grad(lambda p: model.loss(p, batch, key, 0)[0])(params)
  assert not np.any(grads['user_emb']) and not np.any(grads['item_emb'])
  assert np.any(grads['user_den']['Dense_1']['kernel'])


def test_ranking_follows_the_posterior_means_past_the_last_step():
  split = synthetic.clustered_split(n_users=16, n_items=12, per_user=5)
  # S = 6 > T = 4: the official lookup reads the tables at T - 1 for t >= T.
  model = _model(split, backbone_layers=1, steps=4, sampling_steps=6)
  c = model.config
  raw = model.init(jax.random.key(1), None)
  params = model.from_pretrained(raw)
  users = np.arange(10)
  batch = model.make_batch(split.train, users)
  got = np.asarray(jax.jit(model.score)(params, batch))
  emb_u, emb_i = _np_backbone(model, raw, split)
  rows = batching.dense_rows(split.train, users, split.n_items)
  mean = rows @ emb_i / np.maximum(rows.sum(1, keepdims=True), 1)
  ab, coef1, coef2 = _np_tables(c)
  draw = ddrm.prefix.user_normal(users, c.eval_seed)
  z = np.asarray(draw(c.sampling_steps, (c.dim,)), np.float64)
  x = np.sqrt(ab[-1]) * mean + np.sqrt(1 - ab[-1]) * z
  for t in range(5, -1, -1):
    tt = np.full(len(users), t)
    f = _np_net(params['item_den'], x, tt, emb_u[users], c.emb_size, c.act)
    k = min(t, 3)
    x = coef1[k] * f + coef2[k] * x
  np.testing.assert_allclose(got, x @ emb_i.T, rtol=1e-4, atol=1e-5)
  # A user's scores do not depend on its batch.
  other = model.make_batch(split.train, users[::-1])
  flipped = np.asarray(jax.jit(model.score)(params, other))[::-1]
  np.testing.assert_allclose(flipped, got, rtol=1e-5, atol=1e-6)


def test_training_keeps_the_pretrained_backbone(tmp_path):
  split = synthetic.clustered_split(n_users=60, n_items=30)
  config = ddrm_config.get_config('dataset=synthetic,tiny')
  config.train.update(steps=6, eval_every=3)
  config.pretrain.config.train.update(steps=6, eval_every=3)
  results = loop.train_and_evaluate(config, tmp_path, split=split)
  assert np.isfinite(results['test']['metrics']['recall@10'])

  def best(c, workdir):
    setup = loop._Setup.build(c, split)
    ckpts = checkpoint.Checkpoints(workdir / 'checkpoints')
    state, _ = ckpts.restore_best(setup.abstract)
    ckpts.close()
    return state.params

  backbone = best(config.pretrain.config, tmp_path / 'pretrain')
  after = best(config, tmp_path)
  for name in ('user_emb', 'item_emb'):
    np.testing.assert_array_equal(after[name], backbone[name])


def test_bad_settings_are_refused_by_name():
  split = synthetic.clustered_split(n_users=16, n_items=12, per_user=5)
  with pytest.raises(ValueError, match="act='gelu'"):
    _model(split, act='gelu')
  with pytest.raises(ValueError, match='alpha=1.5'):
    _model(split, alpha=1.5)
  with pytest.raises(KeyError, match="backbone='sgl'"):
    ddrm_config.get_config('backbone=sgl')
  with pytest.raises(ValueError, match='backbone=mf only'):
    ddrm_config.get_config('backbone=lightgcn,official_mf_propagation')


def test_official_validation_flag_validates_a_fixed_half():
  official = ddrm_config.get_config('tiny,official_validation')
  assert ddrm_config.get_config('tiny').eval.select_fraction == 1.0
  split = synthetic.clustered_split(n_users=16, n_items=12, per_user=5)
  rule = fit_linear.make_protocol(split, official.eval).record()['protocol']
  n = int((split.valid.lengths > 0).sum())
  assert rule['valid_users'].startswith(f'{n // 2} of the {n} users')
  assert 'random.Random(42)' in rule['valid_users']
