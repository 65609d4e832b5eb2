"""Preprocessing steps on `types.Interactions`; each logs what it removed.

The recipe of the raw MovieLens datasets in the registry is
  filter_rating -> dedupe -> kcore -> remap_ids
and every step returns a new `Interactions` (nothing is modified in place).
`dedupe` sorts chronologically first, so after it the rows are in
chronological order (by user, then timestamp, ties in file order) and the
later steps keep that order.
"""

from __future__ import annotations

import numpy as np
from absl import logging

from jaxrec.data import readers, types


def _n_unique(a: np.ndarray) -> int:
  return len(np.unique(a)) if len(a) else 0


def _log(step: str, before: types.Interactions, after: types.Interactions):
  u0, u1 = _n_unique(before.user), _n_unique(after.user)
  i0, i1 = _n_unique(before.item), _n_unique(after.item)
  logging.info(
    '%s: %s removed %d of %d rows, %d of %d users, %d of %d items',
    before.source,
    step,
    len(before) - len(after),
    len(before),
    u0 - u1,
    u0,
    i0 - i1,
    i0,
  )


def sort_chronological(x: types.Interactions) -> types.Interactions:
  """Sorted by user, then timestamp; ties keep their row order (stable).

  Without timestamps the row order within each user is kept.

  Args:
    x: any interactions.

  Returns:
    The same rows, reordered.
  """
  if x.timestamp is None:
    order = np.argsort(x.user, kind='stable')
  else:
    order = np.lexsort((x.timestamp, x.user))  # lexsort is stable
  return x.take(order)


def filter_rating(
  x: types.Interactions, min_rating: float
) -> types.Interactions:
  """Keeps events with rating >= min_rating (implicit positives).

  Args:
    x: interactions with a rating column.
    min_rating: the smallest rating kept.

  Returns:
    The kept rows, in their order.
  """
  if x.rating is None:
    raise readers.DataError(f'{x.source}: no rating column to filter on')
  out = x.take(x.rating >= min_rating)
  _log(f'rating >= {min_rating}', x, out)
  return out


def dedupe(x: types.Interactions, keep: str = 'first') -> types.Interactions:
  """One event per (user, item): the earliest or the latest.

  Rows are first sorted chronologically (`sort_chronological`), so 'first'
  keeps the earliest event of a pair and 'last' the latest (ties: the one
  earlier / later in row order).

  Args:
    x: interactions.
    keep: 'first' or 'last'.

  Returns:
    Deduplicated rows in chronological order.
  """
  if keep not in ('first', 'last'):
    raise ValueError(f"keep={keep!r}; expected 'first' or 'last'")
  x = sort_chronological(x)
  if not len(x):
    return x
  key = x.user * (int(x.item.max()) + 1) + x.item
  order = np.arange(len(x))
  if keep == 'last':
    key, order = key[::-1], order[::-1]
  _, first = np.unique(key, return_index=True)
  out = x.take(np.sort(order[first]))
  _log(f'dedupe(keep={keep})', x, out)
  return out


def kcore(
  x: types.Interactions, user_k: int, item_k: int
) -> types.Interactions:
  """Iteratively drops users with < user_k and items with < item_k events.

  Repeats until both hold for every remaining user and item (a fixed point);
  every event counts, so deduplicate first for counts of distinct pairs.

  Args:
    x: interactions.
    user_k: the fewest events a kept user has.
    item_k: the fewest events a kept item has.

  Returns:
    The kept rows, in their order.
  """
  out, rounds = x, 0
  while len(out):
    _, u_inv, u_cnt = np.unique(
      out.user, return_inverse=True, return_counts=True
    )
    _, i_inv, i_cnt = np.unique(
      out.item, return_inverse=True, return_counts=True
    )
    keep = (u_cnt[u_inv] >= user_k) & (i_cnt[i_inv] >= item_k)
    if keep.all():
      break
    out, rounds = out.take(keep), rounds + 1
  _log(f'{user_k}/{item_k}-core ({rounds} rounds)', x, out)
  return out


def remap_ids(
  x: types.Interactions,
) -> tuple[types.Interactions, np.ndarray, np.ndarray]:
  """Users and items renumbered 0..U-1 and 0..I-1 in increasing original id.

  Sorted original ids (not order of first appearance) make the numbering
  independent of row order, so the same events always get the same ids.

  Args:
    x: interactions with any non-negative ids.

  Returns:
    (Interactions with new ids, rows in the same order; user_ids int64[U];
    item_ids int64[I]) where user_ids[u] is the original id of new user u.
  """
  user_ids, user = np.unique(x.user, return_inverse=True)
  item_ids, item = np.unique(x.item, return_inverse=True)
  out = types.Interactions(
    user=user.astype(np.int64).reshape(-1),
    item=item.astype(np.int64).reshape(-1),
    rating=x.rating,
    timestamp=x.timestamp,
    source=x.source,
  )
  return out, user_ids, item_ids


def to_sequences(
  x: types.Interactions,
) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray] | None]:
  """Per-user sequences in the current row order (sort first if needed).

  Args:
    x: interactions.

  Returns:
    (user ids int64[U] ascending, one item array per user, one timestamp
    array per user or None).
  """
  order = np.argsort(x.user, kind='stable')
  users, starts = np.unique(x.user[order], return_index=True)
  cut = lambda a: np.split(a[order], starts[1:])
  times = None if x.timestamp is None else cut(x.timestamp)
  return users, cut(x.item), times
