"""Host-side batches for sequential models: padded sequences, epoch order.

Item ids of a `Split` are 0-based; sequence models read `item + 1` so that 0
is padding. Sequences are left-padded (the latest item is always at the last
position, where a causal model reads its prediction).

Epoch order is a permutation drawn from `(seed, epoch)` alone, so the batch
at any global step is known without replaying the run (exact resume), and
every host of a multi-host run computes the same order and takes its own
slice of each global batch.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from jaxrec.data import types

PAD = 0


def last_items(part: types.Part, users: np.ndarray, length: int) -> np.ndarray:
  """The last `length` items of each user, shifted by one, left-padded.

  Args:
    part: CSR events in chronological order.
    users: int[B] rows to read.
    length: L.

  Returns:
    int32[B, L]: `item + 1` of the user's latest L events, 0 before them.
  """
  users = np.asarray(users, np.int64)
  ends = part.indptr[users + 1]
  counts = np.minimum(ends - part.indptr[users], length)
  out = np.zeros((len(users), length), np.int32)
  row = np.repeat(np.arange(len(users)), counts)
  # j-th kept event of a row: source ends - count + j, column L - count + j.
  j = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
  src = np.repeat(ends - counts, counts) + j
  col = np.repeat(length - counts, counts) + j
  out[row, col] = part.items[src] + 1
  return out


@dataclasses.dataclass(frozen=True)
class NextItemExamples:
  """One training example per user: predict each next item of its sequence.

  Attributes:
    users: int64[N] users with at least two training events.
    inputs: int32[N, L] items 1..n-1 of the (last L + 1) events, shifted.
    targets: int32[N, L] items 2..n, 0 where the input is padding.
  """

  users: np.ndarray
  inputs: np.ndarray
  targets: np.ndarray

  @property
  def counts(self) -> np.ndarray:
    """int64[N] number of targets of each example."""
    return (self.targets > 0).sum(1)

  @classmethod
  def from_part(cls, part: types.Part, length: int) -> NextItemExamples:
    users = np.flatnonzero(part.lengths >= 2)
    if not len(users):
      raise ValueError('no user has two training events; nothing to train')
    window = last_items(part, users, length + 1)
    inputs, targets = window[:, :-1], window[:, 1:]
    targets = np.where(inputs > 0, targets, PAD).astype(np.int32)
    return cls(users, np.ascontiguousarray(inputs), targets)

  def __len__(self) -> int:
    return len(self.users)


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
  """int64[n] the example order of `epoch`, from `(seed, epoch)` only."""
  return np.random.default_rng([seed, epoch]).permutation(n)


def steps_per_epoch(n: int, batch_size: int) -> int:
  """Batches per epoch; the last one is padded (see `batch_indices`)."""
  return -(-n // batch_size)


def batch_indices(
  n: int, batch_size: int, seed: int, step: int
) -> tuple[np.ndarray, np.ndarray]:
  """The examples of global step `step` (0-based) and their weights.

  Args:
    n: number of examples.
    batch_size: global batch size B.
    seed: run seed.
    step: global step; epoch = step // steps_per_epoch.

  Returns:
    (int64[B] example indices, float32[B] weights): the last batch of an
    epoch is filled with example 0 at weight 0, so shapes never change.
  """
  per_epoch = steps_per_epoch(n, batch_size)
  epoch, b = divmod(step, per_epoch)
  order = epoch_order(n, seed, epoch)[b * batch_size : (b + 1) * batch_size]
  weights = np.ones(batch_size, np.float32)
  if len(order) < batch_size:
    weights[len(order) :] = 0.0
    order = np.concatenate([order, np.zeros(batch_size - len(order), int)])
  return order, weights


def host_slice(batch_size: int, process_index: int, process_count: int):
  """This host's rows of a global batch (contiguous, equal for all hosts)."""
  if batch_size % process_count:
    raise ValueError(
      f'batch size {batch_size} is not divisible by {process_count} hosts'
    )
  per = batch_size // process_count
  return slice(process_index * per, (process_index + 1) * per)


@dataclasses.dataclass(frozen=True)
class BatchPlan:
  """How a run draws batches; what a model needs to fix static shapes.

  Attributes:
    batch_size: global batch size B.
    seed: run seed (epoch order).
    epochs: epochs the run may draw (bounds `max_group_sum`).
    groups: shards of each global batch (the device count); packed
      per-group arrays put a group's rows on its own device.
    hosts: processes feeding the batch; each gets groups / hosts groups.
  """

  batch_size: int
  seed: int
  epochs: int
  groups: int = 1
  hosts: int = 1


def max_group_sum(values: np.ndarray, plan: BatchPlan) -> int:
  """The largest sum of `values` over one group of any batch of the run.

  Exact over every batch the plan can draw (all epochs), so a buffer of
  this size never overflows; padding rows count 0.
  """
  b, g = plan.batch_size, plan.groups
  if b % g:
    raise ValueError(f'batch size {b} is not divisible into {g} groups')
  values = np.concatenate([np.asarray(values, np.int64), [0]])
  n = len(values) - 1
  best = 0
  for epoch in range(max(1, plan.epochs)):
    order = epoch_order(n, plan.seed, epoch)
    order = np.concatenate([order, np.full(-n % b, n)])  # n: the 0 row
    best = max(best, int(values[order].reshape(-1, b // g).sum(1).max()))
  return best


def pack(mask: np.ndarray, groups: int, budget: int):
  """Positions of the True entries of `mask`, per group of rows.

  Args:
    mask: bool[b, L]; rows split into `groups` equal contiguous groups.
    groups: G.
    budget: M, slots per group (>= the True entries of any group).

  Returns:
    (positions int32[G, M] into the group's flattened [b/G * L] entries,
    filled bool[G, M]); unused slots point at entry 0 and are not filled.
  """
  per_group = mask.reshape(groups, -1)
  counts = per_group.sum(1)
  if counts.max(initial=0) > budget:
    raise ValueError(f'a group has {counts.max()} entries > budget {budget}')
  positions = np.zeros((groups, budget), np.int32)
  filled = np.arange(budget)[None, :] < counts[:, None]
  g, p = np.nonzero(per_group)
  positions[filled] = p
  return positions, filled


@dataclasses.dataclass(frozen=True)
class PrefixExamples:
  """One example per training event after a user's first: every prefix.

  DiffuRec (and ADRec's data) train on each prefix of each sequence: the
  input is the previous L items, the target the event itself.

  Attributes:
    users: int64[N] the user of each example.
    inputs: int32[N, L] the previous L items, shifted by one, left-padded.
    targets: int32[N] the target item, shifted by one (1..n_items).
  """

  users: np.ndarray
  inputs: np.ndarray
  targets: np.ndarray

  @staticmethod
  def count(part: types.Part) -> int:
    return int(np.maximum(part.lengths - 1, 0).sum())

  @classmethod
  def from_part(cls, part: types.Part, length: int) -> PrefixExamples:
    users = part.users
    first = part.indptr[users]
    events = np.flatnonzero(np.arange(part.nnz) > first)  # not a first event
    if not len(events):
      raise ValueError('no user has two training events; nothing to train')
    window = events[:, None] - length + np.arange(length)  # [N, L] indices
    valid = window >= first[events][:, None]
    inputs = np.where(valid, part.items[np.maximum(window, 0)] + 1, PAD)
    return cls(
      users[events],
      inputs.astype(np.int32),
      (part.items[events] + 1).astype(np.int32),
    )

  def __len__(self) -> int:
    return len(self.targets)
