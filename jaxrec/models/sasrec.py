"""SASRec (Kang & McAuley, ICDM 2018) trained with full softmax cross-entropy.

A causal transformer over the last L items of a user's sequence; the hidden
state at each position scores every item by inner product with the (shared)
item embeddings. Training uses cross-entropy over all items at every
non-padded position (the "CE" SASRec of Klenitskiy & Vasilev, RecSys 2023,
which is much stronger than the original sampled BCE), with dropout and
learned positions. Scoring reads the last position. This is the baseline the
diffusion papers (DiffuRec, ADRec) compare against.
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
from jaxrec.models import dot
from jaxrec.nn import transformer


class SASRecNet(nn.Module):
  """Hidden states [B, L, D] of item sequences [B, L] (0 = padding)."""

  n_items: int
  max_len: int
  dim: int
  heads: int
  blocks: int
  dropout: float
  mask_axis: transformer.MaskAxis = 'key'

  def setup(self):
    init = nn.initializers.normal(stddev=0.02)
    self.item_emb = nn.Embed(self.n_items + 1, self.dim, embedding_init=init)
    self.pos_emb = self.param('pos_emb', init, (self.max_len, self.dim))
    self.layers = [
      transformer.Block(self.heads, self.dropout) for _ in range(self.blocks)
    ]
    self.norm = nn.LayerNorm(epsilon=1e-8)
    self.drop = nn.Dropout(self.dropout)

  def __call__(self, seq, train: bool):
    valid = seq > 0
    x = self.item_emb(seq) * jnp.sqrt(self.dim) + self.pos_emb[-seq.shape[1] :]
    x = self.drop(x, deterministic=not train) * valid[..., None]
    mask = transformer.attention_mask(valid, True, self.mask_axis)
    for layer in self.layers:
      x = layer(x, mask, train) * valid[..., None]
    return self.norm(x)

  def item_table(self):
    """float32[n_items, D] embeddings of the real items (no padding row)."""
    return self.item_emb.embedding[1:]


@dataclasses.dataclass(frozen=True)
class _TrainData:
  examples: batching.NextItemExamples
  budget: int  # target slots per device group
  groups: int  # device groups per host batch

  def __len__(self) -> int:
    return len(self.examples)


@dataclasses.dataclass(frozen=True)
class SASRec(dot.DotScore):
  """The model surface the trainer uses (see ARCHITECTURE.md).

  Attributes:
    config: `config.model` (max_len, dim, heads, blocks, dropout).
    n_items: number of real items (ids 0..n_items-1 in the split).
  """

  config: mlc.ConfigDict
  n_items: int

  # Config keys that switch an official-code quirk; the run record lists them.
  QUIRKS = ('mask_axis',)

  @property
  def net(self) -> SASRecNet:
    c = self.config
    return SASRecNet(
      self.n_items, c.max_len, c.dim, c.heads, c.blocks, c.dropout, c.mask_axis
    )

  # Host side ---------------------------------------------------------------

  def train_size(self, split: types.Split) -> int:
    """Training examples per epoch: users with two or more train events."""
    return int((split.train.lengths >= 2).sum())

  def train_data(
    self, split: types.Split, plan: batching.BatchPlan
  ) -> _TrainData:
    examples = batching.NextItemExamples.from_part(
      split.train, self.config.max_len
    )
    budget = batching.max_group_sum(examples.counts, plan)
    budget = -(-budget // 8) * 8  # a multiple of 8 slots per group
    return _TrainData(examples, budget, plan.groups // plan.hosts)

  def train_batch(
    self, data: _TrainData, index: np.ndarray, weights: np.ndarray
  ) -> dict:
    """Inputs [b, L] and the targets packed per device group.

    Only ~1/8 of the [b, L] positions of a Beauty batch hold a target (most
    sequences are short), so the loss gathers those into [G, M] slots, M
    the most any group of any batch of the run needs, instead of computing
    [b, L, n_items] logits. Exact: no target is ever dropped.
    """
    ex = data.examples
    targets = ex.targets[index] * (weights[:, None] > 0)
    positions, filled = batching.pack(targets > 0, data.groups, data.budget)
    flat = targets.reshape(data.groups, -1)
    return {
      'inputs': ex.inputs[index],
      'positions': positions,
      'targets': np.take_along_axis(flat, positions, axis=1) * filled,
    }

  def make_batch(self, history: types.Part, users: np.ndarray) -> dict:
    return {'inputs': batching.last_items(history, users, self.config.max_len)}

  # Pure functions ----------------------------------------------------------

  def init(self, rng: jax.Array, batch: dict):
    return self.net.init(rng, batch['inputs'], train=False)['params']

  def loss(self, params, batch: dict, rng: jax.Array, step):
    """Mean CE over the batch's targets (packed, see `train_batch`).

    Returns:
      (loss, {'loss_sum': summed CE, 'count': number of targets}).
    """
    del step
    net = self.net
    hidden = net.apply(
      {'params': params},
      batch['inputs'],
      train=True,
      rngs={'dropout': rng},
    )
    table = net.apply({'params': params}, method=SASRecNet.item_table)
    groups = batch['positions'].shape[0]
    hidden = hidden.reshape(groups, -1, hidden.shape[-1])
    hidden = jnp.take_along_axis(hidden, batch['positions'][..., None], axis=1)
    logits = hidden @ table.T  # [G, M, I]
    targets = batch['targets']
    ce = optax.softmax_cross_entropy_with_integer_labels(
      logits, jnp.maximum(targets - 1, 0)
    )
    weight = (targets > 0).astype(ce.dtype)
    total = jnp.sum(ce * weight)
    count = jnp.sum(weight)
    return total / jnp.maximum(count, 1.0), {'loss_sum': total, 'count': count}

  def user_vectors(self, params, batch: dict) -> jax.Array:
    """float32[B, d]: the last position's output."""
    hidden = self.net.apply({'params': params}, batch['inputs'], train=False)
    return hidden[:, -1]

  def item_vectors(self, params) -> jax.Array:
    """float32[n_items, d]: the (tied) item embeddings of items 1..n."""
    return self.net.apply({'params': params}, method=SASRecNet.item_table)
