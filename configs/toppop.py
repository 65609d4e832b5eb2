"""TopPop: rank items by train popularity (the evaluator's sanity check).

    python -m experiments.fit_linear --config=configs/toppop.py:dataset=beauty \
      --workdir=runs/toppop-beauty

Seconds on any dataset here. Memory: one float per item.
"""

import ml_collections as mlc

from configs import common


def get_config(arg: str | None = None) -> mlc.ConfigDict:
  a = common.parse_arg(arg, dataset='ml-100k', tiny=False)
  c = common.base_config(a.dataset)
  c.model = mlc.ConfigDict({'name': 'toppop'})
  c.grid = mlc.ConfigDict()
  if a.tiny:
    c.max_users = 200
  return c
