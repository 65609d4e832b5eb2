"""DiffuRec: loss against a float64 CE, batch-independent scores, quirks."""

import functools
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from configs import diffurec as diffurec_config
from jaxrec.data import batching, types
from jaxrec.diffusion import schedules
from jaxrec.models import diffurec, prefix
from jaxrec.nn import transformer
from tests import reference


def _model(**overrides):
  c = diffurec_config.get_config('tiny').model
  c.update({'dropout': 0.0, 'emb_dropout': 0.0, **overrides})
  return diffurec.DiffuRec(c, 30)


def _batch(n=6, length=8, seed=0):
  rng = np.random.default_rng(seed)
  seq = rng.integers(1, 31, (n, length)).astype(np.int32)
  seq[np.arange(length)[None] < rng.integers(0, length - 1, n)[:, None]] = 0
  return {
    'inputs': seq,
    'targets': rng.integers(1, 31, n).astype(np.int32),
    'weights': np.ones(n, np.float32),
    'users': np.arange(n, dtype=np.int32),
  }


def test_prefix_examples_are_every_prefix():
  part = types.Part.from_events([0, 0, 0, 1, 2, 2], [5, 6, 7, 1, 1, 2], 3)
  ex = batching.PrefixExamples.from_part(part, 2)
  assert batching.PrefixExamples.count(part) == len(ex) == 3
  assert ex.users.tolist() == [0, 0, 2]
  assert ex.inputs.tolist() == [[0, 6], [6, 7], [0, 2]]
  assert ex.targets.tolist() == [7, 8, 3]


@pytest.mark.parametrize('padding_item', [False, True])
def test_loss_is_the_float64_ce_of_the_approximator(padding_item):
  model = _model(padding_item=padding_item)
  batch = _batch()
  params = jax.jit(model.init)(jax.random.key(0), batch)
  rng = jax.random.key(3)
  loss, aux = model.loss(params, batch, rng, 0)
  # Recompute x0_hat with the same draws, then the CE in float64.
  net, sched = model.net, model.schedule
  k_t, k_noise, k_lam, _ = jax.random.split(rng, 4)
  t = jax.random.randint(k_t, (6,), 0, sched.steps)

  def run(net):
    hist = net.encode(batch['inputs'], False)
    x0 = net.embed_items(batch['targets'])
    noise = jax.random.normal(k_noise, x0.shape)
    ab = np.asarray(
      schedules.tables(schedules.betas('trunc_lin', sched.steps))[
        'alphas_cumprod'
      ]
    )[np.asarray(t)][:, None]
    x_t = jnp.sqrt(ab) * x0 + jnp.sqrt(1 - ab) * noise
    lam = jax.random.normal(k_lam, hist.shape)
    return net.denoise(hist, batch['inputs'] > 0, x_t, t, lam, False)

  x0_hat = np.asarray(jax.jit(lambda p: nn_apply(run, net, p))(params))
  table = np.asarray(params['item_emb']['embedding'], np.float64)
  if not padding_item:
    table = table[1:]
  logits = x0_hat.astype(np.float64) @ table.T
  labels = batch['targets'] - (0 if padding_item else 1)
  lse = np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1))
  ce = lse + logits.max(1) - logits[np.arange(6), labels]
  np.testing.assert_allclose(float(loss), ce.mean(), rtol=2e-5)
  assert float(aux['count']) == 6


def nn_apply(fn, net, params):
  return nn.apply(fn, net)({'params': params})


def test_scores_do_not_depend_on_the_batch():
  model = _model()
  batch = _batch()
  params = jax.jit(model.init)(jax.random.key(0), batch)
  score = jax.jit(model.score)
  full = np.asarray(score(params, batch))
  assert full.shape == (6, 30) and np.isfinite(full).all()
  order = np.array([4, 1, 3, 0, 5, 2])
  sub = {k: v[order] for k, v in batch.items()}
  np.testing.assert_allclose(
    score(params, sub), full[order], rtol=1e-5, atol=1e-5
  )
  # Another eval seed draws other noise.
  other = _model(eval_seed=1)
  assert not np.allclose(other.score(params, batch), full)


