"""Metrics against hand-worked cases and an independent float64 reference."""

import math

import numpy as np
import pytest

from jaxrec.eval import metrics


def _reference(scores, truth, k, excluded=()):
  """Plain Python: sort all items by (-score, id), compute every metric."""
  order = sorted(
    (i for i in range(len(scores)) if i not in excluded),
    key=lambda i: (-scores[i], i),
  )[:k]
  hit = [i in truth for i in order]
  n = len(truth)
  if n == 0:
    return None
  dcg = sum(1 / math.log2(r + 2) for r, h in enumerate(hit) if h)
  idcg = sum(1 / math.log2(r + 2) for r in range(min(n, k)))
  first = next((r for r, h in enumerate(hit) if h), None)
  return {
    'hr': float(any(hit)),
    'recall': sum(hit) / n,
    'recall_capped': sum(hit) / min(n, k),
    'ndcg': dcg / idcg,
    'mrr': 0.0 if first is None else 1 / (first + 1),
    'precision': sum(hit) / k,
  }, order


def test_hand_worked_example():
  # Ranked: [a, b, c, d, e]; GT = {b, d, z} (z never ranked), k = 5 and 2.
  hits = np.array([[False, True, False, True, False]])
  n_gt = np.array([3])
  got = metrics.per_user(hits, n_gt, ks=(2, 5), names=tuple(metrics.METRICS))
  d = [1 / math.log2(r + 2) for r in range(5)]
  assert got['hr@2'][0] == 1.0
  assert got['recall@2'][0] == pytest.approx(1 / 3)
  assert got['recall_capped@2'][0] == pytest.approx(1 / 2)
  assert got['recall@5'][0] == pytest.approx(2 / 3)
  assert got['recall_capped@5'][0] == pytest.approx(2 / 3)
  assert got['ndcg@2'][0] == pytest.approx(d[1] / (d[0] + d[1]))
  assert got['ndcg@5'][0] == pytest.approx((d[1] + d[3]) / sum(d[:3]))
  assert got['mrr@5'][0] == pytest.approx(0.5)
  assert got['precision@5'][0] == pytest.approx(2 / 5)
  assert got['precision@2'][0] == pytest.approx(1 / 2)


def test_empty_ground_truth_is_not_counted():
  hits = np.array([[True, False], [False, False], [False, True]])
  n_gt = np.array([1, 0, 2])
  got = metrics.per_user(hits, n_gt, ks=(2,), names=('hr', 'ndcg'))
  assert np.isnan(got['hr@2'][1])
  agg = metrics.aggregate(got)
  assert agg['hr@2'] == (2.0, 2)
  assert metrics.means(got)['hr@2'] == 1.0
  d1 = 1 / math.log2(3)
  assert metrics.means(got)['ndcg@2'] == pytest.approx(
    (1.0 + d1 / (1 + d1)) / 2
  )


def test_no_hit_and_unfilled_slots():
  # A user with fewer candidates than k: trailing slots are False.
  hits = np.array([[False, False, False]])
  got = metrics.per_user(
    hits, np.array([1]), ks=(3,), names=tuple(metrics.METRICS)
  )
  assert all(v[0] == 0.0 for v in got.values())


def test_k_beyond_hit_matrix_is_an_error():
  with pytest.raises(ValueError, match='k=5'):
    metrics.per_user(np.zeros((1, 3), bool), np.array([1]), ks=(5,))
  with pytest.raises(KeyError, match='unknown metric'):
    metrics.per_user(
      np.zeros((1, 3), bool), np.array([1]), ks=(3,), names=('auc',)
    )


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_random_rankings_match_reference(seed):
  rng = np.random.default_rng(seed)
  n_users, n_items, kmax = 50, 30, 12
  # Rounded scores make ties common; the tie rule is lower id first.
  scores = np.round(rng.standard_normal((n_users, n_items)), 1)
  hits = np.zeros((n_users, kmax), bool)
  n_gt = np.zeros(n_users, np.int64)
  refs = {}
  for u in range(n_users):
    size = int(rng.integers(0, 15))  # includes empty and > k ground truths
    truth = set(rng.choice(n_items, size, replace=False).tolist())
    ref = _reference(scores[u], truth, kmax)
    n_gt[u] = len(truth)
    if ref is None:
      continue
    _, order = ref
    hits[u] = [i in truth for i in order]
    for k in (1, 5, kmax):
      for name, value in _reference(scores[u], truth, k)[0].items():
        refs.setdefault(f'{name}@{k}', {})[u] = value
  got = metrics.per_user(
    hits, n_gt, ks=(1, 5, kmax), names=tuple(metrics.METRICS)
  )
  for key, per in refs.items():
    want = np.full(n_users, np.nan)
    for u, v in per.items():
      want[u] = v
    np.testing.assert_allclose(got[key], want, atol=1e-6, err_msg=key)


def test_coverage():
  topk = np.array([[0, 1, -1], [1, 2, 3]])
  assert metrics.coverage(topk, 10, 2) == pytest.approx(3 / 10)
  assert metrics.coverage(topk, 10, 3) == pytest.approx(4 / 10)


def test_registry_rejects_duplicates():
  with pytest.raises(ValueError, match='twice'):
    metrics.register('hr')(lambda h, n, k: h)
