"""The quick-start experiment: TopPop, ItemKNN and EASE on one dataset.

    make experiment
    # = python -m experiments.baselines --config=configs/baselines.py \
    #     --workdir=runs/quickstart

Each model's hyperparameters are chosen on validation (its own config's
grid), then tested once; prints HR/Recall/NDCG@10,20 on test. On ml-100k it
takes well under a minute on 2 CPU cores.
"""

import ml_collections as mlc

from configs import (
  common,
  ease,
  gfcf,
  ials,
  itemknn,
  puresvd,
  rp3beta,
  slim,
  toppop,
  userknn,
)

_MODELS = {
  'toppop': toppop,
  'itemknn': itemknn,
  'userknn': userknn,
  'ease': ease,
  'rp3beta': rp3beta,
  'puresvd': puresvd,
  'gfcf': gfcf,
  'ials': ials,
  'slim': slim,
}


def get_config(arg: str | None = None) -> mlc.ConfigDict:
  a = common.parse_arg(
    arg, dataset='ml-100k', tiny=False, models='toppop+itemknn+ease'
  )
  c = mlc.ConfigDict()
  c.dataset = a.dataset
  # ConfigDict iterates its keys sorted; this keeps the table's row order.
  c.order = tuple(a.models.split('+'))
  c.models = mlc.ConfigDict()
  sub = f'dataset={a.dataset}' + (',tiny' if a.tiny else '')
  for name in a.models.split('+'):
    if name not in _MODELS:
      raise KeyError(f'unknown model {name!r}; known: {sorted(_MODELS)}')
    c.models[name] = _MODELS[name].get_config(sub)
  return c
