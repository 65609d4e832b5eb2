"""PCGrad against a float64 NumPy reference of the projection rule."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxrec.train import pcgrad


def _reference(g, orders):
  g = np.asarray(g, np.float64)
  out = []
  for i, order in enumerate(orders):
    gi = g[i].copy()
    for j in order:
      if j == i:
        continue
      dot = gi @ g[j]
      if dot < 0:
        gi -= dot / (g[j] @ g[j]) * g[j]
    out.append(gi)
  return np.sum(out, axis=0)


def test_two_conflicting_tasks_by_hand():
  g = jnp.array([[1.0, 0.0], [-1.0, 1.0]])
  got = pcgrad.combine({'w': g}, jax.random.key(0))['w']
  # g1 - (g1.g2 / |g2|^2) g2 = [0.5, 0.5]; g2 - (g2.g1 / |g1|^2) g1 = [0, 1]
  np.testing.assert_allclose(got, [0.5, 1.5], rtol=1e-6)
  agree = jnp.array([[1.0, 0.0], [1.0, 1.0]])  # no conflict: plain sum
  np.testing.assert_allclose(
    pcgrad.combine({'w': agree}, jax.random.key(0))['w'], [2.0, 1.0]
  )


def test_three_tasks_on_a_pytree_match_numpy():
  rng = np.random.default_rng(0)
  a = rng.standard_normal((3, 4, 2)).astype(np.float32)
  b = rng.standard_normal((3, 5)).astype(np.float32)
  key = jax.random.key(3)
  got = jax.jit(pcgrad.combine)({'a': a, 'b': b}, key)
  keys = jax.random.split(key, 3)
  orders = [np.asarray(jax.random.permutation(k, 3)) for k in keys]
  flat = np.concatenate([a.reshape(3, -1), b], axis=1)
  want = _reference(flat, orders)
  np.testing.assert_allclose(
    got['a'].reshape(-1), want[:8], rtol=1e-5, atol=1e-6
  )
  np.testing.assert_allclose(got['b'], want[8:], rtol=1e-5, atol=1e-6)
