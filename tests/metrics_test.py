"""Per-user metrics against a float64 NumPy reference and hand-worked cases."""

import math

import numpy as np
import pytest

from jaxrec.data import types
from jaxrec.eval import metrics, ranking

ALL = tuple(metrics.METRICS)


def _reference(scores, gt, excluded, k):
  """Every metric for one user, from raw scores, in plain Python floats.

  Ranking: argsort of (-score, item id) over the non-excluded items;
  relevance: membership in the ground-truth set.
  """
  if not gt:
    return None
  items = np.array([i for i in range(len(scores)) if i not in excluded])
  order = items[np.lexsort((items, -scores[items]))][:k].tolist()
  rel = [1.0 if i in gt else 0.0 for i in order] + [0.0] * (k - len(order))
  dcg = sum(r / math.log2(p + 2) for p, r in enumerate(rel))
  idcg = sum(1 / math.log2(p + 2) for p in range(min(len(gt), k)))
  first = [p for p, r in enumerate(rel) if r]
  return {
    'hr': float(bool(first)),
    'recall': sum(rel) / len(gt),
    'recall_capped': sum(rel) / min(len(gt), k),
    'ndcg': dcg / idcg,
    'mrr': 1 / (first[0] + 1) if first else 0.0,
    'precision': sum(rel) / k,
  }


class TableScorer:
  """Scores read from a fixed float32[U, I] table."""

  def __init__(self, table):
    self.params = {'table': np.asarray(table, np.float32)}

  def make_batch(self, history, users):
    del history
    return {'users': np.asarray(users, np.int32)}

  def score(self, params, batch):
    return params['table'][batch['users']]


def _part(rows):
  users = [u for u, r in enumerate(rows) for _ in r]
  items = [i for r in rows for i in r]
  return types.Part.from_events(
    np.array(users, np.int64), np.array(items, np.int64), len(rows)
  )


def _metrics_from_scores(table, gt_rows, ex_rows, ks, names=ALL):
  truth, exclude = _part(gt_rows), _part(ex_rows)
  res = ranking.rank(
    TableScorer(table), truth, truth, exclude, table.shape[1], max(ks)
  )
  return res, metrics.per_user(res.hits, res.n_gt, ks, names)


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_random_rankings_match_numpy_reference(seed):
  rng = np.random.default_rng(seed)
  n_users, n_items, ks = 60, 40, (1, 5, 10, 20)
  # Few distinct values: many ties, decided by the item id.
  table = rng.integers(0, 6, (n_users, n_items)).astype(np.float64)
  if seed == 0:
    table = rng.standard_normal((n_users, n_items))
  gt_rows = [
    rng.choice(n_items, rng.integers(0, 25), replace=False).tolist()
    for _ in range(n_users)
  ]
  ex_rows = [
    rng.choice(n_items, rng.integers(0, 30), replace=False).tolist()
    for _ in range(n_users)
  ]
  res, got = _metrics_from_scores(table, gt_rows, ex_rows, ks)
  want_users = [u for u in range(n_users) if gt_rows[u]]
  np.testing.assert_array_equal(res.users, want_users)
  for k in ks:
    for j, u in enumerate(res.users):
      want = _reference(
        table[u].astype(np.float32), set(gt_rows[u]), set(ex_rows[u]), k
      )
      for name in ALL:
        assert got[f'{name}@{k}'][j] == pytest.approx(want[name], abs=1e-6), (
          name,
          k,
          u,
        )


def test_ties_in_scores_rank_the_lower_id_first():
  # Scores tie pairwise; ranked (score desc, id asc): 1, 3, 0, 2, 4.
  table = np.array([[0.5, 0.9, 0.5, 0.9, 0.1]])
  res, got = _metrics_from_scores(table, [[2]], [[]], ks=(3, 4))
  assert res.topk.tolist() == [[1, 3, 0, 2]]
  assert got['hr@3'][0] == 0.0
  assert got['hr@4'][0] == 1.0
  assert got['mrr@4'][0] == pytest.approx(1 / 4)
  assert got['ndcg@4'][0] == pytest.approx(1 / math.log2(5))
  assert got['precision@4'][0] == pytest.approx(1 / 4)


def test_hand_worked_hit_list():
  # Ranked [a, b, c, d, e]; GT = {b, d, z} with z never ranked.
  hits = np.array([[False, True, False, True, False]])
  got = metrics.per_user(hits, np.array([3]), ks=(2, 5), names=ALL)
  d = [1 / math.log2(r + 2) for r in range(5)]
  assert got['hr@2'][0] == 1.0
  assert got['recall@2'][0] == pytest.approx(1 / 3)
  assert got['recall_capped@2'][0] == pytest.approx(1 / 2)
  assert got['recall@5'][0] == pytest.approx(2 / 3)
  assert got['recall_capped@5'][0] == pytest.approx(2 / 3)
  assert got['ndcg@2'][0] == pytest.approx(d[1] / (d[0] + d[1]))
  assert got['ndcg@5'][0] == pytest.approx((d[1] + d[3]) / (d[0] + d[1] + d[2]))
  assert got['mrr@2'][0] == pytest.approx(1 / 2)
  assert got['precision@5'][0] == pytest.approx(2 / 5)


