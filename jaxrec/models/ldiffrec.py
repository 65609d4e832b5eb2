"""L-DiffRec (Wang et al., SIGIR 2023; YiyanXu/DiffRec, L-DiffRec/).

DiffRec in a learned latent space: items are clustered (k-means over
pre-trained item embeddings, `item_emb.npy` of the dataset); each cluster's
columns of the interaction vector go through their own variational
encoder (Linear + tanh to [mu_c, logvar_c], the latent width of a cluster
proportional to its item count, the widths summing to `latent`); the
concatenated latent is diffused and denoised exactly as DiffRec's
interaction vector (`jaxrec.models.diffrec`: linear-variance schedule,
here without the first-beta overwrite; loss-aware timesteps; SNR
reweighting); one Linear decoder maps the denoised latent back to item
scores. The loss is lamda * diffusion + (multinomial NLL of the decoded
x0_hat + anneal * KL), lamda = max(lamda0 (1 - epoch / anneal_epochs),
lamda_cap) and anneal = min(kl_cap, step / kl_anneal_steps), as the
official code counts them (lamda's counter advances once per epoch, the
KL's once per batch). Ranking encodes the history to mu, runs the reverse
posterior means from it (T' = 0) and decodes.

Facts from the official code (L-DiffRec/main.py, models/Autoencoder.py,
models/DNN.py): input dropout 0.1 before the encoders; tanh after every
encoder Linear (so mu and logvar lie in (-1, 1)); Xavier-normal weights
and zero biases in the encoders, decoder and denoiser; two AdamW
optimizers (1e-3 for the autoencoder, 5e-4 for the denoiser, weight decay
0); the denoiser's input dropout 0.5; k-means with kmeans_pytorch from
random data points (here scipy's k-means++ from `cluster_seed`).

Quirk (`dropped_target`, official True): the official encoder returns the
dropped-out input (dropout 0.1, scaled by 1/0.9) as the reconstruction
target. jaxrec's default reconstructs the clean interaction vector.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np
import scipy.cluster.vq
from flax import linen as nn

from jaxrec.data import readers, registry
from jaxrec.diffusion import timesteps
from jaxrec.models import diffrec


def kmeans_clusters(emb: np.ndarray, k: int, seed: int) -> list[np.ndarray]:
  """Item ids of each of `k` k-means clusters of the rows of `emb`
  (k-means++ starts from `seed`), sorted; empty clusters are refused."""
  if k == 1:
    return [np.arange(len(emb))]
  _, labels = scipy.cluster.vq.kmeans2(
    np.asarray(emb, np.float64), k, iter=100, minit='++', seed=seed
  )
  out = [np.flatnonzero(labels == c) for c in range(k)]
  if min(len(c) for c in out) == 0:
    raise ValueError(f'k-means left a cluster empty (k={k}, seed={seed})')
  return out


def latent_widths(sizes: list[int], latent: int) -> list[int]:
  """Each cluster's latent width: int(n_c / I * latent) (at least 1), the
  last one taking what is left, as the official code splits it."""
  total = sum(sizes)
  widths = [max(1, int(n / total * latent)) for n in sizes[:-1]]
  last = latent - sum(widths)
  if last < 1:
    raise ValueError(f'latent={latent} is too narrow for {len(sizes)} clusters')
  return widths + [last]


class LDiffRecNet(nn.Module):
  """Encoders per cluster, the latent denoiser, and the decoder."""

  n_items: int
  clusters: tuple[tuple[int, ...], ...]
  widths: tuple[int, ...]
  mlp_dims: tuple[int, ...]
  emb_size: int
  dropout: float
  mlp_dropout: float

  def setup(self):
    init = dict(
      kernel_init=diffrec.xavier_normal(),
      bias_init=nn.initializers.zeros,
    )
    self.encoders = [nn.Dense(2 * w, **init) for w in self.widths]
    self.decoder = nn.Dense(self.n_items, **init)
    self.denoiser = diffrec.DiffRecNet(
      sum(self.widths),
      self.mlp_dims,
      self.emb_size,
      self.mlp_dropout,
      bias_init=nn.initializers.zeros,
    )
    self.drop = nn.Dropout(self.dropout)

  def encode(self, x, train: bool):
    """(dropped-out x, mu [B, latent], logvar [B, latent])."""
    x = self.drop(x, deterministic=not train)
    mus, logvars = [], []
    for enc, ids, w in zip(
      self.encoders, self.clusters, self.widths, strict=True
    ):
      h = jnp.tanh(enc(x[:, np.asarray(ids)]))
      mus.append(h[:, :w])
      logvars.append(h[:, w:])
    return x, jnp.concatenate(mus, -1), jnp.concatenate(logvars, -1)

  def denoise(self, z, t, train: bool):
    return self.denoiser(z, t, train)

  def decode(self, z):
    return self.decoder(z)

  def __call__(self, x, t, train: bool):  # init: every parameter
    _, mu, _ = self.encode(x, train)
    return self.decode(self.denoise(mu, t, train))


@dataclasses.dataclass(frozen=True)
class LDiffRec:
  """The trainer's model surface (stateful, as DiffRec).

  Attributes:
    config: `config.model`: clusters_from (a dataset whose item_emb.npy is
      clustered; '' = contiguous blocks of item ids, for synthetic data),
      n_cate, cluster_seed, latent, dropout, reparam, mlp_dims, emb_size,
      mlp_dropout, steps, noise_scale, noise_min, noise_max, predict,
      reweight, sampler, history, uniform_prob, sampling_steps,
      sampling_noise, lamda, lamda_cap, anneal_epochs, kl_cap,
      kl_anneal_steps, dropped_target, eval_seed.
    n_items: items.
  """

  config: mlc.ConfigDict
  n_items: int

  QUIRKS = ('dropped_target',)

  def __post_init__(self):
    diffrec.check_config(self.config)

  @functools.cached_property
  def clusters(self) -> tuple[tuple[int, ...], ...]:
    c = self.config
    if c.clusters_from:
      path = registry.get_extra(c.clusters_from, 'item_emb.npy.gz')
      emb = readers.read_npy_matrix(path)
      if len(emb) != self.n_items:
        raise registry.DataError(
          f'{path}: {len(emb)} item embeddings for {self.n_items} items'
        )
      groups = kmeans_clusters(emb, c.n_cate, c.cluster_seed)
    else:
      groups = np.array_split(np.arange(self.n_items), c.n_cate)
    return tuple(tuple(int(i) for i in g) for g in groups)

  @property
  def net(self) -> LDiffRecNet:
    c, clusters = self.config, self.clusters
    widths = latent_widths([len(g) for g in clusters], c.latent)
    return LDiffRecNet(
      self.n_items,
      clusters,
      tuple(widths),
      tuple(c.mlp_dims),
      c.emb_size,
      c.dropout,
      c.mlp_dropout,
    )

  betas = diffrec.DiffRec.betas
  schedule = diffrec.DiffRec.schedule
  init_extra = diffrec.DiffRec.init_extra
  make_batch = diffrec.DiffRec.make_batch
  train_size = diffrec.DiffRec.train_size

  train_data = diffrec.DiffRec.train_data

  def train_batch(self, data: diffrec.UserRows, index, weights) -> dict:
    batch = diffrec.DiffRec.train_batch(self, data, index, weights)
    # The same in every row (a batch is sharded by rows): the loss needs
    # the epoch for lamda's annealing.
    batch['steps_per_epoch'] = np.full(
      len(index), data.steps_per_epoch, np.int32
    )
    return batch

  # Pure functions ----------------------------------------------------------

  def init(self, rng: jax.Array, batch: dict):
    x = batch['x']
    return self.net.init(rng, x, jnp.zeros(x.shape[0], jnp.int32), False)[
      'params'
    ]

  def annealing(self, step, steps_per_epoch):
    """(lamda, anneal) at `step`: the diffusion loss's and the KL's weights."""
    c = self.config
    epoch = step // steps_per_epoch
    lamda = jnp.maximum((1.0 - epoch / c.anneal_epochs) * c.lamda, c.lamda_cap)
    anneal = jnp.minimum(c.kl_cap, step / c.kl_anneal_steps)
    return lamda, anneal

  def loss(self, params, batch: dict, rng: jax.Array, step, extra):
    """lamda * diffusion + multinomial NLL + anneal * KL (weighted means).

    Returns:
      (loss, {'loss_sum', 'count', 'extra', and the parts 'diffusion',
      'nll', 'kl'}).
    """
    c, schedule = self.config, self.schedule
    x, w = batch['x'], batch['weights']
    count = jnp.maximum(jnp.sum(w), 1.0)
    mean = lambda v: jnp.sum(v * w) / count
    k_drop, k_z, k_t, k_noise = jax.random.split(rng, 4)
    net = self.net

    def run(net):
      dropped, mu, logvar = net.encode(x, True)
      z = mu
      if c.reparam:
        z = mu + jnp.exp(0.5 * logvar) * jax.random.normal(k_z, mu.shape)
      kl = -0.5 * jnp.sum(1.0 + logvar - mu**2 - jnp.exp(logvar), -1)
      denoise = lambda z_t, t: net.denoise(z_t, t, True)
      per, inv_p, t, z0_hat = diffrec.diffusion_terms(
        c, schedule, self.betas(), denoise, z, extra, k_t, k_noise
      )
      target = dropped if c.dropped_target else x
      logits = net.decode(z0_hat)
      nll = -jnp.sum(jax.nn.log_softmax(logits, -1) * target, -1)
      return per, inv_p, t, nll, kl

    per, inv_p, t, nll, kl = nn.apply(run, net)(
      {'params': params}, rngs={'dropout': k_drop}
    )
    extra = timesteps.update_history(extra, t, per, w > 0)
    lamda, anneal = self.annealing(step, batch['steps_per_epoch'][0])
    diffusion = mean(per * inv_p)
    vae = mean(nll) + anneal * mean(kl)
    total = lamda * diffusion + vae if c.reweight else diffusion + lamda * vae
    aux = {
      'loss_sum': total * count,
      'count': count,
      'extra': extra,
      'diffusion': diffusion,
      'nll': mean(nll),
      'kl': mean(kl),
    }
    return total, aux

  def score(self, params, batch: dict, rng=None) -> jax.Array:
    """float32[B, I]: decode(reverse process from the history's mu)."""
    del rng

    def run(net):
      _, mu, _ = net.encode(batch['x'], False)
      denoise = lambda z_t, t: net.denoise(z_t, t, False)
      z0 = diffrec.reverse(
        self.config, self.schedule, denoise, mu, batch['users']
      )
      return net.decode(z0)

    return nn.apply(run, self.net)({'params': params})
