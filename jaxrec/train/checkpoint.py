"""Orbax checkpoints of a training run: the latest two and the best one.

All Orbax calls live here, so an Orbax API change touches one file.

`<workdir>/checkpoints/latest/<step>` keeps the two most recent saves and
`<workdir>/checkpoints/best/<step>` the one best on validation. Each save is
the train state (params, optimizer state, step; restored into an abstract
target from `jax.eval_shape`, with its shardings) plus a JSON `meta` with
everything else an exact resume needs (the validation history, from which
early stopping is recomputed; the seed; whether the run stopped). The data
position is the step itself: batches are a function of (seed, step).

Orbax writes a step to a temporary directory and renames it when complete,
so a run killed mid-save leaves no half step. A step that is present but
cannot be read (a truncated or deleted file) is moved aside to
`latest.corrupt-<step>` with a warning and the previous one is used; when no
step can be read, `CheckpointError` names each step and its error.
"""

from __future__ import annotations

import pathlib
from typing import Any

import orbax.checkpoint as ocp
from absl import logging


class CheckpointError(RuntimeError):
  """No usable checkpoint where one was expected."""


def _manager(path: pathlib.Path, keep: int) -> ocp.CheckpointManager:
  return ocp.CheckpointManager(
    path.absolute(),
    options=ocp.CheckpointManagerOptions(
      max_to_keep=keep, create=True, cleanup_tmp_directories=True
    ),
  )


class Checkpoints:
  """Latest (2 kept) and best (1 kept) checkpoints under `directory`."""

  def __init__(self, directory: pathlib.Path):
    self.directory = pathlib.Path(directory)
    self._latest = _manager(self.directory / 'latest', 2)
    self._best = _manager(self.directory / 'best', 1)

  def save(self, step: int, state: Any, meta: dict, best: bool) -> None:
    """Saves `state` and `meta` as `step` (also as best when `best`)."""
    args = ocp.args.Composite(
      state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)
    )
    self._latest.save(step, args=args)
    if best:
      self._best.save(step, args=args)

  def save_best(self, step: int, state: Any, meta: dict) -> None:
    """Saves `step` as the best (a resume whose best save was cut off)."""
    self._best.save(
      step,
      args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)
      ),
    )

  def _restore(self, manager, step: int, abstract_state: Any):
    out = manager.restore(
      step,
      args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state),
        meta=ocp.args.JsonRestore(),
      ),
    )
    return out.state, out.meta

  def restore_latest(self, abstract_state: Any) -> tuple[Any, dict] | None:
    """(state, meta) of the newest readable step; None if there is none."""
    self._latest.wait_until_finished()
    steps = sorted(self._latest.all_steps(), reverse=True)
    errors = []
    for step in steps:
      try:
        return self._restore(self._latest, step, abstract_state)
      except Exception as e:  # Orbax raises many types for a bad step
        errors.append(f'step {step}: {type(e).__name__}: {e}')
        self._set_aside(step, e)
    if steps:
      raise CheckpointError(
        f'no readable checkpoint in {self.directory / "latest"}:\n'
        + '\n'.join(errors)
      )
    return None

  def _set_aside(self, step: int, error: Exception) -> None:
    src = self.directory / 'latest' / str(step)
    dst = self.directory / f'latest.corrupt-{step}'
    logging.warning(
      'checkpoint %s is unreadable (%s: %s); moved to %s, trying the'
      ' previous one',
      src,
      type(error).__name__,
      str(error)[:300],
      dst,
    )
    self._latest.close()
    if src.exists():
      src.rename(dst)
    self._latest = _manager(self.directory / 'latest', 2)

  def restore_best(self, abstract_state: Any) -> tuple[Any, dict]:
    """(state, meta) of the best step; CheckpointError if unreadable."""
    self._best.wait_until_finished()
    step = self._best.latest_step()
    if step is None:
      raise CheckpointError(f'no best checkpoint in {self.directory / "best"}')
    try:
      return self._restore(self._best, step, abstract_state)
    except Exception as e:
      raise CheckpointError(
        f'best checkpoint {self.directory / "best" / str(step)} is'
        f' unreadable: {type(e).__name__}: {e}'
      ) from e

  def best_step(self) -> int | None:
    return self._best.latest_step()

  def wait(self) -> None:
    self._latest.wait_until_finished()
    self._best.wait_until_finished()

  def close(self) -> None:
    self._latest.close()
    self._best.close()
