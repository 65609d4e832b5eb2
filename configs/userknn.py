"""UserKNN: shrunk cosine user-user similarity, top-k neighbours per user.

    python -m experiments.fit_linear \
      --config=configs/userknn.py:dataset=diffrec-ml-1m-clean \
      --workdir=runs/userknn-diffrec-ml-1m-clean

The grid (k x shrink, 24 points, Dacrema et al.'s ranges) is searched on
validation only; the best point is tested once. Memory: the train matrix
and U x k neighbours (sparse); a fit forms [U, 1024] similarity blocks
(50 MB at ML-1M's 6k users); scoring densifies one chunk of users.
"""

import ml_collections as mlc

from configs import common


def get_config(arg: str | None = None) -> mlc.ConfigDict:
  a = common.parse_arg(arg, dataset='ml-100k', tiny=False)
  c = common.base_config(a.dataset)
  c.model = mlc.ConfigDict({'name': 'userknn', 'k': 100, 'shrink': 10.0})
  c.grid = mlc.ConfigDict(
    {
      'k': (5, 10, 20, 50, 100, 200, 500, 1000),
      'shrink': (0.0, 10.0, 100.0),
    }
  )
  if a.tiny:
    c.max_users = 200
    c.grid = mlc.ConfigDict({'k': (5, 20), 'shrink': (0.0,)})
  return c
