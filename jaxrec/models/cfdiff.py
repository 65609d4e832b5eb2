"""CF-Diff (Hou, Park & Shin, SIGIR 2024, "Collaborative Filtering Based on
Diffusion Models: Unveiling the Potential of High-Order Connectivity";
jackfrost168/CF_Diff).

DiffRec's diffusion (the same `GaussianDiffusion`: linear-variance betas
with the first set to 1e-5, x0 prediction, SNR reweighting, loss-aware
timesteps, ranking from the clean history along the posterior means) with a
denoiser, CAM-AE, that also reads each user's multi-hop rows. Facts from
the official code (`main.py`, `models/CAM_AE_multihops.py`,
`data_preprocessing/data_preprocessing_item_2nd_hop.py`):

- Multi-hop rows, fixed per user (computed from the train matrix X, never
  noised): the 2-hop row is c2[u, i] = x[u, i] deg(i) / U (the official
  builder: the users two hops away through each of u's items, as a share of
  all users). The 3-hop builder is not published (its output file is); here
  c3[u, j] = |{v in N2(u) : x[v, j] = 1}| / U, N2(u) the users other than u
  sharing a train item with u: the same count-over-U reading one hop
  further. Computed per batch on the host from the sparse X (no users x
  items matrix is held).
- CAM-AE (d = 16, 4 heads, 2 layers, k = 512, emb 10): one Linear(I, k)
  encoder shared by x_t, c2 and c3; x_t's code is dropped out (0.5). Each
  code is concatenated with Linear(sinusoid(t)) (k + 10 values) and every
  value becomes a token through a per-hop Linear(1, d). Layer l (shared by
  both branches): h <- tanh?(W_l dropout(h + r dropout(n(A_l(q, h, h)))))
  with q the 2-hop tokens and r = 0.15 in the first branch, the 3-hop
  tokens and r = 0.5 in the second (which starts from the same tokens as the
  first), tanh between layers only. A_l is torch's MultiheadAttention (in
  and out projections, attention-weight dropout 0.5); n(.) is torch's
  `F.normalize` at its default axis 1, which for [B, tokens, d] normalises
  each channel over the tokens. Then 0.9 h + 0.1 h2 -> Linear(d, 1) ->
  tanh -> Linear(k + 10, I).
- Initialisation as torch's: Linear weights and biases U(+-1/sqrt(fan_in)),
  attention in-projection Xavier-uniform over [3d, d] with zero bias, zero
  out-projection bias.
- AdamW lr 1e-4, no weight decay, batch 128; T = 20, noise scale 1e-2, min
  1e-3, max 1e-2; validation Recall@20 every 5 epochs, stopping 20 epochs
  after the best. The official loader does not shuffle users; here batches
  are shuffled per epoch (the trainer's order).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import math
import os

import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np
import scipy.sparse as sp
from flax import linen as nn

from jaxrec.data import types
from jaxrec.diffusion import timesteps
from jaxrec.models import diffrec
from jaxrec.nn import dropout as dropout_lib


# The cores this process may run on, counted as `ranking` counts them (a
# container can see more CPUs than it is allowed).
_HOP_THREADS = min(8, len(os.sched_getaffinity(0)))


def _row_blocks(m: sp.csr_matrix, k: int) -> tuple[sp.csr_matrix, ...]:
  bounds = np.linspace(0, m.shape[0], k + 1).astype(int)
  return tuple(m[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True))


def _blocked_product(blocks, rhs: np.ndarray) -> np.ndarray:
  """The row blocks of a sparse matrix times dense `rhs`, one block per
  thread (scipy's sparse x dense product releases the GIL); each output row
  is the single-block product's, bit for bit."""
  if len(blocks) == 1:
    return blocks[0] @ rhs
  with concurrent.futures.ThreadPoolExecutor(len(blocks)) as pool:
    return np.concatenate(list(pool.map(lambda b: b @ rhs, blocks)))


@dataclasses.dataclass(frozen=True, eq=False)
class MultiHop:
  """The train graph, kept sparse, and each user's [2-hop | 3-hop] rows."""

  x: sp.csr_matrix  # binary float64 [U, I]
  scale: np.ndarray  # float64 [I]: deg(i) / U
  # Row blocks of the binary graph and of its transpose for the counting
  # products, which run on the host at every step: float32 counts are exact
  # below 2**24 and scipy's sparse x dense products move half the bytes;
  # the blocks run on up to 8 threads (a batch of 128 ML-1M users on a
  # 2-core CPU: 27 against 36 ms idle, 33 against 101 ms beside three
  # training runs). The same rows, tested.
  counts: tuple[sp.csr_matrix, ...]  # [U, I] by rows
  counts_t: tuple[sp.csr_matrix, ...]  # [I, U] by rows

  @classmethod
  def from_part(
    cls, part: types.Part, n_items: int, threads: int = _HOP_THREADS
  ) -> MultiHop:
    x = sp.csr_matrix(part.to_csr(n_items), dtype=np.float64)
    x.sum_duplicates()
    x.data[:] = 1.0
    deg = np.asarray(x.sum(0)).ravel()
    exact = np.float32 if max(x.shape) < 2**24 else np.float64
    return cls(
      x,
      deg / max(x.shape[0], 1),
      _row_blocks(x.astype(exact), threads),
      _row_blocks(sp.csr_matrix(x.T, dtype=exact), threads),
    )

  def rows(self, users: np.ndarray) -> np.ndarray:
    """float32[B, 2I]: [c2 | c3] of `users` (module docstring)."""
    users = np.asarray(users, np.int64)
    n_users = self.x.shape[0]
    own = self.x[users].toarray()  # [B, I]
    c2 = own * self.scale
    dtype = self.counts[0].dtype
    own_t = np.ascontiguousarray(own.T, dtype)
    shared = _blocked_product(self.counts, own_t)  # [U, B]
    reach = shared > 0  # users sharing an item with each of `users`
    reach[users, np.arange(len(users))] = False
    c3 = _blocked_product(self.counts_t, reach.astype(dtype)).T  # [B, I]
    c3 = c3.astype(np.float64) / n_users  # exact counts / U
    return np.concatenate([c2, c3], axis=1).astype(np.float32)


# kaiming_uniform(a=sqrt(5)): U(+-1/sqrt(fan_in)).
_TORCH_KERNEL = nn.initializers.variance_scaling(1 / 3, 'fan_in', 'uniform')


def _torch_linear(n: int, fan_in: int) -> nn.Dense:
  """torch.nn.Linear's initialisation: U(+-1/sqrt(fan_in)) for both."""
  bound = 1.0 / math.sqrt(fan_in)
  uniform = lambda key, shape, dtype=jnp.float32: jax.random.uniform(
    key, shape, dtype, -bound, bound
  )
  return nn.Dense(n, kernel_init=_TORCH_KERNEL, bias_init=uniform)


def _attention_parts(q, k, rate, key):
  """softmax(q k^T / sqrt(c)) on [b, heads, L, c], its dropout mask and
  scale (None, 1 without a key)."""
  logits = jnp.einsum('bhqc,bhkc->bhqk', q, k) / math.sqrt(q.shape[-1])
  weights = jax.nn.softmax(logits, -1)
  if key is None:
    return weights, None, 1.0
  bits = dropout_lib.exact_bits(1.0 - rate)
  mask, scale = dropout_lib.mask_and_scale(key, rate, weights.shape, bits)
  return weights, mask, scale


def _drop(a, mask, scale):
  """dropout_lib.drop, or `a` itself without a mask."""
  return a if mask is None else dropout_lib.drop(a, mask, scale)


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def _attend(q, k, v, key, rate):
  """dropout(softmax(q k^T / sqrt(c))) v for one block of examples."""
  p, mask, scale = _attention_parts(q, k, rate, key)
  return jnp.einsum('bhqk,bhkc->bhqc', _drop(p, mask, scale), v)


def _attend_fwd(q, k, v, key, rate):
  out = _attend(q, k, v, key, rate)
  return out, (q, k, v, key, out)


def _attend_bwd(rate, res, d_out):
  """The gradient from the block's inputs alone (the weights and the mask
  are recomputed, never stored), as flash attention does it: with
  pd = dropout(p) and out = pd v, the softmax's row term
  sum_k (d pd_qk)(pd_qk) is d_out_q . out_q. The products over the query
  axis are written with the head width first ([c, L] outputs), which XLA's
  CPU backend runs about 2x faster than [L, c]."""
  q, k, v, key, out = res
  p, mask, scale = _attention_parts(q, k, rate, key)
  dv = jnp.einsum('bhqc,bhqk->bhck', d_out, _drop(p, mask, scale))
  dp = _drop(jnp.einsum('bhqc,bhkc->bhqk', d_out, v), mask, scale)
  row = jnp.sum(d_out * out, -1, keepdims=True)
  ds = p * (dp - row) / math.sqrt(q.shape[-1])
  dq = jnp.einsum('bhqk,bhkc->bhqc', ds, k)
  dk = jnp.einsum('bhqc,bhqk->bhck', q, ds)
  return dq, jnp.swapaxes(dk, -1, -2), jnp.swapaxes(dv, -1, -2), None


_attend.defvjp(_attend_fwd, _attend_bwd)


def _blocked_attention(qh, kh, vh, rate, key, block: int):
  """softmax(q k^T / sqrt(c)) v on [B, heads, L, c], `block` examples at a
  time (lax.map), with dropout at `rate` on the weights when `key` is
  given; the gradient recomputes each block's weights (`_attend_bwd`).

  The maps are [B, heads, L, L]: 140 M floats at CF-Diff's B = 128, L =
  522. Blocks of a few examples stay in cache: on a CPU core the forward
  pass ran about 10x and the gradient about 2.5x faster than with the
  whole batch at once.
  """
  b = qh.shape[0]
  blocks = -(-b // block)
  pad = lambda a: jnp.pad(a, [(0, blocks * block - b)] + [(0, 0)] * 3)
  split = lambda a: pad(a).reshape((blocks, block) + a.shape[1:])
  if key is None:
    attend = lambda args: _attend(*args, None, rate)
    parts = (split(qh), split(kh), split(vh))
  else:
    attend = lambda args: _attend(*args, rate)
    parts = (split(qh), split(kh), split(vh), jax.random.split(key, blocks))
  out = jax.lax.map(attend, parts)
  return out.reshape((blocks * block,) + qh.shape[1:])[:b]


class CrossAttention(nn.Module):
  """torch.nn.MultiheadAttention(d, heads, dropout) with batch_first:
  queries [B, Lq, d] attend to keys = values [B, L, d]."""

  d: int
  heads: int
  dropout: float
  block: int = 4  # examples per attention block

  @nn.compact
  def __call__(self, q, kv, train: bool):
    d, h = self.d, self.heads
    # One [d, 3d] in-projection, Xavier-uniform over torch's [3d, d].
    bound = math.sqrt(6.0 / (d + 3 * d))
    w_in = self.param(
      'in_kernel',
      lambda k, s: jax.random.uniform(k, s, jnp.float32, -bound, bound),
      (d, 3 * d),
    )
    b_in = self.param('in_bias', nn.initializers.zeros, (3 * d,))
    wq, wk, wv = jnp.split(w_in, 3, axis=1)
    bq, bk, bv = jnp.split(b_in, 3)
    # [B, L, d] -> [B, heads, L, d / heads]
    split = lambda a: jnp.swapaxes(a.reshape(a.shape[:-1] + (h, d // h)), 1, 2)
    qh, kh, vh = split(q @ wq + bq), split(kv @ wk + bk), split(kv @ wv + bv)
    drop = train and self.dropout > 0
    key = self.make_rng('dropout') if drop else None
    out = _blocked_attention(qh, kh, vh, self.dropout, key, self.block)
    out = jnp.swapaxes(out, 1, 2).reshape(q.shape)
    return nn.Dense(  # torch's Linear weight, its bias zeroed by MHA
      d, kernel_init=_TORCH_KERNEL, bias_init=nn.initializers.zeros
    )(out)


def _dropout(rate: float) -> dropout_lib.Dropout:
  """Dropout from as few random bits as represent the rate exactly (one
  bit per mask at 0.5): the attention maps hold 140 M weights per call."""
  return dropout_lib.Dropout(rate, dropout_lib.exact_bits(1.0 - rate))


def _normalize_tokens(a):
  """torch's F.normalize(a) on [B, L, d]: unit L2 norm over axis 1."""
  norm = jnp.sqrt(jnp.sum(a * a, axis=1, keepdims=True))
  return a / jnp.maximum(norm, 1e-12)


class CamAE(nn.Module):
  """f(x_t, t, train, [c2 | c3]) -> [B, I] (the module docstring)."""

  n_items: int
  d_model: int = 16
  heads: int = 4
  layers: int = 2
  hidden: int = 512
  emb_size: int = 10
  dropout: float = 0.5
  attn_dropout: float = 0.5
  residuals: tuple[float, float] = (0.15, 0.5)
  mix: float = 0.9
  norm: bool = False
  attn_block: int = 4

  @nn.compact
  def __call__(self, x, t, train: bool, hops):
    n, k = self.n_items, self.hidden
    encoder = _torch_linear(k, n)
    code = encoder(x)
    code2, code3 = encoder(hops[..., :n]), encoder(hops[..., n:])
    emb = timesteps.sinusoidal_embedding(t, self.emb_size)
    emb = _torch_linear(self.emb_size, self.emb_size)(emb)
    if self.norm:
      code = code / jnp.maximum(
        jnp.linalg.norm(code, axis=-1, keepdims=True), 1e-12
      )
    code = _dropout(self.dropout)(code, not train)

    def tokens(c):  # [B, k] -> [B, k + emb, d]
      v = jnp.concatenate(
        [c, jnp.broadcast_to(emb, c.shape[:-1] + emb.shape[-1:])], -1
      )
      return _torch_linear(self.d_model, 1)(v[..., None])

    h0, q2, q3 = tokens(code), tokens(code2), tokens(code3)
    attns = [
      CrossAttention(
        self.d_model, self.heads, self.attn_dropout, self.attn_block
      )
      for _ in range(self.layers)
    ]
    feeds = [
      _torch_linear(self.d_model, self.d_model) for _ in range(self.layers)
    ]
    drop = lambda a, rate: _dropout(rate)(a, not train)

    def branch(h, q, r):
      for i in range(self.layers):
        a = drop(_normalize_tokens(attns[i](q, h, train)), 0.5)
        h = feeds[i](drop(h + r * a, self.dropout))
        if i != self.layers - 1:
          h = jnp.tanh(h)
      return h

    h = self.mix * branch(h0, q2, self.residuals[0]) + (1 - self.mix) * branch(
      h0, q3, self.residuals[1]
    )
    h = jnp.tanh(_torch_linear(1, self.d_model)(h)[..., 0])
    return _torch_linear(n, k + self.emb_size)(h)


@dataclasses.dataclass(frozen=True, eq=False)
class CFDiff(diffrec.DiffRec):
  """The trainer's model surface: DiffRec's, with the multi-hop rows of
  each batch's users (`bind` keeps the train graph).

  Attributes:
    config: `config.model`: DiffRec's diffusion keys and d_model, heads,
      layers, hidden, emb_size, dropout, attn_dropout, residuals, mix, norm.
    n_items: items.
    hops: the train graph, set by `bind`.
  """

  hops: MultiHop | None = None

  def __post_init__(self):
    super().__post_init__()
    check_config(self.config)

  def bind(self, split: types.Split) -> CFDiff:
    return dataclasses.replace(
      self, hops=MultiHop.from_part(split.train, self.n_items)
    )

  @property
  def net(self) -> CamAE:
    c = self.config
    return CamAE(
      self.n_items,
      c.d_model,
      c.heads,
      c.layers,
      c.hidden,
      c.emb_size,
      c.dropout,
      c.attn_dropout,
      tuple(c.residuals),
      c.mix,
      c.norm,
      c.attn_block,
    )

  def _hops(self, users) -> np.ndarray:
    if self.hops is None:
      raise ValueError('CF-Diff needs the train graph: call bind(split)')
    return self.hops.rows(users)

  # Host side ----------------------------------------------------------------

  def train_batch(self, data: diffrec.UserRows, index, weights) -> dict:
    return {
      **diffrec.DenseRows.train_batch(self, data, index, weights),
      'hops': self._hops(index),
    }

  def make_batch(self, history: types.Part, users: np.ndarray) -> dict:
    """The users' history rows, their multi-hop rows from the train graph
    and their ids (which key the ranking noise)."""
    return {
      **diffrec.DiffRec.make_batch(self, history, users),
      'hops': self._hops(users),
    }

  def net_inputs(self, batch: dict) -> tuple:
    return (batch['hops'],)


def check_config(c: mlc.ConfigDict) -> None:
  """Refuses CAM-AE widths it cannot build, naming the key."""
  if c.d_model % c.heads:
    raise ValueError(
      f'model.d_model={c.d_model} is not a multiple of model.heads={c.heads}'
    )
  if len(c.residuals) != 2:
    raise ValueError(
      f'model.residuals={tuple(c.residuals)}: one weight per branch (2-hop,'
      ' 3-hop)'
    )
