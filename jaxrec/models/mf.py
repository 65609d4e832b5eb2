"""MF-BPR: matrix factorisation trained on sampled (user, pos, neg) triples.

Rendle et al., UAI 2009, as the LightGCN code base trains it (the one whose
MF and LightGCN checkpoints DDRM starts from, Polaris-JZ/DDRM
`DDRM_*/utils.py`, `dataloader.py`): an epoch is n_train triples; a triple's
user is drawn uniformly from all users (`pairs='user'`, the official
sampler) or is one training interaction, each once per epoch
(`pairs='interaction'`); the positive is uniform over the user's training
items and the negative uniform over the items it has not interacted with
(exact rejection sampling). Loss: mean softplus(s_neg - s_pos) + decay *
(|u|^2 + |p|^2 + |n|^2) / (2 B) on the embeddings of the batch. Scores are
u . i over all items.

The triples are drawn on the host from the step's own generator
(`host_rng`, seeded by (seed, step)), so a resumed run draws what the
uninterrupted one would have.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np

from jaxrec.data import batching, types
from jaxrec.models import dot

PAIRS = ('user', 'interaction')


@dataclasses.dataclass(frozen=True)
class TrainPairs:
  """What BPR samples from: the train part and its sorted (user, item) keys.

  Attributes:
    part: the train part (CSR over users).
    keys: int64[nnz] sorted user * n_items + item, for membership tests.
    n_items: items.
    pairs: 'user' or 'interaction' (see the module docstring).
  """

  part: types.Part
  keys: np.ndarray
  n_items: int
  pairs: str

  @classmethod
  def build(cls, part: types.Part, n_items: int, pairs: str) -> TrainPairs:
    if pairs not in PAIRS:
      raise ValueError(f'model.pairs={pairs!r}; expected one of {PAIRS}')
    keys = np.sort(part.users * n_items + part.items.astype(np.int64))
    return cls(part, keys, n_items, pairs)

  def __len__(self) -> int:
    return self.part.nnz

  def contains(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """bool[...]: whether each (user, item) is a training interaction."""
    key = users.astype(np.int64) * self.n_items + items
    at = np.minimum(np.searchsorted(self.keys, key), len(self.keys) - 1)
    return self.keys[at] == key

  def negatives(self, users: np.ndarray, rng: np.random.Generator):
    """int32[B]: one item per user it has not interacted with (uniform)."""
    out = rng.integers(self.n_items, size=len(users))
    todo = np.flatnonzero(self.contains(users, out))
    full = self.part.lengths[users[todo]] >= self.n_items
    if full.any():
      raise ValueError(
        f'user {int(users[todo[full][0]])} has interacted with every item;'
        ' BPR cannot draw a negative for it'
      )
    while len(todo):
      out[todo] = rng.integers(self.n_items, size=len(todo))
      todo = todo[self.contains(users[todo], out[todo])]
    return out.astype(np.int32)

  def triples(self, index: np.ndarray, rng: np.random.Generator):
    """(users, positives, negatives) int32[B] for the examples `index`."""
    part = self.part
    if self.pairs == 'interaction':
      users = part.users[index]
      pos = part.items[index]
    else:  # the official sampler: uniform users that have train items
      users = rng.integers(part.n_users, size=len(index))
      empty = part.lengths[users] == 0
      while empty.any():
        users[empty] = rng.integers(part.n_users, size=int(empty.sum()))
        empty = part.lengths[users] == 0
      offset = (rng.random(len(users)) * part.lengths[users]).astype(np.int64)
      pos = part.items[part.indptr[users] + offset]
    neg = self.negatives(users, rng)
    return users.astype(np.int32), pos.astype(np.int32), neg


class BprTriples:
  """Host side of models trained on BPR triples (MF, LightGCN, DDRM): an
  epoch of n_train triples drawn from the step's generator; needs
  `config.pairs` and `n_items`."""

  host_rng = True  # train_batch takes the step's numpy generator

  def train_size(self, split: types.Split) -> int:
    return split.train.nnz

  def train_data(self, split: types.Split, plan: batching.BatchPlan):
    del plan
    return TrainPairs.build(split.train, self.n_items, self.config.pairs)

  def train_batch(self, data: TrainPairs, index, weights, rng) -> dict:
    users, pos, neg = data.triples(np.asarray(index), rng)
    return {'users': users, 'pos': pos, 'neg': neg, 'weights': weights}


def bpr_terms(u, p, n):
  """Per-example softplus(s_neg - s_pos), and s_pos; [B, d] inputs."""
  s_pos = jnp.sum(u * p, axis=-1)
  s_neg = jnp.sum(u * n, axis=-1)
  return jax.nn.softplus(s_neg - s_pos), s_pos


def init_embeddings(rng, n_users: int, n_items: int, dim: int, std: float):
  k_u, k_i = jax.random.split(rng)
  return {
    'user_emb': std * jax.random.normal(k_u, (n_users, dim)),
    'item_emb': std * jax.random.normal(k_i, (n_items, dim)),
  }


@dataclasses.dataclass(frozen=True)
class MF(BprTriples, dot.DotScore):
  """The trainer's model surface for MF-BPR.

  Attributes:
    config: `config.model`: dim, init_std, decay, pairs.
    n_items: items.
    n_users: users of the split (set by `bind`).
  """

  config: mlc.ConfigDict
  n_items: int
  n_users: int = 0

  def bind(self, split: types.Split) -> MF:
    return dataclasses.replace(self, n_users=split.n_users)

  # Host side (BprTriples) --------------------------------------------------

  def make_batch(self, history: types.Part, users: np.ndarray) -> dict:
    del history
    return {'users': np.asarray(users, np.int32)}

  # Pure functions ----------------------------------------------------------

  def init(self, rng: jax.Array, batch: dict):
    del batch
    c = self.config
    return init_embeddings(rng, self.n_users, self.n_items, c.dim, c.init_std)

  def embeddings(self, params):
    """(users [U, d], items [I, d]) the scores use."""
    return params['user_emb'], params['item_emb']

  def loss(self, params, batch: dict, rng: jax.Array, step):
    del rng, step
    users, items = self.embeddings(params)
    u = users[batch['users']]
    p, n = items[batch['pos']], items[batch['neg']]
    per, _ = bpr_terms(u, p, n)
    # The L2 term reads the raw (layer-0) rows, as LightGCN's code does.
    u0 = params['user_emb'][batch['users']]
    p0 = params['item_emb'][batch['pos']]
    n0 = params['item_emb'][batch['neg']]
    sq = jnp.sum(u0**2 + p0**2 + n0**2, axis=-1) / 2
    w = batch['weights']
    count = jnp.sum(w)
    total = jnp.sum(w * per)
    reg = self.config.decay * jnp.sum(w * sq)
    aux = {'loss_sum': total, 'count': count}
    return (total + reg) / jnp.maximum(count, 1.0), aux

  def ranking_params(self, params) -> dict:
    """What ranking reads, computed once per ranking pass (`loop.
    ModelScorer`) rather than in every chunk of users: the final embeddings
    (LightGCN's are a whole-graph propagation)."""
    users, items = self.embeddings(params)
    return {'ranked_users': users, 'ranked_items': items}

  def _final(self, params):
    if 'ranked_users' in params:  # from `ranking_params`
      return params['ranked_users'], params['ranked_items']
    return self.embeddings(params)

  def user_vectors(self, params, batch: dict) -> jax.Array:
    return self._final(params)[0][batch['users']]

  def item_vectors(self, params) -> jax.Array:
    return self._final(params)[1]
