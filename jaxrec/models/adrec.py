"""ADRec (Chen et al., KDD 2025; arXiv 2505.19544; Nemo-1024/ADRec).

Auto-regressive diffusion over the whole target sequence: the sequence
shifted by one item is diffused with an independent timestep per token
(padding kept clean at t = 0). A causal attention module (CAM) reads the
history; a causal denoiser reads CAM(history) + lambda * (x_t + t-emb),
lambda = 0.001 fixed, and predicts x_0 at every position. The loss is CE of
x0_hat against all items at every real position plus the MSE of x0_hat to
the clean embeddings; the official default averages the two gradients
(0.5 * (CE + MSE)), `train.pcgrad=True` projects them with PCGrad instead.

Three stages, all config data (configs/adrec.py): `config.pretrain` trains
`ADRecPretrain` (a SASRec-style CE model without positions) in
`<workdir>/pretrain` and copies its item embeddings in; `train.stages`
freezes them for the first 5 epochs; then everything is fine-tuned.

Inference denoises only the last token through T = 32 ancestral steps
(variance beta_t) while the history stays clean at t = 0. Attention is
causal and the history does not change across steps, so the denoiser's
keys/values of the history are computed once and reused
(`model.kv_reuse`, default on); `kv_reuse=False` recomputes the whole
sequence at every step (what the official code does), same scores.

Facts from the official code (src/adrec.py, src/model.py, src/common.py,
src/config.yaml): width 128, 4 heads, CAM and denoiser 2 post-LN blocks
each (LayerNorm eps 1e-12, tanh-GELU FFN of 4x width, dropout 0.1 on
attention weights, FFN and residuals), no position embeddings, embedding
dropout 0.3 before the history LayerNorm, sinusoidal t-embedding (cos
first) of t * 1000 / T through Linear(4D)-SiLU-Linear(D), truncated-linear
T = 32, MSE averaged over each sequence's real positions then over the
batch and width, CE token-level over the batch. Linear layers start as the
official code's (`model.init='official'`, `OFFICIAL_INIT` and
`OFFICIAL_PRETRAIN_INIT`); `'flax'` uses Flax's defaults (runs saved before
the key existed).

Official quirks behind flags (defaults are the correct behaviour):
  mask_axis='query'   padded queries are flattened (uniform over their
                      causal keys) and real queries attend to padding.
  padding_item=True   the padding row is a CE class and a ranked phantom
                      item (`ranking.Scorer.phantom_items`).
  leaky_freeze=True   a "frozen" parameter still moves by the optimizer's
                      coupled weight decay (the official code zeroes its
                      gradient, then torch Adam adds wd * p and normalises;
                      the embeddings shrink by ~lr per step while frozen).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np
import optax
from flax import linen as nn

from jaxrec.data import batching, types
from jaxrec.diffusion import forward, samplers, schedules, timesteps
from jaxrec.models import dot, prefix
from jaxrec.nn import dropout as dropout_lib
from jaxrec.nn import inits, transformer


# The official code's initialisation (`model.init='official'`): ADRec's
# blocks (common.py) re-draw every attention and feed-forward kernel with
# xavier_normal_ and keep nn.Linear's default biases, its time MLP keeps
# nn.Linear's defaults; the pre-training model (sasrec.py `_init_weights`)
# draws every Linear kernel from N(0, 0.1) with zero biases.
OFFICIAL_INIT = inits.LinearInit('xavier', 'xavier', 'xavier', 'torch')
OFFICIAL_PRETRAIN_INIT = inits.LinearInit(
  'normal_0.1', 'normal_0.1', 'normal_0.1', 'zeros'
)


def _blocks(n: int, heads: int, dropout: float, init=inits.FLAX):
  return [
    transformer.Block(
      heads,
      dropout,
      ffn_mult=4,
      activation='gelu',
      ln_eps=1e-12,
      fast_dropout=True,
      norm_first=False,
      linear_init=init,
    )
    for _ in range(n)
  ]


class ADRecNet(nn.Module):
  """Item embeddings, the causal attention module and the denoiser."""

  n_items: int
  dim: int
  heads: int
  cam_blocks: int
  blocks: int
  dropout: float
  emb_dropout: float
  lambda_uncertainty: float
  steps: int
  mask_axis: transformer.MaskAxis = 'key'
  param_init: str = 'official'  # config.model.init

  def setup(self):
    self.item_emb = nn.Embed(
      self.n_items + 1, self.dim, embedding_init=nn.initializers.normal(0.1)
    )
    self.emb_drop = dropout_lib.Dropout(self.emb_dropout)
    self.hist_norm = nn.LayerNorm(epsilon=1e-12)
    d, official = self.dim, inits.check_init(self.param_init) == 'official'
    block_init = OFFICIAL_INIT if official else inits.FLAX
    self.cam = _blocks(self.cam_blocks, self.heads, self.dropout, block_init)
    if official:
      self.time_mlp = [inits.torch_dense(4 * d, d), inits.torch_dense(d, 4 * d)]
    else:
      self.time_mlp = [nn.Dense(4 * d), nn.Dense(d)]
    self.denoiser = _blocks(self.blocks, self.heads, self.dropout, block_init)

  def mask(self, seq) -> transformer.Mask:
    return transformer.attention_mask(seq > 0, True, self.mask_axis)

  def encode(self, seq, train: bool, mask=None):
    """[B, L] items -> [B, L, D] the CAM's history representation c.

    mask: the attention mask (default: causal over `seq`'s padding).
    """
    h = self.hist_norm(self.emb_drop(self.item_emb(seq), not train))
    mask = self.mask(seq) if mask is None else mask
    for layer in self.cam:
      h = layer(h, mask, train)
    return h

  def _input(self, c, x, t):
    """c + lambda * (x + t-emb); t has x's leading shape, or is a scalar
    shared by every row (the time MLP then runs on one row)."""
    emb = timesteps.sinusoidal_embedding(t * (1000.0 / self.steps), self.dim)
    emb = self.time_mlp[1](nn.silu(self.time_mlp[0](emb)))
    return c + self.lambda_uncertainty * (x + emb)

  def denoise(self, c, x_t, t, seq, train: bool, mask=None):
    """x0_hat [B, L, D] at every position; t: [B, L] per-token steps."""
    h = self._input(c, x_t, t)
    mask = self.mask(seq) if mask is None else mask
    for layer in self.denoiser:
      h = layer(h, mask, train)
    return h

  def history_cache(self, c, x_hist, seq):
    """Per denoiser layer, the (k, v) of positions 0..L-2 at t = 0.

    Args:
      c: [B, L, D] the CAM output of `seq`.
      x_hist: [B, L-1, D] the clean embeddings at positions 0..L-2 (the
        history shifted by one).
      seq: [B, L] items.
    """
    h = self._input(c[:, :-1], x_hist, jnp.zeros((), jnp.int32))
    mask = self.mask(seq[:, :-1])
    caches = []
    for layer in self.denoiser:
      h, kv = layer(h, mask, False, return_kv=True)
      caches.append(kv)
    return caches

  def denoise_last(self, c_last, x, t, caches, seq):
    """x0_hat [B, D] of the last position, attending to `caches`.

    Args:
      c_last: [B, D] the CAM output at the last position.
      x: [B, D] x_t of the last position.
      t: [B] its step, or [] for one step shared by every row.
      caches: `history_cache`'s output.
      seq: [B, L] items (for the mask).
    """
    h = self._input(c_last, x, t)[:, None]
    mask = transformer.last_query_mask(self.mask(seq))
    for layer, kv in zip(self.denoiser, caches, strict=True):
      h = layer(h, mask, False, cache=kv)
    return h[:, 0]

  def embed_items(self, items):
    return self.item_emb(items)

  def table(self):
    return self.item_emb.embedding


class ADRecPretrainNet(nn.Module):
  """The embedding pre-training model: SASRec-style, no positions, with
  the CAM's blocks; LayerNorm (eps 1e-5) then dropout on the embeddings."""

  n_items: int
  dim: int
  heads: int
  cam_blocks: int
  dropout: float
  emb_dropout: float
  mask_axis: transformer.MaskAxis = 'key'
  param_init: str = 'official'  # config.model.init

  def setup(self):
    self.item_emb = nn.Embed(
      self.n_items + 1, self.dim, embedding_init=nn.initializers.normal(0.1)
    )
    self.in_norm = nn.LayerNorm(epsilon=1e-5)
    self.emb_drop = dropout_lib.Dropout(self.emb_dropout)
    official = inits.check_init(self.param_init) == 'official'
    block_init = OFFICIAL_PRETRAIN_INIT if official else inits.FLAX
    self.cam = _blocks(self.cam_blocks, self.heads, self.dropout, block_init)

  def __call__(self, seq, train: bool, mask=None):
    h = self.emb_drop(self.in_norm(self.item_emb(seq)), not train)
    if mask is None:
      mask = transformer.attention_mask(seq > 0, True, self.mask_axis)
    for layer in self.cam:
      h = layer(h, mask, train)
    return h

  def table(self):
    return self.item_emb.embedding


def packed_causal_mask(segments) -> transformer.Mask:
  """Causal attention within each segment of packed rows."""
  same = segments[:, :, None] == segments[:, None, :]
  width = segments.shape[1]
  causal = jnp.arange(width)[None, :] <= jnp.arange(width)[:, None]
  return transformer.Mask((same & (segments[:, None, :] > 0) & causal)[:, None])


@dataclasses.dataclass(frozen=True)
class _TrainData:
  examples: batching.NextItemExamples
  budget: int  # CE target slots per device group
  groups: int  # device groups per host batch
  rows: int = 0  # packed rows per device group (0: padded batches)

  def __len__(self) -> int:
    return len(self.examples)


def _sequences(batch: dict):
  """The [N, L] item rows of a padded or packed batch."""
  return batch['inputs'] if 'inputs' in batch else batch['tokens']


def _train_mask(batch: dict):
  """The packed rows' segment mask, or None (padded: the model's own)."""
  if 'segments' not in batch:
    return None
  return packed_causal_mask(batch['segments'])


class _NextItemHost(dot.DotScore):
  """Host side shared by ADRec and its pre-training model: one example per
  user (the last max_len + 1 training items), CE targets packed per device
  group as in SASRec, plus the full shifted sequence for the MSE.

  With `model.pack` (and the key mask, under which padding is never
  attended and nothing depends on position) the examples of each device
  group are packed side by side into rows (`batching.pack_batch`): the
  same numbers from ~5x fewer positions on the Amazon files."""

  @property
  def packed(self) -> bool:
    return batching.packing_on(self.config)

  def train_size(self, split: types.Split) -> int:
    return int((split.train.lengths >= 2).sum())

  def train_data(self, split: types.Split, plan: batching.BatchPlan):
    examples = batching.NextItemExamples.from_part(
      split.train, self.config.max_len
    )
    budget = batching.max_group_sum(examples.counts, plan)
    budget = -(-budget // 8) * 8
    rows = 0
    if self.packed:
      lengths = (examples.inputs > 0).sum(1)
      rows = batching.max_packed_rows(lengths, plan, self.config.max_len)
    return _TrainData(examples, budget, plan.groups // plan.hosts, rows)

  def train_batch(self, data: _TrainData, index, weights) -> dict:
    ex = data.examples
    shifted = ex.targets[index] * (weights[:, None] > 0)
    if data.rows:
      lengths = (ex.inputs[index] > 0).sum(1) * (weights > 0)
      packed = batching.pack_batch(
        ex.inputs[index], lengths, data.groups, data.rows
      )
      width = shifted.shape[1]
      src = packed['source'].reshape(data.groups, -1)
      shifted = np.take_along_axis(shifted.reshape(data.groups, -1), src, 1)
      shifted = shifted.reshape(-1, width) * (packed['tokens'] > 0)
      positions, filled = batching.pack(shifted > 0, data.groups, data.budget)
      flat = shifted.reshape(data.groups, -1)
      return {
        'tokens': packed['tokens'],
        'segments': packed['segments'],
        'shifted': shifted,
        'positions': positions,
        'targets': np.take_along_axis(flat, positions, axis=1) * filled,
      }
    positions, filled = batching.pack(shifted > 0, data.groups, data.budget)
    flat = shifted.reshape(data.groups, -1)
    return {
      'inputs': ex.inputs[index],
      'shifted': shifted,
      'positions': positions,
      'targets': np.take_along_axis(flat, positions, axis=1) * filled,
    }

  def make_batch(self, history: types.Part, users: np.ndarray) -> dict:
    return {
      'inputs': batching.last_items(history, users, self.config.max_len),
      'users': np.asarray(users, np.int32),
    }

  @property
  def phantom_items(self) -> int:
    """Extra score columns ranked but never hits (the padding row)."""
    return int(self.config.padding_item)

  def _ce(self, hidden, table, batch):
    """Token-level CE over the packed targets: (sum, count)."""
    groups = batch['positions'].shape[0]
    hidden = hidden.reshape(groups, -1, hidden.shape[-1])
    hidden = jnp.take_along_axis(hidden, batch['positions'][..., None], axis=1)
    targets = batch['targets']
    if self.config.padding_item:
      labels = targets
    else:
      table, labels = table[1:], jnp.maximum(targets - 1, 0)
    ce = optax.softmax_cross_entropy_with_integer_labels(
      hidden @ table.T, labels
    )
    weight = (targets > 0).astype(ce.dtype)
    return jnp.sum(ce * weight), jnp.sum(weight)

  def item_vectors(self, params) -> jax.Array:
    """[n_items (+1: padding_item), d]: real items, then the padding row."""
    table = self.net.apply({'params': params}, method=type(self.net).table)
    return dot.ranked_rows(table, self.phantom_items)


@dataclasses.dataclass(frozen=True)
class ADRecPretrain(_NextItemHost):
  """Stage 1: trains the item embeddings ADRec starts from.

  Attributes:
    config: `config.model`: max_len, dim, heads, cam_blocks, dropout,
      emb_dropout, mask_axis, padding_item.
    n_items: real items.
  """

  config: mlc.ConfigDict
  n_items: int

  QUIRKS = ('mask_axis', 'padding_item')

  @property
  def net(self) -> ADRecPretrainNet:
    c = self.config
    return ADRecPretrainNet(
      self.n_items,
      c.dim,
      c.heads,
      c.cam_blocks,
      c.dropout,
      c.emb_dropout,
      c.mask_axis,
      c.get('init', 'flax'),
    )

  def init(self, rng: jax.Array, batch: dict):
    return self.net.init(rng, _sequences(batch), False)['params']

  def loss(self, params, batch: dict, rng: jax.Array, step):
    del step
    net = self.net
    hidden = net.apply(
      {'params': params},
      _sequences(batch),
      True,
      _train_mask(batch),
      rngs={'dropout': rng},
    )
    table = net.apply({'params': params}, method=ADRecPretrainNet.table)
    total, count = self._ce(hidden, table, batch)
    return total / jnp.maximum(count, 1.0), {'loss_sum': total, 'count': count}

  def user_vectors(self, params, batch: dict) -> jax.Array:
    """float32[B, d]: the last position's output."""
    hidden = self.net.apply({'params': params}, batch['inputs'], False)
    return hidden[:, -1]


@dataclasses.dataclass(frozen=True)
class ADRec(_NextItemHost):
  """The trainer's model surface (see jaxrec.models and ARCHITECTURE.md).

  Attributes:
    config: `config.model`: max_len, dim, heads, cam_blocks, blocks,
      dropout, emb_dropout, lambda_uncertainty, steps, schedule,
      mse_weight, mask_axis, padding_item, leaky_freeze, kv_reuse,
      eval_seed.
    n_items: real items.
  """

  config: mlc.ConfigDict
  n_items: int

  QUIRKS = ('mask_axis', 'padding_item', 'leaky_freeze')

  @property
  def net(self) -> ADRecNet:
    c = self.config
    return ADRecNet(
      self.n_items,
      c.dim,
      c.heads,
      c.cam_blocks,
      c.blocks,
      c.dropout,
      c.emb_dropout,
      c.lambda_uncertainty,
      c.steps,
      c.mask_axis,
      c.get('init', 'flax'),
    )

  @property
  def schedule(self) -> schedules.Schedule:
    return schedules.make(self.config.schedule, self.config.steps)

  # Pure functions ----------------------------------------------------------

  def init(self, rng: jax.Array, batch: dict):
    seq = _sequences(batch)

    def both(net):
      c = net.encode(seq, False)
      return net.denoise(c, c, jnp.zeros(seq.shape, jnp.int32), seq, False)

    return nn.init(both, self.net)(rng)['params']

  def task_losses(self, params, batch: dict, rng: jax.Array, step):
    """([CE, MSE], aux): CE per real token, MSE per sequence, as the paper.

    x_t at real positions is q_sample(x_0, t), t uniform per token; padding
    positions get t = 0 and stay clean (x_t = x_0 = the padding row).
    """
    del step
    net, schedule = self.net, self.schedule
    seq, shifted = _sequences(batch), batch['shifted']
    mask = _train_mask(batch)
    k_t, k_noise, k_drop = jax.random.split(rng, 3)
    real = seq > 0
    t, _ = timesteps.uniform(k_t, seq.shape, schedule.steps)
    t = jnp.where(real, t, 0)

    def run(net):
      c = net.encode(seq, True, mask)
      x0 = net.embed_items(shifted)
      noise = jax.random.normal(k_noise, x0.shape)
      x_t = jnp.where(
        real[..., None], forward.q_sample(schedule, x0, t, noise), x0
      )
      return x0, net.denoise(c, x_t, t, seq, True, mask)

    x0, x0_hat = nn.apply(run, net)(
      {'params': params}, rngs={'dropout': k_drop}
    )
    table = net.apply({'params': params}, method=ADRecNet.table)
    ce_sum, count = self._ce(x0_hat, table, batch)
    ce = ce_sum / jnp.maximum(count, 1.0)
    # MSE: mean over a sequence's real positions and the width, then over
    # the batch's real sequences.
    m = (shifted > 0).astype(x0.dtype)
    per_token = jnp.mean((x0_hat - x0) ** 2, axis=-1) * m
    if 'segments' in batch:  # a sequence is a segment of a group's rows
      groups = batch['positions'].shape[0]
      seg = batch['segments'].reshape(groups, -1)
      slots = seg.shape[1] + 1
      ids = (seg + slots * jnp.arange(groups)[:, None]).ravel()
      total = jax.ops.segment_sum(per_token.ravel(), ids, groups * slots)
      n = jax.ops.segment_sum(m.ravel(), ids, groups * slots)
    else:
      total, n = jnp.sum(per_token, axis=1), jnp.sum(m, axis=1)
    per_seq = total / jnp.maximum(n, 1.0)
    seqs = (n > 0).astype(x0.dtype)
    mse = jnp.sum(per_seq * seqs) / jnp.maximum(jnp.sum(seqs), 1.0)
    losses = jnp.stack([ce, self.config.mse_weight * mse])
    return losses, {'count': count, 'ce': ce, 'mse': mse}

  def loss(self, params, batch: dict, rng: jax.Array, step):
    """0.5 * (CE + MSE): the mean of the two tasks' gradients, as the
    official code merges them without PCGrad."""
    losses, aux = self.task_losses(params, batch, rng, step)
    total = jnp.mean(losses)
    return total, {'loss_sum': total * aux['count'], 'count': aux['count']}

  def reverse(self, params, seq, users, kv_reuse: bool | None = None):
    """x0_hat [B, D] of the last position after T reverse steps.

    The noise of user u comes from fold_in(key(eval_seed), u), so a user's
    scores do not depend on the batch it is ranked in.
    """
    kv_reuse = self.config.kv_reuse if kv_reuse is None else kv_reuse
    schedule = self.schedule
    draw = prefix.user_normal(users, self.config.eval_seed)
    dim = self.config.dim
    b, length = seq.shape

    def run(net):
      c = net.encode(seq, False)
      # Positions 0..L-2 hold their clean targets (the next item), padding
      # where the input is padding, as in training.
      x_hist = net.embed_items(jnp.where(seq[:, :-1] > 0, seq[:, 1:], 0))
      if kv_reuse:
        caches = net.history_cache(c, x_hist, seq)

        def model_fn(x, t):
          # One step for every row: the time MLP runs once, not b times.
          return net.denoise_last(c[:, -1], x, t, caches, seq)

      else:

        def model_fn(x, t):
          xs = jnp.concatenate([x_hist, x[:, None]], axis=1)
          ts = jnp.zeros((b, length), jnp.int32).at[:, -1].set(t)
          return net.denoise(c, xs, ts, seq, False)[:, -1]

      return samplers.ddpm(
        model_fn,
        schedule,
        draw(schedule.steps, (dim,)),
        None,
        variance='large',
        noise_fn=lambda t, shape: draw(t, shape[1:]),
      )

    return nn.apply(run, self.net)({'params': params})

  def user_vectors(self, params, batch: dict) -> jax.Array:
    """float32[B, d]: the last token's x0 after T reverse steps."""
    return self.reverse(params, batch['inputs'], batch['users'])
