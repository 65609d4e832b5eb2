"""SASRec with full softmax cross-entropy (the strong CE variant).

    python -m experiments.train --config=configs/sasrec.py:dataset=beauty \
      --workdir=runs/sasrec-beauty

Leave-one-out, nothing excluded at ranking, selected on valid NDCG@10 with
early stopping (patience 10 epochs), tested once on the best checkpoint.
DiffuRec's paper lists SASRec on Beauty at HR@10 6.26 % / NDCG@10 3.09 %;
the CE-trained SASRec here should beat that (README: results).
`dataset=ml-1m` uses max_len 200 and dropout 0.2 (denser data).
On a 2-core CPU, Beauty takes about 35-40 s per epoch (175 steps of 128;
tools/bench.py: 0.24 s per step) and a few seconds per validation; the
README's run took 19 minutes for its 33 epochs.

Memory: the train step per device, as XLA accounts it (`python -m
tools.memory --config=configs/sasrec.py`): Beauty, batch 128: 216 MiB, of
which 9.5 MiB state and batch.
"""

import ml_collections as mlc

from configs import common
from jaxrec.train import optim


def get_config(arg: str | None = None) -> mlc.ConfigDict:
  a = common.parse_arg(arg, dataset='beauty', tiny=False)
  c = common.base_config(a.dataset)
  c.eval.select = 'ndcg@10'
  dense = a.dataset in ('ml-1m', 'ml-1m-raw', 'adrec-ml-100k', 'ml-100k')
  c.model = mlc.ConfigDict(
    {
      'name': 'sasrec',
      'max_len': 200 if dense else 50,
      'dim': 64,
      'heads': 1,
      'blocks': 2,
      'dropout': 0.2 if dense else 0.5,
      # 'key' masks padded keys (correct); 'query' is the DiffuRec quirk.
      'mask_axis': 'key',
    }
  )
  c.optim = optim.default_config()
  c.train = mlc.ConfigDict(
    {
      'batch_size': 128,
      'epochs': 200,
      'steps': 0,  # > 0 overrides epochs
      'eval_every': 0,  # steps; 0 = once per epoch
      'patience': 10,  # validations without a new best
      'log_every': 50,
      'checkpoint_minutes': 10.0,  # latest state also saved this often
      'max_memory_bytes': 0,  # per device; 0: the device's memory
      'distributed': False,  # jax.distributed.initialize() (multi-host)
    }
  )
  # Users per ranking chunk: a validation pass on adrec-sports took 1.5 s
  # at 64-128 against 2.2 s at 512 (activations in cache; 2 cores).
  c.eval.chunk_size = 128
  if a.tiny:
    c.max_users = 96
    c.model.update(max_len=8, dim=16, blocks=1, heads=2, dropout=0.1)
    c.train.update(batch_size=16, epochs=2, eval_every=3, log_every=2)
    c.eval.chunk_size = 32
  return c
