"""Native CPU kernels, compiled on first use and called through `jax.ffi`.

XLA's CPU TopK kernel costs about 1.6 ns per score on one thread, as much
as the scoring matmul itself in full ranking. `top_k` here is an exact
single-pass heap top-k (topk.cc) that skips most of a row with one SIMD
compare per 16 scores: about 0.2 ns per score when the scores are in cache.

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


def _cpu_signature() -> str:
  """The CPU model and flags (a -march=native build runs only on such)."""
  try:
    lines = pathlib.Path('/proc/cpuinfo').read_text().splitlines()
  except OSError:
    return platform.processor()
  fields = ('model name', 'flags', 'Features')
  keep = [line for line in lines if line.startswith(fields)]
  return '\n'.join(sorted(set(keep)))


def _build(source: pathlib.Path, out_dir: pathlib.Path) -> pathlib.Path:
  """Compiles `source` into a shared library in `out_dir` (cached)."""
  compiler = os.environ.get('CXX', 'g++')
  key = hashlib.sha256()
  for part in (
    source.read_bytes(),
    importlib.metadata.version('jaxlib').encode(),
    compiler.encode(),
    platform.machine().encode(),
    _cpu_signature().encode(),
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
  for arch in (['-march=native'], []):  # some compilers lack -march=native
    fd, tmp = tempfile.mkstemp(suffix='.so', dir=out_dir)
    os.close(fd)
    done = subprocess.run(
      base + arch + ['-o', tmp], capture_output=True, text=True
    )
    if done.returncode == 0:
      os.replace(tmp, library)  # atomic: readers see all or nothing
      return library
    os.unlink(tmp)
    errors.append(done.stderr.strip()[-2000:])
  raise OSError(f'compiling {source} failed:\n' + '\n'.join(errors))


@functools.cache
def top_k_kernel() -> bool:
  """Builds and registers the native top-k once; False when unavailable."""
  if os.environ.get('JAXREC_NATIVE', '1') == '0':
    return False
  try:
    library = _build(_SOURCE, registry.cache_dir() / 'native')
    handler = ctypes.cdll.LoadLibrary(str(library)).JaxrecTopK
    jax.ffi.register_ffi_target(
      _TARGET, jax.ffi.pycapsule(handler), platform='cpu'
    )
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
