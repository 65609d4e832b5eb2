"""PyTorch-style initialisation: each initialiser's law against its formula,
and the ports' parameters drawn by the official code's scheme."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import adrec as adrec_config
from configs import diffurec as diffurec_config
from jaxrec import models
from jaxrec.nn import inits


def _draw(init, shape):
  return np.asarray(init(jax.random.key(0), shape, jnp.float32), np.float64)


def test_kernels_follow_their_laws():
  fan_in, fan_out = 128, 384
  w = _draw(inits.KERNELS['torch'], (fan_in, fan_out))
  bound = 1.0 / np.sqrt(fan_in)
  assert np.abs(w).max() <= bound and np.abs(w).max() > 0.99 * bound
  np.testing.assert_allclose(w.var(), bound**2 / 3, rtol=0.03)
  x = _draw(inits.KERNELS['xavier'], (fan_in, fan_out))
  std = np.sqrt(2.0 / (fan_in + fan_out))
  np.testing.assert_allclose(x.std(), std, rtol=0.03)
  # An untruncated normal: about 4.6 % of draws lie beyond 2 sigma (Flax's
  # truncated normals have none).
  assert 0.04 < np.mean(np.abs(x) > 2 * std) < 0.052
  n = _draw(inits.KERNELS['normal_0.1'], (fan_in, fan_out))
  np.testing.assert_allclose(n.std(), 0.1, rtol=0.03)
  b = _draw(inits.torch_bias(fan_in), (20000,))
  assert np.abs(b).max() <= bound
  np.testing.assert_allclose(b.var(), bound**2 / 3, rtol=0.05)
  with pytest.raises(ValueError, match="'he'"):
    inits.LinearInit(qkv='he')


def _params(module, name: str, init: str):
  config = module.get_config('tiny')
  config.model.update(dim=64, heads=2, init=init)
  model = models.get_neural_model(name)(config.model, 50)
  seq = jnp.asarray(np.random.default_rng(0).integers(1, 50, (4, 8)))
  batch = {'inputs': seq, 'users': jnp.arange(4)}
  return model.init(jax.random.key(0), batch)


def _leaves(params, path_part: str, leaf: str):
  flat = jax.tree_util.tree_flatten_with_path(params)[0]
  out = [
    np.asarray(v, np.float64)
    for p, v in flat
    if path_part in jax.tree_util.keystr(p)
    and jax.tree_util.keystr(p).endswith(f"['{leaf}']")
  ]
  assert out, (path_part, leaf)
  return out


def test_diffurec_starts_as_the_official_code():
  official = _params(diffurec_config, 'diffurec', 'official')
  flax = _params(diffurec_config, 'diffurec', 'flax')
  # Same tree (checkpoints interchange), other values.
  assert jax.tree.structure(official) == jax.tree.structure(flax)
  d = 64
  for q in _leaves(official, "['query']", 'kernel'):
    assert np.abs(q).max() <= 1 / np.sqrt(d)  # nn.Linear: U(+-1/sqrt(d))
    np.testing.assert_allclose(q.var(), 1 / (3 * d), rtol=0.15)
  for b in _leaves(official, "['key']", 'bias'):
    assert 0 < np.abs(b).max() <= 1 / np.sqrt(d)
  # Feed-forward kernels [d, 4d]: xavier_normal_, std sqrt(2 / 5d).
  for w in _leaves(official, "['Dense_0']", 'kernel'):
    if w.shape == (d, 4 * d):
      np.testing.assert_allclose(w.std(), np.sqrt(2 / (5 * d)), rtol=0.1)
  for b in _leaves(flax, "['query']", 'bias'):
    assert not b.any()  # Flax: zero biases
  with pytest.raises(ValueError, match="model.init='torch'"):
    _params(diffurec_config, 'diffurec', 'torch')


def test_adrec_pretraining_starts_from_normal_0_1():
  config = adrec_config.get_config('tiny').pretrain.config
  config.model.init = 'official'
  model = models.get_neural_model('adrec_pretrain')(config.model, 50)
  seq = jnp.asarray(np.random.default_rng(0).integers(1, 50, (4, 8)))
  params = model.init(
    jax.random.key(0), {'inputs': seq, 'users': jnp.arange(4)}
  )
  kernels = _leaves(params, "['cam_", 'kernel')
  np.testing.assert_allclose(
    np.concatenate([k.ravel() for k in kernels]).std(), 0.1, rtol=0.05
  )
  assert not any(b.any() for b in _leaves(params, "['cam_", 'bias'))
