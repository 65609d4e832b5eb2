"""Chunked jitted ranking against a plain NumPy full sort."""

import collections
import gc
import weakref

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrec import native
from jaxrec.data import batching, types
from jaxrec.eval import ranking


@pytest.fixture(params=['fused', 'native', 'xla'])
def top_k_path(request, monkeypatch):
  """Runs a test with the fused native score+top-k (for scorers that offer
  it), with XLA's scoring and the native top-k, and with XLA's top-k."""
  if request.param == 'xla':
    monkeypatch.setattr(native, 'top_k_kernel', lambda: False)
  elif not native.top_k_kernel():
    pytest.skip('JAXREC_NATIVE=0 (native_test checks the kernel builds)')
  if request.param != 'fused':
    monkeypatch.setattr(ranking, 'can_fuse', lambda scorer: False)
  return request.param


class DotScorer:
  """score = user_emb[users] @ item_emb.T, optionally rounded to tie.

  Unrounded, and unless a subclass redefines `score`, it also offers
  `user_vectors` and `item_vectors`: the fused ranking path.
  """

  def __init__(self, user_emb, item_emb, decimals=None):
    self.params = {'user': jnp.asarray(user_emb), 'item': jnp.asarray(item_emb)}
    self.decimals = decimals
    if decimals is None and type(self).score is DotScorer.score:
      self.user_vectors = lambda params, batch: params['user'][batch['users']]
      self.item_vectors = lambda params: params['item']

  def make_batch(self, history, users):
    del history
    return {'users': np.asarray(users, np.int32)}

  def score(self, params, batch):
    s = params['user'][batch['users']] @ params['item'].T
    return s if self.decimals is None else jnp.round(s, self.decimals)


def _unfusable(scorer):
  """The scorer without its fused path (for tests that replace `score`)."""
  del scorer.user_vectors, scorer.item_vectors
  return scorer


def _dot_scorer(rng, n_users, n_items, decimals=None, dim=4):
  return DotScorer(
    rng.standard_normal((n_users, dim)).astype(np.float32),
    rng.standard_normal((n_items, dim)).astype(np.float32),
    decimals,
  )


def _random_part(rng, n_users, n_items, max_len):
  lengths = rng.integers(0, max_len + 1, n_users)
  users = np.repeat(np.arange(n_users), lengths)
  items = np.concatenate(
    [rng.choice(n_items, n, replace=False) for n in lengths]
  )
  return types.Part.from_events(users, items, n_users)


def _all_scores(scorer, n_users):
  batch = {'users': np.arange(n_users, dtype=np.int32)}
  return np.asarray(scorer.score(scorer.params, batch), np.float32)


def _numpy_rank(scores, truth, exclude, k):
  """Full stable sort by (-score, id) of each user's non-excluded items."""
  users, topk, hits = [], [], []
  for u in range(scores.shape[0]):
    gt = truth.user_items(u)
    if not len(gt):
      continue
    keep = np.ones(scores.shape[1], bool)
    if exclude is not None:
      keep[exclude.user_items(u)] = False
    cand = np.flatnonzero(keep)
    order = cand[np.argsort(-scores[u, cand], kind='stable')][:k]
    order = np.concatenate([order, np.full(k - len(order), -1)])
    users.append(u)
    topk.append(order)
    hits.append(np.isin(order, gt) & (order >= 0))
  return np.array(users), np.array(topk), np.array(hits)


@pytest.mark.parametrize('decimals', [None, 0])
@pytest.mark.parametrize('chunk', [7, 64, 1000])
def test_matches_numpy_full_sort(decimals, chunk, top_k_path):
  rng = np.random.default_rng(0)
  n_users, n_items, k = 150, 40, 10
  scorer = _dot_scorer(rng, n_users, n_items, decimals)
  truth = _random_part(rng, n_users, n_items, 5)
  # Up to 38 of 40 excluded: some users have fewer than k candidates.
  exclude = _random_part(rng, n_users, n_items, 38)
  want = _numpy_rank(_all_scores(scorer, n_users), truth, exclude, k)
  got = ranking.rank(scorer, truth, truth, exclude, n_items, k, chunk)
  np.testing.assert_array_equal(got.users, want[0])
  np.testing.assert_array_equal(got.topk, want[1])
  np.testing.assert_array_equal(got.hits, want[2])
  np.testing.assert_array_equal(got.n_gt, truth.lengths[want[0]])
  assert (got.topk == -1).any()  # the short-list case was exercised
  for row, u in zip(got.topk, got.users, strict=True):
    assert not np.isin(row, exclude.user_items(u)).any()


