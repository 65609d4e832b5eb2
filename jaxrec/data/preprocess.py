"""Preprocessing steps on `types.Interactions`; each logs what it removed.

The usual recipe for raw ratings is
  sort_chronological -> filter_rating -> dedupe -> kcore -> remap_ids
and every step returns a new `Interactions` (nothing is modified in place).
"""

from __future__ import annotations

import numpy as np
from absl import logging

from jaxrec.data import types


def _log(step: str, before: types.Interactions, after: types.Interactions):
  logging.info(
    '%s: %s removed %d of %d events (%d -> %d users, %d -> %d items)',
    before.source,
    step,
    len(before) - len(after),
    len(before),
    len(np.unique(before.user)),
    len(np.unique(after.user)),
    len(np.unique(before.item)),
    len(np.unique(after.item)),
  )


def sort_chronological(x: types.Interactions) -> types.Interactions:
  """Sorted by user, then timestamp; ties keep their file order (stable).

  Without timestamps the file order within each user is kept.
  """
  keys = (x.user,) if x.timestamp is None else (x.timestamp, x.user)
  return x.take(np.lexsort(keys))


def filter_rating(x: types.Interactions, min_rating: float):
  """Keeps events with rating >= min_rating (implicit positives)."""
  if x.rating is None:
    raise ValueError(f'{x.source}: no rating column to filter on')
  out = x.take(x.rating >= min_rating)
  _log(f'rating >= {min_rating}', x, out)
  return out


def dedupe(x: types.Interactions, keep: str = 'first'):
  """One event per (user, item): the first or last in the current order."""
  if keep not in ('first', 'last'):
    raise ValueError(f"keep={keep!r}; expected 'first' or 'last'")
  key = x.user * (int(x.item.max()) + 1) + x.item
  order = np.arange(len(x))
  if keep == 'last':
    key, order = key[::-1], order[::-1]
  _, first = np.unique(key, return_index=True)
  out = x.take(np.sort(order[first]))
  _log(f'dedupe(keep={keep})', x, out)
  return out


def kcore(x: types.Interactions, user_k: int, item_k: int):
  """Iteratively drops users with < user_k and items with < item_k events.

  Repeats until both hold for every remaining user and item (a fixed point).
  """
  out = x
  while True:
    _, u_inv, u_cnt = np.unique(
      out.user, return_inverse=True, return_counts=True
    )
    _, i_inv, i_cnt = np.unique(
      out.item, return_inverse=True, return_counts=True
    )
    keep = (u_cnt[u_inv] >= user_k) & (i_cnt[i_inv] >= item_k)
    if keep.all():
      break
    out = out.take(keep)
  _log(f'{user_k}/{item_k}-core', x, out)
  return out


def remap_ids(x: types.Interactions):
  """Users and items renumbered 0..U-1 and 0..I-1 in increasing original id.

  Returns:
    (Interactions with new ids, user_ids[U], item_ids[I]) where user_ids[u]
    is the original id of new user u.
  """
  user_ids, user = np.unique(x.user, return_inverse=True)
  item_ids, item = np.unique(x.item, return_inverse=True)
  out = types.Interactions(
    user=user.astype(np.int64),
    item=item.astype(np.int64),
    rating=x.rating,
    timestamp=x.timestamp,
    source=x.source,
  )
  return out, user_ids, item_ids
