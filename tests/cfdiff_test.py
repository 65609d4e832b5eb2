"""CF-Diff: the multi-hop rows and CAM-AE against float64 NumPy, ranking
that does not depend on the batch, and a tiny end-to-end run."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import cfdiff as cfdiff_config
from jaxrec.data import synthetic
from jaxrec.models import cfdiff
from jaxrec.nn import dropout
from jaxrec.train import loop


@pytest.fixture(scope='module')
def split():
  return synthetic.clustered_split(n_users=40, n_items=25, per_user=4)


def _model(split, **model):
  c = cfdiff_config.get_config('dataset=synthetic,tiny').model
  c.update(model)
  return cfdiff.CFDiff(c, split.n_items).bind(split)


def test_multi_hop_rows_match_numpy(split):
  x = split.train.to_csr(split.n_items).toarray() > 0
  n_users = x.shape[0]
  users = np.array([3, 0, 17, 3])
  got = _model(split).hops.rows(users)
  deg = x.sum(0)
  for row, u in zip(got, users, strict=True):
    c2 = np.where(x[u], deg / n_users, 0.0)
    # Users two hops away: another user sharing one of u's train items.
    near = [v for v in range(n_users) if v != u and (x[v] & x[u]).any()]
    c3 = x[near].sum(0) / n_users
    # Exact: the counts are integers, divided in float64 as here.
    want = np.concatenate([c2, c3]).astype(np.float32)
    np.testing.assert_array_equal(row, want)
  # Row blocks on threads: the one-block product's rows, bit for bit.
  for threads in (1, 3, 7):
    hops = cfdiff.MultiHop.from_part(split.train, split.n_items, threads)
    assert len(hops.counts) == threads
    np.testing.assert_array_equal(hops.rows(users), got)


def _np_cam_ae(p, x, hops, t, c, n):
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), p)
  lin = lambda h, name: h @ p[name]['kernel'] + p[name]['bias']
  half = c.emb_size // 2
  ang = t[:, None] * 10000.0 ** (-np.arange(half) / half)
  emb = lin(np.concatenate([np.cos(ang), np.sin(ang)], 1), 'Dense_1')

  def tokens(v, name):
    v = np.concatenate([lin(v, 'Dense_0'), emb], 1)
    return v[..., None] * p[name]['kernel'][0] + p[name]['bias']

  def attend(q, kv, name):
    a = p[name]
    d, heads = c.d_model, c.heads
    proj = lambda h, j: (
      h @ a['in_kernel'][:, j * d : (j + 1) * d]
      + a['in_bias'][j * d : (j + 1) * d]
    )
    out = np.zeros(q.shape)
    for b in range(q.shape[0]):
      qq, kk, vv = proj(q[b], 0), proj(kv[b], 1), proj(kv[b], 2)
      for h in range(heads):
        s = slice(h * d // heads, (h + 1) * d // heads)
        logits = qq[:, s] @ kk[:, s].T / np.sqrt(d // heads)
        w = np.exp(logits - logits.max(1, keepdims=True))
        out[b][:, s] = (w / w.sum(1, keepdims=True)) @ vv[:, s]
    out = out @ a['Dense_0']['kernel'] + a['Dense_0']['bias']
    return out / np.linalg.norm(out, axis=1, keepdims=True)  # over tokens

  h0 = tokens(x, 'Dense_2')
  branches = []
  for q, r in (
    (tokens(hops[:, :n], 'Dense_3'), 0.15),
    (tokens(hops[:, n:], 'Dense_4'), 0.5),
  ):
    h = h0
    for i in range(c.layers):
      h = lin(h + r * attend(q, h, f'CrossAttention_{i}'), f'Dense_{5 + i}')
      h = np.tanh(h) if i < c.layers - 1 else h
    branches.append(h)
  h = 0.9 * branches[0] + 0.1 * branches[1]
  return lin(np.tanh(lin(h, 'Dense_7')[..., 0]), 'Dense_8')


def test_cam_ae_matches_numpy(split):
  model = _model(split)
  c, n = model.config, split.n_items
  users = np.arange(6)
  batch = model.make_batch(split.train, users)
  params = model.init(jax.random.key(0), batch)
  x = np.asarray(batch['x'], np.float64) + 0.1 * np.random.default_rng(
    0
  ).normal(size=batch['x'].shape)
  t = np.array([0, 1, 4, 2, 3, 0])
  got = model.net.apply({'params': params}, x, t, False, batch['hops'])
  want = _np_cam_ae(params, x, batch['hops'].astype(np.float64), t, c, n)
  np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-5)
  # Attention in blocks of 5 examples (6 = one padded block) is the same.
  net5 = _model(split, attn_block=5).net
  got5 = net5.apply({'params': params}, x, t, False, batch['hops'])
  np.testing.assert_allclose(got5, got, rtol=1e-5, atol=1e-6)


def _np_attention(q, k, v, masks, scale):
  """float64 NumPy: dropout(softmax(q k^T / sqrt(c))) v, `masks` given."""
  logits = np.einsum('bhqc,bhkc->bhqk', q, k) / np.sqrt(q.shape[-1])
  w = np.exp(logits - logits.max(-1, keepdims=True))
  w = w / w.sum(-1, keepdims=True)
  return np.einsum('bhqk,bhkc->bhqc', np.where(masks, w * scale, 0.0), v)


def test_blocked_attention_and_its_gradient_match_numpy():
  # 5 examples in blocks of 2 (one padded), dropout 0.5 on the weights.
  rng = np.random.default_rng(0)
  q, k, v = (rng.normal(size=(5, 2, 6, 4)) for _ in range(3))
  key = jax.random.key(7)
  keys = jax.random.split(key, 3)
  masks = np.concatenate(
    [dropout.keep_mask(kb, 0.5, (2, 2, 6, 6), 1) for kb in keys]
  )[:5]
  f = lambda q, k, v: cfdiff._blocked_attention(q, k, v, 0.5, key, 2)
  args = [jnp.asarray(a, jnp.float32) for a in (q, k, v)]
  np.testing.assert_allclose(
    f(*args), _np_attention(q, k, v, masks, 2.0), rtol=1e-5, atol=1e-6
  )
  # The gradient of <out, g> against central differences in float64.
  g = rng.normal(size=q.shape)
  loss = lambda *a: float(np.sum(_np_attention(*a, masks, 2.0) * g))
  grads = jax.grad(lambda *a: jnp.sum(f(*a) * g), argnums=(0, 1, 2))(*args)
  for i, (a, got) in enumerate(zip((q, k, v), grads, strict=True)):
    want = np.zeros_like(a)
    for j in np.ndindex(a.shape):
      hi, lo = [x.copy() for x in (q, k, v)], [x.copy() for x in (q, k, v)]
      hi[i][j] += 1e-6
      lo[i][j] -= 1e-6
      want[j] = (loss(*hi) - loss(*lo)) / 2e-6
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
  # Without a key: no dropout, and the same gradient law.
  plain = cfdiff._blocked_attention(*args, 0.5, None, 2)
  ones = np.ones_like(masks)
  np.testing.assert_allclose(
    plain, _np_attention(q, k, v, ones, 1.0), rtol=1e-5, atol=1e-6
  )

  def autodiff(q, k, v):  # jax's own gradient of the same formula
    w = jax.nn.softmax(jnp.einsum('bhqc,bhkc->bhqk', q, k) / 2.0, -1)
    return jnp.sum(jnp.einsum('bhqk,bhkc->bhqc', w, v) * g)

  got = jax.grad(
    lambda *a: jnp.sum(cfdiff._blocked_attention(*a, 0.5, None, 2) * g),
    argnums=(0, 1, 2),
  )(*args)
  want = jax.grad(autodiff, argnums=(0, 1, 2))(*args)
  for a, b in zip(got, want, strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_ranking_ignores_batch_companions_and_jit(split):
  model = _model(split, sampling_steps=2)
  batch = model.make_batch(split.train, np.arange(8))
  params = model.init(jax.random.key(1), batch)
  whole = np.asarray(jax.jit(model.score)(params, batch))
  part = model.score(params, model.make_batch(split.train, np.array([5, 2])))
  np.testing.assert_allclose(whole[[5, 2]], part, rtol=1e-5, atol=1e-6)
  assert np.isfinite(whole).all()


def test_tiny_run_and_bad_config(tmp_path, split):
  c = cfdiff_config.get_config('dataset=synthetic,tiny')
  c.train.update(epochs=2, eval_every=2)
  results = loop.train_and_evaluate(c, tmp_path, split=split)
  assert np.isfinite(results['test']['metrics']['recall@20'])
  assert results['traces']['train_step'] == 1
  with pytest.raises(ValueError, match='model.d_model=6'):
    _model(split, d_model=6, heads=4)
