"""L-DiffRec: clusters and latent widths, the loss against float64 NumPy,
the annealing, per-group learning rates, the side-file reader."""

import gzip
import io

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import ldiffrec as ldiffrec_config
from jaxrec.data import readers, registry
from jaxrec.models import ldiffrec
from jaxrec.train import optim


def _config(**model):
  c = ldiffrec_config.get_config('dataset=synthetic,tiny')
  c.model.update(model)
  return c


def test_clusters_partition_the_items_and_widths_follow_their_sizes():
  rng = np.random.default_rng(0)
  emb = np.concatenate([rng.normal(-3, 1, (40, 4)), rng.normal(3, 1, (25, 4))])
  groups = ldiffrec.kmeans_clusters(emb, 2, seed=1)
  assert sorted(len(g) for g in groups) == [25, 40]
  np.testing.assert_array_equal(np.sort(np.concatenate(groups)), np.arange(65))
  # ML-1M clean's 2,810 items as 2,000 + 810 over a latent of 300:
  # int(2000 / 2810 * 300) = 213, the last cluster takes the other 87.
  assert ldiffrec.latent_widths([2000, 810], 300) == [213, 87]
  assert ldiffrec.latent_widths([1, 999], 10) == [1, 9]  # at least 1
  with pytest.raises(ValueError, match='latent=2 is too narrow'):
    ldiffrec.latent_widths([5, 5, 5], 2)


def test_annealing_of_the_loss_weights():
  model = ldiffrec.LDiffRec(ldiffrec_config.get_config().model, 10)
  # lamda: per completed epoch (15 steps each), from 0.03 towards 0.005
  # over 500 epochs; the KL weight: per step, to 0.3 over 200 steps.
  for step, lamda, kl in [
    (0, 0.03, 0.0),
    (14, 0.03, 0.07),
    (150, 0.03 * (1 - 10 / 500), 0.3),
    (15 * 450, 0.005, 0.3),
  ]:
    got = model.annealing(step, 15)
    np.testing.assert_allclose(got, (lamda, kl), rtol=1e-6)


def _np_loss(params, x, t, noise, model, step, per_epoch):
  """float64 L-DiffRec loss without dropout and reparameterisation."""
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
  c, net = model.config, model.net
  mus = []
  for i, (ids, w) in enumerate(zip(net.clusters, net.widths, strict=True)):
    enc = p[f'encoders_{i}']
    h = np.tanh(x[:, list(ids)] @ enc['kernel'] + enc['bias'])
    mus.append((h[:, :w], h[:, w:]))
  mu = np.concatenate([m for m, _ in mus], 1)
  logvar = np.concatenate([v for _, v in mus], 1)
  kl = -0.5 * np.sum(1 + logvar - mu**2 - np.exp(logvar), 1)
  betas = model.betas()
  ab = np.cumprod(1.0 - betas)
  z_t = np.sqrt(ab[t])[:, None] * mu + np.sqrt(1 - ab[t])[:, None] * noise
  d = p['denoiser']
  half = c.emb_size // 2
  freqs = np.exp(-np.log(10000.0) * np.arange(half) / half)
  emb = np.concatenate(
    [np.cos(t[:, None] * freqs), np.sin(t[:, None] * freqs)], 1
  )
  emb = emb @ d['Dense_0']['kernel'] + d['Dense_0']['bias']
  h = np.concatenate([z_t, emb], 1)
  h = np.tanh(h @ d['Dense_1']['kernel'] + d['Dense_1']['bias'])
  out = h @ d['Dense_2']['kernel'] + d['Dense_2']['bias']
  snr = ab / (1 - ab)
  weight = np.where(t == 0, 1.0, snr[np.maximum(t - 1, 0)] - snr[t])
  diffusion = np.mean(weight * np.mean((mu - out) ** 2, 1))
  logits = out @ p['decoder']['kernel'] + p['decoder']['bias']
  logits -= logits.max(1, keepdims=True)
  log_softmax = logits - np.log(np.exp(logits).sum(1, keepdims=True))
  nll = np.mean(-np.sum(log_softmax * x, 1))
  epoch = step // per_epoch
  lamda = max((1 - epoch / c.anneal_epochs) * c.lamda, c.lamda_cap)
  anneal = min(c.kl_cap, step / c.kl_anneal_steps)
  return lamda * diffusion + nll + anneal * np.mean(kl)


