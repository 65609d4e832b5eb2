"""Chunked jitted ranking against a plain NumPy full sort."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrec.data import types
from jaxrec.eval import ranking


class DotScorer:
  """Scores = user_emb[u] @ item_emb.T, optionally rounded to force ties."""

  def __init__(self, users, items, decimals=None):
    self.params = {'u': jnp.asarray(users), 'i': jnp.asarray(items)}
    self.decimals = decimals

  def make_batch(self, history, users):
    del history
    return {'users': np.asarray(users, np.int32)}

  def score(self, params, batch):
    s = params['u'][batch['users']] @ params['i'].T
    return s if self.decimals is None else jnp.round(s, self.decimals)


def _random_part(rng, n_users, n_items, max_len):
  lengths = rng.integers(0, max_len + 1, n_users)
  users = np.repeat(np.arange(n_users), lengths)
  items = np.concatenate(
    [rng.choice(n_items, n, replace=False) for n in lengths]
  ).astype(np.int64)
  return types.Part.from_events(users, items, n_users)


def _numpy_rank(scores, truth, exclude, k):
  topk, hits, users = [], [], []
  for u in range(scores.shape[0]):
    gt = set(truth.user_items(u).tolist())
    if not gt:
      continue
    ex = set() if exclude is None else set(exclude.user_items(u).tolist())
    order = sorted(
      (i for i in range(scores.shape[1]) if i not in ex),
      key=lambda i: (-scores[u, i], i),
    )[:k]
    order += [-1] * (k - len(order))
    users.append(u)
    topk.append(order)
    hits.append([i in gt for i in order])
  return np.array(users), np.array(topk), np.array(hits)


@pytest.mark.parametrize('decimals', [None, 0])
@pytest.mark.parametrize('chunk', [7, 64, 1000])
def test_matches_numpy_full_sort(decimals, chunk):
  rng = np.random.default_rng(0)
  n_users, n_items, k = 120, 40, 10
  scorer = DotScorer(
    rng.standard_normal((n_users, 4)).astype(np.float32),
    rng.standard_normal((n_items, 4)).astype(np.float32),
    decimals,
  )
  truth = _random_part(rng, n_users, n_items, 5)
  exclude = _random_part(rng, n_users, n_items, 36)  # some exclude almost all
  scores = np.asarray(
    scorer.score(scorer.params, {'users': np.arange(n_users)})
  )
  want_users, want_topk, want_hits = _numpy_rank(scores, truth, exclude, k)
  got = ranking.rank(scorer, truth, truth, exclude, n_items, k, chunk)
  np.testing.assert_array_equal(got.users, want_users)
  np.testing.assert_array_equal(got.topk, want_topk)
  np.testing.assert_array_equal(got.hits, want_hits)
  np.testing.assert_array_equal(got.n_gt, truth.lengths[want_users])
  # Excluded items never appear.
  for row, u in zip(got.topk, got.users, strict=True):
    assert not set(row.tolist()) & set(exclude.user_items(u).tolist())


def test_threads_and_one_worker_agree():
  rng = np.random.default_rng(1)
  scorer = DotScorer(
    rng.standard_normal((300, 8)).astype(np.float32),
    rng.standard_normal((50, 8)).astype(np.float32),
  )
  truth = _random_part(rng, 300, 50, 3)
  a = ranking.rank(scorer, truth, truth, None, 50, 5, 32, workers=1)
  b = ranking.rank(scorer, truth, truth, None, 50, 5, 32, workers=3)
  np.testing.assert_array_equal(a.topk, b.topk)
  np.testing.assert_array_equal(a.hits, b.hits)


def test_step_compiles_once_with_padded_last_chunk():
  rng = np.random.default_rng(2)
  n_users, n_items = 1000, 30
  scorer = DotScorer(
    rng.standard_normal((n_users, 4)).astype(np.float32),
    rng.standard_normal((n_items, 4)).astype(np.float32),
  )
  truth = types.Part.from_events(
    np.arange(n_users), rng.integers(0, n_items, n_users), n_users
  )
  traced = []
  original = scorer.score

  def counting_score(params, batch):
    traced.append(batch['users'].shape)
    return original(params, batch)

  scorer.score = counting_score
  res = ranking.rank(scorer, truth, truth, None, n_items, 5, chunk_size=64)
  assert len(res.users) == n_users  # 16 chunks, the last one padded
  assert traced == [(64,)]  # no score ties here, so no repick variant


def test_nan_scores_are_an_error():
  class NanScorer(DotScorer):
    def score(self, params, batch):
      s = super().score(params, batch)
      return s.at[:, 3].set(jnp.where(batch['users'] == 7, jnp.nan, 0.0))

  rng = np.random.default_rng(3)
  scorer = NanScorer(np.ones((10, 2), np.float32), np.ones((5, 2), np.float32))
  truth = types.Part.from_events(np.arange(10), rng.integers(0, 5, 10), 10)
  with pytest.raises(FloatingPointError, match='user 7'):
    ranking.rank(scorer, truth, truth, None, 5, 2)


def test_padded_rows():
  part = types.Part.from_events(
    np.array([0, 0, 2, 2, 2]), np.array([4, 1, 0, 3, 2]), 3
  )
  got = ranking.padded_rows(part, np.array([2, 1, 0]), 4, 9)
  np.testing.assert_array_equal(got, [[0, 3, 2, 9], [9, 9, 9, 9], [4, 1, 9, 9]])
  with pytest.raises(ValueError, match='wider'):
    ranking.padded_rows(part, np.array([2]), 2, 9)


def test_jitted_step_equals_unjitted():
  rng = np.random.default_rng(4)
  scorer = DotScorer(
    rng.standard_normal((16, 4)).astype(np.float32),
    rng.standard_normal((20, 4)).astype(np.float32),
  )
  batch = {'users': np.arange(16, dtype=np.int32)}
  excl = rng.integers(0, 21, (16, 3)).astype(np.int32)
  gt = rng.integers(0, 21, (16, 2)).astype(np.int32)
  kwargs = dict(score_fn=scorer.score, k=6, n_items=20, repick=True)
  jitted = ranking._rank_step(scorer.params, batch, excl, gt, **kwargs)
  with jax.disable_jit():
    plain = ranking._rank_step(scorer.params, batch, excl, gt, **kwargs)
  chex.assert_trees_all_equal(jitted, plain)
