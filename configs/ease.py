"""EASE (Steck, WWW 2019): closed-form item-item autoencoder, L2 lambda.

    python -m experiments.fit_linear \
      --config=configs/ease.py:dataset=diffrec-ml-1m-clean \
      --workdir=runs/ease-diffrec-ml-1m-clean

lambda is chosen on validation over the grid (11 points, log-spaced), then
tested once. Each fit is one dense items x items inverse: about 0.3 s for
ML-1M (3k items), 10-15 s for Beauty (12k) on 2 CPU cores. The fit's dense
memory is about 2 x items^2 x 4 bytes; above `model.max_dense_bytes` it is
refused.
"""

import ml_collections as mlc

from configs import common


def get_config(arg: str | None = None) -> mlc.ConfigDict:
  a = common.parse_arg(arg, dataset='ml-100k', tiny=False)
  c = common.base_config(a.dataset)
  c.model = mlc.ConfigDict(
    {
      'name': 'ease',
      'l2': 500.0,
      'dtype': 'float32',
      'max_dense_bytes': 8 * 2**30,
    }
  )
  c.grid = mlc.ConfigDict(
    {'l2': (10.0, 50.0, 100.0, 200.0, 500.0, 1e3, 2e3, 5e3, 1e4, 2e4, 5e4)}
  )
  if a.tiny:
    c.max_users = 200
    c.grid = mlc.ConfigDict({'l2': (10.0, 100.0)})
  return c
