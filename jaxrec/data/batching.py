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
import functools

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


def dense_rows(history: types.Part, users: np.ndarray, n_items: int):
  """Dense binary float32[B, I] rows of `users` from a CSR part."""
  rows = np.zeros((len(users), n_items), np.float32)
  lengths = history.lengths[users]
  starts = history.indptr[users]
  row_of = np.repeat(np.arange(len(users)), lengths)
  pos = np.repeat(starts - np.cumsum(lengths) + lengths, lengths)
  cols = history.items[pos + np.arange(lengths.sum())]
  rows[row_of, cols] = 1.0
  return rows


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


@functools.lru_cache(maxsize=4)
def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
  """int64[n] the example order of `epoch`, from `(seed, epoch)` only.

  Read-only and cached: drawing the permutation (5 ms for Beauty's 153,776
  prefixes) once per epoch rather than at every step keeps the host ahead
  of an accelerator's train step."""
  order = np.random.default_rng([seed, epoch]).permutation(n)
  order.flags.writeable = False
  return order


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
  order = order.copy()  # the cached order stays read-only
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


def group_values(values: np.ndarray, plan: BatchPlan):
  """Per epoch of the run, int64[batches * G, b / G]: `values` of the
  examples of each device group of each batch (padding rows give 0)."""
  b, g = plan.batch_size, plan.groups
  if b % g:
    raise ValueError(f'batch size {b} is not divisible into {g} groups')
  values = np.concatenate([np.asarray(values, np.int64), [0]])
  n = len(values) - 1
  for epoch in range(max(1, plan.epochs)):
    order = epoch_order(n, plan.seed, epoch)
    order = np.concatenate([order, np.full(-n % b, n)])  # n: the 0 row
    yield values[order].reshape(-1, b // g)


def max_group_sum(values: np.ndarray, plan: BatchPlan) -> int:
  """The largest sum of `values` over one group of any batch of the run.

  Exact over every batch the plan can draw (all epochs), so a buffer of
  this size never overflows; padding rows count 0.
  """
  return max(int(v.sum(1).max()) for v in group_values(values, plan))


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
  input is the previous L items, the target the event itself. With
  `first_events`, each user's first event is an example too, its input
  all padding (DreamRec's official data: every item that opens a sequence
  is a target).

  Attributes:
    users: int64[N] the user of each example.
    inputs: int32[N, L] the previous L items, shifted by one, left-padded.
    targets: int32[N] the target item, shifted by one (1..n_items).
  """

  users: np.ndarray
  inputs: np.ndarray
  targets: np.ndarray

  @staticmethod
  def count(part: types.Part, first_events: bool = False) -> int:
    if first_events:
      return int(part.nnz)
    return int(np.maximum(part.lengths - 1, 0).sum())

  @classmethod
  def from_part(
    cls, part: types.Part, length: int, first_events: bool = False
  ) -> PrefixExamples:
    users = part.users
    first = part.indptr[users]
    if first_events:
      events = np.arange(part.nnz)
    else:
      events = np.flatnonzero(np.arange(part.nnz) > first)  # not a first
    if not len(events):
      raise ValueError(
        'no training events; nothing to train'
        if first_events
        else 'no user has two training events; nothing to train'
      )
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


# Packing variable-length segments into rows ---------------------------------
#
# Most positions of a padded [B, L] batch of short sequences are padding
# (Beauty's DiffuRec prefixes: ~85 %). Models whose real positions never see
# padding (padded keys masked, no position embeddings) can instead place
# several examples' segments side by side in rows of width L, with attention
# restricted to each segment: the same numbers from ~5x fewer positions.
# Packing is by size class, largest first: each segment size s fills the
# open rows with the least room that still fits it (each taking as many
# size-s segments as fit), then opens new rows. The row count depends only
# on the multiset of sizes, so `max_packed_rows` computes it for every batch
# of a run at once (vectorised over batches) and `pack_segments` lays out
# one batch in exactly that many rows.


def packing_on(model_config) -> bool:
  """Whether a model trains on packed rows: `pack` asked for, and padded
  keys masked (`mask_axis='key'`), without which padding changes real
  positions' outputs and packing would change the numbers."""
  return bool(model_config.get('pack', False)) and (
    model_config.get('mask_axis', 'key') == 'key'
  )


def pack_segments(lengths: np.ndarray, width: int):
  """Row and offset of each segment (0-length segments are not placed).

  Args:
    lengths: int[n] segment lengths, each in 0..width.
    width: row width.

  Returns:
    (row int64[n], offset int64[n], rows used); -1 for 0-length segments.
  """
  lengths = np.asarray(lengths, np.int64)
  if lengths.size and (lengths.min() < 0 or lengths.max() > width):
    raise ValueError(f'segment lengths must lie in 0..{width}')
  # Segments longest first, those of one length in index order. The loop
  # only decides runs (q segments of size s side by side in row r from
  # offset base) on Python ints; the arrays are written once at the end
  # (this runs on the host at every training step).
  order = np.argsort(-lengths, kind='stable')
  counts = np.bincount(lengths, minlength=width + 1).tolist()
  room: list[list[int]] = [[] for _ in range(width + 1)]  # rows by room
  used: list[int] = []
  runs: list[tuple[int, int, int, int]] = []  # (row, count, base, size)
  for s in range(width, 0, -1):
    left = counts[s]
    while left:
      # The open row with the least room that fits s, else a new row.
      cap = s
      while cap <= width and not room[cap]:
        cap += 1
      if cap > width:
        used.append(0)
        r, cap = len(used) - 1, width
      else:
        r = room[cap].pop()
      q = min(cap // s, left)
      runs.append((r, q, used[r], s))
      used[r] += q * s
      room[cap - q * s].append(r)
      left -= q
  row = np.full(len(lengths), -1, np.int64)
  offset = np.full(len(lengths), -1, np.int64)
  if runs:
    r, q, base, size = np.asarray(runs, np.int64).T
    placed = order[: int(q.sum())]
    within = np.arange(len(placed)) - np.repeat(np.cumsum(q) - q, q)
    row[placed] = np.repeat(r, q)
    offset[placed] = np.repeat(base, q) + np.repeat(size, q) * within
  return row, offset, len(used)


def packed_rows(hist: np.ndarray, width: int) -> np.ndarray:
  """Rows `pack_segments` uses, for many batches at once.

  Args:
    hist: int[n_batches, width + 1], segments of each length per batch
      (column 0, empty segments, is ignored).
    width: row width.

  Returns:
    int64[n_batches].
  """
  hist = np.asarray(hist, np.int64)
  n = hist.shape[0]
  room = np.zeros((n, width + 1), np.int64)  # open rows by their room
  rows = np.zeros(n, np.int64)
  idx = np.arange(n)
  for s in range(width, 0, -1):
    left = hist[:, s].copy()
    for cap in range(s, width + 1):
      q = cap // s
      full = np.minimum(room[:, cap], left // q)
      room[:, cap] -= full
      room[:, cap - q * s] += full
      left -= full * q
      part = (left > 0) & (room[:, cap] > 0)  # then left < q: one row
      room[part, cap] -= 1
      np.add.at(room, (idx[part], cap - left[part] * s), 1)
      left[part] = 0
    k = width // s
    full = left // k
    room[:, width - k * s] += full
    rest = left % k
    part = rest > 0
    np.add.at(room, (idx[part], width - rest[part] * s), 1)
    rows += full + part
  return rows


def max_packed_rows(lengths: np.ndarray, plan: BatchPlan, width: int) -> int:
  """The most rows `pack_segments` needs for one group of any batch of the
  run (all epochs of `plan`); the padded tail of a last batch counts 0."""
  hists = []
  for sizes in group_values(lengths, plan):
    rows = len(sizes)
    ids = (sizes + (width + 1) * np.arange(rows)[:, None]).ravel()
    hist = np.bincount(ids, minlength=rows * (width + 1))
    hists.append(hist.reshape(rows, width + 1))
  # `packed_rows` is vectorised over batches: one call for the whole run.
  return int(packed_rows(np.concatenate(hists), width).max())


def pack_batch(inputs: np.ndarray, lengths: np.ndarray, groups: int, rows: int):
  """Each device group's left-padded sequences packed into `rows` rows.

  Args:
    inputs: int[b, L] left-padded sequences (0 = padding).
    lengths: int[b] real items of each (0: the example is left out).
    groups: G; rows split into G equal contiguous groups.
    rows: R rows per group (>= what `pack_segments` needs).

  Returns:
    dict of 'tokens' int32[G * R, L] (0 = empty), 'segments' int32[G * R, L]
    (1 + the example's index in its group; 0 = empty), 'source' int32[G * R,
    L] (flat index of each position in the group's [b / G * L] inputs; 0
    where empty), 'last' int32[G, b / G] (flat position of each example's
    last item in its group's rows; 0 for left-out examples).
  """
  b, width = inputs.shape
  per = b // groups
  tokens = np.zeros((groups, rows * width), np.int32)
  segments = np.zeros((groups, rows * width), np.int32)
  source = np.zeros((groups, rows * width), np.int32)
  last = np.zeros((groups, per), np.int32)
  for g in range(groups):
    lens = np.asarray(lengths[g * per : (g + 1) * per], np.int64)
    row, offset, used = pack_segments(lens, width)
    if used > rows:
      raise ValueError(f'packing needs {used} rows > {rows}')
    real = np.flatnonzero(lens)
    start = row[real] * width + offset[real]
    n = lens[real]
    seg_of = np.repeat(real, n)
    within = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
    pos = np.repeat(start, n) + within
    col = width - np.repeat(n, n) + within
    tokens[g, pos] = inputs[g * per + seg_of, col]
    segments[g, pos] = seg_of + 1
    source[g, pos] = seg_of * width + col
    last[g, real] = start + n - 1
  return {
    'tokens': tokens.reshape(-1, width),
    'segments': segments.reshape(-1, width),
    'source': source.reshape(-1, width),
    'last': last,
  }
