"""The native CPU top-k against a float64 NumPy sort, and its build."""

import os
import pathlib
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrec import native


def _reference(x: np.ndarray, k: int):
  """Sort by (-value, index) in float64; -0.0 == 0.0 as in the kernel."""
  x64 = np.asarray(x, np.float64)
  flat = x64.reshape(-1, x64.shape[-1])
  idx = np.arange(flat.shape[1])
  order = np.stack([np.lexsort((idx, -row))[:k] for row in flat])
  values = np.take_along_axis(flat, order, axis=1)
  shape = x.shape[:-1] + (k,)
  return values.reshape(shape), order.reshape(shape)


def test_kernel_builds_here():
  # CI machines have g++; only an explicit opt-out turns the kernel off.
  expected = os.environ.get('JAXREC_NATIVE', '1') != '0'
  assert native.top_k_kernel() is expected


needs_kernel = pytest.mark.skipif(
  os.environ.get('JAXREC_NATIVE') == '0', reason='JAXREC_NATIVE=0 set'
)


@needs_kernel
@pytest.mark.parametrize('shape', [(5, 300), (2, 3, 50), (1, 16), (3, 17)])
@pytest.mark.parametrize('kind', ['normal', 'ties', 'signed_zero', 'inf'])
def test_matches_numpy_sort(shape, kind):
  rng = np.random.default_rng(zlib.crc32(repr((shape, kind)).encode()))
  x = rng.standard_normal(shape).astype(np.float32)
  if kind == 'ties':
    x = np.round(x)  # few distinct values: ties everywhere, also at k
  elif kind == 'signed_zero':
    x = np.where(rng.random(shape) < 0.5, 0.0, -0.0).astype(np.float32)
    x[..., -1] = 1.0
  elif kind == 'inf':
    x[rng.random(shape) < 0.7] = -np.inf
    x[..., 0] = -np.inf
    x[..., -2] = np.inf
  n = shape[-1]
  for k in sorted({1, 7, min(n, 100), n}):
    values, idx = jax.jit(native.top_k, static_argnums=1)(x, k)
    want_values, want_idx = _reference(x, k)
    np.testing.assert_array_equal(idx, want_idx)
    np.testing.assert_array_equal(values, want_values)
    assert values.dtype == np.float32 and idx.dtype == np.int32


@needs_kernel
def test_jit_vmap_and_plain_agree():
  x = jnp.asarray(np.random.default_rng(1).standard_normal((4, 6, 40)))
  x = x.astype(jnp.float32)
  plain = native.top_k(x, 5)
  jitted = jax.jit(native.top_k, static_argnums=1)(x, 5)
  mapped = jax.vmap(lambda r: native.top_k(r, 5))(x)
  for got in (jitted, mapped):
    np.testing.assert_array_equal(got[0], plain[0])
    np.testing.assert_array_equal(got[1], plain[1])


@needs_kernel
def test_nan_after_the_first_k_never_enters():
  x = np.arange(30, dtype=np.float32)[None].repeat(2, 0)
  x[1, 20] = np.nan
  values, idx = native.top_k(x, 3)
  assert idx.tolist() == [[29, 28, 27], [29, 28, 27]]
  assert not np.isnan(values).any()


def test_bad_arguments_are_named():
  x = jnp.zeros((2, 5), jnp.float32)
  with pytest.raises(ValueError, match=r'k=6 must be in \[1, 5\]'):
    native.top_k(x, 6)
  with pytest.raises(TypeError, match='float32'):
    native.top_k(x.astype(jnp.bfloat16), 2)


@needs_kernel
def test_build_is_cached_and_failures_name_the_file(tmp_path):
  source = tmp_path / 'topk.cc'
  source.write_bytes(native._SOURCE.read_bytes())
  library = native._build(source, tmp_path / 'out')
  stamp = library.stat().st_mtime_ns
  assert native._build(source, tmp_path / 'out') == library
  assert library.stat().st_mtime_ns == stamp  # not compiled again
  assert [p.name for p in (tmp_path / 'out').iterdir()] == [library.name]

  broken = tmp_path / 'broken.cc'
  broken.write_text('this is not C++\n')
  with pytest.raises(OSError, match='compiling .*broken.cc failed'):
    native._build(broken, tmp_path / 'out')
  # Failed attempts leave no partial library behind.
  assert [p.name for p in (tmp_path / 'out').iterdir()] == [library.name]


def test_missing_compiler_is_named(tmp_path, monkeypatch):
  monkeypatch.setenv('CXX', 'no-such-compiler-xyz')
  source = tmp_path / 'topk.cc'
  source.write_text(pathlib.Path(native._SOURCE).read_text())
  with pytest.raises(OSError, match='no-such-compiler-xyz'):
    native._build(source, tmp_path / 'out')
