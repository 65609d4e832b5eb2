"""Shared fixtures: the real data folder, when there is one; and one XLA
compilation cache for the whole run."""

import os
import pathlib
import shutil
import tempfile

import pytest

_CACHE_ENV = 'JAX_COMPILATION_CACHE_DIR'


def pytest_configure(config):
  """Points every test process (xdist workers and the command-line tests'
  subprocesses inherit the environment) at one fresh compilation cache.

  Many tests compile the same tiny networks (a config's train step, its
  ranking); the cache compiles each once per run, which took a quarter
  off the ADRec and seeds tests on 2 cores. Only compile time changes: a
  cached executable is the one XLA built. A cache set by the caller is
  kept (and not removed)."""
  if os.environ.get(_CACHE_ENV) or hasattr(config, 'workerinput'):
    return
  path = tempfile.mkdtemp(prefix='jaxrec-test-xla-')
  config._jaxrec_cache = path
  os.environ[_CACHE_ENV] = path
  # Cache every compile, however small or quick.
  os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
  os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES', '0')


def pytest_unconfigure(config):
  path = getattr(config, '_jaxrec_cache', None)
  if path:
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope='session')
def data_dir() -> pathlib.Path:
  """$JAXREC_DATA; tests that read real files skip (saying why) without it."""
  path = os.environ.get('JAXREC_DATA')
  if not path or not pathlib.Path(path).is_dir():
    pytest.skip('JAXREC_DATA is not set to a data folder: real-file tests skip')
  return pathlib.Path(path)
