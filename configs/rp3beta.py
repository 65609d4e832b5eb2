"""RP3beta: popularity-discounted 3-step random walk, top-k per item.

    python -m experiments.fit_linear \
      --config=configs/rp3beta.py:dataset=diffrec-ml-1m-clean \
      --workdir=runs/rp3beta-diffrec-ml-1m-clean

The grid (alpha x beta x k, 64 points, spanning Dacrema et al.'s tuned
ranges) is searched on validation; the best point is tested once. Memory:
two dense items x items float32 buffers (0.06 GiB for ML-1M's 2.8k items;
1.2 GiB for Beauty's 12k); above `model.max_dense_bytes` it is refused.
"""

import ml_collections as mlc

from configs import common


def get_config(arg: str | None = None) -> mlc.ConfigDict:
  a = common.parse_arg(arg, dataset='ml-100k', tiny=False)
  c = common.base_config(a.dataset)
  c.model = mlc.ConfigDict(
    {
      'name': 'rp3beta',
      'alpha': 1.0,
      'beta': 0.5,
      'k': 200,
      'max_dense_bytes': 8 * 2**30,
    }
  )
  c.grid = mlc.ConfigDict(
    {
      'alpha': (0.25, 0.5, 1.0, 1.5),
      'beta': (0.0, 0.3, 0.6, 0.9),
      'k': (50, 200, 500, 2000),
    }
  )
  if a.tiny:
    c.max_users = 200
    c.grid = mlc.ConfigDict({'alpha': (1.0,), 'beta': (0.0, 0.5), 'k': (20,)})
  return c
