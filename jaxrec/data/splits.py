"""Train / valid / test splits; every one returns a checked `types.Split`.

Items in a Split are 0-based (types.py says why); the 1-based files of the
sequential papers are shifted by one on the way in. Within each user, every
part keeps chronological order (or the file's order where the source has no
timestamps but is documented as chronological).

  leave_one_out           last event -> test, second-to-last -> valid
  from_presplit_sequences DiffuRec / ADRec pickles exactly as released
  per_user_ratio          chronological per user, e.g. 8:1:1 or 7:1:2
  global_temporal         two global time cut points
  from_presplit_pairs     DiffRec / DDRM (user, item) arrays as released
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from absl import logging

from jaxrec.data import preprocess, readers, types


def _lengths(seqs: Sequence[np.ndarray]) -> np.ndarray:
  return np.fromiter((len(s) for s in seqs), np.int64, len(seqs))


def leave_one_out(
  sequences: Sequence[np.ndarray],
  name: str,
  n_items: int | None = None,
  times: Sequence[np.ndarray] | None = None,
) -> types.Split:
  """Leave-one-out over chronological sequences of 0-based items.

  Args:
    sequences: one int array per user (user u = index u), oldest first.
    name: dataset name.
    n_items: item count (default: largest id + 1).
    times: optional timestamps aligned with `sequences`, kept in the parts.

  Returns:
    A sequential Split: last event -> test, second-to-last -> valid, the
    rest -> train; nothing excluded at ranking.

  Raises:
    DataError: a user has fewer than 3 events.
  """
  n_users = len(sequences)
  if n_users == 0:
    raise readers.DataError(f'{name}: no users')
  lengths = _lengths(sequences)
  if (lengths < 3).any():
    u = int(np.flatnonzero(lengths < 3)[0])
    raise readers.DataError(
      f'{name}: user {u} has {lengths[u]} events; leave-one-out needs >= 3'
      ' (train, valid, test)'
    )
  items = np.concatenate(sequences).astype(np.int64)
  if items.min() < 0:
    raise readers.DataError(f'{name}: negative item id {items.min()}')
  if n_items is None:
    n_items = int(items.max()) + 1
  ts = None
  if times is not None:
    if not np.array_equal(_lengths(times), lengths):
      raise readers.DataError(f'{name}: times and sequences differ in length')
    ts = np.concatenate(times).astype(np.int64)
  users = np.repeat(np.arange(n_users), lengths)
  # Position of each event counted from the end of its sequence: 1 = last.
  pos_from_end = np.repeat(np.cumsum(lengths), lengths) - np.arange(len(items))
  parts = [
    types.Part.from_events(
      users[m], items[m], n_users, None if ts is None else ts[m]
    )
    for m in (pos_from_end > 2, pos_from_end == 2, pos_from_end == 1)
  ]
  return types.Split(name, 'sequential', n_users, n_items, *parts)


def _one_per_user(name, pname, v, n_users) -> np.ndarray:
  """val/test as int[U] or as U one-item sequences -> int64[U]."""
  if len(v) != n_users:
    raise readers.DataError(
      f'{name}: {pname} has {len(v)} users, train has {n_users}'
    )
  if isinstance(v, np.ndarray) and v.ndim == 1:
    return v.astype(np.int64)
  lengths = _lengths(v)
  if (lengths != 1).any():
    u = int(np.flatnonzero(lengths != 1)[0])
    raise readers.DataError(
      f'{name}: {pname} of user {u} has {lengths[u]} items, expected 1'
    )
  return np.concatenate(v).astype(np.int64)


def from_presplit_sequences(
  train: Sequence[np.ndarray],
  val: Sequence,
  test: Sequence,
  name: str,
  n_items: int | None = None,
  user_ids: np.ndarray | None = None,
  item_ids: np.ndarray | None = None,
) -> types.Split:
  """A DiffuRec / ADRec leave-one-out split exactly as released.

  Args:
    train: per user (index = user) the 1-based train items, oldest first.
    val: per user the one valid item (int[U] or U one-item sequences).
    test: per user the one test item, as `val`.
    name: dataset name.
    n_items: I (DiffuRec: len(smap)); default the largest id.
    user_ids, item_ids: original ids for reports, if known.

  Returns:
    A sequential Split with items shifted to 0-based; nothing excluded.
  """
  n_users = len(train)
  if n_users == 0:
    raise readers.DataError(f'{name}: no users')
  lengths = _lengths(train)
  if (lengths == 0).any():
    u = int(np.flatnonzero(lengths == 0)[0])
    raise readers.DataError(f'{name}: user {u} has an empty train sequence')
  val = _one_per_user(name, 'val', val, n_users)
  test = _one_per_user(name, 'test', test, n_users)
  items = np.concatenate(train).astype(np.int64)
  smallest = min(items.min(), val.min(), test.min())
  if smallest < 1:
    raise readers.DataError(f'{name}: item id {smallest}; expected 1-based')
  if n_items is None:
    n_items = int(max(items.max(), val.max(), test.max()))
  users = np.repeat(np.arange(n_users), lengths)
  one = np.arange(n_users)
  return types.Split(
    name,
    'sequential',
    n_users,
    n_items,
    types.Part.from_events(users, items - 1, n_users),
    types.Part.from_events(one, val - 1, n_users),
    types.Part.from_events(one, test - 1, n_users),
    user_ids=user_ids,
    item_ids=item_ids,
  )


def ratio_counts(n: np.ndarray, ratios: Sequence[float]) -> np.ndarray:
  """Events per part for users with n events (RecBole's rule).

  As RecBole's `_calcu_split_ids`: valid and test get floor(ratio * n);
  train gets the rest; then test, then valid, is raised to 1 when
  0 < ratio * n < 1, taking the event from train, as long as train keeps
  more than one event. E.g. at 8:1:1, n = 5 -> 3/1/1, n = 10 -> 8/1/1,
  n = 2 -> 1/0/1, n = 1 -> 1/0/0.

  Args:
    n: int[U] events per user.
    ratios: three non-negative shares (train, valid, test) summing to 1.

  Returns:
    int64[U, 3] counts (train, valid, test).
  """
  n = np.asarray(n, np.int64)
  r = np.asarray(ratios, np.float64)
  if len(r) != 3 or (r < 0).any() or not np.isclose(r.sum(), 1.0):
    raise ValueError(f'ratios {ratios} must be 3 non-negative shares of 1')
  cnt = np.floor(r[None, :] * n[:, None]).astype(np.int64)
  cnt[:, 0] = n - cnt[:, 1:].sum(axis=1)
  for j in (2, 1):  # RecBole tops up the last part first
    share = r[j] * n
    bump = (cnt[:, 0] > 1) & (share > 0) & (share < 1)
    cnt[bump, j] += 1
    cnt[bump, 0] -= 1
  return cnt


def _require_unique_pairs(x: types.Interactions, name: str, n_items: int):
  key = x.user * np.int64(n_items) + x.item
  uniq, counts = np.unique(key, return_counts=True)
  if len(uniq) != len(key):
    u, i = divmod(int(uniq[np.argmax(counts > 1)]), n_items)
    raise readers.DataError(
      f'{name}: {len(key) - len(uniq)} repeated (user, item) events, e.g.'
      f' user {u} item {i}; a CF split needs unique pairs (run'
      ' preprocess.dedupe first)'
    )


def _check_ids(x: types.Interactions, name: str) -> tuple[int, int]:
  if not len(x):
    raise readers.DataError(f'{name}: no interactions')
  if x.user.min() < 0 or x.item.min() < 0:
    raise readers.DataError(f'{name}: negative ids; run preprocess.remap_ids')
  return int(x.user.max()) + 1, int(x.item.max()) + 1


def per_user_ratio(
  x: types.Interactions,
  ratios: Sequence[float] = (0.8, 0.1, 0.1),
  name: str = 'per_user_ratio',
) -> types.Split:
  """Chronological per-user split (e.g. 8:1:1 or 7:1:2) of CF interactions.

  Each user's events are sorted by timestamp (ties and missing timestamps:
  row order); the oldest go to train, then valid, then test, with the counts
  of `ratio_counts` (RecBole's rounding).

  Args:
    x: interactions with 0-based ids (`preprocess.remap_ids`), one event per
      (user, item) (`preprocess.dedupe`).
    ratios: (train, valid, test) shares.
    name: dataset name.

  Returns:
    A CF Split over users 0..max user, items 0..max item: train excluded at
    valid, train + valid at test.

  Raises:
    DataError: repeated (user, item) pairs, or a user with events but too
      few for a non-empty train part.
  """
  n_users, n_items = _check_ids(x, name)
  _require_unique_pairs(x, name, n_items)
  x = preprocess.sort_chronological(x)
  lengths = np.bincount(x.user, minlength=n_users)
  cnt = ratio_counts(lengths, ratios)
  short = (cnt[:, 0] < 1) & (lengths > 0)
  if short.any():
    u = int(np.flatnonzero(short)[0])
    raise readers.DataError(
      f'{name}: user {u} has {lengths[u]} events, too few for a non-empty'
      f' train part at ratios {tuple(ratios)}'
    )
  pos = np.arange(len(x)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
  n_train = np.repeat(cnt[:, 0], lengths)
  n_valid = np.repeat(cnt[:, 1], lengths)
  part = np.where(pos < n_train, 0, np.where(pos < n_train + n_valid, 1, 2))
  return _cf_split(x, part, name, n_users, n_items)


def _cf_split(x, part, name, n_users, n_items) -> types.Split:
  """CF Split of rows already in chronological order; part[k] in 0, 1, 2."""
  parts = [
    types.Part.from_events(
      x.user[part == p],
      x.item[part == p],
      n_users,
      None if x.timestamp is None else x.timestamp[part == p],
    )
    for p in range(3)
  ]
  return types.Split(
    name,
    'cf',
    n_users,
    n_items,
    *parts,
    exclude_valid='train',
    exclude_test='train+valid',
  )


def global_temporal(
  x: types.Interactions,
  valid_frac: float = 0.1,
  test_frac: float = 0.1,
  name: str = 'global_temporal',
) -> types.Split:
  """Two global cut points in time: the latest events overall are test.

  t_valid and t_test are the (1 - valid_frac - test_frac) and
  (1 - test_frac) quantiles of all timestamps; events before t_valid are
  train, in [t_valid, t_test) valid, at or after t_test test (so ties at a
  cut point move together and the fractions are approximate).

  Unseen rule: a valid or test event whose user or item has no train event
  cannot be scored from train; it is dropped and the count logged. Ids keep
  their input values (users 0..max user, items 0..max item of `x`), so an
  item seen only after the cut stays in the item space with no event.

  Args:
    x: interactions with timestamps, 0-based ids, unique (user, item).
    valid_frac: share of events (by time) for valid.
    test_frac: share of events for test.
    name: dataset name.

  Returns:
    A CF Split: train excluded at valid, train + valid at test.
  """
  if x.timestamp is None:
    raise readers.DataError(f'{name}: a temporal split needs timestamps')
  if not (0 <= valid_frac and 0 < test_frac and valid_frac + test_frac < 1):
    raise ValueError(f'{name}: bad fractions {valid_frac}, {test_frac}')
  n_users, n_items = _check_ids(x, name)
  _require_unique_pairs(x, name, n_items)
  x = preprocess.sort_chronological(x)
  t1, t2 = np.quantile(x.timestamp, [1 - valid_frac - test_frac, 1 - test_frac])
  part = np.where(x.timestamp < t1, 0, np.where(x.timestamp < t2, 1, 2))
  seen_item = np.zeros(n_items, bool)
  seen_item[x.item[part == 0]] = True
  seen_user = np.zeros(n_users, bool)
  seen_user[x.user[part == 0]] = True
  cold_item = (part > 0) & ~seen_item[x.item]
  cold_user = (part > 0) & ~seen_user[x.user]
  cold = cold_item | cold_user
  logging.info(
    '%s: cut points t_valid=%s t_test=%s; dropped %d valid/test events'
    ' (%d of items, %d of users unseen in train)',
    name,
    t1,
    t2,
    int(cold.sum()),
    int(cold_item.sum()),
    int(cold_user.sum()),
  )
  return _cf_split(x.take(~cold), part[~cold], name, n_users, n_items)


def from_presplit_pairs(
  train: np.ndarray, valid: np.ndarray, test: np.ndarray, name: str
) -> types.Split:
  """DiffRec/DDRM arrays of (user, item) rows, as released.

  n_users and n_items are the largest train ids + 1, as DiffRec computes
  them; a valid/test id outside that range is an error. Rows keep their
  order within each user (the files are grouped by user, oldest first).

  Args:
    train, valid, test: int[n, 2] rows [user, item], 0-based.
    name: dataset name.

  Returns:
    A CF Split: train excluded at valid, train + valid at test.
  """
  n_users = int(train[:, 0].max()) + 1
  n_items = int(train[:, 1].max()) + 1
  parts = []
  for pname, rows in (('train', train), ('valid', valid), ('test', test)):
    bad = (rows[:, 0] >= n_users) | (rows[:, 1] >= n_items) | (rows < 0).any(1)
    if bad.any():
      r = int(np.flatnonzero(bad)[0])
      raise readers.DataError(
        f'{name}: {pname} row {r} {rows[r].tolist()} is outside the train'
        f' id range ({n_users} users, {n_items} items)'
      )
    parts.append(types.Part.from_events(rows[:, 0], rows[:, 1], n_users))
  return types.Split(
    name,
    'cf',
    n_users,
    n_items,
    *parts,
    exclude_valid='train',
    exclude_test='train+valid',
  )
