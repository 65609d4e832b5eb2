"""Top-K ranking metrics per user, from a hit matrix (host side, float64).

Every metric is a function `(hits, n_gt, k) -> float64[U]` of
  hits: bool[U, Kmax], hits[u, r] = the item ranked r-th (0-based) for user u
        is in u's ground truth; a slot with no candidate item is False;
  n_gt: int[U], |GT(u)|, the size of u's ground-truth set;
and is NaN for users with an empty ground truth, which `aggregate` leaves out
of both sum and count. Definitions (r = 0-based rank):
  hr             1 if any hit in the top k
  recall         hits@k / |GT|            (DiffRec, DDRM, most CF papers)
  recall_capped  hits@k / min(|GT|, k)    (GiffCF; reaches 1 when |GT| > k)
  ndcg           sum_{r<k, hit} 1/log2(r+2) / sum_{r<min(|GT|,k)} 1/log2(r+2)
  mrr            1/(r+1) of the first hit within k, else 0
  precision      hits@k / k
(NDCG and MRR are those of binary relevance.) A ranked list never holds an
item twice and the ground truth is a set, so hits@k <= min(|GT|, k).

k is at most Kmax, the width of the hit matrix; the caller ranks
Kmax <= n_items items (`ranking.rank` refuses more), so "K larger than the
number of items" never reaches here. Where fewer than k candidates were
left after exclusion, the empty slots are misses: precision still divides
by k, and NDCG's ideal still assumes min(|GT|, k) hits.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

MetricFn = Callable[[np.ndarray, np.ndarray, int], np.ndarray]
METRICS: dict[str, MetricFn] = {}


def register(name: str):
  """Decorator adding a metric to `METRICS`; a duplicate name raises."""

  def wrap(fn: MetricFn) -> MetricFn:
    if name in METRICS:
      raise ValueError(f'metric {name!r} is registered twice')
    METRICS[name] = fn
    return fn

  return wrap


def get(name: str) -> MetricFn:
  """The registered metric `name`; an unknown name raises KeyError."""
  if name not in METRICS:
    raise KeyError(f'unknown metric {name!r}; known: {sorted(METRICS)}')
  return METRICS[name]


def _discounts(k: int) -> np.ndarray:
  return 1.0 / np.log2(np.arange(k, dtype=np.float64) + 2.0)


def _empty_to_nan(values: np.ndarray, n_gt: np.ndarray) -> np.ndarray:
  return np.where(n_gt > 0, values, np.nan)


def _n_hits(hits, k):
  return hits[:, :k].sum(axis=1, dtype=np.float64)


@register('hr')
def hit_ratio(hits, n_gt, k):
  return _empty_to_nan(hits[:, :k].any(axis=1).astype(np.float64), n_gt)


@register('recall')
def recall(hits, n_gt, k):
  return _empty_to_nan(_n_hits(hits, k) / np.maximum(n_gt, 1), n_gt)


@register('recall_capped')
def recall_capped(hits, n_gt, k):
  return _empty_to_nan(
    _n_hits(hits, k) / np.maximum(np.minimum(n_gt, k), 1), n_gt
  )


@register('ndcg')
def ndcg(hits, n_gt, k):
  disc = _discounts(k)
  dcg = hits[:, :k].astype(np.float64) @ disc
  ideal = np.concatenate([[0.0], np.cumsum(disc)])[np.minimum(n_gt, k)]
  return _empty_to_nan(dcg / np.where(ideal > 0, ideal, 1.0), n_gt)


@register('mrr')
def mrr(hits, n_gt, k):
  h = hits[:, :k]
  first = np.argmax(h, axis=1)
  return _empty_to_nan(np.where(h.any(axis=1), 1.0 / (first + 1.0), 0.0), n_gt)


@register('precision')
def precision(hits, n_gt, k):
  return _empty_to_nan(_n_hits(hits, k) / k, n_gt)


def per_user(
  hits: np.ndarray,
  n_gt: np.ndarray,
  ks=(10, 20),
  names=('hr', 'recall', 'ndcg', 'mrr', 'precision'),
) -> dict[str, np.ndarray]:
  """Every metric in `names` at every k in `ks`, per user.

  Args:
    hits: bool[U, Kmax] hit matrix in rank order.
    n_gt: int[U] ground-truth sizes (distinct items).
    ks: cut-offs, each <= Kmax.
    names: registered metric names.

  Returns:
    {'ndcg@20': float64[U], ...}; NaN where n_gt == 0.
  """
  hits = np.asarray(hits, bool)
  n_gt = np.asarray(n_gt, np.int64)
  if hits.ndim != 2 or len(hits) != len(n_gt):
    raise ValueError(f'hits {hits.shape} and n_gt {n_gt.shape} do not match')
  out = {}
  for name in names:
    fn = get(name)
    for k in ks:
      if not 1 <= k <= hits.shape[1]:
        raise ValueError(
          f'k={k} needs a hit matrix with >= k columns, got {hits.shape[1]}'
        )
      out[f'{name}@{k}'] = fn(hits, n_gt, k)
  return out


def aggregate(values: dict[str, np.ndarray]) -> dict[str, tuple[float, int]]:
  """{name: (sum, count)} over users with a value (NaN = not counted)."""
  out = {}
  for name, v in values.items():
    ok = ~np.isnan(v)
    out[name] = (float(v[ok].sum()), int(ok.sum()))
  return out


def merge(*aggregates: dict[str, tuple[float, int]]):
  """Adds `aggregate` outputs of disjoint user sets, name by name."""
  out = {}
  for agg in aggregates:
    for name, (s, c) in agg.items():
      s0, c0 = out.get(name, (0.0, 0))
      out[name] = (s0 + s, c0 + c)
  return out


def ratio(aggregated: dict[str, tuple[float, int]]) -> dict[str, float]:
  """{name: sum / count}; NaN where nothing was counted."""
  return {
    name: (s / c if c else float('nan')) for name, (s, c) in aggregated.items()
  }


def means(values: dict[str, np.ndarray]) -> dict[str, float]:
  """Mean over counted users (via (sum, count)); NaN if no user counts."""
  return ratio(aggregate(values))


def batch_mean(values, batch: int) -> float:
  """The mean of the means of consecutive `batch`-sized blocks of `values`
  (users in ascending id order), the last, smaller block weighing as much
  as a full one: how the DiffuRec and ADRec official code average a metric
  over their evaluation batches of 512 users."""
  values = np.asarray(values, np.float64)
  if batch < 1:
    raise ValueError(f'batch={batch} must be >= 1')
  if not len(values):
    raise ValueError('no values to average')
  blocks = range(0, len(values), batch)
  return float(np.mean([values[i : i + batch].mean() for i in blocks]))


def coverage(topk: np.ndarray, n_items: int, k: int) -> float:
  """Share of all items that appear in at least one user's top k.

  Args:
    topk: int[U, Kmax] ranked item ids; -1 (no candidate) is ignored.
    n_items: I.
    k: cut-off, <= Kmax.

  Returns:
    |distinct items in all users' top k| / I.
  """
  if k > np.shape(topk)[1]:
    raise ValueError(f'k={k} > the {np.shape(topk)[1]} ranked columns')
  items = np.asarray(topk)[:, :k].ravel()
  return len(np.unique(items[items >= 0])) / n_items
