"""LightGCN (SIGIR 2020) with its official defaults.

    python -m experiments.train --config=configs/lightgcn.py \
      --workdir=runs/lightgcn-ml-1m-clean

Any top-n dataset (default `diffrec-ml-1m-clean`); its protocol, selected
on valid Recall@20. Settings: 3 layers (`layers=2` is DDRM's backbone),
64 dimensions, N(0, 0.1) init, Adam lr 1e-3, L2 1e-4 on the layer-0 rows
of the batch, batch 2048, uniform-user BPR triples (configs/mf.py), up to
1000 epochs, validation every 5, stop after 5 validations without a new
best. On a 2-core CPU shared with another run: about 9 steps/s, 22 s
per epoch on ML-1M clean (2026-12-02), so a run is hours.

Measured here (test, selected on valid Recall@20, one run each):
diffrec-ml-1m-clean (`runs/lightgcn-diffrec-ml-1m-clean`, best epoch 130
of 155): Recall@20 0.1621, NDCG@20 0.1025, Recall@10 0.0955, NDCG@10
0.0803; diffrec-ml-1m-noisy (`runs/lightgcn-diffrec-ml-1m-noisy`, best
epoch 120 of 145, 11-12 s per epoch on one core): Recall@20 0.1201,
NDCG@20 0.0662, Recall@10 0.0626, NDCG@10 0.0453.

Memory: MF-BPR's, plus the normalised graph (2 nnz entries: 10 MB at
ML-1M) and K + 1 copies of the (U + I) x 64 embeddings in a step.
Train step per device, as XLA accounts it (`python -m tools.memory
--config=configs/lightgcn.py`): ML-1M clean, batch 2048: 21 MiB, of which
6.4 MiB state and batch.
"""

import ml_collections as mlc

from configs import common, mf


def get_config(arg: str | None = None) -> mlc.ConfigDict:
  a = common.parse_arg(arg, dataset='diffrec-ml-1m-clean', tiny=False, layers=3)
  c = mf.get_config(f'dataset={a.dataset}' + (',tiny' if a.tiny else ''))
  c.model.name = 'lightgcn'
  c.model.layers = a.layers
  return c
