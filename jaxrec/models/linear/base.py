"""The surface shared by closed-form and neighbourhood recommenders.

A linear model is `fit(train, config) -> state` on the host (scipy / LAPACK:
these fits are one sparse product and at most one dense factorisation) and a
pure `score(state, batch) -> float32[B, I]` that ranking jits, where `state`
holds one item x item matrix W and a user's scores are its history row @ W.

Two ways to compute history @ W, picked per history part (`score_mode`):
- 'dense': the chunk's history rows as a dense float32 [B, I] block, one
  matmul on the device. Compute-bound: right for dense histories (ML-1M:
  ~70 of 3k items per user) and for accelerators.
- 'sparse': the chunk's CSR rows @ W on the host (scipy), shipped as scores.
  Memory-bound, nnz x I: 50x less work for short histories on many items
  (Beauty: ~8 of 12k items per user), where the dense matmul would be
  6.5 TFLOP per evaluation.
'auto' takes 'sparse' on CPU when the mean history length is under I / 32,
else 'dense'. Either way users x items is never materialised at once.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np
import scipy.sparse as sp

from jaxrec.data import batching, types


@dataclasses.dataclass(frozen=True)
class LinearModel:
  """A registered closed-form / neighbourhood model.

  Attributes:
    name: registry name.
    fit: (train csr float32[U, I], config) -> state, a dict of numpy arrays.
    weights: the key of the item x item matrix W in the state, or None
      for a model that ignores the history (TopPop); its `score` is used.
    score: (state, batch) -> float32[B, I] for a model with no `weights`.
    host_score: (state, users int[B]) -> float32[B, I] computed on the host
      (UserKNN: sparse neighbour rows @ the sparse train matrix), for a
      model whose state is not an item x item matrix.
  """

  name: str
  fit: Callable[[sp.csr_matrix, mlc.ConfigDict], dict]
  weights: str | None = None
  score: Callable[[Any, dict], jnp.ndarray] | None = None
  host_score: Callable[[Any, np.ndarray], np.ndarray] | None = None


def check_dense_memory(name: str, n_items: int, copies: int, limit) -> None:
  """Refuses a fit whose `copies` dense float32 items x items buffers exceed
  `limit` bytes (config.model.max_dense_bytes), naming what it would need."""
  need = copies * n_items * n_items * 4
  if need > limit:
    raise MemoryError(
      f'{name} on {n_items} items needs {need / 2**30:.2f} GiB of dense'
      f' memory ({copies} x items^2 x 4 bytes), above max_dense_bytes ='
      f' {limit / 2**30:.2f} GiB; raise config.model.max_dense_bytes or use'
      ' a model with sparse weights'
    )


def flush_denormals(w: np.ndarray) -> np.ndarray:
  """Sets float32 subnormals (|w| < 1.2e-38) to zero, in place.

  Subnormal operands make x86 multiply-adds 10-20x slower; EASE with a small
  lambda produces many, which made scoring Beauty take 35 s instead of 3.
  Their contribution to any score is below float32 resolution.
  """
  w[np.abs(w) < np.finfo(np.float32).tiny] = 0.0
  return w


class LinearScorer:
  """Adapts a fitted linear model to the ranking scorer interface.

  Attributes:
    params: what the jitted `score` reads: {'weights': W} (read in 'dense'
      mode only), or the state of a model with no weights. Fixed for the
      scorer's life, since ranking puts it on the device once.
  """

  def __init__(
    self,
    model: LinearModel,
    state: dict,
    n_items: int,
    score_mode: str = 'auto',
  ):
    if score_mode not in ('auto', 'dense', 'sparse'):
      raise ValueError(f'score_mode={score_mode!r}; expected auto|dense|sparse')
    self.model, self.n_items, self.score_mode = model, n_items, score_mode
    self._csr_cache = (None, None)  # (history part, its csr)
    self.state = state
    self.params = (
      state if model.weights is None else {'weights': state[model.weights]}
    )
    if model.host_score is not None:
      self.params = {}  # nothing of the state goes to the device

  def _mode(self, history: types.Part) -> str:
    if self.score_mode != 'auto':
      return self.score_mode
    on_cpu = jax.default_backend() == 'cpu'
    mean_len = history.nnz / max(history.n_users, 1)
    return 'sparse' if on_cpu and mean_len * 32 < self.n_items else 'dense'

  def make_batch(self, history: types.Part, users: np.ndarray) -> dict:
    users = np.asarray(users)
    if self.model.host_score is not None:
      return {'scores': self.model.host_score(self.state, users)}
    if self.model.weights is None:
      return {'users': users.astype(np.int32)}
    if self._mode(history) == 'dense':
      return {'rows': batching.dense_rows(history, users, self.n_items)}
    weights = self.params['weights']
    if self._csr_cache[0] is not history:
      self._csr_cache = (history, history.to_csr(self.n_items))
    return {
      'scores': np.asarray(self._csr_cache[1][users] @ weights, np.float32)
    }

  def score(self, params, batch) -> jnp.ndarray:
    if 'scores' in batch:
      return batch['scores']
    if 'rows' in batch:
      return batch['rows'] @ params['weights']
    return self.model.score(params, batch)