def test_gt_larger_than_k_recall_and_capped_recall_differ():
  # |GT| = 5, K = 2, both slots hit.
  got = metrics.per_user(np.array([[True, True]]), np.array([5]), ks=(2,))
  got.update(
    metrics.per_user(
      np.array([[True, True]]), np.array([5]), (2,), ('recall_capped',)
    )
  )
  assert got['recall@2'][0] == pytest.approx(2 / 5)  # DiffRec / DDRM
  assert got['recall_capped@2'][0] == 1.0  # GiffCF
  assert got['ndcg@2'][0] == pytest.approx(1.0)  # ideal: min(5, 2) hits
  assert got['precision@2'][0] == 1.0


def test_k_larger_than_gt_and_than_the_candidates_left():
  # 4 items, user 0 excludes 2 of them: only 2 candidates for k = 4.
  table = np.array([[4.0, 3.0, 2.0, 1.0]])
  res, got = _metrics_from_scores(table, [[3]], [[0, 2]], ks=(1, 4))
  assert res.topk.tolist() == [[1, 3, -1, -1]]
  assert res.hits.tolist() == [[False, True, False, False]]
  assert got['recall@4'][0] == 1.0  # |GT| = 1 < K
  assert got['recall_capped@4'][0] == 1.0
  assert got['ndcg@4'][0] == pytest.approx(1 / math.log2(3))
  assert got['mrr@4'][0] == pytest.approx(1 / 2)
  assert got['precision@4'][0] == pytest.approx(1 / 4)  # still / K
  assert got['hr@1'][0] == 0.0


def test_empty_ground_truth_is_nan_and_not_counted():
  hits = np.array([[True, False], [False, False], [False, True]])
  got = metrics.per_user(hits, np.array([1, 0, 2]), ks=(2,), names=ALL)
  for name in ALL:
    assert np.isnan(got[f'{name}@2'][1])
  agg = metrics.aggregate(got)
  assert agg['hr@2'] == (2.0, 2)
  assert agg['recall@2'] == (1.5, 2)
  assert metrics.means(got)['hr@2'] == 1.0
  assert metrics.means(got)['recall@2'] == pytest.approx(0.75)
  # Sums and counts add up across disjoint user sets; no mean of means.
  a = metrics.aggregate(metrics.per_user(hits[:1], np.array([1]), (2,)))
  b = metrics.aggregate(metrics.per_user(hits[1:], np.array([0, 2]), (2,)))
  both = metrics.ratio(metrics.merge(a, b))
  assert both['recall@2'] == pytest.approx(0.75)
  assert np.isnan(metrics.means({'x': np.array([np.nan])})['x'])


def test_a_user_whose_only_gt_item_is_excluded_counts_as_a_miss():
  # User 0's only GT item 1 is excluded: it cannot be ranked, so the user
  # scores 0 everywhere and is counted (the GT is not empty). User 1 has
  # no GT: not evaluated at all.
  table = np.array([[0.0, 9.0, 1.0], [0.0, 9.0, 1.0]])
  res, got = _metrics_from_scores(table, [[1], []], [[1], []], ks=(2,))
  assert res.users.tolist() == [0]
  assert 1 not in res.topk[0]
  for name in ALL:
    assert got[f'{name}@2'].tolist() == [0.0]
  assert metrics.aggregate(got)['ndcg@2'] == (0.0, 1)


def test_errors_are_named():
  with pytest.raises(ValueError, match='k=5'):
    metrics.per_user(np.zeros((1, 3), bool), np.array([1]), ks=(5,))
  with pytest.raises(KeyError, match="unknown metric 'auc'"):
    metrics.per_user(np.zeros((1, 3), bool), np.array([1]), (1,), ('auc',))
  with pytest.raises(ValueError, match='registered twice'):
    metrics.register('hr')(lambda h, n, k: h)
  with pytest.raises(ValueError, match='do not match'):
    metrics.per_user(np.zeros((2, 3), bool), np.array([1]), (1,))


def test_coverage():
  topk = np.array([[0, 1, 2], [0, 3, -1], [1, 0, 4]])
  assert metrics.coverage(topk, 10, 1) == pytest.approx(2 / 10)
  assert metrics.coverage(topk, 10, 2) == pytest.approx(3 / 10)
  assert metrics.coverage(topk, 10, 3) == pytest.approx(5 / 10)  # -1 skipped
  with pytest.raises(ValueError):
    metrics.coverage(topk, 10, 4)
