"""Full ranking over all items, jitted and chunked over users.

`rank` scores every item for a fixed-size chunk of users at a time, removes
the excluded items, takes the top K with `jax.lax.top_k` and marks which of
them are in the ground truth, so users x items is never materialised at once
(one chunk is float32[chunk_size, I]).

One jitted step serves the whole call: the chunk size and the widths E and G
of the padded exclusion and ground-truth index arrays are fixed per call
(rounded up to a multiple of 8; the last chunk is padded by repeating a user
and its rows dropped), so nothing recompiles per chunk. The compiled step is
cached per scorer object, held weakly, so repeated validations of the same
scorer do not recompile and a dropped scorer (and its params) is freed.
`scorer.score` must therefore be a pure function of `(params, batch)`.

Ties in score go to the lower item id (`top_k_lowest_id`). On CPU, XLA's TopK
kernel happens to break ties that way, but `lax.top_k` promises no order
among equal scores (GPU/TPU sort-based top-k does not keep it), so the rule
is enforced, not assumed. -0.0 and 0.0 count as equal.

A slot with no candidate left (a user who excluded all but a few items, or
items the model scored -inf) holds item -1 and is never a hit. A NaN score
on a non-excluded item is an error naming the user.

Speed on CPU (2 cores, 22,363 users x 12,101 items, d=128, k=20): XLA's
TopK kernel runs on one thread at about 1.6 ns per score, as long as the
scoring matmul itself; jaxrec's native kernel (`jaxrec.native.top_k`, exact
in one pass, ties by id) takes about 0.5 ns per score from L3/DRAM, and the
step is then bound by writing and reading the [B, I] scores. Chunks are
dispatched from a small thread pool (one worker more than there are cores)
so that the top-k of one chunk runs beside the matmul of the next; on
accelerators one thread suffices (async dispatch). The first call of a step
runs its first chunk alone (one trace, one compile); later calls with the
same shapes (every validation after the first) start all chunks at once.
Tried and no faster:
`lax.approx_max_k` (the same TopK on CPU), row-split and two-stage block
top-k, scoring in sub-blocks of 16-64 users so scores stay in L2, and
item-blocked scoring merged into a running top-k (tools/bench.py).

Fused path. A scorer whose scores are inner products says so with
`user_vectors` and `item_vectors` (every jaxrec embedding model does). On CPU
with the native kernels, `rank` then packs the item vectors once per call and
each chunk runs `native.score_top_k`: scoring and top-k in one pass over
register tiles, so the [B, I] block is never written. On 2 cores this
reaches 0.7-0.9 of the XLA matmul floor against about 0.5 for matmul plus
top-k (tools/bench.py). Its scores are float32 FMA chains in index order, so
they can differ from the unfused path's in the last bit; lists agree except
where two scores agree to about 1e-7 relative. `fused=False` forces the
unfused path.

Trimmed batches. A scorer whose scores do not depend on how far a history
is left-padded (no position embeddings, padded keys masked) says so with
`input_lengths(history, users)`, and its `make_batch` takes a length. `rank`
then groups the users by the length their batch needs, rounded up to
`LENGTH_BUCKETS` (never past the longest), and ranks each group at its own
length, with more users per chunk where rows are short on the fused path
(about as many positions per chunk as full-length rows; unfused, chunks
keep `chunk_size` users so the [B, I] scores stay bounded). On Beauty
(median history 4, rows of 50) a DiffuRec validation reads 6x fewer
positions. Each length is traced once; results come back in user order as
before.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import os
import weakref
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np

from jaxrec import native
from jaxrec.data import types


class Scorer(Protocol):
  """What ranking needs of a model.

  Attributes:
    params: pytree read by `score`; put on the device once per `rank` call.
    phantom_items: optional (default 0): `score` returns this many extra
      columns after the n_items real ones, candidates that are never a hit
      (an official quirk: DiffuRec ranks its padding row); a phantom in
      the top K takes the slot and shows as item -1.
  """

  params: Any

  def make_batch(self, history: types.Part, users: np.ndarray) -> Any:
    """Host-side inputs of `score` for `users` (int64[B]) given `history`.

    B is fixed within a `rank` call (the chunk size; the last chunk is
    padded by repeating a user). Returns a pytree of numpy arrays.
    """

  def score(self, params: Any, batch: Any) -> jax.Array:
    """Pure, jittable: float32[B, n_items + phantom_items] scores."""

  # Optional, for trimmed batches (scores independent of left padding):
  #
  # def input_lengths(self, history, users) -> np.ndarray:  # int[B]
  # def make_batch(self, history, users, length) -> Any:  # rows of `length`
  #
  # Optional, for the fused path: score(params, batch) must equal
  # user_vectors(params, batch) @ item_vectors(params).T.
  #
  # def user_vectors(self, params, batch) -> jax.Array:  # float32[B, d]
  # def item_vectors(self, params) -> jax.Array:  # [n_items + phantoms, d]


@dataclasses.dataclass(frozen=True)
class RankResult:
  """Top-K lists of the evaluated users.

  Attributes:
    users: int64[U'] evaluated users (non-empty ground truth), ascending.
    topk: int32[U', K] ranked item ids; -1 where no candidate was left.
    hits: bool[U', K] whether each ranked item is in the ground truth.
    n_gt: int64[U'] number of distinct ground-truth items.
  """

  users: np.ndarray
  topk: np.ndarray
  hits: np.ndarray
  n_gt: np.ndarray


def padded_rows(
  part: types.Part, users: np.ndarray, width: int, pad: int
) -> np.ndarray:
  """Each user's items, right-padded with `pad`.

  Args:
    part: CSR part to read.
    users: int[B] rows to read.
    width: W, at least the longest of these rows.
    pad: fill value (in ranking, the out-of-range column index).

  Returns:
    int32[B, W].
  """
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


def distinct_lengths(part: types.Part, n_items: int) -> np.ndarray:
  """int64[U] number of distinct items per user (|GT| as a set)."""
  keys = np.unique(part.users * np.int64(n_items) + part.items)
  return np.bincount(keys // n_items, minlength=part.n_users).astype(np.int64)


def _round_up(n: int, multiple: int = 8) -> int:
  return max(multiple, -(-n // multiple) * multiple)


def top_k_lowest_id(
  scores: jax.Array, k: int, repick: bool = False
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Top k of each row, ties broken towards the lower item id.

  On CPU this is jaxrec's native kernel when it could be built (exact in
  one pass, `boundary_tie` always False); elsewhere `_xla_top_k_lowest_id`.
  Both give the same lists (tests/test_ranking.py).
  """
  xla = functools.partial(_xla_top_k_lowest_id, k=k, repick=repick)
  if not native.top_k_kernel():
    return xla(scores)

  def cpu(scores):
    values, items = native.top_k(scores, k)
    return values, items, jnp.zeros((), bool)

  return jax.lax.platform_dependent(scores, cpu=cpu, default=xla)


def _xla_top_k_lowest_id(
  scores: jax.Array, k: int, repick: bool = False
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """`lax.top_k` with ties broken towards the lower item id.

  Asking `lax.top_k` for k + 1 items tells, at no extra cost, whether the
  k-th score is tied with an item left outside (`boundary_tie`): only then
  can the chosen set depend on top_k's unspecified tie order, and the caller
  recomputes with `repick=True`, which picks the set again by a second top_k
  over a key that puts the tied items in id order (rare: TopPop-like scores,
  or -inf for excluded items when few candidates remain). The k results are
  finally sorted by (-score, id), which is cheap on [B, k]. (A `lax.cond`
  between the two paths costs a third of the step on CPU, hence the flag.)

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
  # may lower to, which would turn the fast TopK kernel into a full sort.
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
  # lax.sort compares floats with -0.0 == 0.0, then falls back to the id.
  neg, items = jax.lax.sort((-values, items), dimension=1, num_keys=2)
  return -neg, items, boundary_tie


def _rank_step(
  params, batch, exclude_idx, truth_idx, *, score_fn, k, n_items, width, repick
):
  """One chunk of users; jitted per scorer by `_compiled_step`.

  Args:
    params: the scorer's params (on device).
    batch: the scorer's batch for B users.
    exclude_idx: int32[B, E] items to remove, padded with `width`; or None.
    truth_idx: int32[B, G] ground-truth items, padded with `width`.
    score_fn: `scorer.score`.
    k: list length.
    n_items: I, the real items.
    width: I plus the scorer's phantom items (columns of the scores).
    repick: exact tie rule at the k-th place (see `top_k_lowest_id`).

  Returns:
    (topk int32[B, k], hits bool[B, k], nan bool[B], boundary_tie bool[]).
  """
  scores = score_fn(params, batch).astype(jnp.float32)
  if scores.ndim != 2 or scores.shape[1] != width:
    raise ValueError(f'score returned {scores.shape}; expected [B, {width}]')
  rows = jnp.arange(scores.shape[0])[:, None]
  if exclude_idx is not None:
    # The pad index `width` is out of bounds and dropped.
    scores = scores.at[rows, exclude_idx].set(-jnp.inf, mode='drop')
  # max propagates NaN; nearly free next to top_k, unlike isnan().any().
  # Taken after the scatter so the scatter updates the scores in place (a
  # read of the unscattered scores costs a 50 MB copy per 1024-user chunk).
  nan = jnp.isnan(jnp.max(scores, axis=1))
  values, items, tie = top_k_lowest_id(scores, k, repick)
  items, hits = _mark_hits(values, items, truth_idx, n_items, width)
  return items, hits, nan, tie & ~repick


def _mark_hits(values, items, truth_idx, n_items, width):
  """(items with -1 where no item, hits bool[B, k]) of a top-k list."""
  has_item = (values > -jnp.inf) & (items < n_items)  # phantoms: no item
  k = items.shape[1]
  if k * truth_idx.shape[1] <= width:
    # Few ground-truth items (leave-one-out): compare [B, k, G].
    hits = (items[:, :, None] == truth_idx[:, None, :]).any(axis=2)
  else:
    rows = jnp.arange(items.shape[0])[:, None]
    truth = jnp.zeros((items.shape[0], width), bool)
    truth = truth.at[rows, truth_idx].set(True, mode='drop')
    hits = jnp.take_along_axis(
      truth, items, axis=1, mode='fill', fill_value=False
    )
  return jnp.where(has_item, items, -1), hits & has_item


def _fused_rank_step(
  params, batch, exclude_idx, truth_idx, packed, *, user_fn, k, n_items, width
):
  """`_rank_step` through `native.score_top_k` (see the module docstring).

  Args:
    packed: `native.pack_items` of the scorer's item vectors.
    user_fn: `scorer.user_vectors`.
    Others as `_rank_step`.
  """
  users = user_fn(params, batch).astype(jnp.float32)
  if users.ndim != 2 or users.shape[1] != packed.shape[1]:
    raise ValueError(
      f'user_vectors returned {users.shape}; expected [B, {packed.shape[1]}]'
    )
  if exclude_idx is None:
    exclude_idx = jnp.zeros((users.shape[0], 0), jnp.int32)
  values, items, nan = native.score_top_k(users, packed, exclude_idx, k, width)
  items, hits = _mark_hits(values, items, truth_idx, n_items, width)
  return items, hits, nan, jnp.zeros((), bool)


def _pack_step(params, *, item_fn, width):
  items = item_fn(params)
  if items.ndim != 2 or items.shape[0] != width:
    raise ValueError(
      f'item_vectors returned {items.shape}; expected [{width}, d]'
    )
  return native.pack_items(items)


# id(scorer) -> {(kind, k, n_items, width, repick): jitted step}; entries die
# with the scorer (weakref.finalize), and the steps reach the scorer weakly.
_STEPS: dict[int, dict[tuple, Any]] = {}


def _compiled_step(
  scorer: Scorer,
  k: int,
  n_items: int,
  width: int,
  repick: bool,
  kind: str = 'score',
):
  """A jitted step for this scorer, cached while it lives.

  kind: 'score' (`_rank_step`), 'fused' (`_fused_rank_step`) or 'pack'
  (`_pack_step`).
  """
  key = (kind, k, n_items, width, repick)
  try:
    ref = weakref.ref(scorer)
  except TypeError:  # no weak references: compile once per call instead
    ref = None
  cache = {} if ref is None else _STEPS.get(id(scorer))
  if cache is None:
    cache = _STEPS[id(scorer)] = {}
    weakref.finalize(scorer, _STEPS.pop, id(scorer), None)
  if key not in cache:
    method = {'score': 'score', 'fused': 'user_vectors', 'pack': 'item_vectors'}
    name = method[kind]
    if ref is None:
      fn = getattr(scorer, name)
    else:
      fn = lambda *args: getattr(ref(), name)(*args)
    if kind == 'score':
      step = functools.partial(
        _rank_step, score_fn=fn, repick=repick, k=k, n_items=n_items
      )
    elif kind == 'fused':
      step = functools.partial(
        _fused_rank_step, user_fn=fn, k=k, n_items=n_items
      )
    else:
      step = functools.partial(_pack_step, item_fn=fn)
    cache[key] = jax.jit(functools.partial(step, width=width))
  return cache[key]


def can_fuse(scorer: Scorer) -> bool:
  """Whether `rank` can take the fused path for `scorer` on this backend."""
  return (
    hasattr(scorer, 'user_vectors')
    and hasattr(scorer, 'item_vectors')
    and jax.default_backend() == 'cpu'
    and native.top_k_kernel()
  )


# Lengths a trimmed batch is rounded up to (about 1.4x apart, so a row is
# at most ~40% padding), besides the longest history ranked.
LENGTH_BUCKETS = (
  4,
  6,
  8,
  12,
  16,
  24,
  32,
  48,
  64,
  96,
  128,
  192,
  256,
  384,
) + tuple(
  int(b * 2**e) for e in range(9, 14) for b in (1, 1.5)
)  # ... 512, 768, ..., 8192, 12288 (iALS's item lists)
# On the fused path (no [B, I] score block), a group of short rows takes up
# to this many times `chunk_size` users.
MAX_CHUNK_SCALE = 8


def length_groups(
  lengths: np.ndarray, chunk: int, max_scale: int = MAX_CHUNK_SCALE
) -> list[tuple[int, np.ndarray, int]]:
  """Groups users by the trimmed length of their batch.

  Args:
    lengths: int[U] items each user's batch needs.
    chunk: users per chunk at the longest length.
    max_scale: at most this many times `chunk` users in a chunk (1 where
      a chunk's [B, I] scores are written: their memory stays bounded).

  Returns:
    [(length, indices into `lengths`, users per chunk)], shortest first. A
    group's chunk holds about `chunk * longest / length` users (at most
    `max_scale` x chunk), evened out over the group's chunks and rounded
    up to a multiple of 8, so that chunks carry similar positions.
  """
  top = max(int(lengths.max(initial=1)), 1)
  sizes = np.array([b for b in LENGTH_BUCKETS if b < top] + [top])
  bucket = sizes[np.searchsorted(sizes, lengths)]
  groups = []
  for b in np.unique(bucket):
    idx = np.flatnonzero(bucket == b)
    target = chunk * min(max_scale, max(1, top // int(b)))
    n_chunks = -(-len(idx) // target)
    size = min(_round_up(-(-len(idx) // n_chunks)), target)
    groups.append((int(b), idx, max(size, 1)))
  return groups


def chunk_plan(
  scorer: Scorer,
  history: types.Part,
  users: np.ndarray,
  chunk: int,
  fused: bool,
) -> tuple[list[tuple[int | None, np.ndarray, int]], np.ndarray]:
  """The chunks `rank` runs for `users` (non-empty, int64[U]).

  Returns:
    ([(row length, or None for the scorer's own; user ids padded to the
    chunk's size by repeating the last; how many are real)], int[U]: the
    indices into `users` that the chunks hold, in order).
  """
  lengths_fn = getattr(scorer, 'input_lengths', None)
  if lengths_fn is None:
    groups = [(None, np.arange(len(users)), chunk)]
  else:
    need = np.asarray(lengths_fn(history, users))
    groups = length_groups(need, chunk, MAX_CHUNK_SCALE if fused else 1)
  chunks, order = [], []
  for length, idx, size in groups:
    order.append(idx)
    for start in range(0, len(idx), size):
      ids = users[idx[start : start + size]]
      real = len(ids)
      ids = np.concatenate([ids, np.full(size - real, ids[-1])])
      chunks.append((length, ids, real))
  return chunks, np.concatenate(order)


# Users per step: on a 2-core CPU a [512, I] block of scores is the fastest
# (tools/bench.py); accelerators want larger chunks.
DEFAULT_CHUNK = 512


def _default_workers(fused: bool = False) -> int:
  """One thread on accelerators; on CPU one more than the cores, up to 4.

  Fused chunks are single-threaded kernels with nothing to overlap: one
  worker per core.
  """
  if jax.default_backend() != 'cpu':
    return 1
  cores = len(os.sched_getaffinity(0))
  return cores if fused else min(4, cores + 1)


def rank(
  scorer: Scorer,
  history: types.Part,
  truth: types.Part,
  exclude: types.Part | None,
  n_items: int,
  k: int,
  chunk_size: int = DEFAULT_CHUNK,
  users: np.ndarray | None = None,
  workers: int | None = None,
  fused: bool = True,
) -> RankResult:
  """Ranks all items for every user with a non-empty `truth`.

  Args:
    scorer: the model (see `Scorer`).
    history: what the model reads as each user's input (`make_batch`).
    truth: the ground-truth part; users with no event in it are skipped.
    exclude: items removed from each user's ranking, or None.
    n_items: I, the number of items ranked.
    k: list length, 1 <= k <= I.
    chunk_size: users per jitted step (B); more for short trimmed rows
      (see `length_groups`).
    users: restrict to these users (still skipping empty ground truth).
    workers: chunks in flight at once (default: `_default_workers`).
    fused: take the fused path where `can_fuse(scorer)`.

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
  n_gt = distinct_lengths(truth, n_items)[evaluated]
  if n == 0:
    empty = np.zeros((0, k))
    return RankResult(
      evaluated, empty.astype(np.int32), empty.astype(bool), n_gt
    )
  chunk = min(chunk_size, n)
  fused = fused and k <= native.FUSED_MAX_K and can_fuse(scorer)
  chunks, order = chunk_plan(scorer, history, evaluated, chunk, fused)
  g_width = _round_up(int(truth.lengths[evaluated].max()))
  e_width = 8
  if exclude is not None:
    e_width = _round_up(int(exclude.lengths[evaluated].max(initial=0)))
  params = jax.device_put(scorer.params)
  width = n_items + int(getattr(scorer, 'phantom_items', 0))
  if fused:
    packed = _compiled_step(scorer, k, n_items, width, False, 'pack')(params)
    fast = functools.partial(
      _compiled_step(scorer, k, n_items, width, False, 'fused'), packed=packed
    )
  else:
    fast = _compiled_step(scorer, k, n_items, width, repick=False)

  def make_batch(c):
    length, ids, _ = chunks[c]
    if length is None:
      return scorer.make_batch(history, ids)
    return scorer.make_batch(history, ids, length)

  def run_chunk(c, batch=None):
    _, ids, real = chunks[c]
    if batch is None:
      batch = make_batch(c)
    excl = (
      None if exclude is None else padded_rows(exclude, ids, e_width, width)
    )
    gt = padded_rows(truth, ids, g_width, width)
    out = jax.device_get(fast(params, batch, excl, gt))
    if out[3]:  # a tie at the k-th place: pick the set again, by id
      exact = _compiled_step(scorer, k, n_items, width, repick=True)
      out = jax.device_get(exact(params, batch, excl, gt))
    return [o[:real] for o in out[:3]]

  # The first chunk of each batch shape, in a step's first call with it,
  # runs alone, so that the step is traced (and compiled) exactly once per
  # shape; the rest (and, once warm, every chunk) run from the pool (a lone
  # chunk would leave cores idle).
  steps = _STEPS.get(id(scorer), {})
  workers = workers or _default_workers(fused)
  outs = [None] * len(chunks)
  seen = set()
  for c, (length, ids, _) in enumerate(chunks):
    if (length, len(ids)) in seen:
      continue
    seen.add((length, len(ids)))
    first = make_batch(c)
    warm_key = (
      'warm',
      fused,
      k,
      n_items,
      width,
      exclude is None,
      e_width,
      g_width,
      str(jax.tree.structure(first)),
      str(jax.tree.leaves(jax.tree.map(np.shape, first))),
      str(jax.tree.map(np.shape, scorer.params)),
    )
    if warm_key not in steps or workers == 1:
      outs[c] = run_chunk(c, first)
      steps[warm_key] = True
  todo = [c for c in range(len(chunks)) if outs[c] is None]
  if workers == 1 or len(todo) <= 1:
    for c in todo:
      outs[c] = run_chunk(c)
  else:
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
      for c, out in zip(todo, pool.map(run_chunk, todo), strict=True):
        outs[c] = out
  # Back from group order to ascending user order.
  inverse = np.empty_like(order)
  inverse[order] = np.arange(n)
  topk = np.concatenate([o[0] for o in outs])[inverse]
  hits = np.concatenate([o[1] for o in outs])[inverse]
  nan = np.concatenate([o[2] for o in outs])[inverse]
  if nan.any():
    bad = evaluated[np.flatnonzero(nan)]
    raise FloatingPointError(
      f'the model scored NaN for {len(bad)} users, e.g. user {bad[0]}'
    )
  return RankResult(evaluated, topk.astype(np.int32), hits, n_gt)
