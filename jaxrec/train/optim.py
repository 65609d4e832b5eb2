"""Optax optimizers and learning-rate schedules from `config.optim`.

Fields: name ('adam' | 'adamw' | 'sgd'), lr, b1, b2, eps, weight_decay
(adamw: decoupled; adam: coupled L2 added to the gradient, as PyTorch's
Adam; sgd: unused), schedule ('constant' | 'cosine' | 'linear' |
'step', with decay_epochs and decay_rate), warmup_steps, grad_clip (global
norm; 0 = off), lr_groups (top-level parameter name -> its own learning
rate, e.g. L-DiffRec's {'denoiser': 5e-4}; the same schedule shape and
optimizer; empty = one rate).
"""

from __future__ import annotations

import jax
import ml_collections as mlc
import optax

SCHEDULES = ('constant', 'cosine', 'linear', 'step')


def learning_rate(
  config: mlc.ConfigDict, total_steps: int, steps_per_epoch: int = 1
) -> optax.Schedule:
  """Linear warm-up, then constant / cosine / linear / step decay.

  'step' multiplies the rate by `decay_rate` every `decay_epochs` epochs
  (PyTorch's StepLR, as DiffuRec).
  """
  warmup = int(config.warmup_steps)
  rest = max(1, total_steps - warmup)
  if config.schedule == 'constant':
    decay = optax.constant_schedule(config.lr)
  elif config.schedule == 'step':
    decay = optax.exponential_decay(
      config.lr,
      transition_steps=int(config.decay_epochs) * steps_per_epoch,
      decay_rate=config.decay_rate,
      staircase=True,
    )
  elif config.schedule == 'cosine':
    decay = optax.cosine_decay_schedule(config.lr, rest)
  elif config.schedule == 'linear':
    decay = optax.linear_schedule(config.lr, 0.0, rest)
  else:
    raise KeyError(
      f'optim.schedule={config.schedule!r}; known: {list(SCHEDULES)}'
    )
  if not warmup:
    return decay
  return optax.join_schedules(
    [optax.linear_schedule(0.0, config.lr, warmup), decay], [warmup]
  )


def make(config: mlc.ConfigDict, total_steps: int, steps_per_epoch: int = 1):
  """The optimizer of `config` (a GradientTransformation)."""
  groups = dict(config.get('lr_groups', None) or {})
  if not groups:
    return _make_one(config, total_steps, steps_per_epoch)
  txs = {'': _make_one(config, total_steps, steps_per_epoch)}
  for name, lr in groups.items():
    one = mlc.ConfigDict(config.to_dict())
    one.lr = float(lr)
    txs[name] = _make_one(one, total_steps, steps_per_epoch)

  def labels(params):
    unknown = set(groups) - set(params)
    if unknown:
      raise KeyError(
        f'optim.lr_groups names {sorted(unknown)}, not top-level parameters'
        f' of the model ({sorted(params)})'
      )
    return {
      k: jax.tree.map(lambda _, k=k: k if k in groups else '', v)
      for k, v in params.items()
    }

  return optax.multi_transform(txs, labels)


def _make_one(config, total_steps: int, steps_per_epoch: int):
  lr = learning_rate(config, total_steps, steps_per_epoch)
  if config.name == 'adam':
    tx = optax.adam(lr, b1=config.b1, b2=config.b2, eps=config.eps)
    if config.weight_decay:  # coupled L2, as torch.optim.Adam's
      tx = optax.chain(optax.add_decayed_weights(config.weight_decay), tx)
  elif config.name == 'adamw':
    tx = optax.adamw(
      lr,
      b1=config.b1,
      b2=config.b2,
      eps=config.eps,
      weight_decay=config.weight_decay,
    )
  elif config.name == 'sgd':
    tx = optax.sgd(lr)
  else:
    raise KeyError(f'optim.name={config.name!r}; known: adam, adamw, sgd')
  if config.grad_clip:
    tx = optax.chain(optax.clip_by_global_norm(config.grad_clip), tx)
  return tx


def default_config() -> mlc.ConfigDict:
  return mlc.ConfigDict(
    {
      'name': 'adam',
      'lr': 1e-3,
      'b1': 0.9,
      'b2': 0.98,
      'eps': 1e-8,
      'weight_decay': 0.0,
      'schedule': 'constant',
      'warmup_steps': 0,
      'grad_clip': 0.0,
      'decay_epochs': 100,  # 'step' schedule only
      'decay_rate': 0.1,
      'lr_groups': {},  # top-level param name -> learning rate
    }
  )
