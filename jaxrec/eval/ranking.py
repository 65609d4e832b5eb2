"""Full ranking over all items, jitted and chunked over users.

`rank` scores every item for a fixed-size chunk of users at a time, removes
the excluded items, takes the top K with `jax.lax.top_k` and marks which of
them are in the ground truth, so users x items is never materialised at once.
One jitted step serves the whole call: the chunk size and the widths of the
padded exclusion and ground-truth index arrays are fixed per call (the last
chunk is padded by repeating a user, its rows dropped), so nothing recompiles
per chunk.

Ties in score go to the lower item id (`top_k_lowest_id`; `lax.top_k` alone
does not promise an order among equal scores). A slot with no candidate left
(a user who excluded nearly every item, or a model score of -inf) holds item
-1 and is never a hit. A NaN score is an error naming the user.

On CPU, XLA's TopK runs on one thread, so chunks are dispatched from a small
thread pool (one worker per core): top-K of one chunk overlaps the matmul of
the next. On accelerators one thread suffices (dispatch is asynchronous).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import os
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np

from jaxrec.data import types


class Scorer(Protocol):
  """What ranking needs of a model.

  Attributes:
    params: pytree read by `score`; put on the device once per `rank` call.
  """

  params: Any

  def make_batch(self, history: types.Part, users: np.ndarray) -> Any:
    """Host-side inputs of `score` for `users` (int64[B]) given `history`."""

  def score(self, params: Any, batch: Any) -> jax.Array:
    """Pure, jittable: float32[B, n_items] scores."""


@dataclasses.dataclass(frozen=True)
class RankResult:
  """Top-K lists of the evaluated users.

  Attributes:
    users: int64[U'] evaluated users (non-empty ground truth), ascending.
    topk: int32[U', K] ranked item ids; -1 where no candidate was left.
    hits: bool[U', K] whether each ranked item is in the ground truth.
    n_gt: int64[U'] ground-truth sizes.
  """

  users: np.ndarray
  topk: np.ndarray
  hits: np.ndarray
  n_gt: np.ndarray


def padded_rows(
  part: types.Part, users: np.ndarray, width: int, pad: int
) -> np.ndarray:
  """int32[len(users), width]: each user's items, right-padded with `pad`."""
  lengths = part.lengths[users]
  if len(users) and lengths.max(initial=0) > width:
    raise ValueError(f'a row has {lengths.max()} items, wider than {width}')
  out = np.full((len(users), width), pad, np.int32)
  row = np.repeat(np.arange(len(users)), lengths)
  col = np.arange(lengths.sum()) - np.repeat(
    np.cumsum(lengths) - lengths, lengths
  )
  src = np.repeat(part.indptr[users], lengths) + col
  out[row, col] = part.items[src]
  return out


def _round_up(n: int, multiple: int = 8) -> int:
  return max(multiple, -(-n // multiple) * multiple)


def top_k_lowest_id(
  scores: jax.Array, k: int, repick: bool = False
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """`lax.top_k` with ties broken towards the lower item id.

  `lax.top_k` alone leaves the order of equal scores unspecified (on CPU it
  is not the lower id). Asking it for k + 1 items tells, at no extra cost,
  whether the k-th score is tied with an item left outside (`boundary_tie`);
  the caller then recomputes with `repick=True`, which picks the set again by
  a second top_k over a key that puts the tied items in id order (rare: only
  TopPop-like scores). The k results are finally sorted by (-score, id),
  which is cheap on [B, k]. (A `lax.cond` between the two paths costs a
  third of the step on CPU, hence the flag.)

  Args:
    scores: float32[B, I], I < 2**24 (ids are exact in float32).
    k: list length, <= I.
    repick: pick the set with the exact tie rule (slower).

  Returns:
    (values float32[B, k], items int32[B, k], boundary_tie bool[]); the
    result is exact when `repick` or when not `boundary_tie`.
  """
  n_items = scores.shape[1]
  extra = min(k + 1, n_items)
  values, items = jax.lax.top_k(scores, extra)
  # Keeps XLA from folding later uses of `values` into the sort that top_k
  # lowers to, which would turn the fast TopK kernel into a full sort.
  values, items = jax.lax.optimization_barrier((values, items))
  boundary_tie = jnp.zeros((), bool)
  if extra > k:
    boundary_tie = jnp.any(values[:, k] == values[:, k - 1])
  items = items[:, :k]
  if repick:
    kth = values[:, k - 1 : k]
    ids = jnp.arange(n_items, dtype=jnp.float32)
    tied = jnp.where(scores == kth, -ids, -jnp.inf)
    items = jax.lax.top_k(jnp.where(scores > kth, jnp.inf, tied), k)[1]
  values = jnp.take_along_axis(scores, items, axis=1)
  neg, items = jax.lax.sort((-values, items), dimension=1, num_keys=2)
  return -neg, items, boundary_tie


@functools.partial(
  jax.jit, static_argnames=('score_fn', 'k', 'n_items', 'repick')
)
def _rank_step(
  params, batch, exclude_idx, truth_idx, *, score_fn, k, n_items, repick
):
  """[B] users -> (topk int32[B, k], hits bool[B, k], nan bool[B], tie)."""
  scores = score_fn(params, batch).astype(jnp.float32)
  rows = jnp.arange(scores.shape[0])[:, None]
  # max propagates NaN; nearly free next to top_k, unlike isnan().any().
  nan = jnp.isnan(jnp.max(scores, axis=1))
  if exclude_idx is not None:
    # The pad index n_items is out of bounds and dropped.
    scores = scores.at[rows, exclude_idx].set(-jnp.inf, mode='drop')
  values, items, tie = top_k_lowest_id(scores, k, repick)
  has_item = values > -jnp.inf
  if k * truth_idx.shape[1] <= n_items:
    # Few ground-truth items (leave-one-out): compare [B, k, G].
    hits = (items[:, :, None] == truth_idx[:, None, :]).any(axis=2)
  else:
    truth = jnp.zeros(scores.shape, bool)
    truth = truth.at[rows, truth_idx].set(True, mode='drop')
    hits = jnp.take_along_axis(truth, items, axis=1)
  hits &= has_item
  return jnp.where(has_item, items, -1), hits, nan, tie & ~repick


def _default_workers() -> int:
  if jax.default_backend() != 'cpu':
    return 1
  return max(1, min(4, len(os.sched_getaffinity(0))))


def rank(
  scorer: Scorer,
  history: types.Part,
  truth: types.Part,
  exclude: types.Part | None,
  n_items: int,
  k: int,
  chunk_size: int = 512,
  users: np.ndarray | None = None,
  workers: int | None = None,
) -> RankResult:
  """Ranks all items for every user with a non-empty `truth`.

  Args:
    scorer: the model (see `Scorer`).
    history: what the model reads as each user's input.
    truth: the ground-truth part; users with no event in it are skipped.
    exclude: items removed from each user's ranking, or None.
    n_items: I, the number of items ranked.
    k: list length, <= I.
    chunk_size: users per jitted step.
    users: restrict to these users (still skipping empty ground truth).
    workers: chunks in flight at once; default one per CPU core on CPU.

  Returns:
    A `RankResult` over the evaluated users in ascending id order.
  """
  if not 1 <= k <= n_items:
    raise ValueError(f'k={k} must be in [1, n_items={n_items}]')
  if n_items >= 2**24:
    raise ValueError(f'n_items={n_items} >= 2**24: ids inexact in float32')
  evaluated = np.flatnonzero(truth.lengths > 0)
  if users is not None:
    evaluated = np.intersect1d(evaluated, np.asarray(users, np.int64))
  n = len(evaluated)
  if n == 0:
    empty = np.zeros((0, k))
    return RankResult(
      evaluated,
      empty.astype(np.int32),
      empty.astype(bool),
      np.zeros(0, np.int64),
    )
  chunk = min(chunk_size, n)
  n_chunks = -(-n // chunk)
  padded = np.concatenate(
    [evaluated, np.full(n_chunks * chunk - n, evaluated[-1])]
  )
  g_width = _round_up(int(truth.lengths[evaluated].max()))
  e_width = 8
  if exclude is not None:
    e_width = _round_up(int(exclude.lengths[evaluated].max(initial=0)))
  params = jax.device_put(scorer.params)
  step = functools.partial(
    _rank_step, score_fn=scorer.score, k=k, n_items=n_items
  )

  def run_chunk(c):
    ids = padded[c * chunk : (c + 1) * chunk]
    batch = scorer.make_batch(history, ids)
    excl = (
      None if exclude is None else padded_rows(exclude, ids, e_width, n_items)
    )
    gt = padded_rows(truth, ids, g_width, n_items)
    out = jax.device_get(step(params, batch, excl, gt, repick=False))
    if out[3]:  # a tie at the k-th place: pick the set again, by id
      out = jax.device_get(step(params, batch, excl, gt, repick=True))
    return out[:3]

  workers = workers or _default_workers()
  if workers == 1 or n_chunks == 1:
    outs = [run_chunk(c) for c in range(n_chunks)]
  else:
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
      outs = list(pool.map(run_chunk, range(n_chunks)))
  topk = np.concatenate([o[0] for o in outs])[:n]
  hits = np.concatenate([o[1] for o in outs])[:n]
  nan = np.concatenate([o[2] for o in outs])[:n]
  if nan.any():
    bad = evaluated[np.flatnonzero(nan)]
    raise FloatingPointError(
      f'the model scored NaN for {len(bad)} users, e.g. user {bad[0]}'
    )
  return RankResult(
    evaluated, topk.astype(np.int32), hits, truth.lengths[evaluated]
  )
