"""DreamRec (Yang et al., NeurIPS 2023; YangZhengyi98/DreamRec).

Generates the next item's embedding instead of classifying it: a
transformer encodes the history into a guidance vector h; a denoiser
f(x_t, h, t) predicts x_0 (the target item's embedding) trained with MSE
only; classifier-free guidance drops h to a learned null embedding with
probability p = 0.1 in training, and samples with
(1 + w) f(x_t, h, t) - w f(x_t, null, t) through every reverse step (T = 200,
the 'exp' schedule, posterior variance). Scores are x0_hat . item
embeddings.

Facts from the official DreamRec.py: item embeddings and the null embedding
N(0, 1) init, learned positions, embedding dropout, one attention block,
the 'mlp1' denoiser Linear([x_t, h, t_emb] -> d), the step MLP
sinusoid(sin first, frequencies over half - 1) -> Linear(d, 2d) -> GELU ->
Linear(2d, d), Adam lr 0.005, batch 256, d = 64, w = 2.

Training examples are every prefix and, as in the official data, each
user's first event with an empty history (`empty_history`). An item that is
never a target keeps its N(0, 1) row, norm about 8, while the MSE shrinks
the trained rows to about 0.2, so it wins every inner-product ranking
(`experiments.collapse`): without `empty_history` the items that only open
sequences, with it still those absent from train.

The history encoder is the official one by default (`model.encoder=
'official'`, `OfficialBlock`): one block whose attention takes LayerNorm'd
queries and raw keys and values, scales by the whole width, has no output
projection and adds its output to the normalised queries; a width-d ReLU
feed-forward with a post-LayerNorm residual; LayerNorm epsilon 1e-5;
positions N(0, 1), counted from the oldest of the last `max_len` items; the
last real position read out (for an empty history the padding column, so
h is the final LayerNorm's bias, as the official `len_seq - 1 = -1` reads).
`model.init='official'` starts every linear layer as PyTorch's `nn.Linear`
(and `Conv1d` of width 1). `encoder='prenorm'` is jaxrec's pre-LayerNorm
block with N(0, 0.02) positions counted from the newest (runs before the
key existed used it).

Official quirks, off by default and listed in the run record:
  padding_item=True  the padding row (never trained: N(0, 1), norm about 8)
                     is ranked as an item that is never a hit.
  eval_dropout=True  dropout stays on when the history is encoded for
                     ranking (the official code never calls `eval()`); each
                     user's masks come from its own stream.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections as mlc
from flax import linen as nn

from jaxrec.diffusion import forward, samplers, timesteps
from jaxrec.models import dot, prefix
from jaxrec.nn import inits, transformer

ENCODERS = ('official', 'prenorm')
# fold_in tag of the eval-dropout masks; the noise draws use tags 0..T.
_DROPOUT_TAG = 1 << 30


def _check_encoder(encoder: str) -> str:
  if encoder not in ENCODERS:
    raise ValueError(f'model.encoder={encoder!r}; expected one of {ENCODERS}')
  return encoder


class OfficialBlock(nn.Module):
  """The official DreamRec history block (its `Modules_ori.py` as `Tenc`
  calls it), on left-padded rows whose padding is already zeroed.

  Attributes:
    heads: attention heads (the logits are scaled by the whole width).
    dropout: on the attention weights and the feed-forward output.
    torch_init: linear layers as PyTorch's defaults, else Flax's.
  """

  heads: int
  dropout: float
  torch_init: bool = True

  @nn.compact
  def __call__(self, x, valid, train: bool):
    """x [B, L, D] (zero at padding), valid bool[B, L] -> [B, L, D]."""
    b, length, d = x.shape
    if d % self.heads:
      raise ValueError(f'width {d} is not divisible by {self.heads} heads')
    drop = lambda h: nn.Dropout(self.dropout)(h, deterministic=not train)
    norm = lambda name: nn.LayerNorm(epsilon=1e-5, name=name)

    def dense(name, h):
      if self.torch_init:
        return inits.torch_dense(d, h.shape[-1], name=name)(h)
      return nn.Dense(d, name=name)(h)

    def heads(h):  # [B, H, L, D/H]
      return h.reshape(b, length, self.heads, -1).transpose(0, 2, 1, 3)

    queries = norm('ln_1')(x)
    q = heads(dense('query', queries))
    k, v = heads(dense('key', x)), heads(dense('value', x))
    logits = jnp.einsum('bhqd,bhkd->bhqk', q, k) / jnp.sqrt(d).astype(x.dtype)
    allowed = transformer.attention_mask(valid, True).allowed
    # A query with no allowed key (a padded one) gets uniform weights, as
    # the official constant fill gives; its output is zeroed after the block.
    probs = jax.nn.softmax(jnp.where(allowed, logits, -(2.0**32) + 1), -1)
    out = jnp.einsum('bhqk,bhkd->bhqd', drop(probs), v)
    h = out.transpose(0, 2, 1, 3).reshape(b, length, d) + queries
    h = norm('ln_2')(h)
    f = drop(dense('ffn_2', nn.relu(dense('ffn_1', h))))
    return norm('ffn_norm')(f + h)


class DreamRecNet(nn.Module):
  n_items: int
  max_len: int
  dim: int
  heads: int
  blocks: int
  dropout: float
  encoder: str = 'official'  # config.model.encoder
  param_init: str = 'official'  # config.model.init

  def setup(self):
    official = _check_encoder(self.encoder) == 'official'
    torch_init = inits.check_init(self.param_init) == 'official'
    normal = nn.initializers.normal(1.0)
    self.item_emb = nn.Embed(self.n_items + 1, self.dim, embedding_init=normal)
    self.null = self.param('null_emb', normal, (self.dim,))
    pos_init = normal if official else nn.initializers.normal(0.02)
    self.pos_emb = self.param('pos_emb', pos_init, (self.max_len, self.dim))
    if official:
      if self.blocks != 1:
        raise ValueError(
          f"model.blocks={self.blocks}: model.encoder='official' is the"
          " official code's single block; use encoder='prenorm' to stack"
        )
      self.layers = [OfficialBlock(self.heads, self.dropout, torch_init)]
    else:
      linear = inits.TORCH if torch_init else inits.FLAX
      self.layers = [
        transformer.Block(self.heads, self.dropout, linear_init=linear)
        for _ in range(self.blocks)
      ]
    self.norm = nn.LayerNorm(epsilon=1e-5 if official else 1e-6)
    self.drop = nn.Dropout(self.dropout)
    d = self.dim
    if torch_init:
      self.step_mlp = [
        inits.torch_dense(2 * d, d),
        inits.torch_dense(d, 2 * d),
      ]
      self.denoiser = inits.torch_dense(d, 3 * d)
    else:
      self.step_mlp = [nn.Dense(2 * d), nn.Dense(d)]
      self.denoiser = nn.Dense(d)

  def positions(self, valid):
    """[B, L, D] position vectors: from the oldest item (official) or from
    the newest (prenorm); either way independent of the left padding."""
    length = valid.shape[1]
    if self.encoder != 'official':
      return self.pos_emb[-length:][None]
    start = length - valid.sum(axis=1, keepdims=True)  # first real column
    idx = jnp.clip(jnp.arange(length)[None] - start, 0, self.max_len - 1)
    return self.pos_emb[idx]

  def guidance(self, seq, train: bool):
    """h [B, D]: the history's representation at the last position."""
    valid = seq > 0
    x = self.item_emb(seq) + self.positions(valid)
    x = self.drop(x, deterministic=not train) * valid[..., None]
    if self.encoder == 'official':
      x = self.layers[0](x, valid, train) * valid[..., None]
    else:
      mask = transformer.attention_mask(valid, True)
      for layer in self.layers:
        x = layer(x, mask, train) * valid[..., None]
    return self.norm(x)[:, -1]

  def denoise(self, x_t, h, t):
    """x0_hat [B, D] from x_t [B, D], guidance h [B, D], t [B] (or [] for
    one step shared by every row: the step MLP then runs on one row)."""
    emb = timesteps.sinusoidal_embedding(
      t, self.dim, sin_first=True, freq_shift=1
    )
    emb = self.step_mlp[1](nn.gelu(self.step_mlp[0](emb), approximate=False))
    emb = jnp.broadcast_to(emb, x_t.shape[:-1] + emb.shape[-1:])
    return self.denoiser(jnp.concatenate([x_t, h, emb], axis=-1))

  def null_guidance(self, batch: int):
    return jnp.broadcast_to(self.null, (batch, self.dim))

  def embed_items(self, items):
    return self.item_emb(items)

  def table(self):
    return self.item_emb.embedding


