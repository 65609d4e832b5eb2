"""Core data containers shared by every dataset, model and evaluator.

`Interactions` is the columnar event table that readers and preprocessing pass
around. `Part` is one part of a split stored as CSR over users, and `Split` is
what every model and the evaluation protocol consume.

Item ids inside a `Split` are 0-based and contiguous (`0 .. n_items-1`), for
every kind of dataset. Sequential models that need a padding id shift by one
inside their batching (`item + 1`, with 0 the padding), so the evaluator never
sees, scores or ranks a padding item (the DiffuRec quirk of scoring padding is
a model-side flag, not a data-side one).
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Literal

import numpy as np
import scipy.sparse as sp

# What is removed from the ranking before top-K: nothing, the user's train
# items, or train and valid items.
Exclude = Literal['none', 'train', 'train+valid']
Kind = Literal['sequential', 'cf']


@dataclasses.dataclass(frozen=True)
class Interactions:
  """Columnar events. Optional columns are None when the source has none.

  Attributes:
    user: int64[N] user ids (any non-negative integers before remapping).
    item: int64[N] item ids.
    rating: float64[N] or None.
    timestamp: int64[N] or None.
    source: where the events came from (a file path), for error messages.
  """

  user: np.ndarray
  item: np.ndarray
  rating: np.ndarray | None = None
  timestamp: np.ndarray | None = None
  source: str = '<memory>'

  def __post_init__(self):
    n = len(self.user)
    for name in ('item', 'rating', 'timestamp'):
      col = getattr(self, name)
      if col is not None and len(col) != n:
        raise ValueError(
          f'{self.source}: column {name!r} has {len(col)} rows, user has {n}'
        )

  def __len__(self) -> int:
    return len(self.user)

  def take(self, index: np.ndarray) -> Interactions:
    """Rows `index` (an int index or a bool mask), all columns together."""
    pick = lambda c: None if c is None else c[index]
    return Interactions(
      user=self.user[index],
      item=self.item[index],
      rating=pick(self.rating),
      timestamp=pick(self.timestamp),
      source=self.source,
    )


@dataclasses.dataclass(frozen=True)
class Part:
  """One part (train, valid or test) of a split as CSR over users.

  Events of user u are `items[indptr[u]:indptr[u + 1]]`, in chronological
  order where the source has an order. A user may have no event in a part.

  Attributes:
    indptr: int64[U + 1], non-decreasing, indptr[0] == 0.
    items: int32[nnz] 0-based item ids.
    timestamps: int64[nnz] or None.
  """

  indptr: np.ndarray
  items: np.ndarray
  timestamps: np.ndarray | None = None

  @property
  def n_users(self) -> int:
    return len(self.indptr) - 1

  @property
  def nnz(self) -> int:
    return int(self.indptr[-1])

  @property
  def lengths(self) -> np.ndarray:
    """int64[U] number of events per user."""
    return np.diff(self.indptr)

  @property
  def users(self) -> np.ndarray:
    """int64[nnz] the user of each event (the CSR row index expanded)."""
    return np.repeat(np.arange(self.n_users, dtype=np.int64), self.lengths)

  def user_items(self, u: int) -> np.ndarray:
    return self.items[self.indptr[u] : self.indptr[u + 1]]

  def to_csr(self, n_items: int) -> sp.csr_matrix:
    """Binary float32 user x item matrix (repeated events count once).

    Built on copies: SciPy keeps an int32 index array as given, and
    `sum_duplicates` sorts it in place, which would reorder this Part's
    sequences (and change its split's content hash).
    """
    m = sp.csr_matrix(
      (np.ones(self.nnz, np.float32), self.items.copy(), self.indptr.copy()),
      shape=(self.n_users, n_items),
    )
    m.sum_duplicates()
    m.data[:] = 1.0
    return m

  @classmethod
  def from_events(
    cls,
    users: np.ndarray,
    items: np.ndarray,
    n_users: int,
    timestamps: np.ndarray | None = None,
  ) -> Part:
    """Builds a Part from events already in the wanted within-user order.

    A stable sort by user keeps the order of each user's events as given.
    """
    users = np.asarray(users, np.int64)
    order = np.argsort(users, kind='stable')
    counts = np.bincount(users, minlength=n_users)
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    ts = None if timestamps is None else np.asarray(timestamps, np.int64)[order]
    return cls(indptr, np.asarray(items, np.int32)[order], ts)


@dataclasses.dataclass(frozen=True)
class Split:
  """Train / valid / test over one user and item index space.

  Attributes:
    name: dataset name in the registry.
    kind: 'sequential' (leave-one-out style; the model's input at test is
      train + valid, the same item may recur) or 'cf' (user-item sets; a
      (user, item) pair is in at most one part).
    n_users: U.
    n_items: I; item ids are 0..I-1 in every part.
    train, valid, test: the parts, each with U rows.
    exclude_valid: default items removed from ranking at validation.
    exclude_test: default items removed from ranking at test.
    test_history: the model's input when predicting test: 'train+valid'
      (sequential default: the valid item is the most recent history) or
      'train' (CF default, as DiffRec/DDRM: the model is fitted on train and
      scores test from the same train vector; valid only selects). None
      picks the default for `kind`.
    item_ids: [I] the original id of each item (for reports), or None.
    user_ids: [U] the original id of each user, or None.
  """

  name: str
  kind: Kind
  n_users: int
  n_items: int
  train: Part
  valid: Part
  test: Part
  exclude_valid: Exclude = 'none'
  exclude_test: Exclude = 'none'
  test_history: Literal['train', 'train+valid'] | None = None
  item_ids: np.ndarray | None = None
  user_ids: np.ndarray | None = None

  def __post_init__(self):
    if self.test_history is None:
      default = 'train+valid' if self.kind == 'sequential' else 'train'
      object.__setattr__(self, 'test_history', default)
    if self.test_history not in ('train', 'train+valid'):
      raise ValueError(
        f'{self.name}: test_history={self.test_history!r}; expected'
        " 'train' or 'train+valid'"
      )
    for pname in ('train', 'valid', 'test'):
      part = getattr(self, pname)
      if part.n_users != self.n_users:
        raise ValueError(
          f'{self.name}: {pname} has {part.n_users} users, expected'
          f' {self.n_users}'
        )
      if part.nnz and (
        part.items.min() < 0 or part.items.max() >= self.n_items
      ):
        raise ValueError(
          f'{self.name}: {pname} has item ids outside [0, {self.n_items})'
        )
    if self.kind == 'cf':
      self._assert_pairs_disjoint()

  def _assert_pairs_disjoint(self):
    """A (user, item) pair may not be in two parts: that would leak."""
    keys = {}
    for pname in ('train', 'valid', 'test'):
      part = getattr(self, pname)
      keys[pname] = np.unique(
        part.users * np.int64(self.n_items) + part.items.astype(np.int64)
      )
    for a, b in (('train', 'valid'), ('train', 'test'), ('valid', 'test')):
      both = np.intersect1d(keys[a], keys[b], assume_unique=True)
      if len(both):
        u, i = divmod(int(both[0]), self.n_items)
        raise ValueError(
          f'{self.name}: {len(both)} (user, item) pairs are in both {a} and'
          f' {b}, e.g. user {u} item {i}; the split would leak'
        )

  def history(self, stage: Literal['valid', 'test']) -> Part:
    """What a model may see as input when predicting `stage`.

    valid: train. test: `test_history`, i.e. train, or train followed by
    valid (chronological for leave-one-out).
    """
    if stage == 'valid' or (stage == 'test' and self.test_history == 'train'):
      return self.train
    if stage == 'test':
      return concat_parts(self.train, self.valid)
    raise ValueError(f'unknown stage {stage!r}; expected valid or test')

  @property
  def content_hash(self) -> str:
    """sha256 over the split's contents; goes into every run record."""
    h = hashlib.sha256()
    h.update(f'{self.kind}|{self.n_users}|{self.n_items}'.encode())
    for pname in ('train', 'valid', 'test'):
      part = getattr(self, pname)
      h.update(pname.encode())
      h.update(np.ascontiguousarray(part.indptr, np.int64).tobytes())
      h.update(np.ascontiguousarray(part.items, np.int32).tobytes())
    return h.hexdigest()

  def summary(self) -> dict:
    return dict(
      name=self.name,
      kind=self.kind,
      users=self.n_users,
      items=self.n_items,
      train=self.train.nnz,
      valid=self.valid.nnz,
      test=self.test.nnz,
      exclude_valid=self.exclude_valid,
      exclude_test=self.exclude_test,
      test_history=self.test_history,
      hash=self.content_hash,
    )


def concat_parts(*parts: Part) -> Part:
  """Per user, the events of `parts` one after the other."""
  lengths = sum(p.lengths for p in parts)
  indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
  items = np.empty(int(indptr[-1]), np.int32)
  has_ts = all(p.timestamps is not None for p in parts)
  ts = np.empty(len(items), np.int64) if has_ts else None
  offset = indptr[:-1].copy()
  for p in parts:
    # Destination of event j of user u in part p: offset[u] + j.
    dest = np.repeat(offset - p.indptr[:-1], p.lengths) + np.arange(p.nnz)
    items[dest] = p.items
    if has_ts:
      ts[dest] = p.timestamps
    offset += p.lengths
  return Part(indptr, items, ts)


def head_users(split: Split, n_users: int) -> Split:
  """The first `n_users` users of `split`, same item space (tiny configs)."""
  if n_users >= split.n_users:
    return split

  def cut(p: Part) -> Part:
    stop = int(p.indptr[n_users])
    ts = None if p.timestamps is None else p.timestamps[:stop]
    return Part(p.indptr[: n_users + 1].copy(), p.items[:stop], ts)

  return dataclasses.replace(
    split,
    name=f'{split.name}[:{n_users}]',
    n_users=n_users,
    train=cut(split.train),
    valid=cut(split.valid),
    test=cut(split.test),
    user_ids=None if split.user_ids is None else split.user_ids[:n_users],
  )
