"""Preprocessing and splits on hand-made interactions."""

import numpy as np
import pytest

from jaxrec.data import preprocess, readers, splits, types


def _x(user, item, ts=None, rating=None):
  arr = lambda v: None if v is None else np.asarray(v)
  return types.Interactions(
    np.asarray(user), np.asarray(item), arr(rating), arr(ts), 'hand'
  )


def test_sort_is_stable_on_timestamp_ties():
  x = _x([1, 0, 1, 1], [10, 11, 12, 13], ts=[5, 9, 3, 5])
  got = preprocess.sort_chronological(x)
  assert got.user.tolist() == [0, 1, 1, 1]
  assert got.item.tolist() == [11, 12, 10, 13]  # 10 before 13: file order


def test_filter_dedupe_kcore_remap():
  x = _x([0, 0, 0, 1, 1, 2], [5, 5, 6, 5, 7, 5], rating=[4, 5, 2, 4, 4, 1])
  assert preprocess.filter_rating(x, 4).item.tolist() == [5, 5, 5, 7]
  assert preprocess.dedupe(x).rating.tolist() == [4, 2, 4, 4, 1]
  assert preprocess.dedupe(x, keep='last').rating.tolist() == [5, 2, 4, 4, 1]
  # 2-core: item 6, 7 have 1 event -> users 1 and 2 fall to 1 event ->
  # they go, then item 5 has 2 events (user 0 twice) and stays.
  core = preprocess.kcore(x, 2, 2)
  assert core.user.tolist() == [0, 0] and core.item.tolist() == [5, 5]
  remapped, uids, iids = preprocess.remap_ids(_x([7, 3, 7], [40, 10, 10]))
  assert remapped.user.tolist() == [1, 0, 1]
  assert remapped.item.tolist() == [1, 0, 0]
  assert uids.tolist() == [3, 7] and iids.tolist() == [10, 40]


def test_kcore_reaches_a_fixed_point():
  rng = np.random.default_rng(0)
  x = _x(rng.integers(0, 50, 400), rng.integers(0, 80, 400))
  core = preprocess.kcore(x, 5, 3)
  assert np.bincount(core.user)[np.unique(core.user)].min() >= 5
  assert np.bincount(core.item)[np.unique(core.item)].min() >= 3


def test_ratio_counts_follow_recbole():
  got = splits.ratio_counts(np.array([5, 10, 12, 25, 2]), (0.8, 0.1, 0.1))
  assert got.tolist() == [
    [3, 1, 1],
    [8, 1, 1],
    [10, 1, 1],
    [21, 2, 2],
    [1, 0, 1],
  ]
  got = splits.ratio_counts(np.array([10]), (0.7, 0.1, 0.2))
  assert got.tolist() == [[7, 1, 2]]


def test_per_user_ratio_is_chronological_and_disjoint():
  x = _x(
    [0] * 10 + [1] * 5,
    list(range(10)) + [3, 1, 4, 0, 2],
    ts=list(range(10, 0, -1)) + [1, 2, 3, 4, 5],
  )
  s = splits.per_user_ratio(x, 'hand', (0.8, 0.1, 0.1))
  # user 0's events in time order are items 9, 8, ..., 0.
  assert s.train.user_items(0).tolist() == [9, 8, 7, 6, 5, 4, 3, 2]
  assert s.valid.user_items(0).tolist() == [1]
  assert s.test.user_items(0).tolist() == [0]
  assert s.train.user_items(1).tolist() == [3, 1, 4]
  assert (s.exclude_valid, s.exclude_test, s.test_history) == (
    'train',
    'train+valid',
    'train',
  )
  with pytest.raises(readers.DataError, match='duplicate'):
    splits.per_user_ratio(_x([0, 0], [1, 1], ts=[1, 2]), 'dup')
  # One event: RecBole keeps it in train; the user is then not evaluated.
  one = splits.per_user_ratio(_x([0] * 5 + [1], [0, 1, 2, 3, 4, 0]), 'one')
  assert one.train.user_items(1).tolist() == [0]
  assert one.valid.lengths[1] == one.test.lengths[1] == 0


def test_leave_one_out():
  seqs = [np.array([4, 2, 7, 1]), np.array([0, 3, 3])]
  s = splits.leave_one_out(seqs, 'loo', n_items=8)
  assert s.train.user_items(0).tolist() == [4, 2]
  assert s.valid.items.tolist() == [7, 3] and s.test.items.tolist() == [1, 3]
  hist = s.history('test')
  assert hist.user_items(0).tolist() == [4, 2, 7]  # train then valid
  assert s.history('valid') is s.train
  with pytest.raises(readers.DataError, match='user 1 has 2 events'):
    splits.leave_one_out([np.array([1, 2, 3]), np.array([1, 2])], 'short')


def test_presplit_pairs_and_leak_check():
  train = np.array([[0, 0], [0, 1], [1, 2]])
  s = splits.from_presplit_pairs(
    train, np.array([[0, 2]]), np.array([[1, 0]]), 'p'
  )
  assert (s.n_users, s.n_items) == (2, 3)
  with pytest.raises(ValueError, match=r'both train and test, e\.g\. user 1'):
    splits.from_presplit_pairs(
      train, np.array([[0, 2]]), np.array([[1, 2]]), 'leak'
    )
  with pytest.raises(readers.DataError, match=r'valid row 0 \[0, 9\]'):
    splits.from_presplit_pairs(train, np.array([[0, 9]]), train[:1], 'range')


def test_global_temporal():
  x = _x(
    [0, 0, 0, 1, 1, 1, 2, 2, 2, 2],
    [0, 1, 2, 0, 3, 4, 1, 2, 5, 0],
    ts=[1, 2, 8, 3, 4, 9, 5, 6, 7, 10],
  )
  s = splits.global_temporal(x, 'g', valid_frac=0.2, test_frac=0.2)
  # Cut points: 60% quantile 6.4, 80% quantile 8.2. Valid: ts 7 (item 5)
  # and 8 (item 2); test: ts 9 (item 4) and 10 (item 0). Items 5 and 4
  # never occur in train, so those two events are dropped.
  assert s.train.nnz == 6
  assert [s.valid.user_items(u).tolist() for u in range(3)] == [[2], [], []]
  assert [s.test.user_items(u).tolist() for u in range(3)] == [[], [], [0]]


def test_content_hash_is_stable_and_sensitive():
  seqs = [np.array([4, 2, 7, 1]), np.array([0, 3, 3])]
  a = splits.leave_one_out(seqs, 'a', n_items=8)
  b = splits.leave_one_out([s.copy() for s in seqs], 'b', n_items=8)
  assert a.content_hash == b.content_hash
  c = splits.leave_one_out([seqs[0], np.array([0, 3, 2])], 'c', n_items=8)
  assert c.content_hash != a.content_hash


def test_concat_parts_keeps_per_user_order():
  a = types.Part.from_events(np.array([0, 1, 0]), np.array([5, 6, 7]), 3)
  b = types.Part.from_events(np.array([2, 0]), np.array([1, 2]), 3)
  c = types.concat_parts(a, b)
  assert [c.user_items(u).tolist() for u in range(3)] == [[5, 7, 2], [6], [1]]
