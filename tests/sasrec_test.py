"""SASRec: packed CE against a float64 NumPy loss, causality, mask axis."""

import chex
import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np
import pytest

from jaxrec.data import batching, synthetic
from jaxrec.models import sasrec


def _model(mask_axis='key', dropout=0.0, n_items=30):
  config = mlc.ConfigDict(
    dict(
      max_len=6, dim=8, heads=2, blocks=2, dropout=dropout, mask_axis=mask_axis
    )
  )
  return sasrec.SASRec(config, n_items)


def _data(model, groups=1, batch_size=8):
  split = synthetic.clustered_split(
    n_users=20, n_items=model.n_items, per_user=7, kind='sequential'
  )
  plan = batching.BatchPlan(batch_size, seed=0, epochs=2, groups=groups)
  return model.train_data(split, plan)


@pytest.mark.parametrize('groups', [1, 2, 4])
def test_packed_loss_equals_float64_dense_ce(groups):
  model = _model()
  data = _data(model, groups)
  index, weights = batching.batch_indices(len(data), 8, 0, 2)
  batch = model.train_batch(data, index, weights)
  params = model.init(jax.random.key(0), batch)
  loss, aux = model.loss(params, batch, jax.random.key(1), 0)

  net = model.net
  hidden = np.asarray(net.apply({'params': params}, batch['inputs'], False))
  table = np.asarray(
    net.apply({'params': params}, method=sasrec.SASRecNet.item_table)
  )
  logits = hidden.astype(np.float64) @ table.astype(np.float64).T
  targets = data.examples.targets[index] * (weights[:, None] > 0)
  mask = targets > 0
  lse = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1))
  lse += logits.max(-1)
  picked = np.take_along_axis(logits, np.maximum(targets - 1, 0)[..., None], -1)
  ce = (lse - picked[..., 0])[mask]
  assert float(aux['count']) == mask.sum() > 0
  np.testing.assert_allclose(float(loss), ce.mean(), rtol=1e-5)
  np.testing.assert_allclose(float(aux['loss_sum']), ce.sum(), rtol=1e-5)


def test_causal_and_key_mask():
  model = _model()
  seq = jnp.array([[0, 0, 3, 4, 5, 6]])
  params = model.init(jax.random.key(0), {'inputs': seq})
  net = model.net
  run = lambda s, p=params: net.apply({'params': p}, s, False)
  base = run(seq)
  # A later item never changes an earlier position.
  changed = run(seq.at[0, 5].set(9))
  np.testing.assert_allclose(changed[0, :5], base[0, :5], atol=1e-6)
  assert not np.allclose(changed[0, 5], base[0, 5])
  # Padding is masked as a key: its embedding cannot reach real positions.
  emb = params['item_emb']['embedding']
  noisy = {**params, 'item_emb': {'embedding': emb.at[0].set(5.0)}}
  np.testing.assert_allclose(run(seq, noisy)[0, 2:], base[0, 2:], atol=1e-5)


def test_query_mask_quirk_changes_numbers_only_with_padding():
  # With the mask on the query axis (DiffuRec/ADRec), real positions also
  # attend to padded keys; without padding both masks are the same.
  key, query = _model(), _model(mask_axis='query')
  padded = jnp.array([[0, 0, 3, 4, 5, 6]])
  full = jnp.array([[1, 2, 3, 4, 5, 6]])
  params = key.init(jax.random.key(0), {'inputs': padded})
  run = lambda m, s: m.net.apply({'params': params}, s, False)
  np.testing.assert_allclose(run(key, full), run(query, full), atol=1e-6)
  assert not np.allclose(run(key, padded)[0, 2:], run(query, padded)[0, 2:])


class ScoreTest(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  def test_score_is_last_position_dot_items(self):
    model = _model()
    seq = jnp.array([[0, 1, 2, 3, 4, 5], [0, 0, 0, 0, 7, 8]])
    params = model.init(jax.random.key(0), {'inputs': seq})
    scores = self.variant(lambda p, b: model.score(p, b))(
      params, {'inputs': seq}
    )
    chex.assert_shape(scores, (2, model.n_items))
    net = model.net
    hidden = net.apply({'params': params}, seq, False)[:, -1]
    table = params['item_emb']['embedding'][1:]
    np.testing.assert_allclose(
      scores,
      np.asarray(hidden, np.float64) @ np.asarray(table).T,
      rtol=1e-5,
      atol=1e-6,
    )
