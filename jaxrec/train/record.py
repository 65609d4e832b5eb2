"""The run record: what a workdir keeps so a result can be traced and redone.

Files are written atomically (a temporary file renamed into place), so a run
killed mid-write never leaves a half-written record behind.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import pathlib
import platform
import subprocess
import tempfile
import time
from typing import Any

from jaxrec.eval import protocol

_PACKAGES = (
  'jax',
  'jaxlib',
  'flax',
  'optax',
  'orbax-checkpoint',
  'numpy',
  'scipy',
  'ml-collections',
  'absl-py',
  'chex',
)


def write_json(path: os.PathLike, obj: Any) -> None:
  """Writes `obj` as indented JSON, atomically."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.')
  with os.fdopen(fd, 'w') as f:
    json.dump(protocol.json_ready(obj), f, indent=1, allow_nan=False)
    f.write('\n')
  os.replace(tmp, path)


def append_jsonl(path: os.PathLike, obj: Any) -> None:
  """Appends one JSON line (flushed) to `path`."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  with open(path, 'a') as f:
    f.write(json.dumps(protocol.json_ready(obj), allow_nan=False) + '\n')
    f.flush()


def git_commit() -> str | None:
  """HEAD of the checkout jaxrec runs from, '+dirty' if modified."""
  root = pathlib.Path(__file__).resolve().parents[2]
  try:
    head = subprocess.run(
      ['git', 'rev-parse', 'HEAD'],
      cwd=root,
      capture_output=True,
      text=True,
      timeout=10,
      check=True,
    ).stdout.strip()
    dirty = subprocess.run(
      ['git', 'status', '--porcelain', '--untracked-files=no'],
      cwd=root,
      capture_output=True,
      text=True,
      timeout=10,
      check=True,
    ).stdout.strip()
  except (OSError, subprocess.SubprocessError):
    return None
  return head + ('+dirty' if dirty else '')


def environment() -> dict:
  """Package versions, git commit, host and devices, for results.json."""
  versions = {}
  for name in _PACKAGES:
    try:
      versions[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      versions[name] = None
  import jax  # Imported here so the record module stays cheap to import.

  return {
    'versions': versions,
    'python': platform.python_version(),
    'git_commit': git_commit(),
    'host': platform.node(),
    'devices': [str(d) for d in jax.devices()],
    'time': time.strftime('%Y-%m-%dT%H:%M:%S%z'),
  }