def test_independent_of_chunk_size_and_workers():
  rng = np.random.default_rng(1)
  n_users, n_items = 300, 50
  scorer = _dot_scorer(rng, n_users, n_items, decimals=1)
  truth = _random_part(rng, n_users, n_items, 3)
  exclude = _random_part(rng, n_users, n_items, 10)
  runs = [
    ranking.rank(scorer, truth, truth, exclude, n_items, 7, c, workers=w)
    for c, w in ((1024, 1), (64, 1), (33, 3), (5, 2))
  ]
  for r in runs[1:]:
    chex.assert_trees_all_equal(
      (r.users, r.topk, r.hits, r.n_gt),
      (runs[0].users, runs[0].topk, runs[0].hits, runs[0].n_gt),
    )


def test_many_ground_truth_items_use_the_mask_path():
  # k * G > n_items: hits come from a [B, I] mask, not a [B, k, G] compare.
  rng = np.random.default_rng(2)
  n_users, n_items, k = 40, 30, 10
  scorer = _dot_scorer(rng, n_users, n_items)
  truth = _random_part(rng, n_users, n_items, 25)
  want = _numpy_rank(_all_scores(scorer, n_users), truth, None, k)
  got = ranking.rank(scorer, truth, truth, None, n_items, k, chunk_size=16)
  np.testing.assert_array_equal(got.topk, want[1])
  np.testing.assert_array_equal(got.hits, want[2])


def test_step_traces_once_with_a_padded_last_chunk():
  rng = np.random.default_rng(3)
  n_users, n_items = 1000, 30
  scorer = _dot_scorer(rng, n_users, n_items)
  truth = types.Part.from_events(
    np.arange(n_users), rng.integers(0, n_items, n_users), n_users
  )
  exclude = _random_part(rng, n_users, n_items, 5)
  # score (or user_vectors, fused) is traced once per trace of the step.
  scorer.score = chex.assert_max_traces(scorer.score, n=1)
  scorer.user_vectors = chex.assert_max_traces(scorer.user_vectors, n=1)
  for fused in (True, False):
    res = ranking.rank(
      scorer, truth, truth, exclude, n_items, 5, chunk_size=64, fused=fused
    )
    assert len(res.users) == n_users  # 16 chunks, the last one padded
    # The compiled step is kept for this scorer: a second call, even with
    # another chunk size's last chunk, does not trace again.
    ranking.rank(
      scorer, truth, truth, exclude, n_items, 5, chunk_size=64, fused=fused
    )


def test_scorer_is_not_kept_alive_by_the_step_cache():
  rng = np.random.default_rng(4)
  scorer = _dot_scorer(rng, 20, 10)
  truth = _random_part(rng, 20, 10, 2)
  ranking.rank(scorer, truth, truth, None, 10, 3)
  ref = weakref.ref(scorer)
  del scorer
  gc.collect()
  assert ref() is None


def test_lax_top_k_order_and_enforced_tie_rule(top_k_path):
  # What lax.top_k does with ties on CPU in this JAX: lower index first
  # (XLA's CPU TopK kernel compares (value, index)). GPU/TPU top-k promises
  # nothing, so the rule is enforced; all paths must give the same answer.
  rng = np.random.default_rng(5)
  scores = rng.integers(0, 3, (64, 500)).astype(np.float32)
  want = np.argsort(-scores, axis=1, kind='stable')[:, :20]
  if jax.default_backend() == 'cpu':
    np.testing.assert_array_equal(jax.lax.top_k(scores, 20)[1], want)
  for repick in (False, True):
    # A fresh function each time: jit's cache of top_k_lowest_id itself
    # would keep the path traced by another parametrisation.
    step = jax.jit(lambda s, r=repick: ranking.top_k_lowest_id(s, 20, r))
    _, items, tie = step(scores)
    np.testing.assert_array_equal(items, want)
    # XLA's top_k reports the tie across the k-th place (rank() then
    # repicks); the native kernel is exact and reports none.
    assert bool(tie) == (top_k_path == 'xla')


