"""ADRec: loss against float64, key/value reuse, quirks, the three stages."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from configs import adrec as adrec_config
from jaxrec.data import synthetic
from jaxrec.diffusion import schedules, timesteps
from jaxrec.models import adrec
from jaxrec.nn import transformer
from jaxrec.train import checkpoint, loop, optim, pcgrad

N_ITEMS = 30


def _model(**overrides):
  c = adrec_config.get_config('tiny').model
  c.update({'dropout': 0.0, 'emb_dropout': 0.0, **overrides})
  return adrec.ADRec(c, N_ITEMS)


def _batch(model, n=6, length=8, seed=0):
  """A train batch built by the model's own host side from random users."""
  rng = np.random.default_rng(seed)
  seq = rng.integers(1, N_ITEMS + 1, (n, length + 1)).astype(np.int32)
  seq[np.arange(length + 1)[None] < rng.integers(0, length - 1, n)[:, None]] = 0
  inputs, shifted = seq[:, :-1], np.where(seq[:, :-1] > 0, seq[:, 1:], 0)
  ex = adrec.batching.NextItemExamples(np.arange(n), inputs, shifted)
  data = adrec._TrainData(ex, budget=n * length, groups=1)
  weights = np.ones(n, np.float32)
  weights[-1] = 0.0  # the padded tail of an epoch's last batch
  batch = model.train_batch(data, np.arange(n), weights)
  batch['users'] = np.arange(n, dtype=np.int32)
  return batch


@pytest.mark.parametrize('padding_item', [False, True])
def test_task_losses_are_the_float64_ce_and_mse(padding_item):
  model = _model(padding_item=padding_item)
  batch = _batch(model)
  params = jax.jit(model.init)(jax.random.key(0), batch)
  rng = jax.random.key(5)
  (ce, mse), _ = model.task_losses(params, batch, rng, 0)
  loss, _ = model.loss(params, batch, rng, 0)
  np.testing.assert_allclose(loss, (ce + mse) / 2, rtol=1e-6)

  # x0_hat with the same draws, computed here; the losses in float64.
  seq, shifted = batch['inputs'], batch['shifted']
  sched = model.schedule
  k_t, k_noise, _ = jax.random.split(rng, 3)
  t, _ = timesteps.uniform(k_t, seq.shape, sched.steps)
  t = np.where(seq > 0, np.asarray(t), 0)
  table = np.asarray(params['item_emb']['embedding'], np.float64)
  x0 = table[shifted]
  noise = np.asarray(jax.random.normal(k_noise, x0.shape), np.float64)
  ab = np.asarray(
    schedules.tables(schedules.betas('trunc_lin', sched.steps))[
      'alphas_cumprod'
    ]
  )[t][..., None]
  x_t = np.where(
    (seq > 0)[..., None], np.sqrt(ab) * x0 + np.sqrt(1 - ab) * noise, x0
  )

  def run(net):
    c = net.encode(seq, False)
    return net.denoise(c, jnp.asarray(x_t, jnp.float32), t, seq, False)

  x0_hat = np.asarray(nn.apply(run, model.net)({'params': params}), np.float64)
  real = (shifted > 0) & (batch_weights(batch) > 0)[:, None]
  logits = x0_hat @ (table if padding_item else table[1:]).T
  labels = shifted if padding_item else shifted - 1
  logz = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1))
  logz += logits.max(-1)
  token_ce = (
    logz
    - np.take_along_axis(logits, np.maximum(labels, 0)[..., None], -1)[..., 0]
  )
  want_ce = token_ce[real].mean()
  per_seq = [
    ((x0_hat[b] - x0[b]) ** 2).mean(-1)[real[b]].mean()
    for b in range(len(seq))
    if real[b].any()
  ]
  np.testing.assert_allclose(ce, want_ce, rtol=1e-5)
  np.testing.assert_allclose(mse, np.mean(per_seq), rtol=1e-5)


def batch_weights(batch):
  return (batch['shifted'] > 0).any(1).astype(np.float32)


