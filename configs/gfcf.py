"""GF-CF: linear + ideal low-pass graph filters, no training.

    python -m experiments.fit_linear \
      --config=configs/gfcf.py:dataset=diffrec-ml-1m-clean \
      --workdir=runs/gfcf-diffrec-ml-1m-clean

Official settings: 256 singular vectors, alpha 0.3 (the default point);
the grid over alpha x factors (15 points) is searched on validation.
Memory: three dense items x items float32 buffers (refused above
`model.max_dense_bytes`).
"""

import ml_collections as mlc

from configs import common


def get_config(arg: str | None = None) -> mlc.ConfigDict:
  a = common.parse_arg(arg, dataset='ml-100k', tiny=False)
  c = common.base_config(a.dataset)
  c.model = mlc.ConfigDict(
    {
      'name': 'gfcf',
      'alpha': 0.3,
      'factors': 256,
      'seed': 0,
      'max_dense_bytes': 8 * 2**30,
    }
  )
  c.grid = mlc.ConfigDict(
    {'alpha': (0.0, 0.1, 0.3, 0.5, 1.0), 'factors': (64, 128, 256)}
  )
  if a.tiny:
    c.max_users = 200
    c.grid = mlc.ConfigDict({'alpha': (0.0, 0.3), 'factors': (8,)})
  return c