@dataclasses.dataclass(frozen=True)
class DreamRec(prefix.PrefixModel, dot.DotScore):
  """The trainer's model surface.

  Attributes:
    config: `config.model`: max_len, dim, heads, blocks, dropout, steps,
      schedule, guidance_p, guidance_w, eval_seed, empty_history, encoder,
      init, padding_item, eval_dropout.
    n_items: real items.
  """

  config: mlc.ConfigDict
  n_items: int

  # Config keys that switch an official-code quirk; the run record lists them.
  QUIRKS = ('padding_item', 'eval_dropout')

  @property
  def phantom_items(self) -> int:
    """Extra score columns ranked but never hits (the padding row)."""
    return int(self.config.get('padding_item', False))

  @property
  def net(self) -> DreamRecNet:
    c = self.config
    return DreamRecNet(
      self.n_items,
      c.max_len,
      c.dim,
      c.heads,
      c.blocks,
      c.dropout,
      # Runs saved before these keys used jaxrec's encoder and Flax's init.
      c.get('encoder', 'prenorm'),
      c.get('init', 'flax'),
    )

  # Pure functions ----------------------------------------------------------

  def init(self, rng: jax.Array, batch: dict):
    def both(net, seq):
      h = net.guidance(seq, False)
      return net.denoise(h, h, jnp.zeros(seq.shape[0], jnp.int32))

    return self.net.init(rng, batch['inputs'], method=both)['params']

  def loss(self, params, batch: dict, rng: jax.Array, step):
    """MSE of x0_hat against the target embedding (mean over d), per
    weighted example; h is replaced by the null embedding w.p. guidance_p."""
    del step
    schedule = self.schedule
    seq = batch['inputs']
    b = seq.shape[0]
    k_t, k_noise, k_drop, k_cfg = jax.random.split(rng, 4)
    t, _ = timesteps.uniform(k_t, (b,), schedule.steps)
    keep = jax.random.uniform(k_cfg, (b, 1)) >= self.config.guidance_p

    def run(net):
      h = net.guidance(seq, True)
      h = jnp.where(keep, h, net.null_guidance(b))
      x0 = net.embed_items(batch['targets'])
      x_t = forward.q_sample(
        schedule, x0, t, jax.random.normal(k_noise, x0.shape)
      )
      return jnp.mean((net.denoise(x_t, h, t) - x0) ** 2, axis=-1)

    mse = nn.apply(run, self.net)({'params': params}, rngs={'dropout': k_drop})
    w = batch['weights']
    total, count = jnp.sum(mse * w), jnp.sum(w)
    return total / jnp.maximum(count, 1.0), {'loss_sum': total, 'count': count}

  def user_vectors(self, params, batch: dict) -> jax.Array:
    """float32[B, d]: x0 of the guided reverse process from noise.

    Noise of user u comes from fold_in(key(eval_seed), u) (batch-free).
    """
    schedule, dim = self.schedule, self.config.dim
    seq = batch['inputs']
    draw = prefix.user_normal(batch['users'], self.config.eval_seed)
    h = None
    if self.config.get('eval_dropout', False):
      # The quirk: encode with dropout on, each user's masks from its own
      # stream (a tag the noise draws never use), so scores stay batch-free.
      keys = prefix.user_keys(
        batch['users'], self.config.eval_seed, _DROPOUT_TAG
      )
      h = jax.vmap(
        lambda s, k: self.net.apply(
          {'params': params},
          s[None],
          True,
          method='guidance',
          rngs={'dropout': k},
        )[0]
      )(seq, keys)

    def run(net):
      b = seq.shape[0]
      cond = net.guidance(seq, False) if h is None else h
      null = net.null_guidance(b)
      # Every row is at step t: the step MLP runs once per call, not b times.
      model_fn = samplers.classifier_free(
        lambda x, t: net.denoise(x, cond, t),
        lambda x, t: net.denoise(x, null, t),
        self.config.guidance_w,
      )
      return samplers.ddpm(
        model_fn,
        schedule,
        draw(schedule.steps, (dim,)),
        None,
        variance='small',
        noise_fn=lambda t, shape: draw(t, shape[1:]),
      )

    return nn.apply(run, self.net)({'params': params})

  def item_vectors(self, params) -> jax.Array:
    """float32[n_items (+1: padding_item), d]: the embeddings of items
    1..n, then the padding row."""
    table = self.net.apply({'params': params}, method=DreamRecNet.table)
    return dot.ranked_rows(table, self.phantom_items)
