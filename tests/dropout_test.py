"""16-bit dropout: keep rate, scaling, determinism."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxrec.nn import dropout


def test_keep_rate_and_inverse_scaling():
  x = jnp.ones((1000, 1001))  # odd size: the last word is half used
  y = np.asarray(dropout.apply(x, 0.3, jax.random.key(0), False))
  kept = y != 0
  assert abs(kept.mean() - 0.7) < 3e-3
  scale = 65536 / round(0.7 * 65536)
  np.testing.assert_allclose(y[kept], scale, rtol=1e-6)
  np.testing.assert_allclose(y.mean(), 1.0, atol=5e-3)  # unbiased


def test_identity_when_deterministic_and_masks_differ_by_key():
  x = jnp.arange(12.0).reshape(3, 4)
  assert dropout.apply(x, 0.5, None, True) is x
  a = dropout.keep_mask(jax.random.key(1), 0.5, (64, 64))
  b = dropout.keep_mask(jax.random.key(2), 0.5, (64, 64))
  assert a.shape == (64, 64) and not np.array_equal(a, b)
  np.testing.assert_array_equal(
    a, dropout.keep_mask(jax.random.key(1), 0.5, (64, 64))
  )
  assert not dropout.apply(x, 1.0, jax.random.key(0), False).any()
