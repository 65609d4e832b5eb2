"""DreamRec (NeurIPS 2023): MSE-only x0 generation with classifier-free
guidance.

    python -m experiments.train --config=configs/dreamrec.py:dataset=beauty \
      --workdir=runs/dreamrec-beauty

The paper's datasets (YooChoose, KuaiShou, Zhihu) are not among jaxrec's;
settings are the official defaults: d = 64, T = 200 'exp' schedule, p = 0.1,
w = 2, Adam lr 0.005, batch 256, a history of the last 10 items (their
`seq_size`), every prefix as an example (their data is next-item rows),
validation every 10 epochs. Leave-one-out, nothing
excluded, selected on validation NDCG@10. Each validation runs 200 guided
reverse steps (two denoiser calls each) per user: cheap, the denoiser is
one linear layer.

Measured (README: results, ADRec's datasets): on adrec-baby
(`dataset=adrec-baby`, these settings, seed 0) 60 steps/s on 2 cores, 225
steps per epoch, 10 epochs and their validation in about 35 s; early stop
at epoch 80 after 5 minutes. The item embeddings collapse under the MSE
(train loss 0.84 to 2e-4 by epoch 30) and test HR@10 is 0.0035, below
TopPop's 0.0162: the items never a target keep their N(0, 1) norm of about
8 against the trained rows' 0.2 and fill every top-10 list
(`experiments.collapse`). With `empty_history` (now the default; 271
steps per epoch, 11 minutes beside another run) HR@10 is 0.0048: the 27
items absent from train still fill the lists. Both used jaxrec's
pre-LayerNorm block; with the official encoder and initialisation (now
the defaults) the best validation is epoch 10 and test HR@10 is 0.0029,
NDCG@10 0.0015 (11 minutes beside two other runs; stopped at epoch 60).

Memory: the train step per device, as XLA accounts it (`python -m
tools.memory --config=configs/dreamrec.py`): Beauty, batch 256: 31 MiB, of
which 9.5 MiB state and batch.
"""

import ml_collections as mlc

from configs import common
from jaxrec.train import optim


def get_config(arg: str | None = None) -> mlc.ConfigDict:
  a = common.parse_arg(arg, dataset='beauty', tiny=False)
  c = common.base_config(a.dataset)
  c.eval.select = 'ndcg@10'
  c.model = mlc.ConfigDict(
    {
      'name': 'dreamrec',
      'max_len': 10,
      'dim': 64,
      'heads': 1,
      'blocks': 1,
      'dropout': 0.1,
      'steps': 200,
      'schedule': 'exp',
      'guidance_p': 0.1,
      'guidance_w': 2.0,
      'eval_seed': 0,
      # Every user's first event is an example too, with an empty history
      # (the official data's rows: each sequence's first item is a target).
      'empty_history': True,
      # The official history block and positions (`dreamrec.OfficialBlock`);
      # 'prenorm': jaxrec's pre-LayerNorm block.
      'encoder': 'official',
      # Linear layers as PyTorch's defaults (the official code's); 'flax'.
      'init': 'official',
      # Official-code quirks (`jaxrec.models.dreamrec`), off = correct.
      'padding_item': False,
      'eval_dropout': False,
    }
  )
  c.optim = optim.default_config()
  c.optim.update(lr=0.005, b2=0.999)
  c.train = mlc.ConfigDict(
    {
      'batch_size': 256,
      'epochs': 200,
      'steps': 0,
      'eval_every': 0,
      'eval_every_epochs': 10,
      'patience': 5,
      'log_every': 100,
      'checkpoint_minutes': 10.0,  # latest state also saved this often
      'max_memory_bytes': 0,  # per device; 0: the device's memory
      'distributed': False,
    }
  )
  if a.tiny:
    c.max_users = 96
    c.model.update(max_len=6, dim=16, steps=8)
    c.train.update(batch_size=32, epochs=2, eval_every=3, log_every=2)
    c.eval.chunk_size = 32
  return c
