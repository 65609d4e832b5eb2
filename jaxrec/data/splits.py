"""Train / valid / test splits; every one returns a checked `types.Split`.

Items in a Split are 0-based (types.py says why); the 1-based files of the
sequential papers are shifted by one on the way in.

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

from jaxrec.data import readers, types


def _sequence_parts(seqs, n_users, times=None):
  """Train / valid / test Parts of leave-one-out over 0-based sequences."""
  lengths = np.array([len(s) for s in seqs], np.int64)
  items = np.concatenate(seqs).astype(np.int32)
  ts = None if times is None else np.concatenate(times).astype(np.int64)
  users = np.repeat(np.arange(n_users), lengths)
  pos_from_end = np.repeat(lengths, lengths) - (
    np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
  )
  parts = []
  for mask in (pos_from_end > 2, pos_from_end == 2, pos_from_end == 1):
    parts.append(
      types.Part.from_events(
        users[mask], items[mask], n_users, None if ts is None else ts[mask]
      )
    )
  return parts


def leave_one_out(
  seqs: Sequence[np.ndarray],
  name: str,
  n_items: int | None = None,
  times: Sequence[np.ndarray] | None = None,
) -> types.Split:
  """Leave-one-out over chronological sequences of 0-based items.

  Args:
    seqs: one int array per user, oldest first.
    name: dataset name.
    n_items: item count (default: largest id + 1).
    times: optional timestamps aligned with `seqs`.

  Returns:
    A sequential Split (nothing excluded at ranking).
  """
  lengths = np.array([len(s) for s in seqs])
  if (lengths < 3).any():
    u = int(np.flatnonzero(lengths < 3)[0])
    raise readers.DataError(
      f'{name}: user {u} has {lengths[u]} events; leave-one-out needs >= 3'
      ' (train, valid, test)'
    )
  if n_items is None:
    n_items = int(max(s.max() for s in seqs)) + 1
  train, valid, test = _sequence_parts(seqs, len(seqs), times)
  return types.Split(name, 'sequential', len(seqs), n_items, train, valid, test)


def from_presplit_sequences(data: dict, name: str) -> types.Split:
  """A DiffuRec/ADRec pickle (`readers.read_seq_pickle`) as released."""
  n_users = len(data['train'])
  lengths = np.array([len(s) for s in data['train']])
  if (lengths == 0).any():
    u = int(np.flatnonzero(lengths == 0)[0])
    raise readers.DataError(f'{name}: user {u} has an empty train sequence')
  users = np.repeat(np.arange(n_users), lengths)
  train = types.Part.from_events(
    users, np.concatenate(data['train']) - 1, n_users
  )
  one = np.arange(n_users)
  valid = types.Part.from_events(one, data['val'] - 1, n_users)
  test = types.Part.from_events(one, data['test'] - 1, n_users)
  return types.Split(
    name, 'sequential', n_users, data['n_items'], train, valid, test
  )


def ratio_counts(n: np.ndarray, ratios: Sequence[float]) -> np.ndarray:
  """Events per part for users with n events (RecBole's rule).

  valid and test get floor(ratio * n), raised to 1 when 0 < ratio * n < 1 as
  long as train keeps more than one event; train gets the rest.

  Returns:
    int64[len(n), 3] counts (train, valid, test).
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


def per_user_ratio(
  x: types.Interactions, name: str, ratios=(0.8, 0.1, 0.1)
) -> types.Split:
  """Chronological per-user split of 0-based, deduplicated interactions.

  Users whose train part would be empty are an error naming the user.
  """
  n_users = int(x.user.max()) + 1
  n_items = int(x.item.max()) + 1
  key = x.user * n_items + x.item
  if len(np.unique(key)) != len(key):
    raise readers.DataError(f'{name}: duplicate (user, item) events; dedupe')
  x = _chronological(x)
  lengths = np.bincount(x.user, minlength=n_users)
  cnt = ratio_counts(lengths, ratios)
  if (cnt[:, 0] < 1).any():
    u = int(np.flatnonzero(cnt[:, 0] < 1)[0])
    raise readers.DataError(
      f'{name}: user {u} has {lengths[u]} events, too few for a non-empty'
      f' train part at ratios {ratios}'
    )
  pos = np.arange(len(x)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
  n_train = np.repeat(cnt[:, 0], lengths)
  n_valid = np.repeat(cnt[:, 1], lengths)
  part = np.where(pos < n_train, 0, np.where(pos < n_train + n_valid, 1, 2))
  return _cf_split(x, part, name, n_users, n_items)


def _chronological(x: types.Interactions) -> types.Interactions:
  keys = (x.user,) if x.timestamp is None else (x.timestamp, x.user)
  return x.take(np.lexsort(keys))


def _cf_split(x, part, name, n_users, n_items) -> types.Split:
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
  x: types.Interactions, name: str, valid_frac=0.1, test_frac=0.1
) -> types.Split:
  """Two global cut points in time: the last events overall are test.

  Events at or after the (1 - valid - test) timestamp quantile go to valid,
  at or after the (1 - test) quantile to test. Valid/test events of items
  that never occur in train cannot be scored from train and are dropped
  (logged); users keep their ids and may have empty parts.
  """
  if x.timestamp is None:
    raise readers.DataError(f'{name}: a temporal split needs timestamps')
  x = _chronological(x)
  t1, t2 = np.quantile(x.timestamp, [1 - valid_frac - test_frac, 1 - test_frac])
  part = np.where(x.timestamp < t1, 0, np.where(x.timestamp < t2, 1, 2))
  seen = np.zeros(int(x.item.max()) + 1, bool)
  seen[x.item[part == 0]] = True
  cold = (part > 0) & ~seen[x.item]
  if cold.any():
    logging.info(
      '%s: dropped %d valid/test events of items unseen in train',
      name,
      int(cold.sum()),
    )
  x, part = x.take(~cold), part[~cold]
  return _cf_split(x, part, name, int(x.user.max()) + 1, len(seen))


def from_presplit_pairs(
  train: np.ndarray, valid: np.ndarray, test: np.ndarray, name: str
) -> types.Split:
  """DiffRec/DDRM arrays of (user, item) rows, as released.

  n_users and n_items are the largest train ids + 1, as DiffRec computes
  them; a valid/test id outside that range is an error.
  """
  n_users = int(train[:, 0].max()) + 1
  n_items = int(train[:, 1].max()) + 1
  parts = []
  for pname, rows in (('train', train), ('valid', valid), ('test', test)):
    bad = (rows[:, 0] >= n_users) | (rows[:, 1] >= n_items)
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