def test_loss_matches_numpy_float64():
  config = _config(
    dropout=0.0, mlp_dropout=0.0, reparam=False, sampler='uniform'
  ).model
  model = ldiffrec.LDiffRec(config, 20)
  assert [len(g) for g in model.clusters] == [10, 10]  # no embeddings: blocks
  rng = np.random.default_rng(2)
  x = (rng.uniform(size=(6, 20)) < 0.3).astype(np.float32)
  batch = {
    'x': x,
    'weights': np.ones(6, np.float32),
    'steps_per_epoch': np.full(6, 3, np.int32),
  }
  params = model.init(jax.random.key(0), batch)
  key = jax.random.key(5)
  loss, aux = model.loss(params, batch, key, 7, model.init_extra())
  _, _, k_t, k_noise = jax.random.split(key, 4)
  t = np.asarray(jax.random.randint(k_t, (6,), 0, config.steps))
  noise = np.asarray(jax.random.normal(k_noise, (6, config.latent)), np.float64)
  want = _np_loss(params, x.astype(np.float64), t, noise, model, 7, 3)
  np.testing.assert_allclose(loss, want, rtol=1e-4)
  assert int(aux['extra'].counts.sum()) == 6
  # Ranking: the same scores for a user in any batch and order.
  batch = {'x': x, 'users': np.arange(6, dtype=np.int32)}
  rev = {'x': x[::-1], 'users': batch['users'][::-1]}
  score = jax.jit(model.score)
  np.testing.assert_allclose(
    score(params, batch), np.asarray(score(params, rev))[::-1], rtol=1e-6
  )


def test_dropped_target_quirk_changes_the_reconstruction_target():
  x = (np.random.default_rng(3).uniform(size=(8, 20)) < 0.3).astype(np.float32)
  batch = {
    'x': x,
    'weights': np.ones(8, np.float32),
    'steps_per_epoch': np.full(8, 3, np.int32),
  }
  losses = []
  for quirk in (False, True):
    model = ldiffrec.LDiffRec(_config(dropped_target=quirk).model, 20)
    params = model.init(jax.random.key(0), batch)
    _, aux = model.loss(params, batch, jax.random.key(1), 0, model.init_extra())
    losses.append(float(aux['nll']))
  # The same draws; the dropped-out target is x / 0.9 where kept, 0 else.
  assert losses[0] != pytest.approx(losses[1], rel=1e-3)
  assert model.QUIRKS == ('dropped_target',)


def test_learning_rate_groups():
  config = optim.default_config()
  config.update(name='adamw', lr=1e-3)
  config.lr_groups = {'denoiser': 5e-4}
  params = {'denoiser': {'w': jnp.ones(3)}, 'decoder': {'w': jnp.ones(2)}}
  tx = optim.make(config, 10)
  grads = jax.tree.map(jnp.ones_like, params)
  updates, _ = tx.update(grads, tx.init(params), params)
  # Adam's first step moves every weight by its learning rate.
  np.testing.assert_allclose(updates['denoiser']['w'], -5e-4, rtol=1e-4)
  np.testing.assert_allclose(updates['decoder']['w'], -1e-3, rtol=1e-4)
  config.lr_groups = {'encoder': 5e-4}
  with pytest.raises(KeyError, match="optim.lr_groups names \\['encoder'\\]"):
    optim.make(config, 10).init(params)
  assert isinstance(tx, optax.GradientTransformation)


def test_item_embedding_side_file_checks(tmp_path):
  with pytest.raises(registry.DataError, match='item_emb.npy.gz'):
    registry.get_extra('diffrec-ml-1m-clean', 'item_emb.npy.gz', tmp_path)
  with pytest.raises(KeyError, match="no side file 'emb.npy'"):
    registry.get_extra('diffrec-ml-1m-clean', 'emb.npy')

  def write(arr):
    buf = io.BytesIO()
    np.save(buf, arr)
    path = tmp_path / 'm.npy.gz'
    path.write_bytes(gzip.compress(buf.getvalue()))
    return path

  np.testing.assert_array_equal(
    readers.read_npy_matrix(write(np.eye(3))), np.eye(3, dtype=np.float32)
  )
  with pytest.raises(registry.DataError, match='expected floats'):
    readers.read_npy_matrix(write(np.eye(3, dtype=int)))
  bad = np.eye(3)
  bad[1, 2] = np.nan
  with pytest.raises(registry.DataError, match='row 1 is not finite'):
    readers.read_npy_matrix(write(bad))
  with pytest.raises(registry.DataError, match='2-d'):
    readers.read_npy_matrix(write(np.ones(3)))
