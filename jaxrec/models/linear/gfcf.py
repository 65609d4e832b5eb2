"""GF-CF (Shen et al., CIKM 2021): graph filters over the normalised
item-item graph, no training.

    R~ = D_U^-1/2 R D_I^-1/2,
    W  = R~^T R~  +  alpha  D_I^-1/2 V_k^T V_k D_I^1/2,

the linear filter plus the ideal low-pass filter from the top `factors`
right singular vectors V_k of R~ (official code: k = 256, alpha = 0.3;
alpha = 0 is the linear filter alone). A user's scores are r_u W. Items
with no train interaction get zero weights.
"""

import ml_collections as mlc
import numpy as np
import scipy.sparse as sp

from jaxrec.models.linear import base, puresvd


def fit(train: sp.csr_matrix, config: mlc.ConfigDict) -> dict:
  """{'weights': float32[I, I]} of the filters above."""
  x = sp.csr_matrix(train, dtype=np.float64)
  n = x.shape[1]
  base.check_dense_memory('GF-CF', n, 3, config.max_dense_bytes)
  inv_sqrt = lambda d: np.divide(
    1.0, np.sqrt(d), out=np.zeros_like(d), where=d > 0
  )
  d_u = inv_sqrt(np.asarray(x.sum(axis=1)).ravel())
  item_deg = np.asarray(x.sum(axis=0)).ravel()
  d_i = inv_sqrt(item_deg)
  norm = sp.diags(d_u) @ x @ sp.diags(d_i)
  w = np.asarray((norm.T @ norm).todense())
  if config.alpha:
    vt = puresvd.top_right_vectors(norm, config.factors, config.seed)
    w += (
      config.alpha * (d_i[:, None] * (vt.T @ vt)) * np.sqrt(item_deg)[None, :]
    )
  return {'weights': base.flush_denormals(w.astype(np.float32))}


MODEL = base.LinearModel('gfcf', fit, weights='weights')
