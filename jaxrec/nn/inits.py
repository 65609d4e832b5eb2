"""PyTorch's parameter initialisations, for ports whose numbers depend on
them.

Flax's `Dense` draws kernels from a truncated normal of variance 1/fan_in
(LeCun) and zero biases. PyTorch's `nn.Linear` draws both from
U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (kaiming_uniform with a = sqrt(5)), and
official code often re-draws some kernels with `xavier_normal_` (a plain
normal of variance 2 / (fan_in + fan_out)). The scale of the attention and
feed-forward weights at step 0 differs by up to 1.7x between the two, which
is a hyperparameter of the published method.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import linen as nn

# Kernel initialisers by name; Flax (and JAX) lay kernels out [fan_in,
# fan_out] (DenseGeneral flattens its axes to that before calling them).
KERNELS = {
  'lecun': nn.initializers.lecun_normal(),  # Flax's default
  # nn.Linear's default: U(+-sqrt(3 * (1/3) / fan_in)) = U(+-1/sqrt(fan_in))
  'torch': nn.initializers.variance_scaling(1.0 / 3.0, 'fan_in', 'uniform'),
  # torch.nn.init.xavier_normal_: N(0, 2 / (fan_in + fan_out)), untruncated
  'xavier': nn.initializers.variance_scaling(1.0, 'fan_avg', 'normal'),
  # module.weight.data.normal_(0, 0.1), as RecBole-style `_init_weights`
  'normal_0.1': nn.initializers.normal(0.1),
}


# `model.init` of the ports that follow their official code's initialisation.
INITS = ('official', 'flax')


def check_init(init: str) -> str:
  """`init` if it is one of `INITS`, else a ValueError naming model.init."""
  if init not in INITS:
    raise ValueError(f'model.init={init!r}; expected one of {INITS}')
  return init


def torch_bias(fan_in: int):
  """nn.Linear's default bias: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
  bound = 1.0 / float(fan_in) ** 0.5

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


@dataclasses.dataclass(frozen=True)
class LinearInit:
  """How a transformer block's linear layers start.

  Attributes:
    qkv: kernel initialiser (a `KERNELS` name) of the query/key/value
      projections.
    out: of the attention's output projection.
    ffn: of both feed-forward layers.
    bias: 'zeros' (Flax) or 'torch' (`torch_bias` of the layer's fan-in).
  """

  qkv: str = 'lecun'
  out: str = 'lecun'
  ffn: str = 'lecun'
  bias: str = 'zeros'

  def __post_init__(self):
    for name in (self.qkv, self.out, self.ffn):
      if name not in KERNELS:
        raise ValueError(
          f'kernel init {name!r}; expected one of {list(KERNELS)}'
        )
    if self.bias not in ('zeros', 'torch'):
      raise ValueError(f"bias init {self.bias!r}; expected 'zeros' or 'torch'")

  def kernel(self, role: str):
    return KERNELS[getattr(self, role)]

  def bias_init(self, fan_in: int):
    return torch_bias(fan_in) if self.bias == 'torch' else nn.initializers.zeros


FLAX = LinearInit()
# nn.Linear defaults everywhere (layers no official code re-draws).
TORCH = LinearInit('torch', 'torch', 'torch', 'torch')


def torch_dense(features: int, fan_in: int, **kw) -> nn.Dense:
  """An `nn.Dense` initialised as PyTorch's `nn.Linear(fan_in, features)`."""
  return nn.Dense(
    features,
    kernel_init=KERNELS['torch'],
    bias_init=torch_bias(fan_in),
    **kw,
  )
