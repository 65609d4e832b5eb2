"""Sequence batching: padding, epoch order, packing, static budgets."""

import numpy as np
import pytest

from jaxrec.data import batching, types


def _part(seqs):
  users = np.concatenate([np.full(len(s), u) for u, s in enumerate(seqs)])
  items = np.concatenate([np.asarray(s, int) for s in seqs])
  return types.Part.from_events(users, items, len(seqs))


def test_last_items_left_pads_and_shifts():
  part = _part([[5, 6, 7], [1], [1, 2, 3, 4, 5], []])
  got = batching.last_items(part, np.array([0, 1, 2, 3, 2]), 3)
  want = [[6, 7, 8], [0, 0, 2], [4, 5, 6], [0, 0, 0], [4, 5, 6]]
  assert got.tolist() == want and got.dtype == np.int32


def test_last_items_matches_a_loop():
  rng = np.random.default_rng(0)
  seqs = [rng.integers(0, 50, rng.integers(0, 12)) for _ in range(40)]
  part = _part(seqs)
  users = rng.permutation(40)
  got = batching.last_items(part, users, 7)
  for row, u in zip(got, users, strict=True):
    tail = list(seqs[u][-7:] + 1) if len(seqs[u]) else []
    assert row.tolist() == [0] * (7 - len(tail)) + tail


def test_next_item_examples_mask_targets_of_padding():
  part = _part([[5, 6, 7], [1], [1, 2, 3, 4, 5]])
  ex = batching.NextItemExamples.from_part(part, 3)
  assert ex.users.tolist() == [0, 2]  # user 1 has one event: no example
  assert ex.inputs.tolist() == [[0, 6, 7], [3, 4, 5]]
  assert ex.targets.tolist() == [[0, 7, 8], [4, 5, 6]]
  assert ex.counts.tolist() == [2, 3]
  with pytest.raises(ValueError, match='two training events'):
    batching.NextItemExamples.from_part(_part([[1], [2]]), 3)


def test_epoch_covers_every_example_once_and_is_reproducible():
  n, b, seed = 23, 5, 3
  per = batching.steps_per_epoch(n, b)
  assert per == 5
  seen, weights = [], []
  for step in range(per, 2 * per):  # epoch 1
    idx, w = batching.batch_indices(n, b, seed, step)
    assert idx.shape == (b,) and w.shape == (b,)
    seen.extend(idx[w > 0])
    weights.append(w)
  assert sorted(seen) == list(range(n))
  assert np.concatenate(weights).sum() == n  # 2 padded rows at weight 0
  again = batching.batch_indices(n, b, seed, per + 2)
  np.testing.assert_array_equal(again[0], seen[10:15])
  other = batching.batch_indices(n, b, seed + 1, per)[0]
  assert not np.array_equal(other, seen[:5])


def test_cached_epoch_order_is_the_drawn_permutation_and_cannot_be_changed():
  n, seed, epoch = 1000, 7, 2
  order = batching.epoch_order(n, seed, epoch)
  np.testing.assert_array_equal(
    order, np.random.default_rng([seed, epoch]).permutation(n)
  )
  assert batching.epoch_order(n, seed, epoch) is order  # drawn once
  with pytest.raises(ValueError):
    order[0] = order[1]
  # A step's indices are the caller's own: changing them leaves the
  # cached order, and so every later step, as it was.
  idx, _ = batching.batch_indices(n, 100, seed, 2 * 10 + 3)  # epoch 2
  np.testing.assert_array_equal(idx, order[300:400])
  idx[:] = 0
  again, _ = batching.batch_indices(n, 100, seed, 2 * 10 + 3)
  np.testing.assert_array_equal(again, order[300:400])


def _pack_reference(lengths, width):
  """Best-fit decreasing as first written: lengths from `width` down, each
  length's segments in index order, into the open row with the least room
  that fits, as many as fit; else a new row."""
  row = np.full(len(lengths), -1, np.int64)
  offset = np.full(len(lengths), -1, np.int64)
  room = [[] for _ in range(width + 1)]
  used = []
  for s in range(width, 0, -1):
    items = list(np.flatnonzero(np.asarray(lengths) == s))
    while items:
      cap = next((c for c in range(s, width + 1) if room[c]), None)
      if cap is None:
        used.append(0)
        r, cap = len(used) - 1, width
      else:
        r = room[cap].pop()
      q = min(cap // s, len(items))
      take, items = items[:q], items[q:]
      row[take] = r
      offset[take] = used[r] + s * np.arange(q)
      used[r] += q * s
      room[cap - q * s].append(r)
  return row, offset, len(used)


def test_pack_segments_matches_the_reference_layout():
  # The layout decides which positions share a row (and so the dropout
  # draws), so the fast version must place every segment where the
  # reference does, not merely pack as tightly.
  rng = np.random.default_rng(5)
  for _ in range(500):
    width = int(rng.integers(1, 60))
    n = int(rng.integers(0, 400))
    p = rng.uniform(0.05, 0.9)
    lengths = np.minimum(rng.geometric(p, n), width) * (rng.random(n) > 0.1)
    row, offset, used = batching.pack_segments(lengths, width)
    want = _pack_reference(lengths, width)
    assert used == want[2]
    np.testing.assert_array_equal(row, want[0])
    np.testing.assert_array_equal(offset, want[1])
  with pytest.raises(ValueError, match='0..4'):
    batching.pack_segments(np.array([5]), 4)


def test_pack_is_exact_and_max_group_sum_bounds_every_batch():
  rng = np.random.default_rng(1)
  counts = rng.integers(0, 9, 37)
  plan = batching.BatchPlan(batch_size=8, seed=2, epochs=3, groups=2)
  budget = batching.max_group_sum(counts, plan)
  brute = 0
  for step in range(3 * batching.steps_per_epoch(37, 8)):
    idx, w = batching.batch_indices(37, 8, 2, step)
    c = counts[idx] * (w > 0)
    brute = max(brute, c[:4].sum(), c[4:].sum())
  assert budget == brute
  mask = rng.random((8, 6)) < 0.4
  positions, filled = batching.pack(mask, 2, 20)
  for g in range(2):
    flat = mask[4 * g : 4 * (g + 1)].reshape(-1)
    assert positions[g][filled[g]].tolist() == np.flatnonzero(flat).tolist()
  with pytest.raises(ValueError, match='budget'):
    batching.pack(np.ones((4, 6), bool), 2, 5)


def test_host_slice():
  assert batching.host_slice(8, 1, 2) == slice(4, 8)
  with pytest.raises(ValueError, match='not divisible'):
    batching.host_slice(9, 0, 2)
