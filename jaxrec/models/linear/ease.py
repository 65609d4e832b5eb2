"""EASE: embarrassingly shallow autoencoder (Steck, WWW 2019).

    B = argmin ||X - X B||^2 + lam ||B||^2  s.t. diag(B) = 0
      = I - P diag(1 / diag(P)),  P = (X^T X + lam I)^-1.

The fit is one dense SPD inverse over items: Cholesky (LAPACK potrf) then the
inverse from the factor (potri), about n^3 flops. The Gram matrix, its
factor, the inverse and the weights share one items x items buffer, so the
peak is about 2 x items^2 x 4 bytes with headroom (float32; x 8 for float64),
e.g. 0.1 GiB for ML-1M's 3.7k items and 1.1 GiB for Beauty's 12k.
`max_dense_bytes` refuses a larger fit with a clear error rather than
swapping the machine to death.
"""

import ml_collections as mlc
import numpy as np
import scipy.linalg
import scipy.sparse as sp

from jaxrec.models.linear import base


def dense_bytes(n_items: int, dtype: str) -> int:
  """Peak dense memory of a fit: one items x items buffer, plus headroom.

  The Gram matrix, its Cholesky factor, the inverse and the weights all live
  in one buffer; the Gram product's sparse intermediate and the float32 copy
  of a float64 fit add up to about as much again.
  """
  return 2 * n_items * n_items * np.dtype(dtype).itemsize


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
      f' (items^2 x {np.dtype(config.dtype).itemsize} bytes x 2), above'
      f' max_dense_bytes={config.max_dense_bytes / 2**30:.1f} GiB; raise'
      ' config.model.max_dense_bytes or use a sparse model (ItemKNN)'
    )
  if config.l2 <= 0:
    raise ValueError(f'EASE l2 must be > 0, got {config.l2}')
  gram = lower_gram(train.astype(config.dtype))
  gram[np.diag_indices(n)] += config.l2
  potrf, potri = scipy.linalg.get_lapack_funcs(('potrf', 'potri'), (gram,))
  factor, info = potrf(gram, lower=True, overwrite_a=True, clean=False)
  if info != 0:
    raise np.linalg.LinAlgError(f'EASE: Cholesky failed (info={info})')
  p, info = potri(factor, lower=True, overwrite_c=True)
  if info != 0:
    raise np.linalg.LinAlgError(f'EASE: inverse failed (info={info})')
  _mirror_lower(p)
  # p is symmetric and Fortran-ordered; its transpose is the same matrix in C
  # order, which scoring needs (csr @ W reads rows of W: 20x faster).
  p = p.T
  p /= -np.diag(p)[None, :]
  p[np.diag_indices(n)] = 0.0
  return {'weights': base.flush_denormals(p.astype(np.float32, copy=False))}


def lower_gram(x: sp.csr_matrix) -> np.ndarray:
  """X^T X, Fortran-ordered; only the lower triangle is meaningful.

  Users whose rows hold at least I / 32 items go through a dense BLAS syrk,
  the rest through scipy's sparse product: a sparse product costs about
  len^2 slow multiply-adds per user, a dense one I^2 / 2 fast ones, and
  I / 32 is where they cross on a CPU. On ML-1M a quarter of the users are
  dense enough, and the Gram takes 0.15 s instead of 0.24 s.
  """
  n = x.shape[1]
  dense_rows = np.diff(x.indptr) * 32 >= n
  light = x[~dense_rows]
  gram = (light.T @ light).toarray(order='F')
  if dense_rows.any():
    heavy = np.asfortranarray(x[dense_rows].toarray())
    syrk = scipy.linalg.get_blas_funcs('syrk', (heavy,))
    gram += syrk(1.0, heavy, trans=1, lower=1)
  return gram


def _mirror_lower(a: np.ndarray, block: int = 512) -> None:
  """Copies the lower triangle onto the upper one, in place, by blocks.

  potri fills only the lower triangle; block copies keep the transposed
  reads cache-friendly and avoid full-size temporaries.
  """
  n = a.shape[0]
  for i in range(0, n, block):
    j = min(i + block, n)
    a[i:j, j:] = a[j:, i:j].T
    tile = a[i:j, i:j]
    tile[np.triu_indices(j - i, 1)] = tile.T[np.triu_indices(j - i, 1)]


MODEL = base.LinearModel('ease', fit, weights='weights')
