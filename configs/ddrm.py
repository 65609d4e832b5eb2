"""DDRM (SIGIR 2024) on a frozen MF-BPR or LightGCN backbone, with the
published ML-1M hyperparameters (Polaris-JZ/DDRM `DDRM_*/train.py`).

    python -m experiments.seeds --config=configs/ddrm.py \
      --workdir=runs/ddrm-mf-ml-1m-noisy-seeds --seeds=0,1,2
    python -m experiments.seeds --config=configs/ddrm.py:backbone=lightgcn \
      --workdir=runs/ddrm-lightgcn-ml-1m-noisy-seeds --seeds=0,1,2

The backbone is trained first in `<workdir>/pretrain` (configs/mf.py or
configs/lightgcn.py with 2 layers, selected on valid Recall@20; the seeds
runner shares one backbone between seeds, as the official code ships one
checkpoint); DDRM then trains its two denoisers on it. Dataset
`diffrec-ml-1m-noisy` (default; DDRM's ml-1m files are byte-identical),
train excluded at valid, train + valid at test, Recall = hits / |GT|,
selected on valid Recall@10 every 5 epochs, stopping after 5 validations
without a new best, not before epoch 30.

MF: dims [100, 1000], sigmoid, T = 20, S = 20, noise scale 1e-4, min 1e-4,
max 1e-3, alpha 0.4, beta 1.0. LightGCN: dims [200, 1100], relu, T = 50,
S = int(50 x 1.25) = 62, scale 1e-2, min 1e-4, max 1e-3, alpha 0.1, beta
0. Both: 10-wide timestep embedding, dropout 0.5 on the noisy input, Adam
lr 1e-3, batch 2048. Quirk flag `official_mf_propagation` (MF only):
smooth the MF rows with 4 LightGCN layers as the official MF variant does
(default: the MF rows as trained). Quirk flag `official_validation`:
validate on a fixed half of the validation users (`eval.select_fraction`
0.5: ascending ids shuffled by Python's random.Random(42), the first half,
as the official `Procedure.Test`), so selection and early stopping read
half the users; test still ranks all (default: every validation user).

Official code on these files (REFERENCE.md, MF): test Recall@20
0.0922-0.0924, NDCG@20 0.0620 at evaluations from epoch 5 to 40.
Measured here (test, mean +- std over seeds 0, 1, 2, defaults): MF
(`runs/ddrm-mf-seeds`) Recall@20 0.1158 +- 0.0007, NDCG@20 0.0677 +-
0.0005; LightGCN (`runs/ddrm-lightgcn-seeds`, 2026-12-03, 25-47 min per
seed on one core after a 14-minute backbone) Recall@20 0.1205 +- 0.0022,
NDCG@20 0.0694 +- 0.0011.

Memory: the backbone ((U + I) x 64) and two denoisers of about
(138 x 1000 + 2 x 1000 x 100 + 1000 x 64) floats (MF); ranking holds
[chunk, I] dense history rows and [chunk, I] scores.
Train step per device, as XLA accounts it (`python -m tools.memory
--config=configs/ddrm.py`): ML-1M noisy, batch 2048, MF backbone: 69 MiB, of
which 16.2 MiB state and batch.
"""

import ml_collections as mlc

from configs import common, lightgcn, mf

# Per backbone: the published DDRM settings (train.py's grids).
SETTINGS = {
  'mf': {
    'dims': (100, 1000),
    'act': 'sigmoid',
    'steps': 20,
    'sampling_steps': 20,
    'noise_scale': 1e-4,
    'alpha': 0.4,
    'beta': 1.0,
    'backbone_layers': 0,
  },
  'lightgcn': {
    'dims': (200, 1100),
    'act': 'relu',
    'steps': 50,
    'sampling_steps': 62,
    'noise_scale': 1e-2,
    'alpha': 0.1,
    'beta': 0.0,
    'backbone_layers': 2,
  },
}


def get_config(arg: str | None = None) -> mlc.ConfigDict:
  a = common.parse_arg(
    arg,
    dataset='diffrec-ml-1m-noisy',
    tiny=False,
    backbone='mf',
    official_mf_propagation=False,
    official_validation=False,
  )
  if a.backbone not in SETTINGS:
    raise KeyError(f'backbone={a.backbone!r}; known: {sorted(SETTINGS)}')
  sub = f'dataset={a.dataset}' + (',tiny' if a.tiny else '')
  if a.backbone == 'mf':
    backbone = mf.get_config(sub)
  else:
    backbone = lightgcn.get_config(sub + ',layers=2')
  c = common.base_config(a.dataset)
  c.eval.select = 'recall@10'
  c.model = mlc.ConfigDict(
    {
      'name': 'ddrm',
      'backbone': a.backbone,
      'dim': backbone.model.dim,
      'emb_size': 10,
      'dropout': 0.5,
      'noise_min': 1e-4,
      'noise_max': 1e-3,
      'first_beta': 1e-5,  # overwritten beta_1, as DiffRec
      'sampling_noise': False,
      'pairs': 'user',
      'eval_seed': 0,
      **SETTINGS[a.backbone],
    }
  )
  if a.official_mf_propagation:
    if a.backbone != 'mf':
      raise ValueError('official_mf_propagation applies to backbone=mf only')
    c.model.backbone_layers = 4
  if a.official_validation:
    c.eval.select_fraction = 0.5
    c.eval.select_seed = 42
  mf.training(c, a.tiny)
  c.train.min_epochs = 30
  c.pretrain = mlc.ConfigDict(
    {
      'config': backbone,
      'params': ['user_emb', 'item_emb'],
      'workdir': 'pretrain',
    }
  )
  if a.tiny:
    c.model.update(dims=(8, 16), steps=4, sampling_steps=5)
    c.train.min_epochs = 0
  return c
