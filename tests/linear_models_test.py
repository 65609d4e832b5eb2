"""Closed-form and kNN baselines against float64 NumPy references."""

import ml_collections as mlc
import numpy as np
import pytest
import scipy.sparse as sp

from jaxrec import models
from jaxrec.data import batching, synthetic, types
from jaxrec.models.linear import (
  base,
  ease,
  gfcf,
  ials,
  itemknn,
  puresvd,
  rp3beta,
  slim,
  toppop,
  userknn,
)


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
  small = mlc.ConfigDict({'k': k, 'shrink': shrink, 'max_dense_bytes': 100})
  with pytest.raises(MemoryError, match='ItemKNN on 25 items'):
    itemknn.fit(x_csr, small)


@pytest.mark.parametrize('k,shrink', [(5, 0.0), (3, 10.0), (100, 2.0)])
def test_userknn_matches_reference(k, shrink):
  x_csr, x = _random_csr(seed=k)
  config = mlc.ConfigDict({'k': k, 'shrink': shrink})
  state = userknn.fit(x_csr, config)
  # A user's neighbours are ItemKNN's on the transposed matrix.
  ref = _itemknn_reference(x.T, min(k, x.shape[0] - 1), shrink).T
  np.testing.assert_allclose(state['neighbours'].toarray(), ref, atol=1e-6)
  users = np.array([0, 7, 39, 7])
  scorer = base.LinearScorer(userknn.MODEL, state, x.shape[1])
  assert scorer.params == {}
  batch = scorer.make_batch(None, users)
  got = np.asarray(scorer.score(scorer.params, batch))
  np.testing.assert_allclose(got, ref[users] @ x, rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match='k >= 1'):
    userknn.fit(x_csr, mlc.ConfigDict({'k': 0, 'shrink': 0.0}))


def test_slim_columns_satisfy_the_elastic_net_optimality_conditions():
  x_csr, x = _random_csr(n_users=60, n_items=12, density=0.3)
  config = mlc.ConfigDict(
    {
      'alpha': 0.01,
      'l1_ratio': 0.3,
      'k': 100,
      'max_iter': 5000,
      'tol': 1e-12,
      'max_dense_bytes': 2**30,
    }
  )
  w = slim.fit(x_csr, config)['weights'].astype(np.float64)
  assert np.all(w >= 0) and np.all(np.diag(w) == 0)
  assert not np.any(w[:, 3])  # nobody has item 3
  n, a, r = x.shape[0], config.alpha, config.l1_ratio
  for j in range(x.shape[1]):
    others = np.arange(x.shape[1]) != j
    xo = x[:, others]
    # KKT of min |x_j - X w|^2 / (2n) + a r |w|_1 + a (1 - r) |w|^2 / 2,
    # w >= 0: the gradient of the smooth part g satisfies g = -a r where
    # w > 0 and g >= -a r where w = 0.
    g = -xo.T @ (x[:, j] - xo @ w[others, j]) / n + a * (1 - r) * w[others, j]
    on = w[others, j] > 0
    np.testing.assert_allclose(g[on], -a * r, atol=1e-6)
    assert np.all(g[~on] >= -a * r - 1e-6)
  pruned = slim.fit(x_csr, mlc.ConfigDict({**config.to_dict(), 'k': 2}))
  assert (np.count_nonzero(pruned['weights'], axis=0) <= 2).all()
  with pytest.raises(MemoryError, match='SLIM on 12 items'):
    slim.fit(x_csr, mlc.ConfigDict({**config.to_dict(), 'max_dense_bytes': 10}))


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


def _cfg(**kw):
  return mlc.ConfigDict({'max_dense_bytes': 2**30, 'seed': 0, **kw})


def test_rp3beta_matches_the_random_walk_reference():
  x_csr, x = _random_csr()
  alpha, beta, k = 0.8, 0.4, 5
  deg_u, deg_i = x.sum(1), x.sum(0)
  n = x.shape[1]
  w = np.zeros((n, n))
  for i in range(n):
    for j in range(n):
      if i == j or deg_i[i] == 0:
        continue
      walk = [
        (x[u, i] / deg_i[i]) ** alpha * (x[u, j] / deg_u[u]) ** alpha
        for u in range(x.shape[0])
        if x[u, i] and x[u, j]
      ]
      w[i, j] = sum(walk) / max(deg_i[j], 1.0) ** beta
  keep = np.zeros_like(w, bool)
  for i in range(n):  # each row keeps its k largest (lowest ids on ties)
    order = sorted(range(n), key=lambda j: (-w[i, j], j))[:k]
    keep[i, order] = True
  want = np.where(keep, w, 0.0)
  got = rp3beta.fit(x_csr, _cfg(alpha=alpha, beta=beta, k=k))['weights']
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
  assert (np.count_nonzero(got, axis=1) <= k).all()
  with pytest.raises(MemoryError, match='RP3beta on 25 items needs'):
    rp3beta.fit(x_csr, _cfg(alpha=1.0, beta=0.0, k=5, max_dense_bytes=100))


