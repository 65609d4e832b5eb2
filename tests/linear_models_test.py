"""Closed-form and kNN baselines against float64 NumPy references."""

import ml_collections as mlc
import numpy as np
import pytest
import scipy.sparse as sp

from jaxrec import models
from jaxrec.data import batching, synthetic
from jaxrec.models.linear import base, ease, itemknn, toppop


def _random_csr(n_users=40, n_items=25, density=0.2, seed=0):
  rng = np.random.default_rng(seed)
  dense = (rng.random((n_users, n_items)) < density).astype(np.float32)
  dense[:, 3] = 0.0  # an item nobody has: zero norm must not divide by zero
  return sp.csr_matrix(dense), dense.astype(np.float64)


def _ease_config(l2, dtype='float64', max_bytes=2**30):
  return mlc.ConfigDict(
    {'l2': l2, 'dtype': dtype, 'max_dense_bytes': max_bytes}
  )


@pytest.mark.parametrize('dtype,tol', [('float64', 1e-6), ('float32', 2e-4)])
def test_ease_matches_closed_form_reference(dtype, tol):
  x_csr, x = _random_csr()
  l2 = 7.5
  p = np.linalg.inv(x.T @ x + l2 * np.eye(x.shape[1]))
  ref = np.eye(x.shape[1]) - p / np.diag(p)[None, :]
  np.fill_diagonal(ref, 0.0)
  got = ease.fit(x_csr, _ease_config(l2, dtype))['weights']
  np.testing.assert_allclose(got, ref, atol=tol, rtol=tol)
  # The constrained optimum: the gradient is zero off the diagonal.
  grad = (x.T @ x + l2 * np.eye(x.shape[1])) @ got - x.T @ x
  off = ~np.eye(x.shape[1], dtype=bool)
  assert np.abs(grad[off]).max() < 50 * tol * max(1.0, np.abs(x.T @ x).max())


def test_ease_refuses_above_memory_limit():
  x_csr, _ = _random_csr(n_items=25)
  with pytest.raises(MemoryError, match=r'25 items.*max_dense_bytes'):
    ease.fit(x_csr, _ease_config(1.0, 'float32', max_bytes=1000))
  with pytest.raises(ValueError, match='l2'):
    ease.fit(x_csr, _ease_config(0.0))


def _itemknn_reference(x, k, shrink):
  norms = np.sqrt((x * x).sum(0))
  denom = norms[:, None] * norms[None, :] + shrink
  sim = np.where(denom > 0, (x.T @ x) / np.where(denom > 0, denom, 1), 0.0)
  np.fill_diagonal(sim, 0.0)
  out = np.zeros_like(sim)
  for j in range(sim.shape[1]):
    # Stable descending: ties at the cut keep the lower item id.
    keep = sorted(range(sim.shape[0]), key=lambda i: (-sim[i, j], i))[:k]
    out[keep, j] = sim[keep, j]
  return out


@pytest.mark.parametrize('k,shrink', [(5, 0.0), (3, 10.0), (100, 2.0)])
def test_itemknn_matches_reference(k, shrink):
  x_csr, x = _random_csr(seed=k)
  got = itemknn.fit(x_csr, mlc.ConfigDict({'k': k, 'shrink': shrink}))
  ref = _itemknn_reference(x, min(k, x.shape[1] - 1), shrink)
  np.testing.assert_allclose(got['similarity'], ref, atol=1e-6)
  assert (np.count_nonzero(got['similarity'], axis=0) <= k).all()


def test_scores_are_history_times_weights():
  split = synthetic.clustered_split(n_users=30, n_items=20)
  x = split.train.to_csr(split.n_items)
  users = np.array([0, 5, 7, 29])
  rows = batching.dense_rows(split.train, users, split.n_items)
  np.testing.assert_array_equal(rows, x[users].toarray())
  for model, cfg in (
    (ease.MODEL, _ease_config(3.0)),
    (itemknn.MODEL, mlc.ConfigDict({'k': 4, 'shrink': 1.0})),
  ):
    state = model.fit(x, cfg)
    weights = state[model.weights]
    for mode in ('dense', 'sparse', 'auto'):
      scorer = base.LinearScorer(model, state, split.n_items, mode)
      batch = scorer.make_batch(split.train, users)
      if mode != 'auto':  # auto: dense here (10 of 20 items per user)
        assert ('rows' in batch) == (mode == 'dense')
      got = np.asarray(scorer.score(scorer.params, batch))
      np.testing.assert_allclose(got, rows @ weights, rtol=1e-5, atol=1e-6)
  state = toppop.fit(x, None)
  np.testing.assert_array_equal(state['popularity'], x.toarray().sum(0))
  scorer = base.LinearScorer(toppop.MODEL, state, split.n_items)
  got = np.asarray(
    scorer.score(scorer.params, scorer.make_batch(split.train, users))
  )
  assert got.shape == (4, 20) and (got == state['popularity']).all()


def test_registry_rejects_unknown_and_duplicate():
  assert models.get_model('ease') is ease.MODEL
  with pytest.raises(KeyError, match='unknown model'):
    models.get_model('eaze')
  with pytest.raises(ValueError, match='twice'):
    models.register_linear(ease.MODEL)


def test_subnormal_weights_are_flushed():
  w = np.array([1e-39, -1e-40, 1e-30, 0.5], np.float32)
  assert base.flush_denormals(w).tolist() == [0.0, 0.0, np.float32(1e-30), 0.5]


def test_weights_are_c_ordered_for_row_reads():
  x_csr, _ = _random_csr()
  w = ease.fit(x_csr, _ease_config(2.0, 'float32'))['weights']
  assert w.flags['C_CONTIGUOUS']
  s = itemknn.fit(x_csr, mlc.ConfigDict({'k': 3, 'shrink': 1.0}))['similarity']
  assert s.flags['C_CONTIGUOUS']


def test_gram_mixes_dense_and_sparse_users():
  rng = np.random.default_rng(3)
  n_items = 320  # rows with >= 10 items take the dense path
  lengths = np.r_[rng.integers(1, 10, 50), rng.integers(10, 200, 20)]
  dense = np.zeros((len(lengths), n_items), np.float32)
  for u, n in enumerate(lengths):
    dense[u, rng.choice(n_items, n, replace=False)] = 1.0
  got = ease.lower_gram(sp.csr_matrix(dense))
  want = dense.astype(np.float64).T @ dense
  np.testing.assert_array_equal(np.tril(got), np.tril(want))