@pytest.mark.parametrize('mask_axis', ['key', 'query'])
@pytest.mark.parametrize('padding_item', [False, True])
def test_kv_reuse_gives_the_scores_of_full_recomputation(
  mask_axis, padding_item
):
  model = _model(mask_axis=mask_axis, padding_item=padding_item)
  batch = _batch(model, n=8)
  params = jax.jit(model.init)(jax.random.key(1), batch)
  # Random (not just initial) weights so that every path matters.
  params = jax.tree.map(
    lambda p: p + 0.3 * jax.random.normal(jax.random.key(p.size), p.shape),
    params,
  )
  seq, users = batch['inputs'], batch['users']
  reuse = jax.jit(lambda p: model.reverse(p, seq, users, kv_reuse=True))(params)
  full = jax.jit(lambda p: model.reverse(p, seq, users, kv_reuse=False))(params)
  np.testing.assert_allclose(reuse, full, rtol=1e-5, atol=1e-5)
  scores = model.score(params, batch)
  assert scores.shape == (8, N_ITEMS + padding_item)
  # A user's scores do not depend on the batch it is ranked in.
  half = {k: v[:4] for k, v in batch.items()}
  np.testing.assert_allclose(
    model.score(params, half), scores[:4], rtol=1e-5, atol=1e-5
  )


def test_query_mask_flattens_padded_queries_over_their_causal_keys():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(1, 5, 4)).astype(np.float32)
  valid = np.array([[False, False, True, True, True]])
  attn = transformer.SelfAttention(heads=1, dropout=0.0)
  mask = transformer.attention_mask(jnp.asarray(valid), True, 'query')
  params = attn.init(jax.random.key(0), x, mask, False)
  out, (_, v) = attn.apply(params, x, mask, False)
  p = params['params']
  v = np.asarray(v, np.float64)[0, 0]  # head-major [B, H, L, D] -> [L, D]
  w_out = np.asarray(p['out']['kernel'], np.float64)[0]
  b_out = np.asarray(p['out']['bias'], np.float64)
  for i in (0, 1):  # padded rows: the mean of the values at j <= i
    want = v[: i + 1].mean(0) @ w_out + b_out
    np.testing.assert_allclose(out[0, i], want, rtol=1e-5, atol=1e-6)
  # With the key axis, a real row ignores the padded keys.
  mask_key = transformer.attention_mask(jnp.asarray(valid), True, 'key')
  out_key, _ = attn.apply(params, x, mask_key, False)
  trimmed, _ = attn.apply(
    params,
    x[:, 2:],
    transformer.attention_mask(jnp.ones((1, 3), bool), True),
    False,
  )
  np.testing.assert_allclose(out_key[0, 2:], trimmed[0], rtol=1e-5, atol=1e-6)
  assert not np.allclose(out[0, 2:], trimmed[0], atol=1e-4)


def test_pcgrad_step_is_the_mean_of_projected_task_gradients():
  model = _model(dropout=0.1)
  batch = _batch(model)
  params = jax.jit(model.init)(jax.random.key(0), batch)
  rng = jax.random.key(2)
  loss, _, grads = loop._task_gradients(model, params, batch, rng, 0)
  per_task = [
    jax.grad(lambda p, i=i: model.task_losses(p, batch, rng, 0)[0][i])(params)
    for i in range(2)
  ]
  stacked = jax.tree.map(lambda *g: jnp.stack(g), *per_task)
  want = pcgrad.combine(stacked, jax.random.fold_in(rng, 0x9C))
  for g, w in zip(jax.tree.leaves(grads), jax.tree.leaves(want), strict=True):
    np.testing.assert_allclose(g, w / 2, rtol=1e-4, atol=1e-7)
  losses, _ = model.task_losses(params, batch, rng, 0)
  np.testing.assert_allclose(loss, losses.mean(), rtol=1e-6)


def test_adam_weight_decay_is_coupled_l2():
  c = optim.default_config()
  c.update(weight_decay=0.1, b2=0.999)
  tx = optim.make(c, 10)
  p = {'w': jnp.array([1.0, -2.0, 3.0])}
  g = {'w': jnp.array([0.5, 0.0, -1.0])}
  upd, _ = tx.update(g, tx.init(p), p)
  eff = np.array([0.5, 0.0, -1.0]) + 0.1 * np.array([1.0, -2.0, 3.0])
  # Adam's first step: -lr * m / (sqrt(v) + eps) with bias correction.
  np.testing.assert_allclose(
    upd['w'], -1e-3 * eff / (np.abs(eff) + 1e-8), rtol=1e-5
  )