def test_repick_fixes_a_tie_order_that_top_k_does_not_promise():
  # A shuffled top_k (as an unordered backend may return) is corrected.
  scores = jnp.zeros((2, 12), jnp.float32).at[:, 7].set(1.0)

  original = jax.lax.top_k

  def reversed_top_k(x, k):
    v, i = original(x[:, ::-1], k)
    return v, x.shape[1] - 1 - i

  jax.lax.top_k = reversed_top_k
  try:
    v, items, tie = ranking._xla_top_k_lowest_id(scores, 3, repick=False)
    assert bool(tie)  # so rank() recomputes with repick=True
    v, items, _ = ranking._xla_top_k_lowest_id(scores, 3, repick=True)
  finally:
    jax.lax.top_k = original
  np.testing.assert_array_equal(items, [[7, 0, 1], [7, 0, 1]])


@pytest.mark.parametrize('value', [0.0, -np.inf])
def test_all_equal_scores_and_excluded_items(value, top_k_path):
  # Every score equal (or -inf): lowest ids first, excluded items never
  # ranked, and slots past the candidates left are -1 and not hits.
  n_users, n_items, k = 3, 6, 4
  scorer = _unfusable(DotScorer(np.zeros((n_users, 1)), np.zeros((n_items, 1))))
  scorer.score = lambda params, batch: jnp.full(
    (len(batch['users']), n_items), value, jnp.float32
  )
  truth = types.Part.from_events([0, 1, 2, 2], [0, 5, 1, 4], n_users)
  exclude = types.Part.from_events(
    [0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 2], [1, 2, 0, 1, 2, 3, 0, 1, 2, 3, 5], 3
  )
  res = ranking.rank(scorer, truth, truth, exclude, n_items, k)
  if value == 0.0:
    assert res.topk.tolist() == [[0, 3, 4, 5], [4, 5, -1, -1], [4, -1, -1, -1]]
    assert res.hits.tolist() == [
      [True, False, False, False],
      [False, True, False, False],
      [True, False, False, False],
    ]
  else:  # a model's -inf is "not a candidate", like an excluded item
    assert (res.topk == -1).all() and not res.hits.any()
  np.testing.assert_array_equal(res.n_gt, [1, 1, 2])


def test_negative_zero_ties_with_zero(top_k_path):
  scores = jnp.array([[0.0, -0.0, 0.0, -0.0, 1.0]], jnp.float32)
  scores = jnp.concatenate([scores, -scores])
  _, items, tie = ranking.top_k_lowest_id(scores, 3, repick=True)
  assert items.tolist() == [[4, 0, 1], [0, 1, 2]]


def test_duplicate_truth_events_count_once_and_users_filter():
  truth = types.Part.from_events([0, 0, 0, 2], [3, 3, 1, 0], 3)
  rng = np.random.default_rng(6)
  scorer = _dot_scorer(rng, 3, 5)
  res = ranking.rank(scorer, truth, truth, None, 5, 2)
  assert res.users.tolist() == [0, 2]
  assert res.n_gt.tolist() == [2, 1]
  res = ranking.rank(scorer, truth, truth, None, 5, 2, users=np.array([1, 2]))
  assert res.users.tolist() == [2]  # user 1 has no ground truth
  empty = ranking.rank(scorer, truth, truth, None, 5, 2, users=np.array([1]))
  assert empty.topk.shape == (0, 2)


def test_errors_are_named(top_k_path):
  rng = np.random.default_rng(7)
  truth = types.Part.from_events(np.arange(10), rng.integers(0, 5, 10), 10)

  class NanScorer(DotScorer):
    def score(self, params, batch):
      s = super().score(params, batch)
      return s.at[:, 3].set(jnp.where(batch['users'] == 7, jnp.nan, 0.0))

  scorer = NanScorer(np.ones((10, 2), np.float32), np.ones((5, 2), np.float32))
  with pytest.raises(FloatingPointError, match='user 7'):
    ranking.rank(scorer, truth, truth, None, 5, 2)
  with pytest.raises(ValueError, match='k=6'):
    ranking.rank(scorer, truth, truth, None, 5, 6)
  wrong_width = _dot_scorer(rng, 10, 5)  # scores 5 items, 4 are ranked
  fused = ranking.can_fuse(wrong_width)
  with pytest.raises(
    ValueError, match=r'expected \[4, d\]' if fused else r'expected \[B, 4\]'
  ):
    ranking.rank(wrong_width, truth, truth, None, 4, 2)


