"""PureSVD (Cremonesi et al., RecSys 2010): a truncated SVD of the binary
interaction matrix, X ~ U S V^T with `factors` singular triplets; a user's
scores are x_u V V^T, so W = V V^T (dense items x items). ARPACK's start
vector comes from `seed`, so a fit is repeatable.
"""

import hashlib

import ml_collections as mlc
import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg

from jaxrec.models.linear import base


# The largest decomposition computed per matrix (content digest, seed): a
# grid over k (GF-CF's alpha x factors) computes each matrix's SVD once per
# larger k, not once per point. Two matrices kept.
_CACHE: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}


def top_right_vectors(x: sp.spmatrix, k: int, seed: int) -> np.ndarray:
  """float64[k, I]: the right singular vectors of the k largest singular
  values of `x` (k < min(x.shape)); a request for fewer than an earlier one
  on the same matrix takes the top k of that decomposition."""
  if not 1 <= k < min(x.shape):
    raise ValueError(f'{k} factors; expected 1 <= factors < {min(x.shape)}')
  x = sp.csr_matrix(x, dtype=np.float64)
  digest = hashlib.sha256()
  for part in (x.indptr, x.indices, x.data):
    digest.update(np.ascontiguousarray(part).tobytes())
  key = (x.shape, digest.hexdigest(), seed)
  if key in _CACHE and len(_CACHE[key][0]) >= k:
    values, vt = _CACHE[key]
  else:
    _, values, vt = scipy.sparse.linalg.svds(x, k=k, random_state=seed)
    while len(_CACHE) >= 2:
      _CACHE.pop(next(iter(_CACHE)))
    _CACHE[key] = (values, vt)
  return vt[np.argsort(-values, kind='stable')[:k]]


def fit(train: sp.csr_matrix, config: mlc.ConfigDict) -> dict:
  """{'weights': float32[I, I] = V V^T} of `config.factors` triplets."""
  base.check_dense_memory('PureSVD', train.shape[1], 2, config.max_dense_bytes)
  vt = top_right_vectors(train, config.factors, config.seed)
  return {'weights': base.flush_denormals((vt.T @ vt).astype(np.float32))}


MODEL = base.LinearModel('puresvd', fit, weights='weights')
