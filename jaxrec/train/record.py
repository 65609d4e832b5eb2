"""The run record: what a workdir keeps so a result can be traced and redone.

Files are written atomically (a temporary file renamed into place), so a run
killed mid-write never leaves a half-written record behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import os
import pathlib
import platform
import subprocess
import tempfile
import time
from typing import Any

import numpy as np
from absl import logging

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
  'tensorboardX',
)


# A lock file still empty or unreadable after this long is a dead writer's.
UNREADABLE_LOCK_S = 2.0


class RunBusy(RuntimeError):
  """Another live process holds the run's lock."""


def _alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # exists, someone else's
    return True
  return True


def lock_path(workdir: os.PathLike) -> pathlib.Path:
  """`<workdir>.lock`, beside the folder."""
  workdir = pathlib.Path(workdir).resolve()
  return workdir.with_name(workdir.name + '.lock')


def lock_holder(workdir: os.PathLike) -> dict | None:
  """Who holds a workdir's lock: {'pid', 'host', 'since', 'alive'} ('alive'
  None for another host's process), or None when no readable lock is there."""
  try:
    held = json.loads(lock_path(workdir).read_text())
  except (OSError, ValueError):
    return None
  here = held.get('host') == platform.node()
  return {**held, 'alive': _alive(int(held['pid'])) if here else None}


@contextlib.contextmanager
def run_lock(workdir: os.PathLike, owner: bool = True):
  """Holds `<workdir>.lock` (beside the folder, so that `--fresh` moving
  the folder aside keeps it) while a run writes its workdir.

  A lock left by a dead process of this host (a killed run) is taken over;
  one held by a live process, or by another host, raises `RunBusy` naming
  it, so that two processes never train the same workdir. `owner=False`
  (a multi-host run's processes other than 0) takes no lock.
  """
  if not owner:
    yield
    return
  workdir = pathlib.Path(workdir).resolve()
  path = lock_path(workdir)
  path.parent.mkdir(parents=True, exist_ok=True)
  me = {'pid': os.getpid(), 'host': platform.node(), 'since': time.time()}
  unreadable_since = None
  while True:
    try:
      fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
      try:
        held = json.loads(path.read_text())
      except (OSError, ValueError):  # being written, or gone: look again
        now = time.monotonic()
        unreadable_since = unreadable_since or now
        if now - unreadable_since > UNREADABLE_LOCK_S:
          # Its writer died between creating and filling it.
          path.unlink(missing_ok=True)
        time.sleep(0.05)
        continue
      if held.get('host') == me['host'] and not _alive(int(held['pid'])):
        path.unlink(missing_ok=True)  # a killed run's lock
        continue
      raise RunBusy(
        f'{workdir} is being written by process {held.get("pid")} on'
        f' {held.get("host")} (lock {path}, since'
        f' {time.ctime(held.get("since", 0))}); if that run is dead, delete'
        ' the lock file'
      ) from None
    with os.fdopen(fd, 'w') as f:
      f.write(json.dumps(me))
    break
  try:
    yield
  finally:
    try:
      if json.loads(path.read_text()).get('pid') == me['pid']:
        path.unlink()
    except (OSError, ValueError):
      pass


def write_text(path: os.PathLike, text: str) -> None:
  """Writes `text` to `path` atomically."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.')
  with os.fdopen(fd, 'w') as f:
    f.write(text)
  os.replace(tmp, path)


def write_json(path: os.PathLike, obj: Any) -> None:
  """Writes `obj` as indented JSON, atomically."""
  text = json.dumps(protocol.json_ready(obj), indent=1, allow_nan=False)
  write_text(path, text + '\n')


def append_jsonl(path: os.PathLike, obj: Any) -> None:
  """Appends one JSON line (flushed) to `path`."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  with open(path, 'a') as f:
    f.write(json.dumps(protocol.json_ready(obj), allow_nan=False) + '\n')
    f.flush()


def read_jsonl(path: os.PathLike) -> list[dict]:
  """The rows of a JSON-lines file; a line cut off by a kill mid-write is
  skipped with a warning naming file and line."""
  path = pathlib.Path(path)
  rows = []
  for n, line in enumerate(path.read_text().splitlines(), 1):
    try:
      rows.append(json.loads(line))
    except json.JSONDecodeError:
      logging.warning(
        '%s:%d: skipping an unreadable line %r', path, n, line[:80]
      )
  return rows


def tree_sha256(tree: Any) -> str:
  """sha256 over a pytree's leaves (path, dtype, shape, bytes): bit identity."""
  import jax  # the record module stays importable without initialising JAX

  h = hashlib.sha256()
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    arr = np.asarray(jax.device_get(leaf))
    h.update(f'{jax.tree_util.keystr(path)}|{arr.dtype}|{arr.shape}'.encode())
    h.update(np.ascontiguousarray(arr).tobytes())
  return h.hexdigest()


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
