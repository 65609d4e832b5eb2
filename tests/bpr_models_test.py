"""MF-BPR and LightGCN: the triple sampler, the normalised graph and its
propagation, and the BPR loss against float64 NumPy."""

import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

from configs import lightgcn as lightgcn_config
from configs import mf as mf_config
from jaxrec.data import synthetic, types
from jaxrec.models import lightgcn, mf
from jaxrec.train import loop


def _part(rows):
  lengths = [len(r) for r in rows]
  indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
  items = np.concatenate([np.asarray(r, np.int32) for r in rows])
  return types.Part(indptr, items)


def test_negatives_are_never_training_items_and_cover_the_rest():
  part = _part([[0, 1, 2, 3, 4, 5, 6, 7], [3], [9, 1]])  # user 0: 8 of 10
  data = mf.TrainPairs.build(part, 10, 'user')
  users = np.repeat(np.arange(3), 4000)
  neg = data.negatives(users, np.random.default_rng(0))
  for u in range(3):
    drawn = neg[users == u]
    seen = set(part.user_items(u).tolist())
    assert not seen & set(drawn.tolist())
    counts = np.bincount(drawn, minlength=10)
    allowed = [i for i in range(10) if i not in seen]
    # uniform over the allowed items: each about 4000 / len(allowed)
    want = 4000 / len(allowed)
    assert np.all(np.abs(counts[allowed] - want) < 5 * np.sqrt(want))
  full = mf.TrainPairs.build(_part([list(range(10)), [1]]), 10, 'user')
  with pytest.raises(ValueError, match='user 0 has interacted with every'):
    full.negatives(np.array([1, 0]), np.random.default_rng(0))


def test_triples_follow_their_sampler_and_their_generator():
  part = _part([[4, 2], [], [1, 0, 3]])
  inter = mf.TrainPairs.build(part, 6, 'interaction')
  users, pos, _ = inter.triples(np.arange(5), np.random.default_rng(0))
  np.testing.assert_array_equal(users, [0, 0, 2, 2, 2])
  np.testing.assert_array_equal(pos, [4, 2, 1, 0, 3])
  by_user = mf.TrainPairs.build(part, 6, 'user')
  users, pos, neg = by_user.triples(np.arange(3000), np.random.default_rng(1))
  assert set(users.tolist()) == {0, 2}  # user 1 has no train item
  assert abs(np.mean(users == 0) - 0.5) < 0.05  # uniform over users
  for u, p, n in zip(users[:50], pos[:50], neg[:50], strict=True):
    assert p in part.user_items(u) and n not in part.user_items(u)
  again = by_user.triples(np.arange(3000), np.random.default_rng(1))
  np.testing.assert_array_equal(again[2], neg)
  with pytest.raises(ValueError, match="pairs='users'"):
    mf.TrainPairs.build(part, 6, 'users')


