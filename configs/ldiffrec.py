"""L-DiffRec (SIGIR 2023) with its published ML-1M hyperparameters.

    python -m experiments.seeds --config=configs/ldiffrec.py \
      --workdir=runs/ldiffrec-ml-1m-clean-seeds --seeds=0,1,2

Datasets: `diffrec-ml-1m-clean` (default), `diffrec-ml-1m-noisy`; the
items are clustered from the dataset's `item_emb.npy` (LightGCN
embeddings shipped with DiffRec's data). Protocol as configs/diffrec.py
(selected on valid Recall@20; test excludes train + valid).

Settings (the official L-DiffRec inference.py checkpoint names): 2
clusters, latent 300 (in_dims [300]), one-layer decoder (out_dims []),
lamda 0.03 annealed over 500 epochs to 0.005, KL weight annealed to 0.3
over 200 steps, denoiser dims [300] with a 10-wide timestep embedding,
x0 prediction, reweighting, lr 1e-3 (autoencoder) and 5e-4 (denoiser),
AdamW without weight decay, batch 400; clean: T = 40, noise scale 5e-3,
min 5e-3, max 2e-2; noisy: T = 100 with the same noise. Inference from
the history's mu (sampling_steps 0). Up to 1000 epochs, validation every
5, stop 20 epochs after the best.

Quirk flag: `model.dropped_target=True` reconstructs the dropped-out
input, as the official code does (default: the clean input).

Memory: encoders and decoder about 2 x I x 300 floats, the denoiser
about 2 x 310 x 300; batches are dense [400, I] rows.
Train step per device, as XLA accounts it (`python -m tools.memory
--config=configs/ldiffrec.py`): ML-1M clean, batch 400: 51 MiB, of which
26.1 MiB state and batch.
"""

import ml_collections as mlc

from configs import common
from configs import diffrec as diffrec_config

# Per dataset: (steps, noise_scale, noise_min, noise_max).
NOISE = {
  'diffrec-ml-1m-clean': (40, 0.005, 0.005, 0.02),
  'diffrec-ml-1m-noisy': (100, 0.005, 0.005, 0.02),
}


def get_config(arg: str | None = None) -> mlc.ConfigDict:
  a = common.parse_arg(arg, dataset='diffrec-ml-1m-clean', tiny=False)
  c = common.base_config(a.dataset)
  steps, scale, low, high = NOISE.get(a.dataset, NOISE['diffrec-ml-1m-clean'])
  c.model = mlc.ConfigDict(
    {
      'name': 'ldiffrec',
      'clusters_from': a.dataset if a.dataset in NOISE else '',
      'n_cate': 2,
      'cluster_seed': 1,
      'latent': 300,
      'dropout': 0.1,  # on the autoencoder's input
      'reparam': True,
      'mlp_dims': (300,),
      'emb_size': 10,
      'mlp_dropout': 0.5,
      # L-DiffRec keeps the first beta.
      **diffrec_config.diffusion(steps, scale, low, high, first_beta=None),
      'lamda': 0.03,
      'lamda_cap': 0.005,
      'anneal_epochs': 500,
      'kl_cap': 0.3,
      'kl_anneal_steps': 200,
      'dropped_target': False,  # official: True
    }
  )
  diffrec_config.training(c, a.tiny)
  c.optim.lr_groups = {'denoiser': 5e-4}
  if a.tiny:
    c.model.update(latent=8, mlp_dims=(8,), emb_size=4, steps=5)
  return c
