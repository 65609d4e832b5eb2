"""TopPop: every user gets the items ranked by train popularity.

The evaluator's sanity check: any personalised model should beat it.
"""

import jax.numpy as jnp
import ml_collections as mlc
import numpy as np
import scipy.sparse as sp

from jaxrec.models.linear import base


def fit(train: sp.csr_matrix, config: mlc.ConfigDict) -> dict:
  del config
  pop = np.asarray(train.sum(axis=0), np.float32).ravel()
  return {'popularity': pop}


def score(state, batch) -> jnp.ndarray:
  pop = state['popularity']
  return jnp.broadcast_to(pop, (batch['users'].shape[0], pop.shape[0]))


MODEL = base.LinearModel('toppop', fit, score=score)
