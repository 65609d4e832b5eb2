"""Mult-VAE: its loss against float64 NumPy from the same draws."""

import jax
import numpy as np

from configs import multvae as multvae_config
from jaxrec.models import multvae


def test_loss_is_the_annealed_negative_elbo():
  c = multvae_config.get_config('tiny').model
  c.update(dropout=0.0, anneal_steps=100, anneal_cap=0.2)
  model = multvae.MultVAE(c, 10)
  rng = np.random.default_rng(0)
  x = (rng.random((4, 10)) < 0.4).astype(np.float32)
  x[0, :2] = 1.0  # no empty row
  w = np.array([1, 1, 1, 0], np.float32)
  params = model.init(jax.random.key(0), {'x': x})
  key = jax.random.key(5)
  for step, beta in ((10, 0.1), (500, 0.2)):
    loss, _ = jax.jit(model.loss)(params, {'x': x, 'weights': w}, key, step)
    _, k_z = jax.random.split(key)
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    d = [p[f'Dense_{i}'] for i in range(4)]
    lin = lambda h, layer: h @ layer['kernel'] + layer['bias']
    h = np.tanh(lin(x / np.linalg.norm(x, axis=1, keepdims=True), d[0]))
    stats = lin(h, d[1])
    mu, log_var = stats[:, :8], stats[:, 8:]
    eps = np.asarray(jax.random.normal(k_z, mu.shape), np.float64)
    z = mu + np.exp(0.5 * log_var) * eps
    logits = lin(np.tanh(lin(z, d[2])), d[3])
    m = logits.max(1, keepdims=True)
    log_p = logits - m - np.log(np.exp(logits - m).sum(1, keepdims=True))
    nll = -(log_p * x).sum(1)
    kl = 0.5 * (np.exp(log_var) + mu**2 - 1 - log_var).sum(1)
    want = np.sum((nll + beta * kl) * w) / 3
    np.testing.assert_allclose(loss, want, rtol=1e-4)
  scores = model.score(params, {'x': x})
  assert scores.shape == (4, 10) and np.all(np.isfinite(scores))