def test_puresvd_is_the_projection_on_the_top_right_singular_vectors():
  x_csr, x = _random_csr()
  _, _, vt = np.linalg.svd(x)
  want = vt[:6].T @ vt[:6]  # the projection is unique up to sign flips
  got = puresvd.fit(x_csr, _cfg(factors=6))['weights']
  np.testing.assert_allclose(got, want, atol=2e-5)
  with pytest.raises(ValueError, match='40 factors'):
    puresvd.fit(x_csr, _cfg(factors=40))


def test_gfcf_is_the_linear_plus_ideal_low_pass_filter():
  x_csr, x = _random_csr()
  deg_u, deg_i = x.sum(1), x.sum(0)
  d_u = np.where(deg_u > 0, deg_u, np.inf) ** -0.5  # empty rows: 0
  d_i = np.where(deg_i > 0, deg_i, np.inf) ** -0.5
  norm = d_u[:, None] * x * d_i[None, :]
  _, _, vt = np.linalg.svd(norm)
  low_pass = np.diag(d_i) @ vt[:5].T @ vt[:5] @ np.diag(np.sqrt(deg_i))
  want = norm.T @ norm + 0.3 * low_pass
  got = gfcf.fit(x_csr, _cfg(alpha=0.3, factors=5))['weights']
  np.testing.assert_allclose(got, want, atol=2e-5)
  linear = gfcf.fit(x_csr, _cfg(alpha=0.0, factors=5))['weights']
  np.testing.assert_allclose(linear, norm.T @ norm, atol=1e-6)


def test_fewer_factors_reuse_the_top_of_a_larger_svd():
  x_csr, x = _random_csr(seed=4)
  puresvd._CACHE.clear()
  big = puresvd.top_right_vectors(x_csr, 8, seed=0)
  small = puresvd.top_right_vectors(sp.csr_matrix(x), 3, seed=0)  # a hit
  assert len(puresvd._CACHE) == 1
  _, _, vt = np.linalg.svd(x)
  np.testing.assert_allclose(np.abs(big), np.abs(vt[:8]), atol=1e-6)
  np.testing.assert_allclose(np.abs(small), np.abs(vt[:3]), atol=1e-6)


def _ials_cfg(**kw):
  base_cfg = dict(
    factors=4, reg=0.05, alpha0=0.2, nu=1.0, epochs=1, init_std=0.5, budget=64
  )
  return mlc.ConfigDict({'seed': 3, **base_cfg, **kw})


def test_ials_sweep_matches_numpy_least_squares():
  x_csr, x = _random_csr()
  cfg = _ials_cfg()
  w, h = (a.astype(np.float64) for a in ials.init_factors(40, 25, cfg))

  def solve(x, other):  # each row's exact least squares, float64
    lam = cfg.reg * (x.sum(1) + cfg.alpha0 * x.shape[1]) ** cfg.nu
    out = []
    for r in range(x.shape[0]):
      a = cfg.alpha0 * other.T @ other + (other.T * x[r]) @ other
      out.append(np.linalg.solve(a + lam[r] * np.eye(4), other.T @ x[r]))
    return np.array(out)

  w = solve(x, h)
  h = solve(x.T, w)
  got = ials.fit(x_csr, cfg)  # one sweep; a few rows per padded chunk
  np.testing.assert_allclose(got['users'], w, rtol=1e-3, atol=1e-5)
  np.testing.assert_allclose(got['items'], h, rtol=1e-3, atol=1e-5)
  # Exact block coordinate descent: the objective never goes up.
  losses = [
    ials.objective(
      x, *ials.fit(x_csr, _ials_cfg(epochs=n)).values(), 0.2, 0.05, 1.0
    )
    for n in (1, 2, 4)
  ]
  assert losses[0] >= losses[1] >= losses[2]
  scorer = base.LinearScorer(ials.MODEL, got, 25)
  users = np.array([0, 7, 39])
  batch = scorer.make_batch(types.Part(x_csr.indptr, x_csr.indices), users)
  np.testing.assert_allclose(
    scorer.score(scorer.params, batch),
    got['users'][users] @ got['items'].T,
    rtol=1e-5,
  )
