"""Small synthetic splits with planted structure, for tests and smoke runs.

Users belong to one of a few clusters and mostly interact with their
cluster's items, so a personalised model must beat popularity on them.
"""

import numpy as np

from jaxrec.data import types


def clustered_split(
  n_users: int = 200,
  n_items: int = 60,
  n_clusters: int = 4,
  per_user: int = 12,
  kind: types.Kind = 'cf',
  seed: int = 0,
) -> types.Split:
  """A split whose users prefer their cluster's items.

  Args:
    n_users, n_items, n_clusters: sizes.
    per_user: events per user (distinct items for 'cf').
    kind: 'cf' (chronological 8:1:1-ish: last two events to valid and test,
      as sets) or 'sequential' (leave-one-out).
    seed: numpy seed.

  Returns:
    A `types.Split` named 'synthetic'.
  """
  rng = np.random.default_rng(seed)
  cluster_items = np.array_split(rng.permutation(n_items), n_clusters)
  users, items = [], []
  for u in range(n_users):
    own = cluster_items[u % n_clusters]
    p = np.full(n_items, 0.1 / n_items)
    p[own] += 0.9 / len(own)
    seq = rng.choice(n_items, size=per_user, replace=False, p=p / p.sum())
    users.append(np.full(per_user, u))
    items.append(seq)
  users, items = np.concatenate(users), np.concatenate(items)
  pos = np.tile(np.arange(per_user), n_users)
  n_valid = 1 if kind == 'sequential' else max(1, per_user // 10)
  is_test = pos >= per_user - n_valid
  is_valid = ~is_test & (pos >= per_user - 2 * n_valid)
  is_train = ~is_test & ~is_valid

  def part(mask):
    return types.Part.from_events(users[mask], items[mask], n_users)

  cf = kind == 'cf'
  return types.Split(
    name='synthetic',
    kind=kind,
    n_users=n_users,
    n_items=n_items,
    train=part(is_train),
    valid=part(is_valid),
    test=part(is_test),
    exclude_valid='train' if cf else 'none',
    exclude_test='train+valid' if cf else 'none',
  )
