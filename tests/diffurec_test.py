"""DiffuRec: loss against a float64 CE, batch-independent scores, quirks."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from configs import diffurec as diffurec_config
from jaxrec.data import batching, types
from jaxrec.diffusion import schedules
from jaxrec.models import diffurec


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
  params = model.init(jax.random.key(0), batch)
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
  params = model.init(jax.random.key(0), batch)
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


def test_query_mask_quirk_changes_numbers_only_with_padding():
  key, query = _model(), _model(mask_axis='query')
  batch = _batch()
  params = key.init(jax.random.key(0), batch)
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
    params = model.init(jax.random.key(0), batch)
    loss = self.variant(lambda p, b, r: model.loss(p, b, r, 0)[0])
    got = loss(params, batch, jax.random.key(1))
    want = jax.jit(lambda p, b, r: model.loss(p, b, r, 0)[0])(
      params, batch, jax.random.key(1)
    )
    np.testing.assert_allclose(got, want, rtol=1e-5)
    chex.assert_tree_all_finite(
      self.variant(lambda p, b: model.score(p, b))(params, batch)
    )
