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


# --------------------------------------------------- fused score + top-k ---

_SENTINEL = np.iinfo(np.int32).max


def _fused_reference(users, items, exclude, k, n):
  """float64 scores of items[:n], excluded and NaN/-inf items dropped, then
  top k by (-score, index); empty slots (-inf, 2**31 - 1); NaN flags."""
  with np.errstate(invalid='ignore'):  # inf * 0 is NaN, as in the kernel
    scores = users.astype(np.float64) @ items[:n].astype(np.float64).T
  values = np.full((len(users), k), -np.inf)
  idx = np.full((len(users), k), _SENTINEL, np.int64)
  nan = np.zeros(len(users), bool)
  for u, row in enumerate(scores):
    banned = {int(i) for i in exclude[u] if 0 <= i < n}
    ok = [i for i in range(n) if i not in banned]
    nan[u] = bool(np.isnan(row[ok]).any())
    ok = [i for i in ok if row[i] > -np.inf]  # NaN fails this too
    ok.sort(key=lambda i: (-row[i], i))
    take = ok[:k]
    values[u, : len(take)] = row[take]
    idx[u, : len(take)] = take
  return values, idx, nan


def _fused(users, items, exclude, k, n, target=None):
  packed = native.pack_items(jnp.asarray(items, jnp.float32))
  kwargs = {} if target is None else {'_target': target}
  out = native.score_top_k(
    jnp.asarray(users, jnp.float32),
    packed,
    jnp.asarray(exclude, jnp.int32),
    k,
    n,
    **kwargs,
  )
  return tuple(np.asarray(o) for o in out)


def _check_fused(got, want):
  np.testing.assert_array_equal(got[1], want[1])
  np.testing.assert_array_equal(got[2], want[2])
  np.testing.assert_array_equal(got[0], want[0].astype(np.float32))


def _fused_case(rng, b, d, n_items, e, kind):
  # Multiples of 1/8: every score is exact in float32 whatever the order of
  # summation, so the kernel must match the float64 lists and values exactly
  # (unrounded normals leave near-ties that float32 cannot order).
  users = np.round(rng.standard_normal((b, d)) * 8).astype(np.float32) / 8
  items = np.round(rng.standard_normal((n_items, d)) * 8).astype(np.float32) / 8
  if kind == 'ties':  # small integers: many ties
    users = rng.integers(-1, 2, (b, d)).astype(np.float32)
    items = rng.integers(-1, 2, (n_items, d)).astype(np.float32)
  # Exclusions: real ids, repeats, and padding on both sides of [0, n).
  exclude = rng.integers(-3, n_items + 3, (b, e)).astype(np.int32)
  return users, items, exclude


@needs_kernel
@pytest.mark.parametrize(
  'b, d, n_items, e',
  [(13, 5, 45, 4), (1, 128, 300, 0), (30, 7, 1000, 20), (25, 3, 2000, 3)],
)
@pytest.mark.parametrize('kind', ['normal', 'ties'])
def test_score_top_k_matches_float64(b, d, n_items, e, kind):
  # B not a multiple of the 12-user tile, n not one of the 32-item panel;
  # k <= 32 (sorted slots) and k > 32 (candidate buffer, cut by bisection;
  # with 'ties' the cut meets many scores tied at the k-th place).
  rng = np.random.default_rng(zlib.crc32(f'{b} {d} {n_items} {kind}'.encode()))
  users, items, exclude = _fused_case(rng, b, d, n_items, e, kind)
  for n in sorted({n_items, n_items - 7}):
    top = min(n, native.FUSED_MAX_K)
    for k in sorted({1, 20, 32, 33, 100, top} & set(range(1, top + 1))):
      want = _fused_reference(users, items, exclude, k, n)
      got = _fused(users, items, exclude, k, n)
      _check_fused(got, want)
      assert got[0].dtype == np.float32 and got[1].dtype == np.int32


@needs_kernel
@pytest.mark.parametrize('k', [3, 40])
def test_score_top_k_edge_values(k):
  # -0.0 ties with 0.0; +-inf; NaN flags a user unless the NaN item is
  # excluded for them; all but two items excluded leaves empty slots.
  n = 64
  items = np.ones((n, 1), np.float32)
  items[5] = -0.0
  items[6] = 0.0
  items[7] = np.inf
  items[8] = -np.inf
  items[9] = np.nan
  users = np.array([[1.0], [-1.0], [0.0], [1.0]], np.float32)
  exclude = np.full((4, n), n, np.int32)
  exclude[0, 0] = 9  # user 0 never sees the NaN item
  exclude[3, : n - 2] = np.arange(n - 2)  # only items 62, 63 remain
  want = _fused_reference(users, items, exclude, k, n)
  got = _fused(users, items, exclude, k, n)
  _check_fused(got, want)
  assert got[2].tolist() == [False, True, True, False]
  assert got[1][3, :2].tolist() == [62, 63]
  assert (got[1][3, 2:] == _SENTINEL).all()


@needs_kernel
def test_score_top_k_jitted_equals_plain():
  rng = np.random.default_rng(3)
  users, items, exclude = _fused_case(rng, 20, 16, 500, 5, 'normal')
  packed = native.pack_items(jnp.asarray(items))
  plain = native.score_top_k(users, packed, exclude, 20, 500)
  jitted = jax.jit(native.score_top_k, static_argnums=(3, 4))(
    users, packed, exclude, 20, 500
  )
  for a, b in zip(plain, jitted, strict=True):
    np.testing.assert_array_equal(a, b)


@needs_kernel
@pytest.mark.skipif(
  os.uname().machine != 'x86_64', reason='x86 target flags; CI is x86_64'
)
@pytest.mark.parametrize(
  'arch', [('-march=x86-64-v3',), ('-march=x86-64',)], ids=['avx2', 'sse2']
)
def test_score_top_k_portable_builds_agree(arch, tmp_path):
  # The AVX2 and generic code paths (other users' machines), built here.
  flags = native._cpu_signature()
  if arch == ('-march=x86-64-v3',) and not {'avx2', 'fma'} <= set(
    flags.split()
  ):
    pytest.skip('this CPU cannot run an x86-64-v3 (AVX2) build')
  library = native._build(native._SOURCE, tmp_path, arch=arch)
  suffix = '_' + arch[0].split('=')[1].replace('-', '_')
  native._register(library, suffix)
  rng = np.random.default_rng(4)
  for kind in ('normal', 'ties'):
    users, items, exclude = _fused_case(rng, 14, 9, 700, 6, kind)
    for k in (20, 50):
      want = _fused_reference(users, items, exclude, k, 700)
      got = _fused(users, items, exclude, k, 700, 'jaxrec_score_top_k' + suffix)
      _check_fused(got, want)


@needs_kernel
def test_score_top_k_bad_arguments_are_named():
  users = jnp.zeros((2, 4), jnp.float32)
  packed = native.pack_items(jnp.zeros((40, 4), jnp.float32))
  none = jnp.zeros((2, 0), jnp.int32)
  with pytest.raises(ValueError, match='k=41'):
    native.score_top_k(users, packed, none, 41, 40)
  with pytest.raises(ValueError, match='n=65'):
    native.score_top_k(users, packed, none, 5, 65)
  with pytest.raises(ValueError, match='do not match'):
    native.score_top_k(jnp.zeros((2, 3), jnp.float32), packed, none, 5, 40)
  with pytest.raises(TypeError, match='int32'):
    native.score_top_k(users, packed, none.astype(jnp.float32), 5, 40)
