"""DDRM (Zhao et al., SIGIR 2024, "Denoising Diffusion Recommender Model";
Polaris-JZ/DDRM): diffusion that denoises the embeddings of a frozen,
pre-trained recommender.

Facts from the official code (`DDRM_MF` and `DDRM_LightGCN`: model.py,
diffusion.py, utils.py `BPRLoss.call_bpr`, Procedure.py, train.py):
- The backbone (MF-BPR or LightGCN, trained first: `config.pretrain`) is
  frozen. Its rows are smoothed by `backbone_layers` rounds of LightGCN
  propagation (the mean of layers 0..K). The official MF variant loads the
  MF checkpoint into the LightGCN class and propagates it 4 times; that is
  the quirk flag here (`backbone_layers=4`). The default, 0, uses the MF
  rows as trained. The LightGCN variant propagates 2 times, as its
  backbone was trained. The rows are frozen, so they are propagated once,
  when imported from the pre-training run (`from_pretrained`), not at
  every step as the official code does (same numbers).
- Training triples (u, i+, i-) are MF-BPR's. u and i+ are noised at one
  uniform t with independent noise under DiffRec's 'linear_var' schedule
  (beta_1 set to 1e-5). Two DiffRec-style MLP denoisers predict x0:
  u_hat = f_user([drop(u_t), Linear(sin(t)), i+]) and
  i_hat = f_item([drop(i+_t), Linear(sin(t)), u]), dropout 0.5 on the noisy
  input, `act` between layers.
- Per example: ((1 - alpha) softplus(<u_hat, i-> - <u_hat, i_hat>)
  + alpha (|u - u_hat|^2 + |i+ - i_hat|^2) / (2 d)) * sigmoid(<u_hat,
  i_hat>)^beta, the weight without gradient; the mean over the batch.
  (The LightGCN variant also adds the backbone's L2 term, a constant once
  the backbone is frozen; it moves no gradient and is left out.)
- Ranking: x = the mean backbone embedding of the user's training items,
  noised to step T-1; then `sampling_steps` S reverse steps t = S-1..0
  of f_item conditioned on the backbone user row, along the posterior
  means. The official LightGCN setting has S = 62 > T = 50: steps t >= T
  read the tables at T-1 (the official lookup clamps) while the time
  embedding sees t itself; that is reproduced. The scores are <x_0, i>
  for every item (backbone rows).
- Adam, lr 1e-3, batch 2048, an epoch of n_train triples, validation every
  5 epochs on Recall@10, stopping after 5 validations without a new best
  but not before epoch 30. Official validation reads a fixed half of the
  validation users (Python's random.Random(42) over the ascending ids);
  here every validation user counts unless `eval.select_fraction` = 0.5
  (configs/ddrm.py `official_validation`).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np

from jaxrec.data import batching, types
from jaxrec.diffusion import forward, schedules, timesteps
from jaxrec.models import diffrec, dot, lightgcn, mf, prefix


def check_config(c: mlc.ConfigDict) -> None:
  """Refuses settings DDRM cannot run, naming the key."""
  if c.act not in diffrec.ACTIVATIONS:
    raise ValueError(
      f'model.act={c.act!r}; expected one of {sorted(diffrec.ACTIVATIONS)}'
    )
  if c.sampling_steps < 1:
    raise ValueError(f'model.sampling_steps={c.sampling_steps} must be >= 1')
  if not 0.0 <= c.alpha <= 1.0:
    raise ValueError(f'model.alpha={c.alpha} must be in [0, 1]')
  if c.noise_scale <= 0:
    raise ValueError(f'model.noise_scale={c.noise_scale} must be positive')


@dataclasses.dataclass(frozen=True)
class DDRM(mf.BprTriples, dot.DotScore):
  """The trainer's model surface.

  Attributes:
    config: `config.model`: dim (the backbone's), backbone_layers, dims,
      emb_size, act, dropout, steps, noise_scale, noise_min, noise_max,
      first_beta, sampling_steps, sampling_noise, alpha, beta, pairs,
      eval_seed.
    n_items: items.
    n_users, graph: set by `bind` (the graph when backbone_layers > 0,
      read once by `from_pretrained`).
  """

  config: mlc.ConfigDict
  n_items: int
  n_users: int = 0
  graph: lightgcn.Graph | None = None

  def __post_init__(self):
    check_config(self.config)

  def bind(self, split: types.Split) -> DDRM:
    graph = None
    if self.config.backbone_layers:
      graph = lightgcn.Graph.build(split.train, self.n_items)
    return dataclasses.replace(self, n_users=split.n_users, graph=graph)

  def net(self) -> diffrec.DiffRecNet:
    c = self.config
    return diffrec.DiffRecNet(
      c.dim, tuple(c.dims), c.emb_size, c.dropout, act=c.act
    )

  @property
  def schedule(self) -> schedules.Schedule:
    return schedules.from_betas(diffrec.linear_var_betas(self.config))

  # Host side (BPR triples: mf.BprTriples) --------------------------------

  def make_batch(self, history: types.Part, users: np.ndarray) -> dict:
    """'x': the users' dense history rows; 'users' keys their noise."""
    return {
      'x': batching.dense_rows(history, users, self.n_items),
      'users': np.asarray(users, np.int32),
    }

  # Pure functions ----------------------------------------------------------

  def init(self, rng: jax.Array, batch: dict):
    del batch
    c = self.config
    k_emb, k_user, k_item = jax.random.split(rng, 3)
    params = mf.init_embeddings(k_emb, self.n_users, self.n_items, c.dim, 0.1)
    x = jnp.zeros((1, c.dim))
    t = jnp.zeros(1, jnp.int32)
    for name, key in (('user_den', k_user), ('item_den', k_item)):
      params[name] = self.net().init(key, x, t, False, cond=x)['params']
    return params

  def from_pretrained(self, pre: dict) -> dict:
    """The backbone rows DDRM keeps: the pre-trained rows propagated
    `backbone_layers` times, once, when they are imported (frozen rows
    need no propagation per step)."""
    users, items = lightgcn.propagate(
      self.graph,
      jnp.asarray(pre['user_emb']),
      jnp.asarray(pre['item_emb']),
      self.config.backbone_layers,
    )
    return {**pre, 'user_emb': users, 'item_emb': items}

  def backbone(self, params):
    """(users [U, d], items [I, d]): the frozen rows (`from_pretrained`)."""
    users = jax.lax.stop_gradient(params['user_emb'])
    items = jax.lax.stop_gradient(params['item_emb'])
    return users, items

  def denoise(self, params, name, x_t, t, cond, train, rng=None):
    rngs = {'dropout': rng} if train else {}
    return self.net().apply(
      {'params': params[name]}, x_t, t, train, cond=cond, rngs=rngs
    )

  def loss(self, params, batch: dict, rng: jax.Array, step):
    """The weighted (1 - alpha) BPR + alpha reconstruction of the module
    docstring; aux carries (loss_sum, count) and the two parts' sums."""
    del step
    c, schedule = self.config, self.schedule
    users, items = self.backbone(params)
    u0, p0 = users[batch['users']], items[batch['pos']]
    n0 = items[batch['neg']]
    k_t, k_u, k_p, k_du, k_dp = jax.random.split(rng, 5)
    t, _ = timesteps.uniform(k_t, u0.shape[:1], c.steps)
    u_t = forward.q_sample(schedule, u0, t, jax.random.normal(k_u, u0.shape))
    p_t = forward.q_sample(schedule, p0, t, jax.random.normal(k_p, p0.shape))
    u_hat = self.denoise(params, 'user_den', u_t, t, p0, True, k_du)
    p_hat = self.denoise(params, 'item_den', p_t, t, u0, True, k_dp)
    bpr, s_pos = mf.bpr_terms(u_hat, p_hat, n0)
    recon = (
      jnp.mean((u0 - u_hat) ** 2, -1) + jnp.mean((p0 - p_hat) ** 2, -1)
    ) / 2
    weight = jax.lax.stop_gradient(jax.nn.sigmoid(s_pos) ** c.beta)
    per = ((1.0 - c.alpha) * bpr + c.alpha * recon) * weight
    w = batch['weights']
    total, count = jnp.sum(per * w), jnp.sum(w)
    aux = {
      'loss_sum': total,
      'count': count,
      'bpr_sum': jnp.sum(bpr * w),
      'recon_sum': jnp.sum(recon * w),
    }
    return total / jnp.maximum(count, 1.0), aux

  def user_vectors(self, params, batch: dict) -> jax.Array:
    """float32[B, d]: the item denoiser's x0 from the users' mean item."""
    c, schedule = self.config, self.schedule
    users, items = self.backbone(params)
    x, ids = batch['x'], batch['users']
    mean = (x @ items) / jnp.maximum(jnp.sum(x, -1, keepdims=True), 1.0)
    cond = users[ids]
    draw = prefix.user_normal(ids, c.eval_seed)
    last = c.steps - 1
    x_t = forward.q_sample(
      schedule,
      mean,
      jnp.full(ids.shape, last),
      draw(c.sampling_steps, (c.dim,)),
    )

    def step(x_t, t):
      tt = jnp.full(ids.shape, t)
      x0 = self.denoise(params, 'item_den', x_t, tt, cond, False)
      table_t = jnp.minimum(tt, last)  # the official lookup clamps t >= T
      mean, _, log_var = forward.q_posterior(schedule, x0, x_t, table_t)
      if c.sampling_noise:
        z = draw(t, (c.dim,))
        mean = mean + jnp.where(t > 0, jnp.exp(0.5 * log_var), 0.0) * z
      return mean, None

    ts = jnp.arange(c.sampling_steps - 1, -1, -1, dtype=jnp.int32)
    return jax.lax.scan(step, x_t, ts)[0]

  def item_vectors(self, params) -> jax.Array:
    return self.backbone(params)[1]
