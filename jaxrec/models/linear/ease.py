"""EASE: embarrassingly shallow autoencoder (Steck, WWW 2019).

    B = argmin ||X - X B||^2 + lam ||B||^2  s.t. diag(B) = 0
      = I - P diag(1 / diag(P)),  P = (X^T X + lam I)^-1.

The fit is one dense SPD inverse over items: Cholesky (LAPACK potrf) then the
inverse from the factor (potri), about n^3 flops. The Gram matrix, its factor
and inverse share one buffer; with the mirrored inverse and the weights the
peak is about 4 x items^2 x 4 bytes (float32; x 8 for float64), e.g. 0.2 GiB
for ML-1M's 3.7k items and 2.2 GiB for Beauty's 12k. `max_dense_bytes`
refuses a larger fit with a clear error rather than swapping the machine to
death.
"""

import ml_collections as mlc
import numpy as np
import scipy.linalg
import scipy.sparse as sp

from jaxrec.models.linear import base


def dense_bytes(n_items: int, dtype: str) -> int:
  """Peak dense memory of a fit: Gram/factor, its mirror and the weights."""
  return 4 * n_items * n_items * np.dtype(dtype).itemsize


def fit(train: sp.csr_matrix, config: mlc.ConfigDict) -> dict:
  """Closed-form EASE weights.

  Args:
    train: float32[U, I] binary interactions.
    config: `l2` (lambda), `dtype` ('float32' or 'float64') and
      `max_dense_bytes` (refuse larger fits).

  Returns:
    {'weights': float32[I, I]} with a zero diagonal.
  """
  n = train.shape[1]
  need = dense_bytes(n, config.dtype)
  if need > config.max_dense_bytes:
    raise MemoryError(
      f'EASE on {n} items needs {need / 2**30:.1f} GiB of dense memory'
      f' (items^2 x {np.dtype(config.dtype).itemsize} bytes x 4), above'
      f' max_dense_bytes={config.max_dense_bytes / 2**30:.1f} GiB; raise'
      ' config.model.max_dense_bytes or use a sparse model (ItemKNN)'
    )
  if config.l2 <= 0:
    raise ValueError(f'EASE l2 must be > 0, got {config.l2}')
  x = train.astype(config.dtype)
  gram = np.asarray((x.T @ x).todense(), dtype=config.dtype, order='F')
  gram[np.diag_indices(n)] += config.l2
  potrf, potri = scipy.linalg.get_lapack_funcs(('potrf', 'potri'), (gram,))
  factor, info = potrf(gram, lower=True, overwrite_a=True, clean=False)
  if info != 0:
    raise np.linalg.LinAlgError(f'EASE: Cholesky failed (info={info})')
  inv, info = potri(factor, lower=True, overwrite_c=True)
  if info != 0:
    raise np.linalg.LinAlgError(f'EASE: inverse failed (info={info})')
  # potri fills the lower triangle; mirror it.
  p = np.tril(inv) + np.tril(inv, -1).T
  weights = p / (-np.diag(p))[None, :]
  weights[np.diag_indices(n)] = 0.0
  return {'weights': weights.astype(np.float32)}


MODEL = base.LinearModel('ease', fit, weights='weights')
