"""DiffuRec (Li et al., TOIS 2024; arXiv 2304.00686; WHUIR/DiffuRec).

The target item's embedding x_0 is diffused over T = 32 truncated-linear
steps; an approximator reads the user's history plus lambda * (x_t + t-emb),
lambda ~ N(0.001, 0.001) drawn per element, through a 4-block bidirectional
transformer, and predicts x_0 from the last position. Training: CE of x0_hat
against all item embeddings, on every prefix of every training sequence,
t uniform (the official code builds a loss-aware sampler but never updates
it, so it samples uniformly). Inference: x_{T-1} ~ N(0, I), 32 ancestral
steps with the fixed-large variance, scores = x0_hat . item embeddings.

Facts from the official code (src/diffurec.py, src/model.py, src/main.py):
item embeddings N(0, 1) init, embedding dropout 0.3 then LayerNorm (1e-12),
no position embeddings, 4 heads, GELU FFN of 4x width, dropout 0.1, the
approximator's output LayerNorm after dropout, timesteps rescaled by 1000/T
before the sinusoidal embedding, a 2-layer SiLU MLP for it. Linear layers
start as PyTorch's (`model.init='official'`, `OFFICIAL_INIT`): query/key/
value and the time MLP nn.Linear's U(+-1/sqrt(fan_in)), the attention output
and feed-forward kernels xavier_normal_; `'flax'` uses Flax's defaults
(runs saved before the key existed).

Official quirks behind flags (defaults are the correct behaviour):
  mask_axis='query'  the padding mask is built on the query axis, so real
                     positions attend to padding (official: 'query').
  padding_item=True  the padding row is an item: a class of the training CE
                     and a candidate at ranking, where it can take a top-K
                     slot (a phantom item, never a hit; see
                     `ranking.Scorer.phantom_items`). Official: True.
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
from jaxrec.diffusion import forward, samplers, timesteps
from jaxrec.models import dot, prefix
from jaxrec.nn import dropout as dropout_lib
from jaxrec.nn import inits, transformer


# The official code's blocks: nn.Linear's defaults for the query, key and
# value projections, xavier_normal_ for the output projection and both
# feed-forward kernels, nn.Linear's default biases.
OFFICIAL_INIT = inits.LinearInit('torch', 'xavier', 'xavier', 'torch')


class DiffuRecNet(nn.Module):
  """The item encoder and the x_0 approximator."""

  n_items: int
  dim: int
  heads: int
  blocks: int
  dropout: float
  emb_dropout: float
  lambda_uncertainty: float
  steps: int
  mask_axis: transformer.MaskAxis = 'key'
  param_init: str = 'official'  # config.model.init

  def setup(self):
    self.item_emb = nn.Embed(
      self.n_items + 1, self.dim, embedding_init=nn.initializers.normal(1.0)
    )
    self.emb_norm = nn.LayerNorm(epsilon=1e-12)
    d = self.dim
    if inits.check_init(self.param_init) == 'official':
      self.time_mlp = [inits.torch_dense(4 * d, d), inits.torch_dense(d, 4 * d)]
    else:
      self.time_mlp = [nn.Dense(4 * d), nn.Dense(d)]
    self.layers = [
      transformer.Block(
        self.heads,
        self.dropout,
        ffn_mult=4,
        activation='gelu',
        out_dropout=True,
        ln_eps=1e-12,
        fast_dropout=True,
        linear_init=OFFICIAL_INIT
        if self.param_init == 'official'
        else inits.FLAX,
      )
      for _ in range(self.blocks)
    ]
    self.out_norm = nn.LayerNorm(epsilon=1e-12)
    self.drop = dropout_lib.Dropout(self.dropout)
    self.emb_drop = dropout_lib.Dropout(self.emb_dropout)

  def encode(self, seq, train: bool):
    """[B, L] items -> [B, L, D] history representation."""
    h = self.emb_drop(self.item_emb(seq), deterministic=not train)
    return self.emb_norm(h)

  def condition(self, x_t, t):
    """x_t + t-embedding, [..., D] for t of shape [...] (or [] for one step
    shared by every row: the time MLP then runs on one row)."""
    t_emb = timesteps.sinusoidal_embedding(t * (1000.0 / self.steps), self.dim)
    return x_t + self.time_mlp[1](nn.silu(self.time_mlp[0](t_emb)))

  def approximate(
    self, history, cond, lam_noise, mask, train: bool, last_only=False
  ):
    """[N, L, D] outputs at every position of history + lambda * cond.

    cond: [N, L, D] (or broadcastable) per-position conditioning;
    lam_noise: [N, L, D] standard normal draws for lambda;
    last_only: [N, 1, D], the last position's output only (the final block
      computes the other positions' keys and values and nothing more).
    """
    lam = self.lambda_uncertainty * (1.0 + lam_noise)
    h = history + lam * cond
    for i, layer in enumerate(self.layers):
      if last_only and i == len(self.layers) - 1:
        h = layer(h, transformer.last_query_mask(mask), train, last_only=True)
      else:
        h = layer(h, mask, train)
    return self.out_norm(self.drop(h, deterministic=not train))

  def denoise(self, history, valid, x_t, t, lam_noise, train: bool):
    """x0_hat [B, D] from the history [B, L, D], x_t [B, D], t [B] or [].

    lam_noise: [B, L, D] standard normal draws for lambda.
    """
    cond = self.condition(x_t, t)[:, None, :]
    mask = transformer.attention_mask(valid, False, self.mask_axis)
    out = self.approximate(history, cond, lam_noise, mask, train, True)
    return out[:, -1]

  def embed_items(self, items):
    return self.item_emb(items)

  def table(self):
    return self.item_emb.embedding


def packed_mask(segments) -> transformer.Mask:
  """Bidirectional attention within each segment of packed rows."""
  same = segments[:, :, None] == segments[:, None, :]
  return transformer.Mask((same & (segments[:, None, :] > 0))[:, None])


@dataclasses.dataclass(frozen=True)
class _Packed:
  examples: batching.PrefixExamples
  lengths: np.ndarray  # real items of each example's input
  rows: int  # packed rows per device group
  groups: int  # device groups per host batch

  def __len__(self) -> int:
    return len(self.examples)


@dataclasses.dataclass(frozen=True)
class DiffuRec(prefix.PrefixModel, dot.DotScore):
  """The trainer's model surface (see jaxrec.models and ARCHITECTURE.md).

  Attributes:
    config: `config.model`: max_len, dim, heads, blocks, dropout,
      emb_dropout, lambda_uncertainty, steps, schedule, mask_axis,
      padding_item, eval_seed.
    n_items: real items (ids 0..n_items-1 in the split; +1 inside).
  """

  config: mlc.ConfigDict
  n_items: int

  # Config keys that switch an official-code quirk; the run record lists them.
  QUIRKS = ('mask_axis', 'padding_item')

  @property
  def phantom_items(self) -> int:
    """Extra score columns ranked but never hits (the padding row)."""
    return int(self.config.padding_item)

  @property
  def packed(self) -> bool:
    """Train on packed rows: exact only when padding is never attended."""
    return batching.packing_on(self.config)

  @property
  def trims_padding(self) -> bool:
    """Scores do not depend on how far the history is left-padded (no
    positions; padded keys masked), so ranking may cut a batch to the
    length its users need (`input_lengths`)."""
    return self.config.mask_axis == 'key'

  @property
  def net(self) -> DiffuRecNet:
    c = self.config
    return DiffuRecNet(
      self.n_items,
      c.dim,
      c.heads,
      c.blocks,
      c.dropout,
      c.emb_dropout,
      c.lambda_uncertainty,
      c.steps,
      c.mask_axis,
      c.get('init', 'flax'),
    )

  # Host side ---------------------------------------------------------------

  def train_data(self, split: types.Split, plan: batching.BatchPlan):
    examples = super().train_data(split, plan)
    if not self.packed:
      return examples
    lengths = (examples.inputs > 0).sum(1)
    width = examples.inputs.shape[1]
    rows = batching.max_packed_rows(lengths, plan, width)
    return _Packed(examples, lengths, rows, plan.groups // plan.hosts)

  def train_batch(self, data, index: np.ndarray, weights: np.ndarray) -> dict:
    """Padded [b, L] inputs, or with packing (`model.pack`, key mask) each
    device group's histories side by side in `data.rows` rows of width L:
    'tokens' and 'segments' (1 + the example's index in its group, 0 =
    empty) [G * rows, L], 'last' [G, b / G] the flat position of each
    example's last item in its group's rows."""
    if not self.packed:
      return super().train_batch(data, index, weights)
    ex = data.examples
    lengths = data.lengths[index] * (weights > 0)
    packed = batching.pack_batch(
      ex.inputs[index], lengths, data.groups, data.rows
    )
    return {
      'tokens': packed['tokens'],
      'segments': packed['segments'],
      'last': packed['last'],
      'targets': ex.targets[index],
      'weights': weights,
    }

  # Pure functions ----------------------------------------------------------

  def init(self, rng: jax.Array, batch: dict):
    seq = batch['inputs'] if 'inputs' in batch else batch['tokens']
    b, length = seq.shape
    dim = self.config.dim

    def both(net, seq):
      hist = net.encode(seq, False)
      x = jnp.zeros((b, dim))
      zeros = jnp.zeros((b, length, dim))
      return net.denoise(hist, seq > 0, x, jnp.zeros(b), zeros, False)

    return self.net.init(rng, seq, method=both)['params']

  def _logits(self, params, x0_hat):
    table = self.net.apply({'params': params}, method=DiffuRecNet.table)
    if not self.config.padding_item:
      table = table[1:]
    return x0_hat @ table.T

  def loss(self, params, batch: dict, rng: jax.Array, step):
    """CE of x0_hat against every item, at a uniform random t.

    Returns:
      (mean loss, {'loss_sum', 'count'}) over the weighted examples.
    """
    del step
    net, targets = self.net, batch['targets']
    k_t, k_noise, k_lam, k_drop = jax.random.split(rng, 4)
    t, _ = timesteps.uniform(k_t, targets.shape, self.schedule.steps)
    layout = self._packed_run if 'tokens' in batch else self._padded_run
    run = layout(batch, targets, t, k_noise, k_lam)
    x0_hat = nn.apply(run, net)({'params': params}, rngs={'dropout': k_drop})
    logits = self._logits(params, x0_hat)
    labels = targets if self.config.padding_item else targets - 1
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    w = batch['weights']
    total, count = jnp.sum(ce * w), jnp.sum(w)
    return total / jnp.maximum(count, 1.0), {'loss_sum': total, 'count': count}

  def _padded_run(self, batch, targets, t, k_noise, k_lam):
    """The approximator over padded [b, L] inputs: x0_hat [b, D]."""
    schedule, seq = self.schedule, batch['inputs']

    def run(net):
      history = net.encode(seq, True)
      x0 = net.embed_items(targets)
      noise = jax.random.normal(k_noise, x0.shape)
      x_t = forward.q_sample(schedule, x0, t, noise)
      lam = jax.random.normal(k_lam, history.shape)
      return net.denoise(history, seq > 0, x_t, t, lam, True)

    return run

  def _packed_run(self, batch, targets, t, k_noise, k_lam):
    """The approximator over packed rows (see `train_batch`): x0_hat [b, D]
    read at each example's last position; each position is conditioned on
    its own example's x_t and t."""
    schedule = self.schedule
    tokens, segments, last = batch['tokens'], batch['segments'], batch['last']
    groups, per = last.shape

    def run(net):
      history = net.encode(tokens, True)
      x0 = net.embed_items(targets)
      noise = jax.random.normal(k_noise, x0.shape)
      x_t = forward.q_sample(schedule, x0, t, noise)
      cond = net.condition(x_t, t).reshape(groups, per, -1)
      owner = jnp.maximum(segments - 1, 0).reshape(groups, -1)
      cond = jnp.take_along_axis(cond, owner[..., None], axis=1)
      cond = cond.reshape(history.shape)
      lam = jax.random.normal(k_lam, history.shape)
      h = net.approximate(history, cond, lam, packed_mask(segments), True)
      h = h.reshape(groups, -1, h.shape[-1])
      x0_hat = jnp.take_along_axis(h, last[..., None], axis=1)
      return x0_hat.reshape(groups * per, -1)

    return run

  def user_vectors(self, params, batch: dict) -> jax.Array:
    """float32[B, d]: x0 after T reverse steps from noise.

    The noise of user u is drawn from fold_in(key(eval_seed), u), so a
    user's scores do not depend on the batch it is ranked in; lambda's
    draws are indexed from the last position back, so they do not depend
    on how far the batch is padded either (`trims_padding`).
    """
    net, schedule = self.net, self.schedule
    seq = batch['inputs']
    draw = prefix.user_normal(batch['users'], self.config.eval_seed)
    dim = self.config.dim

    def run(net):
      history = net.encode(seq, False)
      valid = seq > 0
      length = seq.shape[1]

      steps = schedule.steps

      def model_fn(x, t):
        lam = draw(steps + t, (length, dim))[:, ::-1]
        # Every row is at step t: its embedding goes through the time MLP
        # once, not b times (3.7 % of a validation pass's time).
        return net.denoise(history, valid, x, t, lam, False)

      x_start = draw(2 * steps, (dim,))
      return samplers.ddpm(
        model_fn,
        schedule,
        x_start,
        None,
        variance='large',
        noise_fn=lambda t, shape: draw(t, shape[1:]),
      )

    return nn.apply(run, net)({'params': params})

  def item_vectors(self, params) -> jax.Array:
    """[n_items (+1: padding_item), d]: real items, then the padding row."""
    table = self.net.apply({'params': params}, method=DiffuRecNet.table)
    return dot.ranked_rows(table, self.phantom_items)
