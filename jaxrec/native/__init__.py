"""Native CPU kernels, compiled on first use and called through `jax.ffi`.

XLA's CPU TopK kernel costs about 1.6 ns per score on one thread, as much
as the scoring matmul itself in full ranking. `top_k` here is an exact
single-pass heap top-k (topk.cc) that skips most of a row with one SIMD
compare per 16 scores: about 0.2 ns per score when the scores are in cache.

`score_top_k` fuses the inner-product scoring of full ranking into it: a
register tile of users x 32 items is scored into a 1.5 KiB buffer and
compared against each user's k-th best at once, so the [B, I] score block
is never written or read back (see topk.cc), and XLA's thin-matmul
overheads disappear.

The kernel is compiled once per machine with the system C++ compiler
(`$CXX`, else `g++`) against the FFI headers that ship with jaxlib, into
the user cache (`~/.cache/jaxrec/native`, keyed by the source, jaxlib
version and CPU), atomically, so concurrent processes agree. Where there is
no compiler or the build fails, `top_k_kernel()` is None and callers use
XLA's kernel (same results, slower); `JAXREC_NATIVE=0` forces that.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import importlib.metadata
import os
import pathlib
import platform
import shutil
import subprocess
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from jaxrec.data import registry

_SOURCE = pathlib.Path(__file__).with_name('topk.cc')
_TARGET = 'jaxrec_top_k'
_FUSED_TARGET = 'jaxrec_score_top_k'
# Items per panel of `pack_items` (kPanel in topk.cc).
PANEL = 32


def _cpu_signature() -> str:
  """The CPU model and flags (a -march=native build runs only on such)."""
  try:
    lines = pathlib.Path('/proc/cpuinfo').read_text().splitlines()
  except OSError:
    return platform.processor()
  fields = ('model name', 'flags', 'Features')
  keep = [line for line in lines if line.startswith(fields)]
  return '\n'.join(sorted(set(keep)))


def _build(
  source: pathlib.Path,
  out_dir: pathlib.Path,
  arch: tuple[str, ...] | None = None,
) -> pathlib.Path:
  """Compiles `source` into a shared library in `out_dir` (cached).

  arch: the target flags (e.g. ('-march=x86-64-v3',) for the AVX2 code
    paths); default -march=native, else the compiler's default target.
  """
  compiler = os.environ.get('CXX', 'g++')
  key = hashlib.sha256()
  for part in (
    source.read_bytes(),
    importlib.metadata.version('jaxlib').encode(),
    compiler.encode(),
    platform.machine().encode(),
    _cpu_signature().encode(),
    repr(arch).encode(),
  ):
    key.update(part)
  library = out_dir / f'{source.stem}-{key.hexdigest()[:16]}.so'
  if library.exists():
    return library
  if shutil.which(compiler) is None:
    raise OSError(f'no C++ compiler {compiler!r} on PATH (set $CXX)')
  out_dir.mkdir(parents=True, exist_ok=True)
  base = [
    compiler,
    '-O3',
    '-std=c++17',
    '-shared',
    '-fPIC',
    '-w',
    f'-I{jax.ffi.include_dir()}',
    str(source),
  ]
  errors = []
  # Some compilers lack -march=native.
  attempts = [list(arch)] if arch is not None else [['-march=native'], []]
  for flags in attempts:
    fd, tmp = tempfile.mkstemp(suffix='.so', dir=out_dir)
    os.close(fd)
    done = subprocess.run(
      base + flags + ['-o', tmp], capture_output=True, text=True
    )
    if done.returncode == 0:
      os.replace(tmp, library)  # atomic: readers see all or nothing
      return library
    os.unlink(tmp)
    errors.append(done.stderr.strip()[-2000:])
  raise OSError(f'compiling {source} failed:\n' + '\n'.join(errors))


def _register(library: pathlib.Path, suffix: str = '') -> None:
  """Registers the library's kernels as XLA CPU targets (+ `suffix`)."""
  loaded = ctypes.cdll.LoadLibrary(str(library))
  for target, handler in (
    (_TARGET, loaded.JaxrecTopK),
    (_FUSED_TARGET, loaded.JaxrecScoreTopK),
  ):
    jax.ffi.register_ffi_target(
      target + suffix, jax.ffi.pycapsule(handler), platform='cpu'
    )


@functools.cache
def top_k_kernel() -> bool:
  """Builds and registers the native kernels once; False when unavailable."""
  if os.environ.get('JAXREC_NATIVE', '1') == '0':
    return False
  try:
    library = _build(_SOURCE, registry.cache_dir() / 'native')
    _register(library)
  except (OSError, AttributeError) as e:
    logging.warning('native top-k unavailable, using XLA TopK: %s', e)
    return False
  return True