@pytest.mark.parametrize('leaky', [False, True])
def test_stages_pretrain_then_freeze_then_train(tmp_path, leaky):
  split = synthetic.clustered_split(kind='sequential')
  c = adrec_config.get_config('dataset=synthetic-seq,tiny')
  c.model.leaky_freeze = leaky
  setup = loop._Setup.build(c, split)
  c.train.update(steps=setup.per_epoch, eval_every=setup.per_epoch)
  loop.train_and_evaluate(c, tmp_path, split=split)

  pre_run = loop._Setup.build(c.pretrain.config, split)
  ckpts = checkpoint.Checkpoints(tmp_path / 'pretrain' / 'checkpoints')
  pre, _ = ckpts.restore_best(pre_run.abstract)
  ckpts.close()
  ckpts = checkpoint.Checkpoints(tmp_path / 'checkpoints')
  after, _ = ckpts.restore_latest(setup.abstract)
  ckpts.close()
  emb_pre = np.asarray(pre.params['item_emb']['embedding'])
  emb_after = np.asarray(after.params['item_emb']['embedding'])
  init = jax.jit(setup.init_state)().params
  # The pretrained embeddings came in (they are not the model's own init).
  assert not np.allclose(emb_pre, init['item_emb']['embedding'])
  if leaky:  # frozen, but coupled weight decay still shrank them
    assert not np.allclose(emb_after, emb_pre)
    assert np.abs(emb_after).sum() < np.abs(emb_pre).sum()
  else:  # frozen through the whole first epoch
    np.testing.assert_array_equal(emb_after, emb_pre)
  assert not np.allclose(
    after.params['denoiser_0']['Dense_0']['kernel'],
    init['denoiser_0']['Dense_0']['kernel'],
  )


def test_pretrain_copy_refuses_a_missing_parameter(tmp_path):
  split = synthetic.clustered_split(kind='sequential')
  c = adrec_config.get_config('dataset=synthetic-seq,tiny')
  c.pretrain.params = ['time_mlp_0']
  c.train.update(steps=2, eval_every=2)
  with pytest.raises(KeyError, match="'time_mlp_0' is not a parameter"):
    loop.train_and_evaluate(c, tmp_path, split=split)


def _packing_run(name, monkeypatch):
  """(packed loss, padded loss) of one batch, with every normal draw zero
  (so both layouts draw the same: none) and dropout off."""
  split = synthetic.clustered_split(kind='sequential')
  c = adrec_config.get_config('dataset=synthetic-seq,tiny')
  if name == 'adrec_pretrain':
    c = c.pretrain.config
  c.model.update(dropout=0.0, emb_dropout=0.0, pack=True, max_len=40)
  if name == 'adrec':
    # Per-token timesteps are one uniform draw of the layout's shape, so
    # the two layouts would draw different t: use a single step (t = 0).
    c.model.steps = 1
  cls = adrec.ADRec if name == 'adrec' else adrec.ADRecPretrain
  model = cls(c.model, split.n_items)
  plan = adrec.batching.BatchPlan(16, seed=0, epochs=2)
  data = model.train_data(split, plan)
  assert 0 < data.rows < 16
  index, weights = adrec.batching.batch_indices(len(data), 16, 0, 1)
  weights[-3:] = 0.0
  packed = model.train_batch(data, index, weights)
  padded_model = cls(
    type(c.model)({**c.model.to_dict(), 'pack': False}), split.n_items
  )
  padded = padded_model.train_batch(
    padded_model.train_data(split, plan), index, weights
  )
  assert 'tokens' in packed and 'inputs' in padded
  params = jax.jit(model.init)(jax.random.key(0), packed)
  monkeypatch.setattr(
    jax.random,
    'normal',
    lambda key, shape, dtype=jnp.float32: jnp.zeros(shape, dtype),
  )
  rng = jax.random.key(7)
  if name == 'adrec':
    return (
      model.task_losses(params, packed, rng, 0)[0],
      padded_model.task_losses(params, padded, rng, 0)[0],
    )
  return model.loss(params, packed, rng, 0)[0], padded_model.loss(
    params, padded, rng, 0
  )[0]


@pytest.mark.parametrize('name', ['adrec', 'adrec_pretrain'])
def test_packed_rows_give_the_padded_losses(name, monkeypatch):
  a, b = _packing_run(name, monkeypatch)
  np.testing.assert_allclose(a, b, rtol=1e-5)
