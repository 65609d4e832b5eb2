"""PureSVD: W = V V^T from a truncated SVD of the train matrix.

    python -m experiments.fit_linear \
      --config=configs/puresvd.py:dataset=diffrec-ml-1m-clean \
      --workdir=runs/puresvd-diffrec-ml-1m-clean

The number of factors is chosen on validation (8 points). Memory: two dense
items x items float32 buffers (refused above `model.max_dense_bytes`).
"""

import ml_collections as mlc

from configs import common


def get_config(arg: str | None = None) -> mlc.ConfigDict:
  a = common.parse_arg(arg, dataset='ml-100k', tiny=False)
  c = common.base_config(a.dataset)
  c.model = mlc.ConfigDict(
    {
      'name': 'puresvd',
      'factors': 64,
      'seed': 0,
      'max_dense_bytes': 8 * 2**30,
    }
  )
  c.grid = mlc.ConfigDict({'factors': (2, 4, 8, 16, 32, 64, 128, 256)})
  if a.tiny:
    c.max_users = 200
    c.grid = mlc.ConfigDict({'factors': (4, 16)})
  return c
