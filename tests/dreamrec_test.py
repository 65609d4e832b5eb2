"""DreamRec: MSE vs float64, guidance dropout, CFG, batch-free scores."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from configs import dreamrec as dreamrec_config
from jaxrec.data import batching, types
from jaxrec.diffusion import schedules
from jaxrec.models import dreamrec, prefix
from tests import reference


def _model(**overrides):
  c = dreamrec_config.get_config('tiny').model
  c.update({'dropout': 0.0, **overrides})
  return dreamrec.DreamRec(c, 30)


def _batch(n=6, length=6, seed=0):
  rng = np.random.default_rng(seed)
  seq = rng.integers(1, 31, (n, length)).astype(np.int32)
  seq[np.arange(length)[None] < rng.integers(0, length - 1, n)[:, None]] = 0
  return {
    'inputs': seq,
    'targets': rng.integers(1, 31, n).astype(np.int32),
    'weights': np.array([1, 1, 1, 1, 1, 0], np.float32),
    'users': np.arange(n, dtype=np.int32),
  }


def test_loss_is_the_float64_mse_with_guidance_dropout():
  model = _model(guidance_p=0.5)
  batch = _batch()
  params = model.init(jax.random.key(0), batch)
  rng = jax.random.key(7)
  loss, aux = model.loss(params, batch, rng, 0)
  k_t, k_noise, _, k_cfg = jax.random.split(rng, 4)
  steps = model.config.steps
  t = np.asarray(jax.random.randint(k_t, (6,), 0, steps))
  keep = np.asarray(jax.random.uniform(k_cfg, (6, 1)) >= 0.5)
  assert 0 < keep.sum() < 6  # both branches are exercised
  ab = schedules.tables(schedules.betas('exp', steps))['alphas_cumprod'][t]

  def run(net):
    h = net.guidance(batch['inputs'], False)
    h = jnp.where(keep, h, net.null_guidance(6))
    x0 = net.embed_items(batch['targets'])
    noise = jax.random.normal(k_noise, x0.shape)
    x_t = np.sqrt(ab)[:, None] * x0 + np.sqrt(1 - ab)[:, None] * noise
    return net.denoise(x_t.astype(jnp.float32), h, jnp.asarray(t)), x0

  pred, x0 = nn.apply(run, model.net)({'params': params})
  err = ((np.asarray(pred, np.float64) - np.asarray(x0, np.float64)) ** 2).mean(
    1
  )
  w = batch['weights']
  np.testing.assert_allclose(float(loss), (err * w).sum() / w.sum(), rtol=1e-5)
  assert float(aux['count']) == 5


def test_full_guidance_dropout_ignores_the_history():
  model = _model(guidance_p=1.0)
  batch = _batch()
  params = model.init(jax.random.key(0), batch)
  other = {**batch, 'inputs': _batch(seed=1)['inputs']}
  a = model.loss(params, batch, jax.random.key(1), 0)[0]
  b = model.loss(params, other, jax.random.key(1), 0)[0]
  np.testing.assert_allclose(a, b, rtol=1e-6)
  c = _model(guidance_p=0.0).loss(params, other, jax.random.key(1), 0)[0]
  assert not np.allclose(a, c)


def test_guidance_weight_and_batch_free_scores():
  batch = _batch()
  model = _model(guidance_w=2.0)
  params = model.init(jax.random.key(0), batch)
  moved = {**params, 'null_emb': params['null_emb'] + 1.0}
  score = jax.jit(model.score)
  full = np.asarray(score(params, batch))
  assert full.shape == (6, 30) and np.isfinite(full).all()
  assert not np.allclose(score(moved, batch), full)  # w > 0 reads null
  plain = _model(guidance_w=0.0)
  np.testing.assert_allclose(
    plain.score(moved, batch), plain.score(params, batch), rtol=1e-5, atol=1e-5
  )
  order = np.array([5, 2, 0, 4, 1, 3])
  sub = {k: v[order] for k, v in batch.items()}
  np.testing.assert_allclose(
    score(params, sub), full[order], rtol=1e-5, atol=1e-4
  )


def test_user_vectors_are_the_float64_guided_ancestral_loop():
  """The reverse process, written out: T ancestral steps with the
  posterior ('small') variance, each x0 the guided combination
  (1 + w) f(x, t | h) - w f(x, t | null), the posterior in float64."""
  w = 2.0
  model = _model(guidance_w=w)
  batch = _batch()
  params = model.init(jax.random.key(0), batch)
  got = np.asarray(jax.jit(model.user_vectors)(params, batch))

  c = model.config
  seq = jnp.asarray(batch['inputs'])
  b = seq.shape[0]
  draw = prefix.user_normal(jnp.asarray(batch['users']), c.eval_seed)

  def guided(net, x, t):
    x, steps = jnp.asarray(x, jnp.float32), jnp.full(b, t)
    cond = net.denoise(x, net.guidance(seq, False), steps)
    null = net.denoise(x, net.null_guidance(b), steps)
    return cond, null

  def x0_fn(x, t):
    run = functools.partial(guided, x=x, t=t)
    cond, null = nn.apply(run, model.net)({'params': params})
    return (1 + w) * np.asarray(cond, np.float64) - w * np.asarray(null)

  want = reference.ancestral_f64(
    schedules.betas(c.schedule, c.steps),
    draw(c.steps, (c.dim,)),
    x0_fn,
    lambda t: draw(t, (c.dim,)),
    'small',
  )
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_first_events_are_examples_with_an_empty_history():
  part = types.Part.from_events([0, 0, 0, 1, 2, 2], [5, 6, 7, 1, 1, 2], 3)
  ex = batching.PrefixExamples.from_part(part, 2, first_events=True)
  assert batching.PrefixExamples.count(part, True) == len(ex) == 6
  assert ex.users.tolist() == [0, 0, 0, 1, 2, 2]
  assert ex.inputs.tolist() == [[0, 0], [0, 6], [6, 7], [0, 0], [0, 0], [0, 2]]
  assert ex.targets.tolist() == [6, 7, 8, 2, 2, 3]
  # The config's default (the official data) and the model read it.
  assert dreamrec_config.get_config().model.empty_history
  split = types.Split('s', 'sequential', 3, 10, part, _empty(3), _empty(3))
  assert _model().train_size(split) == 6
  assert _model(empty_history=False).train_size(split) == 3
  # An all-padding history trains: loss and gradients finite.
  batch = _batch()
  batch['inputs'][:2] = 0
  model = _model()
  params = jax.jit(model.init)(jax.random.key(0), batch)
  (loss, _), grads = jax.value_and_grad(model.loss, has_aux=True)(
    params, batch, jax.random.key(3), 0
  )
  assert np.isfinite(float(loss))
  assert all(np.isfinite(g).all() for g in jax.tree.leaves(grads))


def _empty(n_users):
  return types.Part.from_events(np.zeros(0, int), np.zeros(0, int), n_users)


def _ln(x, p, eps=1e-5):
  mu = x.mean(-1, keepdims=True)
  var = ((x - mu) ** 2).mean(-1, keepdims=True)
  return (x - mu) / np.sqrt(var + eps) * p['scale'] + p['bias']


def _official_guidance_f64(params, seq, heads):
  """The official Tenc history encoder in float64, written from its
  equations: positions from the oldest item, LN'd queries against raw
  keys/values, logits over the whole width, causal and key-padding masks,
  residual to the queries, width-d ReLU feed-forward with a post-LN
  residual, padding zeroed, a final LN, the last column read."""
  f = lambda t: np.asarray(t, np.float64)
  p = jax.tree.map(f, params)
  b, length = seq.shape
  valid = seq > 0
  start = length - valid.sum(1)
  x = np.zeros((b, length, p['pos_emb'].shape[1]))
  for i in range(b):
    for c in range(start[i], length):
      x[i, c] = (
        p['item_emb']['embedding'][seq[i, c]] + p['pos_emb'][c - start[i]]
      )
  blk = p['layers_0']
  lin = lambda h, name: h @ blk[name]['kernel'] + blk[name]['bias']
  d = x.shape[-1]
  queries = _ln(x, blk['ln_1'])
  q, k, v = lin(queries, 'query'), lin(x, 'key'), lin(x, 'value')
  out = np.zeros_like(x)
  w = d // heads
  for i in range(b):
    for h in range(heads):
      s = slice(h * w, (h + 1) * w)
      logits = q[i, :, s] @ k[i, :, s].T / np.sqrt(d)
      ok = np.tril(np.ones((length, length), bool)) & valid[i][None]
      logits = np.where(ok, logits, -(2.0**32) + 1)
      e = np.exp(logits - logits.max(-1, keepdims=True))
      out[i, :, s] = (e / e.sum(-1, keepdims=True)) @ v[i, :, s]
  hid = _ln(out + queries, blk['ln_2'])
  ffn = lin(np.maximum(lin(hid, 'ffn_1'), 0), 'ffn_2')
  y = _ln(ffn + hid, blk['ffn_norm']) * valid[..., None]
  return _ln(y, p['norm'])[:, -1]


def test_official_encoder_is_the_float64_tenc():
  model = _model(heads=2)
  assert model.net.encoder == 'official' and model.net.param_init == 'official'
  batch = _batch(n=8)
  batch['inputs'][1] = 0  # an empty history
  batch['inputs'][2, :-1] = 0  # one item
  batch['weights'] = np.ones(8, np.float32)
  batch['targets'] = np.ones(8, np.int32)
  params = jax.jit(model.init)(jax.random.key(0), batch)
  guide = lambda seq: model.net.apply(
    {'params': params}, jnp.asarray(seq), False, method='guidance'
  )
  got = np.asarray(guide(batch['inputs']))
  want = _official_guidance_f64(params, batch['inputs'], 2)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
  # The empty history reads the padding column: the final LayerNorm's bias.
  np.testing.assert_allclose(got[1], params['norm']['bias'], atol=1e-6)
  # Positions count from the oldest item, so the left padding (trimmed at
  # ranking) does not move h.
  seq = batch['inputs']
  short = seq[:, 2:]
  keep = (seq[:, :2] == 0).all(1)
  assert keep.sum() >= 3
  np.testing.assert_allclose(
    np.asarray(guide(short))[keep], got[keep], rtol=1e-5, atol=1e-5
  )


def test_official_init_and_encoder_keys():
  model = _model()
  params = jax.jit(model.init)(jax.random.key(0), _batch())
  d = model.config.dim
  den = params['denoiser']
  bound = 1 / np.sqrt(3 * d)  # nn.Linear(3d, d)
  for leaf in (den['kernel'], den['bias']):
    assert 0.8 * bound < np.abs(leaf).max() <= bound
  assert 0.7 < np.std(params['pos_emb']) < 1.3  # nn.Embedding: N(0, 1)
  flax = _model(init='flax', encoder='prenorm')
  p2 = jax.jit(flax.init)(jax.random.key(0), _batch())
  assert np.all(p2['denoiser']['bias'] == 0)
  assert np.std(p2['pos_emb']) < 0.05
  # Runs saved before the keys read as jaxrec's encoder and Flax's init.
  old = dreamrec_config.get_config('tiny').model
  del old['encoder'], old['init']
  net = dreamrec.DreamRec(old, 30).net
  assert (net.encoder, net.param_init) == ('prenorm', 'flax')
  for bad, key in (
    ({'blocks': 2}, 'model.blocks=2'),
    ({'encoder': 'post'}, 'model.encoder'),
  ):
    try:
      jax.jit(_model(**bad).init)(jax.random.key(0), _batch())
    except ValueError as e:
      assert key in str(e)
    else:
      raise AssertionError(f'{bad} accepted')


def test_quirks_padding_row_ranked_and_dropout_at_ranking():
  batch = _batch()
  model = _model(padding_item=True)
  params = jax.jit(model.init)(jax.random.key(0), batch)
  assert model.phantom_items == 1 and _model().phantom_items == 0
  scores = np.asarray(jax.jit(model.score)(params, batch))
  x0 = np.asarray(jax.jit(model.user_vectors)(params, batch), np.float64)
  table = np.asarray(params['item_emb']['embedding'], np.float64)
  assert scores.shape == (6, 31)
  # Real items 1..30, then the padding row (row 0, never trained).
  np.testing.assert_allclose(scores[:, -1], x0 @ table[0], rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(
    scores[:, :-1], x0 @ table[1:].T, rtol=1e-4, atol=1e-4
  )
  # Dropout at ranking: other scores, the same on every call, and still
  # per user (a reordered batch gives each user the same scores).
  plain = jax.jit(_model(dropout=0.3).score)
  quirk = _model(dropout=0.3, eval_dropout=True)
  qscore = jax.jit(quirk.score)
  full = np.asarray(qscore(params, batch))
  assert not np.allclose(full, plain(params, batch), atol=1e-3)
  np.testing.assert_array_equal(full, qscore(params, batch))
  order = np.array([3, 0, 5, 1, 4, 2])
  sub = {k: v[order] for k, v in batch.items()}
  np.testing.assert_allclose(
    qscore(params, sub), full[order], rtol=1e-5, atol=1e-4
  )
  # With a rate of 0 the quirk changes nothing.
  np.testing.assert_allclose(
    _model(eval_dropout=True).score(params, batch),
    _model().score(params, batch),
    rtol=1e-5,
    atol=1e-5,
  )
  assert dreamrec.DreamRec.QUIRKS == ('padding_item', 'eval_dropout')