class StepTest(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  def test_step_jitted_equals_plain(self):
    rng = np.random.default_rng(8)
    scorer = _dot_scorer(rng, 16, 20)
    batch = {'users': np.arange(16, dtype=np.int32)}
    excl = rng.integers(0, 21, (16, 8)).astype(np.int32)
    gt = rng.integers(0, 21, (16, 8)).astype(np.int32)
    gt[:, 0] = rng.integers(0, 20, 16)  # every user has a ground truth

    @self.variant
    def step(params, batch, excl, gt):
      return ranking._rank_step(
        params,
        batch,
        excl,
        gt,
        score_fn=scorer.score,
        k=6,
        n_items=20,
        width=20,
        repick=True,
      )

    topk, hits, nan, _ = step(scorer.params, batch, excl, gt)
    truth, exclude = _rows_part(gt, 20), _rows_part(excl, 20)
    want = _numpy_rank(_all_scores(scorer, 16), truth, exclude, 6)
    np.testing.assert_array_equal(topk, want[1])
    np.testing.assert_array_equal(hits, want[2])
    assert not np.asarray(nan).any()


def _rows_part(rows, pad):
  users, items = np.nonzero(rows < pad)
  return types.Part.from_events(users, rows[users, items], len(rows))


@pytest.mark.parametrize('many_truth', [False, True])
def test_phantom_items_take_slots_but_never_hit(many_truth, top_k_path):
  # A scorer with one extra (phantom) column, as DiffuRec's padding row:
  # ranked like an item, shown as -1, never a hit, never excluded.
  rng = np.random.default_rng(11)
  n_users, n_items, k = 12, 9, 4
  base = _dot_scorer(rng, n_users, n_items + 1)
  base.phantom_items = 1
  max_len = 6 if many_truth else 1
  truth = _random_part(rng, n_users, n_items, max_len)
  exclude = _random_part(rng, n_users, n_items, 2)
  res = ranking.rank(base, truth, truth, exclude, n_items, k, chunk_size=5)
  scores = _all_scores(base, n_users)
  for row, u in enumerate(res.users):
    keep = np.ones(n_items + 1, bool)
    keep[exclude.user_items(u)] = False
    cand = np.flatnonzero(keep)
    order = cand[np.argsort(-scores[u, cand], kind='stable')][:k]
    want = np.where(order < n_items, order, -1)
    assert res.topk[row].tolist() == want.tolist()
    hits = np.isin(want, truth.user_items(u)) & (want >= 0)
    assert res.hits[row].tolist() == hits.tolist()
  assert (res.topk == -1).any()  # the phantom did take some slots


@pytest.mark.parametrize('k', [10, 45])
@pytest.mark.parametrize('many_truth', [False, True])
def test_fused_path_equals_the_unfused_one(k, many_truth):
  # Scores exact in float32 (multiples of 1/4), so both paths must agree
  # exactly: exclusions (some users left with fewer than k candidates),
  # ties, a phantom item, a padded last chunk, a users filter.
  if not native.top_k_kernel():
    pytest.skip('JAXREC_NATIVE=0 (native_test checks the kernel builds)')
  rng = np.random.default_rng(12)
  n_users, n_items = 90, 70
  scorer = DotScorer(
    np.round(rng.standard_normal((n_users, 6)) * 2) / 4,
    np.round(rng.standard_normal((n_items + 1, 6)) * 2) / 4,
  )
  scorer.phantom_items = 1
  assert ranking.can_fuse(scorer)
  truth = _random_part(rng, n_users, n_items, 30 if many_truth else 1)
  exclude = _random_part(rng, n_users, n_items, 40)
  users = rng.choice(n_users, 60, replace=False)
  runs = [
    ranking.rank(
      scorer, truth, truth, excl, n_items, k, 16, users=users, fused=fused
    )
    for excl in (exclude, None)
    for fused in (True, False)
  ]
  for fused, unfused in (runs[:2], runs[2:]):
    chex.assert_trees_all_equal(
      (fused.users, fused.topk, fused.hits, fused.n_gt),
      (unfused.users, unfused.topk, unfused.hits, unfused.n_gt),
    )
  assert (runs[0].topk == -1).any() and runs[0].hits.any()


def test_fused_nan_is_named():
  if not native.top_k_kernel():
    pytest.skip('JAXREC_NATIVE=0 (native_test checks the kernel builds)')
  truth = types.Part.from_events(np.arange(10), np.arange(10) % 5, 10)
  users = np.ones((10, 2), np.float32)
  users[7, 0] = np.nan
  scorer = DotScorer(users, np.ones((5, 2), np.float32))
  with pytest.raises(FloatingPointError, match='user 7'):
    ranking.rank(scorer, truth, truth, None, 5, 2)


class TrimScorer:
  """score = (sum of the embeddings of the last `max_len` history items) @
  items.T: independent of left padding, so it offers trimmed batches. The
  embeddings are multiples of 1/8 in [-2, 2] (sums exact in float32)."""

  def __init__(self, rng, n_items, max_len, trim=True, dim=4):
    emb = rng.integers(-16, 17, (n_items + 1, dim)) / 8.0
    emb[0] = 0.0  # padding
    items = rng.integers(-16, 17, (n_items, dim)) / 8.0
    self.params = {'emb': jnp.asarray(emb, jnp.float32)}
    self.params['item'] = jnp.asarray(items, jnp.float32)
    self.max_len = max_len
    self.traces = collections.Counter()
    if trim:
      self.input_lengths = self._input_lengths

  def make_batch(self, history, users, length=None):
    length = self.max_len if length is None else length
    return {'inputs': batching.last_items(history, users, length)}

  def _input_lengths(self, history, users):
    return np.minimum(np.diff(history.indptr)[users], self.max_len)

  def user_vectors(self, params, batch):
    self.traces[batch['inputs'].shape] += 1
    return params['emb'][batch['inputs']].sum(1)

  def item_vectors(self, params):
    return params['item']

  def score(self, params, batch):
    return self.user_vectors(params, batch) @ params['item'].T


def test_length_groups_cover_every_user_once_at_a_length_that_fits():
  rng = np.random.default_rng(0)
  lengths = np.minimum(rng.geometric(1 / 6, 5000), 50)
  lengths[:2] = 50, 0
  groups = ranking.length_groups(lengths, 64)
  idx = np.concatenate([g[1] for g in groups])
  np.testing.assert_array_equal(np.sort(idx), np.arange(5000))
  sizes = [g[0] for g in groups]
  assert sizes == sorted(sizes) and sizes[-1] == 50
  for length, members, chunk in groups:
    assert (lengths[members] <= length).all() and chunk % 8 == 0
    # Rows of length L <= 50 / 8 hold 8x the users; the chunks of a group
    # are even (each at least 7/8 full but the last).
    assert chunk <= 64 * min(8, 50 // length)
    n_chunks = -(-len(members) // chunk)
    assert len(members) > (n_chunks - 1) * chunk
  # Where [B, I] scores are written, chunks keep their size.
  for _, _, chunk in ranking.length_groups(lengths, 64, max_scale=1):
    assert chunk <= 64
  smaller = [b for b in ranking.LENGTH_BUCKETS if b < 50]
  assert set(sizes) <= set(smaller) | {50}
  # No user at a length more than one bucket above its own.
  for length, members, _ in groups:
    below = max([-1] + [b for b in smaller if b < length])
    assert (lengths[members] > below).all()


@pytest.mark.parametrize('fused', [True, False])
def test_trimmed_batches_rank_as_full_length_ones(fused):
  rng = np.random.default_rng(5)
  n_users, n_items, max_len, k = 400, 60, 20, 7
  scorer = TrimScorer(rng, n_items, max_len)
  lengths = np.minimum(rng.geometric(1 / 4, n_users), 30)
  lengths[:3] = 0  # users with no history: an all-padding row
  history = types.Part.from_events(
    np.repeat(np.arange(n_users), lengths),
    rng.integers(0, n_items, lengths.sum()),
    n_users,
  )
  truth = _random_part(rng, n_users, n_items, 2)
  exclude = _random_part(rng, n_users, n_items, 4)
  # The same model, always at max_len.
  full = TrimScorer(np.random.default_rng(0), n_items, max_len, trim=False)
  full.params = scorer.params
  batch = full.make_batch(history, np.arange(n_users))
  want = _numpy_rank(
    np.asarray(full.score(full.params, batch)), truth, exclude, k
  )
  full.traces.clear()
  users = np.arange(5, n_users, 2)
  for s in (scorer, full):
    got = ranking.rank(
      s, history, truth, exclude, n_items, k, 16, workers=3, fused=fused
    )
    np.testing.assert_array_equal(got.users, want[0])
    np.testing.assert_array_equal(got.topk, want[1])
    np.testing.assert_array_equal(got.hits, want[2])
    sub = ranking.rank(
      s, history, truth, exclude, n_items, k, 16, users=users, fused=fused
    )
    keep = np.isin(want[0], users)
    np.testing.assert_array_equal(sub.users, want[0][keep])
    np.testing.assert_array_equal(sub.topk, want[1][keep])
  # Several lengths, each batch shape traced once.
  assert len(scorer.traces) > 3 and max(scorer.traces.values()) == 1
  assert list(full.traces) == [(16, max_len)]