def top_k(x: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
  """Exact top-k over the last axis, on CPU, with the native kernel.

  Unlike `lax.top_k`, the order is specified: higher value first, equal
  values (-0.0 == 0.0) by lower index. NaN does not enter the list unless
  among the first k of a row; callers check rows for NaN themselves.

  Args:
    x: float32[..., n].
    k: 1 <= k <= n.

  Returns:
    (values float32[..., k], indices int32[..., k]).

  Raises:
    RuntimeError: the kernel could not be built (`top_k_kernel()` is False).
  """
  if x.dtype != jnp.float32:
    raise TypeError(f'native top_k takes float32, got {x.dtype}')
  if not 1 <= k <= x.shape[-1]:
    raise ValueError(f'k={k} must be in [1, {x.shape[-1]}]')
  if not top_k_kernel():
    raise RuntimeError('the native top-k kernel is unavailable (see log)')
  shape = x.shape[:-1] + (k,)
  call = jax.ffi.ffi_call(
    _TARGET,
    (
      jax.ShapeDtypeStruct(shape, jnp.float32),
      jax.ShapeDtypeStruct(shape, jnp.int32),
    ),
    vmap_method='broadcast_all',
  )
  return call(x, k=np.int64(k))


def pack_items(items: jax.Array) -> jax.Array:
  """float32[I, d] item vectors as `score_top_k` reads them.

  Returns float32[P, d, PANEL], P = ceil(I / PANEL): panel p holds items
  p*PANEL .. p*PANEL + PANEL - 1 transposed (zero vectors past I). Pack once
  per ranking call, not per chunk.
  """
  n, d = items.shape
  panels = -(-n // PANEL)
  padded = jnp.pad(items.astype(jnp.float32), ((0, panels * PANEL - n), (0, 0)))
  return padded.reshape(panels, PANEL, d).transpose(0, 2, 1)


# Largest k of `score_top_k` (its scratch space); ranking falls back to the
# unfused path above it.
FUSED_MAX_K = 1024


def score_top_k(
  users: jax.Array,
  packed: jax.Array,
  exclude: jax.Array,
  k: int,
  n: int,
  _target: str = _FUSED_TARGET,
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Top k of `users @ items.T` per user, without materialising the scores.

  The order is `top_k`'s (higher first, ties to the lower item id). Each
  score is a float32 fused multiply-add chain over d in index order, so it
  can differ from XLA's matmul in the last bit; the lists are the same
  unless two scores agree to about 1e-7 relative.

  Args:
    users: float32[B, d] query vectors.
    packed: `pack_items(items)` for float32[n', d] items, n' >= n.
    exclude: int32[B, E] items never ranked for each user; ids outside
      [0, n) are padding (E may be 0).
    k: 1 <= k <= min(n, FUSED_MAX_K).
    n: the items ranked are 0 .. n - 1.

  Returns:
    (values float32[B, k], items int32[B, k], nan bool[B]). A slot with no
    candidate (every item scored -inf or excluded) holds -inf and item
    2**31 - 1. `nan` marks users with a NaN score on a non-excluded item.

  Raises:
    RuntimeError: the kernel could not be built (`top_k_kernel()` is False).
  """
  if users.dtype != jnp.float32 or packed.dtype != jnp.float32:
    raise TypeError('native score_top_k takes float32 users and items')
  if exclude.dtype != jnp.int32:
    raise TypeError(f'exclude must be int32, got {exclude.dtype}')
  if packed.ndim != 3 or packed.shape[1:] != (users.shape[1], PANEL):
    raise ValueError(
      f'packed items {packed.shape} do not match users {users.shape}'
    )
  if not 1 <= n <= packed.shape[0] * PANEL:
    raise ValueError(f'n={n} outside the {packed.shape[0] * PANEL} packed')
  if not 1 <= k <= min(n, FUSED_MAX_K):
    raise ValueError(f'k={k} must be in [1, {min(n, FUSED_MAX_K)}]')
  if not top_k_kernel():
    raise RuntimeError('the native kernels are unavailable (see log)')
  b = users.shape[0]
  call = jax.ffi.ffi_call(
    _target,
    (
      jax.ShapeDtypeStruct((b, k), jnp.float32),
      jax.ShapeDtypeStruct((b, k), jnp.int32),
      jax.ShapeDtypeStruct((b,), jnp.bool_),
    ),
  )
  return call(users, packed, exclude, k=np.int64(k), n=np.int64(n))
