"""SLIM (Ning & Karypis, ICDM 2011) with ElasticNet, as tuned by Dacrema et
al. (RecSys 2019): for every item j,

    w_j = argmin_{w >= 0, w_j = 0}  |x_j - X w|^2 / (2 U)
                                    + alpha l1_ratio |w|_1
                                    + alpha (1 - l1_ratio) |w|^2 / 2,

solved by scikit-learn's coordinate descent (`ElasticNet(positive=True)`)
on the sparse train matrix with column j zeroed, then pruned to its
`k` largest weights. A user's scores are its history row @ W. Memory: the
train matrix, one dense target column, and W as a dense items x items
float32 matrix (refused above `max_dense_bytes`).
"""

import warnings

import ml_collections as mlc
import numpy as np
import scipy.sparse as sp

from jaxrec.models.linear import base


def fit(train: sp.csr_matrix, config: mlc.ConfigDict) -> dict:
  """{'weights': float32[I, I]}: column j holds item j's regression."""
  from sklearn import exceptions, linear_model  # heavy; only when fitted

  if config.alpha <= 0 or not 0 <= config.l1_ratio <= 1 or config.k < 1:
    raise ValueError(
      f'SLIM needs alpha > 0, 0 <= l1_ratio <= 1, k >= 1, got {config}'
    )
  x = sp.csc_matrix(train, dtype=np.float64)
  x.sum_duplicates()
  n = x.shape[1]
  base.check_dense_memory('SLIM', n, 1, config.max_dense_bytes)
  model = linear_model.ElasticNet(
    alpha=config.alpha,
    l1_ratio=config.l1_ratio,
    positive=True,
    fit_intercept=False,
    copy_X=False,
    precompute=False,
    selection='random',
    max_iter=int(config.max_iter),
    tol=float(config.tol),
    random_state=0,
  )
  out = np.zeros((n, n), np.float32)
  k = min(int(config.k), n - 1)
  with warnings.catch_warnings():
    # A capped number of sweeps is part of the method (max_iter).
    warnings.simplefilter('ignore', exceptions.ConvergenceWarning)
    for j in range(n):
      lo, hi = x.indptr[j], x.indptr[j + 1]
      if lo == hi:
        continue  # nobody has item j: its column stays zero
      y = np.asarray(x[:, j].todense()).ravel()
      saved = x.data[lo:hi].copy()
      x.data[lo:hi] = 0.0
      model.fit(x, y)
      x.data[lo:hi] = saved
      coef = model.coef_
      nz = np.flatnonzero(coef)
      if len(nz) > k:
        nz = nz[np.argsort(-coef[nz], kind='stable')[:k]]
      out[nz, j] = coef[nz]
  return {'weights': out}


MODEL = base.LinearModel('slim', fit, weights='weights')
