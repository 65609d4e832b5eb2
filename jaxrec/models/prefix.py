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

  def train_size(self, split: types.Split) -> int:
    return batching.PrefixExamples.count(split.train)

  def train_data(self, split: types.Split, plan: batching.BatchPlan):
    del plan
    return batching.PrefixExamples.from_part(split.train, self.config.max_len)

  def train_batch(self, data, index: np.ndarray, weights: np.ndarray) -> dict:
    return {
      'inputs': data.inputs[index],
      'targets': data.targets[index],
      'weights': weights,
    }

  def make_batch(self, history: types.Part, users: np.ndarray) -> dict:
    return {
      'inputs': batching.last_items(history, users, self.config.max_len),
      'users': np.asarray(users, np.int32),
    }


def user_normal(users: jax.Array, seed: int) -> Callable:
  """`draw(tag, shape) -> [B, *shape]` standard normals, row b from
  fold_in(fold_in(key(seed), users[b]), tag): one stream per user."""
  base = jax.random.key(seed)
  keys = jax.vmap(lambda u: jax.random.fold_in(base, u))(users)

  def draw(tag, shape):
    return jax.vmap(
      lambda k: jax.random.normal(jax.random.fold_in(k, tag), shape)
    )(keys)

  return draw
