"""RP3beta (Paudel et al., TiiS 2017; tuned as in Dacrema et al., RecSys 2019).

A three-step random walk item -> user -> item on the bipartite graph with
transition probabilities raised to `alpha`, re-weighted by the target's
popularity to the power -`beta`:

    W[i, j] = sum_u P(u | i)^alpha P(j | u)^alpha / deg(j)^beta,  W[i, i] = 0,

P(u | i) = x_ui / deg(i), P(j | u) = x_uj / deg(u). Each row i keeps its `k`
largest entries (the items a history item votes for); a user's score for j
is the sum of W[i, j] over the history. Dense items x items weights.
"""

import ml_collections as mlc
import numpy as np
import scipy.sparse as sp

from jaxrec.models.linear import base, itemknn


def fit(train: sp.csr_matrix, config: mlc.ConfigDict) -> dict:
  """RP3beta weights.

  Args:
    train: float32[U, I] binary interactions.
    config: alpha (> 0), beta (>= 0), k (>= 1), max_dense_bytes.

  Returns:
    {'weights': float32[I, I]}, each row holding at most k non-zeros.
  """
  if config.alpha <= 0 or config.beta < 0 or config.k < 1:
    raise ValueError(f'RP3beta needs alpha > 0, beta >= 0, k >= 1: {config}')
  x = sp.csr_matrix(train, dtype=np.float64)
  n = x.shape[1]
  base.check_dense_memory('RP3beta', n, 2, config.max_dense_bytes)
  user_deg = np.asarray(x.sum(axis=1)).ravel()
  item_deg = np.asarray(x.sum(axis=0)).ravel()
  safe = lambda d: np.where(d > 0, d, 1.0)
  p_ui = (sp.diags(1.0 / safe(user_deg)) @ x).power(config.alpha)  # P(j | u)
  p_iu = (x @ sp.diags(1.0 / safe(item_deg))).T.power(config.alpha)  # P(u | i)
  w = np.asarray((p_iu @ p_ui).todense())
  w /= safe(item_deg)[None, :] ** config.beta
  w[np.diag_indices(n)] = 0.0
  k = min(config.k, n - 1)
  if k < n - 1:
    # Rows keep their top k: the transposed problem of ItemKNN's columns.
    w = np.ascontiguousarray(itemknn.keep_top_k(w.T, k).T)
  return {'weights': base.flush_denormals(w.astype(np.float32))}


MODEL = base.LinearModel('rp3beta', fit, weights='weights')