def test_user_vectors_are_the_float64_ancestral_loop():
  """The reverse process, written out: T ancestral steps with the
  fixed-large variance, each x0 from the approximator with a per-row t
  (the time MLP on every row, as in training), the posterior in float64."""
  model = _model()
  batch = _batch()
  params = jax.jit(model.init)(jax.random.key(0), batch)
  got = np.asarray(jax.jit(model.user_vectors)(params, batch))

  c = model.config
  seq = jnp.asarray(batch['inputs'])
  b, length = seq.shape
  draw = prefix.user_normal(jnp.asarray(batch['users']), c.eval_seed)

  def x0_of(net, x, t):
    lam = draw(c.steps + t, (length, c.dim))[:, ::-1]
    hist = net.encode(seq, False)
    x = jnp.asarray(x, jnp.float32)
    return net.denoise(hist, seq > 0, x, jnp.full(b, t), lam, False)

  want = reference.ancestral_f64(
    schedules.betas(c.schedule, c.steps),
    draw(2 * c.steps, (c.dim,)),
    lambda x, t: nn_apply(
      functools.partial(x0_of, x=x, t=t), model.net, params
    ),
    lambda t: draw(t, (c.dim,)),
    'large',
  )
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_query_mask_quirk_changes_numbers_only_with_padding():
  key, query = _model(), _model(mask_axis='query')
  batch = _batch()
  params = jax.jit(key.init)(jax.random.key(0), batch)
  padded = key.score(params, batch)
  assert not np.allclose(query.score(params, batch), padded, atol=1e-4)
  full = {**batch, 'inputs': np.maximum(batch['inputs'], 1)}
  # padding_item=True adds the padding row as a last, phantom column.
  with_pad = _model(padding_item=True)
  assert with_pad.phantom_items == 1 and key.phantom_items == 0
  scores = with_pad.score(params, batch)
  assert scores.shape == (6, 31)
  np.testing.assert_allclose(scores[:, :30], padded, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(
    query.score(params, full), key.score(params, full), rtol=1e-5, atol=1e-5
  )


class JitTest(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  def test_loss_and_score_jit_equal_plain(self):
    model = _model(dropout=0.1, emb_dropout=0.3)
    batch = _batch()
    params = jax.jit(model.init)(jax.random.key(0), batch)
    loss = self.variant(lambda p, b, r: model.loss(p, b, r, 0)[0])
    got = loss(params, batch, jax.random.key(1))
    want = jax.jit(lambda p, b, r: model.loss(p, b, r, 0)[0])(
      params, batch, jax.random.key(1)
    )
    np.testing.assert_allclose(got, want, rtol=1e-5)
    chex.assert_tree_all_finite(
      self.variant(lambda p, b: model.score(p, b))(params, batch)
    )


def _packing_inputs(groups=1):
  part = types.Part.from_events(
    *np.nonzero(np.random.default_rng(3).random((12, 30)) < 0.3), 12
  )
  model = _model(pack=True)
  plan = batching.BatchPlan(16, seed=0, epochs=3, groups=groups)
  data = model.train_data(
    types.Split(
      name='t',
      kind='sequential',
      n_users=12,
      n_items=30,
      train=part,
      valid=part,
      test=part,
    ),
    plan,
  )
  index, weights = batching.batch_indices(len(data), 16, 0, 1)
  weights[-2:] = 0.0  # as the padded tail of an epoch's last batch
  return model, data, index, weights


@pytest.mark.parametrize('groups', [1, 2])
def test_packed_batch_holds_every_history_once(groups):
  model, data, index, weights = _packing_inputs(groups)
  batch = model.train_batch(data, index, weights)
  inputs = data.examples.inputs[index]
  per = len(index) // groups
  width = inputs.shape[1]
  tokens = batch['tokens'].reshape(groups, -1)
  segments = batch['segments'].reshape(groups, -1)
  assert tokens.shape[1] == data.rows * width < per * width
  for i in range(len(index)):
    g, j = divmod(i, per)
    at = np.flatnonzero(segments[g] == j + 1)
    if weights[i] == 0:
      assert not len(at)
      continue
    real = inputs[i][inputs[i] > 0]
    assert tokens[g, at].tolist() == real.tolist()
    assert at.tolist() == list(range(at[0], at[0] + len(real)))  # one row
    assert at[0] // width == at[-1] // width
    assert batch['last'][g, j] == at[-1]


def test_packed_loss_equals_the_padded_loss(monkeypatch):
  model, data, index, weights = _packing_inputs()
  packed = model.train_batch(data, index, weights)
  padded = {
    'inputs': data.examples.inputs[index],
    'targets': data.examples.targets[index],
    'weights': weights,
  }
  params = jax.jit(model.init)(jax.random.key(0), packed)
  # Zero noise, so both layouts draw the same (none); lambda = its mean.
  monkeypatch.setattr(
    jax.random,
    'normal',
    lambda key, shape, dtype=jnp.float32: jnp.zeros(shape, dtype),
  )
  rng = jax.random.key(4)
  a, _ = model.loss(params, packed, rng, 0)
  b, _ = model.loss(params, padded, rng, 0)
  np.testing.assert_allclose(a, b, rtol=1e-5)
  # And the gradients: the final block's queries at each example's last
  # item, against its own row's keys, train what the padded rows do.
  grad = lambda batch: jax.grad(lambda p: model.loss(p, batch, rng, 0)[0])
  ga, gb = grad(packed)(params), grad(padded)(params)
  jax.tree.map(
    lambda x, y: np.testing.assert_allclose(x, y, rtol=2e-4, atol=1e-6),
    ga,
    gb,
  )
  # The conditioning reaches each example's own positions: a larger lambda
  # changes the loss, identically in both layouts.
  big = _model(pack=True, lambda_uncertainty=0.5)
  a2, _ = big.loss(params, packed, rng, 0)
  b2, _ = big.loss(params, padded, rng, 0)
  np.testing.assert_allclose(a2, b2, rtol=1e-5)
  assert abs(float(a2) - float(a)) > 1e-4


def test_packing_is_off_under_the_query_mask_quirk():
  assert _model(pack=True).packed
  assert not _model(pack=True, mask_axis='query').packed


def test_packed_row_count_is_exact_for_every_batch():
  rng = np.random.default_rng(0)
  for _ in range(200):
    width = int(rng.integers(1, 12))
    lengths = np.minimum(rng.geometric(0.3, int(rng.integers(0, 40))), width)
    row, offset, used = batching.pack_segments(lengths, width)
    hist = np.bincount(lengths, minlength=width + 1)[None]
    assert batching.packed_rows(hist, width)[0] == used
    grid = np.zeros((used, width), int)
    for i, n in enumerate(lengths):
      assert offset[i] + n <= width
      grid[row[i], offset[i] : offset[i] + n] += 1
    assert grid.max(initial=0) <= 1 and grid.sum() == lengths.sum()


@pytest.mark.parametrize('norm_first', [True, False])
@pytest.mark.parametrize('mask_axis', ['key', 'query'])
def test_last_only_block_is_the_full_blocks_last_position(
  norm_first, mask_axis
):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((5, 7, 16)), jnp.float32)
  valid = jnp.asarray(np.arange(7)[None] >= rng.integers(0, 6, 5)[:, None])
  mask = transformer.attention_mask(valid, False, mask_axis)
  block = transformer.Block(2, 0.0, 4, 'gelu', norm_first=norm_first)
  params = block.init(jax.random.key(0), x, mask, False)
  full = block.apply(params, x, mask, False)
  last = block.apply(
    params, x, transformer.last_query_mask(mask), False, last_only=True
  )
  assert last.shape == (5, 1, 16)
  np.testing.assert_allclose(last, full[:, -1:], rtol=1e-5, atol=1e-5)


def test_trimmed_batches_give_the_full_length_user_vectors():
  # No positions and padded keys masked: how far a history is left-padded
  # changes nothing, the lambda draws included (indexed from the end).
  model = _model()
  assert model.trims_padding and not _model(mask_axis='query').trims_padding
  rng = np.random.default_rng(1)
  lengths = np.array([0, 1, 3, 5, 8, 11, 2, 8])
  history = types.Part.from_events(
    np.repeat(np.arange(8), lengths), rng.integers(0, 30, lengths.sum()), 8
  )
  users = np.arange(8)
  need = model.input_lengths(history, users)
  # An empty history is ranked at full length (it attends over padding).
  np.testing.assert_array_equal(need, [8, 1, 3, 5, 8, 8, 2, 8])
  full = model.make_batch(history, users)
  params = jax.jit(model.init)(jax.random.key(0), full)
  vectors = jax.jit(model.user_vectors)
  want = np.asarray(vectors(params, full))
  for length in (2, 3, 5):
    short = users[(need <= length) & (lengths > 0)]
    got = vectors(params, model.make_batch(history, short, length))
    np.testing.assert_allclose(got, want[short], rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match='length=9 > max_len=8'):
    model.make_batch(history, users, 9)


def test_adrec_files_default_to_adrec_training_protocol():
  from configs import adrec as adrec_config

  own = diffurec_config.get_config('dataset=beauty')
  theirs = adrec_config.get_config('dataset=adrec-baby')
  on_adrec = diffurec_config.get_config('dataset=adrec-baby')
  keys = ('weight_decay', 'schedule', 'lr', 'b2')
  assert {k: on_adrec.optim[k] for k in keys} == {
    k: theirs.optim[k] for k in keys
  }
  for k in ('eval_every_epochs', 'patience', 'epochs', 'batch_size'):
    assert on_adrec.train[k] == theirs.train[k], k
  assert (own.optim.schedule, own.train.eval_every_epochs) == ('step', 20)
  assert own.train.patience == 5 and own.optim.weight_decay == 0.0
  # Either protocol on any file; the model is the same.
  mine = diffurec_config.get_config('dataset=adrec-baby,protocol=diffurec')
  assert mine.optim.to_dict() == own.optim.to_dict()
  assert mine.train.to_dict() == own.train.to_dict()
  assert mine.model.to_dict() == on_adrec.model.to_dict()
  other = diffurec_config.get_config('dataset=beauty,protocol=adrec')
  assert other.train.to_dict() == on_adrec.train.to_dict()
  with pytest.raises(ValueError, match="protocol='adrek'"):
    diffurec_config.get_config('dataset=beauty,protocol=adrek')
