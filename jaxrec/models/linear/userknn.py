"""UserKNN: user-based collaborative filtering with shrunk cosine similarity.

    s(u, v) = <x_u, x_v> / (|x_u| |x_v| + shrink),   s(u, u) = 0,

with x_u the binary train row of user u. Each user keeps its `k` most
similar users (row-wise top-k, Dacrema et al., RecSys 2019), and its score
for item i is sum_v s(u, v) x_v[i]. The state is sparse (U x k neighbours
and the train matrix); a chunk of users is scored on the host as sparse
rows @ the sparse train matrix, so neither users x users nor users x items
is ever dense beyond one chunk. A user is read through its fitted
neighbours (its train row), not through the history given at ranking.
"""

import ml_collections as mlc
import numpy as np
import scipy.sparse as sp

from jaxrec.models.linear import base, itemknn

_BLOCK = 1024  # users whose similarity rows are formed at a time


def fit(train: sp.csr_matrix, config: mlc.ConfigDict) -> dict:
  """Shrunk-cosine user similarity pruned to the top-k per user.

  Args:
    train: float32[U, I] binary interactions.
    config: `k` (neighbours kept per user), `shrink` (>= 0).

  Returns:
    {'neighbours': csr float32[U, U] with at most k entries per row,
     'train': csr float32[U, I]}.
  """
  if config.k < 1 or config.shrink < 0:
    raise ValueError(f'UserKNN needs k >= 1 and shrink >= 0, got {config}')
  x = sp.csr_matrix(train, dtype=np.float32)
  n = x.shape[0]
  norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1), np.float64)).ravel()
  xt = x.T.tocsc()
  k = min(config.k, n - 1)
  blocks = []
  for start in range(0, n, _BLOCK):
    stop = min(start + _BLOCK, n)
    # [n, block]: column j is user start + j's overlaps with every user.
    block = np.asarray((x @ xt[:, start:stop]).todense(), np.float64)
    denom = norms[:, None] * norms[None, start:stop] + config.shrink
    sim = np.divide(block, denom, out=np.zeros_like(block), where=denom > 0)
    sim[np.arange(start, stop), np.arange(stop - start)] = 0.0
    if k < n - 1:
      sim = itemknn.keep_top_k(sim, k)
    blocks.append(sp.csr_matrix(sim.T.astype(np.float32)))
  return {'neighbours': sp.vstack(blocks).tocsr(), 'train': x}


def host_score(state: dict, users: np.ndarray) -> np.ndarray:
  """float32[B, I]: the neighbours' train rows weighted by similarity."""
  rows = state['neighbours'][np.asarray(users)] @ state['train']
  return np.asarray(rows.todense(), np.float32)


MODEL = base.LinearModel('userknn', fit, host_score=host_score)
