"""Shared fixtures: the real data folder, when there is one."""

import os
import pathlib

import pytest


@pytest.fixture(scope='session')
def data_dir() -> pathlib.Path:
  """$JAXREC_DATA; tests that read real files skip (saying why) without it."""
  path = os.environ.get('JAXREC_DATA')
  if not path or not pathlib.Path(path).is_dir():
    pytest.skip('JAXREC_DATA is not set to a data folder: real-file tests skip')
  return pathlib.Path(path)
