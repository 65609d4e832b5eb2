"""ItemKNN: shrunk cosine item-item similarity, top-k neighbours per item.

    python -m experiments.fit_linear \
      --config=configs/itemknn.py:dataset=beauty --workdir=runs/itemknn-beauty

The grid (k x shrink, 32 points) is searched on validation only; the best
point is tested once. About six minutes on beauty (12k items) on 2 CPU cores.
Memory: the pruned similarity as a dense items x items float32 matrix
(0.03 GiB at ML-1M's 2.8k items, 0.55 GiB at Beauty's 12k) plus one
[I, 1024] float64 block while it is built; refused above
`model.max_dense_bytes`.
"""

import ml_collections as mlc

from configs import common


def get_config(arg: str | None = None) -> mlc.ConfigDict:
  a = common.parse_arg(arg, dataset='ml-100k', tiny=False)
  c = common.base_config(a.dataset)
  c.model = mlc.ConfigDict(
    {'name': 'itemknn', 'k': 100, 'shrink': 10.0, 'max_dense_bytes': 4 * 2**30}
  )
  c.grid = mlc.ConfigDict(
    {
      'k': (5, 10, 20, 50, 100, 200, 500, 1000),
      'shrink': (0.0, 10.0, 100.0, 1000.0),
    }
  )
  if a.tiny:
    c.max_users = 200
    c.grid = mlc.ConfigDict({'k': (5, 20), 'shrink': (0.0,)})
  return c
