"""Mult-VAE (WWW 2018) with the paper's settings.

    python -m experiments.train --config=configs/multvae.py \
      --workdir=runs/multvae-ml-1m-clean

Any top-n dataset (default `diffrec-ml-1m-clean`); its protocol, selected
on valid Recall@20. Settings (dawenl/vae_cf): [I -> 600 -> 200], tanh,
dropout 0.5 on the normalised input, beta annealed to 0.2 over 200,000
updates, Adam lr 1e-3, batch 500, 200 epochs, validation every 5, stop
after 10 validations without a new best. The official TF code adds L2
0.01 on the weights; left out here (as its PyTorch ports do). Seconds per
epoch on ML-1M on one CPU core.

Memory: 2 x I x 600 weights (16 MB at I = 3.5k) and Adam state; batches
are dense [500, I] rows.
Train step per device, as XLA accounts it (`python -m tools.memory
--config=configs/multvae.py`): ML-1M clean, batch 500: 74 MiB, of which 48.1
MiB state and batch.
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
      'name': 'multvae',
      'hidden': 600,
      'latent': 200,
      'dropout': 0.5,
      'anneal_cap': 0.2,
      'anneal_steps': 200_000,
    }
  )
  c.optim = optim.default_config()
  c.optim.update(name='adam', lr=1e-3, b2=0.999)
  c.train = mlc.ConfigDict(
    {
      'batch_size': 500,
      'epochs': 200,
      'steps': 0,
      'eval_every': 0,
      'eval_every_epochs': 5,
      'patience': 10,
      'log_every': 12,
      'checkpoint_minutes': 10.0,
      'max_memory_bytes': 0,  # per device; 0: the device's memory
      'distributed': False,
    }
  )
  if a.tiny:
    c.max_users = 96
    c.model.update(hidden=16, latent=8)
    c.train.update(batch_size=32, epochs=2, eval_every=3, log_every=2)
    c.eval.chunk_size = 32
  return c
