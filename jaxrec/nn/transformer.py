"""Transformer blocks for sequence models, with the padding-mask axis explicit.

A padded position must not be attended to: its key is masked (`mask_axis=
'key'`, the correct behaviour and the default). Some official code (DiffuRec,
ADRec) builds the padding mask on the query axis instead, so real positions
still attend to padding; `mask_axis='query'` reproduces that quirk. Causal
masking is separate (`causal`).
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp
from flax import linen as nn

from jaxrec.nn import dropout as dropout_lib

MaskAxis = Literal['key', 'query']


def attention_mask(
  valid: jnp.ndarray, causal: bool, mask_axis: MaskAxis = 'key'
) -> jnp.ndarray:
  """bool[B, 1, L, L] attention mask (True = may attend).

  Args:
    valid: bool[B, L], False at padding.
    causal: position i sees positions j <= i only.
    mask_axis: 'key' masks padded keys; 'query' masks padded queries (the
      DiffuRec/ADRec quirk: real queries still see padded keys).
  """
  if mask_axis == 'key':
    mask = nn.make_attention_mask(jnp.ones_like(valid), valid)
  elif mask_axis == 'query':
    mask = nn.make_attention_mask(valid, jnp.ones_like(valid))
  else:
    raise ValueError(f"mask_axis={mask_axis!r}; expected 'key' or 'query'")
  if causal:
    mask = nn.combine_masks(mask, nn.make_causal_mask(valid))
  return mask


class SelfAttention(nn.Module):
  """Multi-head self-attention with `dropout_lib` on the attention weights.

  The parameters are laid out as in `nn.MultiHeadDotProductAttention`
  (query / key / value / out DenseGeneral); only the dropout draw differs.
  """

  heads: int
  dropout: float

  @nn.compact
  def __call__(self, x, mask, train: bool):
    dim = x.shape[-1]
    if dim % self.heads:
      raise ValueError(f'width {dim} is not divisible by {self.heads} heads')
    head = dim // self.heads
    proj = lambda name: nn.DenseGeneral((self.heads, head), name=name)(x)
    q, k, v = proj('query'), proj('key'), proj('value')
    logits = jnp.einsum(
      'bqhd,bkhd->bhqk', q / jnp.sqrt(head).astype(q.dtype), k
    )
    logits = jnp.where(mask, logits, jnp.finfo(logits.dtype).min)
    probs = jax.nn.softmax(logits, axis=-1)
    if train and self.dropout:
      probs = dropout_lib.apply(
        probs, self.dropout, self.make_rng('dropout'), False
      )
    out = jnp.einsum('bhqk,bkhd->bqhd', probs, v)
    return nn.DenseGeneral(dim, axis=(-2, -1), name='out')(out)


class Block(nn.Module):
  """Pre-LayerNorm self-attention + feed-forward block.

  Attributes:
    heads: attention heads.
    dropout: rate on attention weights and both residual branches.
    ffn_mult: feed-forward width as a multiple of the model width.
    activation: 'relu' (SASRec) or 'gelu' (tanh approximation; DiffuRec).
    out_dropout: a further dropout on the block's output (DiffuRec).
    ln_eps: LayerNorm epsilon.
    fast_dropout: draw dropout masks from 16-bit uniforms (`jaxrec.nn.
      dropout`, about 6x cheaper on CPU) instead of `nn.Dropout`'s.
  """

  heads: int
  dropout: float
  ffn_mult: int = 1
  activation: str = 'relu'
  out_dropout: bool = False
  ln_eps: float = 1e-8
  fast_dropout: bool = False

  @nn.compact
  def __call__(self, x, mask, train: bool):
    """x: [B, L, D]; mask: bool[B, 1, L, L]. Returns [B, L, D]."""
    dim = x.shape[-1]
    drop_cls = dropout_lib.Dropout if self.fast_dropout else nn.Dropout
    drop = lambda h: drop_cls(self.dropout)(h, deterministic=not train)
    h = nn.LayerNorm(epsilon=self.ln_eps)(x)
    if self.fast_dropout:
      h = SelfAttention(self.heads, self.dropout)(h, mask, train)
    else:
      h = nn.MultiHeadDotProductAttention(
        num_heads=self.heads,
        dropout_rate=self.dropout,
        deterministic=not train,
      )(h, h, mask=mask)
    x = x + drop(h)
    h = nn.LayerNorm(epsilon=self.ln_eps)(x)
    h = nn.Dense(dim * self.ffn_mult)(h)
    h = ACTIVATIONS[self.activation](h)
    h = nn.Dense(dim)(drop(h))
    x = x + drop(h)
    return drop(x) if self.out_dropout else x


ACTIVATIONS = {'relu': nn.relu, 'gelu': lambda h: nn.gelu(h, approximate=True)}
