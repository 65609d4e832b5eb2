"""SLIM (ElasticNet) as tuned by Dacrema et al. (RecSys 2019).

    python -m experiments.fit_linear \
      --config=configs/slim.py:dataset=diffrec-ml-1m-clean \
      --workdir=runs/slim-diffrec-ml-1m-clean

The grid (alpha x l1_ratio at k = 100, 12 points) is searched on validation
only; the best point is tested once. A fit is one ElasticNet per item
(about a minute per point on ML-1M's 2.8k items on one CPU core). Memory:
the train matrix and W, items x items float32 (0.03 GiB at 2.8k items;
refused above `max_dense_bytes`).
"""

import ml_collections as mlc

from configs import common


def get_config(arg: str | None = None) -> mlc.ConfigDict:
  a = common.parse_arg(arg, dataset='ml-100k', tiny=False)
  c = common.base_config(a.dataset)
  c.model = mlc.ConfigDict(
    {
      'name': 'slim',
      'alpha': 1e-3,
      'l1_ratio': 0.1,
      'k': 100,
      'max_iter': 100,
      'tol': 1e-4,
      'max_dense_bytes': 4 * 2**30,
    }
  )
  c.grid = mlc.ConfigDict(
    {'alpha': (1e-3, 1e-2, 1e-1, 1.0), 'l1_ratio': (1e-3, 1e-2, 0.1)}
  )
  if a.tiny:
    c.max_users = 200
    c.grid = mlc.ConfigDict({'alpha': (1e-3,), 'l1_ratio': (0.1, 0.5)})
  return c