def test_graph_is_the_symmetric_normalised_adjacency_and_propagates():
  part = _part([[0, 2], [2, 2, 1], [], [3]])  # a repeat; an empty user
  graph = lightgcn.Graph.build(part, 5)
  a = np.zeros((9, 9))
  for u, items in enumerate([[0, 2], [2, 1], [], [3]]):
    for i in items:
      a[u, 4 + i] = a[4 + i, u] = 1.0
  deg = a.sum(1)
  inv = np.where(deg > 0, 1 / np.sqrt(np.maximum(deg, 1)), 0.0)
  want = inv[:, None] * a * inv[None, :]
  np.testing.assert_allclose(graph.dense(), want, rtol=1e-6)
  rng = np.random.default_rng(0)
  e = rng.normal(size=(9, 3))
  got_u, got_i = jax.jit(lightgcn.propagate, static_argnums=(0, 3))(
    graph, e[:4].astype(np.float32), e[4:].astype(np.float32), 3
  )
  ref = (e + want @ e + want @ want @ e + want @ want @ want @ e) / 4
  np.testing.assert_allclose(got_u, ref[:4], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(got_i, ref[4:], rtol=1e-5, atol=1e-6)
  assert np.all(ref[2] == e[2] / 4)  # the empty user only keeps layer 0


@pytest.mark.parametrize('name', ['mf', 'lightgcn'])
def test_bpr_loss_matches_numpy(name):
  split = synthetic.clustered_split(n_users=12, n_items=9, per_user=5)
  module = {'mf': mf_config, 'lightgcn': lightgcn_config}[name]
  config = module.get_config('dataset=synthetic,tiny')
  model = loop.models.get_neural_model(name)(config.model, split.n_items)
  model = model.bind(split)
  params = model.init(jax.random.key(0), None)
  batch = {
    'users': np.array([0, 3, 5, 11], np.int32),
    'pos': np.array([1, 2, 8, 0], np.int32),
    'neg': np.array([4, 4, 0, 7], np.int32),
    'weights': np.array([1, 1, 1, 0], np.float32),
  }
  loss, aux = jax.jit(model.loss)(params, batch, jax.random.key(1), 0)
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
  users, items = p['user_emb'], p['item_emb']
  if name == 'lightgcn':
    a = lightgcn.Graph.build(split.train, split.n_items).dense()
    e = np.concatenate([users, items])
    total, layer = e.copy(), e
    for _ in range(config.model.layers):
      layer = a @ layer
      total += layer
    users, items = np.split(total / (config.model.layers + 1), [12])
  u, pos, neg = batch['users'][:3], batch['pos'][:3], batch['neg'][:3]
  diff = np.sum(users[u] * (items[neg] - items[pos]), 1)
  bpr = np.log1p(np.exp(diff))
  sq = np.sum(
    p['user_emb'][u] ** 2 + p['item_emb'][pos] ** 2 + p['item_emb'][neg] ** 2,
    1,
  )
  want = (bpr.sum() + config.model.decay * sq.sum() / 2) / 3
  np.testing.assert_allclose(loss, want, rtol=1e-5)
  np.testing.assert_allclose(aux['loss_sum'], bpr.sum(), rtol=1e-5)
  scores = model.score(params, model.make_batch(split.train, np.arange(12)))
  np.testing.assert_allclose(scores, users @ items.T, rtol=1e-4, atol=1e-6)


def test_a_resumed_run_draws_the_same_triples(tmp_path):
  split = synthetic.clustered_split(n_users=40, n_items=20)

  def config(steps):
    c = mf_config.get_config('dataset=synthetic,tiny')
    c.train.update(steps=steps, eval_every=4)
    return c

  whole = loop.train_and_evaluate(config(8), tmp_path / 'whole', split=split)
  loop.train_and_evaluate(config(4), tmp_path / 'cut', split=split)
  (tmp_path / 'cut' / 'results.json').unlink()
  (tmp_path / 'cut' / 'config.json').unlink()
  resumed = loop.train_and_evaluate(config(8), tmp_path / 'cut', split=split)
  assert resumed['params_sha256'] == whole['params_sha256']
  assert resumed['valid_curve'] == whole['valid_curve']


_RANK_ML1M = """
import sys, jax, numpy as np
from configs import lightgcn as config_lib
from jaxrec.eval import ranking
from jaxrec.train import fit_linear, loop
c = config_lib.get_config('dataset=diffrec-ml-1m-clean')
split = fit_linear.load_split(c)
setup = loop._Setup.build(c, split)
scorer = loop.ModelScorer(setup.model)
scorer.params = jax.jit(setup.init_state)().params
rank = lambda workers: ranking.rank(
  scorer, split.train, split.valid, split.train, split.n_items, 20, 512,
  workers=workers)
two, one = rank(2), rank(1)
np.testing.assert_array_equal(two.topk, one.topk)
users, items = setup.model.embeddings(setup.init_state().params)
np.testing.assert_allclose(
  scorer.params['ranked_users'], users, rtol=1e-6, atol=1e-7)
print('ranked', len(two.users))
"""


def test_lightgcn_ranks_ml1m_with_two_workers(data_dir):
  # Propagating in every chunk (a SciPy host callback) deadlocked two
  # ranking workers on ML-1M: the scorer now propagates once per pass.
  # Real files: skips, saying why, where JAXREC_DATA is not set.
  root = pathlib.Path(__file__).resolve().parents[1]
  env = {
    **os.environ,
    'JAX_PLATFORMS': 'cpu',
    'PYTHONPATH': str(root),
    'JAXREC_DATA': str(data_dir),
  }
  done = subprocess.run(
    [sys.executable, '-c', _RANK_ML1M],
    cwd=root,
    env=env,
    capture_output=True,
    text=True,
    timeout=240,
  )
  assert done.returncode == 0, done.stderr[-3000:]
  assert 'ranked 5949' in done.stdout
