"""Inner-product scoring, split so that ranking can fuse it with top-k.

Every jaxrec embedding model scores items by the inner product of a query
vector with each item's vector. Saying so (`user_vectors`, `item_vectors`)
instead of returning the product lets `jaxrec.eval.ranking` run the fused
native score+top-k kernel on CPU, which never writes the [B, I] scores.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def ranked_rows(table: jax.Array, padding_item: int) -> jax.Array:
  """The rows `item_vectors` ranks from an embedding table whose row 0 is
  padding: items 1..n, then (the `padding_item` official quirk) the
  padding row as a phantom item that is never a hit."""
  if padding_item:
    return jnp.concatenate([table[1:], table[:1]])
  return table[1:]


class DotScore:
  """`score` from `user_vectors` and `item_vectors` (defined by the model).

  user_vectors(params, batch) -> float32[B, d]: one query per user.
  item_vectors(params) -> float32[n_items + phantom_items, d]: the ranked
    rows, real items first (id i + 1 at row i).
  """

  def score(self, params, batch: dict, rng: jax.Array | None = None):
    """float32[B, n_items + phantom_items] = queries @ item rows.T."""
    del rng
    return self.user_vectors(params, batch) @ self.item_vectors(params).T
