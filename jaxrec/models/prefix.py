"""What the generative sequential models share: data and noise streams.

DiffuRec and DreamRec train on every prefix of every training sequence
(`batching.PrefixExamples`), read the last `max_len` items at ranking, and
draw their reverse-process noise per user (`user_normal`), so that a user's
scores do not depend on the users ranked with it.
"""

from __future__ import annotations

from typing import Callable

import jax
import numpy as np

from jaxrec.data import batching, types
from jaxrec.diffusion import schedules


class PrefixModel:
  """Host-side half of the model surface; needs `config` (max_len,
  schedule, steps) on the subclass."""

  @property
  def schedule(self) -> schedules.Schedule:
    return schedules.make(self.config.schedule, self.config.steps)

  @property
  def _first_events(self) -> bool:
    """`model.empty_history`: a user's first event is an example too."""
    return bool(self.config.get('empty_history', False))

  def train_size(self, split: types.Split) -> int:
    return batching.PrefixExamples.count(split.train, self._first_events)

  def train_data(self, split: types.Split, plan: batching.BatchPlan):
    del plan
    return batching.PrefixExamples.from_part(
      split.train, self.config.max_len, self._first_events
    )

  def train_batch(self, data, index: np.ndarray, weights: np.ndarray) -> dict:
    return {
      'inputs': data.inputs[index],
      'targets': data.targets[index],
      'weights': weights,
    }

  def make_batch(
    self, history: types.Part, users: np.ndarray, length: int | None = None
  ) -> dict:
    """'inputs': each user's last `length` (default max_len) items,
    left-padded; 'users': the ids (they key the per-user noise)."""
    max_len = self.config.max_len
    length = max_len if length is None else length
    if length > max_len:
      raise ValueError(f'length={length} > max_len={max_len}')
    return {
      'inputs': batching.last_items(history, users, length),
      'users': np.asarray(users, np.int32),
    }

  def input_lengths(self, history: types.Part, users: np.ndarray):
    """int[B]: the items `make_batch` keeps for each user (<= max_len).

    A user with no history gets max_len: an all-padding row attends over
    its padding (every key masked), so its output depends on the length.
    """
    n = history.lengths[np.asarray(users, np.int64)]
    max_len = self.config.max_len
    return np.where(n == 0, max_len, np.minimum(n, max_len))


def user_keys(users: jax.Array, seed: int, tag: int | None = None):
  """[B] keys fold_in(key(seed), users[b]), then fold_in(., tag) if given:
  one stream per user, whatever batch the user is in."""
  base = jax.random.key(seed)
  keys = jax.vmap(lambda u: jax.random.fold_in(base, u))(users)
  if tag is None:
    return keys
  return jax.vmap(lambda k: jax.random.fold_in(k, tag))(keys)


def user_normal(users: jax.Array, seed: int) -> Callable:
  """`draw(tag, shape) -> [B, *shape]` standard normals, row b from
  fold_in(fold_in(key(seed), users[b]), tag): one stream per user."""
  keys = user_keys(users, seed)

  def draw(tag, shape):
    return jax.vmap(
      lambda k: jax.random.normal(jax.random.fold_in(k, tag), shape)
    )(keys)

  return draw
