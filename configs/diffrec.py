"""DiffRec (SIGIR 2023) with its published ML-1M hyperparameters.

    python -m experiments.train --config=configs/diffrec.py \
      --workdir=runs/diffrec-ml-1m-clean
    python -m experiments.seeds --config=configs/diffrec.py \
      --workdir=runs/diffrec-ml-1m-clean-seeds --seeds=0,1,2

Datasets: `diffrec-ml-1m-clean` (default) and `diffrec-ml-1m-noisy`. The
protocol is the dataset's: the model reads the train rows at valid and
test; train is excluded at valid, train + valid at test; Recall = hits /
|GT|; the step is chosen on valid Recall@20.

Settings (the official README / inference.py checkpoints): lr 1e-3, weight
decay 0 (AdamW), batch 400, dims [200, 600], timestep embedding 10, x0
prediction, reweighting on, loss-aware timestep sampling, inference from
the clean history (sampling_steps 0) along the posterior means. Clean:
T = 40, noise scale 5e-3, min 5e-3, max 1e-2. Noisy: T = 5, scale 0.5,
min 1e-3, max 1e-2. Up to 1000 epochs, validation every 5, stop 20 epochs
after the best (3 validations).

Paper (ML-1M clean): Recall@20 0.1787, NDCG@20 0.1148 (as quoted; not
checked against the paper text). The official code re-run on these files
(REFERENCE.md): best epoch 10, test Recall@10 0.1007, Recall@20 0.1697,
NDCG@10 0.0862, NDCG@20 0.1094.

Memory: the denoiser's weights are about 2 x (I + 10) x 600 floats (7 MB at
I = 2,810); each batch holds dense [400, I] rows (4.5 MB); ranking holds
[chunk, I] rows and scores per step.
Train step per device, as XLA accounts it (`python -m tools.memory
--config=configs/diffrec.py`): ML-1M clean, batch 400: 74 MiB, of which 45.7
MiB state and batch.
"""

import ml_collections as mlc

from configs import common
from jaxrec.train import optim

# Per dataset: (steps, noise_scale, noise_min, noise_max).
NOISE = {
  'diffrec-ml-1m-clean': (40, 0.005, 0.005, 0.01),
  'diffrec-ml-1m-noisy': (5, 0.5, 0.001, 0.01),
}


def get_config(arg: str | None = None) -> mlc.ConfigDict:
  a = common.parse_arg(arg, dataset='diffrec-ml-1m-clean', tiny=False)
  c = common.base_config(a.dataset)
  steps, scale, low, high = NOISE.get(a.dataset, NOISE['diffrec-ml-1m-clean'])
  c.model = mlc.ConfigDict(
    {
      'name': 'diffrec',
      'dims': (200, 600),
      'emb_size': 10,
      'dropout': 0.5,
      'norm': False,
      **diffusion(steps, scale, low, high),
    }
  )
  training(c, a.tiny)
  if a.tiny:
    c.model.update(dims=(16,), emb_size=4, steps=5)
  return c


def diffusion(steps, scale, low, high, first_beta=1e-5) -> dict:
  """DiffRec's diffusion keys (`GaussianDiffusion`, shared by L-DiffRec and
  CF-Diff): linear-variance betas (first beta overwritten unless None), x0
  prediction, reweighting, loss-aware timesteps (10 losses per step, 1e-3
  uniform), ranking from the clean history along the posterior means."""
  return {
    'steps': steps,
    'noise_scale': scale,
    'noise_min': low,
    'noise_max': high,
    'first_beta': first_beta,
    'predict': 'x0',  # or 'eps'
    'reweight': True,
    'sampler': 'importance',  # loss-aware; 'uniform'
    'history': 10,  # losses kept per timestep
    'uniform_prob': 1e-3,
    'sampling_steps': 0,  # T': forward steps applied to the history
    'sampling_noise': False,
    'eval_seed': 0,
  }


def training(c: mlc.ConfigDict, tiny: bool) -> None:
  """Sets what DiffRec and L-DiffRec train and select with: AdamW (no
  weight decay) at 1e-3, batch 400, validation Recall@20 every 5 epochs,
  stopping 20 epochs after the best."""
  c.eval.select = 'recall@20'
  c.optim = optim.default_config()
  c.optim.update(name='adamw', lr=1e-3, b2=0.999, weight_decay=0.0)
  c.train = mlc.ConfigDict(
    {
      'batch_size': 400,
      'epochs': 1000,
      'steps': 0,
      'eval_every': 0,
      'eval_every_epochs': 5,
      'patience': 3,  # validations without a new best (20 epochs)
      'log_every': 15,  # steps (one epoch of ML-1M)
      'checkpoint_minutes': 10.0,
      'max_memory_bytes': 0,  # per device; 0: the device's memory
      'distributed': False,
    }
  )
  if tiny:
    c.max_users = 96
    c.train.update(batch_size=32, epochs=4, eval_every=3, log_every=2)
    c.eval.chunk_size = 32
