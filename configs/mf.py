"""MF-BPR with the LightGCN code base's defaults (DDRM's MF backbone).

    python -m experiments.train --config=configs/mf.py \
      --workdir=runs/mf-ml-1m-clean
    python -m experiments.train \
      --config=configs/mf.py:dataset=diffrec-ml-1m-noisy \
      --workdir=runs/mf-ml-1m-noisy

Any top-n dataset (default `diffrec-ml-1m-clean`); its protocol, selected
on valid Recall@20. Settings: 64 dimensions, N(0, 0.1) init, Adam lr 1e-3,
L2 1e-4 on the batch's rows, batch 2048, an epoch of n_train triples with
uniform users (`pairs='user'`, the official sampler; 'interaction' visits
every training interaction once), up to 1000 epochs, validation every 5,
stop after 5 validations without a new best. ML-1M clean: 197 steps per
epoch, about 6 s per epoch and a few seconds per validation on a 2-core
CPU shared with three other runs (2026-12-04); the README's run (best epoch
65) took about 10 minutes.

Memory: (U + I) x 64 floats of parameters and twice that of Adam state
(7 MB at ML-1M); batches of 3 x 2048 ids; ranking holds [chunk, I] scores.
Train step per device, as XLA accounts it (`python -m tools.memory
--config=configs/mf.py`): ML-1M clean, batch 2048: 14 MiB, of which 6.4 MiB
state and batch.
"""

import ml_collections as mlc

from configs import common
from jaxrec.train import optim


def get_config(arg: str | None = None) -> mlc.ConfigDict:
  a = common.parse_arg(arg, dataset='diffrec-ml-1m-clean', tiny=False)
  c = common.base_config(a.dataset)
  c.eval.select = 'recall@20'
  c.model = mlc.ConfigDict(
    {
      'name': 'mf',
      'dim': 64,
      'init_std': 0.1,
      'decay': 1e-4,
      'pairs': 'user',
    }
  )
  training(c, a.tiny)
  return c


def training(c: mlc.ConfigDict, tiny: bool) -> None:
  """Adam 1e-3, batch 2048, validation every 5 epochs, patience 5."""
  c.optim = optim.default_config()
  c.optim.update(name='adam', lr=1e-3, b2=0.999)  # torch.optim.Adam's
  c.train = mlc.ConfigDict(
    {
      'batch_size': 2048,
      'epochs': 1000,
      'steps': 0,
      'eval_every': 0,
      'eval_every_epochs': 5,
      'patience': 5,
      'log_every': 210,
      'checkpoint_minutes': 10.0,
      'max_memory_bytes': 0,  # per device; 0: the device's memory
      'distributed': False,
    }
  )
  if tiny:
    c.max_users = 96
    c.model.update(dim=8)
    c.train.update(batch_size=32, epochs=2, eval_every=3, log_every=2)
    c.eval.chunk_size = 32
