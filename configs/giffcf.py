"""GiffCF (SIGIR 2024) with its published ML-1M settings
(VinciZhu/GiffCF `configs/movielens.toml`).

    python -m experiments.seeds --config=configs/giffcf.py \
      --workdir=runs/giffcf-ml-1m-clean-seeds --seeds=0,1,2

Dataset `diffrec-ml-1m-clean` (GiffCF's ml-1m_clean is DiffRec's); train
excluded at valid, train + valid at test; selected on valid Recall@20 with
GiffCF's denominator min(|GT|, 20) (`recall_capped@20`; the table also
reports Recall = hits / |GT|), every 10 epochs, stopping after 20
validations without a new best (200 epochs), up to 1000 epochs.

Settings: embedding 200, T = 3, alpha 1.5, no ideal filter (weight 0; the
cutoff 200 applies when it is set), no noise (scale 0, decay 0.5), dropout
0.5 on the condition, Adam lr 1e-3 for all weights, batch 100. The
official README reports, for its paper checkpoint, Recall@20 0.1947 and
NDCG@20 0.1221 (Recall@10 0.1251, NDCG@10 0.0962), and 0.2024 / 0.1272
for its retrained one.

Memory: the smoothing operator S, items x items float32 (32 MB at ML-1M's
2,810 items; two such buffers while it is built; refused above
`max_dense_bytes`), and I x 200 embeddings; batches are dense [100, I]
rows.
Train step per device, as XLA accounts it (`python -m tools.memory
--config=configs/giffcf.py`): ML-1M clean, batch 100: 24 MiB, of which 7.5
MiB state and batch.
"""

import ml_collections as mlc

from configs import common
from jaxrec.train import optim


def get_config(arg: str | None = None) -> mlc.ConfigDict:
  a = common.parse_arg(arg, dataset='diffrec-ml-1m-clean', tiny=False)
  c = common.base_config(a.dataset)
  c.eval.metrics = common.METRICS + ('recall_capped',)
  c.eval.select = 'recall_capped@20'
  c.model = mlc.ConfigDict(
    {
      'name': 'giffcf',
      'dim': 200,
      'steps': 3,
      'alpha': 1.5,
      'ideal_weight': 0.0,
      'ideal_cutoff': 200,
      'noise_scale': 0.0,
      'noise_decay': 0.5,
      'dropout': 0.5,
      'max_dense_bytes': 4 * 2**30,
    }
  )
  c.optim = optim.default_config()
  c.optim.update(name='adam', lr=1e-3, b2=0.999, eps=1e-7)  # Keras Adam
  c.train = mlc.ConfigDict(
    {
      'batch_size': 100,
      'epochs': 1000,
      'steps': 0,
      'eval_every': 0,
      'eval_every_epochs': 10,
      'patience': 20,
      'log_every': 60,
      'checkpoint_minutes': 10.0,
      'max_memory_bytes': 0,  # per device; 0: the device's memory
      'distributed': False,
    }
  )
  if a.tiny:
    c.max_users = 96
    c.model.update(dim=8, ideal_cutoff=4)
    c.train.update(batch_size=32, epochs=2, eval_every=3, log_every=2)
    c.eval.chunk_size = 32
  return c
