"""ItemKNN: item-based collaborative filtering with shrunk cosine similarity.

    s(i, j) = <x_i, x_j> / (|x_i| |x_j| + shrink),   s(i, i) = 0,

with x_i the binary column of item i. Each item j keeps its `k` most similar
items i (column-wise top-k, as in the tuned baselines of Dacrema et al.,
RecSys 2019), and a user's score for j is the sum of s(i, j) over the items i
in the user's history. The pruned similarity is stored dense (items^2 x 4
bytes, 0.6 GiB for 12k items) so scoring is one matmul per chunk of users.
"""

import ml_collections as mlc
import numpy as np
import scipy.sparse as sp

from jaxrec.models.linear import base

_BLOCK = 1024  # columns pruned at a time, to bound the temporaries


def fit(train: sp.csr_matrix, config: mlc.ConfigDict) -> dict:
  """Shrunk-cosine similarity pruned to the top-k per column.

  Args:
    train: float32[U, I] binary interactions.
    config: `k` (neighbours kept per item), `shrink` (>= 0), optional
      `max_dense_bytes` (refuses a larger dense similarity).

  Returns:
    {'similarity': float32[I, I]}, column j holding at most k non-zeros.
  """
  if config.k < 1 or config.shrink < 0:
    raise ValueError(f'ItemKNN needs k >= 1 and shrink >= 0, got {config}')
  x = sp.csc_matrix(train, dtype=np.float32)
  n = x.shape[1]
  limit = config.get('max_dense_bytes', None)
  if limit is not None:
    base.check_dense_memory('ItemKNN', n, 1, limit)
  norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=0), np.float64)).ravel()
  cooc = (x.T @ x).tocsc()
  out = np.zeros((n, n), np.float32)
  k = min(config.k, n - 1)
  for start in range(0, n, _BLOCK):
    stop = min(start + _BLOCK, n)
    block = np.asarray(cooc[:, start:stop].todense(), np.float64)
    denom = norms[:, None] * norms[None, start:stop] + config.shrink
    sim = np.divide(block, denom, out=np.zeros_like(block), where=denom > 0)
    sim[np.arange(start, stop), np.arange(stop - start)] = 0.0
    if k < n - 1:
      sim = keep_top_k(sim, k)
    out[:, start:stop] = sim
  return {'similarity': base.flush_denormals(out)}


def keep_top_k(sim: np.ndarray, k: int) -> np.ndarray:
  """Zeroes all but the k largest entries of each column.

  Ties at the k-th value keep the lower row ids. Linear time per column
  (a partition for the k-th value, then one cumulative count of the ties)
  instead of a full sort.
  """
  kth = -np.partition(-sim, k - 1, axis=0)[k - 1]
  above = sim > kth
  at = sim == kth
  room = k - above.sum(axis=0)
  keep = above | (at & (np.cumsum(at, axis=0) <= room))
  return np.where(keep, sim, 0.0)


MODEL = base.LinearModel('itemknn', fit, weights='similarity')
