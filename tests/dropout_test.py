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


def test_fewer_bits_are_exact_and_unbiased():
  assert [dropout.exact_bits(k) for k in (0.5, 0.75, 0.9)] == [1, 2, 16]
  x = jnp.ones((999, 7))  # not a multiple of 32 masks per word
  for keep, bits in ((0.5, 1), (0.75, 2)):
    y = np.asarray(dropout.apply(x, 1 - keep, jax.random.key(3), False, bits))
    kept = y != 0
    assert abs(kept.mean() - keep) < 0.01
    np.testing.assert_allclose(y[kept], 1 / keep, rtol=1e-6)
  # Neighbouring masks drawn from one word are not correlated.
  m = np.asarray(dropout.keep_mask(jax.random.key(4), 0.5, (64_000,), 1))
  assert abs(np.corrcoef(m[:-1], m[1:])[0, 1]) < 0.02


def test_mask_layout_is_field_major_over_the_words():
  # Mask e is field e // W of word e % W (W words): the layout every saved
  # run's dropout draws were made with, written out in NumPy.
  key = jax.random.key(5)
  for bits, keep, shape in (
    (1, 0.5, (5, 13)),
    (2, 0.75, (3, 11)),
    (16, 0.9, (7, 3)),
  ):
    n, per = int(np.prod(shape)), 32 // bits
    words = np.asarray(jax.random.bits(key, (-(-n // per),), jnp.uint32))
    e = np.arange(n)
    fields = (words[e % len(words)] >> (bits * (e // len(words)))) & (
      2**bits - 1
    )
    want = (fields < round(keep * 2**bits)).reshape(shape)
    np.testing.assert_array_equal(
      dropout.keep_mask(key, keep, shape, bits), want
    )
